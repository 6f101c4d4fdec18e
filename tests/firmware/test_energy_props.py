"""Property tests (hypothesis) for firmware.energy: exact registers, no drift."""

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.compat import HOT_INT_LIMIT
from firmware.energy import MAX_DT_MS, MAX_POWER_MW, Integrator, Registers, quadrant

UNITS = st.sampled_from([3200, 1000, 6400, 3_600_000])
RATES = 4


def _total(wh, rem, per):
    return wh * per + rem


@settings(max_examples=300, deadline=None)
@given(UNITS, st.lists(st.tuples(st.integers(-20_000_000, 20_000_000), st.integers(1, RATES)), max_size=200))
def test_registers_equal_exact_sums(per, steps):
    r = Registers(RATES, per)
    imp = [0] * RATES
    exp = [0] * RATES
    for units, rate in steps:
        r.add_active(units, rate)
        if units > 0:
            imp[rate - 1] += units
        else:
            exp[rate - 1] -= units
    for i in range(RATES):
        assert _total(r.imp[i], r.imp_rem[i], per) == imp[i]
        assert _total(r.exp[i], r.exp_rem[i], per) == exp[i]
        assert 0 <= r.imp_rem[i] < per and 0 <= r.exp_rem[i] < per
        assert r.imp_mwh(i + 1) == imp[i] * 1000 // per
        assert r.exp_mwh(i + 1) == exp[i] * 1000 // per


@settings(max_examples=300, deadline=None)
@given(UNITS, st.integers(0, 10**12), st.lists(st.integers(0, 10**12), max_size=50), st.integers(1, 4))
def test_splitting_matches_adding_at_once(per, energy, cuts, quad):
    # cut `energy` into pieces at arbitrary points; the register ends up the same
    points = sorted({c % (energy + 1) for c in cuts} | {0, energy})
    pieces = [b - a for a, b in zip(points, points[1:], strict=False)]
    whole = Registers(1, per)
    split = Registers(1, per)
    left = energy
    while left:  # one "add" of the whole, in maximal increments
        step = min(left, whole.max_units)
        whole.add_reactive(step, quad)
        whole.add_active(step, 1)
        left -= step
    for p in pieces:
        while p:
            step = min(p, split.max_units)
            split.add_reactive(step, quad)
            split.add_active(step, 1)
            p -= step
    assert split.snapshot() == whole.snapshot()
    assert split.q_varh(quad) == energy // per and split.imp_wh(1) == energy // per


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-MAX_POWER_MW, MAX_POWER_MW), st.integers(0, MAX_DT_MS)), max_size=200))
def test_integrator_sum_is_exact(steps):
    it = Integrator()
    pos = neg = 0  # returned mWs
    exact_pos = exact_neg = 0  # uWs
    for p, dt in steps:
        e = it.energy_units(p, dt)
        assert abs(e) < HOT_INT_LIMIT
        assert (e >= 0) if p >= 0 else (e <= 0)
        if p >= 0:
            pos += e
            exact_pos += p * dt
        else:
            neg += e
            exact_neg += p * dt
    assert pos * 1000 + it.rem[0] == exact_pos
    assert neg * 1000 - it.rem[1] == exact_neg
    assert 0 <= it.rem[0] < 1000 and 0 <= it.rem[1] < 1000


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-MAX_POWER_MW, MAX_POWER_MW),
            st.integers(-MAX_POWER_MW, MAX_POWER_MW),
            st.integers(1, MAX_DT_MS),
            st.integers(1, RATES),
        ),
        max_size=100,
    )
)
def test_integrator_into_registers_four_quadrant(steps):
    per = 3_600_000
    r = Registers(RATES, per)
    it = Integrator(6)
    imp = [0] * RATES
    exp = [0] * RATES
    q = [0] * 4
    for p, qv, dt, rate in steps:
        r.add_active(it.energy_units(p, dt), rate)
        k = quadrant(p, qv)
        r.add_reactive(abs(it.energy_units(qv, dt, 1 + k)), k)
        if p >= 0:
            imp[rate - 1] += p * dt
        else:
            exp[rate - 1] -= p * dt
        q[k - 1] += abs(qv) * dt
    # registers + integrator remainders account for every uWs; imports share slot 0
    assert sum(_total(r.imp[i], r.imp_rem[i], per) for i in range(RATES)) * 1000 + it.rem[0] == sum(imp)
    assert sum(_total(r.exp[i], r.exp_rem[i], per) for i in range(RATES)) * 1000 + it.rem[1] == sum(exp)
    for k in range(4):
        assert _total(r.q[k], r.q_rem[k], per) * 1000 + it.rem[2 + k] == q[k]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-(10**7), 10**7), st.integers(1, RATES)), max_size=50),
    st.sampled_from([2, 4, 8]),
    st.sampled_from([3200, 6400]),
)
def test_snapshot_restore_preserves_totals(steps, n_new, per_new):
    r = Registers(2, 3200)
    for units, rate in steps:
        r.add_active(units, 1 + rate % 2)
    back = Registers.restore(r.snapshot(), n_rates=n_new, units_per_wh=per_new)
    for i in range(2):
        assert back.imp[i] == r.imp[i] and back.exp[i] == r.exp[i]
        assert back.imp_rem[i] == r.imp_rem[i] * per_new // 3200  # floor: loses < 1 new unit
        assert back.exp_rem[i] == r.exp_rem[i] * per_new // 3200
        assert r.imp_mwh(i + 1) - 1 <= back.imp_mwh(i + 1) <= r.imp_mwh(i + 1)
    assert back.imp[2:] == [0] * (n_new - 2)
