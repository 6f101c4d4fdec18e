"""Direct-ADC metering front end: Urms, Irms, P, Q, PF and frequency in integer fixed point.

The board samples a voltage and a current channel alternately (the current
sample a fraction of a sample period after its voltage sample) over a whole
number of mains cycles; ``ADCFrontEnd.compute`` turns those codes into the
measurement layout the meter loop reads (the same slots as the ATM90E26
driver): out[4] Urms 0.01 V, out[5] Irms mA, out[6] P W, out[7] Q var,
out[8] PF x1000 (signed like P), out[9] frequency 0.01 Hz, out[10] neutral
Irms mA (always 0: no neutral channel), out[11] status bits (0 = ok),
out[12] P mW, out[13] Q mvar (signed, full resolution, for energy
integration). out[0..3] are left untouched.

Calibration dict ``cal`` (every key optional; defaults match
emulator.adc_model for a 230 V / 60 A meter on a 12-bit ADC):
  v_scale  mV per LSB in Q16 (mV/LSB x 65536), default 13772114 (210.15 mV/LSB)
  i_scale  mA per LSB in Q16, default 3124109 (47.670 mA/LSB)
  phasecal Q14 fraction of a sample period by which the current sample lags
           its voltage sample; V' = V_prev + PHASECAL*(V - V_prev) with V_prev
           the voltage sample before the current sample and V the one after.
           0 = no correction; default 8192 (0.5: evenly interleaved); -16384..32767
  samples_per_cycle  nominal samples per mains cycle, multiple of 4, 8..256 (64)
  cycles   mains cycles per measurement, 1..64 (10); ``self.n`` = samples_per_cycle
           * cycles is the window to sample; compute() takes any whole number
           of cycles up to MAX_SAMPLES
  mains_hz nominal frequency, 50 or 60 (50)
  adc_bits ADC resolution 8..12 (12); boards using read_u16() shift right by 4
  duty     at most this % of the time is sampled, 1..50 (20)
  quiet_lsb  current-channel rms (LSB) from which one window per measurement
           is enough, 1..2047 (64: 3.05 A with the default i_scale)

A measurement is ``begin()``, ``add(vbuf, ibuf, n)`` per window, ``finish(out)``
(``compute`` is the one-window case). Every window is measured on its own (its
own DC offsets); out gets the means over the windows (P, Q and S summed in
quarter mW and rounded to the nearest mW once, at the end: each window's P
used to be truncated toward zero, 0.5 mW low on average), the status bits of
all of them and the mean of the measured frequencies. ``windows(dt_ms)`` says how many
windows the measurement of the dt_ms since the previous one takes: 1 when the
previous measurement's Irms was at least quiet_lsb, (quiet_lsb / Irms)**2
below it, never more than duty % of dt_ms nor MAX_WINDOWS (32); before the
first measurement the duty's count. It depends only on earlier windows, so
the choice cannot favour the noise of the windows it averages. A board
samples them back to back (hal.AdcSource.poll): with 10-cycle windows at
50 Hz and the default 10 s poll, 1 window (0.2 s) above quiet_lsb and up to
10 (2 s) at low current.

Why: at low current the energy error is the current channel's noise seen
through the voltage waveform, sum(v[k] n[k]) / N. The two channels' noise is
independent, so it has zero mean: nothing is biased and no offset or noise
power is left to remove (tests/firmware/test_adc_accuracy_props.py
test_low_current_error_is_zero_mean_noise: the mean of 400 windows is the
true P within its standard error at 0, 0.004 Ib and 0.05 Ib). But its
standard deviation, ~sigma * Vrms / sqrt(N), is the same number of watts at
every load: with 1 LSB rms on the 12-bit channels ~0.45 W per 10-cycle
window, 0.8 % of P at 0.05 Ib and 10 % at the 0.004 Ib starting current, and
only more samples reduce it. Through the emulator (30 s polls, 40 start
instants per point), one window per poll spread 0.15 % (one standard
deviation) at 0.05 Ib over 20 minutes and 4 % at the starting current over
60 s; with the defaults 0.025 % and 1.4 %. Above quiet_lsb (0.6 Ib) one
window's noise is < 0.07 % of P and a measurement stays one window.

Method (EmonLib/emonLibCM style, all integers below 2**30):
- pass 1: sums and min/max; the DC offset is the floor of the mean, so the
  residual mean of x = code - offset is in [0, 1) and is removed exactly
  from every sum (sum(xy)/n - mean(x)mean(y)) at the end.
- pass 2: sum x^2, y^2, x[k]y[k], x[k+1]y[k], x[k-d]y[k], x[k-d+1]y[k]
  (indices circular over the whole cycles, d = a quarter cycle). The skew
  interpolation is linear, so P = S0 + PHASECAL*(S1 - S0) needs no
  per-sample rounding; Q uses the quarter-cycle-delayed voltage the same way
  (positive Q: current lags). The interpolation's small gain loss at the
  fundamental, |1 - a + a e^{jwT}|, is folded into the power scale at start.
- bounds: |x|, |y| < 2**12, so every product < 2**24; products add up in
  blocks of 64 samples (< 2**30), and each block is folded into a two-limb
  accumulator (hi += s >> 15, lo += s & 0x7FFF); n <= 4096 keeps hi < 2**22.
  Means are taken by long division on the limbs with adaptive fraction bits,
  square roots by the bitwise method, scaling by a 15-bit-digit
  multiply-shift, so no intermediate reaches 2**30 and nothing allocates.
- on MicroPython both passes run as viper over array('H') buffers, from
  firmware.adc_viper (machine code in its .mpy: tools/mpy_build.py passes
  mpy-cross -march), imported only there; every value is the same as in the
  plain passes and far below 2**31, so 32-bit wrap cannot occur. Lists,
  CPython, and ports where adc_viper does not load use the plain-Python
  passes, which give identical integers (tested). ``FAST`` (module) and
  ``.fast`` (instance) say whether the viper passes are in use. Importing
  this module (with fixedpoint and adc_viper, .mpy, x64 unix port) peaks at
  ~13 KB of heap and keeps ~11 KB. Unix port, 640 samples: viper ~0.04 ms,
  plain ~0.9 ms per compute(). Fixed-point helpers: firmware.fixedpoint.
- frequency from the first and last zero crossing (either direction, half
  periods; 8 LSB hysteresis; Q8 interpolated positions against the exact
  mean); nominal and STATUS_NO_FREQ when fewer than two crossings or the
  result is off nominal by more than 25 %.
- accuracy against emulator.adc_model (1 LSB noise, 3rd/5th
  harmonics, 10-cycle windows over 10 s): active error <= 0.08 % from
  0.05 Ib to Imax at PF 1, 0.5 ind and 0.8 cap (seed 11; +-0.36 % across
  seeds at 0.05 Ib); reactive <= 0.5 %; see tests/firmware/test_adc_accuracy_props.py.
- compute() and finish() return True when out[11] is 0; no creep threshold is
  applied (noise gives zero-mean P around no load; the meter loop adds one).
"""

