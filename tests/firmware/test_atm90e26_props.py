"""Property tests (CPython, hypothesis): ATM90E26 driver polling the register-level model."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.atm90e26_model import ATM90E26Model
from firmware import atm90e26_reg as reg
from firmware.atm90e26 import ATM90E26, OUT_AN, OUT_AP, OUT_IRMS, OUT_RN, OUT_RP, OUT_URMS, POLL_SIZE
from tests.dual.test_atm90e26 import IB, UN, calibrate_meter

MC = 3200
WS_PER_LSB = 3.6e6 / (MC * reg.LSB_PER_PULSE)  # 112.5 Ws
P_START_W = reg.DEF_PSTARTTH / 1000  # model: 1 mW per threshold LSB
Q_START_W = reg.DEF_QSTARTTH / 1000
POLL_BEFORE_WH = 1500  # poll well before 0xFFFF counts (2048 Wh at MC 3200)

segment = st.tuples(
    st.floats(1.0, 7200.0),  # seconds at this load
    st.floats(180.0, 260.0),  # Urms
    st.floats(0.02, 40.0),  # Irms (>= 4.4 W at 220 V: above the starting threshold)
    st.floats(-75.0, 75.0),  # phase: active power always forward, reactive either way
    st.lists(st.floats(0.5, 600.0), min_size=1, max_size=8),  # step sizes, cycled
)


def _meter(**kw):
    m = ATM90E26Model(**kw)
    d = ATM90E26(m, m.cs)
    d.calibrate({"meter_constant": MC})
    return m, d


@settings(max_examples=60, deadline=None)
@given(st.lists(segment, min_size=1, max_size=6), st.integers(0, 3))
def test_polled_counts_equal_chip_total_and_true_energy(segments, bad_polls):
    m, d = _meter()
    out = [0] * POLL_SIZE
    got = [0, 0, 0, 0]
    p_ws = q_ws = 0.0
    since_poll_wh = 0.0

    def poll():
        assert d.poll(out)
        for k in range(4):
            got[k] += out[k]

    for seconds, u, i, phase, steps in segments:
        p = u * i * math.cos(math.radians(phase))
        q = u * i * math.sin(math.radians(phase))
        p = p if abs(p) >= P_START_W else 0.0  # below the starting thresholds the chip holds still
        q = q if abs(q) >= Q_START_W else 0.0
        left = seconds
        k = 0
        while left > 0:
            dt = min(steps[k % len(steps)], left)
            k += 1
            if since_poll_wh + (abs(p) + abs(q)) * dt / 3600 > POLL_BEFORE_WH:
                poll()
                since_poll_wh = 0.0
            m.advance(dt, u, i, phase)
            p_ws += p * dt
            q_ws += q * dt
            since_poll_wh += (abs(p) + abs(q)) * dt / 3600
            left -= dt
        if bad_polls:  # a skipped sample must lose nothing
            bad_polls -= 1
            m.fail_next_reads = 6
            assert not d.poll(out)
            m.fail_next_reads = 0
    poll()
    tc = m.total_counts
    assert got == [tc[reg.APENERGY], tc[reg.ANENERGY], tc[reg.RPENERGY], tc[reg.RNENERGY]]
    true_p = p_ws / WS_PER_LSB
    assert got[OUT_AN] == 0 and math.floor(true_p) - 1 <= got[OUT_AP] <= math.floor(true_p) + 1
    net_q = got[OUT_RP] - got[OUT_RN]  # forward and reverse cancel inside the chip
    assert abs(net_q - q_ws / WS_PER_LSB) < 1 + 1e-6


@settings(max_examples=25, deadline=None)
@given(st.floats(-0.1, 0.1), st.floats(-0.1, 0.1), st.floats(-0.25, 0.25))
def test_calibration_corrects_random_sensor_errors(eu, ei, phase_err):
    m = ATM90E26Model(gain_error_u=eu, gain_error_i=ei, phase_error_deg=phase_err)
    d = ATM90E26(m, m.cs)
    calibrate_meter(m, d, MC)
    out = [0] * POLL_SIZE
    for i, phase in ((IB, 0.0), (IB, 60.0), (IB, -36.87), (0.1 * IB, 0.0), (3 * IB, 60.0)):
        d.poll(out)
        hours = 1 if i >= IB else 4
        for _ in range(hours * 60):
            m.advance(60, UN, i, phase)
        assert d.poll(out)
        want = UN * i * math.cos(math.radians(phase)) * hours * 3600 / WS_PER_LSB
        assert abs(out[OUT_AP] / want - 1) < 0.001, (i, phase, out[OUT_AP], want)
        assert abs(out[OUT_URMS] / (UN * 100) - 1) < 0.001
        assert abs(out[OUT_IRMS] / (i * 1000) - 1) < 0.001 + 1 / (i * 1000)


cal_word = st.integers(0, 0xFFFF)


@settings(max_examples=40, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "lgain": cal_word,
            "lphi": cal_word,
            "ngain": cal_word,
            "pstartth": cal_word,
            "mmode": cal_word,
            "ugain": cal_word,
            "igainl": cal_word,
            "poffsetl": st.integers(-0x8000, 0x7FFF),
            "qoffsetn": cal_word,
            "meter_constant": st.integers(100, 10000),
            "ib": st.sampled_from([1, 2.5, 5, 10, 20]),
        }
    )
)
def test_any_calibration_is_accepted_with_matching_checksums(cal):
    m = ATM90E26Model()
    d = ATM90E26(m, m.cs)
    st_ = d.calibrate(cal)
    assert st_ & (reg.SYS_CALERR | reg.SYS_ADJERR) == 0
    assert d.read(reg.CS1) == d.cs1 and d.read(reg.CS2) == d.cs2
    assert d.read(reg.POFFSETL) == cal["poffsetl"] & 0xFFFF and d.read(reg.LPHI) == cal["lphi"]
