"""Storage methods of the web dashboard (mixed into ``headend.db.storage.Storage``).

Users and sessions (``m007_web_users``):
  ``add_web_user(name, role, kdf, salt, password_hash, now)`` (WebUserError if taken),
  ``web_user(name)``, ``web_users()`` (no key material), ``add_web_session(...)``,
  ``web_session(token_hash, now)`` (the live session with its user's role, else None),
  ``delete_web_session(token_hash)``, ``purge_web_sessions(now)``.
Read models of the pages, each one query or two:
  ``fleet_counts()``, ``active_alert_counts()``, ``fleet_meters(after, limit, offline)``,
  ``readings_window(from_ts, to_ts, meter_id=None)`` (each meter's last reading at or before
  ``from_ts`` and every reading in (from_ts, to_ts]: the deltas of the window),
  ``meter_account(meter_id)``, ``latest_reading_ts(meter_id)``, ``reading_span(meter_id)``,
  ``recent_events(meter_id, limit)``, ``recent_commands(meter_id, limit)``, ``meter_bills(meter_id)``,
  ``review_queue(limit)``,
  ``cycle_bills(cycle, state, after, limit)``, ``bill_cycles()``, ``prepaid_overview()``,
  ``account_tariff_ids(billing)``, ``recent_topups(limit, account_id=None)``.
"""

from __future__ import annotations

import json
import sqlite3

from headend.errors import WebUserError  # noqa: F401

_WINDOW = (
    "SELECT r.meter_id, r.seq, r.ts, r.imp FROM readings r WHERE r.ts > ? AND r.ts <= ?{m}"
    " UNION ALL"
    " SELECT r.meter_id, r.seq, r.ts, r.imp FROM meters m JOIN readings r ON r.meter_id = m.meter_id"
    " AND r.ts = (SELECT max(x.ts) FROM readings x WHERE x.meter_id = m.meter_id AND x.ts <= ?)"
    " WHERE 1 = 1{mm}"
    " ORDER BY 1, 3, 2"
)
_FLEET = (
    "SELECT m.meter_id, m.online, m.last_seen, m.fw, m.board, l.account_id,"
    " (SELECT count(*) FROM alerts a WHERE a.meter_id = m.meter_id AND a.state != 'resolved') AS alerts"
    " FROM meters m LEFT JOIN account_meters l ON l.meter_id = m.meter_id AND l.to_ts IS NULL"
    " WHERE m.meter_id > ?{offline} ORDER BY m.meter_id LIMIT ?"
)
_PREPAID = (
    "SELECT a.account_id, a.name, l.meter_id,"
    " (SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) FROM prepaid_ledger g"
    " WHERE g.account_id = a.account_id) AS ledger_balance,"
    " (SELECT r.balance FROM readings r WHERE r.meter_id = l.meter_id AND r.balance IS NOT NULL"
    " ORDER BY r.ts DESC, r.seq DESC LIMIT 1) AS meter_balance,"
    " (SELECT count(*) FROM payments p JOIN commands c ON c.id = p.command_id"
    " WHERE p.account_id = a.account_id AND c.state IN ('queued', 'sent')) AS in_flight"
    " FROM accounts a LEFT JOIN account_meters l ON l.account_id = a.account_id AND l.to_ts IS NULL"
    " WHERE a.billing = 'prepaid' ORDER BY a.account_id"
)
_TOPUPS = (
    "SELECT p.payment_id, p.account_id, p.meter_id, p.amount, p.source, p.paid_at, p.received_at,"
    " c.id AS command_id, c.seq, c.state, c.attempts, c.result, c.reason, c.expires, c.sent_at,"
    " c.done_at, c.ack_ts FROM payments p LEFT JOIN commands c ON c.id = p.command_id"
)


