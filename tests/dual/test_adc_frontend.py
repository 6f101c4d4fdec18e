"""Direct-ADC front end against the emulated ADC: runs under pytest and micropython (64 KiB heap).

Buffers are 2 cycles x 64 samples of 50 Hz mains; the model's noise comes from
its own PRNG, so both runtimes see the same codes.
"""

import sys
from array import array

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises

from emulator.adc_model import DEFAULT_SAMPLE_US, ADCModel, true_power
from firmware import adc_frontend as fe_mod
from firmware import compat, fixedpoint
from firmware.adc_frontend import (
    IRMS,
    P_MW,
    PF,
    PMEAN,
    Q_MVAR,
    QMEAN,
    STATUS,
    STATUS_I_CLIP,
    STATUS_NO_FREQ,
    URMS,
    ADCFrontEnd,
    ADCFrontEndError,
)

SPC = 64
CYCLES = 2
N = SPC * CYCLES
UN = 230.0
IB = 5.0
HARM = ((3, 0.03, 0.08, 20.0), (5, 0.02, 0.05, 30.0))


def _measure(phase, urms=UN, irms=IB, noise=0, harmonics=(), model=None, t0=1000, hz=50, phasecal=None):
    model = model or ADCModel(seed=7)
    cal = model.frontend_cal(DEFAULT_SAMPLE_US, SPC, CYCLES)
    if phasecal is not None:
        cal["phasecal"] = phasecal
    fe = ADCFrontEnd(cal)
    vb = array("H", [0] * N)
    ib = array("H", [0] * N)
    model.fill(vb, ib, N, t0, DEFAULT_SAMPLE_US, urms, irms, phase, hz, harmonics, noise)
    out = [0] * 14
    ok = fe.compute(vb, ib, N, out)
    return out, ok


def _err_pct(measured_mw, true_w, apparent_va):
    return abs(measured_mw / 1000.0 - true_w) * 100.0 / apparent_va


def test_pf1_power_matches_urms_times_irms():
    out, ok = _measure(0.0)
    assert ok and out[STATUS] == 0
    ui = out[URMS] / 100.0 * out[IRMS] / 1000.0
    assert abs(out[P_MW] / 1000.0 - ui) < 0.002 * ui, (out, ui)
    assert abs(out[P_MW] / 1000.0 - UN * IB) < 0.002 * UN * IB, out
    assert abs(out[URMS] - 23000) <= 23 and abs(out[IRMS] - 5000) <= 5, out
    assert abs(out[PMEAN] - 1150) <= 2 and out[PF] >= 998, out
    assert abs(out[Q_MVAR]) < 0.002 * UN * IB * 1000, out
    assert out[0:4] == [0, 0, 0, 0] and out[10] == 0


def test_inductive_pf05_gives_positive_q():
    p, q = true_power(UN, IB, 60.0)
    out, ok = _measure(60.0, noise=1)
    assert ok
    assert out[Q_MVAR] > 0 and out[QMEAN] > 0, out
    assert _err_pct(out[P_MW], p, UN * IB) < 0.5, out
    assert _err_pct(out[Q_MVAR], q, UN * IB) < 1.0, out
    assert abs(out[PF] - 500) <= 5, out


def test_capacitive_pf08_gives_negative_q():
    p, q = true_power(UN, IB, -36.87)
    out, ok = _measure(-36.87, noise=1, harmonics=HARM)
    assert ok
    assert out[Q_MVAR] < 0 and out[QMEAN] < 0, out
    assert _err_pct(out[P_MW], p, UN * IB) < 0.5, out
    assert _err_pct(out[Q_MVAR], q, UN * IB) < 1.0, out
    assert 790 <= out[PF] <= 810, out


def test_export_gives_negative_p():
    out, ok = _measure(180.0, noise=1)
    assert ok
    assert out[P_MW] < 0 and out[PMEAN] < 0, out
    assert _err_pct(out[P_MW], -UN * IB, UN * IB) < 0.5, out
    assert out[PF] <= -995, out


def test_dc_offset_is_removed():
    plain, _ = _measure(30.0)
    shifted, ok = _measure(30.0, model=ADCModel(seed=7, offset_v_lsb=300, offset_i_lsb=-250))
    assert ok
    for slot in (URMS, IRMS, P_MW, Q_MVAR):
        assert abs(shifted[slot] - plain[slot]) <= abs(plain[slot]) // 1000 + 2, (slot, plain, shifted)


