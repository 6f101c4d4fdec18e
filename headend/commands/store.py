"""Storage methods for operator commands of every type (mixed into ``headend.db.storage.Storage``).

The queue is the ``commands`` table of ``m004_prepaid`` that ``headend dispatch`` drains;
top-ups keep their own path (``record_credit``, which also books the payment). Here:

``enqueue_command(meter_id, make_command, now, ref=None)`` takes the meter's next command
  ``seq`` and stores the sealed command built for it, in one transaction.
``command(command_id)``: one command (``args`` decoded, ``frame`` kept).
``command_log(command_id)``: its history from ``command_log`` (``m006_commands``), which
  triggers on ``commands`` fill whoever changes the row: queued, every send (attempt n),
  acked / failed / expired with the result and reason.
``command_acks(meter_id, cmd_seq)``: every ack the meter sent for it (a resend's
  duplicate too), in the order the meter sent them.
``commands(meter_id)``: a meter's queue; for the dispatcher ``apply_acks(now)``,
  ``expire_commands(now)``, ``hold_offline(now, hold_s)``, ``due_commands(now, limit)``,
  ``mark_sent(id, now, next_at)``.

Offline meters (``meters.online = 0`` after a status: the will the broker published, ingested
by ``headend serve``) get each command once: its first send, which the broker keeps in the meter's
persistent session (meters connect with clean_session 0) and delivers on reconnection. No
resend while the meter is offline (``due_commands`` skips them and ``hold_offline`` keeps
pushing their next attempt ``hold_s`` ahead), so once the meter is back a resend goes only if
the command is still unacked a back-off after its return.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping

from headend.db.engine import insert_id
from headend.errors import CommandError

ACK_REASONS = {2: "stale", 3: "expired", 4: "bad_args", 5: "unsupported", 6: "failed"}
FINAL = ("acked", "failed", "expired")


def _reachable(alias: str) -> str:
    """SQL: the meter (``alias`` of ``meters``) is not offline by its will: online, or never heard
    from (no status yet, so no session of its own at the broker either: only resends reach it)."""
    return "(%s.online IS NULL OR %s.online != 0 OR %s.status_seq IS NULL)" % (alias, alias, alias)


class CommandStorageMixin:
    db: object
    conn: sqlite3.Connection

    def enqueue_command(
        self,
        meter_id: str,
        make_command: Callable[[int], tuple[int, Mapping, bytes, int | None]],
        now: float,
        ref: str | None = None,
    ) -> dict:
        """Store the command ``make_command(seq) -> (cmd, args, frame, expires)`` under the
        meter's next command seq, state ``queued``, due at once. CommandError if not registered."""
        with self.db.atomic():
            if self.conn.execute("SELECT 1 FROM meters WHERE meter_id = ?", [meter_id]).fetchone() is None:
                raise CommandError("unknown meter %r" % meter_id, "meter_id")
            self.conn.execute(
                "INSERT INTO command_counters (meter_id, seq, topup_id) VALUES (?, 0, 0)"
                " ON CONFLICT (meter_id) DO NOTHING",
                [meter_id],
            )
            (seq,) = self.conn.execute(
                "UPDATE command_counters SET seq = seq + 1 WHERE meter_id = ? RETURNING seq", [meter_id]
            ).fetchone()
            cmd, args, frame, expires = make_command(seq)
            command_id = insert_id(
                self.conn,
                "INSERT INTO commands (meter_id, seq, cmd, args, frame, state, attempts, expires,"
                " next_attempt_at, ref, created_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)",
                (meter_id, seq, cmd, json.dumps(args), frame, expires, now, ref, now),
            )
        return self.command(command_id)

    def command(self, command_id: int) -> dict | None:
        rows = list(self.db.query("SELECT * FROM commands WHERE id = ?", [command_id]))
        if not rows:
            return None
        rows[0]["args"] = json.loads(rows[0]["args"])
        return rows[0]

    def command_log(self, command_id: int) -> list[dict]:
        return list(
            self.db.query(
                "SELECT at, event, attempt, result, reason FROM command_log WHERE command_id = ? ORDER BY id",
                [command_id],
            )
        )

    def command_acks(self, meter_id: str, cmd_seq: int) -> list[dict]:
        rows = list(
            self.db.query(
                "SELECT seq, ts, result, detail, received_at FROM acks WHERE meter_id = ? AND cmd_seq = ?"
                " ORDER BY seq",
                [meter_id, cmd_seq],
            )
        )
        for r in rows:
            r["detail"] = None if r["detail"] is None else json.loads(r["detail"])
        return rows

    # ------------------------------------------------------------ the queue and the dispatcher

    def commands(self, meter_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM commands", []
        if meter_id is not None:
            sql, args = sql + " WHERE meter_id = ?", [meter_id]
        return [_command(r) for r in self.db.query(sql + " ORDER BY meter_id, seq", args)]

    def apply_acks(self, now: float) -> list[dict]:
        """Mark commands the meters acked (the first ack of each): result 0 done or 1 duplicate
        -> acked, 2..6 -> failed with the reason. An expired command that is acked after all
        becomes acked: the ack is the meter's word. Returns the commands changed."""
        rows = self.conn.execute(
            "SELECT c.id, a.result, a.ts FROM commands c JOIN acks a"
            " ON a.meter_id = c.meter_id AND a.cmd_seq = c.seq"
            " AND a.seq = (SELECT min(seq) FROM acks b WHERE b.meter_id = c.meter_id AND b.cmd_seq = c.seq)"
            " WHERE c.state IN ('queued', 'sent', 'expired')"
        ).fetchall()
        with self.db.atomic():
            for cid, result, ts in rows:
                state = "acked" if result in (0, 1) else "failed"
                self.conn.execute(
                    "UPDATE commands SET state = ?, result = ?, reason = ?, ack_ts = ?, done_at = ?"
                    " WHERE id = ?",
                    (state, result, ACK_REASONS.get(result), ts, now, cid),
                )
        return [_command(r) for r in self.db.query(
            "SELECT * FROM commands WHERE id IN (%s)" % ",".join(str(r[0]) for r in rows)
        )] if rows else []  # fmt: skip

    def expire_commands(self, now: float) -> int:
        """Commands not acked by their ``expires`` (meter clock, compared with ``now``) -> expired."""
        with self.db.atomic():
            return self.conn.execute(
                "UPDATE commands SET state = 'expired', reason = 'not acked before it expired', done_at = ?"
                " WHERE state IN ('queued', 'sent') AND expires IS NOT NULL AND expires <= ?",
                (now, int(now)),
            ).rowcount

    def hold_offline(self, now: float, hold_s: float) -> int:
        """Sent, unsettled commands of meters offline by their will: next attempt no sooner than
        ``now + hold_s`` (so the first resend comes ``hold_s`` after the meter is back at the
        earliest, once the copy the broker kept for it has had its chance to be acked)."""
        with self.db.atomic():
            return self.conn.execute(
                "UPDATE commands SET next_attempt_at = ? WHERE state = 'sent' AND next_attempt_at < ?"
                " AND meter_id IN (SELECT meter_id FROM meters m WHERE NOT %s)" % _reachable("m"),
                (now + hold_s, now + hold_s),
            ).rowcount

    def due_commands(self, now: float, limit: int = 1000) -> list[dict]:
        """Commands to publish now: for every meter with a command due, ALL its unsettled, unexpired
        commands in seq order. A meter takes a seq only above the highest it has taken and answers a
        lower one "stale", so a later command must never overtake an earlier one still in flight:
        an earlier command is sent again (the meter acks a repeat "duplicate") before the due one.
        A meter offline by its will gets only commands never sent (``attempts = 0``): the broker
        holds them, after the earlier ones it already holds, in the meter's session."""
        return [
            _command(r)
            for r in self.db.query(
                "SELECT c.* FROM commands c LEFT JOIN meters m USING (meter_id)"
                " WHERE c.state IN ('queued', 'sent') AND (c.expires IS NULL OR c.expires > ?)"
                " AND (%s OR c.attempts = 0) AND c.meter_id IN"
                " (SELECT d.meter_id FROM commands d LEFT JOIN meters n USING (meter_id)"
                " WHERE d.state IN ('queued', 'sent') AND d.next_attempt_at <= ? AND (d.expires IS NULL"
                " OR d.expires > ?) AND (%s OR d.attempts = 0))"
                " ORDER BY c.meter_id, c.seq LIMIT ?" % (_reachable("m"), _reachable("n")),
                [int(now), now, int(now), limit],
            )
        ]

    def mark_sent(self, command_id: int, now: float, next_attempt_at: float) -> None:
        with self.db.atomic():
            self.conn.execute(
                "UPDATE commands SET state = 'sent', attempts = attempts + 1, sent_at = ?,"
                " next_attempt_at = ? WHERE id = ? AND state IN ('queued', 'sent')",
                (now, next_attempt_at, command_id),
            )


def _command(row: dict) -> dict:
    row["args"] = json.loads(row["args"])
    return row
