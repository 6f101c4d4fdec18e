"""The firmware's measurement loop allocates nothing: front end + meter step under heap_lock.

Runs in 64 KiB on MicroPython: the ATM90E26 driver talks to a minimal fake
bus (the register-level model with its floats would not fit beside the
firmware), the ADC path computes a fixed buffer. Each test imports its front
end and unloads it, so one front end is loaded at a time. The
prepaid part of the step: test_meter_prepaid.py. No tariff is set (the rate
is one small int in the step either way; the calendar, imported only with a
tariff, would not fit here beside the driver; rate switches: test_meter.py).
"""

import gc

try:
    from tests.dual.meter_support import drop, make_meter
except ImportError:
    from meter_support import drop, make_meter

from firmware import compat
from firmware.meter import NEVER

LASTSPIDATA = 0x06
ENERGY_FIRST = 0x40
ENERGY_LAST = 0x45


class FakeChip:
    """Just enough ATM90E26 for poll(): register words, LastSPIData echo, energy cleared on read.

    Also its own chip-select pin (value()). Allocation-free.
    """

    def __init__(self):
        self.regs = {}  # address -> word (a dict: a 128-entry list would not fit beside the driver)
        self.last = 0

    def value(self, v=None):
        return 1

    def write_readinto(self, ob, ib):
        a = ob[0] & 0x7F
        if ob[0] & 0x80:
            v = self.last if a == LASTSPIDATA else self.regs.get(a, 0)
            if ENERGY_FIRST <= a <= ENERGY_LAST and v:
                self.regs[a] = 0
        else:
            v = (ob[1] << 8) | ob[2]
        self.last = v
        ib[0] = 0
        ib[1] = v >> 8
        ib[2] = v & 0xFF


def _steady(m, prep, poll, steps):
    """``steps`` x (prep(), then poll() + step under heap_lock) after a warm-up; the largest |int| seen."""
    prep()
    poll()
    m.step(1000, True)
    gc.collect()
    for _ in range(steps):
        prep()
        compat.heap_lock()
        try:
            poll()
            m.step(1000, True)
        finally:
            compat.heap_unlock()
    big = 0
    for v in m.out + m.regs.imp_rem + m.regs.q_rem + [m.sec, m.pend_units, m.pend_wh]:
        big = max(big, abs(v))
    return big


def test_driver_poll_atm90e26_and_meter_step_allocate_nothing():
    from firmware.atm90e26 import ATM90E26

    chip = FakeChip()
    drv = ATM90E26(chip, chip)
    m = make_meter()
    r = chip.regs
    r[0x49] = 23000  # Urms 230 V
    r[0x48] = 20000  # Irms 20 A
    r[0x68] = 20000
    r[0x4A] = 3984  # Pmean W
    r[0x4B] = 2300

    def prep():  # 1 s at 3984 W, 2300 var: 35.4 / 20.4 counts
        r[0x40] = 35
        r[0x43] = 20

    def poll():
        drv.poll(m.out)

    big = _steady(m, prep, poll, 150)
    assert big < compat.HOT_INT_LIMIT and m.steps == 151
    assert m.regs.imp[0] * 3200 + m.regs.imp_rem[0] == 151 * 35 * 100
    assert m.regs.q[0] * 3200 + m.regs.q_rem[0] == 151 * 20 * 100
    assert drv.bad_reads == 0
    m = drv = None
    drop("firmware.atm90e26", "firmware.atm90e26_reg")


def test_compute_adc_and_meter_step_allocate_nothing():  # runs first (sorted names)
    import math
    from array import array

    from firmware.adc_frontend import ADCFrontEnd

    fe = ADCFrontEnd({"samples_per_cycle": 32, "cycles": 2})
    n = fe.n
    vb = array("H", [0] * n)
    ib = array("H", [0] * n)
    for k in range(n):  # 230 V, 10 A, current at 210 deg: export, Q3
        a = 2 * math.pi * k / 32
        vb[k] = 2048 + int(1547 * math.sin(a))
        ib[k] = 2048 + int(297 * math.sin(a - math.radians(210)))
    m = make_meter("adc")

    def prep():
        pass

    def poll():
        fe.compute(vb, ib, n, m.out)

    big = _steady(m, prep, poll, 100)
    assert big < compat.HOT_INT_LIMIT and m.regs.exp[0] > 0 and m.regs.q[2] > 0
    assert m.regs.imp == [0, 0, 0, 0] and m.next_change_sec == NEVER
    m = fe = vb = ib = None
    drop("firmware.adc_frontend", "firmware.adc_viper", "firmware.fixedpoint")
