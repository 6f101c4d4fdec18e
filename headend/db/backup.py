"""Online backup and restore of the head-end database (the SQLite online backup API).

``backup(db, out) -> summary`` copies a live database while ``headend serve`` (or any other
command) keeps writing: ``sqlite3.Connection.backup`` with every page in one step runs inside
one read transaction, so the copy is the database as of one commit (WAL: readers never block
writers, and writers never disturb the reader's snapshot). The copy is written to a temporary
file beside ``out``, switched to ``journal_mode=DELETE`` (one self-contained file), checked
with ``PRAGMA integrity_check``, synced, and only then renamed over ``out``: a crash or a full
disk leaves the previous backup untouched and no half-written file under ``out``.

``restore(src, db, force=False) -> summary`` puts a backup in place of ``db``: the backup must
pass ``integrity_check`` and be a head-end database; an existing ``db`` is replaced only with
``force``, and never while another process has it open (an exclusive-lock probe). The copy is
checked again, the old database's ``-wal``/``-shm`` are removed (a stale WAL must never be
replayed over the restored pages), and it is renamed into place. Every meter's command seq and
top-up id counter is moved on (ADVANCE) so that commands queued after the restore never reuse a
number a meter has already taken. The head-end's migrations are applied on the next open, so an
older backup restores into newer code.

Secrets: the database keeps every meter key and the broker password sealed with the master key
(``headend.db.keystore``), so a backup holds ciphertext only, and the master key is never in it: it
must be backed up separately (docs/disaster-recovery.md). A database still holding clear values
(never opened by this head-end since it began sealing) has them sealed in the copy, never copied
in clear. ``restore`` checks that the master key of ``db`` (``master_key_file``, the
environment, else the default key file beside ``db``) opens the backup's secrets before it puts
the copy in place. Both summaries name the ``master_key_id`` the copy is sealed under. The
backup, and the restored database, are mode 0600 from the moment they are created.

Errors are ``BackupError`` (a ``StorageError``): the CLI prints them as ``error: ...``.
docs/disaster-recovery.md is the procedure around these two calls.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from headend.db import keystore
from headend.db.storage import create_private
from headend.errors import BackupError, StorageError  # noqa: F401

MARKER_TABLES = ("meters", "readings", "_sqlite_migrations")  # what makes a file a head-end database
# Commands (and top-ups) sent after the backup are gone from the restored database, but the
# meters have taken their seqs and top-up ids: a meter refuses a seq at or below the highest it
# has taken ("stale") and applies a top-up id only once. Restoring the counters as they were
# would make the next commands reuse those numbers and be silently refused. A meter accepts any
# higher seq, so restore moves every meter's counters on by more than it can have used since.
ADVANCE = 1000
COUNTED = ("meters", "readings", "events", "bills", "payments", "prepaid_ledger", "audit")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories; the rename itself is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    have = _tables(conn)
    return {t: conn.execute("SELECT count(*) FROM %s" % t).fetchone()[0] for t in COUNTED if t in have}


def _check(conn: sqlite3.Connection, what: str) -> None:
    """integrity_check == ok and the head-end's tables present, else BackupError."""
    problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise BackupError("%s fails integrity_check: %s" % (what, "; ".join(problems[:5])))
    missing = [t for t in MARKER_TABLES if t not in _tables(conn)]
    if missing:
        raise BackupError("%s is not a head-end database (no table %s)" % (what, ", ".join(missing)))


def _copy(
    src: sqlite3.Connection,
    tmp: Path,
    what: str,
    vault: keystore.Vault,
    advance_commands: int = 0,
    check_key: bool = False,
) -> tuple[dict[str, int], str | None]:
    """src's pages into a new 0600 file tmp (one step: one snapshot), made self-contained and
    checked; clear secrets sealed with the vault's master key (``check_key``: the master key
    checked against sealed ones); with ``advance_commands``, every meter's command seq and top-up
    id moved on by that much. (counts, the master key id the copy's secrets are sealed under)."""
    _remove(tmp)
    create_private(tmp)  # before SQLite writes a page: the copy (and its -journal) are 0600
    dst = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        src.backup(dst)  # pages=-1: the whole database inside one read transaction of src
        dst.execute("PRAGMA journal_mode=DELETE")
        vault.conn = dst
        if keystore.has_clear(dst):
            dst.execute("BEGIN IMMEDIATE")
            keystore.seal_clear(dst, vault)
            dst.execute("COMMIT")
        elif check_key and keystore.sealed_sample(dst) is not None:
            vault.key()  # MasterKeyError: missing, or not the key the backup was sealed with
        if advance_commands and "command_counters" in _tables(dst):
            dst.execute(
                "UPDATE command_counters SET seq = seq + ?, topup_id = topup_id + ?",
                (advance_commands, advance_commands),
            )
        _check(dst, what)
        counts = _counts(dst)
        ids, _ = keystore.key_ids(dst)
    finally:
        if dst.in_transaction:
            dst.execute("ROLLBACK")
        dst.close()
    _fsync(tmp)
    return counts, ",".join(sorted(ids)) or None


