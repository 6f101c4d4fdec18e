"""The account / bill / outbox commands of the `headend` command."""

import json

from headend import cli as cli_billrun
from headend.cli import build_parser
from headend.db.storage import Storage
from tests.headend.billrun_support import NOW, TOU, hourly, tou_rates


def run(capsys, *argv):
    code = cli_billrun.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_main_cli_has_the_billing_commands():
    from headend.cli import COMMANDS

    args = build_parser().parse_args(["--db", "x.db", "bill", "run", "--cycle", "2024-02", "--json"])
    assert (args.command, args.bill_command, args.cycle, args.json) == ("bill", "run", "2024-02", True)
    assert {"account", "bill", "outbox"} <= set(COMMANDS)


def test_account_bill_review_outbox(db_target, tmp_path, capsys):  # both engines (tests/conftest.py)
    db = db_target
    tariff = tmp_path / "tou.toml"
    tariff.write_text(TOU)
    with Storage(db) as s:
        for m in ("m1", "m2"):
            s.add_meter(m, "00" * 32, "$7$x", now=0)
            hourly(s, m, tou_rates)
    code, out, _ = run(
        capsys,
        "--db",
        db,
        "account",
        "add",
        "A1",
        "--zone",
        "north",
        "--tariff",
        str(tariff),
        "--meter",
        "m1",
        "--email",
        "a1@example.org",
    )
    assert code == 0 and json.loads(out)["zone_kind"] == "regular"
    code, out, _ = run(
        capsys,
        "--db",
        db,
        "account",
        "add",
        "K1",
        "--zone",
        "centre",
        "--key-zone",
        "--tariff",
        str(tariff),
        "--meter",
        "m2",
    )
    assert code == 0
    code, _, err = run(
        capsys, "--db", db, "account", "add", "X", "--zone", "z", "--tariff", str(tariff), "--meter", "nope"
    )
    assert code == 1 and "unknown meter 'nope'" in err
    code, out, _ = run(capsys, "--db", db, "account", "list")
    assert "A1" in out and "K1" in out and "key" in out

    policy = tmp_path / "policy.toml"
    policy.write_text("[billrun]\nreview_sample_pct = 0\n")
    code, out, err = run(
        capsys,
        "--db",
        db,
        "bill",
        "run",
        "--cycle",
        "2024-02",
        "--json",
        "--now",
        str(NOW),
        "--policy",
        str(policy),
    )
    assert code == 0 and "batch 1:" in err
    summary = json.loads(out)
    assert (summary["issued"], summary["review"], summary["held"]) == (1, 1, 0)  # K1: a key zone

    code, out, _ = run(
        capsys, "--db", db, "bill", "list", "--cycle", "2024-02", "--state", "review", "--json"
    )
    assert "K1" in [b["account_id"] for b in json.loads(out)]
    code, out, _ = run(
        capsys,
        "--db",
        db,
        "bill",
        "correct",
        "K1",
        "--cycle",
        "2024-02",
        "--amount",
        "-1.50",
        "--reason",
        "meter swap estimate",
        "--user",
        "ops",
    )
    assert code == 0 and json.loads(out)["total"] == "76.58"
    code, out, _ = run(capsys, "--db", db, "bill", "approve", "K1", "--cycle", "2024-02", "--reason", "ok")
    assert code == 0 and json.loads(out)["state"] == "approved"
    code, _, err = run(capsys, "--db", db, "bill", "approve", "K1", "--cycle", "2024-02", "--reason", "ok")
    assert code == 1 and "only bills in review or held" in err
    code, out, _ = run(capsys, "--db", db, "bill", "show", "K1", "--cycle", "2024-02")
    assert "Adjustment (meter swap estimate)" in out and "76.58" in out and "Rounding:" in out
    code, out, _ = run(capsys, "--db", db, "bill", "show", "K1", "--cycle", "2024-02", "--html")
    assert out.startswith("<!DOCTYPE html>")
    code, _, err = run(capsys, "--db", db, "bill", "run", "--cycle", "2024-13")
    assert code == 1 and "cycle must be YYYY-MM" in err

    code, out, _ = run(capsys, "--db", db, "outbox", "send", "--json", "--smtp", "127.0.0.1:9")
    result = json.loads(out)
    # K1 (no contact): console, sent; A1 by e-mail: refused (nothing listens on port 9), retried later
    assert (result["sent"], result["retry"]) == (1, 1)
    assert result["errors"][0]["channel"] == "email" and "smtp 127.0.0.1:9" in result["errors"][0]["error"]
