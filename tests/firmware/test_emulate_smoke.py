"""tools/emulate.py end to end: the firmware on micropython, a tariff, prepaid, resume, the CLI."""

import json
import subprocess
import sys

from tests.firmware.emulate_support import ROOT, TARIFF_4, emulate, run, units, write_scenario

START = 1719792000  # 2024-07-01 00:00 UTC, a Monday (08:00 in the tariff's UTC+8)


def test_tariff_prepaid_relay_and_resume(tmp_path):
    flash = tmp_path / "flash"
    sc = {
        "frontend": "atm90e26",
        "start": START,
        "segments": [
            {"seconds": 2 * 3600, "urms": 230, "irms": 10, "phase_deg": 0},
            {"seconds": 3600, "urms": 230, "irms": 10, "phase_deg": 180},
        ],
        "tariff": TARIFF_4,
        "prepaid": {"balance": 6000},
    }
    s = run(tmp_path, "a", sc, flash)
    # 08:00..10:00 local: T3 (650 milli-units/kWh); 2.3 kW x 2 h = 4.6 kWh would cost 2990
    assert s["imp"][2] == 4599 or s["imp"][2] == 4600, s
    assert s["balance"] == 6000 - s["imp"][2] * 650 // 1000
    assert s["events"][:2] == [2, 12] and 8 in s["events"]  # power up, tariff activated, low balance
    assert s["exp"][1] >= 2299 and s["relay"] == "closed" and s["tariff"] == 41  # 10:00..11:00: T2 export
    assert 5 in s["events"]  # reverse flow
    assert s["chip_counts"]["ap"] * 100 == sum(units(s, "imp"))  # every chip count, exactly
    assert s["chip_counts"]["an"] * 100 == sum(units(s, "exp"))
    assert json.loads((flash / "config.json").read_text())["meter_id"] == "emu-0001"
    again = run(tmp_path, "a", sc, flash)  # the scenario has ended: nothing more to meter
    assert again["registers"] == s["registers"] and again["boot_count"] == 2
    assert again["events"][-1] == 2 and 1 not in again["events"]  # clean shutdown: no power-down event


def test_credit_runs_out_relay_opens_and_load_stops(tmp_path):
    sc = {
        "frontend": "atm90e26",
        "start": START,
        "tariff": TARIFF_4,
        "prepaid": {"balance": 1000},
        "segments": [{"seconds": 3 * 3600, "urms": 230, "irms": 10, "phase_deg": 0}],
    }
    s = run(tmp_path, "credit", sc)
    assert s["relay"] == "open" and s["events"][-3:] == [8, 9, 6] or s["events"][-2:] == [9, 6], s
    # 1000 milli-units at 650/kWh buy 1538 Wh; the relay opens at the next minute tick (one 60 s
    # poll of 2.3 kW = 38.3 Wh later at most) and the load stops
    assert -26 <= s["balance"] <= 0
    assert 1538 <= sum(s["imp"]) <= 1538 + 39, s


def test_cli_table_and_json(tmp_path):
    sc = write_scenario(
        tmp_path / "s.json",
        frontend="adc",
        start=START,
        poll_ms=60000,
        segments=[{"seconds": 600, "urms": 230, "irms": 5, "phase_deg": 0, "noise_lsb": 1}],
    )
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "emulate.py"),
        "--scenario",
        str(sc),
        "--flash",
        str(tmp_path / "f"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0].split() == [
        "rate",
        "import",
        "Wh",
        "import",
        "mWh",
        "export",
        "Wh",
        "export",
        "mWh",
    ]
    assert "relay: closed" in out.stdout and "boot 1 restored 0" in out.stderr
    out = subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True)
    s = json.loads(out.stdout)
    for key in ("imp", "exp", "imp_mwh", "exp_mwh", "q", "balance", "relay", "events", "registers", "ts"):
        assert key in s
    # the firmware process's own heap (the models live in the bench process)
    assert 0 < s["heap_peak"] < s["heap_size"] <= 1024 * int(emulate.DEFAULT_HEAP[:-1])
    assert s["balance"] is None and s["frontend"] == "adc" and abs(s["imp_mwh"][0] - 191667) < 400
    bad = subprocess.run(cmd + ["--broker", "http://a:b@h:1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "expected mqtt://USER:PASS@HOST:PORT" in bad.stderr
    bad = subprocess.run(cmd + ["--speed", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--speed must be >= 0" in bad.stderr
