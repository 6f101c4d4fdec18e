"""``bill-profile`` wiring: the JSON contract, the table, errors, and hooking into a parser."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from headend.billing import cli_profile as cli_billing

TARIFF = """
format = "open-ami-tariff"
name = "Beijing residential"
currency = "CNY"
utc_offset = 480
[tiers]
max_kwh = [240, 400]
[energy]
all = [0.4883, 0.5383, 0.7883]
"""


@pytest.fixture
def files(tmp_path):
    t = tmp_path / "beijing.toml"
    t.write_text(TARIFF)
    p = tmp_path / "load.csv"
    rows = ["2024-01-%02dT%02d:00,0.7" % (1 + h // 24, h % 24) for h in range(744)]
    rows += ["2024-02-01T00:00,1.2345"]
    p.write_text("timestamp,kwh\n" + "\n".join(rows) + "\n")
    return t, p


def test_json_contract(files, capsys):
    t, p = files
    assert cli_billing.main(["bill-profile", "--tariff", str(t), "--profile", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    jan, feb = out["months"]
    assert jan == {
        "month": "2024-01",
        "energy_kwh": "520.800",
        "energy_charge": "298.55",  # 240 x 0.4883 + 160 x 0.5383 + 120.8 x 0.7883 = 298.54664
        "fixed_charge": "0.00",
        "demand_charge": "0.00",
        "minimum_charge": "0.00",
        "total": "298.55",
    }
    assert feb["energy_kwh"] == "1.235" and feb["energy_charge"] == "0.60"  # 1.2345 x 0.4883 = 0.60280..
    assert out["rounding"] == {
        "mode": "ROUND_HALF_UP",
        "minor_unit": "0.01",
        "rule": "each line item rounded half-up to the minor unit; total = sum of the rounded lines",
    }
    assert out["currency"] == "CNY"


def test_table(files, capsys):
    t, p = files
    assert cli_billing.main(["bill-profile", "--tariff", str(t), "--profile", str(p)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Beijing residential (time_order CNY, ROUND_HALF_UP to 0.01")
    assert lines[2].split() == ["2024-01", "520.800", "298.55", "0.00", "0.00", "0.00", "298.55"]
    assert lines[-1].split() == ["all", "522.035", "299.15"]


def test_errors_are_one_line_and_exit_1(files, tmp_path, capsys):
    t, p = files
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,kwh\n2024-01-01T00:00,1\n2024-01-01T00:30,1\n")
    assert cli_billing.main(["bill-profile", "--tariff", str(t), "--profile", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: %s line 3: " % bad) and err.count("\n") == 1
    assert (
        cli_billing.main(["bill-profile", "--tariff", str(tmp_path / "none.toml"), "--profile", str(p)]) == 1
    )
    assert "No such file" in capsys.readouterr().err


def test_hooks_into_another_parser(files, capsys):
    t, p = files
    parser = argparse.ArgumentParser(prog="headend")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("stats")
    cli_billing.add_billing_commands(sub)
    args = parser.parse_args(
        ["bill-profile", "--tariff", str(t), "--profile", str(p), "--json", "--utc-offset", "0"]
    )
    assert args.command in cli_billing.COMMANDS
    assert cli_billing.run_billing_command(args) == 0
    assert json.loads(capsys.readouterr().out)["months"][0]["month"] == "2024-01"


def test_module_main_runs_as_a_process(files):
    t, p = files
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "headend.billing.cli_profile",
            "bill-profile",
            "--tariff",
            str(t),
            "--profile",
            str(p),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["months"][0]["total"] == "298.55"
