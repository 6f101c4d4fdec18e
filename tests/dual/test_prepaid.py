"""Prepaid balance logic, hand-computed scenarios: runs under pytest and micropython."""

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises

from firmware import compat
from firmware.prepaid import (
    BALANCE_MAX,
    EV_CREDIT_EXHAUSTED,
    EV_DISCONNECT,
    EV_EMERGENCY,
    EV_LOW_BALANCE,
    EV_RECONNECT,
    MAX_PRICE,
    MAX_WH,
    TOPUP_DUPLICATE,
    TOPUP_NEW,
    TOPUP_RING,
    TOPUP_TOO_OLD,
    Prepaid,
    PrepaidError,
)

MON, TUE, FRI, SAT, SUN = 0, 1, 4, 5, 6


def test_exhaustion_without_emergency_credit():
    p = Prepaid(balance=10000, low_balance=5000)
    assert p.update(MON, 600) == 0
    assert p.charge(20, 250000) == 5000  # 20 Wh at 250 units/kWh = 5 units
    assert p.balance == 5000 and p.frac == 0
    assert p.update(MON, 601) == EV_LOW_BALANCE  # <= threshold
    assert p.update(MON, 602) == 0  # once per crossing
    p.charge(19, 250000)
    assert p.balance == 250 and p.update(MON, 603) == 0
    p.charge(1, 250000)
    assert p.balance == 0
    assert p.update(MON, 604) == EV_CREDIT_EXHAUSTED | EV_DISCONNECT
    assert p.disconnect_for_credit and not p.on_emergency and not p.deferred
    p.charge(3, 250000)  # energy metered before the relay opened still debits
    assert p.balance == -750 and not p.on_emergency  # no emergency credit configured
    assert p.update(MON, 605) == 0 and p.disconnect_for_credit


def test_emergency_credit():
    p = Prepaid(balance=1000, low_balance=0, emergency_credit=2000)
    p.charge(4, 500000)  # 2000 milli-units
    assert p.balance == -1000
    assert p.update(MON, 0) == EV_LOW_BALANCE | EV_CREDIT_EXHAUSTED | EV_EMERGENCY
    assert p.on_emergency and not p.disconnect_for_credit
    p.charge(1, 999999)  # 999.999 -> 999, frac 999
    assert (p.balance, p.frac) == (-1999, 999)
    assert p.update(MON, 1) == 0
    p.charge(0, 500)  # nothing
    p.charge(1, 1)  # frac reaches 1000: the last milli-unit
    assert (p.balance, p.frac) == (-2000, 0)
    assert p.update(MON, 2) == EV_DISCONNECT and p.disconnect_for_credit and p.on_emergency
    # a top-up that does not clear the emergency debt keeps the supply off
    assert p.topup(1, 1500)
    assert p.balance == -500 and p.update(MON, 3) == 0 and p.disconnect_for_credit
    assert p.topup(2, 600)
    assert p.balance == 100 and not p.on_emergency
    assert p.update(MON, 4) == EV_RECONNECT and not p.disconnect_for_credit
    p.charge(1, 200000)
    assert p.balance == -100  # the latches re-armed: exhausted and emergency again
    assert p.update(MON, 5) == EV_LOW_BALANCE | EV_CREDIT_EXHAUSTED | EV_EMERGENCY


def test_friendly_hours_defer_over_midnight():
    # Friday 22:00 to Saturday 06:00 as two entries, plus Sunday 23:00 to Monday 01:00
    hours = [[FRI, 1320, 1440], [SAT, 0, 360], [SUN, 1380, 1440], [MON, 0, 60]]
    p = Prepaid(balance=500, low_balance=100, friendly_hours=hours)
    assert p.in_friendly_hours(FRI, 1320) and p.in_friendly_hours(SAT, 359)
    assert not p.in_friendly_hours(FRI, 1319) and not p.in_friendly_hours(SAT, 360)
    assert not p.in_friendly_hours(SUN, 0) and p.in_friendly_hours(MON, 59)
    p.charge(2, 250000)  # -> 0 at Friday 23:00
    assert p.update(FRI, 1380) == EV_LOW_BALANCE | EV_CREDIT_EXHAUSTED
    assert p.deferred and not p.disconnect_for_credit
    assert p.update(SAT, 30) == 0 and p.update(SAT, 359) == 0 and p.deferred
    assert p.update(SAT, 360) == EV_DISCONNECT  # first update after the window
    assert p.disconnect_for_credit and not p.deferred
    # Sunday night: top up, run dry inside the window, still dry after it on Monday
    assert p.topup(5, 1000) and p.update(SUN, 1370) == EV_RECONNECT
    p.charge(4, 250000)
    assert p.update(SUN, 1439) == EV_LOW_BALANCE | EV_CREDIT_EXHAUSTED and p.deferred
    assert p.update(MON, 0) == 0 and p.update(MON, 59) == 0
    assert p.update(MON, 60) == EV_DISCONNECT
    # topped up inside the window before it ended: nothing is due any more
    q = Prepaid(balance=0, friendly_hours=hours)
    assert q.update(SAT, 100) == EV_LOW_BALANCE | EV_CREDIT_EXHAUSTED and q.deferred
    assert q.topup(1, 10000)
    assert q.update(SAT, 200) == 0 and not q.deferred
    assert q.update(SAT, 400) == 0 and not q.disconnect_for_credit


