# ruff: noqa: F821
"""Viper versions of the direct-ADC front end's two sample passes (MicroPython only).

firmware.adc_frontend imports this module only when compat.MICROPYTHON is
true, and keeps its plain-Python passes when the import fails (a port built
without viper, or a .mpy for another -march); CPython never imports it, so
the viper pointer annotations (ptr16, ptr32) need no shim. Build with
``tools/mpy_build.py`` (mpy-cross -march=ARCH): the functions below are then
machine code in the .mpy and importing costs no compiler heap.

pass1 and pass2 mirror adc_frontend's _pass1_py and _pass2_py line by line
and give the same integers (tests/dual/test_adc_frontend.py checks it):
vbuf, ibuf are array('H') sample codes, acc the front end's array('i')
scratch; the slot numbers below are its _A_* layout (LAYOUT lists them in
that order so a test can compare). Every value stays far below 2**31, so
32-bit machine-word wrap cannot occur on a board.
"""

import micropython
from micropython import const

_N = const(0)
_D = const(1)
_OFFV = const(2)
_OFFI = const(3)
_VV = const(4)  # (hi, lo) limb pairs from here to _Q1 + 1
_II = const(6)
_S0 = const(8)
_S1 = const(10)
_Q0 = const(12)
_Q1 = const(14)
_ZN = const(16)
_ZK0 = const(17)
_ZX0 = const(18)
_ZY0 = const(19)
_ZK1 = const(20)
_ZX1 = const(21)
_ZY1 = const(22)
_ZD0 = const(23)
_ZD1 = const(24)
_SV = const(25)
_SI = const(26)
_VMIN = const(27)
_VMAX = const(28)
_IMIN = const(29)
_IMAX = const(30)
# the same as adc_frontend's
_BLOCK = const(64)  # samples per partial sum: 64 * (2**12)**2 < 2**30
_HYST = const(8)  # zero-crossing hysteresis, LSB
_NHYST = const(-8)

LAYOUT = (
    _N, _D, _OFFV, _OFFI, _VV, _II, _S0, _S1, _Q0, _Q1, _ZN, _ZK0, _ZX0, _ZY0, _ZK1, _ZX1, _ZY1, _ZD0, _ZD1,
    _SV, _SI, _VMIN, _VMAX, _IMIN, _IMAX,
)  # fmt: skip


@micropython.viper
def pass1(vbuf: ptr16, ibuf: ptr16, acc: ptr32):
    n = acc[_N]
    sv = 0
    si = 0
    vmin = int(vbuf[0])
    vmax = vmin
    imin = int(ibuf[0])
    imax = imin
    for k in range(n):
        v = int(vbuf[k])
        c = int(ibuf[k])
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
    acc[_SV] = sv
    acc[_SI] = si
    acc[_VMIN] = vmin
    acc[_VMAX] = vmax
    acc[_IMIN] = imin
    acc[_IMAX] = imax


@micropython.viper
def pass2(vbuf: ptr16, ibuf: ptr16, acc: ptr32):
    n = acc[_N]
    d = acc[_D]
    ov = acc[_OFFV]
    oi = acc[_OFFI]
    hvv = 0
    lvv = 0
    hii = 0
    lii = 0
    h0 = 0
    l0 = 0
    h1 = 0
    l1 = 0
    hq0 = 0
    lq0 = 0
    hq1 = 0
    lq1 = 0
    bvv = 0
    bii = 0
    b0 = 0
    b1 = 0
    bq0 = 0
    bq1 = 0
    zn = 0
    zk0 = 0
    zx0 = 0
    zy0 = 0
    zk1 = 0
    zx1 = 0
    zy1 = 0
    zd0 = 0
    zd1 = 0
    armed = 0
    jd = n - d
    left = _BLOCK
    for k in range(n):
        x = int(vbuf[k]) - ov
        y = int(ibuf[k]) - oi
        j = k + 1
        if j == n:
            j = 0
        xn = int(vbuf[j]) - ov
        jd1 = jd + 1
        if jd1 == n:
            jd1 = 0
        bvv += x * x
        bii += y * y
        b0 += x * y
        b1 += xn * y
        bq0 += (int(vbuf[jd]) - ov) * y
        bq1 += (int(vbuf[jd1]) - ov) * y
        jd = jd1
        if armed == 1 and x < 0 and xn >= 0 and j != 0:
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
        elif armed == -1 and x > 0 and xn <= 0 and j != 0:
            armed = 0
            if zn == 0:
                zk0 = k
                zx0 = 0 - x
                zy0 = 0 - xn
                zd0 = -1
            zk1 = k
            zx1 = 0 - x
            zy1 = 0 - xn
            zd1 = -1
            zn += 1
        elif x < _NHYST:
            armed = 1
        elif x > _HYST:
            armed = -1
        left -= 1
        if left == 0 or j == 0:
            left = _BLOCK
            hvv += bvv >> 15
            lvv += bvv & 0x7FFF
            hii += bii >> 15
            lii += bii & 0x7FFF
            h0 += b0 >> 15
            l0 += b0 & 0x7FFF
            h1 += b1 >> 15
            l1 += b1 & 0x7FFF
            hq0 += bq0 >> 15
            lq0 += bq0 & 0x7FFF
            hq1 += bq1 >> 15
            lq1 += bq1 & 0x7FFF
            bvv = 0
            bii = 0
            b0 = 0
            b1 = 0
            bq0 = 0
            bq1 = 0
    acc[_VV] = hvv
    acc[_VV + 1] = lvv
    acc[_II] = hii
    acc[_II + 1] = lii
    acc[_S0] = h0
    acc[_S0 + 1] = l0
    acc[_S1] = h1
    acc[_S1 + 1] = l1
    acc[_Q0] = hq0
    acc[_Q0 + 1] = lq0
    acc[_Q1] = hq1
    acc[_Q1 + 1] = lq1
    acc[_ZN] = zn
    acc[_ZK0] = zk0
    acc[_ZX0] = zx0
    acc[_ZY0] = zy0
    acc[_ZK1] = zk1
    acc[_ZX1] = zx1
    acc[_ZY1] = zy1
    acc[_ZD0] = zd0
    acc[_ZD1] = zd1
