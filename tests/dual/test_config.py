"""Board config loading and validation, on CPython and MicroPython alike."""

import json
import os

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises

from protocol import board_config as config
from protocol.board_config import ConfigError

KEY = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"


def _cfg(**extra):
    c = {"meter_id": "m-01", "key": KEY}
    for k in extra:
        c[k] = extra[k]
    return c


def _err(cfg):
    return str(raises(ConfigError, config.validate, cfg))


def test_defaults():
    c = config.default_config("m-01", KEY)
    assert c["key"] == bytes.fromhex(KEY) and len(c["key"]) == 32
    assert c["broker"] == {"host": "127.0.0.1", "port": 1883, "user": "m-01", "password": ""}
    assert c["wifi"] is None
    assert (c["interval"], c["frontend"], c["ib"], c["imax"], c["un"]) == (900, "atm90e26", 5, 60, 230)
    assert (c["mains_hz"], c["meter_constant"], c["rates"]) == (50, 3200, 4)
    assert (c["calibration"], c["pins"], c["persist_interval"], c["poll_ms"]) == ({}, {}, 900, 1000)
    assert c["prepaid"] == {
        "enabled": False,
        "low_balance": 5000,
        "emergency_credit": 0,
        "friendly_hours": [],
    }
    assert c["thresholds"] == {
        "sag_pct": 90,
        "swell_pct": 110,
        "overload_pct": 100,
        "mismatch_pct": 10,
        "mismatch_min_ma": 100,
    }
    assert config.validate(c) == c  # idempotent (key given as bytes)


def test_values_kept():
    c = config.validate(
        _cfg(
            broker={"host": "10.0.0.2", "port": 8883, "user": "u", "password": "p"},
            wifi={"ssid": "lab"},
            interval=60,
            frontend="adc",
            ib=2.5,
            imax=40,
            un=120,
            mains_hz=60,
            meter_constant=1000,
            rates=1,
            calibration={"ugain": 26400},
            pins={"cs": 5},
            persist_interval=3600,
            poll_ms=500,
            prepaid={"enabled": True, "friendly_hours": [[5, 0, 1440], [0, 1080, 1320]]},
            thresholds={"sag_pct": 80},
        )
    )
    assert c["broker"]["port"] == 8883 and c["wifi"] == {"ssid": "lab", "password": ""}
    assert c["ib"] == 2.5 and c["frontend"] == "adc" and c["calibration"] == {"ugain": 26400}
    assert c["prepaid"]["enabled"] is True and c["prepaid"]["friendly_hours"][1] == [0, 1080, 1320]
    assert c["thresholds"]["sag_pct"] == 80 and c["thresholds"]["swell_pct"] == 110


def test_errors_name_the_field():
    assert _err(_cfg(broker={"port": "x"})) == 'config.broker.port: expected int 1..65535, got "x"'
    assert _err(_cfg(broker={"port": 0})).startswith("config.broker.port:")
    assert _err({"key": KEY}) == "config.meter_id: required"
    assert _err({"meter_id": "m"}) == "config.key: required"
    assert _err(_cfg(meter_id="bad id")).startswith("config.meter_id: expected 1..32 chars")
    assert _err(_cfg(meter_id="x" * 33)).startswith("config.meter_id:")
    assert _err(_cfg(key=KEY[:-1] + "g")).startswith("config.key: expected 64 hex chars")
    assert _err(_cfg(key=KEY[:-2])).startswith("config.key:")
    assert _err(_cfg(interval=7 * 60)) == "config.interval: expected a divisor of 86400, got 420"
    assert _err(_cfg(interval=30)).startswith("config.interval: expected int 60..86400")
    assert _err(_cfg(frontend="hx")) == 'config.frontend: expected "atm90e26" or "adc", got "hx"'
    assert _err(_cfg(mains_hz=55)).startswith("config.mains_hz:")
    assert _err(_cfg(ib=True)).startswith("config.ib: expected number")
    assert _err(_cfg(ib=10, imax=5)).startswith("config.imax: expected number 10..400")
    assert _err(_cfg(rates=9)).startswith("config.rates:")
    assert _err(_cfg(poll_ms=60001)).startswith("config.poll_ms:")
    assert _err(_cfg(calibration=[1])).startswith("config.calibration: expected an object")
    assert _err(_cfg(wifi={"password": "x"})) == "config.wifi.ssid: required when wifi is given"
    assert _err(_cfg(prepaid={"enabled": 1})).startswith("config.prepaid.enabled: expected true or false")
    e = _err(_cfg(prepaid={"friendly_hours": [[1, 600, 600]]}))
    assert e.startswith("config.prepaid.friendly_hours[0][2]: expected int 601..1440"), e
    e = _err(_cfg(prepaid={"friendly_hours": [[7, 0, 1]]}))
    assert e.startswith("config.prepaid.friendly_hours[0][0]: expected int 0..6"), e
    assert _err(_cfg(thresholds={"swell_pct": 100})).startswith("config.thresholds.swell_pct:")
    assert _err([1]) == "config: expected a JSON object, got [1]"


def test_unknown_keys_refused():
    e = raises(ConfigError, config.validate, _cfg(intervall=900))
    assert str(e) == "config.intervall: unknown key" and e.field == "intervall"
    assert _err(_cfg(broker={"hots": "x"})) == "config.broker.hots: unknown key"
    assert _err(_cfg(thresholds={"sag": 1})) == "config.thresholds.sag: unknown key"
    # calibration and pins are free-form
    assert config.validate(_cfg(pins={"anything": [1, 2]}))["pins"] == {"anything": [1, 2]}


def test_load_file_and_to_json():
    path = "/tmp/fw_config_test_%d.json" % (id(KEY) & 0xFFFF)
    try:
        c = config.validate(_cfg(wifi={"ssid": "s", "password": "pw"}, rates=2))
        with open(path, "w") as f:
            f.write(config.to_json(c))
        assert config.load(path) == c
        with open(path, "w") as f:
            f.write(json.dumps(_cfg(broker={"port": 70000})))
        assert str(raises(ConfigError, config.load, path)).startswith("config.broker.port:")
        with open(path, "w") as f:
            f.write("{not json")
        assert "not valid JSON" in str(raises(ConfigError, config.load, path))
    finally:
        os.remove(path)
    e = raises(ConfigError, config.load, path)
    assert e.field == "" and "cannot read" in str(e)


def test_privacy_flag():
    assert config.default_config("m-01", KEY)["privacy"] is False
    assert config.validate(_cfg(privacy=True))["privacy"] is True
    assert "config.privacy: expected true or false" in _err(_cfg(privacy=1))
    assert "config.privacy" in _err(_cfg(privacy="yes"))
    c = config.validate(_cfg(privacy=True))
    assert config.validate(json.loads(config.to_json(c))) == c
