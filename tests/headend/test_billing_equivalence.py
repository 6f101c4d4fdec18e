"""The segment engine bills exactly as the per-interval engine did (issue 19), on random inputs.

``billing_reference.bill_profile`` is the engine as it was before the calendar was walked once
per rate change; ``headend.billing.bill_profile`` must give the same bill for any profile and
tariff: every line (exact and rounded), kWh per period, peak and days of every month, or the
same error. Random tariffs: meter calendars (seasons, special days, switch minutes that may
split an interval) or month-hour tables, 1-3 periods with rising tiers (some per day), time
order or prorate, monthly or annual windows, a second version from a day inside the profile,
fixed, minimum, flat and TOU demand charges, any utc_offset. Random profiles: hourly or
15-minute (up to 40 or 20 days), across month ends, kWh with 0-5 decimals, some with gaps or
negative intervals.
"""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from headend.billing import bill_profile
from headend.billing.calendar import MeterCalendar, MonthHourCalendar
from headend.billing.engine import bill_intervals
from headend.billing.profile_csv import Profile
from headend.billing.tariff.model import NO_DEMAND, DemandTier, Tariff, TariffVersion, Tier
from headend.errors import BillingError
from protocol import tariff_calendar as tc
from tests.headend import billing_reference

DAY = 86400
JAN_2024 = 19723  # days since 1970-01-01


def _money(rng: random.Random, lo: float, hi: float, places: int) -> Decimal:
    return Decimal(str(round(rng.uniform(lo, hi), places)))


def _minute(rng: random.Random) -> int:
    if rng.random() < 0.1:
        return rng.randrange(1, 288) * 5  # may split a 15-minute or hourly interval
    return rng.randrange(1, 48) * 30


def meter_calendar(rng: random.Random, nper: int, offset: int) -> MeterCalendar:
    days = []
    for _ in range(rng.randint(1, 3)):
        minutes = sorted({_minute(rng) for _ in range(rng.randint(0, 4))})
        days.append([[0, rng.randint(1, nper)]] + [[m, rng.randint(1, nper)] for m in minutes])
    weeks = [[rng.randrange(len(days)) for _ in range(7)] for _ in range(rng.randint(1, 2))]
    seasons = sorted({(rng.randint(1, 12), rng.randint(1, 28)) for _ in range(rng.randint(0, 3))})
    special = [[rng.choice([0, 2024]), 2, rng.randint(1, 29), rng.randrange(len(days))]] * rng.randint(0, 1)
    return MeterCalendar(
        tc.validate_tariff(
            {
                0: 1,
                1: 0,
                2: [1] * nper,
                3: days,
                4: weeks,
                5: [[m, d, rng.randrange(len(weeks))] for m, d in seasons],
                6: special,
                7: offset,
            }
        )
    )


def calendar(rng: random.Random, nper: int, offset: int):
    if rng.random() < 0.7:
        return meter_calendar(rng, nper, offset)
    table = [[rng.randrange(nper) for _ in range(24)] for _ in range(12)]
    return MonthHourCalendar(table, [[rng.randrange(nper)] * 24 for _ in range(12)], offset)


def _demand_tiers(rng: random.Random) -> tuple[DemandTier, ...]:
    bounds = sorted({_money(rng, 0.5, 4, 2) for _ in range(rng.randint(0, 2))})
    return tuple(DemandTier(_money(rng, 1, 15, 3), b) for b in bounds) + (DemandTier(_money(rng, 1, 15, 3)),)


