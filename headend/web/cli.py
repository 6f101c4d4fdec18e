"""``headend web``: the operators' web dashboard, and its users.

``headend web --port N [--host 127.0.0.1] [--trusted-proxy ADDR]... [--behind-tls]`` serves the
dashboard until SIGTERM/SIGINT. ``--trusted-proxy`` (repeatable, or a comma list; addresses or
networks): requests whose TCP peer is one of them are attributed to the client address in
their ``X-Forwarded-For``, and their ``X-Forwarded-Proto: https`` marks cookies ``Secure``;
from any other peer both headers are ignored. ``--behind-tls``: the browser reaches the
dashboard over TLS (a terminating proxy), so cookies are always ``Secure``.
``headend web user add NAME --role operator|viewer [--password-stdin]`` adds a login (the
password from the first line of stdin, else asked twice with getpass); ``headend web user
list [--json]`` lists them. Registered with ``headend.cli`` by ``register(subparsers)``
and ``COMMANDS``; errors are ``HeadendError``s for the CLI's one handler.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
import time

from headend.errors import CLIError
from headend.web.auth import ROLES, check_new_user, hash_password


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    web = subparsers.add_parser("web", help="the operators' web dashboard (login required)", parents=[db])
    web.add_argument("--port", type=int, help="TCP port to listen on (0: any free port)")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    web.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="a reverse proxy whose X-Forwarded-For/-Proto are believed (repeatable, or a comma list)",
    )
    web.add_argument(
        "--behind-tls", action="store_true", help="served to browsers over TLS: Secure cookies always"
    )
    wsub = web.add_subparsers(dest="web_command", metavar="SUBCOMMAND")
    user = wsub.add_parser("user", help="dashboard logins", parents=[db])
    usub = user.add_subparsers(dest="user_command", metavar="SUBCOMMAND", required=True)
    add = usub.add_parser("add", help="add a login with a role", parents=[db])
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES, help="operator: may act; viewer: reads only")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    add.set_defaults(db_use="create")  # headend.cli: the first login may come before any meter
    lst = usub.add_parser("list", help="the logins and their roles", parents=[db])
    lst.add_argument("--json", action="store_true", help="print the logins as a JSON list")


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _terminal() -> bool:
    """Whether getpass can ask on a terminal (stdin is one, or /dev/tty opens)."""
    try:
        if sys.stdin is not None and sys.stdin.isatty():
            return True
    except ValueError:  # stdin closed
        pass
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def _password(args) -> str:
    """The new login's password: stdin's first line (--password-stdin), else asked twice on the
    terminal. CLIError, never a traceback, when stdin ends first (``< /dev/null``, a closed pipe)."""
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CLIError("no password on stdin: --password-stdin reads it from stdin's first line")
        return line.rstrip("\r\n")
    if not _terminal():
        raise CLIError(
            "no terminal to ask the password on: give it on stdin's first line with --password-stdin"
        )
    try:
        first = getpass.getpass("password for %s: " % args.name)
        again = getpass.getpass("again: ")
    except EOFError:
        raise CLIError(
            "no password given: input ended before it was typed (no terminal to ask on?); give it on"
            " stdin's first line with --password-stdin"
        ) from None
    if again != first:
        raise CLIError("the two passwords differ")
    return first


def cmd_user(args) -> int:
    with _store(args) as store:
        if args.user_command == "list":
            rows = store.web_users()
            if args.json:
                print(json.dumps(rows, separators=(", ", ": ")))
            for u in [] if args.json else rows:
                print("%-24s %s" % (u["name"], u["role"]))
            return 0
        password = _password(args)
        check_new_user(args.name, args.role, password)  # AuthError, WebUserError: HeadendErrors
        row = store.add_web_user(args.name, args.role, now=time.time(), **hash_password(password))
    print("web user %s added (%s)" % (row["name"], row["role"]))
    return 0


def cmd_web(args) -> int:
    if args.web_command == "user":
        return cmd_user(args)
    if args.port is None:
        raise CLIError("--port is required: headend web --port N")
    if not 0 <= args.port <= 65535:
        raise CLIError("--port must be 0..65535, got %d" % args.port)
    from headend.web.request import trusted_networks
    from headend.web.server import make_server

    try:
        proxies = trusted_networks(args.trusted_proxy)
    except ValueError as e:
        raise CLIError("--trusted-proxy: %s" % e)
    with _store(args) as store:
        server = make_server(store, args.host, args.port, trusted_proxies=proxies, behind_tls=args.behind_tls)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
        host, port = server.server_address[:2]
        print("headend web: listening on http://%s:%d/" % (host, port), file=sys.stderr, flush=True)
        if proxies:
            print("headend web: X-Forwarded-For and -Proto believed from %s"
                  % ", ".join(map(str, proxies)), file=sys.stderr, flush=True)  # fmt: skip
        if not store.web_users():
            print("headend web: no users yet: add one with `headend web user add NAME --role operator`",
                  file=sys.stderr, flush=True)  # fmt: skip
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
    return 0


COMMANDS = {"web": cmd_web}
