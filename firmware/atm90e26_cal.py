"""ATM90E26 calibration: register blocks with checksums, the start/check sequence, pure helpers.

Boot-only: ``ATM90E26.calibrate()`` (firmware/atm90e26.py) imports this module,
and a board drops it after boot (firmware.app.unload). ``calibrate(drv, cal)``
soft-resets the chip, writes both calibration blocks with their CS1/CS2
checksums, reads the checksums back and checks CalErr/AdjErr; the helpers
compute gains and phase compensation for a factory calibration.
"""

from firmware import atm90e26_reg as reg
from firmware.atm90e26 import CalibrationError, from_sign_magnitude, to_signed

# calibration dict: key -> (register, default). Words are 16-bit register values;
# keys in _SIGNED may also be given as negative ints (two's complement).
_CAL_KEYS = (  # registers 0x23..0x2B, in address order (0x21/0x22 come from the PL constant)
    ("lgain", reg.LGAIN, 0),
    ("lphi", reg.LPHI, 0),
    ("ngain", reg.NGAIN, 0),
    ("nphi", reg.NPHI, 0),
    ("pstartth", reg.PSTARTTH, reg.DEF_PSTARTTH),
    ("pnolth", reg.PNOLTH, 0),
    ("qstartth", reg.QSTARTTH, reg.DEF_QSTARTTH),
    ("qnolth", reg.QNOLTH, 0),
    ("mmode", reg.MMODE, reg.DEF_MMODE),
)
_ADJ_KEYS = (  # registers 0x31..0x3A, in address order
    ("ugain", reg.UGAIN, reg.DEF_UGAIN),
    ("igainl", reg.IGAINL, reg.DEF_IGAINL),
    ("igainn", reg.IGAINN, reg.DEF_IGAINN),
    ("uoffset", reg.UOFFSET, 0),
    ("ioffsetl", reg.IOFFSETL, 0),
    ("ioffsetn", reg.IOFFSETN, 0),
    ("poffsetl", reg.POFFSETL, 0),
    ("qoffsetl", reg.QOFFSETL, 0),
    ("poffsetn", reg.POFFSETN, 0),
    ("qoffsetn", reg.QOFFSETN, 0),
)
_OTHER_KEYS = (("funcen", reg.FUNCEN, reg.DEF_FUNCEN), ("sagth", reg.SAGTH, reg.DEF_SAGTH))
_SIGNED = (
    "lgain",
    "ngain",
    "uoffset",
    "ioffsetl",
    "ioffsetn",
    "poffsetl",
    "qoffsetl",
    "poffsetn",
    "qoffsetn",
)
_PL_KEYS = (
    ("meter_constant", 3200),
    ("un", 220),
    ("ib", 5),
    ("gl", reg.DEF_GL),
    ("vl", reg.DEF_VL),
    ("vu", reg.DEF_VU),
)


# --- pure helpers ---


def checksum(values):
    """CS1/CS2 of register words: low byte = sum of all bytes mod 256, high byte = XOR of all bytes."""
    s = 0
    x = 0
    for v in values:
        hi = (v >> 8) & 0xFF
        lo = v & 0xFF
        s += hi + lo
        x ^= hi ^ lo
    return (x << 8) | (s & 0xFF)


def pl_constant(mc, un_v, ib_a, gl=reg.DEF_GL, vl=reg.DEF_VL, vu=reg.DEF_VU):
    """PL constant int(838860800*GL*VL*VU / (MC*Un*Ib)); MC 3200, 220 V, 5 A -> 0x15D174.

    Write ``pl >> 16`` to PLconstH and ``pl & 0xFFFF`` to PLconstL.
    """
    if mc <= 0 or un_v <= 0 or ib_a <= 0:
        raise CalibrationError("pl_constant needs positive mc, un, ib (got %r, %r, %r)" % (mc, un_v, ib_a))
    num = reg.PL_K * gl * vl * vu
    den = mc * un_v * ib_a
    pl = num // den if isinstance(den, int) and isinstance(num, int) else int(num / den)
    if not 0 < pl <= 0xFFFFFFFF:
        raise CalibrationError("PL constant %r out of 32-bit range" % pl)
    return pl


