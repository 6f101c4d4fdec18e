"""What a newcomer meets at the command line (issue 17 item 6): no tracebacks, no silent
database, a named command, a broken pipe that ends quietly, `vee run` as text, and help on
every option."""

import argparse
import json
import os
import subprocess
import sys

from headend.cli import build_parser, main
from headend.db.storage import Storage
from tests.headend.test_cli_vee import T0, add_readings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADEND = [sys.executable, "-m", "headend.cli"]


def run(capsys, *argv):
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_web_user_add_without_a_terminal_or_stdin_says_how_instead_of_a_traceback(tmp_path):
    db = str(tmp_path / "h.db")
    for extra in ([], ["--password-stdin"]):
        done = subprocess.run(
            [*HEADEND, "--db", db, "web", "user", "add", "ann", "--role", "operator", *extra],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=ROOT,
            start_new_session=True,  # no controlling terminal: getpass has nowhere to ask
            timeout=60,
        )
        assert done.returncode == 1, done
        assert "Traceback" not in done.stderr and "EOFError" not in done.stderr, done.stderr
        assert done.stderr.startswith("error: ") and "--password-stdin" in done.stderr, done.stderr
    with Storage(db) as store:
        assert store.web_users() == []


def test_a_read_only_command_refuses_a_missing_database_and_creates_nothing(tmp_path, capsys):
    db = tmp_path / "MISTYPED.db"
    for argv in (
        ["--db", str(db), "stats"],
        ["meter", "list", "--db", str(db)],
        ["vee", "run", "--db", str(db)],
    ):
        rc, out, err = run(capsys, *argv)
        assert rc == 1 and out == "" and err.startswith("error: no database at %s" % db), (argv, err)
        assert "commands that create one: meter add, meter provision" in err
    assert sorted(os.listdir(tmp_path)) == []  # no database, no -wal, no master key
    rc, _, _ = run(capsys, "--db", str(db), "meter", "add", "m1")  # a command that creates one
    assert rc == 0 and db.exists()
    rc, out, _ = run(capsys, "--db", str(db), "stats", "--json")
    assert rc == 0 and json.loads(out)["accepted"] == 0


def test_bill_profile_needs_no_database(tmp_path, capsys):
    tariff = tmp_path / "t.json"
    tariff.write_text(
        '{"format": "open-ami-tariff", "name": "f", "periods": ["all"], "energy": {"all": "0.5"}}'
    )
    csv = tmp_path / "p.csv"
    csv.write_text("timestamp,kwh\n2024-01-01T00:00:00Z,1\n2024-01-01T01:00:00Z,1\n")
    rc, out, err = run(capsys, "--db", str(tmp_path / "none.db"), "bill-profile", "--tariff", str(tariff),
                       "--profile", str(csv), "--json")  # fmt: skip
    assert rc == 0, err
    assert not (tmp_path / "none.db").exists()


def test_readings_piped_into_head_end_quietly_with_0(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    run(capsys, "--db", db, "meter", "add", "m1")
    add_readings(db, "m1", list(range(1000, 4000)))  # far more than a pipe holds: the writer blocks
    proc = subprocess.Popen(
        [*HEADEND, "--db", db, "readings", "m1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    lines = [proc.stdout.readline() for _ in range(3)]  # what `| head -3` reads, then it exits
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == "", err
    assert all(b"imp=[" in line for line in lines), lines


def test_commands_list_names_the_command(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    run(capsys, "--db", db, "meter", "add", "m1")
    run(capsys, "--db", db, "command", "relay", "m1", "--open")
    run(capsys, "--db", db, "command", "relay", "m1", "--close", "--reason", "credit")
    run(capsys, "--db", db, "command", "config", "m1", "--interval", "900")
    rc, out, _ = run(capsys, "--db", db, "commands", "list", "m1")
    lines = out.splitlines()
    assert rc == 0 and "relay open" in lines[0] and "relay close (credit)" in lines[1], out
    assert "set-config interval=900" in lines[2] and "cmd " not in out, out
    rc, out, _ = run(capsys, "--db", db, "commands", "list", "m1", "--json")
    assert [c["cmd"] for c in json.loads(out)] == [2, 2, 6]  # the JSON is unchanged


def test_vee_run_prints_a_summary_json_on_request_and_readings_name_the_rule(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    run(capsys, "--db", db, "meter", "add", "m1")
    add_readings(db, "m1", [1000, 1010, 1020, 900, 1040])  # the register goes down at 00:45
    rc, out, _ = run(capsys, "--db", db, "vee", "run", "--now", str(T0 + 7200))
    assert rc == 0 and not out.startswith("{"), out
    first, total = out.strip().splitlines()
    assert first.startswith("m1: 5 readings (") and "rules: " in first and "none fired" not in first, first
    assert total.startswith("vee: 1 meter(s); readings by state: "), total
    rc, out, _ = run(capsys, "--db", db, "vee", "run", "--json", "--now", str(T0 + 7200))
    summary = json.loads(out)["m1"]
    assert rc == 0 and summary["readings"] == 5
    judged = {n: c for n, c in summary["rules"].items() if any(c.values())}
    assert judged, summary
    rc, out, _ = run(capsys, "--db", db, "readings", "m1", "--json")
    rows = json.loads(out)
    flagged = [r for r in rows if r["vee_state"] in ("suspect", "failed")]
    assert flagged and all(r["vee_rules"] for r in flagged), rows
    assert {v["rule"] for r in flagged for v in r["vee_rules"]} <= set(judged)
    rc, out, _ = run(capsys, "--db", db, "readings", "m1")
    for r in flagged:
        [line] = [x for x in out.splitlines() if x.split()[0] == str(r["seq"])]
        assert "[%s %s: " % (r["vee_rules"][0]["rule"], r["vee_rules"][0]["outcome"]) in line, line


def _options(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.option_strings:
            yield " ".join(path), action


def test_every_option_of_every_command_has_help_text():
    missing = sorted(
        "headend %s %s" % (cmd, "/".join(a.option_strings))
        for cmd, a in _options(build_parser())
        if not a.help  # argparse.SUPPRESS (hidden test hooks) is a help value, not a gap
    )
    assert not missing, "options without help text:\n" + "\n".join(missing)
