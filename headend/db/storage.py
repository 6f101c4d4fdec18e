"""The ``Storage`` facade: one database, one object, every feature's SQL.

``Storage(target)``: a SQLite file path (the default engine, through sqlite-utils), or a
``postgresql://`` URL (psycopg 3, ``headend.db.engine``; docs/scaling.md). ``store.dialect``
says which ("sqlite" or "postgresql"): the stores pick their SQL by it where the dialects
differ. What follows about files, WAL and the default master key file is SQLite's.

``Storage(path)`` opens (creating) the database, turns on WAL with ``synchronous=NORMAL`` (a
commit is durable once the WAL is synced at checkpoint; a process crash loses nothing
committed) and applies the migrations of ``headend.db.migrations`` (one ordered set for every
feature). The database and its ``-wal`` and ``-shm`` are mode 0600: a new file is created 0600
before SQLite opens it (SQLite gives the -wal and -shm the database file's mode), an existing
one is tightened. Secrets are sealed at rest with the head-end's master key
(``headend.db.keystore``: ``master_key_file``, ``$HEADEND_MASTER_KEY_FILE``,
``$HEADEND_MASTER_KEY``, else ``<db name>.master-key`` beside it); ``store.secrets`` is the
database's vault. It holds no SQL of its own: each feature's queries live in that feature's ``store``
module, as a mixin over ``self.db`` (sqlite-utils) and ``self.conn`` (sqlite3), and ``Storage``
is composed of them, so callers keep ``store.method(...)``:

    meters/store.py    MeterStoreMixin       meters, their keys (sealed), settings, key rotation
    ingest/store.py    IngestStoreMixin      batches, readings, events, acks, quarantine, counters
    vee/store.py       VeeStorageMixin       VEE states, results, estimates, audit, load profiles,
                                             manual readings
    billing/store.py   BillingStorageMixin   tariffs, accounts, bill runs, bills, review
    prepaid/store.py   PrepaidStorageMixin   ledgers, credits, top-ups, reconciliation
    commands/store.py  CommandStorageMixin   the command queue: enqueue, due, sent, acks, expiry
    notify/store.py    NotifyStoreMixin      the notification outbox
    alerts/store.py    AlertStorageMixin     alert inputs, alerts, their audit, work orders
    web/store.py       WebStorageMixin       dashboard users, sessions and read models

Errors are ``StorageError`` subclasses; the CLI turns them into text.
"""

from __future__ import annotations

import os
import sqlite3
import time

from sqlite_utils import Database

from headend.alerts.store import AlertStorageMixin
from headend.billing.store import BillingStorageMixin
from headend.commands.store import CommandStorageMixin
from headend.db import keystore, migrations
from headend.db.engine import is_postgres, open_database, redact
from headend.errors import MeterExists, StorageError, UnknownMeter  # noqa: F401
from headend.ingest.store import READING_COLUMNS, IngestBatch, IngestStoreMixin  # noqa: F401 (re-exported)
from headend.meters.store import MeterStoreMixin
from headend.notify.store import NotifyStoreMixin
from headend.prepaid.store import PrepaidStorageMixin
from headend.vee.store import VeeStorageMixin
from headend.web.store import WebStorageMixin


class Storage(
    MeterStoreMixin,
    IngestStoreMixin,
    VeeStorageMixin,
    BillingStorageMixin,
    PrepaidStorageMixin,
    CommandStorageMixin,
    NotifyStoreMixin,
    AlertStorageMixin,
    WebStorageMixin,
):
    def __init__(
        self,
        path: str,
        timeout: float = 30.0,
        master_key_file: str | None = None,
        master_key: keystore.MasterKey | bytes | None = None,
    ) -> None:
        """master_key_file / master_key: the master key (headend.db.keystore), else from the
        environment or the default file beside the database; loaded when a secret is first
        sealed or opened."""
        self.dialect = "postgresql" if is_postgres(path) else "sqlite"
        if self.dialect == "postgresql":
            self._open_postgres(path, timeout, master_key_file, master_key)
            return
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
                    self.migrated = migrations.apply(self.db)
                break
            except sqlite3.OperationalError:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        self._scrub()

    def _open_postgres(self, url, timeout, master_key_file, master_key) -> None:
        """A ``postgresql://`` URL: psycopg 3 (headend.db.engine), the same migrations (tables
        partitioned by month where docs/scaling.md says), the master key from
        --master-key-file or the environment (there is no default file beside a URL)."""
        try:
            conn, self.db = open_database(url, timeout=timeout)
        except sqlite3.Error as e:
            raise StorageError("cannot open database %s: %s" % (redact(url), e)) from e
        self.conn = conn
        self.secrets = keystore.Vault(
            url, conn, master_key_file=master_key_file, master_key=master_key, name=redact(url)
        )
        with keystore.migrating(self.secrets):
            self.migrated = migrations.apply(self.db)
        self._partitions: set[str] = set()

    def _scrub(self) -> None:
        """After secrets were rewritten in place (m009 sealing clear keys, a rotation): move the
        WAL into the database file now and empty it, so the old values' pages are overwritten
        (secure_delete zeroed their bytes) rather than kept until some later checkpoint."""
        if self.secrets.scrub:
            self.secrets.scrub = 0
            if self.dialect == "postgresql":  # the old row versions go at the next VACUUM
                return
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
