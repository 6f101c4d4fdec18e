"""The unix board: the MicroPython unix port as a thin client of the emulator's test bench.

``UnixBoard(link, flash_dir)`` implements firmware/hal.py over a
emulator.bench_link.BenchLink. The emulated hardware (scenario, clock,
ATM90E26 and ADC models) lives in the bench process (tools/emulate_bench.py,
CPython); every access is one request: ``sleep_ms`` lets the bench advance
its clock and models (it may cut the sleep at a scenario segment's end, and
says when the scenario is over), the ATM90E26 driver's SPI frames and the
ADC window are answered by the models, ``set_relay`` tells the bench to cut
the emulated load, ``inputs()`` reads the cover and magnet switches.
``elapsed_ms`` and ``running`` are answered from the last sleep. No real
sleeping and no floats here.
"""

from firmware import hal


class UnixBoard:
    name = "unix"

    def __init__(self, link, flash_dir, probe=None):
        self.link = link
        self.flash_dir = flash_dir
        self._dt = 0
        self.feeds = 0
        self.speed_permille = 0  # emulated ms per real s for asleep_ms (tools/emulate.py --speed x 1000)
        self.probe = probe  # the heap probe (emulator/main.py): sampled at every step of the asyncio loop

    def reset_cause(self):
        return self.link.reset

    def clock_at_boot(self, ts, ms):
        return self.link.clock(ts, ms)

    def running(self):
        return self.link.running

    def elapsed_ms(self):
        d = self._dt
        self._dt = 0
        return d

    def sleep_ms(self, ms):
        self._dt += self.link.sleep(ms)

    async def asleep_ms(self, ms):
        """The asyncio loop's sleep: the bench advances emulated time at once; then real time passes
        at ``speed`` emulated s per real s (0: none, just let the other tasks run)."""
        import asyncio

        d = self.link.sleep(ms)
        self._dt += d
        if self.probe is not None:  # the link's tasks are parked mid-work here: their buffers are live
            self.probe("link")
        await asyncio.sleep_ms(d * 1000 // self.speed_permille if self.speed_permille else 0)

    def wdt_start(self, ms):
        return None

    def wdt_feed(self):
        self.feeds += 1

    def set_relay(self, closed):
        self.link.relay(closed)

    def inputs(self):
        """Bit 0 cover open, bit 1 magnet (tamper switches of the emulated enclosure)."""
        return self.link.inputs()

    def commands(self):
        """Scripted command frames the bench has due (the emulator's stand-in for MQTT delivery)."""
        link = self.link
        if not link.cmds:
            return ()
        out = []
        while link.cmds > 0:
            out.append(link.command())
        return out

    def frontend(self, cfg):
        if cfg["frontend"] == "atm90e26":
            from firmware.atm90e26 import ATM90E26

            return hal.AtmSource(ATM90E26(self.link, self.link))
        return hal.AdcSource(self.link.adc)
