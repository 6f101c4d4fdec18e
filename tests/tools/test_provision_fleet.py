"""tools/provision_fleet.py: bulk meters in the head-end, each board's config.json, the broker's files."""

from __future__ import annotations

import json
import os
import stat

import pytest

from headend.db.storage import Storage
from headend.meters import fleet as pf
from headend.meters import provision
from protocol import board_config as fw_config


def _meters(db) -> dict[str, dict]:
    with Storage(str(db)) as store:
        return {m["meter_id"]: m for m in store.meters()}


def test_fleet_is_registered_with_matching_configs_and_broker_files(broker_tmp):
    db, out = broker_tmp / "h.db", broker_tmp / "fleet"
    wifi = {"ssid": "lab-net", "password": "pw-123456"}
    s = pf.provision_fleet(
        str(db), 4, str(out), frontend="mixed", prepaid_share=0.5, broker_host="10.0.0.2", broker_port=8883,
        wifi=wifi,
    )  # fmt: skip
    ids = ["m-0001", "m-0002", "m-0003", "m-0004"]
    assert [m["meter_id"] for m in s["meters"]] == ids and s["count"] == 4
    stored = _meters(db)
    assert sorted(stored) == ids
    for i, meter_id in enumerate(ids):
        path = out / meter_id / "config.json"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "the file holds the key"
        raw = json.loads(path.read_text())
        cfg = fw_config.validate(raw)  # the firmware accepts it
        assert cfg["meter_id"] == meter_id
        assert raw["key"] == stored[meter_id]["key"] and len(bytes.fromhex(raw["key"])) == 32
        assert cfg["broker"] == {"host": "10.0.0.2", "port": 8883, "user": meter_id,
                                 "password": raw["broker"]["password"]}  # fmt: skip
        hashed = stored[meter_id]["mqtt_password_hash"]
        assert provision.check_mosquitto_hash(raw["broker"]["password"], hashed)
        assert cfg["wifi"] == wifi
        assert cfg["frontend"] == ("atm90e26", "adc")[i % 2]
        assert cfg["prepaid"]["enabled"] == (i % 2 == 1), "every second meter is prepaid"
    keys = {json.loads((out / i / "config.json").read_text())["key"] for i in ids}
    assert len(keys) == 4, "every meter has its own key"
    b = s["broker"]
    passwd = open(b["passwd"]).read().splitlines()
    users = [line.split(":", 1)[0] for line in passwd]
    assert sorted(users) == ids, "the meters' listener knows the meters only"
    assert [line.split(":", 1)[0] for line in open(b["headend_passwd"])] == [provision.HEADEND_USER]
    assert (b["port"], b["headend_port"]) == (8883, 8884)
    acl = open(b["acl"]).read()
    assert "pattern write ami/v1/%u/up/#" in acl and "pattern read ami/v1/%u/down/#" in acl
    assert "password_file %s" % b["passwd"] in open(b["conf"]).read()
    assert s["frontends"] == {"atm90e26": 2, "adc": 2} and s["prepaid"] == 2


def test_ids_already_registered_are_refused_and_nothing_changes(broker_tmp):
    db, out = broker_tmp / "h.db", broker_tmp / "fleet"
    pf.provision_fleet(str(db), 2, str(out))
    before = {m: v["key"] for m, v in _meters(db).items()}
    with pytest.raises(pf.FleetError, match=r"already registered .*m-0001, m-0002.*--first"):
        pf.provision_fleet(str(db), 3, str(broker_tmp / "other"))
    assert {m: v["key"] for m, v in _meters(db).items()} == before
    assert not (broker_tmp / "other" / "m-0003").exists()
    s = pf.provision_fleet(str(db), 3, str(out), first=3)  # extending the fleet is fine
    assert (s["first"], s["last"]) == ("m-0003", "m-0005") and len(_meters(db)) == 5
    assert s["broker"]["meters"] == 5, "the broker files cover the whole fleet"


def test_existing_config_files_are_refused_before_the_database_is_touched(tmp_path):
    db, out = tmp_path / "h.db", tmp_path / "fleet"
    (out / "m-0002").mkdir(parents=True)
    (out / "m-0002" / "config.json").write_text("{}")
    with pytest.raises(pf.FleetError, match=r"already exist .*m-0002"):
        pf.provision_fleet(str(db), 3, str(out))
    assert _meters(db) == {}


def test_a_failure_midway_rolls_back_the_database_and_removes_the_files(broker_tmp, monkeypatch):
    db, out = broker_tmp / "h.db", broker_tmp / "fleet"
    real = pf.board_config

    def failing(meter, *args):
        if meter["meter_id"] == "m-0003":
            raise pf.FleetError("meter m-0003: injected failure")
        return real(meter, *args)

    monkeypatch.setattr(pf, "board_config", failing)
    with pytest.raises(pf.FleetError, match="injected"):
        pf.provision_fleet(str(db), 5, str(out))
    assert _meters(db) == {}, "one transaction: no meter of the batch stays"
    assert sorted(os.listdir(out)) == [], "no config file and no staging directory is left"


def test_bad_prefix_and_arguments_are_named(tmp_path):
    with pytest.raises(pf.FleetError, match="--prefix"):
        pf.meter_ids("bad prefix/", 2)
    with pytest.raises(pf.FleetError, match="--prefix"):
        pf.meter_ids("x" * 29, 2)  # 29 + 4 digits > 32
    with pytest.raises(pf.FleetError, match="--prefix 'headend-': meter id 'headend-0001' is reserved"):
        pf.meter_ids("headend-", 2)
    with pytest.raises(pf.FleetError, match="--prepaid-share"):
        pf.provision_fleet(str(tmp_path / "h.db"), 1, str(tmp_path), prepaid_share=1.5)
    assert pf.meter_ids("a-", 3, first=9998) == ["a-9998", "a-9999", "a-10000"]
    assert [pf.is_prepaid(i, 0.25) for i in range(8)] == [False, False, False, True] * 2


def test_cli_prints_json_summary_and_exits_1_on_conflict(broker_tmp, capsys):
    db, out = str(broker_tmp / "h.db"), str(broker_tmp / "fleet")
    assert pf.main(["--db", db, "--count", "2", "--out", out, "--prefix", "lab-", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert [m["meter_id"] for m in s["meters"]] == ["lab-0001", "lab-0002"]
    assert os.path.exists(s["broker"]["conf"]) and s["broker"]["port"] == 1883
    assert "key" not in json.dumps(s["meters"]), "the summary never carries secrets"
    assert pf.main(["--db", db, "--count", "1", "--out", out, "--prefix", "lab-"]) == 1
    assert "error: 1 config file(s) already exist" in capsys.readouterr().err
    assert pf.main(["--db", db, "--count", "1", "--out", out + "2", "--prefix", "lab-"]) == 1
    assert "already registered" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="the broker runs as another user only when started as root")
def test_as_root_a_broker_dir_the_broker_cannot_reach_is_refused_before_anything_is_written(tmp_path):
    db, out = tmp_path / "h.db", tmp_path / "fleet"  # under /tmp/pytest-of-root, mode 0700
    with pytest.raises(pf.FleetError, match="--broker-dir: .* user 'mosquitto', which cannot reach"):
        pf.provision_fleet(str(db), 2, str(out))
    assert _meters(db) == {} and not out.exists()