import math
from array import array

from micropython import const

from firmware import compat
from firmware.fixedpoint import frac_bits, isqrt, mean_fx, mulshift, round_div, scale_q, smean_fx, smulshift

adc_viper = None  # the viper passes (firmware.adc_viper) when this runtime can load them
if compat.MICROPYTHON:
    try:
        from firmware import adc_viper
    except (ImportError, ValueError, SyntaxError, NotImplementedError):
        # no viper on this port, or a .mpy built for another -march: the plain passes serve
        adc_viper = None
FAST = adc_viper is not None

URMS, IRMS, PMEAN, QMEAN, PF, FREQ, IRMS_N, STATUS, P_MW, Q_MVAR = 4, 5, 6, 7, 8, 9, 10, 11, 12, 13
OUT_LEN = 14
STATUS_V_CLIP = const(1)  # voltage channel hit an ADC rail
STATUS_I_CLIP = const(2)  # current channel hit an ADC rail
STATUS_NO_FREQ = const(4)  # frequency not measurable: nominal reported

MAX_SAMPLES = const(4096)
_BLOCK = const(64)  # samples per partial sum: 64 * (2**12)**2 < 2**30
_M15 = const(0x7FFF)
_PC_BITS = const(14)
_SCALE_BITS = const(16)
_HYST = const(8)  # zero-crossing hysteresis, LSB
# slots of the shared scratch array (firmware.adc_viper repeats them as consts, in its LAYOUT)
_A_N, _A_D, _A_OFFV, _A_OFFI = 0, 1, 2, 3
_A_VV, _A_II, _A_S0, _A_S1, _A_Q0, _A_Q1 = 4, 6, 8, 10, 12, 14  # (hi, lo) limb pairs
# zero crossings: count, then first and last as (k, x[k], x[k+1], direction +1 up / -1 down);
# x values of down crossings are stored negated, so every stored pair goes from < 0 to >= 0
_A_ZN, _A_ZK0, _A_ZX0, _A_ZY0, _A_ZK1, _A_ZX1, _A_ZY1, _A_ZD0, _A_ZD1 = 16, 17, 18, 19, 20, 21, 22, 23, 24
_A_SV, _A_SI, _A_VMIN, _A_VMAX, _A_IMIN, _A_IMAX = 25, 26, 27, 28, 29, 30
_A_LEN = 31
# slots of the per-measurement sums over its windows (two-limb pairs: hi, lo)
_S_K, _S_ST, _S_F, _S_FN = 0, 1, 2, 3  # windows, status bits (or), frequency sum, windows with a frequency
_S_U, _S_I, _S_P, _S_Q, _S_S = 4, 6, 8, 10, 12  # Urms mV, Irms mA; P, Q, S in quarter mW
_S_LEN = 14
_QBITS = const(2)  # P, Q and S carry 2 fraction bits until the mean over the windows is rounded
MAX_WINDOWS = const(32)
_DT_CAP_MS = const(300000)  # longer intervals take MAX_WINDOWS anyway; keeps dt * duty * Hz < 2**30

