"""Persisted meter state and the persist policy, on CPython and MicroPython (64 KiB heap).

Through the slot store (persist + CBOR): test_meter_store.py; the prepaid
part: test_meter_prepaid.py (split so each module fits a 64 KiB heap).
"""

import gc

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises
try:
    from tests.dual.meter_support import T0, TARIFF, load, make_meter
except ImportError:
    from meter_support import T0, TARIFF, load, make_meter

from firmware import meter_events as ev
from firmware import meter_state


def test_persist_policy_bounds_unpersisted_energy():
    m = make_meter(persist_wh=50, persist_interval=900)
    pol = meter_state.PersistPolicy(50, 900)
    worst = 0
    saved = 0  # units (1/3200 Wh) of import at the last save
    loads = (0, 10, 3200, 40, 900, 0, 1700)  # counts per 10 s step (32 counts = 1 Wh)
    for k in range(600):
        c = loads[k % 7]
        load(m, fwd=c, p=c)
        m.step(10000, True)
        unsaved = (m.regs.imp[0] * 3200 + m.regs.imp_rem[0] - saved) // 3200
        assert unsaved <= 50 + c // 32 + 1, (k, unsaved)  # persist_wh + this step's energy
        worst = max(worst, unsaved)
        if pol.due(m):
            pol.saved(m)
            saved = m.regs.imp[0] * 3200 + m.regs.imp_rem[0]
        assert m.sec - pol.last_sec < 900 and not m.persist_request
    assert worst >= 50 and pol.saves > 20
    load(m)
    m.step(1000, True)
    assert pol.ms_to_deadline(m) == (pol.last_sec + 900 - m.sec) * 1000 - m.ms
    m.raise_event(ev.EV_POWER_UP)
    assert m.persist_request and pol.due(m)


def test_interval_deadline_without_energy():
    m = make_meter(persist_interval=900)
    pol = meter_state.PersistPolicy(50, 900)
    load(m)
    for _ in range(14):
        m.step(60000, True)
        assert not pol.due(m)
    assert pol.ms_to_deadline(m) == 60000
    m.step(60000, True)
    assert pol.due(m) and pol.ms_to_deadline(m) == 0


def test_tariff_state_round_trip_in_memory():
    m = make_meter()
    m.set_tariff(TARIFF)
    pend = dict(TARIFF)
    pend[0] = 8
    pend[1] = T0 + 86400
    m.set_tariff(pend)
    load(m, fwd=3200, p=1000)
    m.step(60000, True)
    state = meter_state.to_state(m)
    m = None
    gc.collect()
    m = make_meter()
    meter_state.apply_state(m, state)
    assert m.tariff[0] == 7 and m.pending[0] == 8 and m.rate == 2 and m.price == 200
    assert m.next_change_sec == 3600  # 08:00 local, before the pending tariff's activation
    assert m.regs.imp == [0, 100, 0, 0] and m.events.code_list() == [12]
    state["cur"] = {0: 1}
    raises(meter_state.StateError, meter_state.apply_state, m, state)
    state["cur"] = None
    state["ai"] = [1000, 0]
    raises(meter_state.StateError, meter_state.apply_state, m, state)
    state["ai"] = [0, 0]
    state["regs"] = state["regs"][:-1]
    raises(meter_state.StateError, meter_state.apply_state, m, state)
