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
from tests.mosquitto_broker import free_ports


@pytest.fixture
def store(tmp_path):
    with Storage(tmp_path / "h.db") as s:
        yield s


def test_add_meter_generates_key_and_password_and_keeps_only_the_hash(store):
    store.add_tariff("t-1", "flat", "{}", None)
    store.add_account(
        {"account_id": "acc", "zone": "Z", "zone_kind": "regular", "billing": "postpaid", "tariff_id": "t-1"}
    )
    m = provision.add_meter(store, "m-1", account="acc")
    assert (
        set(m) == {"meter_id", "key", "mqtt_password", "privacy"}
        and m["privacy"] is False
        and len(bytes.fromhex(m["key"])) == 32
    )
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
        # the head-end's services' client ids, old and new: never a meter's username (= client id)
        ("headend-ingest", None, None, "meter id 'headend-ingest' is reserved"),
        ("headend-dispatch", None, None, "is reserved"),
        ("headend", None, None, "is reserved"),
        ("HeadEnd_console-1", None, None, "is reserved"),
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


def test_broker_config_files(store, broker_tmp):
    provision.add_meter(store, "m1")
    out_dir = broker_tmp / "b"
    out = provision.write_broker_config(store, str(out_dir), 1884)
    conf = open(out["conf"]).read().splitlines()
    assert (out["meter_port"], out["headend_port"]) == (1884, 1885), "the head-end listener: port + 1"
    assert out["headend_url"].startswith("mqtt://headend.ingest:") and out["headend_url"].endswith(
        "@127.0.0.1:1885"
    )
    # per_listener_settings first (Mosquitto refuses it after a password_file), then the limits,
    # then the meters' listener (username as client id) and the head-end's, each with its files
    assert conf[1] == "per_listener_settings true"
    meters_at, headend_at = conf.index("listener 1884 127.0.0.1"), conf.index("listener 1885 127.0.0.1")
    meters, headend = conf[meters_at:headend_at], conf[headend_at:]
    assert meters[1:] == [
        "use_username_as_clientid true",
        "allow_anonymous false",
        "password_file %s" % (out_dir / "passwd"),
        "acl_file %s" % (out_dir / "acl"),
        "max_qos 1",
        "",
        "# the head-end's services (headend_url): only the head-end user, with the client ids it chooses",
    ]
    assert headend[1:] == [
        "allow_anonymous false",
        "password_file %s" % (out_dir / "headend-passwd"),
        "acl_file %s" % (out_dir / "headend-acl"),
    ]
    for line in (
        "max_inflight_messages %d" % provision.MAX_INFLIGHT,
        "max_queued_messages %d" % provision.MAX_QUEUED,
        "max_queued_bytes %d" % provision.MAX_QUEUED_BYTES,
        "max_packet_size %d" % provision.MAX_PACKET,
        "max_keepalive %d" % provision.MAX_KEEPALIVE,
    ):
        assert conf.index(line) < meters_at, line + ": global (Mosquitto 2.0 has no per-listener limits)"
    assert 0 < provision.MAX_QUEUED_BYTES <= 1 << 30, "a bounded queue"
    assert open(out_dir / "acl").read().splitlines()[1:] == [
        "pattern write ami/v1/%u/up/#",
        "pattern read ami/v1/%u/down/#",
    ]
    assert open(out_dir / "headend-acl").read().splitlines()[1:] == [
        "user headend.ingest",
        "topic read ami/v1/+/up/#",
        "topic write ami/v1/+/down/#",
    ]
    assert [line.split(":")[0] for line in open(out_dir / "passwd")] == ["m1"], "meters only"
    assert [line.split(":")[0] for line in open(out_dir / "headend-passwd")] == ["headend.ingest"]
    # the head-end password is made once: a second run prints the same URL
    again = provision.write_broker_config(store, str(out_dir), 1884, headend_port=2000)
    assert again["headend_url"] == out["headend_url"].replace(":1885", ":2000")
    for port, headend_port, match in (
        (70000, None, "port"),
        (1884, 0, "head-end port"),
        (1884, 1884, "must differ"),
        (65535, None, "give the head-end port"),
    ):
        with pytest.raises(ProvisionError, match=match):
            provision.write_broker_config(store, str(out_dir), port, headend_port=headend_port)


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


def test_the_real_broker_accepts_our_hashes_and_refuses_others(store, broker_tmp):
    m = provision.add_meter(store, "m1")
    port, headend_port = free_ports(2)
    out = provision.write_broker_config(store, str(broker_tmp / "b"), port, headend_port=headend_port)
    broker = Broker(out["conf"], port)
    try:
        assert _connect(port, "m1", m["mqtt_password"])
        assert not _connect(port, "m1", m["mqtt_password"] + "x")
        assert not _connect(port, "nobody", "")
        user, password = out["headend_url"][len("mqtt://") :].split("@")[0].split(":")
        assert _connect(headend_port, user, password)
        # each listener knows only its own: no head-end login for meters, no meter login for the head-end
        assert not _connect(headend_port, "m1", m["mqtt_password"])
        assert not _connect(port, user, password)
    finally:
        broker.stop()