DEFAULTS = {
    "v_scale": 13772114,
    "i_scale": 3124109,
    "phasecal": 8192,
    "samples_per_cycle": 64,
    "cycles": 10,
    "mains_hz": 50,
    "adc_bits": 12,
    "duty": 20,
    "quiet_lsb": 64,
}
_RANGES = {
    "v_scale": (1, (1 << 30) - 1),
    "i_scale": (1, (1 << 30) - 1),
    "phasecal": (-16384, 32767),
    "samples_per_cycle": (8, 256),
    "cycles": (1, 64),
    "mains_hz": (50, 60),
    "adc_bits": (8, 12),
    "duty": (1, 50),
    "quiet_lsb": (1, 2047),
}


class ADCFrontEndError(ValueError):
    """Bad calibration or a compute() call that cannot be honoured."""


def _pass1_py(vbuf, ibuf, acc):
    n = acc[_A_N]
    sv = 0
    si = 0
    vmin = vmax = vbuf[0]
    imin = imax = ibuf[0]
    for k in range(n):
        v = vbuf[k]
        c = ibuf[k]
        sv += v
        si += c
        if v < vmin:
            vmin = v
        if v > vmax:
            vmax = v
        if c < imin:
            imin = c
        if c > imax:
            imax = c
    acc[_A_SV] = sv
    acc[_A_SI] = si
    acc[_A_VMIN] = vmin
    acc[_A_VMAX] = vmax
    acc[_A_IMIN] = imin
    acc[_A_IMAX] = imax