def test_skew_correction_reduces_pf05_error():
    p, _ = true_power(UN, IB, 60.0)
    right, _ = _measure(60.0)
    none, _ = _measure(60.0, phasecal=0)
    prev, _ = _measure(60.0, phasecal=-16384)  # pairs I with the sample before: worse still
    e_right = _err_pct(right[P_MW], p, UN * IB)
    e_none = _err_pct(none[P_MW], p, UN * IB)
    e_prev = _err_pct(prev[P_MW], p, UN * IB)
    assert e_right < 0.2, e_right
    assert e_none > 1.0 and e_none > 10 * e_right, (e_none, e_right)
    assert e_prev > e_none, (e_prev, e_none)


def test_frequency_from_zero_crossings():
    for hz, want in ((49.5, 4950), (50.0, 5000), (50.5, 5050)):
        out, ok = _measure(0.0, hz=hz, noise=1)
        assert ok and abs(out[fe_mod.FREQ] - want) <= 3, (hz, out)
    out, ok = _measure(0.0, urms=0.0, irms=0.0, noise=1)
    assert not ok and out[STATUS] & STATUS_NO_FREQ and out[fe_mod.FREQ] == 5000, out


def test_clipping_is_flagged():
    out, ok = _measure(0.0, irms=80.0)
    assert not ok and out[STATUS] & STATUS_I_CLIP, out


def test_fast_and_pure_paths_give_identical_integers():
    model = ADCModel(seed=3)
    fe = ADCFrontEnd(model.frontend_cal(DEFAULT_SAMPLE_US, SPC, CYCLES))
    vb = array("H", [0] * N)
    ib = array("H", [0] * N)
    a = [0] * 14
    b = [0] * 14
    cases = ((0.0, 5.0, ()), (60.0, 0.3, HARM), (-36.87, 60.0, HARM), (180.0, 12.0, ()), (90.0, 0.0, ()))
    for phase, irms, harm in cases:
        model.fill(vb, ib, N, 777, DEFAULT_SAMPLE_US, UN, irms, phase, 50, harm, 2)
        fe.compute(vb, ib, N, a)  # viper on MicroPython
        fe.compute(list(vb), list(ib), N, b)  # lists always take the plain-Python path
        assert a == b, (phase, a, b)
    assert fe.fast == compat.MICROPYTHON


class _CountingPasses:
    """Stands in for firmware.adc_viper and counts the calls it forwards to the real one."""

    def __init__(self, real):
        self.real = real
        self.calls = 0

    def pass1(self, vbuf, ibuf, acc):
        self.calls += 1
        self.real.pass1(vbuf, ibuf, acc)

    def pass2(self, vbuf, ibuf, acc):
        self.calls += 1
        self.real.pass2(vbuf, ibuf, acc)


def test_viper_passes_are_used_on_micropython():
    if not compat.MICROPYTHON:  # CPython never imports the viper module
        assert fe_mod.adc_viper is None and not fe_mod.FAST
        assert "firmware.adc_viper" not in sys.modules
        return
    viper = fe_mod.adc_viper
    assert fe_mod.FAST and viper is sys.modules["firmware.adc_viper"]
    slots = (fe_mod._A_N, fe_mod._A_D, fe_mod._A_OFFV, fe_mod._A_OFFI, fe_mod._A_VV, fe_mod._A_II)
    slots += (fe_mod._A_S0, fe_mod._A_S1, fe_mod._A_Q0, fe_mod._A_Q1, fe_mod._A_ZN, fe_mod._A_ZK0)
    slots += (fe_mod._A_ZX0, fe_mod._A_ZY0, fe_mod._A_ZK1, fe_mod._A_ZX1, fe_mod._A_ZY1, fe_mod._A_ZD0)
    slots += (fe_mod._A_ZD1, fe_mod._A_SV, fe_mod._A_SI, fe_mod._A_VMIN, fe_mod._A_VMAX, fe_mod._A_IMIN)
    slots += (fe_mod._A_IMAX,)
    assert viper.LAYOUT == slots, (viper.LAYOUT, slots)
    # compiled viper: ptr16 arguments take buffers only, where a Python function would take a list
    acc = array("i", [4] + [0] * 30)
    raises(TypeError, viper.pass1, [1, 2, 3, 4], [1, 2, 3, 4], acc)
    raises(TypeError, viper.pass2, [1, 2, 3, 4], [1, 2, 3, 4], acc)
    # compute() dispatches array buffers to the viper passes, lists to the plain ones
    fe = ADCFrontEnd({"samples_per_cycle": SPC, "cycles": CYCLES})
    assert fe.fast
    buf = array("H", [2048 + (k % 3) for k in range(N)])
    out = [0] * 14
    counting = _CountingPasses(viper)
    fe_mod.adc_viper = counting
    try:
        fe.compute(buf, buf, N, out)
        assert counting.calls == 2, counting.calls
        fe.compute(list(buf), list(buf), N, out)
        assert counting.calls == 2, counting.calls
    finally:
        fe_mod.adc_viper = viper


