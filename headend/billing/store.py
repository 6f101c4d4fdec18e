"""Storage methods for accounts, tariffs and bill runs (mixed into ``headend.db.storage.Storage``).

Accounts and tariffs:
  ``add_tariff(tariff_id, name, text, effective_from=None, now=...)``  idempotent on the id.
  ``tariff(tariff_id)``, ``add_account(row, meter_id=None, from_ts=0)`` (AccountExists),
  ``link_meter(account_id, meter_id, from_ts, to_ts=None)``, ``account(id)``, ``accounts()``,
  ``meter_account_ids()`` (meter -> the account on its open link).
Bill runs (``headend.billing.run``), reading a batch of accounts at a time:
  ``postpaid_after(cursor, limit)``, ``profile_sums(ids, interval_s, start, end)``, ``profile_fast``,
  ``profile_points(account_id, interval_s, start, end)``, ``boundary_reads(ids, start, end)``,
  ``vee_problems(ids, start, end)``, ``bill_history(ids, cycle, n)``, ``bill_states(ids, cycle)``;
  PostgreSQL's shared runs read by meter link (``account_links``, ``profile_fast_all``,
  ``cycle_reads``) and skip the states when no other run billed the cycle
  (``cycle_billed_by_others``). Runs: ``open_run``/``running_run``/``commit_bill_batch``/
  ``finish_run``/``bill_run``.
Bills, review and the outbox: ``bills(cycle, state)`` (live bills unless ``state='void'``),
  ``bill(account_id, cycle)`` (the live bill, else the last voided one),
  ``update_bill(bill_id, changes, audit)``, ``void_bill(bill_id, reason, user, now)``,
  ``bill_audit(bill_id)``, ``postpaid_tariff_ids()``, ``queue_notifications``,
  ``outbox_due(now, limit)``, ``outbox_update(id, **changes)``, ``outbox(state=None)``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Mapping, Sequence

from headend.billing.store_sql import (
    ACCOUNT_LINKS,
    ACCOUNTS,
    BILL_COLUMNS,
    BILL_IDS_PG,
    BILL_STATES,
    BOUNDARY_READS,
    CLAIM_BATCH,
    COPY_BILLS_PG,
    CYCLE_READS_PG,
    HISTORY,
    HISTORY_PG,
    OPEN_LINK,
    PG_IN_IDS,
    PLAN_BATCHES,
    POSTPAID,
    POSTPAID_COUNT,
    POSTPAID_RANGE,
    POSTPAID_TARIFFS,
    PROFILE_FAST,
    PROFILE_FAST_ALL,
    PROFILE_POINTS,
    PROFILE_SUMS,
    UPSERT_BILL,
    UPSERT_BILLS_PG,
    VEE_PROBLEMS,
    marks,
    pg_text_array,
)
from headend.db.engine import dialect, insert_id
from headend.errors import AccountError, BillingError  # noqa: F401

_RUN_LOCK = 0x0A1117  # pg_advisory_xact_lock(key, hashtext(cycle)) while a shared run opens


class BillingStorageMixin:
    db: object
    conn: sqlite3.Connection

    # ------------------------------------------------------------ tariffs and accounts

    def add_tariff(
        self,
        tariff_id: str,
        name: str,
        text: str,
        effective_from: str | None = None,
        now: float | None = None,
    ) -> None:
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO tariffs (tariff_id, name, text, effective_from, created_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (tariff_id) DO NOTHING",
                (tariff_id, name, text, effective_from, time.time() if now is None else now),
            )

    def tariff(self, tariff_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM tariffs WHERE tariff_id = ?", [tariff_id]))
        return rows[0] if rows else None

    def add_account(self, row: Mapping, meter_id: str | None = None, from_ts: int = 0) -> dict:
        row = {**row, "created_at": row.get("created_at") or time.time()}
        try:
            with self.db.atomic():
                self.db["accounts"].insert(row)
                if meter_id is not None:
                    self._link(row["account_id"], meter_id, from_ts, None)
        except sqlite3.IntegrityError:
            raise AccountError("account %r already exists" % row["account_id"])
        return self.account(row["account_id"])

    def link_meter(self, account_id: str, meter_id: str, from_ts: int, to_ts: int | None = None) -> None:
        with self.db.atomic():
            self._link(account_id, meter_id, from_ts, to_ts)

    def _link(self, account_id, meter_id, from_ts, to_ts) -> None:
        far = OPEN_LINK
        clash = self.conn.execute(
            "SELECT account_id FROM account_meters WHERE meter_id = ?"
            " AND from_ts < ? AND coalesce(to_ts, ?) > ?",
            (meter_id, far if to_ts is None else to_ts, far, from_ts),
        ).fetchone()
        if clash:
            raise AccountError("meter %r is already linked to account %r then" % (meter_id, clash[0]))
        self.conn.execute(
            "INSERT INTO account_meters (account_id, meter_id, from_ts, to_ts) VALUES (?, ?, ?, ?)",
            (account_id, meter_id, from_ts, to_ts),
        )

    def meter_account_ids(self) -> dict[str, str]:
        """meter_id -> the account on its open link (what the web's meter pages show and bills use)."""
        rows = self.conn.execute(
            "SELECT meter_id, account_id FROM account_meters WHERE to_ts IS NULL ORDER BY from_ts"
        ).fetchall()
        return dict(rows)

    def account(self, account_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM accounts WHERE account_id = ?", [account_id]))
        if not rows:
            return None
        row = rows[0]
        row["meters"] = list(
            self.db.query(
                "SELECT meter_id, from_ts, to_ts FROM account_meters WHERE account_id = ? ORDER BY from_ts",
                [account_id],
            )
        )
        return row

    def accounts(self) -> list[dict]:
        return list(self.db.query(ACCOUNTS[dialect(self.conn)]))

    # ------------------------------------------------------------ bill-run reads (one batch)

    def postpaid_after(self, cursor: str, limit: int) -> list[tuple]:
        """(account_id, zone_kind, tariff_id, linked_from, linked_to) of postpaid accounts after
        ``cursor``, in id order; linked_*: the span of its meter links (None: no meter; to: open)."""
        return self.conn.execute(POSTPAID, (cursor, limit)).fetchall()

    def postpaid_count_after(self, cursor: str) -> int:
        return self.conn.execute(POSTPAID_COUNT, (cursor,)).fetchone()[0]

    def postpaid_tariff_ids(self) -> list[str]:
        """The tariffs of the postpaid accounts (each defines the cycle's local month)."""
        return [r[0] for r in self.conn.execute(POSTPAID_TARIFFS)]

    def db_path(self) -> str | None:
        """The database file (PostgreSQL: its URL), for another connection to it (None: in memory)."""
        if dialect(self.conn) == "postgresql":
            return self.conn.url
        row = self.conn.execute("PRAGMA database_list").fetchone()
        return row[2] or None

    def _in_ids(self, sql: str, ids: Sequence[str]) -> tuple[str, list]:
        """``sql``'s ``IN (%s)`` for ``ids``: one ``?`` per id on SQLite; on PostgreSQL one array
        parameter (``PG_IN_IDS``), so a batch's statement is the same text whatever its size
        (parsed and planned once, not per batch of a thousand placeholders)."""
        if dialect(self.conn) == "postgresql":
            return sql.replace(" IN (%s)", PG_IN_IDS), [pg_text_array(ids)]
        return sql % marks(ids), list(ids)

    def _linked_args(self, interval_s: int, start: int, end: int) -> tuple:
        """The parameters of ``_LINKED`` (PostgreSQL's adds [start, end) on the partition key)."""
        if dialect(self.conn) == "postgresql":
            return (interval_s, start, end, end, start, end)
        return (interval_s, start, end, end)

    def profile_sums(self, ids: Sequence[str], interval_s: int, start: int, end: int) -> list[tuple]:
        """(account_id, rate, source, count, sum Wh, min Wh, first start, last start) over the
        account's meters' load-profile rows in [start, end), each meter within its link window."""
        if not ids:  # PostgreSQL refuses an empty IN list
            return []
        sql, args = self._in_ids(PROFILE_SUMS[dialect(self.conn)], ids)
        return self.conn.execute(sql, (*self._linked_args(interval_s, start, end), *args)).fetchall()

    def profile_fast(self, ids: Sequence[str], interval_s: int, start: int, end: int) -> list[tuple]:
        """``profile_sums`` folded to one row per account: (account_id, rows, rows not 'real', min Wh,
        first start, last start, then sum Wh and count of each rate 1..FAST_RATES)."""
        if not ids:
            return []
        sql, args = self._in_ids(PROFILE_FAST[dialect(self.conn)], ids)
        return self.conn.execute(sql, (*self._linked_args(interval_s, start, end), *args)).fetchall()

    def profile_fast_all(
        self, links: Sequence[tuple], intervals: Sequence[int], start: int, end: int
    ) -> list[tuple]:
        """PostgreSQL: ``profile_fast`` rows of the accounts of ``links`` ((account_id, meter_id,
        from_ts, to_ts), ``account_links``) at each of ``intervals`` they have rows for, each row
        ending with its interval_s."""
        args = (*_links_args(links), *self._linked_args(list(intervals), start, end))
        return self.conn.execute(PROFILE_FAST_ALL, args).fetchall()

    def account_links(self, ids: Sequence[str]) -> list[tuple]:
        """(account_id, meter_id, from_ts, to_ts) of the accounts' meter links."""
        if not ids:
            return []
        sql, args = self._in_ids(ACCOUNT_LINKS, ids)
        return self.conn.execute(sql, args).fetchall()

    def profile_points(self, account_id: str, interval_s: int, start: int, end: int) -> list[tuple]:
        """(interval_start, rate, wh_imp, source) of one account, by interval_start, rate."""
        return self.conn.execute(
            PROFILE_POINTS[dialect(self.conn)], (*self._linked_args(interval_s, start, end), account_id)
        ).fetchall()

    def boundary_reads(self, ids: Sequence[str], start: int, end: int) -> list[tuple]:
        """(account_id, meter_id, ts, imp JSON, vee_state) of readings at ts = start or end."""
        if not ids:
            return []
        sql, args = self._in_ids(BOUNDARY_READS, ids)
        return self.conn.execute(sql, (start, end, *args)).fetchall()

    def vee_problems(self, ids: Sequence[str], start: int, end: int) -> list[tuple]:
        """(account_id, vee_state, count) of cycle readings (start < ts <= end) 'failed' or 'pending'."""
        if not ids:
            return []
        sql, args = self._in_ids(VEE_PROBLEMS, ids)
        return self.conn.execute(sql, (start, end, end, *args)).fetchall()

    def cycle_reads(self, links: Sequence[tuple], start: int, end: int) -> list[tuple]:
        """PostgreSQL: ``boundary_reads`` and ``vee_problems`` of the accounts of ``links`` (as
        ``profile_fast_all``) in one statement (``CYCLE_READS_PG``): (account_id, meter_id, ts, seq,
        imp, vee_state, problems) of each boundary read, in ``boundary_reads``' order, then per
        account and state the count of the other failed and pending readings of the cycle (ts, seq
        and imp None)."""
        if not links:
            return []
        args = (*_links_args(links), start, end, start, end, start, end)
        return self.conn.execute(CYCLE_READS_PG, args).fetchall()

    def bill_history(self, ids: Sequence[str], cycle: str, n: int) -> dict[str, list[str]]:
        """account_id -> energy_kwh of its last ``n`` released bills before ``cycle``, newest first."""
        out: dict[str, list[str]] = {}
        if not ids:
            return out
        if dialect(self.conn) == "postgresql":
            sql, args = HISTORY_PG, (pg_text_array(ids), cycle, n)
        else:
            sql, args = HISTORY % marks(ids), (cycle, *ids)
        for account_id, kwh in self.conn.execute(sql, args):
            got = out.setdefault(account_id, [])
            if len(got) < n:
                got.append(kwh)
        return out

    def bill_states(self, ids: Sequence[str], cycle: str) -> dict[str, tuple[int, str]]:
        if not ids:
            return {}
        sql, args = self._in_ids(BILL_STATES[dialect(self.conn)], ids)
        return {a: (i, s) for a, i, s in self.conn.execute(sql, (cycle, *args))}

    # ------------------------------------------------------------ runs

    def running_run(self, cycle: str) -> dict | None:
        rows = list(
            self.db.query(
                "SELECT * FROM bill_runs WHERE cycle = ? AND state = 'running' ORDER BY run_id DESC LIMIT 1",
                [cycle],
            )
        )
        return _run(rows[0]) if rows else None

    def bill_run(self, run_id: int) -> dict:
        return _run(next(iter(self.db.query("SELECT * FROM bill_runs WHERE run_id = ?", [run_id]))))

    def open_run(self, cycle: str, seed: int, policy: Mapping, now: float) -> dict:
        with self.db.atomic():
            run_id = insert_id(
                self.conn,
                "INSERT INTO bill_runs (cycle, state, started_at, seed, policy, cursor, batches, counts)"
                " VALUES (?, 'running', ?, ?, ?, '', 0, ?)",
                (cycle, now, seed, json.dumps(policy, sort_keys=True), json.dumps({})),
                pk="run_id",
            )
        return self.bill_run(run_id)

    def commit_bill_batch(
        self,
        run_id: int,
        cycle: str,
        bills: Sequence[Mapping],
        audits: Sequence[tuple],
        cursor: str,
        counts: Mapping,
        now: float,
    ) -> None:
        """One transaction: the batch's bills (a held bill is replaced, any other kept: the
        UNIQUE (account_id, cycle) is the last line of defence), the audit rows of replaced held
        bills, notifications of the issued ones, and the run's cursor and counts. A bill is a
        mapping, or a tuple in ``BILL_COLUMNS`` order."""
        with self.db.atomic():
            self._store_bills(cycle, bills, audits, now)
            self.conn.execute(
                "UPDATE bill_runs SET cursor = ?, batches = batches + 1, counts = ? WHERE run_id = ?",
                (cursor, json.dumps(counts, sort_keys=True), run_id),
            )

    def _store_bills(
        self,
        cycle: str,
        bills: Sequence,
        audits: Sequence[tuple],
        now: float,
        contacts: Mapping | None = None,
    ) -> None:
        """The batch's bills, the audit rows of the held bills they replace, the notices of the
        issued ones. ``contacts`` (PostgreSQL, optional): account_id -> (email, webhook) of every
        account of the batch, so that new bills' notices are made here (see below)."""
        rows = [b if isinstance(b, tuple) else tuple(b[c] for c in BILL_COLUMNS) for b in bills]
        noticed: set[str] = set()  # accounts whose notices are queued already
        if dialect(self.conn) == "postgresql":
            # a bill with an audit row replaces its account's held bill (an upsert); the others
            # are new (the account has no live bill of the cycle) and go in by COPY, their ids
            # taken from the sequence first: a third of the upsert's server CPU. Should one find a
            # live bill after all, the unique index refuses the COPY, which is undone, and every
            # bill of the batch takes the upsert. With ``contacts`` the new bills' notices go in by
            # COPY too, made here (``copy_bill_notices_pg``): half the server CPU of
            # queue_notifications' INSERT ... SELECT, which finds each bill and account again.
            replacing = {a[2] for a in audits}
            new = [r for r in rows if r[0] not in replacing]
            rows_upsert = rows
            if new:
                ids = self._bill_ids(len(new))
                if self._copy_new_bills(new, ids):
                    rows_upsert = [r for r in rows if r[0] in replacing]
                    if contacts is not None:
                        issued = [(i, r) for i, r in zip(ids, new, strict=True) if r[3] == "issued"]
                        self.copy_bill_notices_pg(issued, contacts, now)
                        noticed = {r[0] for _i, r in issued}
            if rows_upsert:
                batch = json.dumps([dict(zip(BILL_COLUMNS, r, strict=True)) for r in rows_upsert])
                self.conn.execute(UPSERT_BILLS_PG, [batch])
        else:
            self.conn.executemany(UPSERT_BILL, rows)
        if audits:
            self.conn.executemany(
                "INSERT INTO bill_audit (bill_id, action, old_state, new_state, reason, user, at)"
                " SELECT id, 'recompute', 'held', state, ?, 'billrun', ? FROM bills"
                " WHERE account_id = ? AND cycle = ?",
                audits,
            )
        issued_accounts = [b[0] for b in rows if b[3] == "issued" and b[0] not in noticed]
        if issued_accounts:
            self.queue_notifications(cycle, issued_accounts, now)

    def _bill_ids(self, n: int) -> list[int]:
        """PostgreSQL: ``n`` new ids from the bills' identity sequence."""
        return [r[0] for r in self.conn.execute(BILL_IDS_PG, (n,))]

    def _copy_new_bills(self, rows: Sequence[tuple], ids: Sequence[int]) -> bool:
        """PostgreSQL: COPY ``rows`` (``BILL_COLUMNS`` order) with ``ids`` into bills under a
        savepoint; False, with nothing stored, when one of their accounts has a live bill of the
        cycle."""
        self.conn.execute("SAVEPOINT new_bills")
        try:
            with_ids = [(i, *r) for i, r in zip(ids, rows, strict=True)]
            self.conn.copy_text(COPY_BILLS_PG, with_ids, 1 + len(BILL_COLUMNS))
        except sqlite3.IntegrityError:
            self.conn.execute("ROLLBACK TO SAVEPOINT new_bills")
            return False
        self.conn.execute("RELEASE SAVEPOINT new_bills")
        return True

    # ------------------------------------------------------------ shared runs (PostgreSQL)

    def join_shared_run(self, cycle: str, seed: int, policy: Mapping, now: float, batch_size: int) -> dict:
        """PostgreSQL: the cycle's running run, else a new one whose postpaid accounts (after its
        cursor) are split into batches of ``batch_size`` (``bill_run_batches``, m012), under an
        advisory lock on the cycle: processes starting together join one run."""
        with self.db.atomic():
            self.conn.execute("SELECT pg_advisory_xact_lock(%d, hashtext(?))" % _RUN_LOCK, [cycle])
            run = self.running_run(cycle) or self.open_run(cycle, seed, policy, now)
            planned = self.conn.execute(
                "SELECT 1 FROM bill_run_batches WHERE run_id = ? LIMIT 1", [run["run_id"]]
            ).fetchone()
            if planned is None:
                self.conn.execute(
                    PLAN_BATCHES % int(batch_size), (run["run_id"], run["cursor"] or "", run["cursor"] or "")
                )
        return run

    @contextlib.contextmanager
    def claim_bill_batch(self, run_id: int, wait: bool = False):
        """PostgreSQL: a transaction holding the run's lowest batch still to do, yielding
        (batch, after_id, last_id), or None when every batch is done or (unless ``wait``) held by
        another process; committed when the block ends, rolled back if it raises. The caller
        bills the batch's accounts (``postpaid_between``) and calls ``commit_claimed_batch``
        inside the block, so a batch is done exactly when its bills are stored."""
        with self.db.atomic():
            yield self.conn.execute(CLAIM_BATCH + ("" if wait else " SKIP LOCKED"), [run_id]).fetchone()

    def cycle_billed_by_others(self, cycle: str, run_id: int) -> bool:
        """Whether the cycle has a live bill that run ``run_id`` did not make."""
        return (
            self.conn.execute(
                "SELECT 1 FROM bills WHERE cycle = ? AND state != 'void' AND run_id != ? LIMIT 1",
                (cycle, run_id),
            ).fetchone()
            is not None
        )

    def postpaid_between(self, after_id: str, last_id: str) -> list[tuple]:
        """``postpaid_after``'s rows for the accounts in (after_id, last_id], each followed by the
        account's e-mail and webhook (``contacts``)."""
        return self.conn.execute(POSTPAID_RANGE, (after_id, last_id)).fetchall()

    def commit_claimed_batch(
        self, run_id: int, batch: int, cycle: str, bills: Sequence, audits: Sequence[tuple], counts: Mapping,
        last_id: str, now: float, contacts: Mapping | None = None,
    ) -> None:  # fmt: skip
        """In the claim's transaction: the batch's bills, audits and notifications, the batch
        ``done`` with its counts, the run's batch count and cursor (the highest last account)."""
        with self.db.atomic():
            self._store_bills(cycle, bills, audits, now, contacts)
            self.conn.execute(
                "UPDATE bill_run_batches SET state = 'done', counts = ?, done_at = ?"
                " WHERE run_id = ? AND batch = ?",
                (json.dumps(counts, sort_keys=True), now, run_id, batch),
            )
            self.conn.execute(
                "UPDATE bill_runs SET batches = batches + 1, cursor = greatest(cursor, ?) WHERE run_id = ?",
                (last_id, run_id),
            )

    def finish_shared_run(self, run_id: int, now: float) -> dict:
        """PostgreSQL: once no batch is left to do, the run is finished with the sum of its
        batches' counts (whichever process gets here first; the others find it finished)."""
        with self.db.atomic():
            left = self.conn.execute(
                "SELECT count(*) FROM bill_run_batches WHERE run_id = ? AND state = 'todo'", [run_id]
            ).fetchone()[0]
            row = self.conn.execute(
                "SELECT state, counts FROM bill_runs WHERE run_id = ? FOR UPDATE", [run_id]
            ).fetchone()
            if left == 0 and row[0] == "running":
                totals = {"issued": 0, "held": 0, "review": 0, "skipped": 0, **json.loads(row[1])}
                for (c,) in self.conn.execute(
                    "SELECT counts FROM bill_run_batches WHERE run_id = ? AND state = 'done'", [run_id]
                ):
                    for k, v in json.loads(c).items():
                        totals[k] = totals.get(k, 0) + v
                self.conn.execute(
                    "UPDATE bill_runs SET state = 'finished', finished_at = ?, counts = ? WHERE run_id = ?",
                    (now, json.dumps(totals, sort_keys=True), run_id),
                )
        return self.bill_run(run_id)

    def bill_run_batches(self, run_id: int) -> list[dict]:
        return list(self.db.query("SELECT * FROM bill_run_batches WHERE run_id = ? ORDER BY batch", [run_id]))

    def finish_run(self, run_id: int, now: float) -> dict:
        with self.db.atomic():
            self.conn.execute(
                "UPDATE bill_runs SET state = 'finished', finished_at = ? WHERE run_id = ?", (now, run_id)
            )
        return self.bill_run(run_id)

    # ------------------------------------------------------------ bills and review

    def bills(self, cycle: str, state: str | None = None) -> list[dict]:
        """The cycle's live bills (any state but ``void``), or those in ``state`` (``void`` too)."""
        sql, args = "SELECT * FROM bills WHERE cycle = ?", [cycle]
        if state is not None:
            sql, args = sql + " AND state = ?", args + [state]
        else:
            sql += " AND state != 'void'"
        return [_bill(r) for r in self.db.query(sql + " ORDER BY account_id", args)]

    def bill(self, account_id: str, cycle: str) -> dict | None:
        """The account's live bill for the cycle, else the last one voided (None: never billed)."""
        rows = list(
            self.db.query(
                "SELECT * FROM bills WHERE account_id = ? AND cycle = ?"
                " ORDER BY state = 'void', id DESC LIMIT 1",
                [account_id, cycle],
            )
        )
        return _bill(rows[0]) if rows else None

    def bill_by_id(self, bill_id: int) -> dict | None:
        rows = list(self.db.query("SELECT * FROM bills WHERE id = ?", [bill_id]))
        return _bill(rows[0]) if rows else None

    def update_bill(
        self, bill_id: int, changes: Mapping, audit: Mapping | None = None, notify: bool = False
    ) -> None:
        """Change a bill's columns (lists/maps as JSON) and append an audit row, in one transaction;
        ``notify`` queues its notifications too."""
        cols = {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in changes.items()}
        with self.db.atomic():
            self.conn.execute(
                "UPDATE bills SET %s WHERE id = ?" % ", ".join("%s = ?" % k for k in cols),
                [*cols.values(), bill_id],
            )
            if audit is not None:
                self.db["bill_audit"].insert({"bill_id": bill_id, **audit})
            if notify:
                b = self.bill_by_id(bill_id)
                self.queue_notifications(b["cycle"], [b["account_id"]], audit["at"] if audit else time.time())

    def void_bill(self, bill_id: int, reason: str, user: str, now: float) -> None:
        """One transaction: the bill becomes ``void`` (if still live), its audit row, and its
        notifications not yet sent are cancelled (the outbox's ``failed`` with the reason)."""
        with self.db.atomic():
            row = self.conn.execute("SELECT state FROM bills WHERE id = ?", (bill_id,)).fetchone()
            if row is None or row[0] == "void":
                raise BillingError("bill %d is not a live bill" % bill_id)
            self.conn.execute("UPDATE bills SET state = 'void', updated_at = ? WHERE id = ?", (now, bill_id))
            self.db["bill_audit"].insert(
                {
                    "bill_id": bill_id,
                    "action": "void",
                    "old_state": row[0],
                    "new_state": "void",
                    "reason": reason,
                    "user": user,
                    "at": now,
                }  # fmt: skip
            )
            self.cancel_bill_notifications(bill_id, "bill voided: " + reason)

    def bill_audit(self, bill_id: int) -> list[dict]:
        return list(self.db.query("SELECT * FROM bill_audit WHERE bill_id = ? ORDER BY id", [bill_id]))


def _links_args(links: Sequence[tuple]) -> tuple[str, str, str, str]:
    """``PG_LINKS``' four array literals from (account_id, meter_id, from_ts, to_ts) tuples."""
    accounts, meters, froms, tos = zip(*links, strict=True) if links else ((), (), (), ())
    return pg_text_array(accounts), pg_text_array(meters), _pg_int_array(froms), _pg_int_array(tos)


def _pg_int_array(values: Sequence[int | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(int(v)) for v in values]) + "}"


def _run(row: dict) -> dict:
    row["counts"] = json.loads(row["counts"])
    row["policy"] = json.loads(row["policy"])
    return row


def _bill(row: dict) -> dict:
    for c in ("reasons", "lines", "kwh_by_rate", "sources"):
        if row.get(c) is not None:
            row[c] = json.loads(row[c])
    return row
