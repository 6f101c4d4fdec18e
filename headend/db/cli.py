"""``headend backup``, ``headend restore`` and ``headend keys`` (``cli_keys``): online backup of
the live database, restore from a backup (``headend.db.backup``; procedure in
docs/disaster-recovery.md), and the master key that seals the meter keys in it.

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``. Errors
are ``headend.db.backup.BackupError`` (a ``StorageError``) for the CLI's one error handler.
"""

from __future__ import annotations

import argparse
import json

from headend.db import cli_keys
from headend.db.backup import ADVANCE, backup, restore
from headend.db.engine import NotOnPostgres, is_postgres
from headend.errors import StorageError


def register(subparsers) -> None:
    _register_backup(subparsers)
    _register_db(subparsers)
    cli_keys.register(subparsers)


def _register_db(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="SQLite database file or postgresql:// URL (default headend.db)",
    )
    p = subparsers.add_parser(
        "db", help="the database itself: migrations, partitions (PostgreSQL), retention"
    )
    sub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    mg = sub.add_parser(
        "migrate", help="apply the pending migrations (either engine); prints their names", parents=[db]
    )
    mg.set_defaults(db_use="create")
    pt = sub.add_parser(
        "partitions", help="the monthly partitions of readings and load_profile (PostgreSQL)", parents=[db]
    )
    pt.add_argument("--json", action="store_true", help="JSON instead of a table")
    rt = sub.add_parser(
        "retention",
        help="retire readings and load profile older than N months once billed (PostgreSQL: detach"
        " their partitions; SQLite: delete the rows)",
        parents=[db],
    )
    rt.add_argument(
        "--months", type=int, required=True, metavar="N", help="keep the current month and the N before it"
    )
    rt.add_argument(
        "--dry-run", action="store_true", help="check and say what would be retired; change nothing"
    )
    rt.add_argument("--drop", action="store_true", help="PostgreSQL: drop the detached partitions too")
    rt.add_argument("--now", type=float, help=argparse.SUPPRESS)
    rt.add_argument("--json", action="store_true", help="JSON instead of text")


def _retention(store, args) -> int:
    from headend.db import retention

    summary = retention.retire(store, args.months, now=args.now, dry_run=args.dry_run, drop=args.drop)
    if args.json:
        print(json.dumps(summary, separators=(", ", ": ")))
        return 0
    print(
        "%s: keeping %s on (%d months back)%s"
        % (summary["engine"], summary["kept_from"], args.months, "; dry run, nothing changed" * args.dry_run)
    )
    for r in summary["retired"]:
        print("  %s: %s (%d readings, %d load-profile rows)" % (r["month"], r["action"], r["readings"],
                                                              r["load_profile"]))  # fmt: skip
    if not summary["retired"]:
        print("  nothing older to retire")
    if summary["keys_trimmed"]:
        print("  idempotency keys of retired readings: %d %s" % (summary["keys_trimmed"],
              "to trim" if args.dry_run else "trimmed"))  # fmt: skip
    return 0


def cmd_db(args) -> int:
    from headend.db import partitions
    from headend.db.storage import Storage

    with Storage(args.db, master_key_file=getattr(args, "master_key_file", None)) as store:
        if args.db_command == "migrate":
            print(json.dumps({"engine": store.dialect, "applied": store.migrated}, separators=(", ", ": ")))
            return 0
        if args.db_command == "retention":
            return _retention(store, args)
        if store.dialect != "postgresql":
            raise StorageError("headend db partitions: a SQLite database has no partitions (PostgreSQL only)")
        rows = partitions.listing(store.conn)
    if args.json:
        print(json.dumps(rows, separators=(", ", ": ")))
    else:
        for r in rows:
            print(
                "%-14s %-22s %s  [%d, %d)  %d rows"
                % (r["table"], r["partition"], r["month"], r["from"], r["to"], r["rows"])
            )
    return 0


def _register_backup(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    bk = subparsers.add_parser(
        "backup",
        help="copy the database while it is in use (SQLite online backup), checked",
        parents=[db],
    )
    bk.add_argument("--out", required=True, metavar="FILE", help="backup file (replaced atomically)")
    rs = subparsers.add_parser(
        "restore", help="replace the database with a checked backup (services stopped)", parents=[db]
    )
    rs.add_argument("--from", dest="source", required=True, metavar="FILE", help="backup file")
    rs.add_argument("--force", action="store_true", help="replace an existing database")
    rs.set_defaults(db_use="create")  # headend.cli: restoring makes the database
    rs.add_argument(
        "--advance-commands",
        type=int,
        default=ADVANCE,
        metavar="N",
        help="move every meter's command seq and top-up id on by N, past what meters took after"
        " the backup (default %d; 0: keep them as backed up)" % ADVANCE,
    )


def _sqlite_only(args, command: str) -> None:
    """backup/restore copy a SQLite file; a PostgreSQL database has the server's own tools."""
    if is_postgres(args.db):
        raise NotOnPostgres(
            "headend %s copies a SQLite database file; a PostgreSQL database is backed up and restored"
            " with pg_dump / pg_restore (or the server's base backups), docs/scaling.md" % command
        )


def cmd_backup(args) -> int:
    _sqlite_only(args, "backup")
    summary = backup(args.db, args.out, master_key_file=getattr(args, "master_key_file", None))
    print(json.dumps(summary, separators=(", ", ": ")))
    return 0


def cmd_restore(args) -> int:
    _sqlite_only(args, "restore")
    result = restore(
        args.source,
        args.db,
        force=args.force,
        advance_commands=args.advance_commands,
        master_key_file=getattr(args, "master_key_file", None),
    )
    print(json.dumps(result, separators=(", ", ": ")))
    return 0


COMMANDS = {"backup": cmd_backup, "restore": cmd_restore, "db": cmd_db, **cli_keys.COMMANDS}
