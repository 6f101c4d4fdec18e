"""The ``Storage`` facade: one SQLite database (through sqlite-utils), one object, every feature's SQL.

``Storage(path)`` opens (creating) the database, turns on WAL with ``synchronous=NORMAL`` (a
commit is durable once the WAL is synced at checkpoint; a process crash loses nothing
committed) and applies the migrations of ``headend.db.migrations`` (one ordered set for every
feature). It holds no SQL of its own: each feature's queries live in that feature's ``store``
module, as a mixin over ``self.db`` (sqlite-utils) and ``self.conn`` (sqlite3), and ``Storage``
is composed of them, so callers keep ``store.method(...)``:

    meters/store.py    MeterStoreMixin       meters, their keys, settings
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
from headend.db.migrations import migrations
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
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        try:
            conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
        except sqlite3.Error as e:
            raise StorageError(_open_failure(path, e)) from e
        self.db = Database(conn)
        self.conn = conn
        try:
            self.db.enable_wal()  # the first read: opens (or creates) the -wal and -shm files
        except sqlite3.Error as e:
            conn.close()
            raise StorageError(_open_failure(path, e)) from e
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=%d" % int(timeout * 1000))
        for attempt in range(3):  # two workers creating one new file: the loser retries
            try:
                migrations.apply(self.db)
                break
            except sqlite3.OperationalError:
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
