"""ESP32 / RP2040 board files against a stand-in ``machine`` module (CPython): pins, SPI mode, clock."""

import sys
import time
import types

import pytest

from firmware import hal
from protocol import board_config as config


class _Pin:
    OUT = 1
    made = []

    def __init__(self, n, mode=None, value=None):
        self.n = n
        self.v = value
        _Pin.made.append(self)

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class _SPI:
    MSB = 0
    made = []

    def __init__(self, bus, **kw):
        self.bus = bus
        self.kw = kw
        _SPI.made.append(self)

    def write_readinto(self, out, inb):
        for i in range(len(out)):
            inb[i] = 0


class _ADC:
    ATTN_11DB = 3

    def __init__(self, pin):
        self.pin = pin
        self.att = None

    def atten(self, a):
        self.att = a

    def read_u16(self):
        return 0x8000


@pytest.fixture
def fake_machine(monkeypatch):
    wdt = types.SimpleNamespace(feed=lambda: None)
    m = types.SimpleNamespace(
        Pin=_Pin,
        SPI=_SPI,
        ADC=_ADC,
        WDT_RESET=3,
        SOFT_RESET=5,
        PWRON_RESET=1,
        reset_cause=lambda: 3,
        WDT=lambda timeout: wdt,
    )
    monkeypatch.setitem(sys.modules, "machine", m)
    monkeypatch.setattr(time, "sleep_ms", lambda ms: None, raising=False)  # MicroPython's time has it
    for name in ("firmware.boards.mcu", "firmware.boards.esp32", "firmware.boards.rp2040"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    _Pin.made.clear()
    _SPI.made.clear()
    return m


def _cfg(**kw):
    return config.validate(dict({"meter_id": "m", "key": "00" * 32}, **kw))


def test_esp32_atm90e26_spi_mode3_and_pins(fake_machine):
    from firmware.boards import esp32

    b = esp32.Esp32Board("/flash")
    fe = b.frontend(_cfg(pins={"cs": 4}))
    assert isinstance(fe, hal.AtmSource)
    spi = _SPI.made[0]
    assert spi.bus == 2 and spi.kw["polarity"] == 1 and spi.kw["phase"] == 1 and spi.kw["baudrate"] == 200000
    assert [p.n for p in _Pin.made][:2] == [26, 18] and any(p.n == 4 and p.v == 1 for p in _Pin.made)
    b.set_relay(False)
    assert _Pin.made[0].v == 0
    assert b.reset_cause() == hal.RESET_WATCHDOG


def test_esp32_adc_must_be_adc1(fake_machine):
    from firmware.boards import esp32

    b = esp32.Esp32Board()
    fe = b.frontend(_cfg(frontend="adc"))
    assert isinstance(fe, hal.AdcSource) and b._adc_v.att == _ADC.ATTN_11DB and b._sample_us == 312
    with pytest.raises(ValueError, match="ADC1"):
        b.frontend(_cfg(frontend="adc", pins={"v_adc": 4}))


def test_rp2040_defaults_and_clock_floor(fake_machine):
    from firmware.boards import mcu, rp2040

    b = rp2040.Rp2040Board()
    b.frontend(_cfg())
    assert _SPI.made[0].bus == 0 and _SPI.made[0].kw["sck"].n == 18
    now = mcu.unix_now()
    assert b.clock_at_boot(None, 0) == (now, 0) or b.clock_at_boot(None, 0)[0] >= now
    assert b.clock_at_boot(now + 10**6, 250) == (now + 10**6, 250)  # RTC behind the persisted clock
    assert b.clock_at_boot(now - 10, 0)[0] >= now
    with pytest.raises(ValueError, match="GP26"):
        b.frontend(_cfg(frontend="adc", pins={"i_adc": 5}))
