"""The `headend` command line: JSON contracts, --db anywhere, errors as `error: ...`."""

import json
import subprocess
import sys

import pytest

from headend.cli import main
from headend.db.storage import Storage
from tests.headend.broker_support import ROOT

URL = "mqtt://headend.ingest:pw@127.0.0.1:9"  # never reached


def run(capsys, *argv):
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


TARIFF = '{"format": "open-ami-tariff", "name": "flat", "periods": ["all"], "energy": {"all": "0.5"}}'


def test_meter_add_prints_the_contract_and_list_shows_it(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    tariff = tmp_path / "t.json"
    tariff.write_text(TARIFF)
    assert run(capsys, "--db", db, "account", "add", "A-1", "--zone", "Z", "--tariff", str(tariff))[0] == 0
    rc, out, _ = run(capsys, "--db", db, "meter", "add", "m1", "--account", "A-1")
    m = json.loads(out)
    assert rc == 0 and list(m) == ["meter_id", "key", "mqtt_password", "privacy"] and m["meter_id"] == "m1"
    rc, out, _ = run(capsys, "meter", "list", "--json", "--db", db)
    assert [(x["meter_id"], x["account"], x["online"]) for x in json.loads(out)] == [("m1", "A-1", 0)]
    rc, out, _ = run(capsys, "meter", "list", "--db", db)
    assert out.split() == ["m1", "A-1", "offline"]


def test_meter_add_refuses_an_unknown_account_and_list_agrees_with_the_web(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    tariff = tmp_path / "t.json"
    tariff.write_text(TARIFF)
    run(capsys, "--db", db, "meter", "add", "m0")
    rc, out, err = run(capsys, "--db", db, "meter", "add", "m1", "--account", "A-NOPE")
    assert rc == 1 and out == "" and "no account 'A-NOPE'" in err and "headend account add" in err
    with Storage(db) as store:
        assert store.meter("m1") is None  # nothing half-registered
    # an account linked afterwards (account add --meter) is the meter's account in the list, as on the web
    run(capsys, "--db", db, "meter", "add", "m1")
    rc, _, err = run(capsys, "--db", db, "account", "add", "A-1", "--zone", "Z", "--tariff", str(tariff),
                     "--meter", "m1")  # fmt: skip
    assert rc == 0, err
    rc, out, _ = run(capsys, "--db", db, "meter", "list", "--json")
    listed = {x["meter_id"]: x["account"] for x in json.loads(out)}
    with Storage(db) as store:
        web = {m: (store.meter_account(m) or {}).get("account_id") for m in ("m0", "m1")}
    assert listed == web == {"m0": None, "m1": "A-1"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["meter", "add", "no/slash"], "error: meter id 'no/slash' is invalid"),
        (["meter", "add", "m2", "--key", "00"], "error: key must be 64 hex digits"),
        (["readings", "nope", "--json"], "error: unknown meter 'nope'"),
        (["serve", "--broker", "http://x"], "error: broker URL must look like mqtt://"),
        (["meter", "add", "headend-ingest"], "error: meter id 'headend-ingest' is reserved"),
        # a head-end session under a meter-shaped client id is refused before it connects anywhere
        (
            ["serve", "--broker", URL, "--client-id", "m-0001"],
            "error: --client-id 'm-0001' could be a meter's",
        ),
        (
            ["serve", "--broker", URL, "--workers", "2", "--client-id", "headend-ingest"],
            "error: --client-id 'head",
        ),
        (
            ["dispatch", "--broker", URL, "--once", "--client-id", "headend-dispatch"],
            "error: --client-id 'head",
        ),
        (["console", "--broker", URL, "--plain", "--client-id", "ops"], "error: --client-id 'ops' could be"),
    ],
)
def test_errors_name_what_was_wrong(tmp_path, capsys, argv, message):
    Storage(tmp_path / "h.db").close()  # an existing, empty database (a missing one is refused first)
    rc, out, err = run(capsys, *argv, "--db", str(tmp_path / "h.db"))
    assert rc == 1 and out == "" and err.startswith(message)


