"""What ESP32 and RP2040 boards share: machine.SPI/Pin/ADC/WDT/RTC behind firmware/hal.py.

A board file subclasses ``McuBoard`` with its default pins (``PINS``), SPI
bus id and ADC channels; config "pins" overrides any of them: ``sck``,
``mosi``, ``miso``, ``cs`` (ATM90E26 chip select), ``relay`` (output, high =
supply connected), ``v_adc``, ``i_adc`` (ADC inputs for the direct-ADC front
end), ``spi`` (bus id).

ATM90E26: SPI mode 3 (polarity=1, phase=1), MSB first, SPI_BAUD 200 kHz
(REFERENCES.md: open drivers run the chip at ~200 kHz). ADC: the two
channels are read alternately, paced by time.ticks_us to the front end's
sample period, ``read_u16() >> 4`` as 12-bit codes.

Clock: ``time.time()`` (2000-based on ports whose gmtime(0) says so, shifted
to unix time), never below the clock of the last persisted state (an RTC
without a battery restarts from its epoch after a power cut; the meter then
keeps counting from the persisted clock until a time sync). Only board files
import ``machine`` (and ``network``: Wi-Fi (re)connection in ``network_up``,
called by firmware/comms.py before every MQTT connection attempt).
"""

import time

import machine

from firmware import compat, hal

SPI_BAUD = 200000
WIFI_TIMEOUT_MS = 20000
EPOCH_2000 = 946684800  # unix time of 2000-01-01


def unix_now():
    t = time.time()
    return t + EPOCH_2000 if time.gmtime(0)[0] == 2000 else t


class McuBoard:
    name = "mcu"
    PINS = {}
    SPI_ID = 0

    def __init__(self, flash_dir="/flash"):
        self.flash_dir = flash_dir
        self.pins = dict(self.PINS)
        self._relay = None
        self._wdt = None
        self._t = compat.ticks_ms()
        self._adc_v = None
        self._adc_i = None
        self._sample_us = 312
        self.wifi = None  # config "wifi" {ssid, password}, set after boot

    def reset_cause(self):
        c = machine.reset_cause()
        if c == machine.WDT_RESET:
            return hal.RESET_WATCHDOG
        if c == machine.SOFT_RESET:
            return hal.RESET_SOFT
        return hal.RESET_POWER_ON

    def clock_at_boot(self, ts, ms):
        now = unix_now()
        if ts is not None and now < ts:
            return ts, ms  # the RTC lost power: continue from the persisted clock
        return now, 0

    def _configure(self, cfg):
        for k in cfg["pins"]:
            self.pins[k] = cfg["pins"][k]
        self._relay = machine.Pin(self.pins["relay"], machine.Pin.OUT, value=1)

    def frontend(self, cfg):
        self._configure(cfg)
        p = self.pins
        if cfg["frontend"] == "atm90e26":
            from firmware.atm90e26 import ATM90E26

            spi = machine.SPI(
                p.get("spi", self.SPI_ID),
                baudrate=SPI_BAUD,
                polarity=1,
                phase=1,
                bits=8,
                firstbit=machine.SPI.MSB,
                sck=machine.Pin(p["sck"]),
                mosi=machine.Pin(p["mosi"]),
                miso=machine.Pin(p["miso"]),
            )
            cs = machine.Pin(p["cs"], machine.Pin.OUT, value=1)
            return hal.AtmSource(ATM90E26(spi, cs, time.sleep_ms))
        self._adc_v = self.make_adc(p["v_adc"])
        self._adc_i = self.make_adc(p["i_adc"])
        cal = cfg["calibration"]
        self._sample_us = 1000000 // (cal.get("mains_hz", cfg["mains_hz"]) * cal.get("samples_per_cycle", 64))
        return hal.AdcSource(self.sample)

    def make_adc(self, pin):
        return machine.ADC(machine.Pin(pin))

    def sample(self, vbuf, ibuf, n):
        """Alternate V and I reads, one pair per sample period; False if the timing slipped badly."""
        rv = self._adc_v.read_u16
        ri = self._adc_i.read_u16
        period = self._sample_us
        t = time.ticks_us()
        late = 0
        for k in range(n):
            vbuf[k] = rv() >> 4
            ibuf[k] = ri() >> 4
            t = time.ticks_add(t, period)
            d = time.ticks_diff(t, time.ticks_us())
            if d > 0:
                time.sleep_us(d)
            else:
                late += 1
        return late < n // 8

    def set_relay(self, closed):
        self._relay.value(1 if closed else 0)

    def wdt_start(self, ms):
        self._wdt = machine.WDT(timeout=ms)

    def wdt_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def elapsed_ms(self):
        now = compat.ticks_ms()
        d = compat.ticks_diff(now, self._t)
        self._t = now
        return d

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    async def asleep_ms(self, ms):
        import asyncio

        await asyncio.sleep_ms(ms)

    def running(self):
        return True

    async def network_up(self):
        """Join the Wi-Fi of config "wifi" (if any) and wait for it; OSError after WIFI_TIMEOUT_MS."""
        wifi = self.wifi
        if wifi is None:
            return  # wired, or a board whose network is up by itself
        import asyncio

        import network

        w = network.WLAN(network.STA_IF)
        if w.isconnected():
            return
        w.active(True)
        w.connect(wifi["ssid"], wifi["password"])
        t0 = compat.ticks_ms()
        while not w.isconnected():
            if compat.ticks_diff(compat.ticks_ms(), t0) > WIFI_TIMEOUT_MS:
                w.disconnect()
                raise OSError("wifi %r: not connected after %d ms" % (wifi["ssid"], WIFI_TIMEOUT_MS))
            await asyncio.sleep_ms(200)


def run_board(board):
    """Boot the shared app on ``board`` and run forever with the MQTT link (main.py calls this)."""
    import asyncio

    from firmware.app import App
    from firmware.runner import run_meter

    app = App(board, comms=True)
    app.boot()
    if app.metering_fault is not None:
        print("meter: " + app.metering_fault)  # on the REPL/UART; the head-end gets event 18
    board.wifi = app.wifi_cfg
    asyncio.run(run_meter(app, app.broker_cfg))
