"""Storage methods for the VEE engine (mixed into ``headend.db.storage.Storage``).

Every method is small and does one statement's worth of work; writes run in
their own transaction unless the caller holds one (``with store.db.atomic():``
groups several, e.g. one VEE run). All are idempotent where the engine re-runs:

  ``readings_for_vee(meter_id, from_ts=None, to_ts=None, states=None)``
      readings (decoded) ordered by ts, seq; ``states`` filters vee_state.
  ``set_vee_state(meter_id, seqs, state)``  e.g. "valid", "suspect", "estimated", "edited".
  ``add_vee_result(meter_id, ts, rule, outcome, detail=None, seq=None, run_at=...)``
      upsert on (meter_id, ts, rule): re-running a rule replaces its result.
  ``vee_results(meter_id, from_ts=None, to_ts=None)``
  ``upsert_estimate(meter_id, interval_start, interval_end, method, values, created_at=...)``
      upsert on (meter_id, interval_start, interval_end); values is JSON-able.
  ``mark_estimates_replaced(meter_id, from_ts, to_ts)``  estimates overlapping
      [from_ts, to_ts] get replaced_by_real = 1 (real data arrived); returns how many.
  ``estimates(meter_id, include_replaced=True)``
  ``add_audit(meter_id, target, old, new, reason, user, at=...) -> id``  append only.
  ``audit(meter_id=None)``
  ``replace_load_profile(meter_id, interval_s, from_ts, to_ts, rows)``  delete that
      meter's rows of that interval length with from_ts <= interval_start < to_ts,
      insert rows (dicts with interval_start, rate, wh_imp, wh_exp, source; integer Wh).
  ``load_profile(meter_id, interval_s, from_ts=None, to_ts=None)``
  ``set_meter_rating(meter_id, ib_ma=None, imax_ma=None, un_mv=None, rates=None)``

Manual readings (``headend.vee.manual``): ``reading_at``, ``reading_before``,
``next_manual_seq``, ``insert_manual_reading``, ``manual_readings``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping

from headend.db import partitions
from headend.db.engine import dialect, insert_id

_MANUAL_READING = "seq, ts, received_at, interval, imp, exp, balance, flags, vee_state"


def _j(value) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _range(sql: str, args: list, column: str, from_ts, to_ts, to_op: str = "<=") -> tuple[str, list]:
    if from_ts is not None:
        sql, args = sql + " AND %s >= ?" % column, args + [from_ts]
    if to_ts is not None:
        sql, args = sql + " AND %s %s ?" % (column, to_op), args + [to_ts]
    return sql, args


class VeeStorageMixin:
    db: object
    conn: object

    def _rows(self, sql: str, args: list, json_columns: Iterable[str] = ()) -> list[dict]:
        out = []
        for row in self.db.query(sql, args):
            for c in json_columns:
                if row.get(c) is not None:
                    row[c] = json.loads(row[c])
            out.append(row)
        return out

    def transaction(self):
        """One transaction around several writes (nests as savepoints)."""
        return self.db.atomic()

    def readings_for_vee(self, meter_id: str, from_ts=None, to_ts=None, states=None) -> list[dict]:
        sql, args = _range("SELECT * FROM readings WHERE meter_id = ?", [meter_id], "ts", from_ts, to_ts)
        if states:
            states = list(states)
            sql += " AND vee_state IN (%s)" % ", ".join("?" * len(states))
            args += states
        return self._rows(sql + " ORDER BY ts, seq", args, ("imp", "exp", "q", "inst"))

    def set_vee_state(self, meter_id: str, seqs: Iterable[int], state: str) -> int:
        with self.db.atomic():
            cur = self.conn.executemany(
                "UPDATE readings SET vee_state = ? WHERE meter_id = ? AND seq = ?",
                [(state, meter_id, s) for s in seqs],
            )
            return cur.rowcount

    def add_vee_result(
        self,
        meter_id: str,
        ts: int,
        rule: str,
        outcome: str,
        detail=None,
        seq: int | None = None,
        run_at: float | None = None,
    ) -> None:
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO vee_results (meter_id, ts, rule, seq, outcome, detail, run_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id, ts, rule) DO UPDATE SET"
                " seq = excluded.seq, outcome = excluded.outcome, detail = excluded.detail,"
                " run_at = excluded.run_at",  # both engines' upsert: the row replaced
                (meter_id, ts, rule, seq, outcome, _j(detail), time.time() if run_at is None else run_at),
            )

    def vee_results(self, meter_id: str, from_ts=None, to_ts=None) -> list[dict]:
        sql, args = _range("SELECT * FROM vee_results WHERE meter_id = ?", [meter_id], "ts", from_ts, to_ts)
        return self._rows(sql + " ORDER BY ts, rule", args, ("detail",))

    def upsert_estimate(
        self,
        meter_id: str,
        interval_start: int,
        interval_end: int,
        method: str,
        values,
        created_at: float | None = None,
    ) -> None:
        with self.db.atomic():
            self.conn.execute(
                "INSERT INTO estimates (meter_id, interval_start, interval_end, method, [values],"
                " replaced_by_real, created_at) VALUES (?, ?, ?, ?, ?, 0, ?)"
                " ON CONFLICT (meter_id, interval_start, interval_end) DO UPDATE SET"
                " method = excluded.method, [values] = excluded.[values], replaced_by_real = 0,"
                " created_at = excluded.created_at",  # both engines' upsert: the row replaced
                (
                    meter_id,
                    interval_start,
                    interval_end,
                    method,
                    _j(values),
                    time.time() if created_at is None else created_at,
                ),
            )

    def mark_estimates_replaced(self, meter_id: str, from_ts: int, to_ts: int) -> int:
        with self.db.atomic():
            return self.conn.execute(
                "UPDATE estimates SET replaced_by_real = 1 WHERE meter_id = ? AND replaced_by_real = 0"
                " AND interval_start < ? AND interval_end > ?",
                (meter_id, to_ts, from_ts),
            ).rowcount

    def estimates(self, meter_id: str, include_replaced: bool = True) -> list[dict]:
        sql = "SELECT * FROM estimates WHERE meter_id = ?" + (
            "" if include_replaced else " AND replaced_by_real = 0"
        )
        return self._rows(sql + " ORDER BY interval_start", [meter_id], ("values",))

    def add_audit(
        self, meter_id: str, target: str, old, new, reason: str, user: str, at: float | None = None
    ) -> int:
        with self.db.atomic():
            return insert_id(
                self.conn,
                "INSERT INTO audit (meter_id, target, old, new, reason, user, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (meter_id, target, _j(old), _j(new), reason, user, time.time() if at is None else at),
            )

    def audit(self, meter_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM audit", []
        if meter_id is not None:
            sql, args = sql + " WHERE meter_id = ?", [meter_id]
        return self._rows(sql + " ORDER BY id", args, ("old", "new"))

    def replace_load_profile(
        self, meter_id: str, interval_s: int, from_ts: int, to_ts: int, rows: Iterable[Mapping]
    ) -> int:
        rows = list(rows)
        if dialect(self.conn) == "postgresql" and rows:  # monthly partitions (headend/db/partitions.py)
            partitions.ensure(
                self.conn, "load_profile", {partitions.month_of(r["interval_start"]) for r in rows}
            )
        with self.db.atomic():
            self.conn.execute(
                "DELETE FROM load_profile WHERE meter_id = ? AND interval_s = ?"
                " AND interval_start >= ? AND interval_start < ?",
                (meter_id, interval_s, from_ts, to_ts),
            )
            return self.conn.executemany(
                "INSERT INTO load_profile"
                " (meter_id, interval_start, interval_s, rate, wh_imp, wh_exp, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        meter_id,
                        r["interval_start"],
                        interval_s,
                        r["rate"],
                        r["wh_imp"],
                        r["wh_exp"],
                        r["source"],
                    )
                    for r in rows
                ],
            ).rowcount

    def load_profile(self, meter_id: str, interval_s: int, from_ts=None, to_ts=None) -> list[dict]:
        sql, args = _range(
            "SELECT * FROM load_profile WHERE meter_id = ? AND interval_s = ?",
            [meter_id, interval_s],
            "interval_start",
            from_ts,
            to_ts,
            "<",
        )
        return self._rows(sql + " ORDER BY interval_start, rate", args)

    def set_meter_rating(self, meter_id: str, **rating: int | None) -> None:
        allowed = ("ib_ma", "imax_ma", "un_mv", "rates")
        bad = [k for k in rating if k not in allowed]
        if bad:
            raise ValueError("unknown rating field(s): %s" % ", ".join(bad))
        if rating:
            with self.db.atomic():
                self.conn.execute(
                    "UPDATE meters SET %s WHERE meter_id = ?" % ", ".join("%s = ?" % k for k in rating),
                    [*rating.values(), meter_id],
                )

    # ------------------------------------------------------------ manual readings

    def reading_at(self, meter_id: str, ts: int) -> dict | None:
        sql = "SELECT %s FROM readings WHERE meter_id = ? AND ts = ? ORDER BY seq" % _MANUAL_READING
        rows = self._rows(sql, [meter_id, ts], ("imp", "exp"))
        return rows[0] if rows else None

    def reading_before(self, meter_id: str, ts: int) -> dict | None:
        rows = self._rows(
            "SELECT %s, q FROM readings WHERE meter_id = ? AND ts < ? ORDER BY ts DESC, seq DESC LIMIT 1"
            % _MANUAL_READING,
            [meter_id, ts],
            ("imp", "exp", "q"),
        )
        return rows[0] if rows else None

    def next_manual_seq(self, meter_id: str) -> int:
        low = self.conn.execute("SELECT min(seq) FROM readings WHERE meter_id = ?", [meter_id]).fetchone()[0]
        return min(low or 0, 0) - 1

    def insert_manual_reading(self, reading: Mapping, marker: Mapping) -> None:
        """One readings row (vee_state pending) and its manual_readings marker, together."""
        if dialect(self.conn) == "postgresql":  # monthly partitions (headend/db/partitions.py)
            partitions.ensure(self.conn, "readings", [partitions.month_of(reading["ts"])])
        with self.db.atomic():
            self.db["readings"].insert(dict(reading))
            self.db["manual_readings"].insert(dict(marker))

    def manual_readings(self, meter_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM manual_readings", []
        if meter_id is not None:
            sql, args = sql + " WHERE meter_id = ?", [meter_id]
        return self._rows(sql + " ORDER BY meter_id, seq", args, ("imp", "exp"))