def _pass2_py(vbuf, ibuf, acc):
    n = acc[_A_N]
    d = acc[_A_D]
    ov = acc[_A_OFFV]
    oi = acc[_A_OFFI]
    hvv = lvv = hii = lii = h0 = l0 = h1 = l1 = hq0 = lq0 = hq1 = lq1 = 0
    bvv = bii = b0 = b1 = bq0 = bq1 = 0
    zn = zk0 = zx0 = zy0 = zk1 = zx1 = zy1 = zd0 = zd1 = 0
    armed = 0
    jd = n - d
    left = _BLOCK
    for k in range(n):
        x = vbuf[k] - ov
        y = ibuf[k] - oi
        j = k + 1
        if j == n:
            j = 0
        xn = vbuf[j] - ov
        jd1 = jd + 1
        if jd1 == n:
            jd1 = 0
        bvv += x * x
        bii += y * y
        b0 += x * y
        b1 += xn * y
        bq0 += (vbuf[jd] - ov) * y
        bq1 += (vbuf[jd1] - ov) * y
        jd = jd1
        if armed == 1 and x < 0 and xn >= 0 and j:
            armed = 0
            if zn == 0:
                zk0 = k
                zx0 = x
                zy0 = xn
                zd0 = 1
            zk1 = k
            zx1 = x
            zy1 = xn
            zd1 = 1
            zn += 1
        elif armed == -1 and x > 0 and xn <= 0 and j:
            armed = 0
            if zn == 0:
                zk0 = k
                zx0 = -x
                zy0 = -xn
                zd0 = -1
            zk1 = k
            zx1 = -x
            zy1 = -xn
            zd1 = -1
            zn += 1
        elif x < -_HYST:
            armed = 1
        elif x > _HYST:
            armed = -1
        left -= 1
        if left == 0 or j == 0:
            left = _BLOCK
            hvv += bvv >> 15
            lvv += bvv & _M15
            hii += bii >> 15
            lii += bii & _M15
            h0 += b0 >> 15
            l0 += b0 & _M15
            h1 += b1 >> 15
            l1 += b1 & _M15
            hq0 += bq0 >> 15
            lq0 += bq0 & _M15
            hq1 += bq1 >> 15
            lq1 += bq1 & _M15
            bvv = bii = b0 = b1 = bq0 = bq1 = 0
    acc[_A_VV] = hvv
    acc[_A_VV + 1] = lvv
    acc[_A_II] = hii
    acc[_A_II + 1] = lii
    acc[_A_S0] = h0
    acc[_A_S0 + 1] = l0
    acc[_A_S1] = h1
    acc[_A_S1 + 1] = l1
    acc[_A_Q0] = hq0
    acc[_A_Q0 + 1] = lq0
    acc[_A_Q1] = hq1
    acc[_A_Q1 + 1] = lq1
    acc[_A_ZN] = zn
    acc[_A_ZK0] = zk0
    acc[_A_ZX0] = zx0
    acc[_A_ZY0] = zy0
    acc[_A_ZK1] = zk1
    acc[_A_ZX1] = zx1
    acc[_A_ZY1] = zy1
    acc[_A_ZD0] = zd0
    acc[_A_ZD1] = zd1


