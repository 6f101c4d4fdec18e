"""ATM90E26 metering-chip driver: verified SPI frames, calibration, allocation-free polling.

``ATM90E26(spi, cs, sleep_ms=None)`` takes its bus: ``spi`` has machine.SPI's
``write_readinto(out, in)`` (the board configures mode 3, MSB first, <= 160 kHz)
and ``cs`` has machine.Pin's ``value(v)``. The same code drives the real chip and
emulator/atm90e26_model.py.

Every transfer is one 24-clock frame (R/W bit, 7-bit address, 16 data bits) and
is verified by reading LastSPIData (0x06). On a mismatch the driver re-reads
LastSPIData until two reads agree (at most MAX_RETRIES times): the chip keeps the
value there, so even a clear-on-read register (energy, SysStatus) is recovered.
(LastSPIData cannot reveal a corrupted address byte: no driver can, on this chip.)
A transfer that cannot be confirmed counts one ``bad_reads`` and the sample is
skipped (poll() returns False); it never raises in the measurement path.

Calibration (the register blocks, their checksums, the pure helpers
checksum/pl_constant/adjust_gain/energy_gain/phase_comp/calibration_words)
lives in firmware/atm90e26_cal.py, imported by ``calibrate()`` only: a board
drops it after boot. Its helpers stay importable from here (module
``__getattr__``).

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
# register-map values the driver needs after import (the map itself can then be unloaded)
_READ_BIT = reg.READ_BIT
_ADDR_MASK = reg.ADDR_MASK
_WORD_MASK = reg.WORD_MASK
_ENSTATUS = reg.ENSTATUS
_READ_LAST = reg.READ_BIT | reg.LASTSPIDATA
_DEF_ENSTATUS = reg.DEF_ENSTATUS
del reg

_CAL_NAMES = ("checksum", "pl_constant", "adjust_gain", "energy_gain", "phase_comp", "calibration_words")


class CalibrationError(Exception):
    """The chip rejected or did not take the calibration (fatal: the meter reports it)."""


def __getattr__(name):
    if name in _CAL_NAMES:
        from firmware import atm90e26_cal

        return getattr(atm90e26_cal, name)
    raise AttributeError(name)


def to_signed(word):
    """Two's complement 16-bit word -> int."""
    return word - 0x10000 if word & 0x8000 else word


def from_sign_magnitude(word):
    """Sign-magnitude 16-bit word (PowerF, Pangle, Lphi) -> int."""
    return -(word & 0x7FFF) if word & 0x8000 else word


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
        self.en_status = _DEF_ENSTATUS  # last EnStatus read by poll() (reg.EN_* bits)
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
        v = self._xfer(_READ_BIT | addr, 0)
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
        value &= _WORD_MASK
        self._lost = -1
        for _ in range(MAX_RETRIES + 1):
            self._xfer(addr & _ADDR_MASK, value)
            if self._xfer(_READ_LAST, 0) == value:
                return True
            self.retries += 1
        return False

    # --- calibration (firmware/atm90e26_cal.py, imported here only) ---

    def write_calibration(self, cal=None):
        """Soft reset, then write both calibration blocks with their checksums; return (cs1, cs2)."""
        from firmware import atm90e26_cal

        return atm90e26_cal.write_calibration(self, cal)

    def check_calibration(self):
        """Write 0x8765 to CalStart and AdjStart and raise CalibrationError on CalErr/AdjErr."""
        from firmware import atm90e26_cal

        return atm90e26_cal.check_calibration(self)

    def calibrate(self, cal=None):
        """Full sequence: reset, both blocks, CS1/CS2 read back and compared, 0x8765 check.

        ``cal`` is a plain dict, see atm90e26_cal.calibration_words() for keys
        and defaults. Raises CalibrationError (fatal) on a rejected write, a
        checksum the chip computes differently or CalErr/AdjErr.
        """
        from firmware import atm90e26_cal

        return atm90e26_cal.calibrate(self, cal)

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
        v = self._read(_ENSTATUS)
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