def test_topup_once_per_id():
    p = Prepaid(balance=0, low_balance=5000)
    assert p.update(MON, 0) == EV_LOW_BALANCE | EV_CREDIT_EXHAUSTED | EV_DISCONNECT
    assert p.topup(77, 50000) is True
    assert p.topup(77, 50000) is False
    assert p.topup(77, 1) is False  # the id decides, not the amount
    assert p.balance == 50000 and p.topup_status(77) == TOPUP_DUPLICATE
    assert p.update(MON, 1) == EV_RECONNECT
    p.charge(180, 250000)  # 45000 -> 5000 left
    assert p.update(MON, 2) == EV_LOW_BALANCE  # re-armed by the top-up


def test_topup_ring_refuses_too_old():
    p = Prepaid(balance=0)
    for i in range(TOPUP_RING):
        assert p.topup(100 + 2 * i, 1)  # 100, 102, ..., 162
    assert p.lowest == 100 and p.balance == TOPUP_RING
    assert p.topup_status(99) == TOPUP_TOO_OLD and not p.topup(99, 1)
    assert p.topup_status(101) == TOPUP_NEW  # between remembered ids: never applied
    assert p.topup(101, 1)  # evicts 100, the lowest
    assert p.lowest == 101
    assert p.topup_status(100) == TOPUP_TOO_OLD and not p.topup(100, 1)
    assert p.topup(1000, 1) and p.lowest == 102
    assert not p.topup(101, 1) and not p.topup(162, 1)
    assert p.balance == TOPUP_RING + 2


def test_topup_ring_evicts_lowest_not_oldest():
    # ids arriving out of order: 500 first, then 1..31; 32 would evict the oldest
    # applied (500) under a FIFO ring, and 500 could then be credited twice
    p = Prepaid()
    assert p.topup(500, 1)
    for i in range(1, TOPUP_RING):
        assert p.topup(i, 1)
    assert p.topup(32, 1) and p.lowest == 2  # 1 evicted
    assert not p.topup(500, 1) and p.topup_status(500) == TOPUP_DUPLICATE
    assert not p.topup(1, 1) and p.topup_status(1) == TOPUP_TOO_OLD
    assert p.balance == TOPUP_RING + 1


def test_topup_while_ring_not_full_takes_lower_ids():
    p = Prepaid()
    assert p.topup(50, 10) and p.topup(7, 10) and p.lowest == 7
    assert not p.topup(50, 10) and p.balance == 20


def test_topup_bad_arguments():
    p = Prepaid(balance=5)
    assert raises(PrepaidError, p.topup, 1, 0).field == "amount"
    assert raises(PrepaidError, p.topup, -1, 10).field == "topup_id"
    assert raises(PrepaidError, p.topup, 1, True).field == "amount"
    e = raises(PrepaidError, p.topup, 1, BALANCE_MAX)
    assert e.field == "amount" and "above" in str(e)
    assert p.n_ids == 0 and p.balance == 5  # refused: no effect, id not taken
    assert p.topup(1, BALANCE_MAX - 5) and p.balance == BALANCE_MAX and p.n_ids == 1


def test_price_change_mid_day_exact():
    p = Prepaid(balance=100000)
    for _ in range(100):  # 700 Wh at 1.234/kWh: 863.8 milli-units
        p.charge(7, 1234)
    assert (p.balance, p.frac) == (100000 - 863, 800)
    for _ in range(50):  # then 150 Wh at 0.995/kWh: 149.25
        p.charge(3, 995)
    # floor((863800 + 149250) / 1000) = 1013; rounding per call would give 900
    assert (p.balance, p.frac) == (100000 - 1013, 50)
    p.charge(1, 950)  # carries to exactly 1000
    assert (p.balance, p.frac) == (100000 - 1014, 0)


def test_charge_splits_large_steps():
    p = Prepaid(balance=BALANCE_MAX)
    assert p.charge(MAX_WH, MAX_PRICE) == 100000000  # 100 kWh at 1000/kWh
    assert p.balance == BALANCE_MAX - 100000000 and p.frac == 0
    p.charge(1001, 999999)  # 1000.998999 -> frac 999
    assert p.balance == BALANCE_MAX - 100000000 - 1000998 and p.frac == 999
    assert raises(PrepaidError, p.charge, MAX_WH + 1, 1).field == "wh"
    assert raises(PrepaidError, p.charge, 1, MAX_PRICE + 1).field == "price"
    assert raises(PrepaidError, p.charge, -1, 1).field == "wh"


