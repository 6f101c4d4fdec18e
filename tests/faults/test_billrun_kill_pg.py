"""Two `headend bill run` processes share one cycle's run on PostgreSQL; one is SIGKILLed in the
middle of a batch and restarted: every account is billed exactly once, with one notification per
released bill, and the run is finished once with the counts of all its batches.

How (headend/billing/run.py, _run_shared): the run's accounts are split into batches when it opens;
a process claims a batch with SELECT ... FOR UPDATE SKIP LOCKED and stores its bills and marks it
done in that one transaction. A kill rolls the transaction back (the server sees the connection
close), so the batch is todo again and the next claimant bills it.

The kill lands inside a batch's transaction by construction, not by timing: the test holds the run
row locked, so each process stops at its batch's last statement (the run's batch count) with the
batch's bills written but not committed; the kill comes once the killed process is seen waiting on
that lock (pg_stat_activity, by the application name each process is started under). Its server
process notices the client gone only once it has the lock (a backend waiting on a lock does not
read its socket), so its batch is rolled back when the test lets go. Gated on events (process
output, rows and locks in the database), never on sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

from headend.db import partitions
from headend.db.storage import Storage
from tests.faults.support import HEADEND, ROOT, sigkill
from tests.headend.billrun_support import FEB, NOW, TOU, tariff_id
from tests.headend.broker_support import wait_for

ACCOUNTS, BATCH = 400, 5
POLICY = '[billrun]\nbatch_size = %d\nreview_sample_pct = "5"\nreview_seed = 9\n' % BATCH


def pg_rows(url: str, sql: str, args=()) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as c:
        return list(c.execute(sql, args))


def fleet(url: str, n: int) -> None:
    """``n`` postpaid accounts acc00000.. (every 17th in a key zone, every 7th with an e-mail
    address), one meter each, with February 2024's daily load profile on the TOU tariff."""
    tid = tariff_id(TOU)
    with Storage(url) as s:
        s.add_tariff(tid, "t", TOU, now=0)
        partitions.ensure(s.conn, "load_profile", [partitions.month_of(FEB)])
        with s.db.atomic():
            c = s.conn
            ids = "FROM generate_series(0, %d) i" % (n - 1)
            acc = "'acc' || lpad(i::text, 5, '0')"
            c.execute(
                "INSERT INTO meters (meter_id, key, mqtt_password_hash, created_at)"
                " SELECT 'm-' || %s, '00', '$7$x', 0 %s" % (acc, ids)
            )
            c.execute(
                "INSERT INTO accounts (account_id, zone, zone_kind, billing, tariff_id, email, created_at)"
                " SELECT %s, 'Z1', CASE WHEN i %% 17 = 0 THEN 'key' ELSE 'regular' END, 'postpaid', ?,"
                " CASE WHEN i %% 7 = 0 THEN %s || '@example.org' END, 0 %s" % (acc, acc, ids),
                [tid],
            )
            c.execute(
                "INSERT INTO account_meters (account_id, meter_id, from_ts) SELECT %s, 'm-' || %s, 0 %s"
                % (acc, acc, ids)
            )
            c.execute(
                "INSERT INTO load_profile (meter_id, interval_start, interval_s, rate, wh_imp, wh_exp,"
                " source) SELECT 'm-' || %s, ? + d * 86400, 86400, r,"
                " CASE WHEN r = 1 THEN 0 ELSE 100 + (i * 7 + d) %% 200 END, 0, 'real'"
                " %s, generate_series(0, 28) d, generate_series(1, 2) r" % (acc, ids),
                [FEB],
            )


class Run:
    """`headend bill run` under a PostgreSQL application name; its stderr lines collected."""

    def __init__(self, url: str, name: str, policy) -> None:
        argv = ["--db", url, "bill", "run", "--cycle", "2024-02", "--policy", str(policy), "--now", str(NOW)]
        env = {**os.environ, "PGAPPNAME": name}
        self.name = name
        self.proc = subprocess.Popen(
            [*HEADEND, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.out = ""
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def batches(self) -> int:
        return sum(line.startswith("batch ") for line in self.lines)

    def finish(self) -> int:
        self.out = self.proc.stdout.read()
        code = self.proc.wait(120)
        self._t.join(10)
        return code


def waiting_on_a_lock(url: str, name: str) -> bool:
    return bool(
        pg_rows(
            url,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            [name],
        )
    )


def connected(url: str, name: str) -> bool:
    return bool(pg_rows(url, "SELECT 1 FROM pg_stat_activity WHERE application_name = %s", [name]))


def test_two_bill_runs_one_sigkilled_mid_batch_and_restarted_bill_every_account_once(pg_url, tmp_path):
    import psycopg

    fleet(pg_url, ACCOUNTS)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    a, b = Run(pg_url, "billrun-a", policy), Run(pg_url, "billrun-b", policy)
    runs = [a, b]
    try:
        # both at work, the one to kill a few batches in
        assert wait_for(lambda: a.batches() >= 3 and b.batches() >= 1, timeout=60), (a.lines, b.lines)
        with psycopg.connect(pg_url) as hold:
            [(run_id,)] = hold.execute("SELECT run_id FROM bill_runs FOR UPDATE").fetchall()
            assert wait_for(lambda: waiting_on_a_lock(pg_url, "billrun-a"), timeout=30)
            # a's batch is written but not committed: no one sees its bills
            done = pg_rows(pg_url, "SELECT count(*) FROM bill_run_batches WHERE state = 'done'")[0][0]
            assert pg_rows(pg_url, "SELECT count(*) FROM bills")[0][0] == done * BATCH
            sigkill(a.proc)
            assert a.proc.returncode == -9
            restarted = Run(pg_url, "billrun-a2", policy)
            runs.append(restarted)
            assert wait_for(lambda: connected(pg_url, "billrun-a2"), timeout=60)
            # the run row free again: b and the restarted process go on; a's server process,
            # waiting on the lock, gets it, finds its client gone and rolls back
            hold.rollback()
        assert wait_for(lambda: not connected(pg_url, "billrun-a"), timeout=30)
        assert b.finish() == 0, b.lines[-5:]
        assert restarted.finish() == 0, restarted.lines[-5:]
    finally:
        for r in runs:
            sigkill(r.proc)

    # every account billed once, one notification per released bill
    assert pg_rows(pg_url, "SELECT count(*), count(DISTINCT account_id) FROM bills") == [(ACCOUNTS, ACCOUNTS)]
    released = pg_rows(pg_url, "SELECT count(*) FROM bills WHERE state IN ('issued', 'approved')")[0][0]
    assert released > ACCOUNTS // 2
    assert pg_rows(pg_url, "SELECT count(*), count(DISTINCT bill_id) FROM outbox") == [(released, released)]
    # one run, finished once, its counts those of all its batches, each batch done once
    [(state, counts, batches)] = pg_rows(pg_url, "SELECT state, counts, batches FROM bill_runs")
    assert state == "finished" and batches == ACCOUNTS // BATCH
    assert pg_rows(pg_url, "SELECT state, count(*) FROM bill_run_batches GROUP BY 1") == [
        ("done", ACCOUNTS // BATCH)
    ]
    totals = json.loads(counts)
    assert sum(totals.values()) == ACCOUNTS and totals["skipped"] == 0
    assert totals["issued"] == pg_rows(pg_url, "SELECT count(*) FROM bills WHERE state = 'issued'")[0][0]
    # the processes' own batch lines add up to the run (the killed one's last batch not among them)
    a._t.join(10)
    assert a.batches() + b.batches() + restarted.batches() == ACCOUNTS // BATCH
