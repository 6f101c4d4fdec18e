"""Billing: tariffs (native TOML/JSON and OpenEI URDB), time-of-use calendars, the bill engine,
bill runs and review.

The logic (``tariff/``, ``calendar``, ``engine``, ``price``, ``checks``, ``usage``, ``render``)
is pure functions over plain data and ``Decimal``: it reads no clock, database or network.
``run`` and ``review`` work through the storage layer; the SQL is ``store`` (with its
statements in ``store_sql``); ``notice`` renders a bill for the outbox; ``cli`` and
``cli_profile`` are the commands (account, bill, bill-profile). Each layer raises a
``BillingError`` (a ``ValueError``) subclass whose message names what was wrong; the CLI turns
them into ``error: ...`` text.
"""

from __future__ import annotations

from headend.billing.engine import Bill, MonthBill, bill_profile
from headend.billing.profile_csv import Profile, parse_profile_csv, read_profile_csv
from headend.billing.tariff import Tariff, load_tariff, parse_tariff
from headend.errors import BillingError, ProfileError, TariffError  # noqa: F401

__all__ = [
    "Bill",
    "BillingError",
    "MonthBill",
    "Profile",
    "ProfileError",
    "Tariff",
    "TariffError",
    "bill_profile",
    "load_tariff",
    "parse_profile_csv",
    "parse_tariff",
    "read_profile_csv",
]