class WebStorageMixin:
    db: object
    conn: sqlite3.Connection

    # ------------------------------------------------------------ users

    def add_web_user(self, name: str, role: str, kdf: str, salt: str, password_hash: str,
                     now: float) -> dict:  # fmt: skip
        try:
            with self.db.atomic():
                self.conn.execute(
                    "INSERT INTO web_users (name, role, kdf, salt, password_hash, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, role, kdf, salt, password_hash, now, now),
                )
        except sqlite3.IntegrityError:
            raise WebUserError("web user %r already exists" % name)
        return self.web_user(name)

    def web_user(self, name: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM web_users WHERE name = ?", [name]))
        return rows[0] if rows else None

    def web_users(self) -> list[dict]:
        return list(self.db.query("SELECT name, role, created_at, updated_at FROM web_users ORDER BY name"))

    # ------------------------------------------------------------ sessions

    def add_web_session(self, token_hash: str, user: str, csrf: str, ip: str | None, now: float,
                        expires_at: float) -> None:  # fmt: skip
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO web_sessions (token_hash, user, csrf, ip, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (token_hash, user, csrf, ip, now, expires_at),
            )

    def web_session(self, token_hash: str, now: float) -> dict | None:
        rows = list(
            self.db.query(
                "SELECT s.token_hash, s.user, s.csrf, s.created_at, s.expires_at, u.role"
                " FROM web_sessions s JOIN web_users u ON u.name = s.user"
                " WHERE s.token_hash = ? AND s.expires_at > ?",
                [token_hash, now],
            )
        )
        return rows[0] if rows else None

    def delete_web_session(self, token_hash: str) -> None:
        with self.db.atomic():
            self.conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", [token_hash])

    def purge_web_sessions(self, now: float) -> int:
        with self.db.atomic():
            return self.conn.execute("DELETE FROM web_sessions WHERE expires_at <= ?", [now]).rowcount

    # ------------------------------------------------------------ fleet

    def fleet_counts(self) -> dict:
        total, online = self.conn.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN online = 1 THEN 1 ELSE 0 END), 0) FROM meters"
        ).fetchone()
        online = int(online)  # PostgreSQL's sum is a numeric
        return {"meters": total, "online": online, "offline": total - online}

    def active_alert_counts(self) -> dict[str, dict[str, int]]:
        """state -> severity -> count of open and acknowledged alerts."""
        out: dict[str, dict[str, int]] = {}
        for state, severity, n in self.conn.execute(
            "SELECT state, severity, count(*) FROM alerts WHERE state != 'resolved' GROUP BY 1, 2"
        ):
            out.setdefault(state, {})[severity] = n
        return out

    def fleet_meters(self, after: str = "", limit: int = 500, offline: bool = False) -> list[dict]:
        """A page of meters (id order, after ``after``) with the open link's account and the
        count of active alerts; ``offline``: only meters not online."""
        sql = _FLEET.format(offline=" AND coalesce(m.online, 0) != 1" if offline else "")
        return list(self.db.query(sql, [after, limit]))

    def readings_window(self, from_ts: int, to_ts: int, meter_id: str | None = None) -> list[dict]:
        """(meter_id, seq, ts, imp) by meter, ts, seq: each meter's latest readings at or before
        ``from_ts`` (the baseline) and its readings in (from_ts, to_ts]; ``imp`` decoded."""
        one = meter_id is not None
        sql = _WINDOW.format(m=" AND r.meter_id = ?" if one else "", mm=" AND m.meter_id = ?" if one else "")
        args = [from_ts, to_ts, *([meter_id] if one else []), from_ts, *([meter_id] if one else [])]
        rows = list(self.db.query(sql, args))
        for r in rows:
            r["imp"] = json.loads(r["imp"])
        return rows

    # ------------------------------------------------------------ one meter

    def meter_account(self, meter_id: str) -> dict | None:
        """The account on the meter's open link (id, name, billing, zone, address), or None."""
        rows = list(
            self.db.query(
                "SELECT a.account_id, a.name, a.billing, a.zone, a.address FROM account_meters l"
                " JOIN accounts a ON a.account_id = l.account_id WHERE l.meter_id = ? AND l.to_ts IS NULL"
                " ORDER BY l.from_ts DESC LIMIT 1",
                [meter_id],
            )
        )
        return rows[0] if rows else None

    def latest_reading_ts(self, meter_id: str) -> int | None:
        return self.conn.execute("SELECT max(ts) FROM readings WHERE meter_id = ?", [meter_id]).fetchone()[0]

    def reading_span(self, meter_id: str) -> tuple[int | None, int | None]:
        """(first, latest) reading ts of a meter; (None, None) without readings."""
        first, latest = self.conn.execute(
            "SELECT min(ts), max(ts) FROM readings WHERE meter_id = ?", [meter_id]
        ).fetchone()
        return first, latest

    def recent_events(self, meter_id: str, limit: int = 100) -> list[dict]:
        rows = list(
            self.db.query(
                "SELECT seq, ts, code, detail, received_at FROM events WHERE meter_id = ?"
                " ORDER BY ts DESC, seq DESC LIMIT ?",
                [meter_id, limit],
            )
        )
        for r in rows:
            r["detail"] = None if r["detail"] is None else json.loads(r["detail"])
        return rows

    def recent_commands(self, meter_id: str, limit: int = 50) -> list[dict]:
        rows = list(
            self.db.query(
                "SELECT id, seq, cmd, args, state, attempts, result, reason, ref, created_at, sent_at,"
                " done_at FROM commands WHERE meter_id = ? ORDER BY seq DESC LIMIT ?",
                [meter_id, limit],
            )
        )
        for r in rows:
            r["args"] = json.loads(r["args"])
        return rows

    def meter_bills(self, meter_id: str) -> list[dict]:
        """Bills of every account the meter was ever linked to, newest cycle first."""
        return list(
            self.db.query(
                "SELECT id, account_id, cycle, state, total, currency, energy_kwh FROM bills"
                " WHERE account_id IN (SELECT account_id FROM account_meters WHERE meter_id = ?)"
                " ORDER BY cycle DESC, account_id",
                [meter_id],
            )
        )

    # ------------------------------------------------------------ bills

    def review_queue(self, limit: int = 500) -> list[dict]:
        """Bills held or in review, of every cycle, oldest cycle first."""
        rows = list(
            self.db.query(
                "SELECT id, account_id, cycle, state, reasons, total, currency, energy_kwh, updated_at"
                " FROM bills WHERE state IN ('held', 'review') ORDER BY cycle, account_id LIMIT ?",
                [limit],
            )
        )
        for r in rows:
            r["reasons"] = json.loads(r["reasons"])
        return rows

    def cycle_bills(
        self, cycle: str, state: str | None = None, after: str = "", limit: int = 200
    ) -> list[dict]:
        """A page of a cycle's bills in account order, after account ``after``."""
        sql, args = (
            "SELECT id, account_id, cycle, state, total, currency, energy_kwh FROM bills WHERE cycle = ?",
            [cycle],
        )
        if state is not None:
            sql, args = sql + " AND state = ?", args + [state]
        return list(
            self.db.query(sql + " AND account_id > ? ORDER BY account_id LIMIT ?", args + [after, limit])
        )

    def bill_cycles(self) -> list[dict]:
        """Each cycle (newest first) with its count of bills by state."""
        out: dict[str, dict] = {}
        for cycle, state, n in self.conn.execute(
            "SELECT cycle, state, count(*) FROM bills GROUP BY 1, 2 ORDER BY 1 DESC, 2"
        ):
            out.setdefault(cycle, {"cycle": cycle, "states": {}})["states"][state] = n
        return list(out.values())

    # ------------------------------------------------------------ prepaid

    def prepaid_overview(self) -> list[dict]:
        """Prepaid accounts: meter, ledger balance, the meter's last reported balance, top-ups
        in flight (milli-units)."""
        return list(self.db.query(_PREPAID))

    def account_tariff_ids(self, billing: str | None = None) -> dict[str, str | None]:
        """account_id -> tariff_id of every account (of one billing kind, when given)."""
        sql, args = "SELECT account_id, tariff_id FROM accounts", []
        if billing is not None:
            sql, args = sql + " WHERE billing = ?", [billing]
        return dict(self.conn.execute(sql, args).fetchall())

    def recent_topups(self, limit: int = 200, account_id: str | None = None) -> list[dict]:
        sql, args = _TOPUPS, []
        if account_id is not None:
            sql, args = sql + " WHERE p.account_id = ?", [account_id]
        return list(self.db.query(sql + " ORDER BY p.received_at DESC, p.payment_id LIMIT ?", args + [limit]))