def test_compute_does_not_allocate():
    model = ADCModel(seed=5)
    fe = ADCFrontEnd(model.frontend_cal(DEFAULT_SAMPLE_US, SPC, CYCLES))
    vb = array("H", [0] * N)
    ib = array("H", [0] * N)
    vl = [0] * N
    il = [0] * N
    model.fill(vb, ib, N, 0, DEFAULT_SAMPLE_US, UN, IB, 45.0, 50, HARM, 1)
    model.fill(vl, il, N, 0, DEFAULT_SAMPLE_US, UN, IB, -120.0, 50, HARM, 1)
    out = [0] * 14
    fe.compute(vb, ib, N, out)
    fe.compute(vl, il, N, out)
    compat.heap_lock()
    try:
        ok1 = fe.compute(vb, ib, N, out)
        p1 = out[P_MW]
        ok2 = fe.compute(vl, il, N, out)
        p2 = out[P_MW]
        k = fe.windows(60000)
        fe.begin()  # a measurement of several windows, as hal.AdcSource.poll takes it
        for _ in range(fe_mod.MAX_WINDOWS):
            fe.add(vb, ib, N)
            fe.add(vl, il, N)
            if fe._sum[0] == fe_mod.MAX_WINDOWS:
                break
        ok3 = fe.finish(out)
        p3 = out[P_MW]
    finally:
        compat.heap_unlock()
    assert ok1 and ok2 and p1 > 0 and p2 < 0, (p1, p2)
    assert ok3 and k == 1 and abs(p3 - (p1 + p2) / 2) <= 1, (p1, p2, p3, k)


def test_windows_follow_the_last_current_within_the_duty():
    # 2-cycle windows of 40 ms; quiet_lsb 64 is 3050 mA with the default i_scale; duty 20 %
    fe = ADCFrontEnd({"samples_per_cycle": SPC, "cycles": CYCLES})
    assert fe.last_ma == -1 and fe._quiet_ma == 3050
    assert fe.windows(0) == 1 and fe.windows(-5) == 1
    assert fe.windows(1000) == 5 and fe.windows(100) == 1  # no measurement yet: the duty's count
    assert fe.windows(10000) == fe_mod.MAX_WINDOWS and fe.windows(10**9) == fe_mod.MAX_WINDOWS
    model = ADCModel(seed=2)
    vb = array("H", [0] * N)
    ib = array("H", [0] * N)
    out = [0] * 14
    for irms, want_10s, want_1s in ((5.0, 1, 1), (3.2, 1, 1), (1.0, 10, 5), (0.5, 32, 5), (0.0, 32, 5)):
        model.fill(vb, ib, N, 0, DEFAULT_SAMPLE_US, UN, irms, 0.0, 50, (), 0)
        fe.compute(vb, ib, N, out)
        assert fe.last_ma == out[IRMS], (fe.last_ma, out)
        assert fe.windows(10000) == want_10s and fe.windows(1000) == want_1s, (irms, out[IRMS])
    assert "duty" in str(raises(ADCFrontEndError, ADCFrontEnd, {"duty": 51}))
    assert "quiet_lsb" in str(raises(ADCFrontEndError, ADCFrontEnd, {"quiet_lsb": 0}))