class ADCFrontEnd:
    """Turns V/I sample buffers into measurements; see the module docstring for ``cal``."""

    def __init__(self, cal=None):
        cfg = dict(DEFAULTS)
        for key, value in (cal or {}).items():
            if key not in DEFAULTS:
                raise ADCFrontEndError("unknown calibration key %r" % (key,))
            cfg[key] = value
        for key in DEFAULTS:
            lo, hi = _RANGES[key]
            value = cfg[key]
            if type(value) is not int or not lo <= value <= hi:
                raise ADCFrontEndError("%s must be an int in %d..%d, got %r" % (key, lo, hi, value))
        spc = cfg["samples_per_cycle"]
        if spc % 4:
            raise ADCFrontEndError("samples_per_cycle must be a multiple of 4, got %d" % spc)
        if spc * cfg["cycles"] > MAX_SAMPLES:
            raise ADCFrontEndError("samples_per_cycle * cycles must be <= %d" % MAX_SAMPLES)
        self.cal = cfg
        self.n = spc * cfg["cycles"]  # samples per measurement
        self._spc = spc
        self._d = spc // 4  # a quarter cycle, for Q
        pc = cfg["phasecal"]
        self._pc_neg = pc < 0
        self._pc = -pc if pc < 0 else pc
        self._v_scale = cfg["v_scale"]
        self._i_scale = cfg["i_scale"]
        self._nominal = cfg["mains_hz"] * 100
        self._fs100 = spc * self._nominal
        # mW per LSB**2; the power sums also carry the interpolation gain at the fundamental
        s_scale = (cfg["v_scale"] / 65536.0) * (cfg["i_scale"] / 65536.0) / 1000.0
        a = pc / 16384.0
        gain = math.sqrt(1.0 - 2.0 * a * (1.0 - a) * (1.0 - math.cos(2.0 * math.pi / spc)))
        if s_scale / gain * 3.0 * (1 << (2 * cfg["adc_bits"])) >= (1 << 30):
            raise ADCFrontEndError("v_scale * i_scale too large: full-scale power overflows 2**30 mW")
        self._sq, self._sshift = scale_q(s_scale)
        self._pq, self._pshift = scale_q(s_scale / gain)
        self._acc = array("i", [0] * _A_LEN)
        self._sum = array("i", [0] * _S_LEN)
        # windows(dt) = dt * duty % / window length: dt * duty * mains_hz / (100_000 * cycles)
        self._win_num = cfg["duty"] * cfg["mains_hz"]
        self._win_den = 100000 * cfg["cycles"]
        # quiet_lsb rms on the current channel in mA (capped so its square stays below 2**30)
        self._quiet_ma = min(32767, cfg["quiet_lsb"] * cfg["i_scale"] >> _SCALE_BITS) or 1
        self.last_ma = -1  # Irms of the last measurement, mA (-1: none yet)
        self.fast = FAST  # viper passes for array buffers (MicroPython with firmware.adc_viper)

    def _interp(self, m0, m1):
        """m0 + PHASECAL * (m1 - m0), PHASECAL in Q14."""
        t = smulshift(m1 - m0, self._pc, _PC_BITS)
        return m0 - t if self._pc_neg else m0 + t

    def windows(self, dt_ms):
        """How many windows the measurement of the dt_ms ms since the last one takes: 1..MAX_WINDOWS.

        (quiet_ma / Irms of the last measurement)**2, rounded up (1 at or above quiet_ma; every
        window's noise is the same in W, so this keeps its share of P about level), but at most
        ``duty`` % of dt_ms; that many until a first measurement. dt_ms 0: one window.
        """
        if dt_ms <= 0:
            return 1
        if dt_ms > _DT_CAP_MS:
            dt_ms = _DT_CAP_MS
        k = (dt_ms * self._win_num + (self._win_den >> 1)) // self._win_den
        i = self.last_ma
        q = self._quiet_ma
        if i >= q:
            k = 1
        elif i > 0:
            ki = (q * q + i * i - 1) // (i * i)
            if ki < k:
                k = ki
        if k < 1:
            return 1
        return MAX_WINDOWS if k > MAX_WINDOWS else k

    def begin(self):
        """Start a measurement of one or more windows (``add`` each, then ``finish``)."""
        sums = self._sum
        for k in range(_S_LEN):
            sums[k] = 0

    def compute(self, vbuf, ibuf, n, out):
        """Fill ``out`` from n samples per channel (a whole number of cycles); True if status is 0."""
        self.begin()
        self.add(vbuf, ibuf, n)
        return self.finish(out)

    def add(self, vbuf, ibuf, n):
        """Measure one window of n samples per channel (a whole number of cycles) into the running sums."""
        if n <= 0 or n % self._spc or n > MAX_SAMPLES or n > len(vbuf) or n > len(ibuf):
            raise ADCFrontEndError(
                "n=%d must be a positive multiple of samples_per_cycle=%d, <= %d and the buffer lengths"
                % (n, self._spc, MAX_SAMPLES)
            )
        sums = self._sum
        if sums[_S_K] >= MAX_WINDOWS:
            raise ADCFrontEndError("at most %d windows per measurement" % MAX_WINDOWS)
        acc = self._acc
        acc[_A_N] = n
        acc[_A_D] = self._d
        if self.fast and type(vbuf) is array and type(ibuf) is array:
            adc_viper.pass1(vbuf, ibuf, acc)
            ov = acc[_A_SV] // n
            oi = acc[_A_SI] // n
            acc[_A_OFFV] = ov
            acc[_A_OFFI] = oi
            adc_viper.pass2(vbuf, ibuf, acc)
        else:
            _pass1_py(vbuf, ibuf, acc)
            ov = acc[_A_SV] // n
            oi = acc[_A_SI] // n
            acc[_A_OFFV] = ov
            acc[_A_OFFI] = oi
            _pass2_py(vbuf, ibuf, acc)
        # residual means of x and y, in [0, 1), Q15
        ux = ((acc[_A_SV] - ov * n) << 15) // n
        uy = ((acc[_A_SI] - oi * n) << 15) // n
        # rms: mean square with as many (even) fraction bits as fit, then isqrt
        fv = frac_bits(mean_fx(acc[_A_VV], acc[_A_VV + 1], n, 0), 29, 2)
        ms = mean_fx(acc[_A_VV], acc[_A_VV + 1], n, fv) - ((ux * ux) >> (30 - fv))
        rv = isqrt(ms if ms > 0 else 0)  # LSB * 2**(fv/2)
        fi = frac_bits(mean_fx(acc[_A_II], acc[_A_II + 1], n, 0), 29, 2)
        ms = mean_fx(acc[_A_II], acc[_A_II + 1], n, fi) - ((uy * uy) >> (30 - fi))
        ri = isqrt(ms if ms > 0 else 0)
        _add2(sums, _S_U, mulshift(rv, self._v_scale, _SCALE_BITS + (fv >> 1)))
        _add2(sums, _S_I, mulshift(ri, self._i_scale, _SCALE_BITS + (fi >> 1)))
        # active and reactive: interpolated cross sums, DC residual removed
        big = 0
        for slot in range(_A_S0, _A_Q1 + 2, 2):  # the four cross sums
            m = smean_fx(acc[slot], acc[slot + 1], n, 0)
            if m < 0:
                m = -m
            if m > big:
                big = m
        f = frac_bits(big, 26, 1)
        dc = (ux * uy) >> (30 - f)
        pm = self._interp(
            smean_fx(acc[_A_S0], acc[_A_S0 + 1], n, f), smean_fx(acc[_A_S1], acc[_A_S1 + 1], n, f)
        )
        qm = self._interp(
            smean_fx(acc[_A_Q0], acc[_A_Q0 + 1], n, f), smean_fx(acc[_A_Q1], acc[_A_Q1 + 1], n, f)
        )
        # P, Q and S in quarter mW: rounded to the mW only after the windows are summed
        _add2(sums, _S_P, smulshift(pm - dc, self._pq, f + self._pshift - _QBITS))
        _add2(sums, _S_Q, smulshift(qm - dc, self._pq, f + self._pshift - _QBITS))
        _add2(sums, _S_S, mulshift(rv * ri, self._sq, (fv >> 1) + (fi >> 1) + self._sshift - _QBITS))
        status = 0
        if acc[_A_VMIN] == 0 or acc[_A_VMAX] == (1 << self.cal["adc_bits"]) - 1:
            status |= STATUS_V_CLIP
        if acc[_A_IMIN] == 0 or acc[_A_IMAX] == (1 << self.cal["adc_bits"]) - 1:
            status |= STATUS_I_CLIP
        freq = self._freq(acc, n, ux >> 7)
        if freq == 0:
            status |= STATUS_NO_FREQ
        else:
            sums[_S_F] += freq
            sums[_S_FN] += 1
        sums[_S_ST] |= status
        sums[_S_K] += 1

    def finish(self, out):
        """Fill ``out`` with the means over the windows added since ``begin``; True if status is 0."""
        if len(out) < OUT_LEN:
            raise ADCFrontEndError("out must have %d slots, got %d" % (OUT_LEN, len(out)))
        sums = self._sum
        k = sums[_S_K]
        if k == 0:
            raise ADCFrontEndError("finish() without a window")
        kq = k << _QBITS
        u_mv = _rmean(sums, _S_U, k)
        p_mw = _rmean(sums, _S_P, kq)
        q_mvar = _rmean(sums, _S_Q, kq)
        s_mw = _rmean(sums, _S_S, kq)
        status = sums[_S_ST]
        fn = sums[_S_FN]
        freq = round_div(sums[_S_F], fn) if fn else self._nominal
        out[URMS] = (u_mv + 5) // 10
        i_ma = _rmean(sums, _S_I, k)
        self.last_ma = i_ma
        out[IRMS] = i_ma
        out[PMEAN] = round_div(p_mw, 1000)
        out[QMEAN] = round_div(q_mvar, 1000)
        out[PF] = _pf(p_mw, s_mw)
        out[FREQ] = freq
        out[IRMS_N] = 0
        out[STATUS] = status
        out[P_MW] = p_mw
        out[Q_MVAR] = q_mvar
        return status == 0

    def _freq(self, acc, n, xbar):
        """Frequency in 0.01 Hz from the first and last zero crossing (half periods); 0 if unmeasurable.

        xbar is the residual DC of the voltage samples in Q8, so the crossings are of the true zero.
        """
        zn = acc[_A_ZN]
        if zn < 2 or zn - 1 > 4 * (n // self._spc):
            return 0
        x0 = acc[_A_ZX0]
        x1 = acc[_A_ZX1]
        p0 = (acc[_A_ZK0] << 8) + (((-x0 << 8) + acc[_A_ZD0] * xbar) // (acc[_A_ZY0] - x0))
        p1 = (acc[_A_ZK1] << 8) + (((-x1 << 8) + acc[_A_ZD1] * xbar) // (acc[_A_ZY1] - x1))
        span = p1 - p0  # Q8 samples over zn - 1 half periods
        if span <= 0:
            return 0
        a = self._fs100 * (zn - 1)  # <= 400 * 60 * MAX_SAMPLES < 2**27
        q = a // span
        freq = (q << 7) + ((((a - q * span) << 7) + (span >> 1)) // span)
        nominal = self._nominal
        if freq < nominal - (nominal >> 2) or freq > nominal + (nominal >> 2):
            return 0
        return freq


def _add2(sums, slot, v):
    """Add v (|v| < 2**30) to the two-limb pair at sums[slot] (hi, lo: value = hi * 2**15 + lo)."""
    sums[slot] += v >> 15
    sums[slot + 1] += v & _M15


def _rmean(sums, slot, d):
    """The two-limb pair at sums[slot] divided by d (1..2**12), rounded half away from zero."""
    h = sums[slot]
    lo = sums[slot + 1]
    h += lo >> 15
    lo &= _M15
    if h < 0:  # the magnitude's limbs
        if lo:
            return -mean_fx(-h - 1, (1 << 15) - lo + (d >> 1), d, 0)
        return -mean_fx(-h, d >> 1, d, 0)
    return mean_fx(h, lo + (d >> 1), d, 0)


def _pf(p_mw, s_mw):
    """Power factor x1000, signed like P; 1000 when there is no apparent power."""
    neg = p_mw < 0
    p = -p_mw if neg else p_mw
    s = s_mw
    if s <= 0:
        return -1000 if neg else 1000
    while s >= 1 << 20:
        s >>= 1
        p >>= 1
    pf = 1000 if p >= s else (p * 1000 + (s >> 1)) // s
    return -pf if neg else pf
