"""Bill runs over stored load profiles and readings: hand-computed bills (TOU, ladder,
demand, register deltas, estimated data within and beyond policy), and the fast pricing
path against the full engine."""

import random
from decimal import Decimal

import pytest

from headend.billing import parse_tariff
from headend.billing.engine import bill_profile
from headend.billing.policy import Policy
from headend.billing.price import CyclePricer
from headend.billing.profile_csv import Profile
from headend.billing.run import run_bills
from headend.billing.usage import gather
from tests.headend.billrun_support import (
    DEMAND,
    FEB,
    LADDER,
    MAR,
    NOW,
    add_account,
    hourly,
    new_store,
    reads,
    tou_rates,
)

NO_REVIEW = Policy(review_sample_pct=Decimal(0))


def amounts(bill):
    return {line["item"]: line["amount"] for line in bill["lines"]}


@pytest.fixture
def store(db_target):  # both engines (tests/conftest.py)
    with new_store(db_target) as s:
        yield s


def test_tou_bill_from_hourly_profile(store):
    add_account(store, "a1")
    hourly(store, "m-a1", tou_rates)
    run = run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert run["counts"] == {"issued": 1, "held": 0, "review": 0, "skipped": 0}
    b = store.bill("a1", "2024-02")
    # 29 days x 12 h x 300 Wh = 104.4 kWh peak x 0.5 = 52.20; 29 x 12 x 200 Wh = 69.6 kWh x 0.3 = 20.88
    assert amounts(b) == {
        "energy_charge": "73.08",
        "fixed_charge": "5.00",
        "demand_charge": "0.00",
        "minimum_charge": "0.00",
    }
    assert (b["state"], b["total"], b["energy_kwh"]) == ("issued", "78.08", "174.000")
    assert b["kwh_by_rate"] == {"1": "104.4", "2": "69.6"}
    assert b["period_start"] == FEB and b["period_end"] == MAR
    assert "rounded half-up" in b["rule"]


def test_ladder_in_time_order_and_demand_through_the_engine(store):
    add_account(store, "lad", tariff=LADDER)
    hourly(store, "m-lad", lambda ts: [700])  # 696 h x 0.7 = 487.2 kWh
    add_account(store, "dem", tariff=DEMAND)
    hourly(store, "m-dem", lambda ts: [5000 if ts == FEB + 7200 else 1000])  # 700 kWh, peak 5 kW
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    # 200 x 0.4883 + 200 x 0.5383 + 87.2 x 0.7883 = 97.66 + 107.66 + 68.73976 = 274.05976
    assert store.bill("lad", "2024-02")["total"] == "274.06"
    dem = store.bill("dem", "2024-02")
    assert amounts(dem)["energy_charge"] == "70.00" and amounts(dem)["demand_charge"] == "50.00"
    assert dem["total"] == "120.00"


def test_register_deltas_between_boundary_reads(store):
    add_account(store, "r1")
    reads(store, "m-r1", [(FEB, [1000, 2000]), (MAR, [105400, 71600])])  # no load profile
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    b = store.bill("r1", "2024-02")
    assert (b["state"], b["total"], b["kwh_by_rate"]) == ("issued", "78.08", {"1": "104.4", "2": "69.6"})


def test_estimated_days_within_policy_are_billed_and_flagged(store):
    add_account(store, "e1")
    hourly(store, "m-e1", tou_rates, source=lambda ts: "estimated" if ts < FEB + 86400 else "real")
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    b = store.bill("e1", "2024-02")
    assert (b["state"], b["total"]) == ("issued", "78.08")
    assert b["sources"] == {"real": 28 * 86400, "estimated": 86400, "edited": 0}


def test_estimated_days_beyond_policy_hold_the_bill(store):
    add_account(store, "e4")
    hourly(store, "m-e4", tou_rates, source=lambda ts: "estimated" if ts < FEB + 4 * 86400 else "real")
    run = run_bills(store, "2024-02", NOW, NO_REVIEW)
    b = store.bill("e4", "2024-02")
    assert run["counts"]["held"] == 1 and b["state"] == "held"
    assert b["reasons"] == ["estimated data 4.00 days (13.8 %) beyond policy (at most 3 days and 10 %)"]
    assert b["total"] == "78.08"  # priced all the same, for the operator to see
    assert store.outbox() == []


