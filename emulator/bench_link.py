"""The emulator board's link to its test bench (tools/emulate_bench.py): compact binary requests.

The firmware process holds no emulated hardware. Every hardware access of
the unix board is a request to the bench over two byte streams (the
process's stdin and stdout), answered at once. A request is 8 bytes:

    [0] op  [1] arg8  [2..3] arg16 (LE)  [4..7] arg32 (LE, signed)

    op    request                        reply
    0xA1  HELLO  arg8 = VERSION          8: version, reset cause, 0, 0, u32 n; then n bytes of JSON
    0xA2  CLOCK  arg8 1 = persisted      8: u32 unix s, u16 ms, running, 0
                 clock in arg32/arg16
    0xA3  SLEEP  arg32 = ms              8: i32 elapsed ms (cut at a scenario segment), running, 0 x3
    0xA4  SPI    arg8 = n (1..6), data   n: the bytes clocked in (CS low around them);
                 in bytes 2..            after a 3-byte read frame of any register but
                                         LastSPIData, 3 more: the answer to a read of
                                         LastSPIData (SPEC_LAST) right after it
    0xA5  ADC    arg16 = n samples       4n: n voltage then n current codes, u16 in native order
    0xA6  RELAY  arg8 = closed           1: the same byte
    0xA7  INPUTS                         1: bit 0 cover open, bit 1 magnet
    0xA8  REPORT arg32 = n; then n bytes (the final state JSON); no reply
    0xA9  CMD                            4: u32 n; then n bytes: the next command frame due
                                         (the scenario's scripted commands, docs/protocol.md type 10)

SLEEP's reply byte 5 is the number of scripted command frames due and not
yet fetched (the bench cuts a sleep at a command's instant); the firmware
fetches each with CMD and runs it like one received over MQTT.

The ATM90E26 driver confirms every read by reading LastSPIData next; the
bench answers that frame ahead (it has no side effects in the chip), and
the link hands the answer out when that frame does come next, without a
round trip (13 instead of 26 per poll). Any other frame discards it.
Ops have the high bit set, so stray text on the stream is detected by the
bench. Buffers are preallocated: SLEEP, SPI, ADC, RELAY and INPUTS
allocate nothing. A short read means the bench is gone (BenchLinkError):
the firmware stops as on a power cut.
"""

from micropython import const

VERSION = const(1)
OP_HELLO = const(0xA1)
OP_CLOCK = const(0xA2)
OP_SLEEP = const(0xA3)
OP_SPI = const(0xA4)
OP_ADC = const(0xA5)
OP_RELAY = const(0xA6)
OP_INPUTS = const(0xA7)
OP_REPORT = const(0xA8)
OP_CMD = const(0xA9)
REQ_LEN = const(8)
SPEC_LAST = const(0x86)  # an ATM90E26 read frame of LastSPIData (0x80 | 0x06), answered ahead


class BenchLinkError(OSError):
    """The bench closed the link or answered out of protocol."""


