"""``headend topup``, ``headend pay`` and ``headend prepaid``: prepaid credits, online payments
and the ledger (the top-up commands they queue are delivered by ``headend dispatch``, in
``headend.commands.cli``).

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``.
Errors are raised as ``PrepaidError`` (or other ``HeadendError``s) for the CLI's one
error handler. Amounts on the command line are decimal currency units ("12.50"); stored and
printed in JSON as integer milli-units, as the meter counts them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from headend.errors import PrepaidError
from headend.prepaid.ledger import parse_amount, units
from headend.prepaid.service import DEFAULT_THRESHOLD, DEFAULT_TTL, credit, sync

SECRET_ENV = "HEADEND_PAY_SECRET"


def _db_parent() -> argparse.ArgumentParser:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    return db


def register(subparsers) -> None:
    db = _db_parent()
    tp = subparsers.add_parser(
        "topup", help="credit a counter payment to a prepaid meter, or `topup list`", parents=[db]
    )
    tp.add_argument("meter_id", help="the meter to credit, or `list` for every top-up's delivery state")
    tp.add_argument("amount", nargs="?", help="currency units, e.g. 50 or 12.50")
    tp.add_argument("--payment-id", help="the payment's unique id (a replay changes nothing)")
    tp.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="s the command stays valid (default 7 days)")
    tp.add_argument("--json", action="store_true")
    tp.add_argument("--now", type=float, help=argparse.SUPPRESS)

    pay = subparsers.add_parser("pay", help="online payments", parents=[db])
    psub = pay.add_subparsers(dest="pay_command", metavar="SUBCOMMAND", required=True)
    ps = psub.add_parser("serve", help="the payment platform's callback: POST /pay/notify", parents=[db])
    ps.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    ps.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ps.add_argument("--secret-file", metavar="FILE", help="merchant secret (default: $%s)" % SECRET_ENV)
    ps.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="s a top-up command stays valid")

    pp = subparsers.add_parser("prepaid", help="prepaid ledgers and reconciliation", parents=[db])
    ppsub = pp.add_subparsers(dest="prepaid_command", metavar="SUBCOMMAND", required=True)
    sy = ppsub.add_parser("sync", help="debit ledgers from readings and reconcile balances", parents=[db])
    sy.add_argument("account_id", nargs="?", help="one account (default: every prepaid account)")
    sy.add_argument(
        "--threshold",
        type=int,
        default=DEFAULT_THRESHOLD,
        help="milli-units of disagreement before an alert (default %d)" % DEFAULT_THRESHOLD,
    )
    sy.add_argument("--json", action="store_true")
    sy.add_argument("--now", type=float, help=argparse.SUPPRESS)
    lg = ppsub.add_parser("ledger", help="an account's ledger entries and balance", parents=[db])
    lg.add_argument("account_id")
    lg.add_argument("--json", action="store_true")
    ad = ppsub.add_parser("adjust", help="a ledger adjustment with its reason", parents=[db])
    ad.add_argument("account_id")
    ad.add_argument("amount", help="signed currency units, e.g. -5.00 or 3.20")
    ad.add_argument("--reason", required=True, help="why (kept with the ledger entry)")
    ad.add_argument("--user", default=os.environ.get("USER", "operator"), help="who (default $USER)")
    al = ppsub.add_parser("alerts", help="balance mismatches found by sync", parents=[db])
    al.add_argument("account_id", nargs="?")
    al.add_argument("--json", action="store_true")


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, separators=(", ", ": "), default=str))


def _opt(fmt: str, value) -> str:
    return "" if value is None or value == "" else fmt % value


def _now(args) -> float:
    return getattr(args, "now", None) or time.time()


TOPUP_FIELDS = (
    "payment_id",
    "account_id",
    "meter_id",
    "amount",
    "source",
    "seq",
    "state",
    "attempts",
    "result",
)


def cmd_topup(args) -> int:
    with _store(args) as store:
        if args.meter_id == "list" and args.amount is None:
            rows = [{k: t[k] for k in (*TOPUP_FIELDS, "reason")} for t in store.topups()]
            if args.json:
                _print_json(rows)
            for t in [] if args.json else rows:
                print(
                    "%-20s %-16s %-12s %12s seq %-6s %-8s attempts %d%s"
                    % (t["payment_id"], t["account_id"], t["meter_id"], units(t["amount"]), t["seq"],
                       t["state"], t["attempts"], " (%s)" % t["reason"] if t["reason"] else "")
                )  # fmt: skip
            return 0
        if args.amount is None or not args.payment_id:
            raise PrepaidError(
                "usage: headend topup METER_ID AMOUNT --payment-id ID (or: headend topup list)"
            )
        got = credit(
            store,
            args.payment_id,
            parse_amount(args.amount),
            _now(args),
            meter_id=args.meter_id,
            ttl=args.ttl,
        )
    row = {k: got[k] for k in (*TOPUP_FIELDS, "duplicate")}
    if args.json:
        _print_json(row)
    else:
        print(
            "%s %s to %s (account %s): top-up command seq %d %s"
            % ("already recorded:" if got["duplicate"] else "credited", units(got["amount"]),
               got["meter_id"], got["account_id"], got["seq"], got["state"])
        )  # fmt: skip
    return 0


def _secret(args) -> bytes:
    if args.secret_file:
        with open(args.secret_file, "rb") as f:
            secret = f.read().strip()
    else:
        secret = os.environ.get(SECRET_ENV, "").encode()
    if len(secret) < 16:
        raise PrepaidError(
            "the merchant secret (--secret-file or $%s) must be at least 16 bytes" % SECRET_ENV
        )
    return secret


def cmd_pay(args) -> int:
    from headend.prepaid.payserver import PATH, PayServer

    secret = _secret(args)
    with _store(args) as store:
        server = PayServer((args.host, args.port), store, secret, ttl=args.ttl)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
        print(
            "headend pay: listening on http://%s:%d%s" % (args.host, server.server_port, PATH),
            file=sys.stderr,
            flush=True,
        )
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
    return 0


def cmd_prepaid(args) -> int:
    now = _now(args)
    with _store(args) as store:
        if args.prepaid_command == "sync":
            if args.threshold < 0:
                raise PrepaidError("--threshold must not be negative")
            ids = [args.account_id] if args.account_id else store.prepaid_accounts()
            results = [sync(store, a, args.threshold, now) for a in ids]
            if args.json:
                _print_json(results)
            for r in [] if args.json else results:
                rec = r["reconciled"] or {}
                print(
                    "%-20s debited %s, balance %s%s"
                    % (r["account_id"], units(r["debited"]), units(r["balance"]),
                       ", MISMATCH meter %s" % units(rec["meter_balance"]) if rec.get("alert") else "")
                )  # fmt: skip
            return 0
        if args.prepaid_command == "ledger":
            store.prepaid_meter(args.account_id)  # names an unknown or postpaid account
            rows = store.ledger(args.account_id)
            balance = store.ledger_balance(args.account_id)
            if args.json:
                _print_json({"account_id": args.account_id, "balance": balance, "entries": rows})
                return 0
            for e in rows:
                print(
                    "%6d %-10s %12s %-24s %s"
                    % (e["id"], e["kind"], units(e["amount"]), e["ref"] or "", e["delivery"] or "")
                )
            print("balance %s" % units(balance))
            return 0
        if args.prepaid_command == "adjust":
            store.prepaid_meter(args.account_id)
            text = args.amount
            sign = -1 if text.startswith("-") else 1
            amount = sign * parse_amount(text.lstrip("+-"))
            _print_json(store.add_adjustment(args.account_id, amount, args.reason, args.user, now))
            return 0
        rows = store.prepaid_alerts(args.account_id)
    if args.json:
        _print_json(rows)
    for a in [] if args.json else rows:
        print(
            "%-20s seq %-8d meter %12s ledger %12s difference %s"
            % (a["account_id"], a["seq"], units(a["meter_balance"]), units(a["ledger_balance"]),
               units(a["difference"]))
        )  # fmt: skip
    return 0


COMMANDS = {
    "topup": cmd_topup,
    "pay": cmd_pay,
    "prepaid": cmd_prepaid,
}
