"""Mosquitto SIGKILLed and restarted, twice, while six meters publish signed readings (paho, QoS 1,
persistent sessions, as the firmware does) and `headend serve` ingests: afterwards every reading is
stored exactly once per (meter, seq), byte for byte the frame the meter signed, and nothing is
quarantined.

The broker runs with persistence (`headend broker-config --persistence`) and has saved its state
once after the head-end subscribed (what its periodic autosave does in production; SIGUSR1 here):
the restarted broker still holds the head-end's subscription, so the meters' resends that arrive
before `headend serve` has reconnected are queued for it, not dropped. A broker that has never
saved the head-end's session would drop them (docs/disaster-recovery.md, "Broker").
"""

from __future__ import annotations

import random

import pytest

from protocol import topics
from tests.faults.support import Fleet, count, rows, wait_for
from tests.faults.support import Stream as MeterStream
from tests.headend.broker_support import cwt_frame, reading_map

SEED = 20240301
METERS, PER_METER = 6, 800
STOPS = (250, 550)  # per meter: the first kill in the first 250 readings, the second before the 550th
T0 = 1_700_000_100


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path, METERS)
    yield f
    f.close()


def frame(fleet, meter: str, seq: int) -> bytes:
    return cwt_frame(fleet.key(meter), meter, reading_map(seq, T0 + 900 * seq, 1000 + seq))


def test_broker_sigkilled_twice_mid_stream_then_every_reading_once(fleet):
    rng = random.Random(SEED)
    total = METERS * PER_METER
    serve = fleet.serve("--batch", "50")
    clients = {m: fleet.meter(m) for m in fleet.ids}
    fleet.broker.save()
    frames = {m: [frame(fleet, m, s) for s in range(1, PER_METER + 1)] for m in fleet.ids}
    # gated, not timed: the meters stop at STOPS until the kill there is done, so each kill lands
    # while they publish the part before it (or wait at its end), with readings stored, never after
    # the last; where in the part is the machine's business (a random number of readings stored)
    stream = MeterStream(
        {clients[m]: [(topics.up(m, "reading"), f) for f in frames[m]] for m in fleet.ids},
        pace_s=0.006,
        stops=STOPS,
    )
    at_kill = []
    for i in range(2):
        stored_before = at_kill[-1][0] if at_kill else 0
        goal = stored_before + rng.randint(1, METERS * (STOPS[i] - (STOPS[i - 1] if i else 0)) // 2)
        wait_for(lambda g=goal: count(fleet.db) >= g, 30, "%d readings stored" % goal)
        fleet.broker.kill()
        at_kill.append((count(fleet.db), stream.handed()))
        wait_for(lambda: not any(c.connected.is_set() for c in clients.values()), 10, "the meters cut off")
        fleet.broker.restart()
        back = lambda n=i + 2: all(c.connects == n for c in clients.values())  # noqa: E731
        wait_for(back, 10, "the meters back")
        resumed = lambda n=i + 1: sum("session present: True" in x for x in serve.lines) == n  # noqa: E731
        wait_for(resumed, 10, "serve back")
        stream.release()
    stream.join()
    for c in clients.values():
        c.wait_acked(30)
    wait_for(lambda: count(fleet.db) >= total, 30, "every reading stored")
    assert serve.terminate() == 0
    for (stored, handed), stop in zip(at_kill, STOPS, strict=True):  # mid-stream, readings stored and to come
        assert 0 < stored <= handed <= METERS * stop < total
    # the head-end found its session (and subscription) after each restart
    assert sum("session present: True" in line for line in serve.lines) == 2

    got = rows(fleet.db, "SELECT meter_id, seq, raw FROM readings ORDER BY meter_id, seq")
    assert got == [(m, seq, frames[m][seq - 1]) for m in fleet.ids for seq in range(1, PER_METER + 1)]
    counters = dict(rows(fleet.db, "SELECT name, value FROM counters"))
    assert counters["accepted:reading"] == total
    assert not [k for k in counters if k.startswith("rejected")]
    assert rows(fleet.db, "SELECT count(*) FROM quarantine") == [(0,)]
