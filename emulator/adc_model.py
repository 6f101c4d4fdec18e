"""Emulated two-channel ADC (voltage divider + CT burden) fed by synthetic mains waveforms.

The board's direct-ADC front end (firmware.adc_frontend) reads a voltage and a
current channel from one ADC that alternates between them. This model writes
the codes such an ADC would return, so the same front-end code runs against it
on the unix port and under pytest:

    V(t) = sqrt(2)*Urms*sin(w t)       + sum_h sqrt(2)*Urms*rel_v*sin(h w t)
    I(t) = sqrt(2)*Irms*sin(w t - phi) + sum_h sqrt(2)*Irms*rel_i*sin(h w t - phi_h)

sample k of the voltage channel is taken at t0 + k*sample_us, the current
channel ``skew_us`` later (a single multiplexed ADC). Each code is
round(mid + value/per_lsb + noise) clipped to 0 .. 2**bits - 1, where mid is
2**(bits-1) plus an optional extra DC offset (in LSB). ``urms_v``/``irms_a``
are the rms of the fundamental; harmonics add to the total rms.

Defaults suit a 230 V, Imax 60 A meter on a 12-bit ADC: full scale (2047 LSB
from mid-scale) is 1.15 x the peak at 115 % Un and 1.15 x the peak at Imax, so
about 0.2102 V/LSB and 0.04767 A/LSB; the channels are evenly interleaved at
64 samples per 50 Hz cycle (312.5 us per pair, skew 156.25 us).

Noise comes from a tiny xorshift32 PRNG so CPython and MicroPython draw the
same sequence; ``noise_lsb`` is the standard deviation in LSB (gaussian by
Box-Muller, or uniform over +-sqrt(3)*noise_lsb). Floats are fine here: this
is test equipment, not the metering hot path.
"""

import math

UN_V = 230.0
IMAX_A = 60.0
OVER = 1.15  # full scale / peak of the largest expected signal
SQRT2 = math.sqrt(2.0)
DEFAULT_BITS = 12
DEFAULT_V_PER_LSB = OVER * OVER * UN_V * SQRT2 / ((1 << (DEFAULT_BITS - 1)) - 1)
DEFAULT_A_PER_LSB = OVER * IMAX_A * SQRT2 / ((1 << (DEFAULT_BITS - 1)) - 1)
DEFAULT_SAMPLE_US = 312.5  # 64 voltage/current pairs per 50 Hz cycle
DEFAULT_SKEW_US = DEFAULT_SAMPLE_US / 2
TWO_PI = 2.0 * math.pi
MASK32 = 0xFFFFFFFF


class ADCModelError(ValueError):
    """A bad argument to the emulated ADC."""


