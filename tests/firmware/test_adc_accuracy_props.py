"""Accuracy of the direct-ADC front end at the IEC 62053 test points, and its fixed-point invariants.

CPython only (bigger buffers, hypothesis). Setup: the emulated 12-bit ADC with
its default ratios (230 V, Ib 5 A, Imax 60 A; 0.2102 V/LSB, 0.04767 A/LSB),
V/I evenly interleaved (skew half a sample), 64 samples per 50 Hz cycle,
10-cycle windows, gaussian noise 1 LSB rms on both channels, 3rd harmonic
(V 3 %, I 8 %, 20 deg) and 5th (V 2 %, I 5 %, 30 deg). Each point averages
20 windows spread over a 10 s stretch (t0 every 0.5 s plus a sub-sample
jitter) and compares the mean P (Q) with true_power() (Budeanu Q).

Measured error (%, of true P; of true Q), `.venv/bin/pytest -s tests/firmware/test_adc_accuracy_props.py`:

    point           P err   class 1 / 0.5S limit   Q err   class 2 limit
    0.05 Ib PF 1    +0.08   1.5 / 0.5              (Q ~ 0)
    0.1 Ib PF 1     +0.04   1.0 / 0.5
    Ib PF 1         -0.00   1.0 / 0.5
    Imax PF 1       -0.00   1.0 / 0.5
    0.1 Ib 0.5 ind  +0.04   1.5 / 0.6              -0.31   2.5
    0.2 Ib 0.5 ind  -0.01   1.0 / 0.6              -0.26   2.0
    Ib 0.5 ind      -0.00   1.0 / 0.6              -0.21   2.0
    Imax 0.5 ind    -0.01   1.0 / 0.6              -0.19   2.0
    0.1 Ib 0.8 cap  +0.02   1.5 / 0.6              +0.49   2.5
    0.2 Ib 0.8 cap  +0.01   1.0 / 0.6              +0.35   2.0
    Ib 0.8 cap      -0.00   1.0 / 0.6              +0.30   2.0
    Imax 0.8 cap    -0.01   1.0 / 0.6              +0.28   2.0
    0.1 Ib sin 1    (P ~ 0)                        -0.27   2.0
    Ib sin 1        (P ~ 0)                        -0.17   2.0

The low-current points are noise-bound: over seeds 1..8 the 0.05 Ib PF 1
error spans -0.30 .. +0.36 % (class 1 always; 0.5S's 0.5 % nearly always),
0.1 Ib 0.5 ind -0.32 .. +0.29 %. The Q bias (about -0.2 % inductive, +0.3 %
capacitive) comes from the harmonics: a quarter-cycle delay turns the 3rd
harmonic by 270 deg, so its reactive part counts with the opposite sign.

With seed 11 every point is inside class 1 and the (unverified) 0.5S limits.
test_report_table asserts class 1 / class 2 and prints the table above.
test_low_current_error_is_zero_mean_noise shows that the low-current error is
that noise (its size predicted from the channels' noise and Vrms) with no
bias; the meter averages more windows at low current to shrink it
(firmware/adc_frontend.py, tests/firmware/test_emulate_accuracy.py).
"""

import importlib.util
import math
import sys
import types
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.adc_model import DEFAULT_SAMPLE_US, ADCModel, true_power
from firmware import adc_frontend, compat, fixedpoint
from firmware.adc_frontend import ADCFrontEnd

UN = 230.0
IB = 5.0
IMAX = 60.0
HARM = ((3, 0.03, 0.08, 20.0), (5, 0.02, 0.05, 30.0))
SPC = 64
CYCLES = 10
WINDOWS = 20
STRETCH_US = 10_000_000

