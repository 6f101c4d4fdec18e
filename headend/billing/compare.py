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

``read_profiles(store, account_ids, start, end)`` reads the profiles from storage, one account
at a time, at the first resolution the account has rows for (hourly, 15-minute, daily), like
the bill run.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from decimal import Decimal

from headend.billing.calendar import month_start
from headend.billing.engine import bill_intervals
from headend.billing.tariff.model import Tariff
from headend.errors import BillingError

QUANTILES = (0, 0.1, 0.25, 0.5, 0.75, 0.9, 1)
RESOLUTIONS = (3600, 900, 86400)  # as headend.billing.usage: hourly first
ZERO = Decimal(0)
PCT = Decimal("0.01")


def year_window(tariff: Tariff, year: int) -> tuple[int, int]:
    """[start, end) of ``year`` in the tariff's local time."""
    return month_start(year, 1, tariff.utc_offset), month_start(year + 1, 1, tariff.utc_offset)


def annual_totals(tariffs, windows, interval: int, ts: list[int], wh: list[int]) -> list[Decimal]:
    """The account's annual total under each tariff (raises ``BillingError``)."""
    out, nonneg = [], min(wh, default=0) >= 0  # once for every tariff
    for tariff, (start, end) in zip(tariffs, windows, strict=True):
        i0, i1 = bisect_left(ts, start), bisect_left(ts, end)
        if i0 == i1:
            raise BillingError("no load profile in the year")
        if i0 or i1 < len(ts):
            bill = bill_intervals(tariff, interval, ts[i0:i1], wh[i0:i1], 3, nonneg)
        else:
            bill = bill_intervals(tariff, interval, ts, wh, 3, nonneg)
        out.append(sum((m.total for m in bill.months), ZERO))
    return out


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
            accounts.append({"account_id": account_id, "kwh": Decimal(sum(wh)) / 1000, "totals": totals})
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


def read_profiles(store, account_ids: list[str], start: int, end: int, batch: int = 500):
    """``(account_id, interval_s, ts, wh)`` of each account with a load profile in
    [start, end), the per-interval total over its rates; accounts without one as
    ``(account_id, 0, [], [])``."""
    for k in range(0, len(account_ids), batch):
        ids = account_ids[k : k + batch]
        found: dict[str, int] = {}
        todo = list(ids)
        for iv in RESOLUTIONS:
            if not todo:
                break
            for row in store.profile_sums(todo, iv, start, end):
                found.setdefault(row[0], iv)
            todo = [a for a in todo if a not in found]
        for a in ids:
            iv = found.get(a)
            if iv is None:
                yield a, 0, [], []
                continue
            totals: dict[int, int] = {}
            for ts, _rate, wh, _src in store.profile_points(a, iv, start, end):
                totals[ts] = totals.get(ts, 0) + wh
            ts_list = sorted(totals)
            yield a, iv, ts_list, [totals[t] for t in ts_list]
