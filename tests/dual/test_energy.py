"""Energy registers and the power integrator, on CPython and MicroPython alike."""

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises

from firmware import compat
from firmware.energy import (
    MAX_DT_MS,
    MAX_POWER_MW,
    EnergyError,
    Integrator,
    Registers,
    accumulate,
    quadrant,
)

MC = 3200
MWS_PER_WH = 3600000


def test_accumulate_carries_remainder():
    wh = [0, 7]
    rem = [0, 3]
    accumulate(wh, rem, 1, 3196, 3200)
    assert (wh, rem) == ([0, 7], [0, 3199])
    accumulate(wh, rem, 1, 1, 3200)
    assert (wh, rem) == ([0, 8], [0, 0])
    accumulate(wh, rem, 0, 3200 * 5 + 17, 3200)
    assert (wh, rem) == ([5, 8], [17, 0])


def test_quadrants():
    assert quadrant(0, 0) == 1
    assert quadrant(5, 3) == 1
    assert quadrant(-5, 3) == 2
    assert quadrant(-5, -3) == 3
    assert quadrant(5, -3) == 4
    assert quadrant(0, -1) == 4
    assert quadrant(-1, 0) == 2


def test_atm90e26_counts_exact():
    # 1 LSB = 0.1 pulse: units = count * 100 in 1/MC Wh; 32 counts = 1 Wh at MC 3200
    r = Registers(4, MC)
    for _ in range(100):
        r.add_active(33 * 100, 2)  # 1.03125 Wh each
    assert r.imp_wh(2) == 103
    assert r.imp_rem[1] == 100 * 3300 - 103 * 3200
    assert r.imp_mwh(2) == 103125
    assert r.imp_wh(1) == 0 and r.exp_wh(2) == 0
    r.add_active(-31 * 100, 4)
    assert r.exp_wh(4) == 0 and r.exp_mwh(4) == 968  # 0.96875 Wh floored
    r.add_active(-100, 4)
    assert r.exp_wh(4) == 1 and r.exp_rem[3] == 0
    assert r.imp_list() == [0, 103, 0, 0] and r.exp_list() == [0, 0, 0, 1]


def test_reactive_quadrants():
    r = Registers(1, MWS_PER_WH)
    r.add_reactive(MWS_PER_WH * 2 + 5, quadrant(1, 1))
    r.add_reactive(MWS_PER_WH - 5, 1)
    r.add_reactive(1800000, quadrant(-1, -1))
    assert r.q_list() == [3, 0, 0, 0]
    assert r.q_varh(3) == 0 and r.q_mvarh(3) == 500
    r.add_reactive(0, 4)
    assert r.q_varh(4) == 0


def test_bad_arguments_raise():
    r = Registers(2, MC)
    raises(EnergyError, r.add_active, 100, 0)
    raises(EnergyError, r.add_active, 100, 3)
    raises(EnergyError, r.add_active, r.max_units + 1, 1)
    raises(EnergyError, r.add_active, -r.max_units - 1, 1)
    raises(EnergyError, r.add_reactive, -1, 1)
    raises(EnergyError, r.add_reactive, 1, 5)
    raises(EnergyError, r.imp_wh, 0)
    raises(EnergyError, Registers, 0, MC)
    raises(EnergyError, Registers, 2, 0)
    assert r.imp_list() == [0, 0]


def test_max_increment_stays_small():
    r = Registers(1, MWS_PER_WH)
    r.add_active(MWS_PER_WH - 1, 1)
    r.add_active(r.max_units, 1)  # rem + units reaches 2**30 - 2
    total = MWS_PER_WH - 1 + r.max_units
    assert r.imp_wh(1) * MWS_PER_WH + r.imp_rem[0] == total
    assert r.max_units + MWS_PER_WH < compat.HOT_INT_LIMIT


def test_snapshot_restore_roundtrip():
    r = Registers(3, MC)
    r.add_active(12345, 1)
    r.add_active(-777, 3)
    r.add_reactive(9999, 2)
    s = r.snapshot()
    assert len(s) == 4 + 4 * 3 + 8
    r2 = Registers.restore(s)
    assert r2.snapshot() == s
    r2.add_active(1, 1)
    assert r2.snapshot() != s and r.snapshot() == s