# (label, current A, phase deg, class 1 P limit %, class 0.5S P limit %, class 2 Q limit % or None)
POINTS = [
    ("0.05 Ib PF 1", 0.05 * IB, 0.0, 1.5, 0.5, None),
    ("0.1 Ib PF 1", 0.1 * IB, 0.0, 1.0, 0.5, None),
    ("Ib PF 1", IB, 0.0, 1.0, 0.5, None),
    ("Imax PF 1", IMAX, 0.0, 1.0, 0.5, None),
    ("0.1 Ib 0.5 ind", 0.1 * IB, 60.0, 1.5, 0.6, 2.5),
    ("0.2 Ib 0.5 ind", 0.2 * IB, 60.0, 1.0, 0.6, 2.0),
    ("Ib 0.5 ind", IB, 60.0, 1.0, 0.6, 2.0),
    ("Imax 0.5 ind", IMAX, 60.0, 1.0, 0.6, 2.0),
    ("0.1 Ib 0.8 cap", 0.1 * IB, -math.degrees(math.acos(0.8)), 1.5, 0.6, 2.5),
    ("0.2 Ib 0.8 cap", 0.2 * IB, -math.degrees(math.acos(0.8)), 1.0, 0.6, 2.0),
    ("Ib 0.8 cap", IB, -math.degrees(math.acos(0.8)), 1.0, 0.6, 2.0),
    ("Imax 0.8 cap", IMAX, -math.degrees(math.acos(0.8)), 1.0, 0.6, 2.0),
    ("0.1 Ib sin 1", 0.1 * IB, 90.0, None, None, 2.0),
    ("Ib sin 1", IB, 90.0, None, None, 2.0),
]


