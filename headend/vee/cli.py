"""``headend vee`` and ``headend reading``: validation, estimation and editing of readings, and
manual readings taken on site.

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``; errors are raised
for its one handler.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time

from headend.errors import CLIError
from headend.timearg import epoch_arg as _ts


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    vee = subparsers.add_parser("vee", help="validation, estimation, editing", parents=[db])
    vsub = vee.add_subparsers(dest="vee_command", metavar="SUBCOMMAND", required=True)
    run = vsub.add_parser("run", help="run VEE for one meter or all", parents=[db])
    run.add_argument("meter_id", nargs="?")
    run.add_argument("--now", type=_ts, help="the time to validate as of (default: now)")
    run.add_argument("--config", help="VEE thresholds, TOML or JSON ([vee] table); a bad value is named")
    run.add_argument(
        "--json", action="store_true", help="print {meter_id: summary} as one JSON object (default: text)"
    )
    ed = vsub.add_parser("edit", help="replace one interval's energy, with a reason (audited)", parents=[db])
    ed.add_argument("meter_id")
    ed.add_argument("interval_end", type=_ts, help="end of the interval to edit (epoch s or ISO 8601)")
    ed.add_argument("--imp", required=True, help="import Wh per rate, comma-separated (e.g. 10,0,0,2)")
    ed.add_argument("--exp", help="export Wh per rate, comma-separated")
    ed.add_argument("--reason", required=True, help="why the interval is corrected (kept in the audit)")
    ed.add_argument(
        "--user", default=os.environ.get("USER", "operator"), help="who corrects it (default $USER)"
    )
    ed.add_argument("--now", type=_ts, help="the time of the edit (default: now)")

    user = os.environ.get("USER", "operator")
    rd = subparsers.add_parser("reading", help="enter a manual reading taken on site", parents=[db])
    rsub = rd.add_subparsers(dest="reading_command", metavar="SUBCOMMAND", required=True)
    en = rsub.add_parser("enter", help="store it like an ingested reading (VEE pending)", parents=[db])
    en.add_argument("meter_id")
    en.add_argument("--ts", required=True, type=_ts, help="when it was read (epoch s or ISO 8601)")
    en.add_argument("--imp", required=True, type=_wh, help="import Wh per rate, e.g. 1200,340")
    en.add_argument("--exp", type=_wh, help="export Wh per rate (default: carried from the last reading)")
    en.add_argument("--by", default=user, metavar="NAME", help="who read it (default $USER)")
    en.add_argument("--note", help="free text kept with the reading")
    en.add_argument("--work-order", type=int, metavar="ID", help="the field work order it was read under")
    en.add_argument("--now", type=_ts, help=argparse.SUPPRESS)


def _wh(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("must be comma-separated whole Wh per rate, got %r" % text)
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("Wh must not be negative, got %r" % text)
    return values


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=None, separators=(", ", ": "), default=str))


def cmd_vee(args) -> int:
    try:
        engine = importlib.import_module("headend.vee.engine")
    except ModuleNotFoundError as e:
        if e.name not in ("headend.vee", "headend.vee.engine"):
            raise
        raise CLIError("the VEE engine (headend.vee.engine) is not installed")
    now = args.now if args.now is not None else int(time.time())
    with _store(args) as store:
        if args.meter_id is not None and store.meter(args.meter_id) is None:
            raise CLIError("unknown meter %r" % args.meter_id)
        try:
            if args.vee_command == "edit":
                from headend.vee.edit import edit_interval

                imp = _wh_list("--imp", args.imp)
                exp = _wh_list("--exp", args.exp) if args.exp else None
                result = edit_interval(
                    store,
                    args.meter_id,
                    args.interval_end,
                    imp,
                    exp,
                    reason=args.reason,
                    user=args.user,
                    now=now,
                )
            else:
                from headend.vee.config import load_config

                cfg = load_config(args.config)
                ids = [args.meter_id] if args.meter_id else [m["meter_id"] for m in store.meters()]
                result = {m: engine.run_vee(store, m, now, cfg) for m in ids}
        except ValueError as e:  # headend.vee.VeeError and its kin name the bad input
            raise CLIError(str(e))
    if args.vee_command == "run" and not args.json:
        print(run_summary_text(result))
    else:
        _print_json(result)
    return 0


def run_summary_text(result: dict) -> str:
    """``vee run``'s text: one line per meter (readings by state, the rules that fired, estimates,
    edits, audit entries) and a total line; ``--json`` prints ``result`` itself."""
    lines = []
    totals: dict = {}
    for meter_id, s in result.items():
        states = s.get("states") or {}
        for k, n in states.items():
            totals[k] = totals.get(k, 0) + n
        fired = [
            "%s %s" % (rule, "/".join("%d %s" % (n, o) for o, n in sorted(c.items()) if n))
            for rule, c in sorted((s.get("rules") or {}).items())
            if any(c.values())
        ]
        lines.append(
            "%s: %s readings (%s); rules: %s; estimates %s, edits %s, audit entries %s"
            % (
                meter_id,
                s.get("readings", 0),
                ", ".join("%s %d" % kv for kv in sorted(states.items()) if kv[1]) or "none",
                ", ".join(fired) or "none fired",
                (s.get("estimates") or {}).get("total", 0),
                s.get("edits", 0),
                s.get("audit_entries", 0),
            )
        )
    lines.append(
        "vee: %d meter(s); readings by state: %s"
        % (len(result), ", ".join("%s %d" % kv for kv in sorted(totals.items()) if kv[1]) or "none")
    )
    return "\n".join(lines)


def _now(args) -> float:
    return args.now if getattr(args, "now", None) is not None else time.time()


def cmd_reading(args) -> int:
    from headend.vee.manual import enter_reading

    with _store(args) as store:
        row = enter_reading(store, args.meter_id, args.ts, args.imp, args.exp, args.by, _now(args),
                            note=args.note, work_order_id=args.work_order)  # fmt: skip
    _print_json(row)
    return 0


def _wh_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise CLIError("%s must be comma-separated whole Wh per rate, got %r" % (flag, text))
    if any(v < 0 for v in values):
        raise CLIError("%s values must not be negative, got %r" % (flag, text))
    return values


COMMANDS = {"vee": cmd_vee, "reading": cmd_reading}