def test_restore_adapts_and_refuses():
    r = Registers(2, MC)
    r.add_active(3200 * 7 + 1600, 2)
    r.add_reactive(3200 + 320, 4)
    grown = Registers.restore(r.snapshot(), n_rates=4, units_per_wh=6400)
    assert grown.imp_list() == [0, 7, 0, 0]
    assert grown.imp_rem[1] == 3200 and grown.imp_mwh(2) == 7500
    assert grown.q_mvarh(4) == 1100 and grown.units_per_varh == MC
    raises(EnergyError, Registers.restore, r.snapshot(), 1)
    bad = r.snapshot()
    bad[4 + 2 + 1] = MC  # imp_rem[1] not below units_per_wh
    raises(EnergyError, Registers.restore, bad)
    bad = r.snapshot()
    bad[5] = -1
    raises(EnergyError, Registers.restore, bad)
    raises(EnergyError, Registers.restore, r.snapshot()[:-1])
    bad = r.snapshot()
    bad[0] = 99
    raises(EnergyError, Registers.restore, bad)


def test_integrator_exact_and_split():
    it = Integrator()
    # 1 mW for 1 ms = 1 uWs: 999 steps give 0 mWs, the 1000th gives 1
    got = 0
    for _ in range(999):
        got += it.energy_units(1, 1)
    assert got == 0 and it.rem[0] == 999
    assert it.energy_units(1, 1) == 1 and it.rem[0] == 0
    # the largest step: 16_777_215 mW for 60 s = 1_006_632_900 mWs, below 2**30
    big = it.energy_units(MAX_POWER_MW, MAX_DT_MS)
    assert big == MAX_POWER_MW * MAX_DT_MS // 1000
    assert big < compat.HOT_INT_LIMIT
    assert it.energy_units(-MAX_POWER_MW, MAX_DT_MS) == -big
    # export keeps its own remainder: -1.5 mWs then -0.5 mWs = -2 mWs
    it2 = Integrator()
    assert it2.energy_units(-1500, 1) == -1
    assert it2.energy_units(7, 1) == 0 and it2.rem == [7, 500]
    assert it2.energy_units(-500, 1) == -1 and it2.rem == [7, 0]
    assert it2.energy_units(250, 4, 0) == 1 and it2.rem == [7, 0]
    raises(EnergyError, it2.energy_units, MAX_POWER_MW + 1, 1)
    raises(EnergyError, it2.energy_units, 1, MAX_DT_MS + 1)
    raises(EnergyError, it2.energy_units, 1, -1)


def test_integrated_day_is_exact():
    # 2300.7 W for a day in 1 s steps + a 0.3 s step: mWs exact, Wh carried
    it = Integrator()
    r = Registers(1, MWS_PER_WH)
    for _ in range(86400):
        r.add_active(it.energy_units(2300700, 1000), 1)
    r.add_active(it.energy_units(2300700, 300), 1)
    total_uws = 2300700 * (86400 * 1000 + 300)
    assert r.imp_wh(1) * MWS_PER_WH * 1000 + r.imp_rem[0] * 1000 + it.rem[0] == total_uws
    assert r.imp_wh(1) == total_uws // (MWS_PER_WH * 1000)


def _hot_step(r, it, p, q, dt, rate):
    e = it.energy_units(p, dt)
    r.add_active(e, rate)
    v = it.energy_units(q, dt, quadrant(p, q) + 1)
    r.add_reactive(v if v >= 0 else -v, quadrant(p, q))


def test_hot_path_allocates_nothing():
    r = Registers(4, MWS_PER_WH)
    it = Integrator(6)  # slots 0, 1: active by sign; 2..5: reactive per quadrant
    _hot_step(r, it, 1, 1, 1, 1)  # warm up
    compat.heap_lock()
    try:
        for i in range(200):
            _hot_step(r, it, 16000000 - i * 160000, 3000000 - i * 30000, 1000, 1 + (i & 3))
    finally:
        compat.heap_unlock()
    assert r.exp_wh(4) > 0 and r.imp_wh(1) > 0 and r.q_varh(3) > 0
    snap = r.snapshot()
    for v in snap:
        assert v < compat.HOT_INT_LIMIT