def adjust_gain(measured, reference, old_gain):
    """New Ugain/IgainL/IgainN = int(reference / measured * old_gain), clamped to 16 bits.

    ``measured`` is the rms register read with ``old_gain`` while ``reference``
    (same units, e.g. 22000 for 220.00 V) is applied.
    """
    if measured <= 0:
        raise CalibrationError("adjust_gain: measured value must be > 0, got %r" % measured)
    g = int(reference * old_gain // measured)
    return 0 if g < 0 else (reg.WORD_MASK if g > reg.WORD_MASK else g)


def energy_gain(measured, reference, old_lgain=0):
    """New Lgain word so that ``measured`` energy (read with ``old_lgain``) becomes ``reference``.

    gain = 1 + Lgain/2**15; with old_lgain 0 this is the datasheet's -err/(1+err) * 2**15.
    """
    if measured <= 0 or reference <= 0:
        raise CalibrationError("energy_gain needs positive energies, got %r / %r" % (measured, reference))
    g = (reg.LGAIN_ONE + to_signed(old_lgain)) * reference / measured - reg.LGAIN_ONE
    g = int(g + 0.5) if g >= 0 else -int(-g + 0.5)
    if not -0x8000 <= g <= 0x7FFF:
        raise CalibrationError("energy gain error too large for Lgain (%d)" % g)
    return g & reg.WORD_MASK


def phase_comp(measured, reference, angle_deg=60.0, old_lphi=0):
    """New Lphi word from energies measured at a lagging load angle (default PF 0.5 inductive).

    Run after the gain is calibrated. ``measured``/``reference`` = cos(angle + d)/cos(angle),
    d being the residual phase error in degrees (current lagging more than it should).
    """
    import math

    c = measured / reference * math.cos(math.radians(angle_deg))
    if not -1.0 <= c <= 1.0:
        raise CalibrationError(
            "phase_comp: energy ratio %r impossible at %r deg" % (measured / reference, angle_deg)
        )
    d = math.degrees(math.acos(c)) - angle_deg
    deg = from_sign_magnitude(old_lphi) / reg.LPHI_LSB_PER_DEG + d
    mag = int(abs(deg) * reg.LPHI_LSB_PER_DEG + 0.5)
    if mag > reg.LPHI_MAX:
        raise CalibrationError("phase error %.3f deg beyond Lphi range" % deg)
    return (reg.SIGN_BIT | mag) if deg < 0 and mag else mag


def _word(cal, key, default):
    v = cal.get(key, default)
    lo = -0x8000 if key in _SIGNED else 0
    if not isinstance(v, int) or not lo <= v <= reg.WORD_MASK:
        raise CalibrationError("calibration %r must be an int in %d..0xFFFF, got %r" % (key, lo, v))
    return v & reg.WORD_MASK


def calibration_words(cal=None):
    """Validate a calibration dict; return (cal_words 0x21..0x2B, adj_words 0x31..0x3A, funcen, sagth).

    Keys (all optional, defaults = chip power-on values): meter_constant (imp/kWh,
    3200), un (V, 220), ib (A, 5), gl/vl/vu (front-end, 24/1/250) -> PL constant;
    lgain, lphi, ngain, nphi, pstartth, pnolth, qstartth, qnolth, mmode;
    ugain, igainl, igainn, uoffset, ioffsetl, ioffsetn, poffsetl, qoffsetl,
    poffsetn, qoffsetn; funcen, sagth. Unknown keys are rejected.
    """
    cal = cal or {}
    known = [k for k, _a, _d in _CAL_KEYS + _ADJ_KEYS + _OTHER_KEYS] + [k for k, _d in _PL_KEYS]
    for k in cal:
        if k not in known:
            raise CalibrationError("unknown calibration key %r" % (k,))
    pl_args = []
    for k, d in _PL_KEYS:
        v = cal.get(k, d)
        if not isinstance(v, (int, float)) or v <= 0:
            raise CalibrationError("calibration %r must be a positive number, got %r" % (k, v))
        pl_args.append(v)
    pl = pl_constant(*pl_args)
    cal_words = [pl >> 16, pl & reg.WORD_MASK] + [_word(cal, k, d) for k, _a, d in _CAL_KEYS]
    adj_words = [_word(cal, k, d) for k, _a, d in _ADJ_KEYS]
    return cal_words, adj_words, _word(cal, "funcen", reg.DEF_FUNCEN), _word(cal, "sagth", reg.DEF_SAGTH)


def never_calibrated(cal):
    """True when ``cal`` leaves every gain, phase and offset register (Lgain, Lphi, Ngain, Nphi and
    the whole CS2 block: Ugain, IgainL/N, the offsets) at the chip's power-on default: a meter that
    was never calibrated (its energy off by the sensors' errors, several %). A dict with a bad
    value is not judged here (calibrate() refuses it)."""
    try:
        cal_words, adj_words, _f, _s = calibration_words(cal)
        pl = {}
        for k, _d in _PL_KEYS:
            if k in cal:
                pl[k] = cal[k]
        dcal, dadj, _f, _s = calibration_words(pl)
    except CalibrationError:
        return False
    return cal_words[2:6] == dcal[2:6] and adj_words == dadj


def _must_write(drv, addr, value):
    if not drv.write(addr, value):
        raise CalibrationError("write of 0x%04X to register 0x%02X not confirmed" % (value, addr))


def _must_read(drv, addr):
    v = drv.read(addr)
    if v < 0:
        raise CalibrationError("read of register 0x%02X not confirmed" % addr)
    return v


def write_calibration(drv, cal=None):
    """Soft reset, then write both calibration blocks with their checksums; return (cs1, cs2)."""
    cal_words, adj_words, funcen, sagth = calibration_words(cal)
    drv._xfer(reg.SOFTRESET, reg.SOFTRESET_CODE)  # LastSPIData is reset too: not verifiable
    drv._sleep_ms(reg.RESET_WAIT_MS)
    _must_write(drv, reg.FUNCEN, funcen)
    _must_write(drv, reg.SAGTH, sagth)
    cs1 = checksum(cal_words)
    _must_write(drv, reg.CALSTART, reg.START_CODE)
    for i in range(len(cal_words)):  # PLconstH before PLconstL (H takes effect on L)
        _must_write(drv, reg.PLCONSTH + i, cal_words[i])
    _must_write(drv, reg.CS1, cs1)
    cs2 = checksum(adj_words)
    _must_write(drv, reg.ADJSTART, reg.START_CODE)
    for i in range(len(adj_words)):
        _must_write(drv, reg.UGAIN + i, adj_words[i])
    _must_write(drv, reg.CS2, cs2)
    drv.cs1 = cs1
    drv.cs2 = cs2
    return cs1, cs2


def check_calibration(drv):
    """Write 0x8765 to CalStart and AdjStart and raise CalibrationError on CalErr/AdjErr."""
    _must_write(drv, reg.CALSTART, reg.CHECK_CODE)
    _must_write(drv, reg.ADJSTART, reg.CHECK_CODE)
    st = _must_read(drv, reg.SYSSTATUS)
    if st & reg.SYS_CALERR:
        raise CalibrationError("CalErr: chip rejected CS1 (SysStatus 0x%04X), metering stopped" % st)
    if st & reg.SYS_ADJERR:
        raise CalibrationError("AdjErr: chip rejected CS2 (SysStatus 0x%04X), measurements frozen" % st)
    return st


def calibrate(drv, cal=None):
    """Full sequence: reset, both blocks, CS1/CS2 read back and compared, 0x8765 check.

    ``cal`` is a plain dict, see calibration_words() for keys and defaults.
    Raises CalibrationError (fatal) on a rejected write, a checksum the chip
    computes differently (a register did not take its value) or CalErr/AdjErr.
    """
    cs1, cs2 = write_calibration(drv, cal)
    for addr, want in ((reg.CS1, cs1), (reg.CS2, cs2)):
        got = _must_read(drv, addr)
        if got != want:
            raise CalibrationError("checksum 0x%02X read back 0x%04X, computed 0x%04X" % (addr, got, want))
    return check_calibration(drv)