def test_a_measurement_of_several_windows_is_their_mean():
    model = ADCModel(seed=4)
    fe = ADCFrontEnd(model.frontend_cal(DEFAULT_SAMPLE_US, SPC, CYCLES))
    one = [0] * 14
    out = [0] * 14
    sums = [0] * 14
    wins = []
    for k, (irms, phase, noise) in enumerate(
        ((0.25, 0.0, 0), (0.3, 60.0, 1), (0.2, -36.87, 1), (12.0, 10.0, 2))
    ):
        vb = array("H", [0] * N)
        ib = array("H", [0] * N)
        model.fill(vb, ib, N, 1000 + 7919 * k, DEFAULT_SAMPLE_US, UN, irms, phase, 50, HARM, noise)
        wins.append((vb, ib))
        fe.compute(vb, ib, N, one)
        for slot in (URMS, IRMS, P_MW, Q_MVAR, fe_mod.FREQ):
            sums[slot] += one[slot]
    fe.begin()
    for vb, ib in wins:
        fe.add(vb, ib, N)
    ok = fe.finish(out)
    m = len(wins)
    for slot in (URMS, IRMS, P_MW, Q_MVAR, fe_mod.FREQ):  # P, Q rounded once, from quarter mW
        assert abs(out[slot] - sums[slot] / m) <= 1, (slot, out, sums)
    assert out[PMEAN] == (out[P_MW] + 500) // 1000 and out[QMEAN] == fixedpoint.round_div(out[Q_MVAR], 1000)
    assert ok and out[STATUS] == 0 and fe.last_ma == out[IRMS], out
    assert "without a window" in str(raises(ADCFrontEndError, ADCFrontEnd().finish, out))
    vb, ib = wins[0]
    fe.compute(vb, ib, N, one)
    fe.begin()
    for _ in range(fe_mod.MAX_WINDOWS):
        fe.add(vb, ib, N)
    assert "windows" in str(raises(ADCFrontEndError, fe.add, vb, ib, N))
    fe.finish(out)
    assert out == one, (out, one)  # 32 times the same window


def test_fixed_point_helpers_are_exact():
    vals = (0, 1, 2, 3, 32767, 32768, 99991, 1 << 20, 123456789, (1 << 30) - 1)
    for a in vals:
        for b in vals:
            for s in (0, 7, 15, 16, 29, 30, 31, 44, 45, 52):
                want = (a * b) >> s
                got = fixedpoint.mulshift(a, b, s)
                assert got == (want if want < (1 << 30) else 0x3FFFFFFF), (a, b, s, got)
        r = fixedpoint.isqrt(a)
        assert r * r <= a < (r + 1) * (r + 1), (a, r)


def test_limb_means_and_rounding_are_exact():
    for total in (0, 1, 32767, 32768, 4095 * 4095 * 640, 123456789 * 37):
        h = total >> 15
        lo = total & 0x7FFF
        for n in (1, 3, 128, 640, 4096):
            for f in (0, 5, 16):
                if (total << f) // n >= 1 << 30:
                    continue
                assert fixedpoint.mean_fx(h, lo, n, f) == (total << f) // n, (total, n, f)
                neg = fixedpoint.smean_fx(-h - (1 if lo else 0), (32768 - lo) & 0x7FFF, n, f)
                assert neg == -((total << f) // n), (total, n, f, neg)
    for x, d, want in ((1499, 1000, 1), (1500, 1000, 2), (-1500, 1000, -2), (-1499, 1000, -1), (0, 7, 0)):
        assert fixedpoint.round_div(x, d) == want, (x, d)


def test_bad_calibration_and_calls_are_rejected():
    e = raises(ADCFrontEndError, ADCFrontEnd, {"v_scael": 1})
    assert "v_scael" in str(e)
    e = raises(ADCFrontEndError, ADCFrontEnd, {"phasecal": 40000})
    assert "phasecal" in str(e)
    e = raises(ADCFrontEndError, ADCFrontEnd, {"samples_per_cycle": 66})
    assert "samples_per_cycle" in str(e)
    e = raises(ADCFrontEndError, ADCFrontEnd, {"v_scale": 1 << 29, "i_scale": 1 << 29})
    assert "overflow" in str(e)
    fe = ADCFrontEnd({"samples_per_cycle": SPC, "cycles": CYCLES})
    buf = array("H", [2048] * N)
    assert "samples_per_cycle" in str(raises(ADCFrontEndError, fe.compute, buf, buf, N - 1, [0] * 14))
    assert "out" in str(raises(ADCFrontEndError, fe.compute, buf, buf, N, [0] * 12))
