"""The ``headend`` command line: the root parser, and the one place errors become user-facing text.

Each feature registers its own subcommands: its ``cli`` module has ``register(subparsers)``,
which adds its parsers, and ``COMMANDS``, which maps each top-level command it added to its
handler (the way datasette's publish plugins each add a ``datasette publish`` subcommand).
``FEATURES`` below is the list, in the order ``headend --help`` shows them.

Every command takes ``--db PATH`` (default ``headend.db``), before or after its name, and
``--master-key-file PATH``: the master key sealing the meter keys (``headend.db.keystore``).
Exit codes: 0 success, 1 an error in what was asked (printed as ``error: ...``),
2 bad usage (argparse) or the broker refused ``serve``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys

from headend import __version__
from headend.alerts import cli as alerts_cli
from headend.billing import cli as billing_cli
from headend.commands import cli as commands_cli
from headend.console import cli as console_cli
from headend.db import cli as db_cli
from headend.errors import CLIError, HeadendError  # noqa: F401  (CLIError: raised by the commands)
from headend.ingest import cli as ingest_cli
from headend.meters import cli as meters_cli
from headend.notify import cli as notify_cli
from headend.prepaid import cli as prepaid_cli
from headend.vee import cli as vee_cli
from headend.web import cli as web_cli
from protocol.errors import ProtocolError

FEATURES = (
    meters_cli,  # meter, broker-config
    ingest_cli,  # serve, readings, stats
    vee_cli,  # vee, reading
    billing_cli,  # bill-profile, account, bill
    prepaid_cli,  # topup, pay, prepaid
    commands_cli,  # command, commands, dispatch
    notify_cli,  # outbox
    alerts_cli,  # alerts, workorder
    console_cli,  # console
    web_cli,  # web
    db_cli,  # backup, restore, keys
)
COMMANDS = {name: handler for feature in FEATURES for name, handler in feature.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headend",
        description="Smart-meter head-end: ingest, VEE, billing, prepaid, alerts.",
    )
    parser.add_argument("--version", action="version", version="headend " + __version__)
    parser.add_argument("--db", default="headend.db", help="SQLite database file (default headend.db)")
    parser.add_argument("--master-key-file", metavar="PATH", help=MASTER_KEY_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for feature in FEATURES:
        feature.register(sub)
    _everywhere(parser, "--master-key-file", metavar="PATH", default=argparse.SUPPRESS, help=MASTER_KEY_HELP)
    return parser


MASTER_KEY_HELP = (
    "the master key sealing the meter keys in the database (64 hex digits, mode 0600); default"
    " $HEADEND_MASTER_KEY_FILE, else $HEADEND_MASTER_KEY (the hex itself), else DB-NAME.master-key"
    " beside the database (created at first use)"
)


def _everywhere(parser: argparse.ArgumentParser, *flags, **kw) -> None:
    """Add an option to every subcommand below parser (like --db: before or after the command)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if not any(flags[0] in a.option_strings for a in sub._actions):
                    sub.add_argument(*flags, **kw)
                _everywhere(sub, *flags, **kw)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except (HeadendError, ProtocolError, sqlite3.Error, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
