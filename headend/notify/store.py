"""The notification outbox's SQL (``NotifyStoreMixin``, part of ``headend.db.storage.Storage``).

Bill runs queue a notice per channel of each released bill (``queue_notifications``: e-mail
and/or webhook, the console when the account has neither); alerts queue theirs
(``queue_alert_notification``); ``headend.notify.outbox.send_pending`` takes the due rows
(``outbox_due``) and records each attempt (``outbox_update``). Idempotent on (bill_id,
channel) and (alert_id, channel): partial unique indexes, each over its own notices (m017).
A voided bill's notices not yet sent are dropped (``cancel_bill_notifications``: state
``failed``, the reason as the last error).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from headend.billing.store_sql import BILL_COLUMNS, PG_IN_IDS, marks, pg_text_array
from headend.db.engine import dialect

# The payload, by dialect: SQLite's json_object is PostgreSQL's json_build_object (as text).
_PAYLOAD = {
    d: fn + "('bill_id', b.id, 'account_id', b.account_id, 'cycle', b.cycle, 'total', b.total,"
    " 'currency', b.currency, 'state', b.state)" + cast
    for d, fn, cast in (("sqlite", "json_object", ""), ("postgresql", "json_build_object", "::text"))
}
# One pass over the bills: an e-mail and/or a webhook notice, or a console one without either.
# b.state != 'void' (implied by the IN list) lets SQLite take the partial unique index on
# (account_id, cycle); without it SQLite scanned every bill of every cycle for each batch (a
# million-account run: seconds per batch, in the process that commits). PostgreSQL's ``b.cycle || ''``
# does the same for its planner (headend/billing/store_sql.py BILL_STATES: 90 -> 25 ms a batch).
_CYCLE = {"sqlite": "b.cycle", "postgresql": "b.cycle || ''"}
_BILL_NOTIFY = {
    d: "INSERT INTO outbox (bill_id, channel, target, payload, state, attempts, next_attempt_at, created_at)"
    " SELECT b.id, ch.channel, CASE ch.channel WHEN 'email' THEN a.email WHEN 'webhook' THEN a.webhook END, "
    + payload
    + ", 'pending', 0, ?, ? FROM bills b JOIN accounts a USING (account_id)"
    " JOIN (SELECT 'email' AS channel UNION ALL SELECT 'webhook' UNION ALL SELECT 'console') ch"
    " ON CASE ch.channel WHEN 'email' THEN a.email IS NOT NULL WHEN 'webhook' THEN a.webhook IS NOT NULL"
    " ELSE a.email IS NULL AND a.webhook IS NULL END"
    " WHERE "
    + _CYCLE[d]
    + " = ? AND b.state IN ('issued', 'approved') AND b.state != 'void' AND b.account_id IN (%s)"
    " ON CONFLICT (bill_id, channel) WHERE bill_id IS NOT NULL DO NOTHING"
    for d, payload in _PAYLOAD.items()
}

# PostgreSQL, new bills' notices made by the head-end (copy_bill_notices_pg): the payload as
# _PAYLOAD["postgresql"] gives it, from the bill row's account_id, cycle, total, currency, state
_PG_PAYLOAD = '{"bill_id" : %d, "account_id" : %s, "cycle" : %s, "total" : %s, "currency" : %s, "state" : %s}'
_PAYLOAD_COLUMNS = tuple(BILL_COLUMNS.index(c) for c in ("account_id", "cycle", "total", "currency", "state"))
_COPY_OUTBOX = (
    "COPY outbox (bill_id, channel, target, payload, state, attempts, next_attempt_at, created_at) FROM STDIN"
)


_JSON_STRING = json.encoder.encode_basestring  # json.dumps(value, ensure_ascii=False) of a str, in C


def _pg_json(value: str | None) -> str:
    """A text value as json_build_object writes it (JSON, non-ASCII as is); None as null."""
    return "null" if value is None else _JSON_STRING(value)


_ALERT_NOTIFY = (
    "INSERT INTO outbox (alert_id, channel, target, payload, state, attempts, next_attempt_at, created_at)"
    " VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)"
    " ON CONFLICT (alert_id, channel) WHERE alert_id IS NOT NULL DO NOTHING"
)


def _j(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class NotifyStoreMixin:
    db: object
    conn: sqlite3.Connection

    def queue_notifications(self, cycle: str, ids: Sequence[str], now: float) -> None:
        """Outbox rows for the released bills of ``ids`` (idempotent on (bill_id, channel))."""
        for i in range(0, len(ids), 30000):
            part = ids[i : i + 30000]
            if dialect(self.conn) == "postgresql":  # one array parameter (headend/billing/store_sql.py)
                sql, args = _BILL_NOTIFY["postgresql"].replace(" IN (%s)", PG_IN_IDS), [pg_text_array(part)]
            else:
                sql, args = _BILL_NOTIFY["sqlite"] % marks(part), part
            self.conn.execute(sql, (now, now, cycle, *args))

    def copy_bill_notices_pg(self, issued: Sequence[tuple], contacts: Mapping, now: float) -> None:
        """PostgreSQL: the outbox rows ``queue_notifications`` would make for new bills, made here
        and stored by COPY: ``issued`` is (bill_id, bill row in BILL_COLUMNS order) of bills just
        stored (none has a notice yet), ``contacts`` account_id -> (email, webhook). The payload is
        the text PostgreSQL's json_build_object gives (``_PAYLOAD``: its " : " and ", ", strings
        escaped as JSON, UTF-8 as is)."""
        rows = []
        for bill_id, b in issued:
            email, webhook = contacts[b[0]]
            payload = _PG_PAYLOAD % (bill_id, *(_pg_json(b[i]) for i in _PAYLOAD_COLUMNS))
            for channel, target in (("email", email), ("webhook", webhook)):
                if target is not None:
                    rows.append((bill_id, channel, target, payload, "pending", 0, now, now))
            if email is None and webhook is None:
                rows.append((bill_id, "console", None, payload, "pending", 0, now, now))
        if rows:
            self.conn.copy_text(_COPY_OUTBOX, rows, 8)

    def cancel_bill_notifications(self, bill_id: int, reason: str) -> int:
        """The bill's pending notices become ``failed`` with ``reason`` (in the caller's transaction)."""
        return self.conn.execute(
            "UPDATE outbox SET state = 'failed', last_error = ? WHERE bill_id = ? AND state = 'pending'",
            (reason, bill_id),
        ).rowcount

    def queue_alert_notification(self, alert_id: int, channel: str, target: str | None, payload: Mapping,
                                 now: float) -> int:  # fmt: skip
        """1 if queued, 0 if this alert already has a notification on this channel."""
        with self.db.atomic():
            return self.conn.execute(
                _ALERT_NOTIFY, (alert_id, channel, target, _j(payload), now, now)
            ).rowcount

    def outbox_due(self, now: float, limit: int = 1000) -> list[dict]:
        return list(
            self.db.query(
                "SELECT * FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                [now, limit],
            )
        )

    def outbox(self, state: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM outbox", []
        if state is not None:
            sql, args = sql + " WHERE state = ?", [state]
        return list(self.db.query(sql + " ORDER BY id", args))

    def outbox_update(self, outbox_id: int, **changes) -> None:
        with self.db.atomic():
            self.conn.execute(
                "UPDATE outbox SET %s WHERE id = ?" % ", ".join("%s = ?" % k for k in changes),
                [*changes.values(), outbox_id],
            )
