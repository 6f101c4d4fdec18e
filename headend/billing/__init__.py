"""Billing: tariffs (native TOML/JSON and OpenEI URDB), time-of-use calendars, the bill engine.

Pure functions over plain data and ``Decimal``: nothing here reads a clock, a database or
the network. Each layer raises a ``BillingError`` (a ``ValueError``) subclass whose message
names what was wrong; the CLI turns them into ``error: ...`` text.
"""

from __future__ import annotations


class BillingError(ValueError):
    """Base class: a tariff, a load profile or a bill that cannot be computed."""

    def __init__(self, msg: str, field: str | None = None):
        super().__init__(msg)
        self.field = field


class TariffError(BillingError):
    """A tariff file that is not valid; ``field`` names the bad part, e.g. ``versions[0].energy``."""


class ProfileError(BillingError):
    """A load-profile CSV that is not valid; the message names the line."""


from headend.billing.engine import Bill, MonthBill, bill_profile  # noqa: E402
from headend.billing.profile_csv import Profile, parse_profile_csv, read_profile_csv  # noqa: E402
from headend.billing.tariff.model import Tariff, load_tariff, parse_tariff  # noqa: E402

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
