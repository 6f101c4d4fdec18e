"""``headend keys``: the master key that seals the meter keys and the head-end's broker password
in the database (``headend.db.keystore``; docs/disaster-recovery.md "The master key").

``headend keys status [--json]``: where the master key comes from, its id, the key ids the
database's secrets are sealed under; opens every secret, so it fails (exit 1) on a wrong or
missing key: run it on a restored backup to verify the key that goes with it.

``headend keys rotate-master --new-key-file PATH``: re-seals every secret under a new master
key, with the head-end's processes stopped (a running one would meet values sealed under a key
it does not have). Crash-safe order: (1) the new key file is written (random, 0600, synced,
never overwriting: an existing PATH is used as the new key); (2) every secret is re-sealed in
one transaction; (3) the operator makes PATH the master key (``mv PATH`` over the key file, or
``--master-key-file PATH``) and starts the processes again. A crash before (2) commits leaves
the database under the old key; after it, under the new one; both files are on disk, and
running the same command again finishes the job (values already under the new key are left).

Registered with ``headend.cli`` (through ``headend.db.cli``) by ``register(subparsers)`` and
``COMMANDS``; errors are ``headend.db.keystore.KeystoreError`` for the CLI's error handler.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from headend.db import keystore

ROTATE_HELP = (
    "re-seal every meter key and the broker password under a new master key, in one transaction."
    " Stop the head-end's processes first. Order: the new key file is written first (0600; an"
    " existing PATH is used as the new key), then the database is re-sealed; then replace the old"
    " key file with PATH (or use --master-key-file PATH), keeping a copy of the old key for older"
    " backups, and start the processes. Interrupted? Run it again"
)


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    keys = subparsers.add_parser(
        "keys", help="the master key sealing the meter keys in the database", parents=[db]
    )
    ksub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    st = ksub.add_parser(
        "status", help="the master key's source and id; opens every secret to check it", parents=[db]
    )
    st.add_argument("--json", action="store_true")
    rot = ksub.add_parser("rotate-master", help=ROTATE_HELP, description=ROTATE_HELP + ".", parents=[db])
    rot.add_argument(
        "--new-key-file", required=True, metavar="PATH", help="the new master key (created if missing)"
    )


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def status(store) -> dict:
    ids, clear = keystore.key_ids(store.conn)
    out = {
        "database": os.path.abspath(store.secrets.db_path),
        "master_key_source": store.secrets.describe(),
        "master_key_id": None,
        "secrets": sum(ids.values()) + clear,
        "sealed_under": ids,
        "clear": clear,
        "opened": 0,
    }
    key = store.secrets.key() if ids else store.secrets.source.peek()
    out["master_key_id"] = key.id if key is not None else None
    for table, name, stored in keystore.secret_rows(store.conn):
        if keystore.is_sealed(stored):
            store.secrets.open(keystore.identity(table, name), stored, keystore.label(table, name))
            out["opened"] += 1
    return out


def cmd_keys(args) -> int:
    with _store(args) as store:
        if args.keys_command == "status":
            s = status(store)
            if args.json:
                print(json.dumps(s, separators=(", ", ": ")))
            else:
                print("master key %s from %s" % (s["master_key_id"] or "(none yet)", s["master_key_source"]))
                print(
                    "%d secrets, %d opened, %d in clear; sealed under %s"
                    % (s["secrets"], s["opened"], s["clear"], s["sealed_under"] or "-")
                )
            return 0
        current = store.secrets.source.peek()
        path = os.path.abspath(args.new_key_file)
        source = keystore.KeySource(Path(path), "--new-key-file")
        new = source.load(create=True)
        if current is not None and current.id == new.id:
            raise keystore.MasterKeyError(
                "%s holds the current master key (id %s): give a new key file" % (path, new.id)
            )
        result = store.rotate_master_key(new)
    old, kid = store.secrets.source, result["old_key_id"] or "old"
    if old.path is None:
        swap = "set $%s to the 64 hex digits in %s" % (keystore.ENV_HEX, path)
    else:
        swap = "cp -p %s %s.%s && mv %s %s" % (old.path, old.path, kid, path, old.path)
    result.update(
        database=os.path.abspath(args.db),
        new_key_file=path,
        next=(
            "with every head-end process still stopped, make the new key the master key: %s (or"
            " run with --master-key-file %s); then start them. Keep the old key as long as backups"
            " sealed under it are kept" % (swap, path)
        ),
    )
    print(json.dumps(result, separators=(", ", ": ")))
    return 0


COMMANDS = {"keys": cmd_keys}
