"""Storage: the one place the head-end speaks SQL (SQLite through sqlite-utils).

``Storage(path)`` opens (creating) the database, turns on WAL with
``synchronous=NORMAL`` (a commit is durable once the WAL is synced at
checkpoint; a process crash loses nothing committed) and applies the
migrations of ``headend.storage_schema``. The database and its ``-wal`` and
``-shm`` are mode 0600: a new file is created 0600 before SQLite opens it (SQLite
gives the -wal and -shm the database file's mode), an existing one is tightened.
Secrets are sealed at rest with the head-end's master key (``headend.keystore``:
``master_key_file``, ``$HEADEND_MASTER_KEY_FILE``, ``$HEADEND_MASTER_KEY``, else
``<db name>.master-key`` beside it); ``store.secrets`` is the database's vault.
Methods, by user:

Provisioning: ``add_meter``, ``meter``, ``meters``, ``meter_keys`` (the key comes back
  in clear as before: sealed in ``add_meter``, opened as it is read, each once),
  ``setting``/``set_setting`` (``keystore.SECRET_SETTINGS`` sealed likewise),
  ``rotate_master_key`` (``headend keys rotate-master``).
Ingest: ``commit_batch(IngestBatch)`` writes one batch in one transaction:
  readings/events/acks idempotent on ``(meter_id, seq)`` (INSERT ... ON CONFLICT DO
  NOTHING: only the key conflict is ignored, a NOT NULL violation still fails the batch),
  quarantine rows (a bounded sample per meter per hour, the rest counted:
  ``headend.storage_quarantine``), meter status and last-seen, counter increments; it
  returns what it stored. ``insert_readings_batch``, ``quarantine``,
  ``bump``, ``set_online`` do one of those at a time.
Queries: ``readings``, ``events``, ``quarantined``, ``quarantine_hours``,
  ``quarantine_summary``, ``counters``.
VEE engine (``headend.storage_vee.VeeStorageMixin``, mixed in): see that module.

Errors are ``StorageError`` subclasses; the CLI turns them into text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence

from sqlite_utils import Database

from headend import keystore
from headend.storage_alerts import AlertStorageMixin
from headend.storage_billing import BillingStorageMixin
from headend.storage_commands import CommandStorageMixin
from headend.storage_prepaid import PrepaidStorageMixin
from headend.storage_quarantine import QuarantineStorageMixin
from headend.storage_schema import migrations
from headend.storage_vee import VeeStorageMixin
from headend.storage_web import WebStorageMixin

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
_BUMP = "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?"
_SEEN = "UPDATE meters SET last_seen = max(coalesce(last_seen, 0), ?) WHERE meter_id = ?"


class StorageError(Exception):
    """Base of the storage layer's errors."""


class MeterExists(StorageError):
    pass


class UnknownMeter(StorageError):
    pass


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


def _json(value) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


