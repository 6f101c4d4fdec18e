"""The fleet path (``headend.billing.plan``) totals a year as ``bill_intervals`` bills it, to the cent.

Random tariffs and profiles of the engine's equivalence test (tests/headend/test_billing_equivalence.py:
meter calendars and month-hour tables, tiers in time order or prorated, monthly or annual
windows, two versions, fixed, minimum, flat and TOU demand charges, any utc_offset), with and
without their demand charges, without gaps (a plan is for a regular run of intervals): the
plan's annual total is the sum of ``bill_intervals``' monthly totals, the same Decimal (value
and exponent), or the same error, or None where it leaves the profile to the engine
(time-order tiers with a negative interval).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from headend.billing import parse_tariff
from headend.billing.compare import annual_totals, year_window
from headend.billing.engine import bill_intervals
from headend.billing.plan import plan
from headend.billing.tariff.model import NO_DEMAND, DemandTier
from headend.errors import BillingError
from tests.headend.billrun_support import DEMAND, LADDER, TOU
from tests.headend.test_billing_equivalence import case


def no_demand(tariff):
    versions = tuple(
        dataclasses.replace(v, flat_demand=NO_DEMAND, demand_calendar=None, demand=(), demand_period_names=())
        for v in tariff.versions
    )
    return dataclasses.replace(tariff, versions=versions)


def engine_total(tariff, interval, ts, wh):
    try:
        bill = bill_intervals(tariff, interval, ts, wh, 3)
    except BillingError as e:
        return "error: %s" % e
    return sum((m.total for m in bill.months), Decimal(0))


def plan_total(tariff, interval, ts, wh):
    p = plan(tariff, interval, ts[0], len(ts))
    assert p is not None
    try:
        return p.annual_total(np.array(wh, dtype=np.int64))
    except BillingError as e:
        return "error: %s" % e


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_plan_totals_as_the_engine_bills(seed, demand):
    tariff, profile = case(seed)
    if not demand:
        tariff = no_demand(tariff)
    interval = profile.interval_s
    t0 = profile.points[0][0] if profile.points else 0
    ts = [t0 + i * interval for i in range(len(profile.points))]  # no gaps
    wh = [int(k * 1000) for _, k in profile.points]
    if not ts:
        return
    want, got = engine_total(tariff, interval, ts, wh), plan_total(tariff, interval, ts, wh)
    if got is None:
        assert tariff.tier_mode == "time_order" and min(wh) < 0
        return
    assert got == want and str(got) == str(want)


def test_a_year_of_hours_across_tiers_and_versions():
    """A leap year of hourly data: the ladder's shared table split at its bounds, a TOU tariff
    with tiers per period (the engine's walk on the run), a second version in June, annual tiers."""
    ts = list(range(1704067200, 1704067200 + 366 * 86400, 3600))
    wh = [(i * 7919) % 1500 for i in range(len(ts))]
    tiered_tou = TOU.replace("[energy]", '[tiers]\nmax_kwh = [150]\nsurcharge = [0, "0.1"]\n[energy]')
    tariffs = [parse_tariff(t) for t in (LADDER, TOU, tiered_tou)]
    tariffs.append(dataclasses.replace(tariffs[0], tier_basis="annual"))
    tariffs.append(dataclasses.replace(tariffs[2], tier_mode="prorate"))
    second = dataclasses.replace(tariffs[2].versions[0], effective_from=19875, fixed_monthly=Decimal("7.5"))
    tariffs.append(dataclasses.replace(tariffs[2], versions=(tariffs[2].versions[0], second)))
    for t in tariffs:
        want = engine_total(t, 3600, ts, wh)
        assert isinstance(want, Decimal)
        got = plan_total(t, 3600, ts, wh)
        assert got == want and str(got) == str(want)


def test_compare_takes_arrays_and_lists_alike_and_bills_demand():
    ts = list(range(1704067200, 1704067200 + 366 * 86400, 3600))
    wh = [(i * 7919) % 1500 - (300 if i == 5000 else 0) for i in range(len(ts))]  # one negative
    tariffs = [parse_tariff(t) for t in (TOU, LADDER, DEMAND)]
    assert plan_total(tariffs[2], 3600, ts, wh) == engine_total(tariffs[2], 3600, ts, wh) > 12 * 10 * 1
    windows = [year_window(t, 2024) for t in tariffs]
    want = [engine_total(t, 3600, ts, wh) for t in tariffs]
    assert annual_totals(tariffs, windows, 3600, ts, wh) == want
    arrays = annual_totals(tariffs, windows, 3600, np.array(ts), np.array(wh))
    assert arrays == want and [str(x) for x in arrays] == [str(x) for x in want]
    gap = ts[:100] + ts[101:]  # not a regular run: the engine
    assert annual_totals(tariffs, windows, 3600, np.array(gap), np.array(wh[:100] + wh[101:])) == [
        engine_total(t, 3600, gap, wh[:100] + wh[101:]) for t in tariffs
    ]


def test_tou_demand_under_one_of_two_versions():
    """TOU demand charges under the first half-year's version only, then under the second's only:
    each month's peaks are its own (the months under the other version are no part of them)."""
    ts = list(range(1704067200, 1704067200 + 366 * 86400, 3600))
    wh = [(i * 7919) % 1500 + (6000 if i >= 182 * 24 else 0) for i in range(len(ts))]
    tou = parse_tariff(TOU)
    v = tou.versions[0]
    tou_demand = {
        "demand_calendar": v.calendar,
        "demand": (
            (DemandTier(Decimal("7.5"), Decimal("1")), DemandTier(Decimal("9"))),
            (DemandTier(Decimal("3")),),
        ),
        "demand_period_names": ("peak", "valley"),
    }
    july = 19723 + 182
    for first, second in (({**tou_demand}, {}), ({}, {**tou_demand})):
        versions = (dataclasses.replace(v, **first), dataclasses.replace(v, effective_from=july, **second))
        tariff = dataclasses.replace(tou, versions=versions)
        want = engine_total(tariff, 3600, ts, wh)
        got = plan_total(tariff, 3600, ts, wh)
        assert isinstance(want, Decimal) and got == want and str(got) == str(want)
