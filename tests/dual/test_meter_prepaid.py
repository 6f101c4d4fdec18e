"""The meter with firmware.prepaid: charging, credit events and relay, state, no allocation."""

import gc

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises
try:
    from tests.dual.meter_support import load, make_meter
except ImportError:
    from meter_support import load, make_meter

from firmware import compat, meter_state
from firmware.prepaid import Prepaid


def test_prepaid_charges_import_and_opens_the_relay():
    m = make_meter(prepaid={"enabled": True, "low_balance": 1000})
    m.enable_prepaid(Prepaid(2500, 1000))
    m.price = 200  # the rate's price, set directly: the calendar would not fit beside prepaid in 64 KiB
    load(m, fwd=3200, p=1000)  # 100 Wh per step
    m.step(60000, True)
    assert m.prepaid.balance == 2480 and m.relay_closed
    for _ in range(7):
        m.step(60000, True)
    assert m.prepaid.balance == 2340
    for _ in range(67):
        m.step(60000, True)
    assert m.prepaid.balance == 2500 - 75 * 20 and m.events.code_list() == [8]
    assert m.events.get(0)[1] == 75 * 60  # raised at the minute tick that found balance <= 1000
    for _ in range(50):
        m.step(60000, True)
    assert m.prepaid.balance <= 0 and not m.relay_closed and m.relay_reason == 1
    assert m.events.code_list() == [8, 9, 6] and m.events.get(2)[2] == 1
    m.prepaid.topup(1, 10000)
    m.step(60000, True)
    assert m.relay_closed and m.events.code_list()[-1] == 7


def test_prepaid_state_round_trip():
    m = make_meter(prepaid={"enabled": True})
    m.enable_prepaid(Prepaid(9000, 1000, 500))
    m.prepaid.charge(100, 200)
    m.prepaid.topup(77, 5)
    state = meter_state.to_state(m, True)
    snap = m.prepaid.snapshot()
    m = None
    gc.collect()
    assert state["clean"] is True and state["pp"] == snap and snap[1] == 8985
    m = make_meter()
    meter_state.apply_state(m, state)
    assert m.prepaid.snapshot()[:6] == snap[:6] and m.prepaid.emergency_credit == 500
    assert not m.prepaid.topup(77, 5)  # the top-up id survived
    state["pp"] = [99]
    raises(meter_state.StateError, meter_state.apply_state, m, state)


def test_prepaid_glue_allocates_nothing():
    m = make_meter(prepaid={"enabled": True})
    m.enable_prepaid(Prepaid(10**8))
    m.price = 200
    load(m, fwd=35, rp=20, p=3984)
    m.step(1000, True)
    gc.collect()
    compat.heap_lock()
    try:
        for _ in range(150):  # 2.5 min at 1 s: charges every step, minute ticks included
            m.step(1000, True)
    finally:
        compat.heap_unlock()
    assert m.regs.imp[0] * 3200 + m.regs.imp_rem[0] == 151 * 35 * 100
    assert m.prepaid.balance == 10**8 - (151 * 35 * 100 // 3200) * 200 // 1000
