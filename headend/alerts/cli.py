"""``headend alerts`` and ``headend workorder``: the alert engine, its lifecycle and field work
orders (manual readings taken on site, ``headend reading``, are in ``headend.vee.cli``).

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``. ``AlertError`` is
a ``HeadendError``: ``cli.main``'s one handler prints it as ``error: ...``.
"""

from __future__ import annotations

import argparse
import json
import time

from headend.errors import AlertError
from headend.timearg import epoch_arg as _ts

STATES = ("active", "open", "acknowledged", "resolved", "all")


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")

    al = subparsers.add_parser("alerts", help="alert rules, open alerts and their lifecycle", parents=[db])
    asub = al.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND", required=True)
    run = asub.add_parser("run", help="evaluate every rule; new, updated, resolved alerts", parents=[db])
    run.add_argument("--now", type=_ts, help="evaluate as of this time (epoch s or ISO 8601; default now)")
    run.add_argument("--config", metavar="FILE", help="thresholds, TOML or JSON ([alerts] table)")
    run.add_argument("--json", action="store_true")
    ls = asub.add_parser("list", help="alerts by state and meter", parents=[db])
    ls.add_argument("--state", choices=STATES, default="active", help="default: active (open + acknowledged)")
    ls.add_argument("--meter", metavar="ID", help="only this meter's alerts")
    ls.add_argument("--json", action="store_true")
    ack = asub.add_parser("ack", help="acknowledge an open alert (audited)", parents=[db])
    ack.add_argument("id", type=int)
    ack.add_argument("--by", required=True, metavar="NAME", help="who acknowledges it (audited)")
    ack.add_argument("--note", help="kept in the alert's audit")
    ack.add_argument("--now", type=_ts, help=argparse.SUPPRESS)
    res = asub.add_parser("resolve", help="resolve an alert with a note (audited)", parents=[db])
    res.add_argument("id", type=int)
    res.add_argument("--by", required=True, metavar="NAME", help="who resolves it (audited)")
    res.add_argument("--note", required=True, help="what was found or done (audited)")
    res.add_argument("--now", type=_ts, help=argparse.SUPPRESS)

    wo = subparsers.add_parser("workorder", help="field work orders for suspected theft", parents=[db])
    wsub = wo.add_subparsers(dest="workorder_command", metavar="SUBCOMMAND", required=True)
    wl = wsub.add_parser("list", help="work orders with meter, location and reason", parents=[db])
    wl.add_argument("--state", choices=("open", "closed", "all"), default="all", help="default: all")
    wl.add_argument("--json", action="store_true")
    wc = wsub.add_parser("close", help="close a work order with the crew's findings", parents=[db])
    wc.add_argument("id", type=int)
    wc.add_argument("--by", required=True, metavar="NAME", help="who closes it (audited)")
    wc.add_argument("--findings", required=True, metavar="TEXT", help="what the crew found")
    wc.add_argument("--now", type=_ts, help=argparse.SUPPRESS)


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _now(args) -> float:
    return args.now if getattr(args, "now", None) is not None else time.time()


def _print_json(obj) -> None:
    print(json.dumps(obj, separators=(", ", ": "), default=str))


def cmd_alerts(args) -> int:
    from headend.alerts.config import load_config
    from headend.alerts.engine import run_alerts

    with _store(args) as store:
        if args.alerts_command == "run":
            out = run_alerts(store, _now(args), load_config(args.config))
            if args.json:
                _print_json(out)
                return 0
            counts = tuple(out[k] for k in ("new", "updated", "resolved", "work_orders", "notifications"))
            print("new %d, updated %d, resolved %d (work orders %d, notifications queued %d)" % counts)
            for a in out["alerts"]:
                print(
                    "  %-8s %6d %-8s %-22s %s"
                    % (a["change"], a["id"], a["severity"], a["rule"], a["meter_id"])
                )
            return 0
        if args.alerts_command == "list":
            state = None if args.state in ("all", "active") else args.state
            rows = store.alerts(state, args.meter)
            if args.state == "active":
                rows = [a for a in rows if a["state"] != "resolved"]
            if args.json:
                _print_json(rows)
            for a in [] if args.json else rows:
                print("%6d %-8s %-12s %-22s %-16s %s" % (a["id"], a["severity"], a["state"], a["rule"],
                                                         a["meter_id"], a["summary"]))  # fmt: skip
            return 0
        if not args.by.strip():
            raise AlertError("--by must name who made the change", "by")
        to = "acknowledged" if args.alerts_command == "ack" else "resolved"
        a = store.set_alert_state(args.id, to, args.by.strip(), args.note, _now(args))
    print("alert %d %s by %s" % (a["id"], a["state"], args.by.strip()))
    return 0


def cmd_workorder(args) -> int:
    from headend.alerts import workorders

    with _store(args) as store:
        if args.workorder_command == "close":
            wo = workorders.close(store, args.id, args.by, args.findings, _now(args))
            print("work order %d closed by %s" % (wo["id"], wo["closed_by"]))
            return 0
        rows = store.work_orders(None if args.state == "all" else args.state)
    if args.json:
        _print_json(rows)
    for w in [] if args.json else rows:
        print("%6d %-7s %-16s %-30s %s" % (w["id"], w["state"], w["meter_id"], w["location"], w["reason"]))
    return 0


COMMANDS = {"alerts": cmd_alerts, "workorder": cmd_workorder}
