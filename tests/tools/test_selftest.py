"""firmware/selftest.py through tools/deploy.py --selftest: on the emulator (its unix board, a real
Mosquitto with the meter's credentials) and on the simulated board over socket:// (the raw REPL,
main.py set aside and restored); and tools/calibrate.py --port against the simulated board, whose
ATM90E26 model keeps its sensor errors (the load switched between the points as a bench would)."""

import json
import os
import subprocess

import pytest

from tools import calibrate, deploy, emulate
from tools.mosquitto_broker import MosquittoBroker, broker_tmpdir, free_port

ALL = ("config", "atm90e26", "urms", "flash", "rtc", "heap", "wifi", "broker", "mqtt")


def _rows(rows):
    return {name: (ok, fig) for name, ok, fig in rows}


def _set_broker(path, host, port, password):
    with open(path) as f:
        raw = json.load(f)
    raw["broker"] = {"host": host, "port": port, "password": password}
    with open(path, "w") as f:
        json.dump(raw, f)
    return raw["meter_id"]


def test_selftest_on_the_emulator_with_the_meters_credentials(tmp_path, capsys):
    flash = str(tmp_path / "flash")
    emulate.emulate_bench.ensure_config(flash, emulate.emulate_bench.Scenario({"segments": [{"seconds": 1}]}))
    cfg = os.path.join(flash, "config.json")
    bdir = broker_tmpdir()  # the broker drops to user mosquitto: a directory it can read
    pw = os.path.join(bdir, "passwd")
    meter = _set_broker(cfg, "127.0.0.1", free_port(), "s3cret-pw")
    open(pw, "w").close()
    subprocess.run(["mosquitto_passwd", "-b", pw, meter, "s3cret-pw"], check=True)
    os.chmod(pw, 0o644)
    with MosquittoBroker(bdir, ["allow_anonymous false", "password_file %s" % pw]) as broker:
        _set_broker(cfg, "127.0.0.1", broker.port, "s3cret-pw")
        assert deploy.main(["--selftest", "--flash", flash]) == 0
        out = capsys.readouterr().out
        _set_broker(cfg, "127.0.0.1", broker.port, "wrong")
        assert deploy.main(["--selftest", "--flash", flash]) == 1
        bad = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert all(lines[n].split()[1] == ("SKIP" if n == "wifi" else "PASS") for n in ALL), out
    assert "CS1 0x" in lines["atm90e26"] and "SysStatus 0x0000" in lines["atm90e26"]
    assert 229.0 < float(lines["urms"].split()[2]) < 231.0
    assert "CONNACK 0" in lines["mqtt"] and "all checks passed" in out
    assert "mqtt      FAIL CONNACK 5" in bad and "FAILED: mqtt" in bad, bad


@pytest.fixture(scope="module")
def simboard(tmp_path_factory):
    from hil_tests.simboard.server import SimBoard

    sim = SimBoard(tmp_path_factory.mktemp("simboard")).start()  # one board for both tests (~10 s to lay out)
    try:
        yield sim
    finally:
        sim.stop()


def test_selftest_on_the_simulated_board_over_socket(simboard):
    cfg = os.path.join(simboard.root, "flash", "config.json")
    _set_broker(cfg, "127.0.0.1", free_port(), "x")  # nothing listens there: the broker line fails
    rows = _rows(deploy.selftest_board(simboard.url, "esp32", "flash"))
    assert [n for n in ALL if n in rows] == list(ALL)
    for n in ("config", "atm90e26", "urms", "flash", "rtc", "heap"):
        assert rows[n][0] is True, (n, rows[n])
    assert rows["wifi"][0] is None and rows["mqtt"][0] is None
    assert rows["broker"][0] is False and "127.0.0.1:" in rows["broker"][1]
    assert os.path.exists(os.path.join(simboard.root, "main.py")), "main.py back in place"


def test_calibrate_over_the_raw_repl_on_the_simulated_board(simboard, capsys):
    cfg_path = os.path.join(simboard.root, "flash", "config.json")
    with open(cfg_path) as f:
        raw = json.load(f)
    raw["calibration"] = {"meter_constant": raw["meter_constant"], "un": raw["un"], "ib": raw["ib"]}
    with open(cfg_path, "w") as f:
        json.dump(raw, f)  # a fresh board: the chip's power-on gains
    bench = os.path.join(simboard.root, "bench.json")

    def set_load(target, k):  # the bench's load to point k; the simulated chip reads it at boot
        with open(bench) as f:
            b = json.load(f)
        b["phase_deg"] = calibrate.POINTS[k][1]
        with open(bench, "w") as f:
            json.dump(b, f)
        target.reboot()

    t = calibrate.BoardTarget(simboard.url, "esp32", "flash", between=set_load)
    try:
        ref = {"volts": 230.0, "amps": 5.0, "watts": [1150.0, 575.0], "wh": None}
        r = calibrate.calibrate(t, "atm90e26", ref, seconds=2)  # Pmean: 1 W of 1150 W at any window
    finally:
        t.close()
    out = capsys.readouterr().out
    assert all(abs(e) > 0.5 for e, _u, _i in r["before"]), out
    assert r["ok"] and all(abs(e) <= 0.2 for e, _u, _i in r["after"]), out
    local = simboard.root + "-local.json"
    with open(local, "w") as f:
        json.dump(raw, f)
    calibrate.save_local(local, r["calibration"])  # the copy at home gets the same gains
    with open(local) as f:
        assert json.load(f)["calibration"] == r["calibration"]
    with open(cfg_path) as f:
        written = json.load(f)["calibration"]
    assert written["lgain"] == r["calibration"]["lgain"] and "lphi" in written
    assert os.path.exists(os.path.join(simboard.root, "main.py"))
