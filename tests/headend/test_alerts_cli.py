"""`headend alerts`, `headend workorder` and `headend reading enter`: a whole operator session
on a real database file, and errors as `error: ...` naming what was wrong."""

import json

import pytest

from headend.cli import main
from tests.headend.alerts_support import NOW, H, add_event, add_meter, hourly, reading_row

ISO_NOW = "2024-03-17T06:00:00Z"  # == NOW


def cli(capsys, *argv):
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def db(db_target):  # both engines (tests/conftest.py)
    from headend.db.storage import Storage

    path = db_target
    with Storage(path) as store:
        add_meter(store, "m1", "A1", address="3 Quay Rd")
        hourly(store, "m1")
        add_event(store, "m1", 5000, NOW - H, 17)  # possible bypass
        add_meter(store, "m2", "A2")
        hourly(store, "m2", end=NOW - 6 * H)  # silent
    return path


def test_operator_session(db, capsys):
    rc, out, _ = cli(capsys, "alerts", "run", "--now", ISO_NOW, "--json", "--db", db)
    summary = json.loads(out)
    assert rc == 0 and (summary["new"], summary["work_orders"], summary["notifications"]) == (2, 1, 2)
    rc, out, _ = cli(capsys, "--db", db, "alerts", "run", "--now", ISO_NOW)
    assert out.startswith("new 0, updated 1, resolved 0")  # comm_loss refreshed, the event alert unchanged
    rc, out, _ = cli(capsys, "alerts", "list", "--json", "--db", db)
    alerts = {a["rule"]: a for a in json.loads(out)}
    assert set(alerts) == {"line_neutral_mismatch", "comm_loss"}
    rc, out, _ = cli(capsys, "alerts", "list", "--meter", "m2", "--db", db)
    assert out.split()[1:4] == ["warning", "open", "comm_loss"]
    cid = alerts["comm_loss"]["id"]
    rc, out, _ = cli(capsys, "alerts", "ack", str(cid), "--by", "alice", "--note", "calling", "--db", db)
    assert rc == 0 and out == "alert %d acknowledged by alice\n" % cid
    rc, out, _ = cli(
        capsys, "alerts", "resolve", str(cid), "--by", "alice", "--note", "power cut", "--db", db
    )
    assert out == "alert %d resolved by alice\n" % cid
    rc, out, _ = cli(capsys, "alerts", "list", "--state", "resolved", "--json", "--db", db)
    assert [a["id"] for a in json.loads(out)] == [cid]

    rc, out, _ = cli(capsys, "workorder", "list", "--json", "--db", db)
    [wo] = json.loads(out)
    assert (wo["meter_id"], wo["location"], wo["state"]) == ("m1", "3 Quay Rd (zone Z)", "open")
    rc, out, _ = cli(
        capsys, "reading", "enter", "m1", "--ts", "2024-03-17T05:30:00Z", "--imp", "389500",
        "--by", "crew-3", "--work-order", str(wo["id"]), "--db", db,
    )  # fmt: skip
    got = json.loads(out)
    assert rc == 0 and (got["seq"], got["vee_state"], got["imp"]) == (-1, "pending", [389500])
    rc, out, _ = cli(
        capsys, "workorder", "close", str(wo["id"]), "--by", "crew-3", "--findings", "bypass", "--db", db
    )
    assert out == "work order %d closed by crew-3\n" % wo["id"]
    rc, out, _ = cli(capsys, "workorder", "list", "--db", db)
    assert out.split()[:3] == [str(wo["id"]), "closed", "m1"]
    rc, out, _ = cli(capsys, "alerts", "list", "--db", db)
    assert out == ""  # nothing active any more

    rc, out, _ = cli(capsys, "vee", "run", "m1", "--json", "--now", ISO_NOW, "--db", db)
    assert rc == 0 and json.loads(out)["m1"]["readings"] > 0
    rc, out, _ = cli(capsys, "readings", "m1", "--from", "2024-03-17T05:30:00Z", "--json", "--db", db)
    manual = [r for r in json.loads(out) if r["seq"] == -1]
    assert manual and manual[0]["vee_state"] != "pending"


# argument checks: SQLite only (the session above runs on both engines)
@pytest.mark.parametrize("engine", ["sqlite"])
@pytest.mark.parametrize(
    "argv, message",
    [
        (["alerts", "ack", "99", "--by", "x"], "error: unknown alert 99"),
        (["workorder", "close", "7", "--by", "x", "--findings", "f"], "error: unknown work order 7"),
        (["reading", "enter", "nope", "--ts", "0", "--imp", "1"], "error: unknown meter 'nope'"),
        (
            ["reading", "enter", "m1", "--ts", "2024-03-17T05:00:00Z", "--imp", "1"],
            "error: --ts: meter m1 already",
        ),
        (
            ["reading", "enter", "m1", "--ts", "2024-03-17T05:10:00Z", "--imp", "1,2"],
            "error: --imp: 2 value(s)",
        ),
    ],
)
def test_errors_name_what_was_wrong(db, capsys, argv, message):
    rc, out, err = cli(capsys, *argv, "--db", db)
    assert rc == 1 and out == "" and err.startswith(message)


@pytest.mark.parametrize("engine", ["sqlite"])  # a file check: SQLite only
def test_bad_config_file_names_the_field(db, tmp_path, capsys):
    cfg = tmp_path / "alerts.toml"
    cfg.write_text("[alerts]\ncomm_loss_intervals = 0\n")
    rc, _, err = cli(capsys, "alerts", "run", "--config", str(cfg), "--db", db)
    assert rc == 1 and err.startswith("error: comm_loss_intervals: must be an integer 1..")
    cfg.write_text('[alerts]\nnotify_email = "ops@example.org"\ndisabled_rules = ["comm_loss"]\n')
    rc, out, _ = cli(capsys, "alerts", "run", "--config", str(cfg), "--now", ISO_NOW, "--json", "--db", db)
    assert rc == 0 and [a["rule"] for a in json.loads(out)["alerts"]] == ["line_neutral_mismatch"]


def test_reading_enter_rejects_bad_wh(db, capsys):
    with pytest.raises(SystemExit) as e:
        main(["reading", "enter", "m1", "--ts", "0", "--imp", "a,b", "--db", db])
    assert e.value.code == 2 and "comma-separated whole Wh" in capsys.readouterr().err


def test_readings_after_reading_enter_keep_meter_seqs(db, capsys):
    cli(capsys, "reading", "enter", "m1", "--ts", "2024-03-17T05:10:00Z", "--imp", "389100", "--db", db)
    from headend.db.storage import Storage

    with Storage(db) as store:
        store.insert_readings_batch([reading_row("m1", 1, NOW + H, 1)])  # a meter seq 1 re-sent: a duplicate
        seqs = sorted(r["seq"] for r in store.readings("m1"))
    assert seqs[0] == -1 and seqs[1] == 1 and len(seqs) == len(set(seqs))
