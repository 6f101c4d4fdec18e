"""ATM90E26 metering-chip driver: verified SPI frames, calibration, allocation-free polling.

``ATM90E26(spi, cs, sleep_ms=None)`` takes its bus: ``spi`` has machine.SPI's
``write_readinto(out, in)`` (the board configures mode 3, MSB first, <= 160 kHz)
and ``cs`` has machine.Pin's ``value(v)``. The same code drives the real chip and
firmware/emulator/atm90e26_model.py.

Every transfer is one 24-clock frame (R/W bit, 7-bit address, 16 data bits) and
is verified by reading LastSPIData (0x06). On a mismatch the driver re-reads
LastSPIData until two reads agree (at most MAX_RETRIES times): the chip keeps the
value there, so even a clear-on-read register (energy, SysStatus) is recovered.
(LastSPIData cannot reveal a corrupted address byte: no driver can, on this chip.)
A transfer that cannot be confirmed counts one ``bad_reads`` and the sample is
skipped (poll() returns False); it never raises in the measurement path.

Energy units (the meter's energy module converts, carrying remainders):
  1 count = 0.1 CF pulse; Wh = count * 100 / MC (MC = meter constant, imp/kWh).
  The chip registers are 16 bits and wrap at 0xFFFF, so poll at least once per
  65535 counts of the largest expected load: at MC 3200 that is 2048 Wh between
  polls (about 9 min at 60 A x 230 V, 1 h at 2 kW). A register read resets it.
"""

from firmware import atm90e26_reg as reg

MAX_RETRIES = 3  # extra LastSPIData reads (or write attempts) after a mismatch
POLL_SIZE = 12  # len(out) for poll()

# poll() output layout (contract with the meter loop)
OUT_AP = 0  # forward active energy, counts (0.1 pulse)
OUT_AN = 1  # reverse active energy, counts
OUT_RP = 2  # forward reactive energy, counts
OUT_RN = 3  # reverse reactive energy, counts
OUT_URMS = 4  # 0.01 V
OUT_IRMS = 5  # L-line current, mA
OUT_PMEAN = 6  # W, signed
OUT_QMEAN = 7  # var, signed
OUT_PF = 8  # power factor x1000, signed
OUT_FREQ = 9  # 0.01 Hz
OUT_IRMS_N = 10  # neutral current, mA
OUT_SYSSTATUS = 11  # SysStatus bits (reg.SYS_*); read clears them in the chip

_ENERGY_ADDRS = bytes((reg.APENERGY, reg.ANENERGY, reg.RPENERGY, reg.RNENERGY))
# measurement registers read by poll() into out[4..11], in that order
_MEAS_ADDRS = bytes(
    (reg.URMS, reg.IRMS, reg.PMEAN, reg.QMEAN, reg.POWERF, reg.FREQ, reg.IRMS2, reg.SYSSTATUS)
)
_READ_LAST = reg.READ_BIT | reg.LASTSPIDATA

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


class CalibrationError(Exception):
    """The chip rejected or did not take the calibration (fatal: the meter reports it)."""


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


def to_signed(word):
    """Two's complement 16-bit word -> int."""
    return word - 0x10000 if word & reg.SIGN_BIT else word


def from_sign_magnitude(word):
    """Sign-magnitude 16-bit word (PowerF, Pangle, Lphi) -> int."""
    return -(word & reg.MAGNITUDE_MASK) if word & reg.SIGN_BIT else word


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


def _noop_sleep(_ms):
    return None


