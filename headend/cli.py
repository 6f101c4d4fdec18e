"""The ``headend`` command line: the root parser, and the one place errors become user-facing text.

Each feature registers its own subcommands: its ``cli`` module has ``register(subparsers)``,
which adds its parsers, and ``COMMANDS``, which maps each top-level command it added to its
handler (the way datasette's publish plugins each add a ``datasette publish`` subcommand).
``FEATURES`` below is the list, in the order ``headend --help`` shows them.

Every command takes ``--db PATH`` (default ``headend.db``), before or after its name, and
``--master-key-file PATH``: the master key sealing the meter keys (``headend.db.keystore``).
Exit codes: 0 success, 1 an error in what was asked (printed as ``error: ...``),
2 bad usage (argparse) or the broker refused ``serve``. Output cut short by its reader (``headend
readings M | head -3``: a broken pipe) ends quietly with 0, as ``head`` asked for no more.

The database: a command opens the ``--db`` that exists and refuses a missing one (``error: no
database at PATH``: a mistyped path must not become a new, empty database); only the commands
that create one say so in their parser (``set_defaults(db_use="create")``: ``meter add``, ``meter
provision``, ``broker-config``, ``account add``, ``web user add``, ``restore``); commands that
never open it (``bill-profile``) say ``db_use="none"``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys

from headend import __version__
from headend.alerts import cli as alerts_cli
from headend.billing import cli as billing_cli
from headend.commands import cli as commands_cli
from headend.console import cli as console_cli
from headend.db import cli as db_cli
from headend.db.engine import is_postgres
from headend.errors import CLIError, HeadendError
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
CREATES = "create"  # a parser's db_use: this command creates a missing database
NO_DB = "none"  # this command never opens the database
COMMANDS = {name: handler for feature in FEATURES for name, handler in feature.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headend",
        description="Smart-meter head-end: ingest, VEE, billing, prepaid, alerts.",
    )
    parser.add_argument("--version", action="version", version="headend " + __version__)
    parser.add_argument(
        "--db",
        default=os.environ.get("HEADEND_DB") or "headend.db",
        help="SQLite database file, or a postgresql:// URL (default $HEADEND_DB, else headend.db)",
    )
    parser.add_argument("--master-key-file", metavar="PATH", help=MASTER_KEY_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for feature in FEATURES:
        feature.register(sub)
    _everywhere(parser, "--master-key-file", metavar="PATH", default=argparse.SUPPRESS, help=MASTER_KEY_HELP)
    _json_help(parser)
    return parser


JSON_HELP = "print JSON (the keys docs/cli.md lists) instead of text"


def _json_help(parser: argparse.ArgumentParser) -> None:
    """``--json`` means the same everywhere: the help of every one that has none of its own."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _json_help(sub)
        elif "--json" in action.option_strings and action.help is None:
            action.help = JSON_HELP


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


def creating_commands(parser: argparse.ArgumentParser, path: str = "") -> list[str]:
    """The commands that create a missing database (``db_use=CREATES``), as typed: "meter add"."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = (path + " " + name).strip()
                if sub.get_default("db_use") == CREATES:
                    out.append(full)
                out += creating_commands(sub, full)
    return out


def missing_database(parser: argparse.ArgumentParser, args) -> str | None:
    """The error for a command that opens ``--db`` when there is no such file, else None."""
    db_use = getattr(args, "db_use", None)
    path = getattr(args, "db", None)
    if (
        db_use in (CREATES, NO_DB)
        or not path
        or path == ":memory:"
        or os.path.exists(path)
        or is_postgres(path)
    ):
        return None
    return "no database at %s (commands that create one: %s)" % (path, ", ".join(creating_commands(parser)))


def _stdout_closed() -> int:
    """The reader of stdout went away (``| head``): what it asked for was printed; exit 0 without
    a traceback (the Python docs' recipe: point stdout at devnull so the exit's flush is quiet)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        missing = missing_database(parser, args)
        if missing is not None:
            raise CLIError(missing)
        rc = COMMANDS[args.command](args)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        return _stdout_closed()
    except (HeadendError, ProtocolError, sqlite3.Error, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
