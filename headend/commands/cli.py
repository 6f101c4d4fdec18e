"""``headend command``, ``headend commands`` and ``headend dispatch``: the command queue.

``headend command`` queues one signed command of any type to a meter, or shows one with its
history; ``headend commands list METER`` lists a meter's whole queue and each command's
delivery state; ``headend dispatch`` delivers queued commands until they are acked:

    headend command relay METER --open|--close [--reason operator|credit|load-limit|tamper]
    headend command tariff METER --tariff FILE [--activate-at ISO|now] [--tariff-id N]
    headend command time-sync METER [--ts ISO|now]
    headend command read-now METER
    headend command config METER [--interval S] [--low-balance AMOUNT]
                                 [--emergency-credit AMOUNT] [--friendly-hours SPEC]
    headend command show ID

Every queueing command takes ``--ttl S`` (how long the dispatcher keeps trying) and
``--json``, and prints the queued command: id, meter, seq, cmd, expires. ``headend dispatch``
delivers it; top-ups stay ``headend topup``. Registered with ``headend.cli`` by
``register(subparsers)`` and ``COMMANDS``; errors are raised for its one handler.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from datetime import UTC, datetime

from headend.commands import CMD_NAMES, RESULT_NAMES, build
from headend.commands import tariff as tariff_file
from headend.commands.queue import DEFAULT_TTL, describe, queue
from headend.errors import CommandError
from headend.mqtt import add_broker_arguments, broker_url_with_password
from protocol import commands, messages

TYPES = {
    "relay": messages.CMD_RELAY,
    "tariff": messages.CMD_SET_TARIFF,
    "time-sync": messages.CMD_TIME_SYNC,
    "read-now": messages.CMD_READ_NOW,
    "config": messages.CMD_SET_CONFIG,
}


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    cm = subparsers.add_parser(
        "command",
        help="queue one signed command to a meter, or show one (`commands list`: a meter's whole queue)",
        parents=[db],
    )
    csub = cm.add_subparsers(dest="command_type", metavar="TYPE", required=True)

    def queued(name: str, help_text: str) -> argparse.ArgumentParser:
        p = csub.add_parser(name, help=help_text, parents=[db])
        p.add_argument("meter_id")
        ttl = DEFAULT_TTL[TYPES[name]]
        p.add_argument(
            "--ttl", type=int, help="s the dispatcher keeps trying; the command's expiry (default %d)" % ttl
        )
        p.add_argument("--json", action="store_true")
        p.add_argument("--now", type=float, help=argparse.SUPPRESS)
        return p

    rl = queued("relay", "open or close the meter's relay (cmd 2)")
    state = rl.add_mutually_exclusive_group(required=True)
    state.add_argument("--open", dest="open_relay", action="store_true", help="disconnect the supply")
    state.add_argument("--close", dest="open_relay", action="store_false", help="reconnect the supply")
    rl.add_argument(
        "--reason", choices=tuple(build.RELAY_REASONS), default="operator", help="why (default operator)"
    )

    tf = queued("tariff", "send a tariff file's calendar and prices (cmd 3, set tariff)")
    tf.add_argument("--tariff", required=True, metavar="FILE", help="docs/tariff-format.md (or URDB JSON)")
    tf.add_argument(
        "--activate-at",
        default="now",
        metavar="ISO|now",
        help="when the meter switches, UTC unless the time has an offset (default now: on receipt)",
    )
    tf.add_argument("--tariff-id", type=int, help="the id readings report (default: a hash of the content)")

    ts = queued("time-sync", "set the meter's clock (cmd 4)")
    ts.add_argument(
        "--ts",
        default="now",
        metavar="ISO|now",
        help="the time to set, UTC unless it has an offset (default now)",
    )

    queued("read-now", "ask for a reading at once (cmd 5)")

    cf = queued("config", "change the reading interval and prepaid settings (cmd 6)")
    cf.add_argument("--interval", type=int, metavar="S", help="reading interval, 1..86400 s")
    cf.add_argument("--low-balance", metavar="AMOUNT", help="low-balance threshold, currency units")
    cf.add_argument("--emergency-credit", metavar="AMOUNT", help="emergency credit limit, currency units")
    cf.add_argument(
        "--friendly-hours",
        metavar="SPEC",
        help='"0:22:00-24:00,5:00:00-08:00" (weekday 0 = Monday), JSON [[weekday, start_min,'
        " end_min], ...], or none to clear",
    )

    sh = csub.add_parser("show", help="a command with its sends, outcome and acks", parents=[db])
    sh.add_argument("id", type=int)
    sh.add_argument("--json", action="store_true")

    cm = subparsers.add_parser(
        "commands", help="list the commands queued to a meter (`command`: queue or show one)", parents=[db]
    )
    csub = cm.add_subparsers(dest="commands_command", metavar="SUBCOMMAND", required=True)
    cl = csub.add_parser("list", help="a meter's commands and their delivery state", parents=[db])
    cl.add_argument("meter_id")
    cl.add_argument("--json", action="store_true")

    dp = subparsers.add_parser("dispatch", help="deliver queued commands to meters until acked", parents=[db])
    add_broker_arguments(dp)
    dp.add_argument("--once", action="store_true", help="one round (acks, expiry, sends), then exit")
    dp.add_argument("--interval", type=float, default=1.0, help="s between rounds (default 1)")
    dp.add_argument("--backoff", type=float, default=30.0, help="s before the first resend (default 30)")
    dp.add_argument("--backoff-max", type=float, default=3600.0, help="longest resend delay (default 3600)")
    dp.add_argument(
        "--client-id",
        default="headend.dispatch",
        help="MQTT client id (default headend.dispatch; never a valid meter id)",
    )
    dp.add_argument("--now", type=float, help=argparse.SUPPRESS)


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, separators=(", ", ": "), default=str))


def _opt(fmt: str, value) -> str:
    return "" if value is None or value == "" else fmt % value


def _now(args) -> float:
    return getattr(args, "now", None) or time.time()


def _iso(t) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _args_of(args, now: float) -> dict:
    """The wire args of the relay, time-sync, read-now or config command in ``args``."""
    kind = args.command_type
    if kind == "relay":
        return build.relay(args.open_relay, args.reason)
    if kind == "time-sync":
        return build.time_sync(build.parse_time(args.ts, now, "--ts"))
    if kind == "read-now":
        return build.read_now()
    low = None if args.low_balance is None else build.parse_money(args.low_balance, "--low-balance")
    emergency = None
    if args.emergency_credit is not None:
        emergency = build.parse_money(args.emergency_credit, "--emergency-credit")
    hours = None if args.friendly_hours is None else build.parse_friendly_hours(args.friendly_hours)
    return build.config(args.interval, low, emergency, hours)


def _tariff(store, args, now: float) -> tuple[dict, str, list[str]]:
    """(wire args, ref, notes) of ``command tariff``: the file converted for this meter's rates."""
    return tariff_file.for_meter(store, args.meter_id, args.tariff, args.activate_at, args.tariff_id, now)