def version(rng: random.Random, offset: int, effective_from: int | None) -> TariffVersion:
    nper = rng.randint(1, 3)
    per_day = rng.random() < 0.2
    bounds = sorted({_money(rng, 0.5, 40, rng.choice([0, 0, 1, 2])) for _ in range(rng.randint(0, 2))})
    energy = tuple(
        tuple(Tier(_money(rng, 0.05, 0.9, 5), b, per_day) for b in bounds)
        + (Tier(_money(rng, 0.05, 0.9, 5)),)
        for _ in range(nper)
    )
    extra: dict = {}
    if rng.random() < 0.4:
        flat = _demand_tiers(rng)
        extra["flat_demand"] = tuple(flat if rng.random() < 0.8 else () for _ in range(12))
    if rng.random() < 0.4:
        dper = rng.randint(1, 2)
        extra["demand_calendar"] = calendar(rng, dper, offset)
        extra["demand"] = tuple(_demand_tiers(rng) for _ in range(dper))
        extra["demand_period_names"] = tuple("d%d" % q for q in range(dper))
    return TariffVersion(
        calendar=calendar(rng, nper, offset),
        period_names=tuple(rng.choice(["p%d" % p, "same"]) for p in range(nper)),
        energy=energy,
        effective_from=effective_from,
        fixed_monthly=_money(rng, 0, 20, 2) if rng.random() < 0.5 else Decimal(0),
        fixed_daily=_money(rng, 0, 1, 3) if rng.random() < 0.3 else Decimal(0),
        min_monthly=_money(rng, 0, 60, 2) if rng.random() < 0.3 else Decimal(0),
        min_annual=_money(rng, 0, 300, 2) if rng.random() < 0.2 else Decimal(0),
        **{"flat_demand": NO_DEMAND, **extra},
    )


def case(seed: int) -> tuple[Tariff, Profile]:
    rng = random.Random(seed)
    offset = rng.choice([0, 480, -300, 330, 7])
    interval = rng.choice([900, 3600])
    first_day = JAN_2024 + rng.randrange(366)
    n = rng.randint(1, (40 if interval == 3600 else 20) * DAY // interval)
    start = first_day * DAY - offset * 60 + rng.randrange(DAY // interval) * interval
    versions = [version(rng, offset, first_day - rng.randint(-2, 40) if rng.random() < 0.9 else None)]
    if rng.random() < 0.3:
        versions.append(version(rng, offset, first_day + rng.randint(0, 35)))
    tariff = Tariff(
        "random %d" % seed,
        tuple(versions),
        currency="XYZ",
        minor_unit=rng.choice([Decimal("0.01"), Decimal("1")]),
        utc_offset=offset,
        tier_mode=rng.choice(["time_order", "prorate"]),
        tier_basis=rng.choice(["monthly", "annual"]),
    )
    places = rng.randint(0, 5)
    top = (3 if interval == 3600 else 1) * 10**places
    gaps, negative = rng.random() < 0.15, rng.random() < 0.1
    points = []
    for i in range(n):
        if gaps and rng.random() < 0.05:
            continue
        x = rng.randint(-top // 5 if negative else 0, top)
        points.append((start + i * interval, Decimal(x).scaleb(-places)))
    return tariff, Profile(interval, tuple(points))


def outcome(bill_fn, tariff, profile):
    try:
        bill = bill_fn(tariff, profile)
    except BillingError as e:
        return "error: %s" % e
    months = [
        (m.as_json(), m.exact, m.kwh_by_period, m.energy_kwh, m.peak_kw, m.days, list(m.kwh_by_period))
        for m in bill.months
    ]
    return bill.as_json(), months


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_segment_engine_bills_as_the_per_interval_engine(seed):
    tariff, profile = case(seed)
    assert outcome(bill_profile, tariff, profile) == outcome(billing_reference.bill_profile, tariff, profile)


def test_random_cases_cover_bills_and_errors():
    """The generator reaches what it is for: bills with tiers crossed and demand, and errors."""
    seen = {"bill": 0, "error": 0, "demand": 0, "two versions": 0}
    for seed in range(60):
        tariff, profile = case(seed)
        got = outcome(bill_profile, tariff, profile)
        if isinstance(got, str):
            seen["error"] += 1
            continue
        seen["bill"] += 1
        seen["demand"] += any(m[0]["demand_charge"] not in ("0.00", "0") for m in got[1])
        seen["two versions"] += len(tariff.versions) > 1
    assert all(v >= 3 for v in seen.values()), seen


def test_bill_intervals_takes_wh_as_integers():
    tariff, profile = next(c for c in map(case, range(100)) if not isinstance(outcome(bill_profile, *c), str))
    ts = [t for t, _ in profile.points]
    wh = [int(k * 1000) for _, k in profile.points]
    exact = Profile(profile.interval_s, tuple((t, Decimal(w) / 1000) for t, w in zip(ts, wh, strict=True)))
    assert bill_intervals(tariff, profile.interval_s, ts, wh, 3) == bill_profile(tariff, exact)
