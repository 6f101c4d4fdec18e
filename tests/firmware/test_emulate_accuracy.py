"""Accuracy at the IEC 62053-21 class 1 test points, through BOTH front ends, on the real firmware.

Each point is one short emulator run (tools/emulate.py: micropython, fresh
flash, default config with the factory calibration): 20 simulated minutes at
Un 230 V, Ib 5 A, Imax 60 A; ATM90E26 polled every 60 s (the emulated chip
has +1.2 % U, -0.9 % I and 0.25 deg phase errors that its factory calibration
corrects), ADC every 30 s (one 10-cycle window per poll, 1 LSB rms noise).
Registered energy = the import registers exactly (whole Wh plus the carried
remainder, in the front end's units) against the true
urms * irms * cos(phi) * seconds; reactive = q_mvarh of the quadrant.
`.venv/bin/pytest -s tests/firmware/test_emulate_accuracy.py` prints the
table (error %; limits class 1 / 0.5S, class 2 for Q).

Beyond class 1, both front ends are held to the project's own target (issue
17, item 9): |active error| <= 0.1 % at every point. And at the class 1
starting current, 0.004 Ib at PF 1, the registered energy is within 5 % of
the true energy: over 60 s for the ADC (76.7 mWh; it registered +7 % there
when it sampled one window per poll, because the window's noise, 10 % of P,
averaged over only 2 windows) and over the 20 minutes for both (the
ATM90E26 cannot over 60 s: one count of its energy register is 1/32 Wh,
41 % of 76.7 mWh, and the chip keeps the sub-count residue). At no load the
registers do not move.

Both tests run on two runtimes (tools/emulate.py --runtime): the default
(unix32: the 32-bit unix port, firmware frozen) and qemu-arm (MicroPython's
qemu port on an emulated Cortex-M3, MPS2-AN385, firmware frozen with viper
compiled for Thumb-2, 64 KiB heap, the bench link over its UART: make
firmware-arm). The same bench answers both, so their registers agree. On
qemu-arm every ATM90E26 point runs, and the ADC at QEMU_ADC_POINTS: below
0.6 Ib the ADC samples up to 32 windows a poll, each about 20 ms over the
emulated UART, so the whole ADC table would take minutes there; the points
kept cover one window a poll (Ib, Imax, both power factors) and the low-current
path (0.1 Ib 0.5 ind). (The ADC's registers there are not the default
runtime's to the unit: at Ib the remainders differed by 60 units of 3.6e6 per
Wh; the ATM90E26's are identical.) The ADC's no-load check runs 10 minutes
there instead of an hour.
"""

import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.firmware.emulate_support import run

UN = 230.0
IB = 5.0
IMAX = 60.0
SECONDS = 1200
START = 1719792000
CAP = -math.degrees(math.acos(0.8))
RUNTIMES = pytest.mark.parametrize("runtime", [None, "qemu-arm"], ids=["default", "qemu-arm"])
# (label, current A, phase deg, class 1 %, class 0.5S %, class 2 reactive % or None)
TARGET_PCT = 0.1  # |active error| at every point, both front ends
START_PCT = 5.0  # starting current: registered energy against true
POINTS = [
    ("0.05 Ib PF 1", 0.05 * IB, 0.0, 1.5, 1.0, None),
    ("0.1 Ib PF 1", 0.1 * IB, 0.0, 1.0, 0.5, None),
    ("0.2 Ib PF 1", 0.2 * IB, 0.0, 1.0, 0.5, None),
    ("0.5 Ib PF 1", 0.5 * IB, 0.0, 1.0, 0.5, None),
    ("Ib PF 1", IB, 0.0, 1.0, 0.5, None),
    ("Imax PF 1", IMAX, 0.0, 1.0, 0.5, None),
]
for _k, _i in (("0.1 Ib", 0.1), ("0.2 Ib", 0.2), ("0.5 Ib", 0.5), ("Ib", 1.0), ("Imax", IMAX / IB)):
    POINTS.append(
        (
            _k + " 0.5 ind",
            _i * IB,
            60.0,
            1.5 if _i == 0.1 else 1.0,
            1.0 if _i == 0.1 else 0.6,
            2.5 if _i == 0.1 else 2.0,
        )
    )
for _k, _i in (("0.1 Ib", 0.1), ("0.2 Ib", 0.2), ("0.5 Ib", 0.5), ("Ib", 1.0), ("Imax", IMAX / IB)):
    POINTS.append(
        (
            _k + " 0.8 cap",
            _i * IB,
            CAP,
            1.5 if _i == 0.1 else 1.0,
            1.0 if _i == 0.1 else 0.6,
            2.5 if _i == 0.1 else 2.0,
        )
    )


def _scenario(frontend, irms, phase, seconds=SECONDS, urms=UN):
    sc = {
        "frontend": frontend,
        "start": START,
        "segments": [{"seconds": seconds, "urms": urms, "irms": irms, "phase_deg": phase, "noise_lsb": 1}],
    }
    if frontend == "adc":
        sc["poll_ms"] = 30000
    return sc


def registered_mwh(state):
    """Import energy of every rate, exactly: whole Wh plus the remainders (imp_mwh floors to the mWh)."""
    r = state["registers"]  # firmware.energy.Registers.snapshot()
    n, per = r[1], r[2]
    return sum(r[4 + k] * per + r[4 + n + k] for k in range(n)) * 1000.0 / per


