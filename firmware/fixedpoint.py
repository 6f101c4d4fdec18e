"""Integer fixed-point helpers that keep every value below 2**30 (MicroPython small ints).

Pure and dual-runtime (CPython under pytest, MicroPython on boards); used by
firmware.adc_frontend after its sample passes:

- ``mulshift``/``smulshift``: floor(a * b / 2**s) by 15-bit digits, saturating
  at 2**30 - 1, where a * b itself would need up to 60 bits.
- ``mean_fx``/``smean_fx``: the mean of a two-limb sum (hi * 2**15 + lo) over
  n samples with f fraction bits, by long division on the limbs.
- ``frac_bits``: how many fraction bits a mean can take without reaching 2**30.
- ``isqrt``: floor(sqrt(m)) by the bitwise method.
- ``round_div``: x / d rounded half away from zero.
- ``scale_q``: a float turned into (q, shift), q in [2**27, 2**28], at set-up
  time only (floats never reach the measurement path).

None of them allocates for arguments in their documented ranges.
"""

from micropython import const

SATURATED = const(0x3FFFFFFF)  # mulshift's result when the true one is >= 2**30
_M15 = const(0x7FFF)


def mulshift(a, b, s):
    """floor(a * b / 2**s) for 0 <= a, b < 2**30 in 15-bit digits; saturates at 2**30 - 1."""
    a1 = a >> 15
    a0 = a & _M15
    b1 = b >> 15
    b0 = b & _M15
    p = a0 * b0
    d0 = p & _M15
    c = p >> 15
    p = a1 * b0
    c += p & _M15
    h = p >> 15
    p = a0 * b1
    c += p & _M15
    h += p >> 15
    d1 = c & _M15
    c = (c >> 15) + h
    p = a1 * b1
    c += p & _M15
    d2 = c & _M15
    d3 = (c >> 15) + (p >> 15)
    while s >= 15:  # value = d3*2**45 + d2*2**30 + d1*2**15 + d0
        d0 = d1
        d1 = d2
        d2 = d3
        d3 = 0
        s -= 15
    if d3 or d2 >> s:
        return SATURATED
    return (d0 >> s) + (d1 << (15 - s)) + (d2 << (30 - s))


def smulshift(a, b, s):
    """mulshift for a signed a (truncates toward zero)."""
    if a < 0:
        return -mulshift(-a, b, s)
    return mulshift(a, b, s)


def isqrt(m):
    """floor(sqrt(m)) for 0 <= m < 2**30."""
    res = 0
    bit = 1 << 28
    while bit > m:
        bit >>= 2
    while bit:
        if m >= res + bit:
            m -= res + bit
            res = (res >> 1) + bit
        else:
            res >>= 1
        bit >>= 2
    return res


def mean_fx(h, lo, n, f):
    """floor((h*2**15 + lo) * 2**f / n) for a value >= 0 whose mean is < 2**(30 - f)."""
    q = h // n
    t = ((h - q * n) << 15) + lo
    q2 = t // n
    return (((q << 15) + q2) << f) + (((t - q2 * n) << f) // n)


def smean_fx(h, lo, n, f):
    """mean_fx for a signed limb pair (truncates toward zero)."""
    if h < 0:
        if lo:
            return -mean_fx(-h - 1, (1 << 15) - lo, n, f)
        return -mean_fx(-h, 0, n, f)
    return mean_fx(h, lo, n, f)


def frac_bits(m, limit, step):
    """The largest f <= 16 (a multiple of step) with m * 2**f < 2**limit."""
    f = 16
    while f > 0 and m >> (limit - f):
        f -= step
    return f


def round_div(x, d):
    """x / d rounded half away from zero."""
    if x < 0:
        return -((d // 2 - x) // d)
    return (x + d // 2) // d


def scale_q(value):
    """(q, shift) with q = round(value * 2**shift) in [2**27, 2**28]: a float turned fixed point."""
    shift = 0
    while value * (1 << shift) < (1 << 27) and shift < 60:
        shift += 1
    while value * (1 << shift) >= (1 << 28) and shift > 0:
        shift -= 1
    return int(value * (1 << shift) + 0.5), shift
