"""A meter cut off from the broker for three days (a TCP relay between it and Mosquitto drops the
link and refuses reconnects): its readings pile up unsent, flagged "from backlog" (flag bit 4) as
the firmware flags what it records while offline, and go out in one burst when the link heals.
Meanwhile another meter reports live. Every reading is stored once, and VEE accepts the late
backlog as on time (no clock warning, no gap, no estimate), while a meter whose readings arrive
hours late *without* the backlog flag gets the clock-behind warning.
"""

from __future__ import annotations

import json
import time

import pytest

from protocol import topics
from tests.faults.netproxy import Proxy
from tests.faults.support import Fleet, count, headend, rows, wait_for
from tests.headend.broker_support import cwt_frame, reading_map

IV = 900
DAYS = 3
BACKLOG = 16  # docs/protocol.md reading flags, bit 4
LIVE = 3  # readings of the meter that stays connected


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path, 3)
    yield f
    f.close()


def frame(fleet, meter: str, seq: int, ts: int, flags: int = 0) -> bytes:
    msg = reading_map(seq, ts, 1000 + 37 * seq)
    msg[9] = flags
    return cwt_frame(fleet.key(meter), meter, msg)


def test_meter_partitioned_for_days_then_backlog_burst_stored_once_and_validated(fleet):
    cut_off, live, late = fleet.ids
    now_slot = int(time.time()) // IV * IV
    n = DAYS * 86400 // IV  # readings recorded while cut off
    proxy = Proxy(fleet.broker.port)
    try:
        serve = fleet.serve()
        meter = fleet.meter(cut_off, port=proxy.port)
        proxy.cut()
        wait_for(lambda: not meter.connected.is_set(), 10, "the meter to lose its link")
        backlog = [frame(fleet, cut_off, k, now_slot - (n + 1 - k) * IV, BACKLOG) for k in range(1, n + 1)]
        for f in backlog:  # recorded during the partition: into the meter's queue, nothing on the wire
            meter.publish(topics.up(cut_off, "reading"), f)
        other = fleet.meter(live)
        # the live meter's last three intervals: the first is received at most 45 min + the time into
        # the current slot after its ts, inside VEE's hour for a reading without the backlog flag
        # (four reached back an hour, and a test started late in a slot saw a clock warning)
        live_frames = [frame(fleet, live, k, now_slot - (3 - k) * IV) for k in range(1, LIVE + 1)]
        for f in live_frames:
            other.publish(topics.up(live, "reading"), f)
        other.wait_acked(10)
        wait_for(lambda: count(fleet.db) == LIVE, 10, "the live meter's readings")
        wait_for(lambda: proxy.refused >= 2, 15, "the cut-off meter to retry")  # and be refused
        assert meter.unacked() == n
        assert rows(fleet.db, "SELECT count(*) FROM readings WHERE meter_id = ?", [cut_off]) == [(0,)]

        proxy.heal()
        wait_for(lambda: meter.connects == 2, 10, "the meter back")
        last = frame(fleet, cut_off, n + 1, now_slot)  # the first reading after the link is back
        meter.publish(topics.up(cut_off, "reading"), last)
        meter.wait_acked(30)
        straggler = fleet.meter(late)  # hours behind, and not flagged as backlog
        late_frames = [frame(fleet, late, k, now_slot - 3 * 3600 + k * IV) for k in range(1, 5)]
        for f in late_frames:
            straggler.publish(topics.up(late, "reading"), f)
        straggler.wait_acked(10)
        wait_for(lambda: count(fleet.db) == n + 1 + LIVE + 4, 30, "every reading stored")
        assert serve.terminate() == 0
    finally:
        proxy.close()

    got = rows(fleet.db, "SELECT seq, flags, raw FROM readings WHERE meter_id = ? ORDER BY seq", [cut_off])
    assert got == [(k, BACKLOG, f) for k, f in enumerate(backlog, 1)] + [(n + 1, 0, last)]
    c = dict(rows(fleet.db, "SELECT name, value FROM counters"))
    assert c["accepted:reading"] == n + 1 + LIVE + 4 and not [k for k in c if k.startswith("rejected")]

    out = headend("--db", fleet.db, "vee", "run", "--json", "--now", str(int(time.time())))
    assert out.returncode == 0, out.stderr
    vee = json.loads(out.stdout)
    assert vee[cut_off]["readings"] == n + 1
    assert vee[cut_off]["states"]["valid"] == n + 1
    assert vee[cut_off]["estimates"]["total"] == 0
    assert rows(fleet.db, "SELECT rule, outcome FROM vee_results WHERE meter_id = ?", [cut_off]) == []
    profile = rows(
        fleet.db,
        "SELECT count(DISTINCT interval_start), sum(wh_imp), min(source), max(source) FROM load_profile"
        " WHERE meter_id = ? AND interval_s = 900",
        [cut_off],
    )
    assert profile == [(n, 37 * n, "real", "real")]  # every interval of the three days, measured
    assert vee[live]["states"]["valid"] == LIVE
    drift = rows(fleet.db, "SELECT outcome, detail FROM vee_results WHERE meter_id = ? ORDER BY ts", [late])
    assert len(drift) == 4 and all(o == "warn" and "without the backlog flag" in d for o, d in drift), drift
    assert vee[late]["states"]["suspect"] == 4
