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
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping

from headend.errors import CommandError


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
            cur = self.conn.execute(
                "INSERT INTO commands (meter_id, seq, cmd, args, frame, state, attempts, expires,"
                " next_attempt_at, ref, created_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)",
                (meter_id, seq, cmd, json.dumps(args), frame, expires, now, ref, now),
            )
        return self.command(cur.lastrowid)

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
