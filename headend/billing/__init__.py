"""Billing: tariffs (native TOML/JSON and OpenEI URDB), time-of-use calendars, the bill engine.

Pure functions over plain data and ``Decimal``: nothing here reads a clock, a database or
the network. Each layer raises a ``BillingError`` (a ``ValueError``) subclass whose message
names what was wrong; the CLI turns them into ``error: ...`` text.
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
