"""Provisioning: ids, keys, mosquitto password hashes (checked by the real broker), broker config."""

import shutil
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from headend.db.storage import Storage
from headend.errors import MeterExists, ProvisionError
from headend.meters import provision
from tests.headend.broker_support import Broker, wait_for
from tests.mosquitto_broker import free_port


@pytest.fixture
def store(tmp_path):
    with Storage(tmp_path / "h.db") as s:
        yield s


def test_add_meter_generates_key_and_password_and_keeps_only_the_hash(store):
    m = provision.add_meter(store, "m-1", account="acc")
    assert set(m) == {"meter_id", "key", "mqtt_password"} and len(bytes.fromhex(m["key"])) == 32
    row = store.meter("m-1")
    assert row["key"] == m["key"] and row["account"] == "acc"
    assert m["mqtt_password"] not in str(row) and provision.check_mosquitto_hash(
        m["mqtt_password"], row["mqtt_password_hash"]
    )
    assert provision.add_meter(store, "m-2", key_hex="AB" * 32)["key"] == "ab" * 32


@pytest.mark.parametrize(
    "meter_id, key, account, match",
    [
        ("bad id", None, None, "meter id 'bad id' is invalid"),
        ("x" * 33, None, None, "is invalid"),
        ("", None, None, "is invalid"),
        ("m", "abc", None, "key must be 64 hex digits"),
        ("m", "zz" * 32, None, "key must be 64 hex digits"),
        ("m", None, "  ", "account must not be empty"),
    ],
)
def test_bad_input_is_refused_by_name_and_nothing_is_stored(store, meter_id, key, account, match):
    with pytest.raises(ProvisionError, match=match):
        provision.add_meter(store, meter_id, key, account)
    assert store.meters() == []


def test_a_meter_id_cannot_be_registered_twice(store):
    provision.add_meter(store, "m1")
    with pytest.raises(MeterExists):
        provision.add_meter(store, "m1")


def test_hash_format_matches_mosquitto_passwd(tmp_path):
    exe = shutil.which("mosquitto_passwd")
    # it ships in Debian's mosquitto package, which `make test` installs: missing is a setup failure
    assert exe is not None, "mosquitto_passwd not found: run `make mosquitto`"
    path = tmp_path / "pw"
    subprocess.run([exe, "-c", "-b", str(path), "u", "s3cret"], check=True)
    theirs = path.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$101$") and provision.check_mosquitto_hash("s3cret", theirs)
    assert not provision.check_mosquitto_hash("wrong", theirs)
    ours = provision.mosquitto_hash("s3cret", salt=bytes(12))
    assert ours.split("$")[:3] == ["", "7", "101"] and len(ours) == len(theirs)


def test_broker_config_files(store, tmp_path):
    provision.add_meter(store, "m1")
    out = provision.write_broker_config(store, str(tmp_path / "b"), 1884)
    conf = open(out["conf"]).read().splitlines()
    assert "listener 1884 127.0.0.1" in conf and "allow_anonymous false" in conf
    assert out["headend_url"].startswith("mqtt://headend.ingest:") and out["headend_url"].endswith(
        "@127.0.0.1:1884"
    )
    acl = open(tmp_path / "b" / "acl").read()
    for line in (
        "pattern write ami/v1/%u/up/#",
        "pattern read ami/v1/%u/down/#",
        "user headend.ingest",
        "topic read ami/v1/+/up/#",
        "topic write ami/v1/+/down/#",
    ):
        assert line in acl.splitlines()
    users = [line.split(":")[0] for line in open(tmp_path / "b" / "passwd")]
    assert users == ["headend.ingest", "m1"]
    # the head-end password is made once: a second run prints the same URL
    assert (
        provision.write_broker_config(store, str(tmp_path / "b"), 1884)["headend_url"] == out["headend_url"]
    )
    with pytest.raises(ProvisionError, match="port"):
        provision.write_broker_config(store, str(tmp_path / "b"), 70000)


def _connect(port, user, password):
    result = {}
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user)
    c.username_pw_set(user, password)

    def on_connect(client, userdata, flags, rc, props):
        result["rc"] = rc
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    wait_for(done.is_set, 10, "CONNACK")
    c.disconnect()
    c.loop_stop()
    return not result["rc"].is_failure


def test_the_real_broker_accepts_our_hashes_and_refuses_others(store, tmp_path):
    m = provision.add_meter(store, "m1")
    port = free_port()
    out = provision.write_broker_config(store, str(tmp_path / "b"), port)
    broker = Broker(out["conf"], port)
    try:
        assert _connect(port, "m1", m["mqtt_password"])
        assert not _connect(port, "m1", m["mqtt_password"] + "x")
        assert not _connect(port, "nobody", "")
        user, password = out["headend_url"][len("mqtt://") :].split("@")[0].split(":")
        assert _connect(port, user, password)
    finally:
        broker.stop()
