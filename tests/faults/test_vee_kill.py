"""`headend vee run` SIGKILLed three times at seeded points inside a run over 30 meters x 14 days of
15-minute readings (gaps, a register going down, a spike, a repeated timestamp), then run to the
end: every VEE table (results, estimates, audit trail with its ids, load profile, reading states)
is identical to that of one uninterrupted run on a copy of the same database.

Why: the engine computes each meter's changes from the stored data and writes them in one
transaction per meter; a kill rolls back the meter in progress and leaves the finished ones, which
the re-run finds already up to date (it writes nothing for them).
"""

from __future__ import annotations

import random
import subprocess

from tests.faults.data import FEB, IV, vee_fleet
from tests.faults.support import copy_db, headend, integrity, kill_when, rows, snapshot, spawn

SEED = 11
METERS, DAYS = 30, 14
NOW = FEB + IV + DAYS * 86400 + 3600
TABLES = {
    "vee_results": "meter_id, ts, rule",
    "estimates": "meter_id, interval_start, interval_end",
    "audit": "id",
    "load_profile": "meter_id, interval_s, interval_start, rate",
}


def vee_state(db) -> dict:
    return {
        **snapshot(db, TABLES),
        "readings": rows(db, "SELECT meter_id, seq, vee_state FROM readings ORDER BY meter_id, seq"),
    }


def meters_done(db) -> int:
    return rows(db, "SELECT count(DISTINCT meter_id) FROM load_profile")[0][0]


def test_vee_run_sigkilled_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path):
    db, ref = str(tmp_path / "headend.db"), str(tmp_path / "reference.db")
    vee_fleet(db, METERS, DAYS, SEED)
    copy_db(db, ref)
    out = headend("--db", ref, "vee", "run", "--now", str(NOW))
    assert out.returncode == 0, out.stderr
    expected = vee_state(ref)
    assert len(expected["audit"]) > 100 and len(expected["estimates"]) > 100  # VEE had work to do

    rng = random.Random(SEED)
    done = 0
    for target in sorted(rng.sample(range(2, METERS - 4), 3)):
        target = max(target, done + 1)
        proc = spawn("--db", db, "vee", "run", "--now", str(NOW), stdout=subprocess.DEVNULL)
        assert kill_when(proc, lambda t=target: meters_done(db) >= t, extra_s=rng.uniform(0, 0.04))
        assert integrity(db) == "ok"
        done = meters_done(db)
        assert target <= done < METERS  # the kill landed inside the run
    partial = vee_state(db)
    assert partial != expected and partial["audit"] == expected["audit"][: len(partial["audit"])]

    out = headend("--db", db, "vee", "run", "--now", str(NOW))
    assert out.returncode == 0, out.stderr
    assert vee_state(db) == expected
