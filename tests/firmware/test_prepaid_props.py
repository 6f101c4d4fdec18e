"""Property tests (hypothesis) for firmware.prepaid: exact debit, exactly-once top-ups, restore."""

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.prepaid import (
    BALANCE_MAX,
    EV_DISCONNECT,
    EV_RECONNECT,
    MAX_PRICE,
    MAX_WH,
    TOPUP_RING,
    Prepaid,
    PrepaidError,
)

HOT = 1 << 30
PRICES = st.one_of(st.integers(0, 2000), st.integers(0, MAX_PRICE), st.just(MAX_PRICE))
CHARGES = st.lists(st.tuples(st.integers(0, 3000), PRICES), max_size=150)
BIG_CHARGES = st.lists(st.tuples(st.integers(0, MAX_WH), PRICES), max_size=40)


def _check_state(p):
    assert 0 <= p.frac < 1000
    assert -HOT < p.balance < HOT and 0 <= p.clipped < HOT


@settings(max_examples=300, deadline=None)
@given(CHARGES)
def test_total_debit_is_floor_of_exact_cost(charges):
    p = Prepaid(balance=BALANCE_MAX)
    cost = 0  # milli-milli-units, exact
    debited = 0
    for wh, price in charges:
        debited += p.charge(wh, price)
        cost += wh * price
        assert debited == cost // 1000 and p.frac == cost % 1000
        _check_state(p)
    assert p.balance == BALANCE_MAX - cost // 1000 and p.clipped == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(-BALANCE_MAX, BALANCE_MAX), BIG_CHARGES)
def test_balance_plus_clipped_accounts_for_every_debit(start, charges):
    p = Prepaid(balance=start)
    cost = 0
    for wh, price in charges:
        p.charge(wh, price)
        cost += wh * price
        _check_state(p)
        assert p.balance == max(-BALANCE_MAX, start - cost // 1000)
        if p.clipped < BALANCE_MAX:  # not saturated: nothing lost from the account
            assert p.balance - p.clipped == start - cost // 1000


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=30, unique=True),
    st.data(),
)
def test_repeated_topups_credit_each_id_once(pool, data):
    # at most 32 distinct ids: every one is credited exactly once, in any order, however often repeated
    amount = {i: 1000 + 7 * i for i in pool}
    order = data.draw(st.lists(st.sampled_from(pool), min_size=len(pool), max_size=120))
    order = pool + order if data.draw(st.booleans()) else order + pool
    p = Prepaid(balance=0)
    seen = set()
    for i in order:
        assert p.topup(i, amount[i]) == (i not in seen)
        seen.add(i)
        p.charge(1, 1)  # interleaved debits do not disturb the ids
    assert p.balance == sum(amount.values()) - len(order) // 1000 and p.frac == len(order) % 1000


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=40, max_size=200))
def test_topup_ring_against_model(ids):
    # model: an id is refused iff already applied, or TOPUP_RING applied ids are above it
    p = Prepaid(balance=0)
    applied = set()
    for i in ids:
        new = i not in applied and sum(1 for a in applied if a > i) < TOPUP_RING
        assert p.topup(i, 1) == new, (i, sorted(applied))
        if new:
            applied.add(i)
        assert p.balance == len(applied)
        assert p.lowest == (sorted(applied)[-TOPUP_RING:][0] if applied else 0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=TOPUP_RING + 2, max_size=200))
def test_increasing_ids_are_never_refused(gaps):
    # a head-end that allocates ids increasing gets every top-up applied once, and repeats refused
    p = Prepaid()
    tid = 0
    for g in gaps:
        tid += g
        assert p.topup(tid, 1) and not p.topup(tid, 1)
    assert p.balance == len(gaps)


HOURS = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 1439), st.integers(1, 1440)).map(
        lambda t: [t[0], min(t[1], t[2] - 1), t[2]]
    ),
    max_size=6,
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), st.integers(0, 2000), st.integers(0, 300000)),
        st.tuples(st.just("topup"), st.integers(0, 50), st.integers(1, 400000)),
        st.tuples(st.just("topups"), st.lists(st.integers(0, 80), min_size=10, max_size=40)),
        st.tuples(st.just("update"), st.integers(0, 6), st.integers(0, 1439)),
        st.tuples(st.just("config"), st.integers(0, 200000), st.integers(0, 100000), HOURS),
        st.tuples(st.just("restore")),
    ),
    max_size=80,
)


def _apply(p, op):
    if op[0] == "charge":
        return p.charge(op[1], op[2])
    if op[0] == "topup":
        return p.topup(op[1], op[2])
    if op[0] == "update":
        return p.update(op[1], op[2])
    if op[0] == "topups":  # enough ids to fill the ring and evict
        return [p.topup(i, 10) for i in op[1]]
    p.set_config(op[1], op[2], op[3])
    return None


@settings(max_examples=200, deadline=None)
@given(st.integers(-50000, 500000), st.integers(0, 20000), st.integers(0, 20000), HOURS, OPS)
def test_snapshot_restore_changes_nothing(balance, low, emergency, hours, ops):
    a = Prepaid(balance, low, emergency, hours)
    b = Prepaid(balance, low, emergency, hours)
    for op in ops:
        if op[0] == "restore":
            b = Prepaid.restore(b.snapshot())
            assert b.snapshot() == a.snapshot()
            continue
        got_a = _apply(a, op)
        got_b = _apply(b, op)
        assert got_a == got_b, op
        if op[0] == "update":  # invariants of the relay decision
            friendly = a.in_friendly_hours(op[1], op[2])
            if got_a & EV_DISCONNECT:
                assert not friendly and a.balance <= -a.emergency_credit
            if got_a & EV_RECONNECT:
                assert a.balance > 0
            assert got_a & (EV_DISCONNECT | EV_RECONNECT) != EV_DISCONNECT | EV_RECONNECT
            if a.disconnect_for_credit:
                assert a.balance <= 0
            elif not friendly:
                assert a.balance > -a.emergency_credit
            due = a.balance <= -a.emergency_credit
            assert a.deferred == (friendly and not a.disconnect_for_credit and due)
        _check_state(a)
    assert Prepaid.restore(a.snapshot()).snapshot() == a.snapshot() == b.snapshot()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31), min_size=10, max_size=40))
def test_restore_never_accepts_garbage_silently(snap):
    # a random list either restores to something that snapshots back identically, or raises PrepaidError
    snap[0] = 1
    try:
        p = Prepaid.restore(snap)
    except PrepaidError:
        return
    assert p.snapshot() == snap
