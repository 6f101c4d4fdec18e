"""Register-level model of the ATM90E26, standing in for its SPI bus and chip select.

``m = ATM90E26Model()``; the driver gets ``ATM90E26(m, m.cs)``. Bytes clocked
while ``m.cs`` is low form 24-clock frames: a read is answered during the
frame (and clears a clear-on-read register at once); a write is committed when
CS rises after exactly 24 clocks (more discards it, as on the chip).
LastSPIData echoes every value read or written; invalid addresses read 0.

Calibration: the chip does not meter (energy) until CalStart is 0x5678 or a
checked 0x8765 (power-on 0x6886: metering off). 0x5678 to CalStart/AdjStart
resets its block to power-on values and opens it for writes; writes to a closed
block are discarded. 0x8765 compares the written CS1/CS2 with the chip's own;
a mismatch (or any other value) sets CalErr (metering stops) or AdjErr
(measurement registers freeze). SysStatus clears on read, but CalErr/AdjErr are
asserted again while the error lasts.

Physics, ``advance(seconds, urms_v, irms_a, phase_deg, harmonics, irms_n_a)``:
phase_deg > 0 means current lags (inductive, Q > 0). Harmonics are
``[order, rel_v, rel_i, phase_deg]`` adding rel_v*U*rel_i*I*cos/sin(phase_h).
Sensor errors ``gain_error_u``/``gain_error_i`` (fractions) and
``phase_error_deg`` (a delay: order h sees h times it) are what calibration
corrects: energy/power gain = (1+eu)(1+ei)(1 + Lgain/2**15); phase error minus
Lphi (sign-magnitude, reg.LPHI_LSB_PER_DEG per degree); Urms scaled by
Ugain/0x6720, Irms by IgainL/0x7A13, neutral Irms by IgainN/0x7530. Model
units (unverified for the real chip, whose units depend on the front end):
PStartTh/PNolTh/QStartTh/QNolTh 1 mW (var) per LSB, so the default 0x08BD starts
at 2.237 W (0.002 Ib at 220 V, 5 A); PoffsetL/QoffsetL two's complement 1 mW
added after the gain; ``power_offset_w`` is a creep source. Uoffset/Ioffset*,
Ngain/Nphi, MMode, FuncEn are stored (and checksummed) only. Neutral power
registers use irms_n_a with no sensor errors.

Energy: the front end is designed for ``meter_constant`` at PL =
pl(meter_constant, un, ib); the pulse rate is meter_constant * PL_design /
PL_reg. Energy goes into a signed residue in exact integers (mWs scaled by the
reduced rate; a float carries only the sub-mWs fraction, in [0, 1)); forward
and reverse cancel inside the residue. While |P| is below max(PStartTh, PNolTh)
nothing accumulates (no creep) and EnStatus Pnoload is set; likewise Q.
``total_counts[addr]`` counts every LSB ever emitted per energy register.
Fault injection: ``fail_next_reads = n`` corrupts the data of the next n read
frames, each differently (the chip's LastSPIData stays right), after
``fail_skip`` clean ones; ``fail_next_writes = n`` corrupts the next n written
words as the chip receives them.
"""

import math

from firmware import atm90e26_reg as reg

_ENERGY = (reg.APENERGY, reg.ANENERGY, reg.ATENERGY, reg.RPENERGY, reg.RNENERGY, reg.RTENERGY)
_VALID = bytearray(128)
for _a in (
    list(range(0x00, 0x05))
    + [reg.LASTSPIDATA, reg.LSB]
    + list(range(0x20, 0x2D))
    + list(range(0x30, 0x3C))
    + list(range(0x40, 0x47))
    + list(range(0x48, 0x50))
    + [0x68, 0x6A, 0x6B, 0x6D, 0x6E, 0x6F]
):
    _VALID[_a] = 1