def test_balance_stops_at_floor_and_counts():
    p = Prepaid(balance=-BALANCE_MAX + 10)
    p.charge(20, 1000)  # 20 milli-units, 10 fit
    assert p.balance == -BALANCE_MAX and p.clipped == 10
    p.charge(1, 1000)
    assert p.balance == -BALANCE_MAX and p.clipped == 11


def test_set_config_validates_and_applies():
    p = Prepaid(balance=3000, low_balance=1000)
    assert p.update(MON, 0) == 0
    assert raises(PrepaidError, p.set_config, low_balance=-1).field == "low_balance"
    assert raises(PrepaidError, p.set_config, emergency_credit=10**9 + 1).field == "emergency_credit"
    e = raises(PrepaidError, p.set_config, 2000, 0, [[1, 600, 600]])
    assert e.field == "friendly_hours[0][2]" and p.low_balance == 1000  # nothing applied
    assert raises(PrepaidError, p.set_config, friendly_hours=[[7, 0, 10]]).field == "friendly_hours[0][0]"
    assert raises(PrepaidError, p.set_config, friendly_hours=[[1, 0, 1441]]).field == "friendly_hours[0][2]"
    assert raises(PrepaidError, p.set_config, friendly_hours=[[0, 0, 1]] * 33).field == "friendly_hours"
    assert raises(PrepaidError, p.update, 7, 0).field == "time"
    assert raises(PrepaidError, p.update, 0, 1440).field == "time"
    assert raises(PrepaidError, Prepaid, BALANCE_MAX + 1).field == "balance"
    p.set_config(low_balance=5000, friendly_hours=[[TUE, 0, 1440]])
    assert p.update(MON, 1) == EV_LOW_BALANCE and p.friendly_hours() == [[TUE, 0, 1440]]
    p.set_config(low_balance=2000)  # lifted above the threshold again: re-armed
    p.set_config(friendly_hours=[])
    assert p.friendly_hours() == [] and not p.in_friendly_hours(TUE, 5)
    p.charge(4, 250000)
    assert p.update(MON, 2) == EV_LOW_BALANCE


def test_snapshot_restore_round_trip():
    p = Prepaid(balance=700, low_balance=600, emergency_credit=300, friendly_hours=[[SAT, 0, 1440]])
    p.topup(9, 100)
    p.topup(3, 100)
    p.charge(3, 333333)  # 999.999 -> balance -99, frac 999
    assert p.update(SAT, 10) == EV_LOW_BALANCE | EV_CREDIT_EXHAUSTED | EV_EMERGENCY
    p.charge(1, 202000)  # 202.999 -> 202, frac 999
    assert p.balance == -301 and p.update(SAT, 11) == 0 and p.deferred
    snap = p.snapshot()
    assert snap == [1, -301, 999, 600, 300, 0, 7 | 32, 3, 2, 9, 3, 1, SAT, 0, 1440]
    q = Prepaid.restore(snap)
    assert q.snapshot() == snap and q.friendly_hours() == [[SAT, 0, 1440]]
    assert not q.topup(9, 100) and not q.topup(3, 100)
    assert q.update(SUN, 0) == EV_DISCONNECT == p.update(SUN, 0)
    assert q.snapshot() == p.snapshot()


def test_restore_rejects_bad_snapshots():
    good = Prepaid(balance=5, friendly_hours=[[0, 0, 10]])
    good.topup(4, 1)
    good.topup(8, 1)
    snap = good.snapshot()
    assert Prepaid.restore(list(snap)).snapshot() == snap
    cases = (
        (0, 2, "snapshot"),
        (1, BALANCE_MAX + 1, "snapshot.balance"),
        (2, 1000, "snapshot.frac"),
        (3, -1, "snapshot.low_balance"),
        (6, 16, "snapshot.state"),
        (7, 8, "snapshot.lowest"),
        (8, 5, "snapshot"),
        (10, 4, "snapshot.ids[1]"),
        (13, 11, "friendly_hours[0][2]"),
    )
    for i, v, field in cases:
        bad = list(snap)
        bad[i] = v
        assert raises(PrepaidError, Prepaid.restore, bad).field == field, (i, v)
    assert raises(PrepaidError, Prepaid.restore, snap[:-1]).field == "snapshot"
    assert raises(PrepaidError, Prepaid.restore, tuple(snap)).field == "snapshot"


def test_charge_and_update_allocate_nothing():
    p = Prepaid(
        balance=BALANCE_MAX,
        low_balance=5000,
        emergency_credit=1000,
        friendly_hours=[[MON, 0, 60], [TUE, 0, 1440]],
    )
    p.charge(5, 1234)
    p.update(MON, 0)
    total = 0
    ev = 0
    compat.heap_lock()
    try:
        for i in range(200):
            total += p.charge(5, 1234)
            total += p.charge(1500, 777777)  # two pieces
            ev |= p.update(MON, i)
    finally:
        compat.heap_unlock()
    # exact: everything charged (6170 before the loop, then 200 rounds) floored once, minus the first 6
    assert total == (6170 + 200 * (6170 + 1166665500)) // 1000 - 6
    assert p.balance == BALANCE_MAX - 6 - total and ev == 0
