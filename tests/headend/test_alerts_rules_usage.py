"""Consumption rules on a real database: fluctuation against the account's own history and
against similar accounts (same tariff and zone), and prolonged zero consumption. The last
whole day before NOW is DAY0 + 15 days."""

from headend.alerts.usage import daily_usage, energy_between, median_without, zero_run
from tests.headend.alerts_support import (
    DAY,
    DAY0,
    NOW,
    H,
    add_meter,
    fired,
    hourly,
    new_store,
    reading_row,
    run,
)

LAST_DAY = DAY0 + 15 * DAY


def on_last_day(wh_then, wh_else=1000):
    return lambda ts: wh_then if LAST_DAY < ts <= LAST_DAY + DAY else wh_else


def test_daily_usage_needs_a_reading_near_each_midnight():
    rows = [{"ts": DAY0 + h * H, "imp": [h * 10]} for h in range(0, 49) if h not in (23, 24, 25)]
    d0 = DAY0 // DAY
    assert daily_usage(rows, d0, d0 + 1, 0, 3600) == {}  # no reading within 1 h of the middle midnight
    assert daily_usage(rows, d0, d0 + 1, 0, 2 * 3600) == {d0: 220, d0 + 1: 260}
    assert energy_between(rows, DAY0, DAY0 + 10 * H) == (100, 10 * H)
    assert zero_run([{"ts": 1, "imp": [5]}, {"ts": 2, "imp": [7]}, {"ts": 3, "imp": [7]}])[0]["ts"] == 2


def test_median_without_one_member():
    assert median_without([1, 2, 3, 10], 10) == 2
    assert median_without([1, 2, 3, 10], 1) == 3
    assert median_without([1, 2, 2, 3], 2) == 2
    assert median_without([5, 7], 5) == 7


def test_fluctuation_against_own_history_low_and_high(db_target):
    store = new_store(db_target)
    add_meter(store, "low", "A-low")
    add_meter(store, "high", "A-high")
    hourly(store, "low", on_last_day(50))
    hourly(store, "high", on_last_day(5000))
    run(store, disabled_rules=("fluctuation_peers",))
    [low] = fired(store, "fluctuation_history", "low")
    [high] = fired(store, "fluctuation_history", "high")
    assert low["severity"] == high["severity"] == "warning"
    assert (low["evidence"]["wh"], low["evidence"]["median_wh"], low["evidence"]["ratio_pct"]) == (
        1200,
        24000,
        5.0,
    )
    assert (high["evidence"]["ratio_pct"], high["evidence"]["day"]) == (500.0, "2024-03-16")
    assert low["evidence"]["history_days"] == 14 and "below" in low["action"] and "above" in high["action"]


def test_fluctuation_quiet_within_range_or_without_history(db_target):
    store = new_store(db_target)
    add_meter(store, "steady", "A1")
    add_meter(store, "new", "A2")
    hourly(store, "steady", on_last_day(1500))  # 150 %: inside [30 %, 300 %]
    hourly(store, "new", on_last_day(50), start=NOW - 3 * DAY)  # too little history to judge
    run(store)
    assert fired(store, "fluctuation_history") == []


def peers(store, n, last_day_wh, zone="Z"):
    for i in range(n):
        add_meter(store, "p%d%s" % (i, zone), "P%d%s" % (i, zone), zone=zone)
        hourly(store, "p%d%s" % (i, zone), 1000 + 10 * i)
    add_meter(store, "odd" + zone, "ODD" + zone, zone=zone, address="9 Side St")
    hourly(store, "odd" + zone, on_last_day(last_day_wh))


def test_fluctuation_against_peers_theft_and_low(db_target):
    store = new_store(db_target)
    peers(store, 5, 40, zone="Z")  # 4 % of the peers' median: theft
    peers(store, 5, 200, zone="Y")  # 20 %: low, not theft
    run(store, disabled_rules=("fluctuation_history",))
    [theft] = fired(store, "fluctuation_peers", "oddZ")
    [low] = fired(store, "fluctuation_peers", "oddY")
    assert (theft["severity"], theft["theft"]) == ("critical", 1) and theft["work_order_id"] is not None
    assert (low["severity"], low["theft"], low["work_order_id"]) == ("warning", 0, None)
    ev = theft["evidence"]
    assert (ev["peers"], ev["zone"], ev["wh"], ev["peer_median_wh"]) == (5, "Z", 960, 24480)
    [wo] = store.work_orders()
    assert wo["meter_id"] == "oddZ" and wo["location"] == "9 Side St (zone Z)"
    assert {a["meter_id"] for a in fired(store, "fluctuation_peers")} == {"oddZ", "oddY"}


def test_peers_quiet_when_alike_or_group_too_small(db_target):
    store = new_store(db_target)
    peers(store, 5, 1100, zone="Z")
    peers(store, 3, 40, zone="small")  # 4 accounts: below peer_min_accounts (5)
    run(store, disabled_rules=("fluctuation_history",))
    assert fired(store, "fluctuation_peers") == []


def test_zero_consumption_on_an_online_active_account(db_target):
    store = new_store(db_target)
    add_meter(store)
    hourly(store, wh=lambda ts: 0 if ts > NOW - 30 * H else 1000)
    run(store)
    [a] = fired(store, "zero_consumption")
    assert a["severity"] == "warning" and a["evidence"]["since_ts"] == NOW - 30 * H
    # the reading at NOW is received 5 s after it, so the last one the run sees is NOW - 1 h
    assert (a["evidence"]["hours"], a["evidence"]["last_ts"]) == (29.0, NOW - H)


def test_zero_consumption_quiet_when_relay_open_offline_or_short(db_target):
    store = new_store(db_target)
    for m, online in (("open", True), ("offline", False), ("short", True)):
        add_meter(store, m, "A-" + m, online=online)
    stop = NOW - 30 * H
    hourly(store, "open", wh=lambda ts: 0 if ts > stop else 1000, end=stop)
    store.insert_readings_batch(
        [reading_row("open", 1000 + i, stop + (i + 1) * H, 1000 * 366, flags=1) for i in range(30)]
    )  # credit-disconnected: relay open
    hourly(store, "offline", wh=lambda ts: 0 if ts > stop else 1000)
    hourly(store, "short", wh=lambda ts: 0 if ts > NOW - 10 * H else 1000)
    run(store)
    assert fired(store, "zero_consumption") == []
