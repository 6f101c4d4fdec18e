"""From `headend meter add` to a running meter (issue 17 item 2): `headend meter config` writes the
board's config.json (checked by protocol/board_config.py); the emulator gives a config without a
calibration its factory calibration and says so, and the meter then reports to Mosquitto and
`headend serve` stores its readings; the firmware refuses to meter with a calibration it cannot
trust (event 18 detail 3), on the frozen unix32 runtime through tools/emulate.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from firmware import app as app_mod
from firmware import atm90e26_cal
from headend.db.storage import Storage
from headend.meters import provision
from protocol import board_config as config
from tests.firmware.emulate_support import ROOT, emulate, write_scenario
from tests.headend.broker_support import Serve, cli_json, start_broker, wait_for

START = 1710115200  # Monday 2024-03-11 00:00 UTC
METER = "m-cfg1"
HOUR = [{"seconds": 3600, "urms": 230, "irms": 5, "phase_deg": 0}]


def _headend(capsys, *argv):
    from headend.cli import main

    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _emulate_cli(scenario, flash, *extra):
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "emulate.py"),
        "--scenario",
        str(scenario),
        "--flash",
        str(flash),
    ]
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=300)


def test_meter_config_round_trips_through_board_config(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    meter = cli_json(capsys, "--db", db, "meter", "add", METER)
    pw = tmp_path / "pw"
    pw.write_text(meter["mqtt_password"] + "\n")
    argv = [
        "--db",
        db,
        "meter",
        "config",
        METER,
        "--out",
        str(tmp_path / "flash"),
        "--password-file",
        str(pw),
    ]
    s = cli_json(capsys, *argv, "--board", "esp32", "--frontend", "adc", "--broker-port", "18830",
                 "--interval", "300", "--json")  # fmt: skip
    assert meter["key"] not in json.dumps(s) and meter["mqtt_password"] not in json.dumps(s)
    path = tmp_path / "flash" / "config.json"
    assert s["config"] == str(path) and (path.stat().st_mode & 0o777) == 0o600
    assert s["next"].startswith("python tools/deploy.py --port PORT --board esp32 --config ")
    cfg = config.load(str(path))  # the firmware's own check
    assert cfg == config.validate(json.loads(config.to_json(cfg)))  # round trip
    assert (cfg["meter_id"], cfg["key"].hex(), cfg["frontend"], cfg["interval"]) == (
        METER,
        meter["key"],
        "adc",
        300,
    )
    assert cfg["broker"] == {
        "host": "127.0.0.1",
        "port": 18830,
        "user": METER,
        "password": meter["mqtt_password"],
    }

    # the same again is refused; a wrong password is refused; --new-password replaces the stored hash
    rc, _, err = _headend(capsys, *argv)
    assert rc == 1 and "exists" in err and "--force" in err
    pw.write_text("not-it\n")
    rc, _, err = _headend(capsys, *argv, "--force")
    assert rc == 1 and "not meter %r's broker password" % METER in err
    rc, out, err = _headend(capsys, "--db", db, "meter", "config", METER, "--out", str(tmp_path / "f2"))
    assert rc == 1 and "--password-file" in err and "--new-password" in err
    rc, out, err = _headend(capsys, "--db", db, "meter", "config", METER, "--out", str(tmp_path / "f2"),
                            "--new-password")  # fmt: skip
    assert rc == 0 and "broker-config" in out, err
    new = config.load(str(tmp_path / "f2" / "config.json"))["broker"]["password"]
    with Storage(db) as store:
        stored = store.meter(METER)["mqtt_password_hash"]
    assert provision.check_mosquitto_hash(new, stored) and not provision.check_mosquitto_hash(
        meter["mqtt_password"], stored
    )
    rc, _, err = _headend(capsys, "--db", db, "meter", "config", "ghost", "--out", str(tmp_path / "g"),
                          "--new-password")  # fmt: skip
    assert rc == 1 and "unknown meter 'ghost'" in err


def test_meter_config_runs_in_the_emulator_against_mosquitto_calibrated_by_the_factory(
    tmp_path, broker_tmp, capsys
):
    db = str(tmp_path / "h.db")
    meter = cli_json(capsys, "--db", db, "meter", "add", METER)
    broker, url = start_broker(capsys, db, str(broker_tmp / "broker"))
    serve = Serve(db, url)
    try:
        pw = tmp_path / "pw"
        pw.write_text(meter["mqtt_password"])
        flash = tmp_path / "flash"
        rc, out, err = _headend(capsys, "--db", db, "meter", "config", METER, "--out", str(flash),
                                "--password-file", str(pw), "--broker-port", str(broker.port))  # fmt: skip
        assert rc == 0 and "no calibration" in out, err
        assert "calibration" not in json.loads((flash / "config.json").read_text())
        b = config.load(str(flash / "config.json"))["broker"]
        broker_url = "mqtt://%s:%s@%s:%d" % (b["user"], b["password"], b["host"], b["port"])
        sc = write_scenario(tmp_path / "hour.json", start=START, segments=HOUR)
        emulate.ensure_built()
        done = _emulate_cli(sc, flash, "--broker", broker_url, "--linger", "60", "--json")
        assert done.returncode == 0, done.stderr
        assert (
            "config.json has no calibration: wrote the emulated ATM90E26's factory calibration" in done.stderr
        )
        cal = json.loads((flash / "config.json").read_text())["calibration"]
        assert cal["lgain"] and cal["ugain"]  # the factory's, written into the flash's config
        state = json.loads(done.stdout)
        assert state["metering"] is True and state["metering_fault"] is None and state["undelivered"] == 0
        assert sum(state["imp_mwh"]) == pytest.approx(1150_000, rel=0.005)  # 1150 W for 1 h, calibrated

        def stored():
            with Storage(db) as store:
                return store.readings(METER)

        rows = wait_for(lambda: len(stored()) >= 4 and stored(), 30, "headend serve storing the readings")
        assert sum(rows[-1]["imp"]) == sum(state["imp"])
    finally:
        serve.terminate()
        broker.stop()


DEFAULTS_ONLY = {"meter_constant": 3200, "un": 230, "ib": 5}  # the PL constant alone: never calibrated


@pytest.mark.parametrize(
    "frontend, calibration",
    [("atm90e26", DEFAULTS_ONLY), ("adc", {"cycles": 2, "samples_per_cycle": 64})],
)
def test_the_firmware_refuses_to_meter_with_a_calibration_it_cannot_trust(tmp_path, frontend, calibration):
    flash = tmp_path / "flash"
    flash.mkdir()
    raw = {"meter_id": METER, "key": "11" * 32, "frontend": frontend, "calibration": calibration}
    (flash / "config.json").write_text(json.dumps(raw))
    sc = write_scenario(tmp_path / "hour.json", start=START, frontend=frontend, segments=HOUR)
    emulate.ensure_built()
    done = _emulate_cli(sc, flash, "--json")
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["frozen"] is True  # the unix32 runtime, firmware frozen in
    assert state["metering"] is False and 18 in state["events"]
    assert sum(state["imp_mwh"]) == 0 and sum(state["imp"]) == 0  # nothing metered 5 % low: nothing at all
    assert "metering refused (event 18 detail 3)" in state["metering_fault"]
    assert "meter: " + state["metering_fault"] in done.stderr
    assert "has no calibration" not in done.stderr  # the emulator leaves a calibration that is there alone
    assert json.loads((flash / "config.json").read_text())["calibration"] == calibration
    table = _emulate_cli(sc, flash)  # the table says why too
    assert "metering: refused: " in table.stdout, table.stdout


def test_which_calibrations_are_untrusted():
    def cfg(frontend, cal):
        return config.validate({"meter_id": "m", "key": "00" * 32, "frontend": frontend, "calibration": cal})

    assert "no calibration" in app_mod.untrusted_calibration(cfg("atm90e26", {}))
    assert "no calibration" in app_mod.untrusted_calibration(cfg("adc", {}))
    assert "never calibrated" in app_mod.untrusted_calibration(cfg("atm90e26", DEFAULTS_ONLY))
    assert app_mod.untrusted_calibration(cfg("atm90e26", {**DEFAULTS_ONLY, "ugain": 26500})) is None
    assert app_mod.untrusted_calibration(cfg("atm90e26", {"lgain": 0xFF00})) is None
    assert "v_scale" in app_mod.untrusted_calibration(cfg("adc", {"v_scale": 13772114}))
    assert app_mod.untrusted_calibration(cfg("adc", {"v_scale": 13772114, "i_scale": 3124109})) is None
    assert atm90e26_cal.never_calibrated({}) and not atm90e26_cal.never_calibrated({"bogus": 1})
