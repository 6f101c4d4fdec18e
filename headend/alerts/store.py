"""Storage methods for alerts and work orders (mixed into ``Storage``; manual readings: vee/store.py).

Rule inputs (``headend.alerts.gather``): ``alert_meters()`` (meters with their open
account link), ``alert_readings(meter_id, from_ts, until)``, ``last_received_reading(meter_id,
until)`` (by the head-end's clock, whatever the meter's ts), ``alert_events(meter_id,
since, until)`` (by receive time), ``alert_event_marks()``, ``last_relay_command(meter_id)``,
``vee_failed_readings(meter_id, from_ts)``.
Alerts: ``alerts(state=None, meter_id=None)``, ``alert(id)``, ``active_alerts()``,
  ``silenced_alerts()``, ``insert_alert(row)``, ``update_alert(id, **changes)``,
  ``add_alert_audit(...)``, ``alert_audit(alert_id=None)``, ``set_alert_state(id, to_state,
  user, note, now)`` (a person's acknowledge/resolve, validated and audited); an alert's
  notifications are queued by ``headend.notify.store`` (``queue_alert_notification``).
Work orders: ``insert_work_order(row)``, ``work_orders(state=None)``, ``work_order(id)``,
  ``close_work_order(id, user, findings, now)``.

Writes run in their own transaction unless the caller holds one (``store.transaction()``).
Errors are ``AlertError`` naming what was wrong.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

from headend.alerts import ACTIVE, ENGINE_USER
from headend.db.engine import insert_id
from headend.errors import AlertError

_READING = "seq, ts, received_at, interval, imp, exp, balance, flags, vee_state"
_METERS = (
    "SELECT m.meter_id, m.online, m.last_seen, m.status_seq, m.created_at, a.account_id, a.name, a.billing,"
    " a.tariff_id, a.zone, a.address, l.from_ts AS link_from FROM meters m"
    " LEFT JOIN account_meters l ON l.meter_id = m.meter_id AND l.to_ts IS NULL"
    " LEFT JOIN accounts a ON a.account_id = l.account_id ORDER BY m.meter_id"
)
TRANSITIONS = {("open", "acknowledged"), ("open", "resolved"), ("acknowledged", "resolved")}


def _decode(row: dict, columns=("imp", "exp", "detail", "args", "evidence")) -> dict:
    for c in columns:
        if isinstance(row.get(c), str):
            row[c] = json.loads(row[c])
    return row


def _j(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class AlertStorageMixin:
    db: object
    conn: sqlite3.Connection

    def _all(self, sql: str, args=()) -> list[dict]:
        return [_decode(r) for r in self.db.query(sql, list(args))]

    # ------------------------------------------------------------ rule inputs

    def alert_meters(self) -> list[dict]:
        return list(self.db.query(_METERS))

    def alert_readings(self, meter_id: str, from_ts: int, until: float) -> list[dict]:
        """Readings with ts >= from_ts received at or before ``until``, by ts then seq."""
        return self._all(
            "SELECT %s FROM readings WHERE meter_id = ? AND ts >= ? AND received_at <= ? ORDER BY ts, seq"
            % _READING,
            (meter_id, from_ts, until),
        )

    def last_received_reading(self, meter_id: str, until: float) -> dict | None:
        """The reading the head-end received last at or before ``until`` (``received_at``, the
        head-end's clock; then the highest seq), whatever its meter ``ts``: communication loss and
        clock drift are judged on it, not on a window of meter time."""
        rows = self._all(
            "SELECT %s FROM readings WHERE meter_id = ? AND received_at <= ? AND seq >= 0"
            " ORDER BY received_at DESC, seq DESC LIMIT 1" % _READING,
            (meter_id, until),
        )
        return rows[0] if rows else None

    def alert_events(self, meter_id: str, since: float, until: float) -> list[dict]:
        return self._all(
            "SELECT seq, ts, code, detail, received_at FROM events WHERE meter_id = ?"
            " AND received_at >= ? AND received_at <= ? ORDER BY seq",
            (meter_id, since, until),
        )

    def alert_event_marks(self) -> dict[tuple[str, str, str], int]:
        """(meter_id, rule, key) -> the highest event seq a resolved alert covered."""
        rows = self.conn.execute(
            "SELECT meter_id, rule, key, max(ref_seq) FROM alerts WHERE state = 'resolved'"
            " AND ref_seq IS NOT NULL GROUP BY meter_id, rule, key"
        )
        return {(m, r, k): s for m, r, k, s in rows}

    def last_relay_command(self, meter_id: str) -> dict | None:
        """The meter's last relay command (cmd 2) it acked as done (result 0 or 1)."""
        rows = self._all(
            "SELECT id, seq, args, ack_ts, done_at FROM commands WHERE meter_id = ? AND cmd = 2"
            " AND state = 'acked' AND result IN (0, 1) ORDER BY seq DESC LIMIT 1",
            (meter_id,),
        )
        return rows[0] if rows else None

    def vee_failed_readings(self, meter_id: str, from_ts: int) -> list[dict]:
        """Readings VEE left ``failed`` (not estimated or edited), one row per failing rule."""
        return self._all(
            "SELECT r.seq, r.ts, v.rule, v.detail FROM readings r LEFT JOIN vee_results v"
            " ON v.meter_id = r.meter_id AND v.seq = r.seq AND v.outcome = 'fail'"
            " WHERE r.meter_id = ? AND r.vee_state = 'failed' AND r.ts >= ? ORDER BY r.ts, r.seq, v.rule",
            (meter_id, from_ts),
        )

    # ------------------------------------------------------------ alerts

    def alerts(self, state: str | None = None, meter_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM alerts WHERE 1 = 1", []
        if state is not None:
            sql, args = sql + " AND state = ?", args + [state]
        if meter_id is not None:
            sql, args = sql + " AND meter_id = ?", args + [meter_id]
        return self._all(sql + " ORDER BY id", args)

    def alert(self, alert_id: int) -> dict | None:
        rows = self._all("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        return rows[0] if rows else None

    def active_alerts(self) -> list[dict]:
        return self._all("SELECT * FROM alerts WHERE state IN ('open', 'acknowledged') ORDER BY id")

    def silenced_alerts(self) -> list[dict]:
        return self._all("SELECT * FROM alerts WHERE state = 'resolved' AND silenced = 1 ORDER BY id")

    def insert_alert(self, row: Mapping) -> int:
        cols = {k: _j(v) if k == "evidence" else v for k, v in row.items()}
        with self.db.atomic():
            return insert_id(
                self.conn,
                "INSERT INTO alerts (%s) VALUES (%s)" % (", ".join(cols), ", ".join("?" * len(cols))),
                list(cols.values()),
            )

    def update_alert(self, alert_id: int, **changes) -> None:
        cols = {k: _j(v) if k == "evidence" else v for k, v in changes.items()}
        with self.db.atomic():
            self.conn.execute(
                "UPDATE alerts SET %s WHERE id = ?" % ", ".join("%s = ?" % k for k in cols),
                [*cols.values(), alert_id],
            )

    def add_alert_audit(self, alert_id, action: str, from_state, to_state, user: str, at: float,
                        note: str | None = None, work_order_id: int | None = None) -> int:  # fmt: skip
        with self.db.atomic():
            return insert_id(
                self.conn,
                "INSERT INTO alert_audit (alert_id, work_order_id, action, from_state, to_state, user, at,"
                " note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (alert_id, work_order_id, action, from_state, to_state, user, at, note),
            )

    def alert_audit(self, alert_id: int | None = None) -> list[dict]:
        sql, args = "SELECT * FROM alert_audit", []
        if alert_id is not None:
            sql, args = sql + " WHERE alert_id = ?", [alert_id]
        return list(self.db.query(sql + " ORDER BY id", args))

    def set_alert_state(self, alert_id: int, to_state: str, user: str, note: str | None, now: float) -> dict:
        """A person acknowledges or resolves an alert (open -> acknowledged -> resolved, or
        open -> resolved), audited. Resolving while the rule's condition holds silences it."""
        with self.db.atomic():
            old = self.alert(alert_id)
            if old is None:
                raise AlertError("unknown alert %r" % alert_id, "id")
            if (old["state"], to_state) not in TRANSITIONS:
                raise AlertError("alert %d is %s; it cannot become %s" % (alert_id, old["state"], to_state),
                                 "state")  # fmt: skip
            changes = {"state": to_state, "updated_at": now}
            if to_state == "resolved":
                changes.update(resolved_at=now, resolved_by=user, silenced=int(user != ENGINE_USER))
            self.update_alert(alert_id, **changes)
            action = "acknowledge" if to_state == "acknowledged" else "resolve"
            self.add_alert_audit(alert_id, action, old["state"], to_state, user, now, note)
        return self.alert(alert_id)

    # ------------------------------------------------------------ work orders

    def insert_work_order(self, row: Mapping) -> int:
        cols = {k: _j(v) if k == "evidence" else v for k, v in row.items()}
        with self.db.atomic():
            return insert_id(
                self.conn,
                "INSERT INTO work_orders (%s) VALUES (%s)" % (", ".join(cols), ", ".join("?" * len(cols))),
                list(cols.values()),
            )

    def work_orders(self, state: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM work_orders", []
        if state is not None:
            sql, args = sql + " WHERE state = ?", [state]
        return self._all(sql + " ORDER BY id", args)

    def work_order(self, work_order_id: int) -> dict | None:
        rows = self._all("SELECT * FROM work_orders WHERE id = ?", (work_order_id,))
        return rows[0] if rows else None

    def close_work_order(self, work_order_id: int, user: str, findings: str, now: float) -> dict:
        """Close with the crew's findings; its alert, if still active, is resolved with them."""
        with self.db.atomic():
            wo = self.work_order(work_order_id)
            if wo is None:
                raise AlertError("unknown work order %r" % work_order_id, "id")
            if wo["state"] != "open":
                raise AlertError("work order %d is already %s" % (work_order_id, wo["state"]), "state")
            self.conn.execute(
                "UPDATE work_orders SET state = 'closed', closed_at = ?, closed_by = ?, findings = ?"
                " WHERE id = ?",
                (now, user, findings, work_order_id),
            )
            self.add_alert_audit(wo["alert_id"], "workorder_close", "open", "closed", user, now, findings,
                                 work_order_id)  # fmt: skip
            alert = self.alert(wo["alert_id"]) if wo["alert_id"] is not None else None
            if alert is not None and alert["state"] in ACTIVE:
                note = "work order %d closed: %s" % (work_order_id, findings)
                self.set_alert_state(alert["id"], "resolved", user, note, now)
        return self.work_order(work_order_id)