class Storage(
    VeeStorageMixin,
    BillingStorageMixin,
    PrepaidStorageMixin,
    CommandStorageMixin,
    AlertStorageMixin,
    WebStorageMixin,
    QuarantineStorageMixin,
):
    def __init__(
        self,
        path: str,
        timeout: float = 30.0,
        master_key_file: str | None = None,
        master_key: keystore.MasterKey | bytes | None = None,
    ) -> None:
        """master_key_file / master_key: the master key (headend.keystore), else from the
        environment or the default file beside the database; loaded when a secret is first
        sealed or opened."""
        create_private(path)
        try:
            conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
        except sqlite3.Error as e:
            raise StorageError(_open_failure(path, e)) from e
        self.db = Database(conn)
        self.conn = conn
        self.secrets = keystore.Vault(path, conn, master_key_file=master_key_file, master_key=master_key)
        try:
            self.db.enable_wal()  # the first read: opens (or creates) the -wal and -shm files
        except sqlite3.Error as e:
            conn.close()
            raise StorageError(_open_failure(path, e)) from e
        tighten(path)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=%d" % int(timeout * 1000))
        for attempt in range(3):  # two workers creating one new file: the loser retries
            try:
                with keystore.migrating(self.secrets):  # m009 seals an older database's clear keys
                    migrations.apply(self.db)
                break
            except sqlite3.OperationalError:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        self._scrub()

    def _scrub(self) -> None:
        """After secrets were rewritten in place (m009 sealing clear keys, a rotation): move the
        WAL into the database file now and empty it, so the old values' pages are overwritten
        (secure_delete zeroed their bytes) rather than kept until some later checkpoint."""
        if self.secrets.scrub:
            self.secrets.scrub = 0
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ provisioning

    def add_meter(
        self,
        meter_id: str,
        key_hex: str,
        mqtt_password_hash: str,
        account: str | None = None,
        rating: Mapping[str, int] | None = None,
        now: float | None = None,
    ) -> dict:
        """Register a meter; MeterExists if the id is taken. rating: ib_ma, imax_ma, un_mv, rates."""
        row = {
            "meter_id": meter_id,
            "key": self.secrets.seal(keystore.meter_key_id(meter_id), key_hex),
            "mqtt_password_hash": mqtt_password_hash,
            "account": account,
            "created_at": time.time() if now is None else now,
            "online": 0,
        }
        for name in ("ib_ma", "imax_ma", "un_mv", "rates"):
            row[name] = (rating or {}).get(name)
        try:
            with self.db.atomic():
                self.db["meters"].insert(row)
        except sqlite3.IntegrityError:
            raise MeterExists("meter %r is already registered" % meter_id)
        return self.meter(meter_id)

    def meter(self, meter_id: str) -> dict | None:
        """The meter's row, its key opened (64 hex digits), or None."""
        rows = list(self.db.query("SELECT * FROM meters WHERE meter_id = ?", [meter_id]))
        return self._opened(rows[0]) if rows else None

    def meters(self) -> list[dict]:
        return [self._opened(r) for r in self.db.query("SELECT * FROM meters ORDER BY meter_id")]

    def _opened(self, row: dict) -> dict:
        row["key"] = self._meter_key(row["meter_id"], row["key"])
        return row

    def _meter_key(self, meter_id: str, stored: str) -> str:
        return self.secrets.open(keystore.meter_key_id(meter_id), stored, "meter %r's key" % meter_id)

    def meter_keys(self) -> dict[str, bytes]:
        """meter_id -> 32-byte key, for verifying frames (each opened once per Storage: cached)."""
        rows = self.conn.execute("SELECT meter_id, key FROM meters").fetchall()
        return {m: bytes.fromhex(self._meter_key(m, k)) for m, k in rows}

    def setting(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE name = ?", [name]).fetchone()
        if row is None or row[0] is None or name not in keystore.SECRET_SETTINGS:
            return row[0] if row else None
        return self.secrets.open(keystore.setting_id(name), row[0], "setting %r" % name)

    def set_setting(self, name: str, value: str) -> None:
        if name in keystore.SECRET_SETTINGS and value is not None:
            value = self.secrets.seal(keystore.setting_id(name), value)
        with self.db.atomic():
            self.conn.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", [name, value])

    def rotate_master_key(self, new_key: keystore.MasterKey) -> dict:
        """Re-seal every secret under ``new_key`` in one transaction (opened with the current
        master key, which is checked first); values already under it are left alone, so a
        rotation cut short is finished by running it again. Afterwards this Storage uses
        ``new_key``; other processes need it as their master key (``headend keys rotate-master``).
        {"old_key_id", "new_key_id", "resealed", "secrets"}."""
        ids, clear = keystore.key_ids(self.conn)
        old_ids = sorted(set(ids) - {new_key.id})
        old = self.secrets.key() if old_ids else None  # MasterKeyError if it is not this database's
        with self.db.atomic():
            n = keystore.reseal(self.conn, self.secrets, new_key)
        self.secrets.use(new_key)
        self.secrets.scrub = n
        self._scrub()
        return {
            "old_key_id": old.id if old is not None else None,
            "new_key_id": new_key.id,
            "resealed": n,
            "secrets": sum(ids.values()) + clear,
        }

    # ------------------------------------------------------------ ingest

    def commit_batch(self, batch: IngestBatch) -> dict:
        """Write the batch in one transaction; return {"accepted", "duplicates", "reused"}:
        messages newly stored or applied, identical re-sends, and readings whose
        (meter_id, seq) is stored with a different frame (quarantined as "seq_reused").
        Counters: accepted, accepted:<kind>, duplicates, rejected:<reason> (every refused
        frame; only a sample of them is kept as quarantine rows, _store_quarantine)."""
        counters = dict(batch.counters)

        def count(name, n):
            if n:
                counters[name] = counters.get(name, 0) + n

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
                self.conn.executemany(_SEEN, [(t, m) for m, t in batch.seen.items()])
            count("accepted", accepted)
            count("duplicates", duplicates)
            count("rejected:seq_reused", reused)
            self._bump(counters)
        return {"accepted": accepted, "duplicates": duplicates, "reused": reused}

    def _insert_readings(self, batch: IngestBatch, refused: list[tuple]) -> tuple[int, int, int]:
        rows = batch.readings
        if not rows:
            return 0, 0, 0
        accepted = self.conn.executemany(_INSERT_READING, rows).rowcount
        if accepted == len(rows):
            return accepted, 0, 0
        # some were already there: a re-send of the same frame is a duplicate, a
        # different frame under a used seq is refused (PROTOCOL.md: seq never reused)
        reused = 0
        raw_at = READING_COLUMNS.index("raw")
        for r in rows:
            stored = self.conn.execute(
                "SELECT raw FROM readings WHERE meter_id = ? AND seq = ?", (r[0], r[1])
            ).fetchone()
            if stored[0] != r[raw_at]:
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
        meter's sample for the hour is full (headend.storage_quarantine)."""
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
            self.conn.executemany(_BUMP, [(k, v, v) for k, v in counters.items()])

    def set_online(
        self, meter_id: str, online: bool, at: float, seq: int | None = None, fields: Mapping | None = None
    ) -> None:
        """Record a status (seq and fields: fw, board, ...) or a will (seq None, online False)."""
        with self.db.atomic():
            self._set_online(meter_id, online, at, seq, fields or {})

    def _set_online(self, meter_id, online, at, seq, fields) -> None:
        sets, args = ["online = ?"], [1 if online else 0]
        if seq is not None:  # a signed status is the meter speaking; the will is the broker
            sets.append("last_seen = max(coalesce(last_seen, 0), ?)")
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


def create_private(path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (an empty file is an empty
    SQLite database), so the database, and the -wal, -shm and -journal SQLite gives the
    database's mode, are never readable by others. Any failure is left to SQLite to report."""
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return  # exists (or cannot be made: SQLite says why)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        pass
    finally:
        os.close(fd)


def tighten(path) -> None:
    """Mode 0600 for the database and its -wal and -shm if group or others may read them (a
    database made before the head-end created them 0600); not the owner, or read-only: left."""
    for name in (str(path), str(path) + "-wal", str(path) + "-shm"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except OSError:
            pass


def _open_failure(path, e: sqlite3.Error) -> str:
    """Why a database could not be opened, with what the file system says: a full disk shows up
    as a bare "disk I/O error" (SQLite cannot size the -shm file) that names nothing."""
    text = "cannot open database %s: %s" % (path, e)
    try:
        fs = os.statvfs(os.path.dirname(os.path.abspath(str(path))))
    except OSError:
        return text
    if fs.f_flag & os.ST_RDONLY:
        return text + " (the file system holding it is read-only)"
    if fs.f_bavail * fs.f_frsize < 64 * 1024:
        return text + " (the file system holding it is full)"
    return text


def _decode(row: dict, columns: Iterable[str] = ("imp", "exp", "q", "inst", "detail", "values")) -> dict:
    for c in columns:
        if c in row and row[c] is not None:
            row[c] = json.loads(row[c])
    return row
