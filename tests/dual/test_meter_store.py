"""The meter's state through the two-slot store and CBOR, on CPython and MicroPython (64 KiB heap).

Bad states are refused in test_meter_state.py (kept apart: this module is at the heap's edge).
"""

import gc
import os

try:
    from tests.dual.meter_support import T0, load, make_meter
except ImportError:
    from meter_support import T0, load, make_meter

from firmware import meter_state, persist

L_SAG = 1  # firmware.meter_events.L_SAG


def _tmp(tag):
    d = "/tmp/fw_meter_state_%s_%d" % (tag, id(tag) & 0xFFFF)
    try:
        os.mkdir(d)
    except OSError:
        pass
    return d


def test_state_round_trip_through_the_slot_store():
    m = make_meter()
    load(m, fwd=3333, rp=7, p=1000, u=20000)
    m.step(61500, True)
    m.set_relay(False, 0)
    m.boot_count = 3
    m.seq = 41
    d = _tmp("rt")
    store = persist.SlotStore(d, meter_state.STATE_NAME)
    try:
        gc.collect()
        meter_state.PersistPolicy(50, 900).save(m, store)
        assert not m.persist_request and m.pend_wh == 0
        snap = m.regs.snapshot()
        events = m.events.to_list(m.epoch)
        m = None
        gc.collect()
        state, err = meter_state.read(persist.SlotStore(d, meter_state.STATE_NAME))
        assert err is None and meter_state.clock_of(state) == (T0 + 61, 500) and state["clean"] is False
        m = make_meter()
        m.set_clock(T0 + 61, 500)
        meter_state.apply_state(m, state)
        assert m.regs.snapshot() == snap and m.tariff is None and m.rate == 1
        assert not m.relay_closed and m.boot_count == 3 and m.seq == 41
        assert m.events.code_list() == [14, 6] and m.events.to_list(m.epoch) == events  # same unix times
        assert m.events.get(0) == (14, -61, 20000) and m.detector.latch == L_SAG
        assert meter_state.clock_of(None) == (None, 0)
        m = state = None
        gc.collect()
        store.save(b"\xff\x00")  # a valid slot whose payload is not a state: reported, not raised
        state, err = meter_state.read(persist.SlotStore(d, meter_state.STATE_NAME))
        assert state is None and "CBOR" in err
    finally:
        store.clear()
        os.rmdir(d)
