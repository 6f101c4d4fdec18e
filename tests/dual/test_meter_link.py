"""The emulator board's link to the bench allocates nothing: app steps over a fake pipe under heap_lock.

emulator/unix_board.py + emulator/bench_link.py with an in-process fake
bench standing in for tools/emulate_bench.py: it parses each 8-byte request
and answers from preallocated buffers (a minimal ATM90E26 register file
for SPI frames, a fixed ADC window). The locked loop is the board's part of
firmware.app.App.step (sleep, elapsed time, front-end poll over the link,
relay, inputs, watchdog); the meter step after it is proved allocation-free
in test_meter_steady.py (the meter, app and driver together do not fit a
64 KiB test heap beside this module). Each test imports its front end and
unloads it, so one front end is loaded at a time.
"""

import gc
import sys

from emulator import bench_link
from emulator.unix_board import UnixBoard
from firmware import compat

LASTSPIDATA = 0x06
ENERGY_FIRST = 0x40
ENERGY_LAST = 0x45


class FakeBench:
    """Both streams of the link: write() takes a request, readinto() hands out its reply. Allocation-free."""

    def __init__(self):
        self.req = bytearray(8)
        self.rep = bytearray(8)
        self.rep_len = 0
        self.regs = {}  # ATM90E26 address -> word
        self.last = 0
        self.op = 0
        self.counts = [0, 0, 0, 0, 0, 0, 0, 0, 0]  # requests per op (low nibble)
        self.slept = 0
        self.relay = 1
        # one 8-sample cycle: 230 V, 10 A in phase (adc_frontend's default scales)
        self.wave_v = [2048, 3142, 3595, 3142, 2048, 954, 501, 954]
        self.wave_i = [2048, 2258, 2345, 2258, 2048, 1838, 1751, 1838]
        self.adc_n = 0
        self.closed = False
        self.pos = 0

    def write(self, buf):
        if self.op == bench_link.OP_REPORT:
            return len(buf)
        r = self.req
        for i in range(8):
            r[i] = buf[i]
        op = r[0]
        self.op = op
        self.counts[op & 0x0F] += 1
        rep = self.rep
        if op == bench_link.OP_SPI:
            a = r[2] & 0x7F
            if r[2] & 0x80:
                v = self.last if a == LASTSPIDATA else self.regs.get(a, 0)
                if ENERGY_FIRST <= a <= ENERGY_LAST and v:
                    self.regs[a] = 0
            else:
                v = (r[3] << 8) | r[4]
            self.last = v
            rep[0] = 0
            rep[1] = v >> 8
            rep[2] = v & 0xFF
            self.rep_len = r[1]
            if r[2] & 0x80 and r[2] != bench_link.SPEC_LAST:  # the LastSPIData read, answered ahead
                rep[3] = 0
                rep[4] = v >> 8
                rep[5] = v & 0xFF
                self.rep_len = 6
        elif op == bench_link.OP_SLEEP:
            ms = r[4] | (r[5] << 8) | (r[6] << 16)
            self.slept += ms
            for i in range(8):
                rep[i] = r[4 + i] if i < 4 else 0
            rep[4] = 1  # running
            self.rep_len = 8
        elif op == bench_link.OP_ADC:
            self.adc_n = r[2] | (r[3] << 8)
            self.rep_len = -1
        elif op == bench_link.OP_RELAY:
            self.relay = r[1]
            rep[0] = r[1]
            self.rep_len = 1
        elif op == bench_link.OP_INPUTS:
            rep[0] = 2
            self.rep_len = 1
        return 8

    def readinto(self, buf):
        if self.closed:
            return 0
        if self.rep_len < 0:  # an ADC window: voltage first, then current
            n = self.adc_n
            if self.op == bench_link.OP_ADC:
                for k in range(n):
                    buf[k] = self.wave_v[k & 7]
                self.op = 0
            else:
                for k in range(n):
                    buf[k] = self.wave_i[k & 7]
                self.rep_len = 0
            return n + n
        n = len(buf)
        p = self.pos
        for i in range(n):
            buf[i] = self.rep[p + i]
        p += n
        if p >= self.rep_len:
            p = 0
            self.rep_len = 0
        self.pos = p
        return n


def _drop(*names):
    if compat.MICROPYTHON:
        for n in names:
            if n in sys.modules:
                del sys.modules[n]
                delattr(sys.modules["firmware"], n.split(".")[1])
        gc.collect()


