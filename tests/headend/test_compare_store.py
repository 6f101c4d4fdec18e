"""``compare_store.read_profiles``: a batch of accounts' load profiles in one query, on both engines.

Each account's profile is what the bill run reads for it (``profile_sums`` then
``profile_points``: the first resolution with rows, each interval's Wh summed over its rates and
its meters, each meter within its link window), as int64 arrays in interval order.
"""

from __future__ import annotations

import numpy as np
import pytest

from headend.billing.compare_store import intervals, parse_ints, read_profiles
from tests.headend.billrun_support import FEB, MAR, TOU, add_account, hourly, new_store, tariff_id

RESOLUTIONS = (3600, 900, 86400)


def reference(store, account_id, start, end):
    """The bill run's reading of one account (store.py), as (interval_s, ts, wh) lists."""
    for iv in RESOLUTIONS:
        if store.profile_sums([account_id], iv, start, end):
            totals: dict[int, int] = {}
            for ts, _rate, wh, _src in store.profile_points(account_id, iv, start, end):
                totals[ts] = totals.get(ts, 0) + wh
            return iv, sorted(totals), [totals[t] for t in sorted(totals)]
    return 0, [], []


@pytest.fixture
def fleet(db_target):
    store = new_store(db_target)
    with store as s:
        add_account(s, "a-two-rates")  # hourly, both rates every hour
        hourly(s, "m-a-two-rates", lambda ts: [ts % 7 * 10, ts % 5 * 3 - 4])
        add_account(s, "b-quarter")  # 15-minute only
        hourly(s, "m-b-quarter", lambda ts: [ts % 11], interval=900)
        add_account(s, "c-both")  # hourly and 15-minute: hourly first
        hourly(s, "m-c-both", lambda ts: [7], interval=900)
        hourly(s, "m-c-both", lambda ts: [ts % 13, 1], start=FEB + 86400)
        add_account(s, "d-daily")
        hourly(s, "m-d-daily", lambda ts: [1000 + ts % 3], interval=86400)
        add_account(s, "e-none")
        s.add_account({"account_id": "f-swap", "zone": "Z1", "zone_kind": "regular", "billing": "postpaid",
                       "tariff_id": tariff_id(TOU)})  # fmt: skip
        for m in ("m-old", "m-new"):
            s.add_meter(m, "00" * 32, "$7$x", now=0)
        swap = FEB + 10 * 86400 + 3600
        s.link_meter("f-swap", "m-old", 0, swap)
        s.link_meter("f-swap", "m-new", swap)
        hourly(s, "m-old", lambda ts: [5])  # the whole month, counted only before the swap
        hourly(s, "m-new", lambda ts: [9, 1], start=FEB + 5 * 86400)  # counted from the swap
    return db_target


def test_a_batch_reads_what_the_bill_run_reads(fleet):
    ids = ["a-two-rates", "b-quarter", "c-both", "d-daily", "e-none", "f-swap", "zz-unknown"]
    with new_store(fleet) as s:
        for start, end in ((FEB, MAR), (FEB + 3 * 86400 + 1800, FEB + 12 * 86400)):
            got = list(read_profiles(s, ids, start, end, batch=3))
            assert [g[0] for g in got] == ids
            for account_id, iv, ts, wh in got:
                assert ts.dtype == wh.dtype == np.int64
                assert (iv, ts.tolist(), wh.tolist()) == reference(s, account_id, start, end), account_id
            by = {g[0]: g for g in got}
            assert by["c-both"][1] == 3600 and by["b-quarter"][1] == 900 and by["d-daily"][1] == 86400
            assert by["e-none"][1] == 0 and len(by["e-none"][2]) == len(by["e-none"][3]) == 0
        (a, iv, ts, wh), *_ = read_profiles(s, ["f-swap"], FEB, MAR)
        swap = FEB + 10 * 86400 + 3600
        assert wh[ts < swap].tolist() == [5] * ((swap - FEB) // 3600)
        assert set(wh[ts >= swap].tolist()) == {10} and ts[-1] == MAR - 3600


def test_rows_out_of_order_are_sorted_and_summed_per_interval():
    ts, wh = intervals(np.array([30, 10, 20, 10, 30, 30]), np.array([1, 2, 3, 4, 5, 6]))
    assert ts.tolist() == [10, 20, 30] and wh.tolist() == [6, 3, 12]
    ts, wh = intervals(np.array([10, 20, 20, 40]), np.array([1, -2, 3, 4]))  # sorted, one repeated
    assert ts.tolist() == [10, 20, 40] and wh.tolist() == [1, 1, 4]
    assert parse_ints("-5,0,123456789012", 3).tolist() == [-5, 0, 123456789012]
    with pytest.raises(ValueError):
        parse_ints("1,2,x", 3)


def test_worker_processes_read_on_their_own_connections(fleet, monkeypatch):
    from headend.billing import cli_compare
    from headend.billing.tariff import parse_tariff

    tariffs = [parse_tariff(TOU)] * 2
    ids = ["a-two-rates", "b-quarter", "c-both", "d-daily", "e-none", "f-swap"]
    alone = cli_compare.bill_stored(fleet, None, tariffs, ids, 2024, FEB, MAR, workers=1)
    monkeypatch.setattr(cli_compare, "CHUNK", 2)
    parallel = cli_compare.bill_stored(fleet, None, tariffs, ids, 2024, FEB, MAR, workers=2)
    assert parallel == alone
    assert [a["account_id"] for a in alone[0]] == ["a-two-rates", "b-quarter", "c-both", "f-swap"]
    assert [s["account_id"] for s in alone[1]] == ["d-daily", "e-none"]  # daily data, TOU changes in a day
    assert "period changes inside" in alone[1][0]["reason"]
    assert alone[1][1]["reason"] == "no load profile in the year"