class ATM90E26:
    """One ATM90E26 on an SPI bus with its own chip-select pin."""

    def __init__(self, spi, cs, sleep_ms=None):
        self._spi = spi
        self._cs = cs
        self._sleep_ms = sleep_ms or _noop_sleep  # boards pass time.sleep_ms
        self._out = bytearray(3)
        self._in = bytearray(3)
        self._acc = [0, 0, 0, 0]  # energy counts read but not yet handed out by poll()
        self._lost = -1  # energy register whose unconfirmed value still sits in LastSPIData
        self._meas = [0] * len(_MEAS_ADDRS)
        self.bad_reads = 0  # transfers that could not be confirmed (sample skipped)
        self.retries = 0  # transfers that needed a second look at LastSPIData
        self.en_status = reg.DEF_ENSTATUS  # last EnStatus read by poll() (reg.EN_* bits)
        self.cs1 = -1  # checksums written by the last calibrate()
        self.cs2 = -1
        cs.value(1)

    # --- frames ---

    def _xfer(self, first, data):
        ob = self._out
        ib = self._in
        ob[0] = first
        ob[1] = data >> 8
        ob[2] = data & 0xFF
        self._cs.value(0)
        self._spi.write_readinto(ob, ib)
        self._cs.value(1)
        return (ib[1] << 8) | ib[2]

    def _read(self, addr):
        v = self._xfer(reg.READ_BIT | addr, 0)
        prev = self._xfer(_READ_LAST, 0)
        if v == prev:
            return v
        self.retries += 1
        for _ in range(MAX_RETRIES):  # the chip still holds the true value in LastSPIData
            e = self._xfer(_READ_LAST, 0)
            if e == v or e == prev:
                return e
            prev = e
        self.bad_reads += 1
        return -1

    def _read_last(self):
        """LastSPIData confirmed by two equal reads, or -1 (and bad_reads += 1)."""
        prev = self._xfer(_READ_LAST, 0)
        for _ in range(MAX_RETRIES):
            e = self._xfer(_READ_LAST, 0)
            if e == prev:
                return e
            prev = e
        self.bad_reads += 1
        return -1

    def read(self, addr):
        """Register value confirmed through LastSPIData, or -1 (and bad_reads += 1)."""
        self._lost = -1  # this frame overwrites LastSPIData
        return self._read(addr)

    def write(self, addr, value):
        """Write a word and confirm it through LastSPIData; retried; True when confirmed."""
        value &= reg.WORD_MASK
        self._lost = -1
        for _ in range(MAX_RETRIES + 1):
            self._xfer(addr & reg.ADDR_MASK, value)
            if self._xfer(_READ_LAST, 0) == value:
                return True
            self.retries += 1
        return False

    # --- calibration ---

    def _must_write(self, addr, value):
        if not self.write(addr, value):
            raise CalibrationError("write of 0x%04X to register 0x%02X not confirmed" % (value, addr))

    def _must_read(self, addr):
        v = self.read(addr)
        if v < 0:
            raise CalibrationError("read of register 0x%02X not confirmed" % addr)
        return v

    def write_calibration(self, cal=None):
        """Soft reset, then write both calibration blocks with their checksums; return (cs1, cs2)."""
        cal_words, adj_words, funcen, sagth = calibration_words(cal)
        self._xfer(reg.SOFTRESET, reg.SOFTRESET_CODE)  # LastSPIData is reset too: not verifiable
        self._sleep_ms(reg.RESET_WAIT_MS)
        self._must_write(reg.FUNCEN, funcen)
        self._must_write(reg.SAGTH, sagth)
        cs1 = checksum(cal_words)
        self._must_write(reg.CALSTART, reg.START_CODE)
        for i in range(len(cal_words)):  # PLconstH before PLconstL (H takes effect on L)
            self._must_write(reg.PLCONSTH + i, cal_words[i])
        self._must_write(reg.CS1, cs1)
        cs2 = checksum(adj_words)
        self._must_write(reg.ADJSTART, reg.START_CODE)
        for i in range(len(adj_words)):
            self._must_write(reg.UGAIN + i, adj_words[i])
        self._must_write(reg.CS2, cs2)
        self.cs1 = cs1
        self.cs2 = cs2
        return cs1, cs2

    def check_calibration(self):
        """Write 0x8765 to CalStart and AdjStart and raise CalibrationError on CalErr/AdjErr."""
        self._must_write(reg.CALSTART, reg.CHECK_CODE)
        self._must_write(reg.ADJSTART, reg.CHECK_CODE)
        st = self._must_read(reg.SYSSTATUS)
        if st & reg.SYS_CALERR:
            raise CalibrationError("CalErr: chip rejected CS1 (SysStatus 0x%04X), metering stopped" % st)
        if st & reg.SYS_ADJERR:
            raise CalibrationError("AdjErr: chip rejected CS2 (SysStatus 0x%04X), measurements frozen" % st)
        return st

    def calibrate(self, cal=None):
        """Full sequence: reset, both blocks, CS1/CS2 read back and compared, 0x8765 check.

        ``cal`` is a plain dict, see calibration_words() for keys and defaults.
        Raises CalibrationError (fatal) on a rejected write, a checksum the chip
        computes differently (a register did not take its value) or CalErr/AdjErr.
        """
        cs1, cs2 = self.write_calibration(cal)
        for addr, want in ((reg.CS1, cs1), (reg.CS2, cs2)):
            got = self._must_read(addr)
            if got != want:
                raise CalibrationError(
                    "checksum 0x%02X read back 0x%04X, computed 0x%04X" % (addr, got, want)
                )
        return self.check_calibration()

    # --- measurement loop (no allocation) ---

    def poll(self, out):
        """Read energy counts and measurements into ``out`` (len >= POLL_SIZE); False on a bad read.

        Layout: OUT_AP, OUT_AN, OUT_RP, OUT_RN energy counts since the last
        successful poll (0.1 pulse each; Wh = count * 100 / MC); OUT_URMS 0.01 V;
        OUT_IRMS mA; OUT_PMEAN W and OUT_QMEAN var (signed); OUT_PF x1000
        (signed); OUT_FREQ 0.01 Hz; OUT_IRMS_N mA; OUT_SYSSTATUS bits.

        All four energy registers are read on every poll, not only when EnStatus
        RevP/RevQ flips: the direction at poll time says nothing about a brief
        reversal between polls, and two extra frames cost less than a missed
        count. EnStatus is read into ``self.en_status``. Counts already read when
        a later read fails are kept and handed out by the next successful poll;
        an energy read that fails (the register is already cleared) is recovered
        from LastSPIData at the start of the next poll, provided no other frame
        went to the chip in between. ``out`` is only written on success.
        """
        acc = self._acc
        lost = self._lost
        if lost >= 0:  # a cleared energy register whose read failed: its value is in LastSPIData
            v = self._read_last()
            if v < 0:
                return False
            acc[lost] += v
            self._lost = -1
        for i in range(4):
            v = self._read(_ENERGY_ADDRS[i])
            if v < 0:
                self._lost = i
                return False
            acc[i] += v
        v = self._read(reg.ENSTATUS)
        if v < 0:
            return False
        self.en_status = v
        meas = self._meas
        for i in range(len(_MEAS_ADDRS)):
            v = self._read(_MEAS_ADDRS[i])
            if v < 0:
                return False
            meas[i] = v
        for i in range(4):
            out[i] = acc[i]
            acc[i] = 0
        out[OUT_URMS] = meas[0]
        out[OUT_IRMS] = meas[1]
        out[OUT_PMEAN] = to_signed(meas[2])
        out[OUT_QMEAN] = to_signed(meas[3])
        out[OUT_PF] = from_sign_magnitude(meas[4])
        out[OUT_FREQ] = meas[5]
        out[OUT_IRMS_N] = meas[6]
        out[OUT_SYSSTATUS] = meas[7]
        return True
