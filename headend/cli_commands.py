"""``headend command``: queue a signed command of any type to a meter, or show one with its history.

    headend command relay METER --open|--close [--reason operator|credit|load-limit|tamper]
    headend command tariff METER --tariff FILE [--activate-at ISO|now] [--tariff-id N]
    headend command time-sync METER [--ts ISO|now]
    headend command read-now METER
    headend command config METER [--interval S] [--low-balance AMOUNT]
                                 [--emergency-credit AMOUNT] [--friendly-hours SPEC]
    headend command show ID

Every queueing command takes ``--ttl S`` (how long the dispatcher keeps trying) and
``--json``, and prints the queued command: id, meter, seq, cmd, expires. ``headend dispatch``
delivers it; top-ups stay ``headend topup``. Hooked into ``headend.cli`` with
``add_command_commands(subparsers)`` and ``COMMANDS``; errors are raised for its one handler.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from headend.commands import CommandError, build
from headend.commands import tariff as tariff_file
from headend.commands.queue import DEFAULT_TTL, describe, queue
from protocol import messages

TYPES = {
    "relay": messages.CMD_RELAY,
    "tariff": messages.CMD_SET_TARIFF,
    "time-sync": messages.CMD_TIME_SYNC,
    "read-now": messages.CMD_READ_NOW,
    "config": messages.CMD_SET_CONFIG,
}


def add_command_commands(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    cm = subparsers.add_parser("command", help="queue a signed command to a meter, or show one", parents=[db])
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
    rl.add_argument("--reason", choices=tuple(build.RELAY_REASONS), default="operator")

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


def _store(args):
    from headend.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, separators=(", ", ": "), default=str))


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
    meter = store.meter(args.meter_id)
    if meter is None:
        raise CommandError("unknown meter %r" % args.meter_id, "meter_id")
    if meter["rates"]:
        max_rates, source = meter["rates"], "meters.rates of %s" % args.meter_id
    elif meter["status_rates"]:
        max_rates, source = meter["status_rates"], "as %s last reported in its status" % args.meter_id
    else:
        max_rates, source = messages.MAX_RATES, "the protocol's limit"
    activate_at = 0 if args.activate_at == "now" else build.parse_time(args.activate_at, now, "--activate-at")
    tariff, single = tariff_file.load(args.tariff)
    got = tariff_file.set_tariff(tariff, activate_at, now, max_rates, source, args.tariff_id, single)
    return got.args, "%s versions[%d]" % (args.tariff, got.version), got.notes


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


COMMANDS = {"command": cmd_command}