def _print(row: dict, notes: list[str]) -> None:
    print(
        "command %d to %s: seq %d %s %s, %s, expires %s"
        % (row["id"], row["meter_id"], row["seq"], row["name"], json.dumps(row["args"]), row["state"],
           _iso(row["expires"]))
    )  # fmt: skip
    for n in notes:
        print("  note: " + n)


def _show(row: dict) -> None:
    print(
        "command %d to %s: seq %d %s %s"
        % (row["id"], row["meter_id"], row["seq"], row["name"], json.dumps(row["args"]))
    )
    print(
        "  state %s, attempts %d, expires %s%s%s"
        % (row["state"], row["attempts"], _iso(row["expires"]),
           "" if row["result"] is None else ", result %d %s" % (row["result"], row["result_name"]),
           " (%s)" % row["reason"] if row["reason"] else "")
    )  # fmt: skip
    for e in row["history"]:
        extra = "" if e["result"] is None else " result %d %s" % (e["result"], e["result_name"])
        attempt = " #%d" % e["attempt"] if e["event"] == "sent" else ""
        print(
            "  %s %s%s%s%s"
            % (_iso(e["at"]), e["event"], attempt, extra, " (%s)" % e["reason"] if e["reason"] else "")
        )
    for a in row["acks"]:
        print(
            "  ack seq %d at meter time %s: %d %s%s"
            % (
                a["seq"],
                _iso(a["ts"]),
                a["result"],
                a["result_name"],
                " %s" % a["detail"] if a["detail"] else "",
            )
        )


