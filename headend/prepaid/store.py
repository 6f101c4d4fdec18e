"""Storage methods for prepaid accounts (mixed into ``headend.db.storage.Storage``).

Credits: ``record_credit(payment, make_command, now)`` stores a payment, its ledger entry and
  its signed top-up command in one transaction, idempotent on ``payment_id``;
  ``add_adjustment``. Lookups: ``prepaid_meter(account_id)``, ``prepaid_account_of(meter_id)``,
  ``prepaid_accounts()``.
Ledger: ``ledger(account_id)``, ``ledger_balance``, ``credits_on_meter(account_id, ts)``,
  ``topups_in_flight``, ``prepaid_cursor``/``commit_sync`` (debits and alerts of one sync),
  ``prepaid_alerts(account_id=None)``.
Top-ups: ``topups()``, ``topup(payment_id)``: payments with their command's delivery state
  (the command queue itself is ``headend.commands.store``).

Errors are ``PrepaidStorageError`` (a ``PrepaidError``) naming what is wrong.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence

from headend.db.engine import insert_id
from headend.errors import PrepaidStorageError  # noqa: F401

_TOPUPS = (
    "SELECT p.payment_id, p.account_id, p.meter_id, p.amount, p.source, p.paid_at, p.received_at,"
    " c.id AS command_id, c.seq, c.state, c.attempts, c.result, c.reason, c.expires, c.sent_at, c.done_at,"
    " c.ack_ts FROM payments p LEFT JOIN commands c ON c.id = p.command_id"
)


class PrepaidStorageMixin:
    db: object
    conn: sqlite3.Connection

    # ------------------------------------------------------------ accounts

    def prepaid_accounts(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT account_id FROM accounts WHERE billing = 'prepaid'")]

    def prepaid_meter(self, account_id: str) -> str:
        """The meter on the account's open link; PrepaidStorageError if none or not prepaid."""
        row = self.conn.execute("SELECT billing FROM accounts WHERE account_id = ?", [account_id]).fetchone()
        if row is None:
            raise PrepaidStorageError("unknown account %r" % account_id, "account_id")
        if row[0] != "prepaid":
            raise PrepaidStorageError("account %r is not prepaid" % account_id, "account_id")
        link = self.conn.execute(
            "SELECT meter_id FROM account_meters WHERE account_id = ? AND to_ts IS NULL"
            " ORDER BY from_ts DESC LIMIT 1",
            [account_id],
        ).fetchone()
        if link is None:
            raise PrepaidStorageError("account %r has no meter linked" % account_id, "account_id")
        return link[0]

    def prepaid_account_of(self, meter_id: str) -> str:
        row = self.conn.execute(
            "SELECT a.account_id, a.billing FROM account_meters m JOIN accounts a USING (account_id)"
            " WHERE m.meter_id = ? AND m.to_ts IS NULL ORDER BY m.from_ts DESC LIMIT 1",
            [meter_id],
        ).fetchone()
        if row is None:
            raise PrepaidStorageError("meter %r is not linked to an account" % meter_id, "meter_id")
        if row[1] != "prepaid":
            raise PrepaidStorageError(
                "meter %r belongs to postpaid account %r" % (meter_id, row[0]), "meter_id"
            )
        return row[0]

    # ------------------------------------------------------------ credits

    def record_credit(
        self,
        payment: Mapping,
        make_command: Callable[[int, int], tuple[int, Mapping, bytes, int | None]],
        now: float,
    ) -> dict:
        """Store a payment (payment_id, account_id, meter_id, amount, source, paid_at, body),
        its ``topup`` ledger entry and its top-up command, in one transaction.

        ``make_command(seq, topup_id) -> (cmd, args, frame, expires)`` builds the sealed
        command with the meter's next command seq and top-up id. A payment id already stored
        with the same account and amount is a replay: nothing changes and ``duplicate`` is
        True; with another account or amount it is a PrepaidStorageError."""
        with self.db.atomic():
            old = self.conn.execute(
                "SELECT account_id, amount FROM payments WHERE payment_id = ?", [payment["payment_id"]]
            ).fetchone()
            if old is not None:
                if tuple(old) != (payment["account_id"], payment["amount"]):
                    raise PrepaidStorageError(
                        "payment id %r was already used for another payment" % payment["payment_id"],
                        "payment_id",
                    )
                return {**self.topup(payment["payment_id"]), "duplicate": True}
            meter_id = payment["meter_id"]
            self.conn.execute(
                "INSERT INTO command_counters (meter_id, seq, topup_id) VALUES (?, 0, 0)"
                " ON CONFLICT (meter_id) DO NOTHING",
                [meter_id],
            )
            seq, topup_id = self.conn.execute(
                "UPDATE command_counters SET seq = seq + 1, topup_id = topup_id + 1 WHERE meter_id = ?"
                " RETURNING seq, topup_id",
                [meter_id],
            ).fetchone()
            cmd, args, frame, expires = make_command(seq, topup_id)
            command_id = insert_id(
                self.conn,
                "INSERT INTO commands (meter_id, seq, cmd, args, frame, state, attempts, expires,"
                " next_attempt_at, ref, created_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)",
                (meter_id, seq, cmd, json.dumps(args), frame, expires, now, payment["payment_id"], now),
            )
            row = {k: payment.get(k) for k in ("payment_id", "account_id", "meter_id", "amount", "source")}
            row.update(paid_at=payment.get("paid_at"), body=payment.get("body"), command_id=command_id)
            self.db["payments"].insert({**row, "received_at": now})
            self.conn.execute(
                "INSERT INTO prepaid_ledger (account_id, kind, amount, ref, user, at)"
                " VALUES (?, 'topup', ?, ?, ?, ?)",
                (payment["account_id"], payment["amount"], payment["payment_id"], payment["source"], now),
            )
        return {**self.topup(payment["payment_id"]), "duplicate": False}

    def add_adjustment(self, account_id: str, amount: int, reason: str, user: str, now: float) -> dict:
        with self.db.atomic():
            entry_id = insert_id(
                self.conn,
                "INSERT INTO prepaid_ledger (account_id, kind, amount, ref, user, at)"
                " VALUES (?, 'adjustment', ?, ?, ?, ?)",
                (account_id, amount, reason, user, now),
            )
        return next(iter(self.db.query("SELECT * FROM prepaid_ledger WHERE id = ?", [entry_id])))

    # ------------------------------------------------------------ ledger

    def ledger(self, account_id: str) -> list[dict]:
        """Entries in order; a top-up carries its command's delivery ``state``."""
        return list(
            self.db.query(
                "SELECT l.*, c.state AS delivery FROM prepaid_ledger l"
                " LEFT JOIN payments p ON l.kind = 'topup' AND p.payment_id = l.ref"
                " LEFT JOIN commands c ON c.id = p.command_id WHERE l.account_id = ? ORDER BY l.id",
                [account_id],
            )
        )

    def ledger_balance(self, account_id: str) -> int:
        return int(  # PostgreSQL's sum of a BIGINT is a numeric
            self.conn.execute(
                "SELECT coalesce(sum(amount), 0) FROM prepaid_ledger WHERE account_id = ?", [account_id]
            ).fetchone()[0]
        )

    def credits_on_meter(self, account_id: str, ts: int) -> int:
        """Adjustments, plus top-ups the meter acked as applied at or before its time ``ts``."""
        return int(
            self.conn.execute(
                "SELECT coalesce(sum(l.amount), 0) FROM prepaid_ledger l"
                " LEFT JOIN payments p ON l.kind = 'topup' AND p.payment_id = l.ref"
                " LEFT JOIN commands c ON c.id = p.command_id WHERE l.account_id = ? AND"
                " (l.kind = 'adjustment' OR (l.kind = 'topup' AND c.state = 'acked' AND c.ack_ts <= ?))",
                (account_id, ts),
            ).fetchone()[0]
        )

    def topups_in_flight(self, account_id: str) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM payments p JOIN commands c ON c.id = p.command_id"
            " WHERE p.account_id = ? AND c.state IN ('queued', 'sent')",
            [account_id],
        ).fetchone()[0]

    def prepaid_cursor(self, account_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM prepaid_state WHERE account_id = ?", [account_id]))
        if not rows:
            return None
        rows[0]["imp"] = json.loads(rows[0]["imp"])
        return rows[0]

    def commit_sync(
        self,
        account_id: str,
        meter_id: str,
        cursor: Mapping,
        debit: int,
        ref: str,
        alerts: Sequence[Mapping],
        now: float,
    ) -> None:
        """One transaction: the debit entry (if any), the new cursor, the alerts (once per reading)."""
        with self.db.atomic():
            if debit:
                self.conn.execute(
                    "INSERT INTO prepaid_ledger (account_id, kind, amount, ref, user, at)"
                    " VALUES (?, 'debit', ?, ?, 'sync', ?)",
                    (account_id, -debit, ref, now),
                )
            self.conn.execute(
                "INSERT INTO prepaid_state (account_id, meter_id, seq, ts, imp, acc, synced_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET"
                " meter_id = excluded.meter_id, seq = excluded.seq, ts = excluded.ts, imp = excluded.imp,"
                " acc = excluded.acc, synced_at = excluded.synced_at",
                (
                    account_id,
                    meter_id,
                    cursor["seq"],
                    cursor["ts"],
                    json.dumps(list(cursor["imp"])),
                    cursor["acc"],
                    now,
                ),
            )
            for a in alerts:
                self.conn.execute(
                    "INSERT INTO prepaid_alerts (account_id, meter_id, seq, ts, meter_balance,"
                    " ledger_balance, difference, threshold, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (account_id, seq) DO NOTHING",
                    (account_id, meter_id, a["seq"], a["ts"], a["meter_balance"], a["ledger_balance"],
                     a["difference"], a["threshold"], now),
                )  # fmt: skip

    def prepaid_alerts(self, account_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM prepaid_alerts", []
        if account_id is not None:
            sql, args = sql + " WHERE account_id = ?", [account_id]
        return list(self.db.query(sql + " ORDER BY id", args))

    # ------------------------------------------------------------ top-ups

    def topups(self) -> list[dict]:
        return list(self.db.query(_TOPUPS + " ORDER BY p.received_at, p.payment_id"))

    def topup(self, payment_id: str) -> dict:
        return next(iter(self.db.query(_TOPUPS + " WHERE p.payment_id = ?", [payment_id])))
