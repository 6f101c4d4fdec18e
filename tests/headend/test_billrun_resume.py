"""A bill run killed midway (an injected crash between batches, and a real process killed
with SIGKILL) and re-run issues every bill exactly once, with one notification each."""

import os
import signal
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import pytest

from headend.billing.policy import Policy
from headend.billing.run import run_bills
from tests.headend.billrun_support import NOW, add_account, hourly, new_store, tou_rates

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Crash(Exception):
    pass


def fleet(store, n, interval=86400):
    for i in range(n):
        a = "acc%05d" % i
        add_account(store, a, key=(i % 17 == 0))
        hourly(store, "m-" + a, tou_rates, interval=interval)


def exactly_once(store, n):
    rows = store.conn.execute(
        "SELECT account_id, count(*) FROM bills WHERE cycle = '2024-02' GROUP BY 1"
    ).fetchall()
    assert len(rows) == n and all(c == 1 for _, c in rows)
    states = Counter(b["state"] for b in store.bills("2024-02"))
    released = states["issued"] + states["approved"]
    per_bill = Counter(r["bill_id"] for r in store.outbox())
    assert len(per_bill) == released and set(per_bill.values()) <= {1}
    return states


def test_injected_crash_between_batches_then_resume(db_target):
    policy = Policy(batch_size=4, review_sample_pct=Decimal(10), review_seed=3)
    with new_store(db_target) as s:
        fleet(s, 30)

        def crash(run):
            if run["batches"] == 3:
                raise Crash()

        with pytest.raises(Crash):
            run_bills(s, "2024-02", NOW, policy, on_batch=crash)
        assert len(s.bills("2024-02")) == 12  # three committed batches
        [run] = s.conn.execute("SELECT run_id, state, cursor FROM bill_runs").fetchall()
        assert run[1:] == ("running", "acc00011")
        done = run_bills(s, "2024-02", NOW, policy)
        assert done["run_id"] == run[0] and done["state"] == "finished"
        assert sum(done["counts"].values()) == 30 and done["counts"]["skipped"] == 0
        first = exactly_once(s, 30)
        # a second run of the finished cycle is a new run that skips every released bill
        again = run_bills(s, "2024-02", NOW, policy)
        assert again["run_id"] != run[0]
        assert again["counts"] == {"issued": 0, "held": 0, "review": 0, "skipped": 30}
        assert exactly_once(s, 30) == first


def test_unique_constraint_is_the_last_line_of_defence(db_target):
    with new_store(db_target) as s:
        fleet(s, 2)
        run_bills(s, "2024-02", NOW, Policy(review_sample_pct=Decimal(0)))
        bill = s.bill("acc00001", "2024-02")
        row = dict(bill, state="issued", reasons="[]", lines="[]", kwh_by_rate=None, sources=None, total="1")
        s.commit_bill_batch(999, "2024-02", [row], [], "x", {}, NOW)  # bypassing the logic
        assert s.bill("acc00001", "2024-02")["total"] == bill["total"]  # not replaced
        exactly_once(s, 2)


def test_sigkilled_run_process_then_rerun(tmp_path):
    n = 1500
    with new_store(tmp_path) as s:
        fleet(s, n)
    policy = tmp_path / "policy.toml"
    policy.write_text('[billrun]\nbatch_size = 10\nreview_sample_pct = "5"\nreview_seed = 9\n')
    cmd = [
        sys.executable,
        "-m",
        "headend.cli",
        "--db",
        str(tmp_path / "bills.db"),
        "bill",
        "run",
        "--cycle",
        "2024-02",
        "--policy",
        str(policy),
        "--now",
        str(NOW),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("batch 5:"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with new_store(tmp_path) as s:
        partial = len(s.bills("2024-02"))
        assert 50 <= partial < n  # killed midway: whole batches only
        assert partial % 10 == 0
    out = subprocess.run(cmd + ["--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with new_store(tmp_path) as s:
        states = exactly_once(s, n)
        [(runs, finished)] = s.conn.execute(
            "SELECT count(*), sum(state = 'finished') FROM bill_runs"
        ).fetchall()
        assert (runs, finished) == (1, 1)  # the re-run resumed the killed run
        assert states["issued"] + states["review"] == n


def test_worker_processes_bill_alike_and_resume_after_a_crash(tmp_path):
    """Two pricing processes: the same bills as one process, committed in account order,
    and a crash between batches resumes to every bill exactly once."""
    one = Policy(batch_size=4, review_sample_pct=Decimal(10), review_seed=3, workers=1)
    two = Policy(batch_size=4, review_sample_pct=Decimal(10), review_seed=3, workers=2)
    cols = "account_id, state, reasons, energy_kwh, kwh_by_rate, sources, lines, total"
    bills = {}
    for name, policy in (("one", one), ("two", two)):
        (tmp_path / name).mkdir()
        with new_store(tmp_path / name) as s:
            fleet(s, 30)
            cursors = []

            def crash(run, cursors=cursors, name=name):
                cursors.append(run["cursor"])
                if name == "two" and run["batches"] == 3:
                    raise Crash()

            if name == "two":
                with pytest.raises(Crash):
                    run_bills(s, "2024-02", NOW, policy, on_batch=crash)
                assert len(s.bills("2024-02")) == 12 and cursors == ["acc00003", "acc00007", "acc00011"]
            done = run_bills(s, "2024-02", NOW, policy, on_batch=crash)
            assert done["state"] == "finished" and sum(done["counts"].values()) == 30
            assert cursors == sorted(cursors) and cursors[-1] == "acc00029"
            exactly_once(s, 30)
            bills[name] = s.conn.execute("SELECT %s FROM bills ORDER BY account_id" % cols).fetchall()
    assert bills["one"] == bills["two"]


def test_bill_rows_are_in_storage_column_order():
    from headend.billing.price import RULE
    from headend.billing.run import _bill
    from headend.billing.store_sql import BILL_COLUMNS

    row = _bill("a", "2024-02", 7, "held", "[]", "t", None, None, None, 1.0)
    assert len(row) == len(BILL_COLUMNS)
    assert dict(zip(BILL_COLUMNS, row, strict=True)) == {
        **dict.fromkeys(BILL_COLUMNS),
        **{"account_id": "a", "cycle": "2024-02", "run_id": 7, "state": "held", "reasons": "[]"},
        **{"tariff_id": "t", "lines": "[]", "total": "0", "created_at": 1.0, "updated_at": 1.0},
        "rule": RULE,
    }


def test_a_run_tunes_the_garbage_collector_and_restores_it(db_target):
    """During a run the objects the process held before it are frozen and the collector runs every
    10,000 net allocations (headend.billing.run._run_collector); both undone when it ends, by a
    crash too."""
    import gc

    before = gc.get_threshold()
    seen = []

    def look(run):
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        if len(seen) == 2:
            raise Crash()

    with new_store(db_target) as s:
        fleet(s, 6)
        with pytest.raises(Crash):
            run_bills(s, "2024-02", NOW, Policy(batch_size=2), on_batch=look)
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
        run_bills(s, "2024-02", NOW, Policy(batch_size=2), on_batch=look)
    assert seen == [(10_000, True)] * 3
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