def _measure(tmp_path, frontend, k, irms, phase, runtime=None):
    s = run(tmp_path, "%s-%d" % (frontend, k), _scenario(frontend, irms, phase), runtime=runtime)
    ui = UN * irms * SECONDS / 3.6  # mWh
    p_true = ui * math.cos(math.radians(phase))
    q_true = ui * math.sin(math.radians(phase))
    q_reg = s["q_mvarh"][0] if q_true >= 0 else s["q_mvarh"][3]
    ep = (registered_mwh(s) - p_true) * 100.0 / p_true
    eq = (q_reg - abs(q_true)) * 100.0 / abs(q_true) if abs(q_true) > 1 else None
    return ep, eq, (s["registers"], s["q_mvarh"])


QEMU_ADC_POINTS = ("0.1 Ib 0.5 ind", "Ib PF 1", "Imax PF 1", "Ib 0.5 ind", "Ib 0.8 cap")


def _table(tmp_path, runtime=None, points=None):
    """Errors per point for both front ends; the ADC only at ``points`` (labels) when given."""
    jobs = []
    with ThreadPoolExecutor(2) as pool:
        for fe in ("atm90e26", "adc"):
            for k, (label, irms, phase, _l1, _l05, _lq) in enumerate(POINTS):
                if fe == "adc" and points is not None and label not in points:
                    jobs.append(None)
                    continue
                jobs.append(pool.submit(_measure, tmp_path, fe, k, irms, phase, runtime))
        res = [None if j is None else j.result() for j in jobs]
    n = len(POINTS)
    return res[:n], res[n:]


@RUNTIMES
def test_iec_points_both_front_ends(tmp_path, runtime):
    atm, adc = _table(tmp_path, runtime, QEMU_ADC_POINTS if runtime == "qemu-arm" else None)
    atm = [r[:2] for r in atm]
    adc = [(None, None) if r is None else r[:2] for r in adc]
    print("\n" + (runtime or "default runtime"), end="")
    print()
    head = ("point", "ATM P%", "ADC P%", "ATM Q%", "ADC Q%", "cl1/0.5S", "cl2")
    print("%-16s %9s %9s %9s %9s %10s %6s" % head)
    for (label, _i, _ph, l1, l05, lq), (ap, aq), (dp, dq) in zip(POINTS, atm, adc, strict=True):
        f = lambda v: "-" if v is None else "%+.3f" % v  # noqa: E731
        print(
            "%-16s %9s %9s %9s %9s %10s %6s"
            % (label, f(ap), f(dp), f(aq), f(dq), "%.1f/%.1f" % (l1, l05), "-" if lq is None else "%.1f" % lq)
        )
    for (label, _i, _ph, l1, _l05, lq), (ap, aq), (dp, dq) in zip(POINTS, atm, adc, strict=True):
        assert abs(ap) <= l1 and (dp is None or abs(dp) <= l1), (label, ap, dp)
        if lq is not None:
            assert abs(aq) <= lq and (dq is None or abs(dq) <= lq), (label, aq, dq)
    off = [
        (label, fe, round(e, 3))
        for (label, *_rest), (ap, _aq), (dp, _dq) in zip(POINTS, atm, adc, strict=True)
        for fe, e in (("atm90e26", ap), ("adc", dp))
        if e is not None and abs(e) > TARGET_PCT
    ]
    assert not off, "active error beyond %.1f %%: %r" % (TARGET_PCT, off)


@RUNTIMES
def test_starting_current_registers_and_no_creep(tmp_path, runtime):
    cases = []
    rt = {"runtime": runtime}
    with ThreadPoolExecutor(2) as pool:
        for fe in ("atm90e26", "adc"):
            # class 1 starting current 0.004 Ib at PF 1, 20 minutes
            cases.append(pool.submit(run, tmp_path, fe + "-start", _scenario(fe, 0.004 * IB, 0.0), **rt))
            # no load: 115 % Un, current circuit open, one hour (the ADC on qemu-arm: 10 minutes)
            creep = _scenario(fe, 0.0, 0.0, 600 if fe == "adc" and runtime == "qemu-arm" else 3600, 1.15 * UN)
            cases.append(pool.submit(run, tmp_path, fe + "-creep", creep, **rt))
        # the ADC's starting current over one minute (76.7 mWh)
        cases.append(pool.submit(run, tmp_path, "adc-start60", _scenario("adc", 0.004 * IB, 0.0, 60), **rt))
        res = [c.result() for c in cases]
    true_mwh = UN * 0.004 * IB * SECONDS / 3.6  # 1533 mWh
    errs = []
    for fe, start, creep in (("atm90e26", res[0], res[1]), ("adc", res[2], res[3])):
        errs.append((fe, "20 min", (registered_mwh(start) - true_mwh) * 100.0 / true_mwh))
        assert creep["registers"][4:] == [0] * (len(creep["registers"]) - 4), creep
        assert creep["imp_mwh"] == [0, 0, 0, 0] and creep["q"] == [0, 0, 0, 0]
    true60 = UN * 0.004 * IB * 60 / 3.6
    errs.append(("adc", "60 s", (registered_mwh(res[4]) - true60) * 100.0 / true60))
    print("\nstarting current 0.004 Ib PF 1 (%s): %s" % (runtime or "default runtime", errs))
    for fe, span, e in errs:
        assert abs(e) <= START_PCT, (fe, span, e)