def _open_existing(path: Path, what: str, read_only: bool) -> sqlite3.Connection:
    """A connection to an existing file (never creating one). The live database is opened
    read-write (a WAL reader shares the writers' -shm), though nothing here writes to it. On a
    read-only file system that may fail (no -shm, and none can be made): then read-only, and,
    when no WAL is left to apply, ``immutable`` (the file is all there is): a database on a
    failing disk can still be rescued."""
    if not path.is_file():
        raise BackupError("%s %s does not exist" % (what, path))
    base = "file:%s?mode=ro" % path.resolve()
    wal = Path(str(path) + "-wal")
    tries = [(base, True)] if read_only else [(str(path), False), (base, True)]
    if not wal.exists() or wal.stat().st_size == 0:
        tries.append((base + "&immutable=1", True))
    error: sqlite3.Error | None = None
    for target, uri in tries:
        conn = None
        try:
            conn = sqlite3.connect(target, uri=uri, timeout=30, isolation_level=None)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as e:
            error = error or e
            if conn is not None:
                conn.close()
    raise BackupError("cannot open %s %s: %s" % (what, path, error))


def backup(db: str | os.PathLike, out: str | os.PathLike, master_key_file: str | None = None) -> dict:
    """Copy the live database ``db`` to ``out`` (replaced atomically); a summary dict. The master
    key (``master_key_file``, else as ``Storage`` finds it) is needed only to seal clear values."""
    db, out = Path(db), Path(out)
    if out.exists() and db.exists() and os.path.samefile(db, out):
        raise BackupError("the backup file must not be the database itself (%s)" % db)
    if not out.parent.is_dir():
        raise BackupError("cannot write backup %s: directory %s does not exist" % (out, out.parent))
    started = time.time()
    tmp = out.with_name(out.name + ".tmp-%d" % os.getpid())
    src = _open_existing(db, "database", read_only=False)
    try:
        try:
            _check_source(src, db)
            vault = keystore.Vault(db, master_key_file=master_key_file)
            counts, key_id = _copy(src, tmp, "the backup of %s" % db, vault)
            os.replace(tmp, out)
        except sqlite3.Error as e:
            raise BackupError("cannot back up %s to %s: %s" % (db, out, e))
        except OSError as e:
            raise BackupError("cannot write backup %s: %s" % (out, e.strerror or e))
    finally:
        src.close()
        _remove(tmp)
    _fsync_dir(out.parent)
    return {
        "backup": str(out),
        "database": str(db),
        "bytes": out.stat().st_size,
        "integrity": "ok",
        "counts": counts,
        "master_key_id": key_id,
        "taken_at": started,
        "seconds": round(time.time() - started, 3),
    }


def _check_source(src: sqlite3.Connection, db: Path) -> None:
    missing = [t for t in MARKER_TABLES if t not in _tables(src)]
    if missing:
        raise BackupError("%s is not a head-end database (no table %s)" % (db, ", ".join(missing)))


def in_use(db: Path) -> bool | None:
    """Whether another connection (another process) has ``db`` open: it then holds locks that
    keep an exclusive-mode transaction out. None: cannot tell (the file is not a readable
    database, e.g. the corrupted one being replaced)."""
    probe = sqlite3.connect(str(db), timeout=0, isolation_level=None)
    try:
        probe.execute("PRAGMA locking_mode=EXCLUSIVE")
        probe.execute("BEGIN EXCLUSIVE")
        probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            return True
        return None
    except sqlite3.DatabaseError:
        return None
    finally:
        probe.close()


def restore(
    src: str | os.PathLike,
    db: str | os.PathLike,
    force: bool = False,
    advance_commands: int = ADVANCE,
    master_key_file: str | None = None,
) -> dict:
    """Replace (or create) ``db`` with the backup ``src``; a summary dict. ``advance_commands``:
    see ADVANCE (0: restore the counters exactly as backed up). The master key ``db`` will be
    opened with (``master_key_file``, else as ``Storage`` finds it) must open the backup's
    secrets: else KeystoreError, and ``db`` is left as it was."""
    if advance_commands < 0:
        raise BackupError("the command seq advance must be 0 or more, got %d" % advance_commands)
    src, db = Path(src), Path(db)
    backup_conn = _open_existing(src, "backup", read_only=True)
    try:
        try:
            _check(backup_conn, "backup %s" % src)
        except sqlite3.Error as e:
            raise BackupError("backup %s cannot be read: %s" % (src, e))
        existed = db.exists() or Path(str(db) + "-wal").exists()
        if existed and db.exists() and os.path.samefile(src, db):
            raise BackupError("the backup and the database are the same file (%s)" % db)
        if existed and not force:
            raise BackupError(
                "%s exists: restoring would replace it. Stop `headend serve` and every other command"
                " using it, then restore with --force" % db
            )
        if db.exists():
            if in_use(db):
                raise BackupError(
                    "%s is in use by another process (`headend serve`?): stop it before restoring" % db
                )
        tmp = db.with_name(db.name + ".restore-tmp")
        try:
            vault = keystore.Vault(db, master_key_file=master_key_file, name="backup %s" % src)
            counts, key_id = _copy(
                backup_conn, tmp, "the restored copy of %s" % src, vault, advance_commands, check_key=True
            )
            for suffix in ("-wal", "-shm", "-journal"):
                _remove(Path(str(db) + suffix))
            os.replace(tmp, db)
        except sqlite3.Error as e:
            raise BackupError("cannot restore %s to %s: %s" % (src, db, e))
        except OSError as e:
            raise BackupError("cannot restore %s to %s: %s" % (src, db, e.strerror or e))
        finally:
            _remove(tmp)
    finally:
        backup_conn.close()
    _fsync_dir(db.parent)
    return {
        "restored": str(db),
        "backup": str(src),
        "replaced": existed,
        "integrity": "ok",
        "counts": counts,
        "master_key_id": key_id,
        "command_seqs_advanced_by": advance_commands,
    }