def cmd_command(args) -> int:
    with _store(args) as store:
        if args.command_type == "show":
            row = describe(store, args.id, history=True)
            if args.json:
                _print_json(row)
            else:
                _show(row)
            return 0
        now = args.now or time.time()
        cmd = TYPES[args.command_type]
        notes: list[str] = []
        ref = None
        if args.command_type == "tariff":
            wire, ref, notes = _tariff(store, args, now)
        else:
            wire = _args_of(args, now)
        row = queue(store, args.meter_id, cmd, wire, now, args.ttl, ref)
    if args.json:
        _print_json({**row, "notes": notes})
    else:
        _print(row, notes)
    return 0


def cmd_commands(args) -> int:
    with _store(args) as store:
        if store.meter(args.meter_id) is None:
            raise CommandError("unknown meter %r" % args.meter_id, "meter_id")
        rows = [{k: v for k, v in c.items() if k != "frame"} for c in store.commands(args.meter_id)]
    if args.json:
        _print_json(rows)
    for c in [] if args.json else rows:
        print(
            "seq %-6d %-24s %-8s attempts %d%s%s"
            % (c["seq"], command_label(c["cmd"], c["args"]), c["state"], c["attempts"],
               _opt(" result %s", RESULT_NAMES.get(c["result"], c["result"])), _opt(" (%s)", c["reason"]))
        )  # fmt: skip
    return 0


def command_label(cmd: int, args: dict) -> str:
    """A queued command as an operator names it: "relay open", "set-config interval=900",
    "top-up 5000" (milli-units), "read-now"; "cmd N" only for a type this head-end does not know."""
    name = CMD_NAMES.get(cmd)
    if name is None:
        return "cmd %d" % cmd
    try:
        named = build.describe_args(cmd, commands.command_args(cmd, {int(k): v for k, v in args.items()}))
    except (ValueError, KeyError, TypeError, AttributeError):  # stored args it cannot name: the type alone
        return name
    if cmd == messages.CMD_RELAY:
        reason = named.get("reason")
        return "relay %s%s" % (named["state"], "" if reason in (None, "operator") else " (%s)" % reason)
    if cmd == messages.CMD_TOPUP:
        return "top-up %s" % named.get("amount")
    if cmd == messages.CMD_SET_CONFIG:
        return " ".join([name] + ["%s=%s" % kv for kv in sorted(named.items())])
    return name


def cmd_dispatch(args) -> int:
    from headend.commands.dispatch import Dispatcher

    if args.interval <= 0:
        raise CommandError("--interval must be > 0")
    with _store(args) as store:
        d = Dispatcher(
            store,
            broker_url_with_password(args.broker, args.password_file, cafile=args.cafile),
            args.client_id,
            args.backoff,
            args.backoff_max,
        )
        d.connect()
        try:
            if args.once:
                _print_json(d.round(_now(args)))
                return 0
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: d.stop())
            return d.run(args.interval)
        finally:
            d.close()


COMMANDS = {"command": cmd_command, "commands": cmd_commands, "dispatch": cmd_dispatch}