def _step(board, fe, out):
    """The board's part of firmware.app.App.step: one 60 s pass; the elapsed ms."""
    board.sleep_ms(60000)
    dt = board.elapsed_ms()
    ok = fe.poll(out, dt)
    board.set_relay(ok)
    board.inputs()
    board.wdt_feed()
    return dt


def test_link_atm90e26_app_step_allocates_nothing():
    fake = FakeBench()
    link = bench_link.BenchLink(fake, fake)
    board = UnixBoard(link, "/tmp")
    fe = board.frontend({"frontend": "atm90e26"})
    out = [0] * 14
    r = fake.regs
    r[0x49] = 23000  # Urms 230 V
    r[0x48] = 20000  # Irms 20 A
    r[0x68] = 20000
    r[0x4A] = 3984  # Pmean W
    r[0x40] = 2125  # counts of one 60 s step at 3984 W (2124.8)
    _step(board, fe, out)
    gc.collect()
    total = 0
    compat.heap_lock()
    try:
        for _ in range(100):
            r[0x40] = 2125 + (_ & 1)
            total += _step(board, fe, out)
            total += out[0]
    finally:
        compat.heap_unlock()
    assert total == 100 * 60000 + 100 * 2125 + 50 and fake.slept == 101 * 60000
    assert out[4] == 23000 and out[5] == 20000 and out[6] == 3984 and fake.regs[0x40] == 0
    assert fake.counts[bench_link.OP_SPI & 0x0F] == 101 * 13  # 13 verified reads per poll, one request each
    assert fake.counts[bench_link.OP_RELAY & 0x0F] == 101 and fake.relay == 1 and board.inputs() == 2
    assert fe.bad_reads == 0 and board.running() and board.feeds == 101
    fe = board = None
    _drop("firmware.atm90e26", "firmware.atm90e26_reg")


def test_link_adc_app_step_allocates_nothing():
    fake = FakeBench()
    link = bench_link.BenchLink(fake, fake)
    board = UnixBoard(link, "/tmp")
    fe = board.frontend({"frontend": "adc"})
    assert fe.calibrate({"samples_per_cycle": 8, "cycles": 2})
    out = [0] * 14
    _step(board, fe, out)
    gc.collect()
    compat.heap_lock()
    try:
        for _ in range(60):
            _step(board, fe, out)
    finally:
        compat.heap_unlock()
    # the first poll (no current measured yet) samples the duty's share, 32 windows; then 10 A needs one
    assert fake.slept == 61 * 60000 and fake.counts[bench_link.OP_ADC & 0x0F] == 32 + 60
    assert 22000 < out[4] < 24000 and 9000 < out[5] < 11000 and out[12] > 2000000  # ~230 V, ~10 A, ~2.3 kW
    assert fe.bad_reads == 0 and out[11] == 0
    fe = board = None
    _drop("firmware.adc_frontend", "firmware.adc_viper", "firmware.fixedpoint")


def test_link_adc_low_current_poll_of_many_windows_allocates_nothing():
    fake = FakeBench()
    fake.wave_i = [2048, 2050, 2051, 2050, 2048, 2046, 2045, 2046]  # ~0.1 A: noise-bound, so 32 windows
    link = bench_link.BenchLink(fake, fake)
    board = UnixBoard(link, "/tmp")
    fe = board.frontend({"frontend": "adc"})
    assert fe.calibrate({"samples_per_cycle": 8, "cycles": 2})
    out = [0] * 14
    _step(board, fe, out)
    gc.collect()
    compat.heap_lock()
    try:
        for _ in range(10):
            _step(board, fe, out)
    finally:
        compat.heap_unlock()
    assert fake.counts[bench_link.OP_ADC & 0x0F] == 11 * 32 and 50 < out[5] < 150 and out[11] == 0, out
    assert 0 < out[12] < 30000 and fe.bad_reads == 0, out
    fe = board = None
    _drop("firmware.adc_frontend", "firmware.adc_viper", "firmware.fixedpoint")


def test_link_boot_requests():
    fake = FakeBench()
    link = bench_link.BenchLink(fake, fake)
    board = UnixBoard(link, "/tmp")
    board.sleep_ms(250)
    board.sleep_ms(1000)
    assert board.elapsed_ms() == 1250 and board.elapsed_ms() == 0 and fake.slept == 1250
    fake.closed = True  # the bench is gone: a short read
    e = None
    try:
        link.sleep(10)
    except bench_link.BenchLinkError as x:
        e = x
    assert e is not None and "closed" in str(e)
