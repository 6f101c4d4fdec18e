"""The meter core: energy paths, rate switches, pending tariffs, events, on both runtimes.

State and persist policy: test_meter_state.py; prepaid: test_meter_prepaid.py; allocation-free steady state
with the front ends: test_meter_steady.py (split so each fits a 64 KiB heap).
"""

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises
try:
    from tests.dual.meter_support import T0, TARIFF, load, make_meter
except ImportError:
    from meter_support import T0, TARIFF, load, make_meter

from firmware import meter_events as ev
from firmware.meter import MeterError


def test_atm_counts_exact_and_reactive_quadrants():
    m = make_meter()
    load(m, fwd=3300, rp=100, p=1100)
    m.step(60000, True)
    load(m, rev=64, rn=32, p=-5)
    m.step(60000, True)
    load(m, rp=32, rn=64, p=-5)
    m.step(60000, True)
    r = m.regs
    # 3300 counts x 100 = 330000 units of 1/3200 Wh = 103.125 Wh
    assert r.imp == [103, 0, 0, 0] and r.imp_rem[0] == 400 and m.imp_mwh()[0] == 103125
    assert r.exp == [2, 0, 0, 0] and r.exp_rem[0] == 0
    assert r.q_list() == [3, 1, 3, 0] and r.q_rem == [400, 0, 0, 0]  # Q1 fwd/P>0, Q2 fwd/P<0, Q3 rev/P<0
    assert m.sec == 180 and m.pend_wh == 105 and m.steps == 3


def test_adc_integration_exact_noload_and_starting_current():
    m = make_meter("adc")
    assert m.noload_mw == 2875  # 0.0025 x 5 A x 230 V
    load(m, p_mw=1150000, q_mvar=-2000000)
    for _ in range(36):
        m.step(100000, True)  # 100 s steps are integrated in 60 s pieces
    r = m.regs
    assert r.imp[0] == 1150 and r.imp_rem[0] == 0 and r.q_list() == [0, 0, 0, 2000]
    load(m, p_mw=2874, q_mvar=2874)  # below the no-load threshold: nothing
    m.step(3600000, True)
    assert r.imp[0] == 1150 and r.imp_rem[0] == 0 and r.q_list() == [0, 0, 0, 2000]
    load(m, p_mw=4600)  # 0.004 Ib at Un, PF 1: 4.6 W registers
    m.step(3600000, True)
    assert r.imp[0] == 1154 and r.imp_rem[0] == 600 * 3600
    load(m, p_mw=-333333, q_mvar=10000)
    for _ in range(3):
        m.step(3600, True)
    # 333333 mW x 10.8 s = 3599996.4 mWs: 3599996 registered, 0.4 mWs (400 uWs) carried
    assert r.exp[0] == 0 and r.exp_rem[0] == 3599996 and m.aint.rem[1] == 400
    assert r.q_rem[1] == 3 * 36000


def test_rate_switches_exactly_at_boundaries():
    m = make_meter()
    m.set_tariff(TARIFF)
    assert m.rate == 2 and m.next_change_sec == 3600 and m.events.code_list() == [12]
    load(m, fwd=32, p=100)  # 1 Wh per step
    for _ in range(59):
        m.step(60000, True)
    assert m.rate == 2 and m.sec == 3540
    m.step(60000, True)  # ends exactly at 08:00: counted at T2, then T1 in force
    assert m.rate == 1 and m.price == 300 and m.regs.imp[:2] == [0, 60]
    assert m.next_change_sec == 3600 + 14 * 3600 and m.persist_request
    m.step(60000, True)
    assert m.regs.imp[:2] == [1, 60]
    # a step that crosses a boundary (a board's poll) goes to the rate at its start
    m.step((m.next_change_sec - m.sec) * 1000 + 30000, True)
    assert m.rate == 2 and m.regs.imp[:2] == [2, 60]
    # the weekend: Saturday 00:00 local switches to T4
    sat = (5 * 86400 - 7 * 3600) - m.sec
    m.step(sat * 1000 - 30000, True)
    assert m.rate == 2 and m.next_change_sec == 5 * 86400 - 7 * 3600
    m.step(30000, True)
    assert m.rate == 4 and m.price == 50


def test_pending_tariff_activates_at_its_instant():
    m = make_meter()
    m.set_tariff(TARIFF)
    new = dict(TARIFF)
    new[0] = 8
    new[1] = T0 + 1800
    new[2] = [400, 300, 200, 100]
    new[3] = [[[0, 3]]]
    new[4] = [[0, 0, 0, 0, 0, 0, 0]]
    m.set_tariff(new)
    assert m.tariff_id() == 7 and m.pending[0] == 8 and m.next_change_sec == 1800
    load(m, fwd=32, p=100)
    m.step(1799000, True)
    assert m.tariff_id() == 7 and m.rate == 2
    m.step(1000, True)
    assert m.tariff_id() == 8 and m.pending is None and m.rate == 3 and m.price == 200
    assert m.events.code_list() == [12, 12] and m.events.get(1) == (12, 1800, 8)
    assert m.regs.imp[:3] == [0, 2, 0] and m.next_change_sec == 17 * 3600  # next local midnight
    raises(MeterError, m.set_tariff, {0: 9, 1: 0, 2: [1] * 5, 3: [[[0, 5]]], 4: [[0] * 7]})
    raises(ValueError, m.set_tariff, {0: 9})


def test_bad_reads_counted_and_event_rate_limited():
    m = make_meter()
    for _ in range(120):
        m.step(60000, False)
    assert m.bad_reads == 120 and m.events.code_list() == [18, 18]
    assert m.events.get(1) == (18, 3600, ev.FAULT_BAD_READ)
    m.fault(ev.FAULT_CALIBRATION)
    load(m, fwd=3200, p=1000)
    m.step(60000, True)
    assert not m.metering and m.regs.imp[0] == 0 and m.events.get(2)[2] == 2
