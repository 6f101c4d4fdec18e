"""``headend backup`` and ``headend restore``: online backup of the live database and restore
from a backup (``headend.backup``; procedure in docs/disaster-recovery.md).

Hooked into ``headend.cli`` with ``add_backup_commands(subparsers)`` and ``COMMANDS``. Errors
are ``headend.backup.BackupError`` (a ``StorageError``) for the CLI's one error handler.
"""

from __future__ import annotations

import argparse
import json

from headend.backup import ADVANCE, backup, restore


def add_backup_commands(subparsers) -> None:
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
    rs.add_argument(
        "--advance-commands",
        type=int,
        default=ADVANCE,
        metavar="N",
        help="move every meter's command seq and top-up id on by N, past what meters took after"
        " the backup (default %d; 0: keep them as backed up)" % ADVANCE,
    )


def cmd_backup(args) -> int:
    summary = backup(args.db, args.out, master_key_file=getattr(args, "master_key_file", None))
    print(json.dumps(summary, separators=(", ", ": ")))
    return 0


def cmd_restore(args) -> int:
    result = restore(
        args.source,
        args.db,
        force=args.force,
        advance_commands=args.advance_commands,
        master_key_file=getattr(args, "master_key_file", None),
    )
    print(json.dumps(result, separators=(", ", ": ")))
    return 0


COMMANDS = {"backup": cmd_backup, "restore": cmd_restore}
