"""``headend console``: the operator's live view of the meters' messages and open alerts,
with a command line that queues and sends commands (``headend.console``).

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``; errors
(a bad ``--meter``, an unreachable or refusing broker) are raised for its one handler.
"""

from __future__ import annotations

import argparse

from headend.mqtt import add_broker_arguments, broker_url_with_password


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    c = subparsers.add_parser(
        "console",
        help="live decoded stream, open alerts and a command line (quit to leave)",
        parents=[db],
        description="Shows every meter message (readings, events, acks, status) verified with the"
        " meter's key, and the open alerts; type `help` for the commands (relay, read-now,"
        " time-sync, topup, config, tariff, filter, quit). Full screen on a terminal, one line"
        " per message otherwise.",
    )
    add_broker_arguments(c)
    c.add_argument("--meter", metavar="ID", help="show only this meter (the `filter` command changes it)")
    c.add_argument(
        "--client-id", help="MQTT client id (default headend.console.<random>; never a valid meter id)"
    )
    c.add_argument(
        "--alerts-every", type=float, default=5.0, metavar="S", help="s between alert refreshes (default 5)"
    )
    c.add_argument("--plain", action="store_true", help="one line per message even on a terminal")


def cmd_console(args) -> int:
    from headend.console.app import ConsoleApp
    from headend.db.storage import Storage

    with Storage(args.db, master_key_file=getattr(args, "master_key_file", None)) as store:
        app = ConsoleApp(
            store,
            broker_url_with_password(args.broker, args.password_file, cafile=args.cafile),
            meter=args.meter,
            client_id=args.client_id,
            live=False if args.plain else None,
            alerts_every=args.alerts_every,
        )
        return app.run()


COMMANDS = {"console": cmd_console}
