"""Prepaid ledger arithmetic: prices from a tariff, debits from register readings, reconciliation.

The meter (firmware.prepaid) debits each Wh of import at the price of the rate in force
(set-tariff arg 2, milli-units per kWh) and carries the remainder, so after any run of
energy its total debit is exactly ``floor(sum(Wh * price) / 1000)`` milli-units. The
head-end reconstructs the same sum from the readings' cumulative per-rate import registers:
between consecutive readings, rate r's delta is priced at rate r's price of the tariff
version in force at the interval's start. ``Cursor.acc`` keeps the exact sum, so the ledger's
debits add up to ``acc // 1000`` however they are split over syncs.

Pure: functions over ints, tuples and dicts; nothing reads a clock or a database.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from decimal import Decimal

from headend.billing.calendar import day_start
from headend.errors import PrepaidError

MILLI = 1000
MAX_AMOUNT = 10**9  # milli-units per top-up (the meter's balance is below 2**30)
MAX_PRICE = 1000000  # milli-units per kWh, as the meter accepts (firmware.prepaid.MAX_PRICE)
_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,3})?$")


def parse_amount(text: str, field: str = "amount") -> int:
    """Milli-units of a positive decimal string in currency units ("12.5" -> 12500)."""
    if not isinstance(text, str) or not _AMOUNT.match(text):
        raise PrepaidError(
            "%s must be a decimal string of currency units with at most 3 decimals, got %r" % (field, text),
            field,
        )
    milli = int(Decimal(text) * MILLI)
    if not 0 < milli <= MAX_AMOUNT:
        raise PrepaidError(
            "%s must be above 0 and at most %s, got %r" % (field, units(MAX_AMOUNT), text), field
        )
    return milli


def units(milli: int) -> str:
    """Milli-units as a decimal string of currency units: 12500 -> "12.500"."""
    sign = "-" if milli < 0 else ""
    q, r = divmod(abs(milli), MILLI)
    return "%s%d.%03d" % (sign, q, r)


@dataclass(frozen=True)
class PriceStep:
    """Prices per rate (milli-units per kWh, rate 1 first) in force from ``start`` (None: always)."""

    start: int | None
    prices: tuple[int, ...]


def price_schedule(tariff) -> list[PriceStep]:
    """The meter's prices from a billing ``Tariff``: one step per version, from local midnight
    of its effective date. A prepaid meter prices energy flat per rate: tiers are refused, and
    every price must be a whole number of milli-units per kWh."""
    steps = []
    for i, v in enumerate(tariff.versions):
        prices = []
        for p, tiers in enumerate(v.energy):
            rates = {t.rate for t in tiers}
            where = "versions[%d].energy.%s" % (i, v.period_names[p])
            if len(rates) != 1:
                raise PrepaidError("%s: a prepaid meter cannot apply tiered prices" % where, where)
            milli = rates.pop() * MILLI
            if milli != milli.to_integral_value() or not 0 <= milli <= MAX_PRICE:
                raise PrepaidError(
                    "%s: price must be whole milli-units per kWh, 0..%d" % (where, MAX_PRICE), where
                )
            prices.append(int(milli))
        start = None if v.effective_from is None else day_start(v.effective_from, tariff.utc_offset)
        steps.append(PriceStep(start, tuple(prices)))
    return steps


def prices_at(schedule: list[PriceStep], ts: int) -> PriceStep:
    starts = [-(2**63) if s.start is None else s.start for s in schedule]
    i = bisect.bisect_right(starts, ts) - 1
    if i < 0:
        raise PrepaidError("no tariff version in force at %d" % ts, "tariff")
    return schedule[i]


@dataclass(frozen=True)
class Cursor:
    """The last reading the ledger has debited up to, and the exact sum of Wh x price so far."""

    seq: int
    ts: int
    imp: tuple[int, ...]
    acc: int = 0  # sum of Wh * milli-units/kWh: the debit is acc // 1000

    @property
    def debited(self) -> int:
        return self.acc // MILLI


@dataclass(frozen=True)
class Step:
    seq: int
    ts: int
    acc: int
    balance: int | None  # the meter's reported balance at this reading


def advance(
    cursor: Cursor | None, readings, schedule: list[PriceStep], base_acc: int = 0
) -> tuple[Cursor | None, list, list]:
    """Price the readings after ``cursor`` (dicts with seq, ts, imp, balance; by ts).

    Returns (new cursor, [Step per priced reading], notes). The first reading ever is the
    baseline (nothing debited before it; its sum starts at ``base_acc``). Readings at or
    before the cursor's ts add nothing: registers are cumulative, so a late backlog
    reading's energy is already in the next delta. A register that went down, or a changed
    rate count, starts a new baseline (noted). A tariff change strictly inside an interval
    is priced at the start's prices (noted)."""
    steps, notes = [], []
    for r in readings:
        imp = tuple(r["imp"])
        if cursor is None:
            cursor = Cursor(r["seq"], r["ts"], imp, base_acc)
            steps.append(Step(r["seq"], r["ts"], base_acc, r.get("balance")))
            continue
        if r["ts"] <= cursor.ts:
            continue
        deltas = [b - a for a, b in zip(cursor.imp, imp, strict=False)]
        if len(imp) != len(cursor.imp) or any(d < 0 for d in deltas):
            notes.append("seq %d: registers went down or changed shape; new baseline" % r["seq"])
            cursor = Cursor(r["seq"], r["ts"], imp, cursor.acc)
            continue
        step = prices_at(schedule, cursor.ts)
        nxt = [s.start for s in schedule if s.start is not None and cursor.ts < s.start < r["ts"]]
        if nxt:
            notes.append("seq %d: tariff changed inside the interval; priced at its start" % r["seq"])
        acc = cursor.acc
        for rate, wh in enumerate(deltas):
            if wh == 0:
                continue
            if rate >= len(step.prices):
                raise PrepaidError(
                    "seq %d: %d Wh on rate %d, which the tariff does not price" % (r["seq"], wh, rate + 1),
                    "imp",
                )
            acc += wh * step.prices[rate]
        cursor = Cursor(r["seq"], r["ts"], imp, acc)
        steps.append(Step(r["seq"], r["ts"], acc, r.get("balance")))
    return cursor, steps, notes


def mismatch(meter_balance: int, ledger_balance: int, threshold: int) -> int | None:
    """meter - ledger if its magnitude is beyond ``threshold`` milli-units, else None."""
    diff = meter_balance - ledger_balance
    return diff if abs(diff) > threshold else None
