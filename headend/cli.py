"""The ``headend`` command line: the one place errors become user-facing text.

Every command takes ``--db PATH`` (default ``headend.db``), before or after its name, and
``--master-key-file PATH``: the master key sealing the meter keys (``headend.keystore``).
Exit codes: 0 success, 1 an error in what was asked (printed as ``error: ...``),
2 bad usage (argparse) or the broker refused ``serve``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime

from headend import (
    __version__,
    cli_alerts,
    cli_backup,
    cli_billing,
    cli_billrun,
    cli_commands,
    cli_console,
    cli_keys,
    cli_prepaid,
    cli_web,
)
from headend.billing import BillingError
from headend.keystore import KeystoreError
from headend.mqtt_service import BROKER_HELP, PASSWORD_HELP, ServiceError
from headend.prepaid import PrepaidError
from headend.provision import ProvisionError
from headend.storage import StorageError
from headend.storage_billing import AccountError
from headend.timearg import epoch_arg as _ts
from protocol.errors import ProtocolError


class CLIError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    parser = argparse.ArgumentParser(
        prog="headend",
        description="Smart-meter head-end: ingest, VEE, billing, prepaid, alerts.",
    )
    parser.add_argument("--version", action="version", version="headend " + __version__)
    parser.add_argument("--db", default="headend.db", help="SQLite database file (default headend.db)")
    parser.add_argument("--master-key-file", metavar="PATH", help=MASTER_KEY_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    meter = sub.add_parser("meter", help="provision meters", parents=[db])
    msub = meter.add_subparsers(dest="meter_command", metavar="SUBCOMMAND", required=True)
    add = msub.add_parser("add", help="register a meter; prints its key and broker password", parents=[db])
    add.add_argument("meter_id")
    add.add_argument("--key", help="64 hex digits (generated when not given)")
    add.add_argument("--account")
    lst = msub.add_parser("list", help="list registered meters", parents=[db])
    lst.add_argument("--json", action="store_true")

    bc = sub.add_parser(
        "broker-config", help="write a Mosquitto config for every registered meter", parents=[db]
    )
    bc.add_argument("--out", required=True, metavar="DIR")
    bc.add_argument("--port", required=True, type=int, help="the meters' listener")
    bc.add_argument(
        "--headend-port",
        type=int,
        metavar="M",
        help="the head-end's listener, where headend_url points (default PORT + 1: a `--port N`"
        " command line keeps working; meters need only PORT open)",
    )
    bc.add_argument("--persistence", action="store_true", help="keep broker state in DIR across restarts")

    serve = sub.add_parser("serve", help="ingest from the broker until SIGTERM/SIGINT", parents=[db])
    serve.add_argument(
        "--broker",
        required=True,
        metavar="URL",
        help=BROKER_HELP,
    )
    serve.add_argument("--password-file", metavar="FILE", help=PASSWORD_HELP)
    serve.add_argument("--shared", action="store_true", help="join the shared subscription (MQTT 5)")
    serve.add_argument(
        "--client-id",
        default="headend.ingest",
        help="stable id of the persistent session (default headend.ingest; never a valid meter id)",
    )
    serve.add_argument("--batch", type=int, default=500, help="messages per commit, at most (default 500)")
    serve.add_argument(
        "--batch-ms",
        type=float,
        default=50,
        help="commit at latest this long after a batch's first message (default 50)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="ingest processes on the shared subscription, sessions CLIENT_ID-0.. (default 1;"
        " > 1 accepts Mosquitto issue 2662: a QoS 1 message in flight to a worker that"
        " disconnects can be lost)",
    )
    serve.add_argument(
        "--mqtt",
        choices=("3.1.1", "5"),
        default="3.1.1",
        help="MQTT version of the head-end's session (default 3.1.1: paho receives it faster)",
    )

    rd = sub.add_parser("readings", help="print a meter's stored readings", parents=[db])
    rd.add_argument("meter_id")
    rd.add_argument("--from", dest="from_ts", type=_ts, metavar="TS")
    rd.add_argument("--to", dest="to_ts", type=_ts, metavar="TS")
    rd.add_argument("--json", action="store_true")

    st = sub.add_parser(
        "stats", help="ingest counters: accepted, duplicates, rejected by reason", parents=[db]
    )
    st.add_argument("--json", action="store_true")

    vee = sub.add_parser("vee", help="validation, estimation, editing", parents=[db])
    vsub = vee.add_subparsers(dest="vee_command", metavar="SUBCOMMAND", required=True)
    run = vsub.add_parser("run", help="run VEE for one meter or all", parents=[db])
    run.add_argument("meter_id", nargs="?")
    run.add_argument("--now", type=_ts, help="the time to validate as of (default: now)")
    run.add_argument("--config", help="VEE thresholds, TOML or JSON ([vee] table); a bad value is named")
    ed = vsub.add_parser("edit", help="replace one interval's energy, with a reason (audited)", parents=[db])
    ed.add_argument("meter_id")
    ed.add_argument("interval_end", type=_ts, help="end of the interval to edit (epoch s or ISO 8601)")
    ed.add_argument("--imp", required=True, help="import Wh per rate, comma-separated (e.g. 10,0,0,2)")
    ed.add_argument("--exp", help="export Wh per rate, comma-separated")
    ed.add_argument("--reason", required=True)
    ed.add_argument("--user", default=os.environ.get("USER", "operator"))
    ed.add_argument("--now", type=_ts, help="the time of the edit (default: now)")
    cli_billing.add_billing_commands(sub)
    cli_billrun.add_billrun_commands(sub)
    cli_prepaid.add_prepaid_commands(sub)
    cli_commands.add_command_commands(sub)
    cli_alerts.add_alert_commands(sub)
    cli_console.add_console_commands(sub)
    cli_web.add_web_commands(sub)
    cli_backup.add_backup_commands(sub)
    cli_keys.add_key_commands(sub)
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


def _store(args):
    from headend.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=None, separators=(", ", ": "), default=str))


def cmd_meter(args) -> int:
    from headend import provision

    with _store(args) as store:
        if args.meter_command == "add":
            _print_json(provision.add_meter(store, args.meter_id, args.key, args.account))
            return 0
        rows = [
            {k: m[k] for k in ("meter_id", "account", "online", "last_seen", "fw", "board")}
            for m in store.meters()
        ]
    if args.json:
        _print_json(rows)
    else:
        for m in rows:
            print(
                "%-32s %-16s %s"
                % (m["meter_id"], m["account"] or "-", "online" if m["online"] else "offline")
            )
    return 0


def cmd_broker_config(args) -> int:
    from headend import provision

    with _store(args) as store:
        cfg = provision.write_broker_config(store, args.out, args.port, args.persistence, args.headend_port)
    _print_json(cfg)
    return 0


def cmd_serve(args) -> int:
    from headend.mqtt_service import IngestService, broker_url_with_password

    if args.batch < 1 or args.batch_ms <= 0:
        raise CLIError("--batch must be >= 1 and --batch-ms > 0")
    if args.workers < 1:
        raise CLIError("--workers must be >= 1")
    if args.workers > 1:
        from headend.mqtt_service import (
            PASSWORD_ENV,
            broker_url_without_password,
            check_service_client_id,
            parse_broker_url,
            run_workers,
        )

        url = broker_url_with_password(args.broker, args.password_file)  # one error, not N
        check_service_client_id(args.client_id)
        if parse_broker_url(url)["password"] is not None:  # to the workers by environment, not argv (ps)
            os.environ[PASSWORD_ENV] = parse_broker_url(url)["password"]
        with _store(args):
            pass  # create and migrate the database once, before the workers race to
        common = [
            "--db",
            args.db,
            "--broker",
            broker_url_without_password(url),
            "--shared",
            "--batch",
            str(args.batch),
        ]
        if args.master_key_file:
            common += ["--master-key-file", args.master_key_file]
        common += ["--batch-ms", str(args.batch_ms), "--mqtt", args.mqtt]
        serve = [sys.executable, "-m", "headend.cli", "serve", *common, "--client-id"]
        return run_workers(args.workers, lambda i: serve + ["%s-%d" % (args.client_id, i)])
    with _store(args) as store:
        service = IngestService(
            store,
            broker_url_with_password(args.broker, args.password_file),
            client_id=args.client_id,
            shared=args.shared,
            batch_max=args.batch,
            batch_wait=args.batch_ms / 1000,
            protocol=args.mqtt,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: service.stop())
        return service.run()


READING_FIELDS = (
    "seq",
    "ts",
    "interval",
    "imp",
    "exp",
    "q",
    "inst",
    "balance",
    "flags",
    "tariff",
    "received_at",
    "vee_state",
)


def cmd_readings(args) -> int:
    with _store(args) as store:
        if store.meter(args.meter_id) is None:
            raise CLIError("unknown meter %r" % args.meter_id)
        rows = [
            {k: r[k] for k in READING_FIELDS} for r in store.readings(args.meter_id, args.from_ts, args.to_ts)
        ]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(
                "%8d %s imp=%s exp=%s %s"
                % (
                    r["seq"],
                    datetime.fromtimestamp(r["ts"], UTC).isoformat(),
                    r["imp"],
                    r["exp"],
                    r["vee_state"],
                )
            )
    return 0


def stats(counters: dict) -> dict:
    out = {
        "accepted": counters.get("accepted", 0),
        "duplicates": counters.get("duplicates", 0),
        "rejected": {},
        "accepted_by_kind": {},
    }
    for name, value in counters.items():
        if name.startswith("rejected:"):
            out["rejected"][name[len("rejected:") :]] = value
        elif name.startswith("accepted:"):
            out["accepted_by_kind"][name[len("accepted:") :]] = value
    out["rejected_total"] = sum(out["rejected"].values())
    return out


def cmd_stats(args) -> int:
    with _store(args) as store:
        s = stats(store.counters())
        s["quarantine"] = store.quarantine_summary()
    if args.json:
        _print_json(s)
    else:
        print(
            "accepted %d, duplicates %d, rejected %d" % (s["accepted"], s["duplicates"], s["rejected_total"])
        )
        for reason, n in sorted(s["rejected"].items()):
            print("  rejected %-16s %d" % (reason, n))
        q = s["quarantine"]
        print(
            "quarantine: %d kept, %d refused frames not kept (a sample of %d per meter per hour)"
            % (q["kept"], q["dropped"], q["sample_per_hour"])
        )
    return 0


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
    _print_json(result)
    return 0


def _wh_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise CLIError("%s must be comma-separated whole Wh per rate, got %r" % (flag, text))
    if any(v < 0 for v in values):
        raise CLIError("%s values must not be negative, got %r" % (flag, text))
    return values


COMMANDS = {
    "meter": cmd_meter,
    "broker-config": cmd_broker_config,
    "serve": cmd_serve,
    "readings": cmd_readings,
    "stats": cmd_stats,
    "vee": cmd_vee,
    "bill-profile": cli_billing.run_billing_command,
    **cli_billrun.COMMANDS,
    **cli_prepaid.COMMANDS,
    **cli_commands.COMMANDS,
    **cli_alerts.COMMANDS,
    **cli_console.COMMANDS,
    **cli_web.COMMANDS,
    **cli_backup.COMMANDS,
    **cli_keys.COMMANDS,
}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except (
        CLIError,
        ProvisionError,
        StorageError,
        ServiceError,
        ProtocolError,
        BillingError,
        AccountError,
        PrepaidError,
        KeystoreError,
        sqlite3.Error,
        OSError,
    ) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
