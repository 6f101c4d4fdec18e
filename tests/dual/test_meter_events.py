"""Event ring and measurement events with hysteresis, on CPython and MicroPython alike."""

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises

from firmware import compat
from firmware import meter_events as ev
from protocol import board_config as config

KEY = "00" * 32


def _det(has_neutral=True, **th):
    cfg = config.validate({"meter_id": "m", "key": KEY, "thresholds": th})
    return ev.Detector(cfg, has_neutral, 3)


def _out(u=23000, i=5000, p=1150, i_n=None):
    out = [0] * 14
    out[4] = u
    out[5] = i
    out[6] = p
    out[10] = i if i_n is None else i_n
    return out


def test_ring_keeps_newest_and_counts_drops():
    r = ev.EventRing(3)
    assert r.pop() is None and len(r) == 0
    for k in range(5):
        r.push(10 + k, k * 60, k)
    assert len(r) == 3 and r.dropped == 2
    assert r.code_list() == [12, 13, 14]
    assert r.get(0) == (12, 120, 2)
    raises(IndexError, r.get, 3)
    flat = r.to_list(1000)
    assert flat == [12, 1120, 2, 13, 1180, 3, 14, 1240, 4]
    r2 = ev.EventRing(3)
    r2.load_list(flat, 1100, 2)
    assert r2.get(0) == (12, 20, 2) and r2.dropped == 2 and len(r2) == 3
    assert r2.pop() == (12, 20, 2) and r2.code_list() == [13, 14]
    r2.shift(-20)
    assert r2.get(0) == (13, 60, 3)
    raises(ValueError, r2.load_list, [1, 2], 0)
    raises(ValueError, ev.EventRing, 0)


def test_sag_and_swell_with_hysteresis():
    d = _det()
    r = ev.EventRing(8)
    assert d.check(_out(u=23000), 0, r) == 0
    # sag below 90 % of 230 V = 207.00 V; leaves only at 92 % = 211.60 V
    assert d.check(_out(u=20699), 1, r) == 1 and r.get(0) == (ev.EV_SAG, 1, 20699)
    assert d.check(_out(u=20500), 2, r) == 0  # still latched
    assert d.check(_out(u=21000), 3, r) == 0  # above 207 V but inside the hysteresis band
    assert d.check(_out(u=20600), 4, r) == 0  # not raised again: never left
    assert d.check(_out(u=21160), 5, r) == 0 and not d.latch & ev.L_SAG
    assert d.check(_out(u=20600), 6, r) == 1 and r.code_list() == [14, 14]
    # swell above 110 % = 253.00 V; leaves at 108 % = 248.40 V
    assert d.check(_out(u=25300), 7, r) == 0
    assert d.check(_out(u=25301), 8, r) == 1 and r.code_list()[-1] == ev.EV_SWELL
    assert d.check(_out(u=24900), 9, r) == 0 and d.latch & ev.L_SWELL
    assert d.check(_out(u=24840), 10, r) == 0 and not d.latch & ev.L_SWELL


def test_overload_mismatch_reverse():
    d = _det(overload_pct=50, mismatch_pct=10, mismatch_min_ma=200)
    r = ev.EventRing(8)
    # overload above 50 % of Imax 60 A = 30 A; leaves at 95 % of that = 28.5 A
    assert d.check(_out(i=30001, p=6900), 0, r) == 1 and r.get(0) == (ev.EV_OVERLOAD, 0, 30001)
    assert d.check(_out(i=29000, p=6600), 1, r) == 0 and d.latch & ev.L_OVERLOAD
    assert d.check(_out(i=28500, p=6500), 2, r) == 0 and not d.latch & ev.L_OVERLOAD
    # mismatch: |IL - IN| > max(10 % of IL, 200 mA); leaves at half that
    assert d.check(_out(i=1000, i_n=1150), 3, r) == 0  # 150 mA < 200 mA floor
    assert d.check(_out(i=5000, i_n=4400), 4, r) == 1 and r.get(1) == (ev.EV_MISMATCH, 4, 4400)
    assert d.check(_out(i=5000, i_n=4700), 5, r) == 0 and d.latch & ev.L_MISMATCH
    assert d.check(_out(i=5000, i_n=4800), 6, r) == 0 and not d.latch & ev.L_MISMATCH
    # reverse flow below -3 W; leaves above +3 W, not at no load
    assert d.check(_out(p=-3), 7, r) == 0
    assert d.check(_out(p=-1150), 8, r) == 1 and r.get(2) == (ev.EV_REVERSE, 8, -1150)
    assert d.check(_out(p=0), 9, r) == 0 and d.latch & ev.L_REVERSE
    assert d.check(_out(p=4), 10, r) == 0 and not d.latch & ev.L_REVERSE
    assert r.code_list() == [16, 17, 5]


def test_no_neutral_channel_means_no_mismatch():
    d = _det(has_neutral=False)
    r = ev.EventRing(4)
    assert d.check(_out(i=5000, i_n=0), 0, r) == 0 and len(r) == 0


def test_check_and_push_allocate_nothing():
    d = _det()
    r = ev.EventRing(4)
    a = _out(u=20000, i=61000, p=-5000, i_n=0)
    b = _out()
    d.check(a, 0, r)
    d.check(b, 1, r)
    compat.heap_lock()
    try:
        for k in range(20):
            d.check(a, k, r)
            d.check(b, k, r)
    finally:
        compat.heap_unlock()
    assert r.count == 4 and r.dropped > 30
