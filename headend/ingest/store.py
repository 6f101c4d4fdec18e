"""Ingest's SQL (``IngestStoreMixin``, part of ``headend.db.storage.Storage``): batches,
readings, events, acks, quarantine and counters.

``commit_batch(IngestBatch)`` writes one batch in one transaction: readings/events/acks
idempotent on ``(meter_id, seq)`` (INSERT ... ON CONFLICT DO NOTHING: only the key conflict is
ignored, a NOT NULL violation still fails the batch), quarantine rows (a bounded sample per
meter per hour, the rest counted: ``headend.ingest.store_quarantine``), meter status and
last-seen, counter increments; it returns what it stored. ``insert_readings_batch``,
``quarantine``, ``bump``, ``set_online`` do one of those at a time. Queries: ``readings``,
``events``, ``acks``, ``quarantined``, ``quarantine_hours``, ``quarantine_summary``,
``counters``, ``count_readings``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter

from headend.db import engine, partitions
from headend.db.migrations import READING_KEYS_SETTING
from headend.ingest.store_quarantine import QuarantineStorageMixin

READING_COLUMNS = (
    "meter_id",
    "seq",
    "ts",
    "received_at",
    "interval",
    "imp",
    "exp",
    "q",
    "inst",
    "balance",
    "flags",
    "tariff",
    "raw",
)
STATUS_FIELDS = ("fw", "board", "metering", "status_rates", "tariff", "boot_count")
_INSERT_READING = "INSERT INTO readings (%s) VALUES (%s) ON CONFLICT (meter_id, seq) DO NOTHING" % (
    ", ".join(READING_COLUMNS),
    ", ".join("?" * len(READING_COLUMNS)),
)
_INSERT_EVENT = (
    "INSERT INTO events (meter_id, seq, ts, code, detail, received_at) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (meter_id, seq) DO NOTHING"
)
_INSERT_ACK = (
    "INSERT INTO acks (meter_id, seq, cmd_seq, result, detail, ts, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id, seq) DO NOTHING"
)
_BUMP = (
    "INSERT INTO counters (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = counters.value + ?"  # qualified: PostgreSQL asks
)
# the dialects' variants, side by side: SQLite's two-argument max() is PostgreSQL's greatest();
# on PostgreSQL readings are partitioned by month, their (meter_id, seq) kept once by
# reading_keys (headend/db/migrations.py: m001, m015): the _STAGE block below
_MAX = {"sqlite": "max", "postgresql": "greatest"}
_SEEN = {
    d: "UPDATE meters SET last_seen = %s(coalesce(last_seen, 0), ?) WHERE meter_id = ?" % f
    for d, f in _MAX.items()
}
# PostgreSQL: the batch's meters' last_seen in one statement, their rows locked in meter_id order
# (executemany: 36 us server + 16 us client CPU a meter; this: 25 + 5, tools/bench_pg_ingest.py --seen)
_SEEN_PG = (
    "WITH v AS (SELECT * FROM unnest(CAST(? AS text[]), CAST(? AS float8[])) AS v(meter_id, t)),"
    " l AS (SELECT m.meter_id, v.t FROM meters m JOIN v ON v.meter_id = m.meter_id"
    " ORDER BY m.meter_id FOR UPDATE OF m)"
    " UPDATE meters m SET last_seen = greatest(coalesce(m.last_seen, 0), l.t) FROM l"
    " WHERE m.meter_id = l.meter_id"
)
# PostgreSQL: a batch's readings go by COPY into a staging table, then one statement claims
# their keys in reading_keys (in key order, so concurrent batches wait rather than deadlock)
# and stores the rows whose keys it took, the first staged of each; m001's per-row trigger is
# told by the transaction-local setting that the keys are claimed (m015, docs/scaling.md).
# _CLAIM_NEW, for a batch of new keys (the usual one), inserts them plainly (ON CONFLICT's
# pre-check is a second index search a key: ~3 us of the server's CPU a reading); a key already
# taken fails it, and the batch's claim runs again as _CLAIM_FREE, which skips taken keys.
_STAGE_TYPES = ("int8",) + tuple(
    "bytea" if c == "raw" else "float8" if c == "received_at" else
    "text" if c in ("meter_id", "imp", "exp", "q", "inst") else "int8"
    for c in READING_COLUMNS
)  # fmt: skip
_STAGE = "CREATE TEMP TABLE IF NOT EXISTS reading_stage (ord int8, %s) ON COMMIT DELETE ROWS" % ", ".join(
    '"%s" %s' % ct for ct in zip(READING_COLUMNS, _STAGE_TYPES[1:], strict=True)
)
# binary: the client sends ints, floats and the frame as they are (text would hex the frame and
# print every number): ~2 us of the head-end's CPU a reading, and a little of the server's
_COPY_STAGE = "COPY reading_stage (ord, %s) FROM STDIN (FORMAT BINARY)" % ", ".join(
    '"%s"' % c for c in READING_COLUMNS
)
_CLAIMING = "SELECT set_config('%s', '%%s', true)" % READING_KEYS_SETTING  # no parameters: one round trip
_BEFORE_CLAIM = _STAGE + "; " + _CLAIMING % "claimed"
_SAVEPOINT = "reading_claim"
# the savepoint's end, the stage emptied (a nested batch leaves none behind), the trigger back
_AFTER_CLAIM = "RELEASE SAVEPOINT %s; DELETE FROM reading_stage; %s" % (_SAVEPOINT, _CLAIMING % "")
_COLS = ", ".join('"%s"' % c for c in READING_COLUMNS)
_CLAIM = (
    "WITH claimed AS (INSERT INTO reading_keys (meter_id, seq, ts)"
    " SELECT DISTINCT ON (meter_id, seq) meter_id, seq, ts FROM reading_stage ORDER BY meter_id, seq, ord%s)"
    " INSERT INTO readings (%s) SELECT DISTINCT ON (s.meter_id, s.seq) %s FROM reading_stage s%s"
    " ORDER BY s.meter_id, s.seq, s.ord"
)
_CLAIM_NEW = _CLAIM % ("", _COLS, ", ".join('s."%s"' % c for c in READING_COLUMNS), "")
_CLAIM_FREE = _CLAIM % (
    " ON CONFLICT (meter_id, seq) DO NOTHING RETURNING meter_id, seq",
    _COLS,
    ", ".join('s."%s"' % c for c in READING_COLUMNS),
    " JOIN claimed k ON k.meter_id = s.meter_id AND k.seq = s.seq",
)


def _copy_stage(conn, rows: Sequence[tuple]) -> None:
    """PostgreSQL: ``rows`` (READING_COLUMNS order) into reading_stage, numbered from 0, by
    binary COPY (whose types must be the columns' exactly: set, not guessed from the values)."""
    import psycopg

    try:
        with conn.raw.cursor().copy(_COPY_STAGE) as copy:
            copy.set_types(_STAGE_TYPES)
            for i, r in enumerate(rows):
                copy.write_row((i, *r))
    except psycopg.Error as e:
        raise engine._mapped(e) from e  # the sqlite3 exception family, as PgConnection raises


_INSERT_READING_PG = "INSERT INTO readings (%s) VALUES (%s)" % (
    ", ".join('"%s"' % c for c in READING_COLUMNS),
    ", ".join("?" * len(READING_COLUMNS)),
)
PG_READINGS_BY = "copy"  # or "executemany" (a row at a time, through the trigger): tools/bench_pg_ingest.py
RETRIES = 5  # PostgreSQL: a batch aborted as a deadlock (40P01) or serialization failure (40001)
RETRY_SQLSTATES = ("40P01", "40001")


class IngestBatch:
    """Rows for one ``commit_batch``, in the column order of the INSERTs above.

    readings: tuples in READING_COLUMNS order; events: (meter_id, seq, ts,
    code, detail_json, received_at); acks: (meter_id, seq, cmd_seq, result,
    detail_json, ts, received_at); quarantine: (received_at, topic, meter_id,
    reason, detail, payload); statuses: (meter_id, online, at, seq or None,
    {status field: value}) in arrival order; seen: meter_id -> latest time;
    counters: name -> increment."""

    __slots__ = ("readings", "events", "acks", "quarantine", "statuses", "seen", "counters")

    def __init__(self) -> None:
        self.readings: list[tuple] = []
        self.events: list[tuple] = []
        self.acks: list[tuple] = []
        self.quarantine: list[tuple] = []
        self.statuses: list[tuple] = []
        self.seen: dict[str, float] = {}
        self.counters: dict[str, int] = {}

    def __len__(self) -> int:
        return (
            len(self.readings) + len(self.events) + len(self.acks) + len(self.quarantine) + len(self.statuses)
        )

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


# Integers storage holds: a signed 64-bit INTEGER/BIGINT; a ts must also name a month (a partition
# on PostgreSQL) in years 1970-9999. The protocol's uints reach 2**64 - 1 (docs/protocol.md).
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
TS_MAX = 253402300799  # 9999-12-31T23:59:59Z
_INT_FIELDS = {  # (row index, field name) of each kind's integer columns; a ts checked against TS_MAX
    "reading": ((1, "seq"), (2, "ts"), (4, "interval"), (9, "balance"), (10, "flags"), (11, "tariff")),
    "event": ((1, "seq"), (2, "ts"), (3, "code")),
    "ack": ((1, "seq"), (2, "cmd_seq"), (3, "result"), (5, "ts")),
}


def _unstorable(pairs) -> str | None:
    """The first (field, value) of ``pairs`` storage cannot hold, as ``field value``; None."""
    for name, v in pairs:
        if type(v) is int and not INT64_MIN <= v <= (TS_MAX if name == "ts" else INT64_MAX):
            return "%s %d" % (name, v)
    return None


def _past_ts_max(batch: IngestBatch) -> bool:
    return any(
        rows and max(map(itemgetter(i), rows)) > TS_MAX
        for rows, i in ((batch.readings, 2), (batch.events, 2), (batch.acks, 5))
    )


def take_unstorable(batch: IngestBatch) -> int:
    """Move the batch's messages holding an integer storage cannot hold to its quarantine
    (reason "range", counted ``rejected:range``); how many were moved."""
    moved = 0
    for kind, rows in (
        ("reading", batch.readings),
        ("event", batch.events),
        ("ack", batch.acks),
        ("status", batch.statuses),
    ):
        keep = []
        for r in rows:
            if kind == "status":  # (meter_id, online, at, seq, {field: value})
                at, frame, bad = r[2], b"", _unstorable((("seq", r[3]), *r[4].items()))
            else:
                at = r[3] if kind == "reading" else r[-1]
                frame = r[READING_COLUMNS.index("raw")] if kind == "reading" else b""
                bad = _unstorable((name, r[i]) for i, name in _INT_FIELDS[kind])
            if bad is None:
                keep.append(r)
                continue
            moved += 1
            detail = "%s is beyond what the head-end stores (%s)" % (
                bad,
                "a time before year 10000" if bad.startswith("ts ") else "a signed 64-bit integer",
            )
            batch.quarantine.append((at, "ami/v1/%s/up/%s" % (r[0], kind), r[0], "range", detail, frame))
            batch.count("rejected:range")
        rows[:] = keep
    return moved


class IngestStoreMixin(QuarantineStorageMixin):
    db: object
    conn: sqlite3.Connection

    def commit_batch(self, batch: IngestBatch) -> dict:
        """Write the batch in one transaction; return {"accepted", "duplicates", "reused"}:
        messages newly stored or applied, identical re-sends, and readings whose
        (meter_id, seq) is stored with a different frame (quarantined as "seq_reused").
        Counters: accepted, accepted:<kind>, duplicates, rejected:<reason> (every refused
        frame; only a sample of them is kept as quarantine rows, _store_quarantine).

        On PostgreSQL several serve processes commit at once: meters' rows (last_seen) and
        counters are updated in key order, and a transaction PostgreSQL aborts as a deadlock or a
        serialization failure (a status, in arrival order, against another process's batch)
        is run again, up to ``RETRIES`` times, when the batch is its own transaction."""
        # A signed message may hold an integer storage cannot (a uint64 seq >= 2**63, a ts past
        # 9999): it would fail every batch it is redelivered in. It is taken out (quarantined as
        # "range") and the rest committed; looked for only when a batch fails (free on the hot
        # path), a ts first (SQLite would store it, but no date function could name it).
        if _past_ts_max(batch):
            take_unstorable(batch)
        try:
            return self._commit_retrying(batch)
        except Exception:
            if not take_unstorable(batch):  # any other failure is raised
                raise
        return self._commit_retrying(batch)

    def _commit_retrying(self, batch: IngestBatch) -> dict:
        retry = self._dialect() == "postgresql" and not self.conn.in_transaction
        for attempt in range(RETRIES + 1):
            try:
                return self._commit_batch(batch)
            except sqlite3.OperationalError as e:
                if not (retry and getattr(e, "sqlstate", None) in RETRY_SQLSTATES) or attempt == RETRIES:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _commit_batch(self, batch: IngestBatch) -> dict:
        counters = dict(batch.counters)

        def count(name, n):
            if n:
                counters[name] = counters.get(name, 0) + n

        pg = getattr(self, "dialect", "sqlite") == "postgresql"
        if pg and batch.readings:  # the months' partitions exist before the batch's transaction
            partitions.ensure(
                self.conn, "readings", {partitions.month_of(r[2]) for r in batch.readings}, self._partitions
            )
        with self.db.atomic():
            refused: list[tuple] = []  # quarantine rows: seq_reused readings, then the batch's
            accepted, duplicates, reused = self._insert_readings(batch, refused)
            count("accepted:reading", accepted)
            for kind, sql, rows in (("event", _INSERT_EVENT, batch.events), ("ack", _INSERT_ACK, batch.acks)):
                if rows:
                    n = self.conn.executemany(sql, rows).rowcount
                    count("accepted:" + kind, n)
                    accepted += n
                    duplicates += len(rows) - n
            self._store_quarantine(refused + batch.quarantine)
            for meter_id, online, at, seq, fields in batch.statuses:
                self._set_online(meter_id, online, at, seq, fields)
                count("accepted:will" if seq is None else "accepted:status", 1)
            accepted += len(batch.statuses)
            if batch.seen:
                # in meter_id order: two processes' batches lock the meters they share in one order
                seen = sorted(batch.seen.items())
                if pg:  # one statement for the batch's meters (a row each: a fleet's every reading)
                    self.conn.execute(_SEEN_PG, ([m for m, _t in seen], [t for _m, t in seen]))
                else:
                    self.conn.executemany(_SEEN[self._dialect()], [(t, m) for m, t in seen])
            count("accepted", accepted)
            count("duplicates", duplicates)
            count("rejected:seq_reused", reused)
            self._bump(counters)
        return {"accepted": accepted, "duplicates": duplicates, "reused": reused}

    def _insert_readings(self, batch: IngestBatch, refused: list[tuple]) -> tuple[int, int, int]:
        rows = batch.readings
        if not rows:
            return 0, 0, 0
        if self._dialect() == "postgresql":
            accepted = self._insert_readings_pg(rows)
        else:
            accepted = self.conn.executemany(_INSERT_READING, rows).rowcount
        if accepted == len(rows):
            return accepted, 0, 0
        # some were already there: a re-send of the same frame is a duplicate, a
        # different frame under a used seq is refused (docs/protocol.md: seq never reused)
        reused = 0
        raw_at = READING_COLUMNS.index("raw")
        for r in rows:
            stored = self.conn.execute(
                "SELECT raw FROM readings WHERE meter_id = ? AND seq = ?", (r[0], r[1])
            ).fetchone()
            if stored is not None and bytes(stored[0]) != r[raw_at]:  # None: its month was detached
                reused += 1
                refused.append(
                    (
                        r[3],
                        "ami/v1/%s/up/reading" % r[0],
                        r[0],
                        "seq_reused",
                        "seq %d already stored with another frame" % r[1],
                        r[raw_at],
                    )
                )
        return accepted, len(rows) - accepted - reused, reused

    def _dialect(self) -> str:
        return getattr(self, "dialect", "sqlite")

    def _insert_readings_pg(self, rows: Sequence[tuple]) -> int:
        """PostgreSQL: the rows stored, one per (meter_id, seq) not already in reading_keys.
        COPY into the staging table, _CLAIM_NEW (or _CLAIM_FREE when a key is taken); or
        executemany through m001's trigger."""
        if PG_READINGS_BY == "executemany":
            return self.conn.executemany(_INSERT_READING_PG, rows).rowcount
        self.conn.execute(_BEFORE_CLAIM)
        _copy_stage(self.conn, rows)
        self.conn.execute("SAVEPOINT " + _SAVEPOINT)
        try:
            n = self.conn.execute(_CLAIM_NEW).rowcount
        except sqlite3.IntegrityError as e:
            if getattr(e, "sqlstate", None) != "23505":  # unique_violation: a key taken
                raise
            self.conn.execute("ROLLBACK TO SAVEPOINT " + _SAVEPOINT)
            n = self.conn.execute(_CLAIM_FREE).rowcount
        self.conn.execute(_AFTER_CLAIM)
        return n

    def insert_readings_batch(self, rows: Sequence[tuple]) -> tuple[int, int]:
        """Store reading rows (READING_COLUMNS order); (accepted, duplicates)."""
        batch = IngestBatch()
        batch.readings = list(rows)
        r = self.commit_batch(batch)
        return r["accepted"], r["duplicates"] + r["reused"]

    def quarantine(
        self,
        topic: str,
        reason: str,
        payload: bytes,
        meter_id: str | None = None,
        detail: str | None = None,
        received_at: float | None = None,
    ) -> None:
        """Count a refused frame as rejected:<reason>; keep it with its reason unless its
        meter's sample for the hour is full (headend.ingest.store_quarantine)."""
        batch = IngestBatch()
        at = time.time() if received_at is None else received_at
        batch.quarantine.append((at, topic, meter_id, reason, detail, payload))
        batch.count("rejected:" + reason)
        self.commit_batch(batch)

    def bump(self, counters: Mapping[str, int]) -> None:
        with self.db.atomic():
            self._bump(counters)

    def _bump(self, counters: Mapping[str, int]) -> None:
        if counters:
            # in name order: concurrent batches (several serve processes) lock the counters in one order
            self.conn.executemany(_BUMP, [(k, v, v) for k, v in sorted(counters.items())])

    def set_online(
        self, meter_id: str, online: bool, at: float, seq: int | None = None, fields: Mapping | None = None
    ) -> None:
        """Record a status (seq and fields: fw, board, ...) or a will (seq None, online False)."""
        with self.db.atomic():
            self._set_online(meter_id, online, at, seq, fields or {})

    def _set_online(self, meter_id, online, at, seq, fields) -> None:
        sets, args = ["online = ?"], [1 if online else 0]
        if seq is not None:  # a signed status is the meter speaking; the will is the broker
            sets.append("last_seen = %s(coalesce(last_seen, 0), ?)" % _MAX[self._dialect()])
            args.append(at)
        for name in STATUS_FIELDS:
            if name in fields:
                sets.append("%s = ?" % name)
                args.append(fields[name])
        where = "meter_id = ?"
        if seq is not None:  # an older status arriving late must not overwrite a newer one
            sets.append("status_seq = ?")
            args.append(seq)
            where += " AND coalesce(status_seq, 0) < ?"
        self.conn.execute(
            "UPDATE meters SET %s WHERE %s" % (", ".join(sets), where),
            args + [meter_id] + ([seq] if seq is not None else []),
        )

    # ------------------------------------------------------------ queries

    def readings(self, meter_id: str, from_ts: int | None = None, to_ts: int | None = None) -> list[dict]:
        """Readings of a meter with from_ts <= ts <= to_ts, by ts then seq; JSON columns decoded."""
        sql, args = "SELECT * FROM readings WHERE meter_id = ?", [meter_id]
        if from_ts is not None:
            sql, args = sql + " AND ts >= ?", args + [from_ts]
        if to_ts is not None:
            sql, args = sql + " AND ts <= ?", args + [to_ts]
        return [_decode(r) for r in self.db.query(sql + " ORDER BY ts, seq", args)]

    def events(self, meter_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM events", []
        if meter_id is not None:
            sql, args = sql + " WHERE meter_id = ?", [meter_id]
        return [_decode(r) for r in self.db.query(sql + " ORDER BY meter_id, seq", args)]

    def acks(self, meter_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM acks", []
        if meter_id is not None:
            sql, args = sql + " WHERE meter_id = ?", [meter_id]
        return [_decode(r) for r in self.db.query(sql + " ORDER BY meter_id, seq", args)]

    def quarantined(self, reason: str | None = None, limit: int = 1000) -> list[dict]:
        sql, args = "SELECT * FROM quarantine", []
        if reason is not None:
            sql, args = sql + " WHERE reason = ?", [reason]
        return list(self.db.query(sql + " ORDER BY id LIMIT ?", args + [limit]))

    def counters(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT name, value FROM counters ORDER BY name")}

    def count_readings(self, meter_id: str | None = None) -> int:
        if meter_id is None:
            return self.conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        return self.conn.execute("SELECT count(*) FROM readings WHERE meter_id = ?", [meter_id]).fetchone()[0]


def _decode(row: dict, columns: Iterable[str] = ("imp", "exp", "q", "inst", "detail", "values")) -> dict:
    for c in columns:
        if c in row and row[c] is not None:
            row[c] = json.loads(row[c])
    return row