def test_estimated_boundary_interval_refused_when_policy_says_real(store):
    add_account(store, "eb")
    hourly(store, "m-eb", tou_rates, source=lambda ts: "estimated" if ts >= MAR - 3600 else "real")
    run_bills(store, "2024-02", NOW, Policy(review_sample_pct=Decimal(0), estimated_boundary=False))
    b = store.bill("eb", "2024-02")
    assert b["state"] == "held"
    assert b["reasons"] == ["the cycle's last interval is an estimate (policy: boundary reads must be real)"]


def _random_tariff(rnd):
    mode = rnd.choice(["time_order", "prorate"])
    tiers = rnd.choice([[], [50], [100, 300]])
    lines = ['format = "open-ami-tariff"', 'name = "r"', 'tier_mode = "%s"' % mode]
    one = mode == "time_order" and tiers and rnd.random() < 0.5
    lines.append('periods = ["all"]' if one else 'periods = ["peak", "valley"]')
    if not one:
        lines += [
            "[calendar]",
            'day_profiles = [[["00:00", "valley"], ["08:00", "peak"], ["20:00", "valley"]]]',
            "week_profiles = [[0, 0, 0, 0, 0, 0, 0]]",
        ]
    if tiers and (one or mode == "prorate"):
        lines += ["[tiers]", "max_kwh = %s" % tiers]
        lines += ["surcharge = [%s]" % ", ".join('"%s"' % (Decimal(k) / 100) for k in range(len(tiers) + 1))]
    lines.append("[energy]")
    for p in ["all"] if one else ["peak", "valley"]:
        lines.append('%s = "%s"' % (p, Decimal(rnd.randint(1000, 9999)) / 10000))
    lines += [
        "[fixed]",
        'monthly = "%s"' % (Decimal(rnd.randint(0, 999)) / 100),
        'daily = "%s"' % (Decimal(rnd.randint(0, 99)) / 1000),
    ]
    lines += ["[minimum]", 'monthly = "%s"' % rnd.choice(["0", "20", "150"])]
    return parse_tariff("\n".join(lines))


@pytest.mark.parametrize("seed", range(12))
def test_fast_path_prices_exactly_as_the_engine(seed):
    rnd = random.Random(seed)
    tariff = _random_tariff(rnd)
    pricer = CyclePricer(tariff, 2024, 2)
    assert pricer.fast
    points, by_rate = [], {}
    for ts in range(FEB, MAR, 3600):
        wh = rnd.choice([0, rnd.randint(0, 900), rnd.randint(0, 4000)])
        period = tariff.versions[0].calendar.period_at(ts) if len(tariff.versions[0].period_names) > 1 else 0
        by_rate[period + 1] = by_rate.get(period + 1, Decimal(0)) + Decimal(wh) / 1000
        points.append((ts, Decimal(wh) / 1000))
    month = bill_profile(tariff, Profile(3600, tuple(points))).months[0]
    fast = pricer.price_fast(by_rate, MAR - FEB)
    assert fast["total"] == month.total
    assert fast["lines"] == {k: getattr(month, k) for k in fast["lines"]}


def test_tou_only_tariff_billed_from_the_rate_registers(store):
    # TOU without tiers or demand: the rate registers' deltas are billed, the profile only checked.
    # Registers 104,400 + 1 Wh peak (within the 1 Wh tolerance of the profile's 104,400):
    # 104.401 kWh x 0.5 = 52.2005 + 69.6 x 0.3 = 20.88 -> 73.0805 -> 73.08 (the profile: 73.08 too),
    # but kWh by rate and the total kWh are the registers'
    add_account(store, "reg")
    hourly(store, "m-reg", tou_rates)
    reads(store, "m-reg", [(FEB, [0, 0]), (MAR, [104400 + 1, 69600])])
    add_account(store, "lad", tariff=LADDER)  # tiers: the profile is billed, the registers checked
    hourly(store, "m-lad", lambda ts: [700])
    reads(store, "m-lad", [(FEB, [0]), (MAR, [487200 + 1])])
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    b = store.bill("reg", "2024-02")
    assert (b["state"], b["kwh_by_rate"], b["energy_kwh"]) == (
        "issued",
        {"1": "104.401", "2": "69.6"},
        "174.001",
    )
    assert amounts(b)["energy_charge"] == "73.08"
    lad = store.bill("lad", "2024-02")
    assert (lad["state"], lad["energy_kwh"], lad["total"]) == ("issued", "487.200", "274.06")
    # beyond the tolerance the bill is held, naming the rate
    add_account(store, "far")
    hourly(store, "m-far", tou_rates)
    reads(store, "m-far", [(FEB, [0, 0]), (MAR, [104400, 69600 + 500])])
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    far = store.bill("far", "2024-02")
    assert far["state"] == "held"
    assert far["reasons"][0] == "rate T2: load profile 69600 Wh but boundary registers 70100 Wh"