def mean_power(irms, phase, seed=11):
    """Mean (P mW, Q mvar) over WINDOWS windows spread across a 10 s stretch, and the worst status."""
    model = ADCModel(seed=seed)
    fe = ADCFrontEnd(model.frontend_cal(DEFAULT_SAMPLE_US, SPC, CYCLES))
    n = fe.n
    vb = array("H", [0] * n)
    ib = array("H", [0] * n)
    out = [0] * 14
    sp = sq = status = 0
    for w in range(WINDOWS):
        t0 = w * (STRETCH_US // WINDOWS) + (w * 37 % 100) * DEFAULT_SAMPLE_US / 100.0
        model.fill(vb, ib, n, t0, DEFAULT_SAMPLE_US, UN, irms, phase, 50, HARM, 1)
        fe.compute(vb, ib, n, out)
        sp += out[adc_frontend.P_MW]
        sq += out[adc_frontend.Q_MVAR]
        status |= out[adc_frontend.STATUS]
    return sp / WINDOWS, sq / WINDOWS, status


def test_report_table():
    rows = []
    for label, irms, phase, lim1, lim05s, limq in POINTS:
        p_mw, q_mvar, status = mean_power(irms, phase)
        assert status == 0, (label, status)
        p_true, q_true = true_power(UN, irms, phase, HARM)
        ep = (p_mw / 1000.0 - p_true) * 100.0 / p_true if lim1 else None
        eq = (q_mvar / 1000.0 - q_true) * 100.0 / q_true if limq else None
        rows.append((label, ep, lim1, lim05s, eq, limq))
    print()
    print("%-16s %7s %10s %6s %7s %6s" % ("point", "P err%", "cl1/0.5S", "0.5S", "Q err%", "cl2"))
    for label, ep, lim1, lim05s, eq, limq in rows:
        print(
            "%-16s %7s %10s %6s %7s %6s"
            % (
                label,
                "%+.2f" % ep if ep is not None else "-",
                "%.1f/%.1f" % (lim1, lim05s) if lim1 else "-",
                ("ok" if abs(ep) <= lim05s else "FAIL") if ep is not None else "-",
                "%+.2f" % eq if eq is not None else "-",
                "%.1f" % limq if limq else "-",
            )
        )
    for label, ep, lim1, _lim05s, eq, limq in rows:
        if ep is not None:
            assert abs(ep) <= lim1, (label, ep, lim1)
        if eq is not None:
            assert abs(eq) <= limq, (label, eq, limq)


def test_low_current_class1_across_seeds():
    p_true, _ = true_power(UN, 0.05 * IB, 0.0, HARM)
    for seed in range(1, 9):
        p_mw, _, status = mean_power(0.05 * IB, 0.0, seed)
        err = (p_mw / 1000.0 - p_true) * 100.0 / p_true
        assert status == 0 and abs(err) <= 1.5, (seed, err)


def test_low_current_error_is_zero_mean_noise():
    """Issue 17, item 9: the low-current error is noise, not a bias.

    Windows as the emulator's bench takes them (1 LSB rms on both channels, no harmonics, a new
    seed and start phase each): per 10-cycle window P has a standard deviation of sigma * Vrms /
    sqrt(n) ~ 0.45 W whatever the load (the current channel's noise, gaussian plus rounding, seen
    through the voltage), and its mean is the true P within the standard error, at no load too. A
    bias of the size once reported (+0.17 % at 0.05 Ib = +98 mW, +19 % at 0.004 Ib = +0.87 W)
    would be 4 and 38 standard errors out.
    """
    model = ADCModel()
    fe = ADCFrontEnd(model.frontend_cal(DEFAULT_SAMPLE_US, SPC, CYCLES))
    n = fe.n
    vb = array("H", [0] * n)
    ib = array("H", [0] * n)
    out = [0] * 14
    s_mw = model.v_per_lsb * model.a_per_lsb * 1000.0  # mW per LSB**2
    predicted = math.sqrt(1.0 + 1.0 / 12.0) * (UN / model.v_per_lsb) / math.sqrt(n) * s_mw
    windows = 400
    for irms in (0.0, 0.004 * IB, 0.05 * IB):
        ps = []
        for w in range(windows):
            m = ADCModel(seed=1000003 * w + int(irms * 1000) + 1)
            t0 = (w * 7919) % 20000 + (w % 256) / 256.0
            m.fill(vb, ib, n, t0, DEFAULT_SAMPLE_US, UN, irms, 0.0, 50, (), 1)
            fe.compute(vb, ib, n, out)
            ps.append(out[adc_frontend.P_MW])
        mean = sum(ps) / windows
        sd = math.sqrt(sum((p - mean) ** 2 for p in ps) / (windows - 1))
        true_mw = UN * irms * 1000.0
        assert 0.85 < sd / predicted < 1.15, (irms, sd, predicted)
        assert abs(mean - true_mw) <= 3.5 * sd / math.sqrt(windows), (irms, mean, true_mw, sd)


def _reference(v, i, cal):
    """The same algorithm in floats: (Urms mV, Irms mA, P mW, Q mvar)."""
    n = len(v)
    mv = sum(v) / n
    mi = sum(i) / n
    x = [a - mv for a in v]
    y = [b - mi for b in i]
    a = cal["phasecal"] / 16384.0
    spc = cal["samples_per_cycle"]
    d = spc // 4
    vs = cal["v_scale"] / 65536.0
    cs = cal["i_scale"] / 65536.0
    gain = math.sqrt(1.0 - 2.0 * a * (1.0 - a) * (1.0 - math.cos(2.0 * math.pi / spc)))
    u = math.sqrt(sum(t * t for t in x) / n) * vs
    c = math.sqrt(sum(t * t for t in y) / n) * cs
    p = sum((x[k] + a * (x[(k + 1) % n] - x[k])) * y[k] for k in range(n)) / n
    q = sum((x[k - d] + a * (x[(k - d + 1) % n] - x[k - d])) * y[k] for k in range(n)) / n
    return u, c, p * vs * cs / 1000.0 / gain, q * vs * cs / 1000.0 / gain


def _run_traced(fe, vb, ib, n, out):
    """compute() with every int local of adc_frontend's and fixedpoint's frames checked at each line.

    Returns the largest |value| seen.
    """
    seen = [0]
    code_files = (adc_frontend.__file__, fixedpoint.__file__)

    def tracer(frame, event, arg):
        if frame.f_code.co_filename not in code_files:
            return None
        for val in frame.f_locals.values():
            if type(val) is int and abs(val) > seen[0]:
                seen[0] = abs(val)
        return tracer

    sys.settrace(tracer)
    try:
        fe.compute(vb, ib, n, out)
    finally:
        sys.settrace(None)
    return seen[0]


codes = st.integers(min_value=0, max_value=4095)


@settings(max_examples=40, deadline=None)
@given(
    spc=st.sampled_from([8, 16, 64, 128, 256]),
    cycles=st.integers(min_value=1, max_value=4),
    phasecal=st.integers(min_value=-16384, max_value=32767),
    data=st.data(),
)
def test_fixed_point_matches_float_reference_and_stays_below_2_30(spc, cycles, phasecal, data):
    n = spc * cycles
    kind = data.draw(st.sampled_from(["random", "rails", "sine"]))
    if kind == "random":
        v = data.draw(st.lists(codes, min_size=n, max_size=n))
        i = data.draw(st.lists(codes, min_size=n, max_size=n))
    elif kind == "rails":  # worst case for the bounds: full-scale square waves
        v = [4095 if (k // (spc // 2)) % 2 else 0 for k in range(n)]
        shift = data.draw(st.integers(min_value=0, max_value=spc - 1))
        i = [0 if ((k + shift) // (spc // 2)) % 2 else 4095 for k in range(n)]
    else:
        amp_v = data.draw(st.integers(min_value=0, max_value=2047))
        amp_i = data.draw(st.integers(min_value=0, max_value=2047))
        ph = data.draw(st.floats(min_value=-180, max_value=180))
        v = [int(2048 + amp_v * math.sin(2 * math.pi * k / spc)) for k in range(n)]
        i = [int(2048 + amp_i * math.sin(2 * math.pi * k / spc - math.radians(ph))) for k in range(n)]
    cal = {"samples_per_cycle": spc, "cycles": cycles, "phasecal": phasecal}
    fe = ADCFrontEnd(cal)
    cal = fe.cal
    out = [0] * 14
    biggest = _run_traced(fe, array("H", v), array("H", i), n, out)
    assert biggest < 1 << 30, biggest
    u, c, p, q = _reference(v, i, cal)
    s = u * c / 1000.0
    assert abs(out[adc_frontend.URMS] * 10 - u) <= 1e-4 * u + 10, (out, u)
    assert abs(out[adc_frontend.IRMS] - c) <= 1e-4 * c + 2, (out, c)
    assert abs(out[adc_frontend.P_MW] - p) <= 2e-4 * s + 3, (out, p, s)
    assert abs(out[adc_frontend.Q_MVAR] - q) <= 2e-4 * s + 3, (out, q, s)
    assert abs(out[adc_frontend.PF]) <= 1000


def test_longest_window_stays_below_2_30():
    fe = ADCFrontEnd({"samples_per_cycle": 256, "cycles": 16, "phasecal": 32767})
    n = fe.n
    v = array("H", [4095 if (k // 128) % 2 else 0 for k in range(n)])
    i = array("H", [0 if (k // 128) % 2 else 4095 for k in range(n)])
    out = [0] * 14
    assert _run_traced(fe, v, i, n, out) < 1 << 30
    assert out[adc_frontend.P_MW] < 0 and out[adc_frontend.PF] <= -900, out


def _fresh_frontend(monkeypatch, viper_module):
    """A separate copy of adc_frontend imported as on MicroPython, with firmware.adc_viper = viper_module.

    None makes the viper import fail (ImportError), as on a port without viper.
    """
    monkeypatch.setattr(compat, "MICROPYTHON", True)
    monkeypatch.setitem(sys.modules, "firmware.adc_viper", viper_module)
    spec = importlib.util.spec_from_file_location("adc_frontend_copy", adc_frontend.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_failed_viper_import_falls_back_to_plain_passes(monkeypatch):
    mod = _fresh_frontend(monkeypatch, None)
    assert mod.adc_viper is None and not mod.FAST
    fe = mod.ADCFrontEnd({"samples_per_cycle": 16, "cycles": 2})
    assert not fe.fast
    v = array("H", [2048 + int(1000 * math.sin(2 * math.pi * k / 16)) for k in range(32)])
    out = [0] * 14
    assert fe.compute(v, v, 32, out) and out[adc_frontend.P_MW] > 0, out


def test_loaded_viper_module_serves_array_buffers(monkeypatch):
    calls = []

    def pass1(vbuf, ibuf, acc):
        calls.append(1)
        adc_frontend._pass1_py(vbuf, ibuf, acc)

    def pass2(vbuf, ibuf, acc):
        calls.append(2)
        adc_frontend._pass2_py(vbuf, ibuf, acc)

    mod = _fresh_frontend(monkeypatch, types.SimpleNamespace(pass1=pass1, pass2=pass2))
    assert mod.FAST
    fe = mod.ADCFrontEnd({"samples_per_cycle": 16, "cycles": 2})
    assert fe.fast
    v = [2048 + int(1000 * math.sin(2 * math.pi * k / 16)) for k in range(32)]
    a = [0] * 14
    b = [0] * 14
    fe.compute(array("H", v), array("H", v), 32, a)
    assert calls == [1, 2], calls
    fe.compute(v, v, 32, b)  # lists take the plain passes
    assert calls == [1, 2] and a == b, (calls, a, b)