class ADCModel:
    def __init__(
        self,
        bits=DEFAULT_BITS,
        v_per_lsb=DEFAULT_V_PER_LSB,
        a_per_lsb=DEFAULT_A_PER_LSB,
        skew_us=DEFAULT_SKEW_US,
        seed=1,
        noise_kind="gauss",
        offset_v_lsb=0,
        offset_i_lsb=0,
    ):
        if not 8 <= bits <= 16:
            raise ADCModelError("bits must be 8..16, got %r" % (bits,))
        if v_per_lsb <= 0 or a_per_lsb <= 0:
            raise ADCModelError("v_per_lsb and a_per_lsb must be > 0")
        if noise_kind not in ("gauss", "uniform"):
            raise ADCModelError("noise_kind must be 'gauss' or 'uniform', got %r" % (noise_kind,))
        self.bits = bits
        self.top = (1 << bits) - 1
        self.v_per_lsb = float(v_per_lsb)
        self.a_per_lsb = float(a_per_lsb)
        self.skew_us = float(skew_us)
        self.noise_kind = noise_kind
        self.mid_v = (1 << (bits - 1)) + offset_v_lsb
        self.mid_i = (1 << (bits - 1)) + offset_i_lsb
        self._state = (seed & MASK32) or 0x9E3779B9  # xorshift state must not be 0

    # -- deterministic PRNG -------------------------------------------------
    def _next32(self):
        x = self._state
        x ^= (x << 13) & MASK32
        x ^= x >> 17
        x ^= (x << 5) & MASK32
        self._state = x
        return x

    def _uniform01(self):
        """A float in (0, 1], never 0 so log() is safe."""
        return (self._next32() + 1) / 4294967296.0

    def noise(self, sigma):
        """One noise draw with standard deviation ``sigma`` LSB."""
        if sigma <= 0:
            return 0.0
        if self.noise_kind == "uniform":
            return (2.0 * self._uniform01() - 1.0) * 1.7320508075688772 * sigma
        u1 = self._uniform01()
        u2 = self._uniform01()
        return sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(TWO_PI * u2)

    # -- waveforms ------------------------------------------------------------
    def _code(self, value, per_lsb, mid, sigma):
        c = int(math.floor(mid + value / per_lsb + self.noise(sigma) + 0.5))
        if c < 0:
            return 0
        if c > self.top:
            return self.top
        return c

    def fill(
        self,
        vbuf,
        ibuf,
        n,
        t0_us,
        sample_us,
        urms_v,
        irms_a,
        phase_deg,
        mains_hz=50,
        harmonics=(),
        noise_lsb=0,
    ):
        """Write n codes per channel into vbuf/ibuf (array('H') or list, len >= n).

        phase_deg > 0: current lags voltage (inductive load); 180: export.
        harmonics: iterable of (order, rel_v, rel_i, phase_deg), amplitudes
        relative to the fundamental, current harmonic lagging its voltage
        harmonic by phase_deg. noise_lsb: noise standard deviation in LSB.
        """
        if n < 0 or n > len(vbuf) or n > len(ibuf):
            raise ADCModelError("n=%d does not fit buffers of %d/%d" % (n, len(vbuf), len(ibuf)))
        w = TWO_PI * mains_hz * 1e-6  # rad per us
        phi = math.radians(phase_deg)
        av = SQRT2 * urms_v
        ai = SQRT2 * irms_a
        harm = []
        for h in harmonics:
            if len(h) != 4 or h[0] < 1:
                raise ADCModelError("harmonic must be (order >= 1, rel_v, rel_i, phase_deg), got %r" % (h,))
            harm.append((h[0], av * h[1], ai * h[2], math.radians(h[3])))
        skew = self.skew_us
        for k in range(n):
            tv = t0_us + k * sample_us
            ti = tv + skew
            v = av * math.sin(w * tv)
            i = ai * math.sin(w * ti - phi)
            for order, hv, hi, hphi in harm:
                v += hv * math.sin(order * w * tv)
                i += hi * math.sin(order * w * ti - hphi)
            vbuf[k] = self._code(v, self.v_per_lsb, self.mid_v, noise_lsb)
            ibuf[k] = self._code(i, self.a_per_lsb, self.mid_i, noise_lsb)

    def frontend_cal(self, sample_us=DEFAULT_SAMPLE_US, samples_per_cycle=64, cycles=2, mains_hz=50):
        """The ADCFrontEnd calibration dict that matches this model's hardware ratios."""
        return {
            "v_scale": int(round(self.v_per_lsb * 1000.0 * 65536)),
            "i_scale": int(round(self.a_per_lsb * 1000.0 * 65536)),
            "phasecal": int(round(self.skew_us / sample_us * 16384)),
            "samples_per_cycle": samples_per_cycle,
            "cycles": cycles,
            "mains_hz": mains_hz,
            "adc_bits": self.bits,
        }


def true_power(urms, irms, phase_deg, harmonics=()):
    """(P W, Q var) of the waveforms fill() draws: fundamental plus each harmonic.

    Q is Budeanu's sum of Vh*Ih*sin(phi_h); positive when current lags.
    """
    phi = math.radians(phase_deg)
    p = urms * irms * math.cos(phi)
    q = urms * irms * math.sin(phi)
    for h in harmonics:
        vh = urms * h[1]
        ih = irms * h[2]
        ph = math.radians(h[3])
        p += vh * ih * math.cos(ph)
        q += vh * ih * math.sin(ph)
    return p, q


def total_rms(rms, rels):
    """The rms of a fundamental of rms ``rms`` plus harmonics of relative amplitudes ``rels``."""
    s = 1.0
    for r in rels:
        s += r * r
    return rms * math.sqrt(s)
