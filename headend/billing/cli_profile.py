"""``headend bill-profile``: bill a load profile CSV under a tariff file.

Hooked into ``headend.cli`` with ``add_billing_commands(subparsers)`` and
``run_billing_command(args)``; errors are raised as ``BillingError`` (a ``ValueError``)
or ``OSError`` for the CLI's one error handler. ``python -m headend.billing.cli_profile
bill-profile ...`` runs the command on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import ROUND_HALF_UP, Decimal

from headend.billing import bill_profile, load_tariff, read_profile_csv
from headend.errors import BillingError

COMMANDS = ("bill-profile",)


def add_billing_commands(subparsers) -> None:
    bp = subparsers.add_parser(
        "bill-profile",
        help="bill a load profile CSV (timestamp,kwh) under a tariff file (native or OpenEI URDB)",
        description="Monthly bills of a load profile. Money is printed as exact decimal strings.",
    )
    bp.add_argument("--tariff", required=True, metavar="FILE", help="native TOML/JSON or URDB JSON tariff")
    bp.add_argument("--profile", required=True, metavar="CSV", help="timestamp,kwh; hourly or 15-minute")
    bp.add_argument("--json", action="store_true", help='print {"months": [...]} as JSON')
    bp.add_argument(
        "--tier-mode",
        choices=("time_order", "prorate"),
        help="override the tariff's tier mode (URDB tariffs default to prorate, as NREL SAM)",
    )
    bp.add_argument(
        "--utc-offset",
        type=int,
        metavar="MINUTES",
        help="override the tariff's local time, minutes east of UTC (URDB tariffs default to 0)",
    )
    bp.set_defaults(db_use="none")  # headend.cli: never opens the database


def _table(bill) -> list[str]:
    cur = (" " + bill.currency) if bill.currency else ""
    lines = [
        "%s (%s%s, %s to %s per line item)"
        % (bill.tariff, bill.tier_mode, cur, bill.rounding, bill.minor_unit),
        "%-8s %12s %12s %10s %10s %10s %12s"
        % ("month", "kWh", "energy", "fixed", "demand", "minimum", "total"),
    ]
    for m in bill.months:
        j = m.as_json()
        lines.append(
            "%-8s %12s %12s %10s %10s %10s %12s"
            % (
                j["month"],
                j["energy_kwh"],
                j["energy_charge"],
                j["fixed_charge"],
                j["demand_charge"],
                j["minimum_charge"],
                j["total"],
            )
        )
    total = sum((m.total for m in bill.months), start=Decimal(0))
    kwh = sum((m.energy_kwh for m in bill.months), start=Decimal(0)).quantize(Decimal("0.001"), ROUND_HALF_UP)
    lines.append("%-8s %12s %12s %10s %10s %10s %12s" % ("all", kwh, "", "", "", "", total))
    return lines


def run_billing_command(args) -> int:
    if args.command != "bill-profile":
        raise BillingError("unknown billing command %r" % args.command)
    tariff = load_tariff(args.tariff, tier_mode=args.tier_mode, utc_offset=args.utc_offset)
    profile = read_profile_csv(args.profile, tariff.utc_offset)
    bill = bill_profile(tariff, profile)
    if args.json:
        print(json.dumps(bill.as_json(), separators=(", ", ": ")))
    else:
        print("\n".join(_table(bill)))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="headend", description="Billing commands of the head-end.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_billing_commands(sub)
    args = parser.parse_args(argv)
    try:
        return run_billing_command(args)
    except (BillingError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
