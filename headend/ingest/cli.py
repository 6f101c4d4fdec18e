"""``headend serve``, ``headend readings`` and ``headend stats``: ingest from the broker and what it stored.

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``; errors are raised
for its one handler.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from datetime import UTC, datetime

from headend.errors import CLIError
from headend.mqtt import add_broker_arguments
from headend.timearg import epoch_arg as _ts


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    serve = subparsers.add_parser("serve", help="ingest from the broker until SIGTERM/SIGINT", parents=[db])
    add_broker_arguments(serve)
    serve.add_argument(
        "--share",
        metavar="GROUP",
        help="consume $share/GROUP/ami/v1/+/up/# with the other processes of GROUP (each with its own"
        " --client-id, the same after a restart: docs/scaling.md)",
    )
    serve.add_argument("--shared", action="store_true", help="the same as --share headend")
    serve.add_argument(
        "--client-id",
        help="stable id of the persistent session (default headend.ingest; never a valid meter id;"
        " required with --share unless --workers names them CLIENT_ID-0..)",
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
        help="ingest processes on the shared subscription $share/headend/..., sessions CLIENT_ID-0.."
        " (default 1; a worker that dies leaves its messages in its session until it is back)",
    )
    serve.add_argument(
        "--mqtt",
        choices=("3.1.1", "5"),
        default="3.1.1",
        help="MQTT version of the head-end's session (default 3.1.1: paho receives it faster)",
    )

    rd = subparsers.add_parser("readings", help="print a meter's stored readings", parents=[db])
    rd.add_argument("meter_id")
    rd.add_argument("--from", dest="from_ts", type=_ts, metavar="TS", help="first ts (epoch s or ISO 8601)")
    rd.add_argument("--to", dest="to_ts", type=_ts, metavar="TS", help="last ts (epoch s or ISO 8601)")
    rd.add_argument("--json", action="store_true")

    st = subparsers.add_parser(
        "stats", help="ingest counters: accepted, duplicates, rejected by reason", parents=[db]
    )
    st.add_argument("--json", action="store_true")


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=None, separators=(", ", ": "), default=str))


def cmd_serve(args) -> int:
    from headend.ingest.service import IngestService
    from headend.mqtt import broker_url_with_password

    if args.batch < 1 or args.batch_ms <= 0:
        raise CLIError("--batch must be >= 1 and --batch-ms > 0")
    if args.workers < 1:
        raise CLIError("--workers must be >= 1")
    share = args.share if args.share is not None else "headend" if args.shared or args.workers > 1 else None
    if args.share is not None and args.shared and args.share != "headend":
        raise CLIError("--shared is --share headend: give one of them")
    if share is not None:
        from headend.ingest.service import check_share_group

        check_share_group(share)
    if args.client_id is None:
        if args.share is not None and args.workers == 1:
            raise CLIError(
                "--share needs --client-id: every process of the group keeps its own persistent session,"
                " under the same id after a restart (what was in flight to it waits for it: docs/scaling.md)"
            )
        args.client_id = "headend.ingest"
    if args.workers > 1:
        from headend.ingest.service import run_workers
        from headend.mqtt import (
            PASSWORD_ENV,
            broker_url_without_password,
            check_service_client_id,
            parse_broker_url,
        )

        # one error, not N
        url = broker_url_with_password(args.broker, args.password_file, cafile=args.cafile)
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
            "--share",
            share,
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
            broker_url_with_password(args.broker, args.password_file, cafile=args.cafile),
            client_id=args.client_id,
            share=share,
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
        results = store.vee_results(args.meter_id, args.from_ts, args.to_ts) if rows else []
    by_seq: dict = {}
    by_ts: dict = {}
    for v in results:
        found = {"rule": v["rule"], "outcome": v["outcome"], "detail": v["detail"]}
        if v.get("seq") is not None:
            by_seq.setdefault(v["seq"], []).append(found)
        else:
            by_ts.setdefault(v["ts"], []).append(found)
    for r in rows:  # the VEE rules that judged the reading (why it is suspect or failed)
        r["vee_rules"] = by_seq.get(r["seq"], []) + by_ts.get(r["ts"], [])
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(
                "%8d %s imp=%s exp=%s %s%s"
                % (
                    r["seq"],
                    datetime.fromtimestamp(r["ts"], UTC).isoformat(),
                    r["imp"],
                    r["exp"],
                    r["vee_state"],
                    "".join(" [%s %s: %s]" % (v["rule"], v["outcome"], v["detail"]) for v in r["vee_rules"]),
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


COMMANDS = {"serve": cmd_serve, "readings": cmd_readings, "stats": cmd_stats}