class BenchLink:
    """Requests over ``rx`` (readinto) and ``tx`` (write); also the SPI bus and CS pin of the ATM90E26."""

    def __init__(self, rx, tx):
        self._rd = rx.readinto
        self._wr = tx.write
        self._req = bytearray(REQ_LEN)
        self._rep = bytearray(REQ_LEN)
        self._one = bytearray(1)
        self._one4 = bytearray(4)
        self._spec = bytearray(3)
        self._spec_ok = False
        self.reset = 0
        self.running = True
        self.cmds = 0  # scripted command frames due (SLEEP reply byte 5)

    def _read(self, buf, nbytes=REQ_LEN):
        # readinto on a MicroPython stream reads until the buffer is full or the stream ends
        n = self._rd(buf)
        if n != nbytes:
            raise BenchLinkError("bench link closed (%r of %d bytes)" % (n, nbytes))

    def _send(self, op, a8=0, a16=0, a32=0):
        r = self._req
        r[0] = op
        r[1] = a8
        r[2] = a16 & 0xFF
        r[3] = a16 >> 8
        r[4] = a32 & 0xFF
        r[5] = (a32 >> 8) & 0xFF
        r[6] = (a32 >> 16) & 0xFF
        r[7] = (a32 >> 24) & 0xFF
        self._wr(r)

    def _u32(self, i):
        r = self._rep
        return r[i] | (r[i + 1] << 8) | (r[i + 2] << 16) | (r[i + 3] << 24)

    def _i32(self, i):
        # signed, without a long-int constant (0x80000000 is one on a 32-bit port, and any
        # operation on it allocates): allocation-free for the small ints (|x| < 2**30) it carries
        r = self._rep
        if r[i + 3] & 0x80:
            return -1 - (
                (r[i] ^ 0xFF)
                | ((r[i + 1] ^ 0xFF) << 8)
                | ((r[i + 2] ^ 0xFF) << 16)
                | ((r[i + 3] ^ 0xFF) << 24)
            )
        return r[i] | (r[i + 1] << 8) | (r[i + 2] << 16) | (r[i + 3] << 24)

    # -- boot (may allocate) -------------------------------------------------------

    def hello(self):
        """The bench's setup dict (flash dir, tariff, prepaid, poll_ms); sets ``reset``."""
        import json

        self._send(OP_HELLO, VERSION)
        self._read(self._rep)
        if self._rep[0] != VERSION:
            raise BenchLinkError("bench speaks version %d, firmware %d" % (self._rep[0], VERSION))
        self.reset = self._rep[1]
        n = self._u32(4)
        buf = bytearray(n)
        self._read(buf, n)
        return json.loads(buf)  # pyright: ignore[reportArgumentType]  # stub gap: MicroPython json takes bytes

    def clock(self, ts, ms):
        """The clock to start from (unix s, ms), given the persisted one (ts None: none)."""
        if ts is None:
            self._send(OP_CLOCK)
        else:
            self._send(OP_CLOCK, 1, ms, ts)
        self._read(self._rep)
        self.running = self._rep[6] != 0
        return self._u32(0), self._rep[4] | (self._rep[5] << 8)

    def command(self):
        """The next scripted command frame (bytes); allocates: only when ``cmds`` says one is due."""
        self._send(OP_CMD)
        self._read(self._one4, 4)
        b = self._one4
        n = b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
        buf = bytearray(n)
        self._read(buf, n)
        self.cmds -= 1
        return bytes(buf)

    def report(self, data):
        self._send(OP_REPORT, 0, 0, len(data))
        self._wr(data)

    # -- steady state (allocation-free) -----------------------------------------------

    def sleep(self, ms):
        """Let ``ms`` pass on the bench; the ms that did pass (cut at a segment's end)."""
        self._send(OP_SLEEP, 0, 0, ms)
        self._read(self._rep)
        self.running = self._rep[4] != 0
        self.cmds = self._rep[5]
        return self._i32(0)

    def write_readinto(self, ob, ib):
        """One SPI frame (machine.SPI's signature); CS is asserted around it by the bench."""
        n = len(ob)
        if self._spec_ok:
            self._spec_ok = False
            if n == 3 and ob[0] == SPEC_LAST and not ob[1] and not ob[2]:
                sp = self._spec
                ib[0] = sp[0]
                ib[1] = sp[1]
                ib[2] = sp[2]
                return
        r = self._req
        r[0] = OP_SPI
        r[1] = n
        for i in range(n):
            r[2 + i] = ob[i]
        self._wr(r)
        self._read(ib, n)
        if n == 3 and ob[0] & 0x80 and ob[0] != SPEC_LAST:
            self._read(self._spec, 3)
            self._spec_ok = True

    def value(self, v=None):
        """The chip-select pin (machine.Pin's value()): framing is per request, so nothing to do."""
        return 1

    def adc(self, vbuf, ibuf, n):
        """Fill array('H') buffers of exactly n samples with one window; True."""
        self._send(OP_ADC, 0, n)
        self._read(vbuf, n + n)
        self._read(ibuf, n + n)
        return True

    def relay(self, closed):
        self._send(OP_RELAY, 1 if closed else 0)
        self._read(self._one, 1)

    def inputs(self):
        self._send(OP_INPUTS)
        self._read(self._one, 1)
        return self._one[0]
