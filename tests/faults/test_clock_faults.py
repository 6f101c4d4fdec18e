"""Clock faults seen from the head-end: readings of a meter whose clock jumped forward, of one
whose clock jumped back, and of one that flags its clock unsynchronised (flag bit 1), ingested
through the same verify-and-store path as `headend serve` (headend.ingest.verify), then `headend vee run`
and `headend bill run`. VEE flags every one of them as its rules say (clock_drift fail for a
timestamp ahead of the receive time, clock_drift warn for one received a day late without the
backlog flag or flagged unsynchronised, duplicate conflicts where a jumped clock reused
timestamps); failed readings never reach a bill as measured energy: their intervals are billed as
estimates, and the bill says how much was estimated.
"""

from __future__ import annotations

import json
from collections import Counter

from headend.db.storage import Storage
from headend.ingest import verify as ingest
from headend.ingest.store import IngestBatch
from protocol import messages as M
from protocol import topics
from tests.faults.data import FEB, IV, MAR
from tests.faults.support import headend, rows
from tests.headend.billrun_support import add_account

DAY = 86400
UNSYNCED = 2  # docs/protocol.md reading flags, bit 1
KEY = bytes(range(32))
NOW = MAR + 2 * DAY
JUMP_FWD = (FEB + 9 * DAY + 12 * 3600, 6 * 3600, 2 * DAY)  # at, for how long, by how much
JUMP_BACK = (FEB + 19 * DAY, 6 * 3600, -DAY)
UNSYNCED_DAY = (FEB + 4 * DAY, DAY)


def meter_ts(meter: str, true_ts: int) -> tuple[int, int]:
    """(the meter's timestamp, flags) of the reading taken at true_ts."""
    for name, (at, span, by) in (("jump-fwd", JUMP_FWD), ("jump-back", JUMP_BACK)):
        if meter == name and at <= true_ts < at + span:
            return true_ts + by, 0
    if meter == "unsynced" and UNSYNCED_DAY[0] <= true_ts < sum(UNSYNCED_DAY):
        return true_ts, UNSYNCED
    return true_ts, 0


def ingest_cycle(db: str, meters: list[str]) -> None:
    with Storage(db) as st:
        for m in meters:
            st.add_meter(m, KEY.hex(), "$7$x", now=0)
            add_account(st, "acc-" + m, meter=m)
        for m in meters:
            batch, regs = IngestBatch(), [100_000, 200_000]  # peak, valley (the TOU tariff's rates)
            for seq, true_ts in enumerate(range(FEB - 4 * IV, MAR + 4 * IV, IV), 1):
                hour = ((true_ts - IV) % DAY) // 3600  # the interval ending at true_ts
                if 8 <= hour < 20:
                    regs[0] += 60
                else:
                    regs[1] += 40
                ts, flags = meter_ts(m, true_ts)
                msg = M.reading(seq, ts, IV, list(regs), [0, 0], [0] * 4, flags=flags)
                v = ingest.add(batch, topics.up(m, "reading"), M.seal(KEY, m, msg), true_ts + 3, {m: KEY})
                assert v.kind == "reading", v
            st.commit_batch(batch)


def jumped_seqs(meter: str) -> set[int]:
    return {
        seq
        for seq, true_ts in enumerate(range(FEB - 4 * IV, MAR + 4 * IV, IV), 1)
        if meter_ts(meter, true_ts)[0] != true_ts
    }


def results(db: str, meter: str) -> Counter:
    got = rows(db, "SELECT rule, outcome FROM vee_results WHERE meter_id = ?", [meter])
    return Counter("%s %s" % r for r in got)


def states(db: str, meter: str, seqs) -> Counter:
    got = dict(rows(db, "SELECT seq, vee_state FROM readings WHERE meter_id = ?", [meter]))
    return Counter(got[s] for s in seqs)


def test_clock_jumps_and_unsynchronised_clocks_are_flagged_and_never_billed_as_measured(tmp_path):
    db = str(tmp_path / "headend.db")
    meters = ["clean", "jump-fwd", "jump-back", "unsynced"]
    ingest_cycle(db, meters)
    out = headend("--db", db, "vee", "run", "--now", str(NOW))
    assert out.returncode == 0, out.stderr

    assert results(db, "clean") == Counter()
    fwd = jumped_seqs("jump-fwd")
    assert len(fwd) == 24
    sql = "SELECT seq, detail FROM vee_results WHERE meter_id = ? AND rule = 'clock_drift'"
    ahead = rows(db, sql, ["jump-fwd"])
    assert {s for s, _ in ahead} == fwd
    assert all("%d s ahead of the receive time" % (2 * DAY - 3) in d for _, d in ahead), ahead
    assert results(db, "jump-fwd")["clock_drift fail"] == 24
    assert states(db, "jump-fwd", fwd) == Counter(estimated=24)  # out of the series, its slot estimated
    # the genuine readings taken later at the timestamps the jumped clock had already used conflict
    # with them: VEE cannot tell which is right, fails both, and the bill waits for an operator
    assert results(db, "jump-fwd")["duplicate fail"] == 24

    back = jumped_seqs("jump-back")
    assert len(back) == 24 and results(db, "jump-back")["duplicate fail"] == 24
    assert states(db, "jump-back", back) == Counter(failed=24)
    assert results(db, "jump-back")["gap warn"] == 1  # the six hours the meter did not report as such

    unsynced = {
        seq
        for seq, ts in enumerate(range(FEB - 4 * IV, MAR + 4 * IV, IV), 1)
        if meter_ts("unsynced", ts)[1] == UNSYNCED
    }
    assert results(db, "unsynced") == Counter({"clock_drift warn": 96})
    assert states(db, "unsynced", unsynced) == Counter(suspect=96)
    reasons = rows(db, "SELECT DISTINCT detail FROM vee_results WHERE meter_id = 'unsynced'")
    assert reasons == [('"the meter reports its clock unsynchronised"',)]

    policy = tmp_path / "policy.toml"
    policy.write_text('[billrun]\nreview_sample_pct = "0"\n')
    out = headend("--db", db, "bill", "run", "--cycle", "2024-02", "--policy", str(policy), "--now", str(NOW))
    assert out.returncode == 0, out.stderr
    bills = {
        a[len("acc-") :]: (state, json.loads(reasons), kwh, json.loads(sources))
        for a, state, reasons, kwh, sources in rows(
            db, "SELECT account_id, state, reasons, energy_kwh, sources FROM bills WHERE cycle = '2024-02'"
        )
    }
    true_kwh = "%.3f" % (29 * (48 * 60 + 48 * 40) / 1000)  # what the meters really measured
    assert {m: b[2] for m, b in bills.items()} == dict.fromkeys(meters, true_kwh)  # none lost, none twice
    assert bills["clean"][:2] == ("issued", []) and bills["clean"][3]["estimated"] == 0
    for m, wrong_s in (("jump-fwd", 2 * 6 * 3600), ("jump-back", 6 * 3600)):
        state, why, _, sources = bills[m]
        assert state == "held" and why == ["unresolved VEE failure: 24 failed readings in the cycle"]
        assert wrong_s <= sources["estimated"] < DAY  # the bill says how much of it is an estimate
    # a warning keeps the data (VEE: suspect, not failed): billed as measured, flagged in VEE only
    assert bills["unsynced"][:2] == ("issued", []) and bills["unsynced"][3]["estimated"] == 0
