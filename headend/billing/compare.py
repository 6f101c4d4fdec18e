"""Tariff comparison: every account's year billed under several tariffs with the same engine.

``compare(tariffs, profiles, year)`` (``bill_accounts`` then ``summarize``, which a caller may
run apart, e.g. ``bill_accounts`` in worker processes) is pure: ``profiles`` yields ``(account_id, interval_s,
ts, wh)`` (an account's load profile, interval starts and integer Wh, in time order); each
account's intervals in each tariff's local calendar year are billed with
``engine.bill_intervals``, and its annual total is the sum of its monthly bills (each the sum
of its rounded lines). An account a tariff cannot bill (daily data under a tariff whose period
changes within a day, no data in the year) is listed under ``skipped`` with the reason and
left out of the fleet figures, which compare the same accounts under every tariff:

- ``revenue``: the sum of the annual totals under each tariff;
- ``revenue_neutral_factor``: first tariff's revenue / this tariff's, what this tariff's
  bills would be scaled by to raise the same revenue as the first (1 for the first);
- against the first tariff, per account the change (this total - the first's): how many
  accounts pay ``less`` (gain), ``more`` (lose) or ``same``, and the change's quantiles
  (nearest rank: min, 10 %, 25 %, median, 75 %, 90 %, max), in money and in percent.

The profiles' ``ts`` and ``wh`` are lists or numpy int64 arrays. An account whose year is a
regular run of intervals (each ``interval_s`` after the last, as nearly every account's is) is
billed through the tariff's ``plan`` for that run (``headend.billing.plan``: the calendar walked
once for the fleet, each account's sums per period and month by ``np.add.reduceat``, the same
Decimal month lines, demand charges too); any other, and any profile the plan leaves to it
(time-order tiers with a negative interval), by ``bill_intervals`` itself.

``read_profiles(store, account_ids, start, end)`` (``headend.billing.compare_store``) reads the
profiles from storage, one query per batch of accounts, at the first resolution each account
has rows for (hourly, 15-minute, daily), like the bill run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

import numpy as np

from headend.billing.calendar import month_start
from headend.billing.compare_store import read_profiles  # noqa: F401  (the reader, as before)
from headend.billing.engine import bill_intervals
from headend.billing.plan import plan
from headend.billing.tariff.model import Tariff
from headend.errors import BillingError

QUANTILES = (0, 0.1, 0.25, 0.5, 0.75, 0.9, 1)
ZERO = Decimal(0)
PCT = Decimal("0.01")


def year_window(tariff: Tariff, year: int) -> tuple[int, int]:
    """[start, end) of ``year`` in the tariff's local time."""
    return month_start(year, 1, tariff.utc_offset), month_start(year + 1, 1, tariff.utc_offset)


def _array(values) -> np.ndarray | None:
    """``values`` as an int64 array (None: some value does not fit)."""
    if isinstance(values, np.ndarray):
        return values
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError:
        return None


def annual_totals(tariffs, windows, interval: int, ts, wh) -> list[Decimal]:
    """The account's annual total under each tariff (raises ``BillingError``)."""
    tsa, wha = _array(ts), _array(wh)
    fast = tsa is not None and wha is not None and len(tsa) == len(wha)
    if not fast:
        tsa = np.asarray(ts, dtype=object)
    out, nonneg = [], None
    for tariff, (start, end) in zip(tariffs, windows, strict=True):
        i0, i1 = (int(i) for i in np.searchsorted(tsa, (start, end)))
        if i0 == i1:
            raise BillingError("no load profile in the year")
        n, total = i1 - i0, None
        if fast and int(tsa[i1 - 1]) - int(tsa[i0]) == (n - 1) * interval:
            total = plan(tariff, interval, int(tsa[i0]), n).annual_total(wha[i0:i1])
        if total is None:  # the engine itself, on lists
            if not isinstance(ts, list) or not isinstance(wh, list):
                ts, wh = [int(t) for t in ts], [int(w) for w in wh]
            if nonneg is None:
                nonneg = min(wh, default=0) >= 0  # once for every tariff
            bill = bill_intervals(tariff, interval, ts[i0:i1], wh[i0:i1], 3, nonneg)
            total = sum((m.total for m in bill.months), ZERO)
        out.append(total)
    return out


def _kwh(wh) -> Decimal:
    if isinstance(wh, np.ndarray) and len(wh) and max(-int(wh.min()), int(wh.max())) < 2**62 // len(wh):
        return Decimal(int(wh.sum())) / 1000
    return Decimal(sum(int(w) for w in wh)) / 1000


def quantiles(values: list) -> dict[str, object]:
    s = sorted(values)
    if not s:
        return {}
    return {"p%d" % round(q * 100): s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))] for q in QUANTILES}


def bill_accounts(
    tariffs: list[Tariff],
    profiles: Iterable[tuple],
    year: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict], list[dict]]:
    """(billed accounts with their ``Decimal`` totals, skipped accounts with the reason)."""
    windows = [year_window(t, year) for t in tariffs]
    accounts, skipped = [], []
    for n, (account_id, interval, ts, wh) in enumerate(profiles, 1):
        try:
            totals = annual_totals(tariffs, windows, interval, ts, wh)
        except BillingError as e:
            skipped.append({"account_id": account_id, "reason": str(e)})
        else:
            accounts.append({"account_id": account_id, "kwh": _kwh(wh), "totals": totals})
        if progress:
            progress(n)
    return accounts, skipped


def compare(
    tariffs: list[Tariff],
    profiles: Iterable[tuple],
    year: int,
    progress: Callable[[int], None] | None = None,
) -> dict:
    return summarize(tariffs, year, *bill_accounts(tariffs, profiles, year, progress))


def summarize(tariffs: list[Tariff], year: int, accounts: list[dict], skipped: list[dict]) -> dict:
    k = len(tariffs)
    revenue = [sum((a["totals"][i] for a in accounts), ZERO) for i in range(k)]
    fleet: dict = {
        "accounts": len(accounts),
        "skipped": len(skipped),
        "revenue": [str(r) for r in revenue],
        "revenue_neutral_factor": [
            str((revenue[0] / r).quantize(Decimal("0.000001"))) if r else None for r in revenue
        ],
        "versus_first": [],
    }
    for i in range(1, k):
        change = [a["totals"][i] - a["totals"][0] for a in accounts]
        pct = [
            (d * 100 / a["totals"][0]).quantize(PCT)
            for d, a in zip(change, accounts, strict=True)
            if a["totals"][0]
        ]
        fleet["versus_first"].append(
            {
                "tariff": tariffs[i].name,
                "less": sum(1 for d in change if d < 0),
                "more": sum(1 for d in change if d > 0),
                "same": sum(1 for d in change if d == 0),
                "change": {q: str(v) for q, v in quantiles(change).items()},
                "change_pct": {q: str(v) for q, v in quantiles(pct).items()},
            }
        )
    return {
        "year": year,
        "tariffs": [{"name": t.name, "currency": t.currency} for t in tariffs],
        "fleet": fleet,
        "accounts": [
            {"account_id": a["account_id"], "kwh": str(a["kwh"]), "totals": [str(x) for x in a["totals"]]}
            for a in accounts
        ],
        "skipped": skipped,
    }


def changes(result: dict, i: int = 1) -> list[Decimal]:
    """Per account, its annual total under tariff ``i`` less under the first."""
    return [Decimal(a["totals"][i]) - Decimal(a["totals"][0]) for a in result["accounts"]]
