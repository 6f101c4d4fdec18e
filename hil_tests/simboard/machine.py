"""A stand-in ``machine`` module for the simulated board (MicroPython unix port; see simboard/server.py).

It shadows the unix port's own ``machine`` (this file sits in the simulated board's
root, first on sys.path) and gives firmware/boards/mcu.py what it needs: ``Pin``,
``SPI`` (the register-level ATM90E26 model, emulator/atm90e26_model.py,
as the chip on the bus), ``ADC`` (absent: the simulated board meters with the
ATM90E26 only), ``WDT``, ``reset`` (the process exits; the server starts a new
one, as a board reboots: the chip restarts empty) and ``reset_cause``.

The load comes from ``bench.json`` in the board's root: {urms, irms, phase_deg,
cs (chip-select pin), relay (relay pin), meter_constant, un, ib, errors {...}}.
The chip is advanced in real time at every chip select; while the relay pin is
low the load draws no current.
"""

import json
import sys
import time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_bench = None
_chip = None
_pins = {}
_last = [0]


def _load():
    global _bench
    if _bench is None:
        with open("bench.json") as f:
            _bench = json.load(f)
    return _bench


def _advance():
    now = time.ticks_ms()
    dt = time.ticks_diff(now, _last[0])
    _last[0] = now
    if _chip is None or dt <= 0:
        return
    b = _load()
    relay = _pins.get(b["relay"])
    on = relay is None or relay.v
    _chip.advance(dt / 1000.0, float(b["urms"]), float(b["irms"]) if on else 0.0, float(b["phase_deg"]))


class Pin:
    IN = 0
    OUT = 1

    def __init__(self, n, mode=-1, value=None):
        self.n = n
        self.v = 1 if value else 0
        _pins[n] = self

    def value(self, v=None):
        if v is None:
            return self.v
        if self.n == _load()["cs"] and _chip is not None:
            if not v:
                _advance()
            _chip.cs.value(v)
        elif self.n == _load()["relay"]:
            _advance()  # the load so far was drawn with the old relay state
        self.v = 1 if v else 0

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class SPI:
    MSB = 0
    LSB = 1

    def __init__(
        self, bus, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0, sck=None, mosi=None, miso=None
    ):
        global _chip
        if _chip is None:
            from emulator.atm90e26_model import ATM90E26Model

            b = _load()
            e = b["errors"]
            _chip = ATM90E26Model(
                b["meter_constant"],
                b["un"],
                b["ib"],
                e["gain_error_u"],
                e["gain_error_i"],
                e["phase_error_deg"],
            )
            _last[0] = time.ticks_ms()

    def write_readinto(self, out, inb):
        _chip.write_readinto(out, inb)


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin):
        raise OSError("the simulated board has no ADC front end (ATM90E26 only)")


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout

    def feed(self):
        return None


def reset():
    sys.exit(0)


def soft_reset():
    sys.exit(0)


def reset_cause():
    return PWRON_RESET
