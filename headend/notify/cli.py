"""``headend outbox send``: deliver the notifications that bill runs and alerts queued.

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``; errors are raised
for its one handler.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from headend.billing.policy import load_policy
from headend.errors import BillingError
from headend.notify.outbox import send_pending


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    out = subparsers.add_parser("outbox", help="customer notifications", parents=[db])
    osub = out.add_subparsers(dest="outbox_command", metavar="SUBCOMMAND", required=True)
    send = osub.add_parser(
        "send", help="deliver pending notifications (console, webhook, e-mail)", parents=[db]
    )
    send.add_argument("--policy", metavar="FILE", help="TOML with an [outbox] table (SMTP host, retries)")
    send.add_argument("--smtp", metavar="HOST:PORT", help="override the SMTP server")
    send.add_argument("--json", action="store_true")
    send.add_argument("--now", type=float, help=argparse.SUPPRESS)


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, separators=(", ", ": "), default=str))


def cmd_outbox(args) -> int:
    cfg = load_policy(args.policy).outbox
    if args.smtp:
        host, _, port = args.smtp.rpartition(":")
        if not host or not port.isdigit():
            raise BillingError("--smtp must be HOST:PORT, not %r" % args.smtp)
        cfg = dataclasses.replace(cfg, smtp_host=host, smtp_port=int(port))
    now = getattr(args, "now", None) or time.time()
    with _store(args) as store:
        result = send_pending(store, now, cfg, console=print if not args.json else _stderr)
    if args.json:
        _print_json(result)
    else:
        print("sent %d, to retry %d, failed %d" % (result["sent"], result["retry"], result["failed"]))
        for e in result["errors"]:
            print("  notification %d (%s): %s -> %s" % (e["id"], e["channel"], e["error"], e["state"]))
    return 0


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


COMMANDS = {"outbox": cmd_outbox}
