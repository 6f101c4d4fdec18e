"""`headend bill run --cycle` SIGKILLed at four seeded points of one cycle's run over 4000 postpaid
accounts (as the run opens, then after seeded batches, a few milliseconds into the next one), each
time restarted, then run to the end: the bills, the run row, the bill audit and the notification
outbox are identical to those of one uninterrupted run on a copy, and no account has two bills.

(tests/headend/test_billrun_resume.py kills once and counts; this compares every column with the
uninterrupted run after repeated kills, including kills inside a batch's transaction.)
"""

from __future__ import annotations

import random

from tests.faults.data import MAR, bill_fleet
from tests.faults.support import Lines, copy_db, headend, integrity, kill_when, rows, snapshot

SEED = 2024
ACCOUNTS, BATCH = 4000, 25
NOW = MAR + 5 * 86400
POLICY = '[billrun]\nbatch_size = %d\nreview_sample_pct = "5"\nreview_seed = 9\nworkers = 1\n' % BATCH
TABLES = {"bills": "id", "bill_runs": "run_id", "bill_audit": "id", "outbox": "id"}


def committed_batches(db) -> int:
    got = rows(db, "SELECT batches FROM bill_runs")
    return got[0][0] or 0 if got else 0


def test_bill_run_sigkilled_at_several_points_then_identical_to_an_uninterrupted_run(tmp_path):
    db, ref = str(tmp_path / "headend.db"), str(tmp_path / "reference.db")
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    bill_fleet(db, ACCOUNTS, SEED)
    copy_db(db, ref)
    cmd = ("bill", "run", "--cycle", "2024-02", "--policy", str(policy), "--now", str(NOW))
    out = headend("--db", ref, *cmd)
    assert out.returncode == 0, out.stderr
    expected = snapshot(ref, TABLES)
    states = {s for _, _, _, _, s, *_ in expected["bills"]}
    assert {"issued", "held", "review"} <= states

    rng = random.Random(SEED)
    run = Lines("--db", db, *cmd)  # killed as soon as its run row exists
    assert kill_when(run.proc, lambda: rows(db, "SELECT count(*) FROM bill_runs")[0][0] == 1)
    for target in sorted(rng.sample(range(5, ACCOUNTS // BATCH - 10), 3)):
        target = max(target, committed_batches(db) + 2)
        run = Lines("--db", db, *cmd)
        progress = lambda t=target, r=run: r.saw("batch %d:" % t)  # noqa: E731
        assert kill_when(run.proc, progress, extra_s=rng.uniform(0, 0.004)), "the run finished first"
        assert integrity(db) == "ok"
        n_bills = rows(db, "SELECT count(*) FROM bills")[0][0]
        assert n_bills == committed_batches(db) * BATCH < ACCOUNTS  # whole batches only, run unfinished
    assert rows(db, "SELECT state FROM bill_runs") == [("running",)]

    out = headend("--db", db, *cmd)
    assert out.returncode == 0, out.stderr
    assert snapshot(db, TABLES) == expected
    assert rows(db, "SELECT account_id FROM bills GROUP BY account_id HAVING count(*) > 1") == []
    released = rows(db, "SELECT count(*) FROM bills WHERE state IN ('issued', 'approved')")[0][0]
    per_bill = rows(db, "SELECT count(*), count(DISTINCT bill_id) FROM outbox")[0]
    assert per_bill == (released, released)  # one notification per released bill