_DEFAULTS = (
    (reg.FUNCEN, reg.DEF_FUNCEN),
    (reg.SAGTH, reg.DEF_SAGTH),
    (reg.CALSTART, reg.POWERON_START),
    (reg.ADJSTART, reg.POWERON_START),
    (reg.ENSTATUS, reg.DEF_ENSTATUS),
)
_CAL_DEFAULTS = (
    (reg.PLCONSTH, reg.DEF_PLCONSTH),
    (reg.PLCONSTL, reg.DEF_PLCONSTL),
    (reg.PSTARTTH, reg.DEF_PSTARTTH),
    (reg.QSTARTTH, reg.DEF_QSTARTTH),
    (reg.MMODE, reg.DEF_MMODE),
)
_ADJ_DEFAULTS = ((reg.UGAIN, reg.DEF_UGAIN), (reg.IGAINL, reg.DEF_IGAINL), (reg.IGAINN, reg.DEF_IGAINN))
_MWS_PER_PULSE_KWH = 360000000  # mWs per LSB = 3.6e9 mWs/kWh / (MC * 10 LSB/pulse) -> 3.6e8 / MC
_OFF, _RUN, _ERR = 0, 1, 2


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def _signed(w):
    return w - 0x10000 if w & 0x8000 else w


def _sm(x):
    """float -> 16-bit sign-magnitude word, rounded and saturated."""
    x = round(x)
    if x < 0:
        return 0x8000 | (-x if x > -0x7FFF else 0x7FFF)
    return x if x < 0x7FFF else 0x7FFF


def _tc(x):
    """float -> 16-bit two's complement word, rounded and saturated."""
    x = round(x)
    if x < 0:
        return (x if x > -0x8000 else -0x8000) & 0xFFFF
    return x if x < 0x7FFF else 0x7FFF


def _u16(x):
    x = round(x)
    return 0 if x < 0 else (x if x < 0xFFFF else 0xFFFF)


def _block_checksum(regs, first, last):
    s = 0
    x = 0
    for a in range(first, last + 1):
        hi = regs[a] >> 8
        lo = regs[a] & 0xFF
        s += hi + lo
        x ^= hi ^ lo
    return (x << 8) | (s & 0xFF)


class _ChipSelect:
    """The model's CS pin, with machine.Pin's value()."""

    def __init__(self, model):
        self._m = model

    def value(self, v=None):
        if v is None:
            return 0 if self._m._selected else 1
        self._m._select(not v)