def test_duplicate_meter_is_an_error(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    run(capsys, "meter", "add", "m1", "--db", db)
    rc, _, err = run(capsys, "meter", "add", "m1", "--db", db)
    assert rc == 1 and err == "error: meter 'm1' is already registered\n"


def test_readings_and_stats_json(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    run(capsys, "meter", "add", "m1", "--db", db)
    with Storage(db) as s:
        rows = [
            (
                "m1",
                seq,
                900 * seq,
                1.0,
                900,
                "[%d]" % seq,
                "[0]",
                "[0,0,0,0]",
                None,
                500,
                0,
                None,
                b"f%d" % seq,
            )
            for seq in (1, 2, 3)
        ]
        s.insert_readings_batch(rows + rows[:1])
        s.quarantine("t", "tag", b"x")
    rc, out, _ = run(
        capsys, "readings", "m1", "--from", "1800", "--to", "1970-01-01T00:45:00Z", "--json", "--db", db
    )
    got = json.loads(out)
    assert [(r["seq"], r["ts"], r["imp"], r["balance"], r["vee_state"]) for r in got] == [
        (2, 1800, [2], 500, "pending"),
        (3, 2700, [3], 500, "pending"),
    ]
    assert {"seq", "ts", "imp", "exp", "q", "balance", "flags", "vee_state"} <= set(got[0])
    rc, out, _ = run(capsys, "stats", "--json", "--db", db)
    s = json.loads(out)
    assert (s["accepted"], s["duplicates"], s["rejected"], s["rejected_total"]) == (3, 1, {"tag": 1}, 1)


def test_broker_config_prints_conf_and_url(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "h.db")
    rc, out, _ = run(capsys, "broker-config", "--out", str(broker_tmp / "b"), "--port", "18999", "--db", db)
    cfg = json.loads(out)
    assert rc == 0 and set(cfg) == {
        "conf",
        "headend_url",
        "meter_port",
        "headend_port",
        "headend_password_file",
    }
    assert cfg["headend_url"].endswith("@127.0.0.1:19000") and (cfg["meter_port"], cfg["headend_port"]) == (
        18999,
        19000,
    ), "headend_url points at the head-end's listener, by default the meters' port + 1"
    conf = open(cfg["conf"]).read()
    assert "listener 18999 127.0.0.1" in conf and "listener 19000 127.0.0.1" in conf
    argv = ["broker-config", "--out", str(broker_tmp / "b"), "--port", "18999", "--headend-port", "18100"]
    rc, out, _ = run(capsys, *argv, "--db", db)
    assert rc == 0 and json.loads(out)["headend_url"].endswith("@127.0.0.1:18100")


def test_vee_run_without_the_engine_or_with_a_bad_meter(tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "h.db")
    Storage(db).close()
    rc, _, err = run(capsys, "vee", "run", "ghost", "--db", db)
    assert rc == 1 and (err.startswith("error: unknown meter 'ghost'") or "not installed" in err)


def test_vee_run_calls_the_engine_entry_point(tmp_path, capsys, monkeypatch):
    import types

    calls = []
    fake = types.ModuleType("headend.vee.engine")
    fake.run_vee = lambda store, meter_id, now, cfg: calls.append((meter_id, now, cfg)) or {"validated": 0}
    monkeypatch.setitem(sys.modules, "headend.vee.engine", fake)
    db = str(tmp_path / "h.db")
    run(capsys, "meter", "add", "m1", "--db", db)
    run(capsys, "meter", "add", "m2", "--db", db)
    rc, out, _ = run(capsys, "vee", "run", "--json", "--now", "86400", "--db", db)
    assert rc == 0 and json.loads(out) == {"m1": {"validated": 0}, "m2": {"validated": 0}}
    assert [c[:2] for c in calls] == [("m1", 86400), ("m2", 86400)]
    from headend.vee.config import VeeConfig

    assert calls[0][2] == VeeConfig(), "no --config: the default thresholds"
    cfg = tmp_path / "vee.toml"
    cfg.write_text("[vee]\nmax_delivery_delay_s = 7200\n")
    rc, _out, _ = run(capsys, "vee", "run", "m1", "--now", "86400", "--config", str(cfg), "--db", db)
    assert rc == 0 and calls[-1][2].max_delivery_delay_s == 7200
    cfg.write_text("[vee]\nmax_delivery_delay_s = -1\n")
    rc, _out, err = run(capsys, "vee", "run", "m1", "--config", str(cfg), "--db", db)
    assert rc == 1 and "max_delivery_delay_s" in err


def test_the_installed_command_runs(tmp_path):
    Storage(tmp_path / "h.db").close()
    out = subprocess.run(
        [sys.executable, "-m", "headend.cli", "--db", str(tmp_path / "h.db"), "stats", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["accepted"] == 0
