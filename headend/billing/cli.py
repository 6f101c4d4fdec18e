"""``headend bill-profile`` (``cli_profile``), ``headend account``, ``headend bill`` and ``headend
tariff compare`` (``cli_compare``): billing a load profile, accounts, postpaid bill runs and review,
tariff comparison over the fleet (the notifications a run queues are
sent by ``headend outbox send``, in ``headend.notify.cli``).

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``. Errors are
raised as ``BillingError`` for the CLI's one error handler.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from headend.billing import cli_compare, cli_profile, parse_tariff
from headend.billing.calendar import civil
from headend.billing.policy import load_policy
from headend.billing.render import render_html, render_text
from headend.billing.review import approve, correct, parse_amount, void
from headend.billing.run import parse_cycle, run_bills
from headend.errors import AccountError, BillingError

STATES = ("held", "review", "approved", "issued", "void")


def _db_parent() -> argparse.ArgumentParser:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    return db


def register(subparsers) -> None:
    cli_profile.add_billing_commands(subparsers)
    db = _db_parent()
    cli_compare.add_tariff_commands(subparsers, db)
    user = os.environ.get("USER", "operator")
    acc = subparsers.add_parser("account", help="customer accounts (postpaid or prepaid)", parents=[db])
    asub = acc.add_subparsers(dest="account_command", metavar="SUBCOMMAND", required=True)
    add = asub.add_parser("add", help="add an account, its tariff and meter", parents=[db])
    add.add_argument("account_id")
    add.add_argument("--zone", required=True, help="billing zone (peers for fluctuation alerts)")
    add.add_argument("--key-zone", action="store_true", help="every bill of this zone is reviewed")
    kind = add.add_mutually_exclusive_group()
    kind.add_argument(
        "--postpaid",
        dest="billing",
        action="store_const",
        const="postpaid",
        default="postpaid",
        help="billed by `bill run` (default)",
    )
    kind.add_argument(
        "--prepaid", dest="billing", action="store_const", const="prepaid", help="a prepaid ledger"
    )
    add.add_argument("--tariff", required=True, metavar="FILE", help="native TOML/JSON or URDB JSON tariff")
    add.add_argument("--meter", metavar="METER_ID", help="link this registered meter")
    add.add_argument("--from", dest="from_ts", type=int, default=0, metavar="TS", help="link from (epoch s)")
    add.add_argument("--name", help="the customer's name")
    add.add_argument("--address", help="the supply address (work orders show it)")
    add.add_argument("--email", help="bill notices by e-mail to this address")
    add.add_argument("--webhook", metavar="URL", help="bill notices POSTed to this URL")
    add.set_defaults(db_use="create")  # headend.cli: creates a missing database
    lst = asub.add_parser("list", help="list accounts", parents=[db])
    lst.add_argument("--json", action="store_true")

    bill = subparsers.add_parser("bill", help="postpaid bill runs and review", parents=[db])
    bsub = bill.add_subparsers(dest="bill_command", metavar="SUBCOMMAND", required=True)
    run = bsub.add_parser("run", help="bill every postpaid account for a cycle (resumable)", parents=[db])
    run.add_argument("--cycle", required=True, metavar="YYYY-MM", help="the month to bill")
    run.add_argument("--policy", metavar="FILE", help="TOML policy (thresholds, review sample)")
    run.add_argument(
        "--interim",
        action="store_true",
        help="bill a cycle that has not ended yet (a deliberate interim run; refused without it)",
    )
    run.add_argument("--json", action="store_true")
    run.add_argument("--now", type=float, help=argparse.SUPPRESS)
    bl = bsub.add_parser("list", help="bills of a cycle", parents=[db])
    bl.add_argument("--cycle", required=True, metavar="YYYY-MM", help="the billing month")
    bl.add_argument("--state", choices=STATES, help="only bills in this state")
    bl.add_argument("--json", action="store_true")
    show = bsub.add_parser("show", help="print a bill as a document", parents=[db])
    show.add_argument("account_id")
    show.add_argument("--cycle", required=True, metavar="YYYY-MM", help="the billing month")
    show.add_argument("--html", action="store_true", help="the HTML document instead of text")
    for name, helptext in (
        ("approve", "release a bill in review (or a held one)"),
        ("correct", "add an adjustment line to a bill in review or held"),
        ("void", "void a bill (kept, audited); the next bill run bills the account again"),
    ):
        p = bsub.add_parser(name, help=helptext, parents=[db])
        p.add_argument("account_id")
        p.add_argument("--cycle", required=True, metavar="YYYY-MM", help="the billing month")
        if name == "correct":
            p.add_argument("--amount", required=True, metavar="DEC", help="e.g. -5.00 (credit) or 3.20")
        p.add_argument("--reason", required=True, help="why (kept in the audit)")
        p.add_argument("--user", default=user, help="who (default $USER)")


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, separators=(", ", ": "), default=str))


def cmd_account(args) -> int:
    with _store(args) as store:
        if args.account_command == "list":
            rows = store.accounts()
            if args.json:
                _print_json(rows)
            for r in [] if args.json else rows:
                print(
                    "%-20s %-8s %-12s %-8s %-16s %s"
                    % (
                        r["account_id"],
                        r["billing"],
                        r["zone"],
                        r["zone_kind"],
                        r["tariff_id"],
                        r["meter_ids"] or "-",
                    )
                )
            return 0
        text = Path(args.tariff).read_text(encoding="utf-8")
        tariff = parse_tariff(text, name=args.tariff)
        tariff_id = "t-" + hashlib.sha256(text.encode()).hexdigest()[:12]
        first = tariff.versions[0].effective_from
        store.add_tariff(
            tariff_id, tariff.name, text, None if first is None else "%04d-%02d-%02d" % civil(first)
        )
        if args.meter is not None and store.meter(args.meter) is None:
            raise BillingError("unknown meter %r (register it with `headend meter add`)" % args.meter)
        row = {
            "account_id": args.account_id,
            "name": args.name,
            "address": args.address,
            "zone": args.zone,
            "zone_kind": "key" if args.key_zone else "regular",
            "billing": args.billing,
            "tariff_id": tariff_id,
            "email": args.email,
            "webhook": args.webhook,
        }
        try:
            acc = store.add_account(row, args.meter, args.from_ts)
        except AccountError as e:
            raise BillingError(str(e))
    _print_json(acc)
    return 0


def _progress(run: dict) -> None:
    c = run["counts"]
    print(
        "batch %d: issued %d, held %d, review %d, skipped %d (last account %s)"
        % (run["batches"], c["issued"], c["held"], c["review"], c["skipped"], run["cursor"]),
        file=sys.stderr,
        flush=True,
    )


def cmd_bill(args) -> int:
    parse_cycle(args.cycle)
    now = getattr(args, "now", None) or time.time()
    with _store(args) as store:
        if args.bill_command == "run":
            return _bill_run(store, args, now)
        if args.bill_command == "list":
            rows = [
                {k: b[k] for k in ("account_id", "state", "energy_kwh", "total", "currency", "reasons")}
                for b in store.bills(args.cycle, args.state)
            ]
            if args.json:
                _print_json(rows)
            for b in [] if args.json else rows:
                print(
                    "%-20s %-8s %12s kWh %12s %s %s"
                    % (
                        b["account_id"],
                        b["state"],
                        b["energy_kwh"] or "-",
                        b["total"],
                        b["currency"] or "",
                        "; ".join(b["reasons"]),
                    )
                )
            return 0
        if args.bill_command == "show":
            bill = store.bill(args.account_id, args.cycle)
            if bill is None:
                raise BillingError("no bill for account %r in cycle %s" % (args.account_id, args.cycle))
            account = store.account(args.account_id)
            doc = render_html(bill, account) if args.html else render_text(bill, account)
            sys.stdout.write(doc)
            return 0
        if args.bill_command == "approve":
            bill = approve(store, args.account_id, args.cycle, args.reason, args.user, now)
        elif args.bill_command == "void":
            bill = void(store, args.account_id, args.cycle, args.reason, args.user, now)
        else:
            amount = parse_amount(args.amount)
            bill = correct(store, args.account_id, args.cycle, amount, args.reason, args.user, now)
        _print_json({k: bill[k] for k in ("account_id", "cycle", "state", "total", "lines")})
    return 0


def _bill_run(store, args, now: float) -> int:
    policy = load_policy(args.policy)
    run = run_bills(store, args.cycle, now, policy, progress=_progress, interim=args.interim)
    held = store.bills(args.cycle, "held")
    reasons = Counter(r.split(":")[0] for b in held for r in b["reasons"])
    summary = {
        "run_id": run["run_id"],
        "cycle": args.cycle,
        "batches": run["batches"],
        **run["counts"],
        "held_reasons": dict(reasons.most_common()),
        "held_bills": [{"account_id": b["account_id"], "reasons": b["reasons"]} for b in held[:100]],
    }
    if args.json:
        _print_json(summary)
        return 0
    c = run["counts"]
    print(
        "run %d, cycle %s: issued %d, held %d, review %d, skipped %d (already billed)"
        % (run["run_id"], args.cycle, c["issued"], c["held"], c["review"], c["skipped"])
    )
    for b in held[:20]:
        print("  held %s: %s" % (b["account_id"], "; ".join(b["reasons"])))
    if len(held) > 20:
        print(
            "  ... %d more held bills: headend bill list --cycle %s --state held"
            % (len(held) - 20, args.cycle)
        )
    return 0


COMMANDS = {
    "bill-profile": cli_profile.run_billing_command,
    "account": cmd_account,
    "bill": cmd_bill,
    "tariff": cli_compare.cmd_tariff,
}