def test_profile_read_per_account_equals_the_read_by_rate_and_source(store, monkeypatch):
    # usage.gather reads one row per account (profile_fast) when every row is real and of rates
    # 1..4, else by rate and source (profile_sums): both must give the same Usage
    add_account(store, "four")  # 4 rates, all real
    hourly(store, "m-four", lambda ts: [100, 200, 300, 400 + ts % 7])
    add_account(store, "six")  # rates 5 and 6: beyond the per-account row
    hourly(store, "m-six", lambda ts: [1, 2, 3, 4, 5, 6])
    add_account(store, "mixed")  # estimated and edited rows, first and last intervals estimated
    marks = {FEB: "estimated", MAR - 3600: "estimated", FEB + 7200: "edited"}
    hourly(store, "m-mixed", tou_rates, source=lambda ts: marks.get(ts, "real"))
    add_account(store, "gaps")  # one rate, every third hour missing, starts late, a negative hour
    hourly(store, "m-gaps", lambda ts: [-5 if ts == FEB + 4 * 3600 else 50] if (ts - FEB) // 3600 % 3 else [],
           start=FEB + 3600)  # fmt: skip
    add_account(store, "daily", tariff=LADDER)
    hourly(store, "m-daily", lambda ts: [9000], interval=86400)
    add_account(store, "both")  # hourly and daily rows: the hourly are read
    hourly(store, "m-both", lambda ts: [7, 8])
    hourly(store, "m-both", lambda ts: [99, 99], interval=86400)
    add_account(store, "quarter")
    hourly(store, "m-quarter", lambda ts: [5], interval=900)
    store.add_account({"account_id": "two", "zone": "Z1", "zone_kind": "regular", "billing": "postpaid",
                       "tariff_id": store.postpaid_after("", 1)[0][2]})  # fmt: skip
    for meter, lo, hi in (("m-two-a", 0, FEB + 10 * 86400), ("m-two-b", FEB + 10 * 86400, None)):
        store.add_meter(meter, "00" * 32, "$7$x", now=0)
        store.link_meter("two", meter, lo, hi)
        hourly(store, meter, lambda ts: [10, 20])  # each meter's rows count only in its window
    reads(store, "m-four", [(FEB, [0, 0, 0, 0]), (MAR, [69600, 139200, 208800, 280000])])
    accounts = store.postpaid_after("", 100)
    read_by_rate = []
    real_sums = store.profile_sums
    monkeypatch.setattr(store, "profile_sums", lambda ids, *a: read_by_rate.extend(ids) or real_sums(ids, *a))
    fast = gather(store, accounts, (FEB, MAR), Policy())
    assert sorted(read_by_rate) == ["mixed", "six"]
    # every account by rate and source: its per-account rows count a row that is not real
    for name in ("profile_fast", "profile_fast_all"):  # PostgreSQL reads all resolutions at once
        real = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *a, real=real: [(r[0], r[1], 1, *r[3:]) for r in real(*a)])
    slow = gather(store, accounts, (FEB, MAR), Policy())
    assert set(fast) == set(slow) == {a[0] for a in accounts}
    for a in fast:
        assert fast[a] == slow[a], a
    assert fast["two"].intervals == 696 and fast["two"].wh_by_rate == {1: 6960, 2: 13920}
    assert [fast[a].interval_s for a in ("both", "quarter", "daily")] == [3600, 900, 86400]
    assert fast["both"].wh_by_rate == {1: 7 * 696, 2: 8 * 696}
    assert fast["gaps"].intervals == 464 and fast["gaps"].expected == 696 and fast["gaps"].min_wh == -5
    assert fast["four"].register_wh == {1: 69600, 2: 139200, 3: 208800, 4: 280000}


def test_two_links_profile_rows_fold_as_one():
    """PostgreSQL reads the fast profile row of each meter link (usage._fast_rows folds an account's):
    counts and sums add, a rate one link lacks (sum None) takes the other's, the least Wh and first
    interval, the last interval."""
    from headend.billing.usage import _fold_links

    a = ("acc", 10, 1, 5, 100, 900, 50, 10, None, 0, 7, 3, None, 0)
    b = ("acc", 4, 0, -2, 1000, 1300, 20, 4, 8, 2, None, 0, None, 0)
    assert _fold_links(a, b) == ("acc", 14, 1, -2, 100, 1300, 70, 14, 8, 2, 7, 3, None, 0)
    assert _fold_links(b, a) == _fold_links(a, b)