class ATM90E26Model:
    """The chip plus its analog front end; also the SPI bus object the driver writes to.

    Sensor attributes (gain_error_u, gain_error_i, phase_error_deg,
    power_offset_w) take effect at the next register write (e.g. calibrate());
    freq_hz at every advance().
    """

    def __init__(
        self,
        meter_constant=3200,
        un=220,
        ib=5,
        gain_error_u=0.0,
        gain_error_i=0.0,
        phase_error_deg=0.0,
        power_offset_w=0.0,
        freq_hz=50.0,
    ):
        self.meter_constant = meter_constant
        self.pl_design = reg.PL_K * reg.DEF_GL * reg.DEF_VL * reg.DEF_VU // (meter_constant * un * ib)
        self.gain_error_u = gain_error_u
        self.gain_error_i = gain_error_i
        self.phase_error_deg = phase_error_deg
        self.power_offset_w = power_offset_w
        self.freq_hz = freq_hz
        self.cs = _ChipSelect(self)
        self.fail_next_reads = 0
        self.fail_skip = 0  # clean read frames before fail_next_reads starts
        self.fail_next_writes = 0
        self.frames = 0  # 24-clock frames completed (reads and writes)
        self.total_counts = {a: 0 for a in _ENERGY}
        self._selected = False
        self._pos = 0
        self._first = 0
        self._rdata = 0
        self._wdata = 0
        self._key = None
        self._cfg = False
        self._power_on()

    # --- registers ---

    def _power_on(self):
        self.regs = [0] * 128
        for a, v in _DEFAULTS + _CAL_DEFAULTS + _ADJ_DEFAULTS:
            self.regs[a] = v
        self._last = 0
        self._cs1_w = 0
        self._cs2_w = 0
        self._cal = _OFF
        self._adj = _RUN
        self._events = 0
        self._p_res = self._q_res = 0
        self._p_frac = self._q_frac = 0.0
        self._p = self._q = 0.0
        self._latch_pl()

    def _latch_pl(self):
        pl = (self.regs[reg.PLCONSTH] << 16) | self.regs[reg.PLCONSTL]
        num = _MWS_PER_PULSE_KWH * pl
        den = self.meter_constant * self.pl_design
        g = _gcd(num, den) or 1
        self._num = num // g  # mWs * den per LSB
        self._den = den // g
        self._cfg = False  # re-evaluate physics with the new registers

    def _reset_block(self, first, last, defaults):
        for a in range(first, last + 1):
            self.regs[a] = 0
        for a, v in defaults:
            self.regs[a] = v

    def _read_reg(self, addr):
        r = self.regs
        if not _VALID[addr]:
            v = 0
        elif addr == reg.SYSSTATUS:
            v = self._events | (reg.SYS_CALERR if self._cal == _ERR else 0)
            v |= reg.SYS_ADJERR if self._adj == _ERR else 0
            self._events = 0
        elif addr == reg.CS1:
            v = _block_checksum(r, reg.PLCONSTH, reg.MMODE)
        elif addr == reg.CS2:
            v = _block_checksum(r, reg.UGAIN, reg.QOFFSETN)
        elif addr == reg.LASTSPIDATA:
            return self._last
        else:
            v = r[addr]
            if reg.APENERGY <= addr <= reg.RTENERGY:
                r[addr] = 0
        self._last = v
        return v

    def _write_reg(self, addr, v):
        r = self.regs
        self._last = v
        if addr == reg.SOFTRESET:
            if v == reg.SOFTRESET_CODE:
                self._power_on()
        elif addr == reg.CALSTART or addr == reg.ADJSTART:
            cal = addr == reg.CALSTART
            r[addr] = v
            if v == reg.START_CODE:
                if cal:
                    self._reset_block(reg.PLCONSTH, reg.MMODE, _CAL_DEFAULTS)
                    self._latch_pl()
                else:
                    self._reset_block(reg.UGAIN, reg.QOFFSETN, _ADJ_DEFAULTS)
                state = _RUN
            elif v == reg.CHECK_CODE and cal:
                state = _RUN if self._cs1_w == _block_checksum(r, reg.PLCONSTH, reg.MMODE) else _ERR
            elif v == reg.CHECK_CODE:
                state = _RUN if self._cs2_w == _block_checksum(r, reg.UGAIN, reg.QOFFSETN) else _ERR
            else:
                state = _ERR
            if cal:
                self._cal = state
            else:
                self._adj = state
            self._cfg = False
        elif reg.PLCONSTH <= addr <= reg.MMODE:
            if r[reg.CALSTART] == reg.START_CODE:
                r[addr] = v
                if addr == reg.PLCONSTL:  # PLconstH takes effect with PLconstL
                    self._latch_pl()
                self._cfg = False
        elif reg.UGAIN <= addr <= reg.QOFFSETN:
            if r[reg.ADJSTART] == reg.START_CODE:
                r[addr] = v
                self._cfg = False
        elif addr == reg.CS1:
            self._cs1_w = v
        elif addr == reg.CS2:
            self._cs2_w = v
        elif addr == reg.FUNCEN or addr == reg.SAGTH or addr == reg.SMALLPMOD:
            r[addr] = v

    # --- SPI bus (no allocation: the driver polls under heap_lock) ---

    def _select(self, low):
        if not low and self._selected:
            if self._pos == 3 and not self._first & reg.READ_BIT:
                w = self._wdata
                if self.fail_next_writes > 0:
                    self.fail_next_writes -= 1
                    w ^= 0x8000 | (self.fail_next_writes & 0x7FFF)
                self._write_reg(self._first & reg.ADDR_MASK, w)
                self.frames += 1
        self._selected = low
        self._pos = 0

    def write_readinto(self, out, inb):
        for i in range(len(out)):
            if not self._selected:
                inb[i] = 0xFF  # MISO released
                continue
            b = out[i]
            pos = self._pos
            if pos == 0:
                self._first = b
                inb[i] = 0
                if b & reg.READ_BIT:
                    v = self._read_reg(b & reg.ADDR_MASK)
                    if self.fail_next_reads > 0:
                        if self.fail_skip > 0:
                            self.fail_skip -= 1
                        else:
                            self.fail_next_reads -= 1
                            v ^= 0x8000 | (self.fail_next_reads & 0x7FFF)  # differs frame to frame
                    self._rdata = v
            elif pos < 3 and self._first & reg.READ_BIT:
                inb[i] = (self._rdata >> 8) if pos == 1 else (self._rdata & 0xFF)
                if pos == 2:
                    self.frames += 1
            else:
                inb[i] = 0
                self._wdata = ((self._wdata << 8) | b) & 0xFFFF
            self._pos = pos + 1

    # --- physics ---

    def _configure(self):
        """Constants from the calibration registers and sensor errors (after any register write)."""
        r = self.regs
        gu = 1.0 + self.gain_error_u
        gi = 1.0 + self.gain_error_i
        self._lgf = 1.0 + _signed(r[reg.LGAIN]) / reg.LGAIN_ONE
        self._lg = self._lgf * gu * gi
        lphi = r[reg.LPHI]
        lphi = (-(lphi & reg.LPHI_MAX) if lphi & 0x8000 else lphi & reg.LPHI_MAX) / reg.LPHI_LSB_PER_DEG
        self._dphi = self.phase_error_deg - lphi
        self._ku = gu * r[reg.UGAIN] / reg.DEF_UGAIN * 100  # Urms register per true volt
        self._ki = gi * r[reg.IGAINL] / reg.DEF_IGAINL * 1000
        self._kin = r[reg.IGAINN] / reg.DEF_IGAINN * 1000
        self._poff = self.power_offset_w + _signed(r[reg.POFFSETL]) / 1000.0
        self._qoff = _signed(r[reg.QOFFSETL]) / 1000.0
        self._pth = max(r[reg.PSTARTTH], r[reg.PNOLTH]) / 1000.0
        self._qth = max(r[reg.QSTARTTH], r[reg.QNOLTH]) / 1000.0
        self._cfg = True

    def _evaluate(self, urms_v, irms_a, phase_deg, harmonics, irms_n_a):
        r = self.regs
        dphi = self._dphi
        ui = urms_v * irms_a
        ang = math.radians(phase_deg + dphi)
        p = ui * math.cos(ang)
        q = ui * math.sin(ang)
        sv = si = 1.0
        for h in harmonics:
            a = math.radians(h[3] + h[0] * dphi)
            k = h[1] * h[2] * ui
            p += k * math.cos(a)
            q += k * math.sin(a)
            sv += h[1] * h[1]
            si += h[2] * h[2]
        p = p * self._lg + self._poff
        q = q * self._lg + self._qoff
        self._p = p if (p if p >= 0 else -p) >= self._pth else 0.0
        self._q = q if (q if q >= 0 else -q) >= self._qth else 0.0
        old = r[reg.ENSTATUS]
        en = old & (reg.EN_REVP | reg.EN_REVQ)  # direction holds through no-load
        if self._p:
            en = (en | reg.EN_REVP) if p < 0 else (en & ~reg.EN_REVP)
        if self._q:
            en = (en | reg.EN_REVQ) if q < 0 else (en & ~reg.EN_REVQ)
        chg = en ^ old
        if chg & reg.EN_REVP:
            self._events |= reg.SYS_REVPCHG
        if chg & reg.EN_REVQ:
            self._events |= reg.SYS_REVQCHG
        en |= reg.EN_LLINE | (0 if self._p else reg.EN_PNOLOAD) | (0 if self._q else reg.EN_QNOLOAD)
        r[reg.ENSTATUS] = en
        if self._adj == _ERR:
            return  # measurement registers frozen
        u = urms_v if sv == 1.0 else urms_v * math.sqrt(sv)  # true rms
        i = irms_a if si == 1.0 else irms_a * math.sqrt(si)
        i_n = i if irms_n_a is None else irms_n_a
        r[reg.URMS] = _u16(u * self._ku)
        r[reg.IRMS] = _u16(i * self._ki)
        r[reg.IRMS2] = _u16(i_n * self._kin)
        s = u * i * self._lg
        r[reg.PMEAN] = _tc(p)
        r[reg.QMEAN] = _tc(q)
        r[reg.SMEAN] = _tc(s)
        r[reg.POWERF] = _sm((p / s if -s <= p <= s else (1.0 if p > 0 else -1.0)) * 1000) if s else 0
        r[reg.PANGLE] = _sm(((phase_deg + dphi + 180.0) % 360.0 - 180.0) * 10)
        r[reg.FREQ] = _u16(self.freq_hz * 100)
        sn = u * i_n  # neutral channel: no sensor errors, fundamental angle
        a = math.radians(phase_deg)
        r[reg.PMEAN2] = _tc(sn * math.cos(a))
        r[reg.QMEAN2] = _tc(sn * math.sin(a))
        r[reg.SMEAN2] = _tc(sn)
        r[reg.POWERF2] = _sm(math.cos(a) * 1000)
        r[reg.PANGLE2] = _sm(((phase_deg + 180.0) % 360.0 - 180.0) * 10)
        if r[reg.URMS] < r[reg.SAGTH]:
            self._events |= reg.SYS_SAGWARN

    def _emit(self, fwd, rev, tot, n):
        r = self.regs
        a = fwd if n > 0 else rev
        n = abs(n)
        r[a] = (r[a] + n) & 0xFFFF
        r[tot] = (r[tot] + n) & 0xFFFF
        self.total_counts[a] += n
        self.total_counts[tot] += n

    def _integrate(self, res, frac, power, seconds):
        """Add power*seconds to a residue; return (residue, fraction, whole LSBs, signed)."""
        e = power * seconds * 1000.0 + frac
        ie = int(e)
        if ie > e:
            ie -= 1
        res += ie * self._den
        num = self._num
        n = res // num if res >= 0 else -((-res) // num)
        return res - n * num, e - ie, n

    def advance(self, seconds, urms_v, irms_a, phase_deg, harmonics=(), irms_n_a=None):
        """Let ``seconds`` pass at a constant load; update energy and measurement registers."""
        key = self._key
        if not self._cfg:
            self._configure()
            key = None
        if (
            key is None
            or key[0] != urms_v
            or key[1] != irms_a
            or key[2] != phase_deg
            or key[3] != harmonics
            or key[4] != irms_n_a
        ):
            self._key = (urms_v, irms_a, phase_deg, harmonics, irms_n_a)
            self._evaluate(urms_v, irms_a, phase_deg, harmonics, irms_n_a)
        if self._cal != _RUN or not self._num:
            return
        if self._p:
            self._p_res, self._p_frac, n = self._integrate(self._p_res, self._p_frac, self._p, seconds)
            if n:
                self._emit(reg.APENERGY, reg.ANENERGY, reg.ATENERGY, n)
        if self._q:
            self._q_res, self._q_frac, n = self._integrate(self._q_res, self._q_frac, self._q, seconds)
            if n:
                self._emit(reg.RPENERGY, reg.RNENERGY, reg.RTENERGY, n)
