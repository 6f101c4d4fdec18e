"""What the pages show of a tariff: its name (the tariff file's ``name``), its currency and
its periods' names, read from the stored tariff text (``Storage.tariff``) with the billing
loader. A meter's rate n is the tariff's n-th period (docs/protocol.md: rates count from 1;
``headend.commands.tariff``: rate n = the n-th period), so rate registers read as ``peak``,
``valley``, ... where the tariff names its periods, and as ``T1``, ``T2``, ... where it does
not (one period for every rate, or a rate beyond the tariff's periods)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from headend.billing.tariff.load import parse_tariff
from headend.billing.tariff.model import Tariff
from headend.errors import HeadendError


@dataclass(frozen=True)
class TariffInfo:
    tariff_id: str | None
    name: str
    currency: str = ""
    period_names: tuple[str, ...] = ()

    def rate_name(self, rate: int) -> str:
        """The name of 1-based ``rate``: its period's name, else ``T<rate>``."""
        names = self.period_names
        if len(names) > 1 and 1 <= rate <= len(names):
            return names[rate - 1]
        return "T%d" % rate


NO_TARIFF = TariffInfo(None, "\u2014")


@lru_cache(maxsize=64)
def _parse(text: str) -> Tariff | None:
    try:
        return parse_tariff(text)
    except (HeadendError, ValueError, TypeError):
        return None


def _periods(t: Tariff, at: float | None) -> tuple[str, ...]:
    """The period names of the version in force at ``at`` (epoch s; None: the latest)."""
    if not t.versions:
        return ()
    i = None if at is None else t.version_index((int(at) + t.utc_offset * 60) // 86400)
    return tuple(t.versions[-1 if i is None else i].period_names)


def tariff_info(store, tariff_id: str | None, at: float | None = None) -> TariffInfo:
    """The tariff's name, currency and period names (of the version in force at ``at``, by
    default the latest); a tariff the loader cannot read keeps its stored name (else its id),
    with no currency and rates as T1..Tn."""
    if not tariff_id:
        return NO_TARIFF
    row = store.tariff(tariff_id)
    if row is None:
        return TariffInfo(tariff_id, tariff_id)
    parsed = _parse(row["text"])
    if parsed is None:
        return TariffInfo(tariff_id, row.get("name") or tariff_id)
    name = parsed.name or row.get("name") or tariff_id
    return TariffInfo(tariff_id, name, parsed.currency, _periods(parsed, at))


def account_tariff(store, account_id: str | None) -> TariffInfo:
    """The tariff of an account (``Storage.account``), ``NO_TARIFF`` without one."""
    acc = store.account(account_id) if account_id else None
    return tariff_info(store, acc.get("tariff_id")) if acc else NO_TARIFF


def meter_tariff(store, meter_id: str) -> TariffInfo:
    """The tariff of the account on the meter's open link."""
    acc = store.meter_account(meter_id)
    return account_tariff(store, acc["account_id"]) if acc else NO_TARIFF
