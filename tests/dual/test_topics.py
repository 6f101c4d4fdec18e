"""MQTT topics of docs/protocol.md: runs under pytest and micropython."""

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises

from protocol import cbor, topics
from protocol.errors import ProtocolError


def test_up_and_down_topics():
    assert topics.up("m1", "reading") == "ami/v1/m1/up/reading"
    assert topics.up("m1", "event") == "ami/v1/m1/up/event"
    assert topics.up("m1", "ack") == "ami/v1/m1/up/ack"
    assert topics.up("m1", "status") == "ami/v1/m1/up/status"
    assert topics.down_cmd("MTR_0-9") == "ami/v1/MTR_0-9/down/cmd"


def test_parse_round_trip():
    for kind in topics.UP_KINDS:
        assert topics.parse(topics.up("Meter-1", kind)) == ("Meter-1", "up", kind)
    assert topics.parse(topics.down_cmd("x" * 32)) == ("x" * 32, "down", "cmd")
    assert topics.parse(b"ami/v1/m1/up/ack") == ("m1", "up", "ack")
    assert topics.parse(bytearray(b"ami/v1/m1/down/cmd")) == ("m1", "down", "cmd")


def test_parse_rejects_with_field_topic():
    bad = [
        "", "ami/v1", "ami/v1/m1/up", "ami/v2/m1/up/reading", "AMI/v1/m1/up/reading",
        "ami/v1/m1/up/reading/x", "/ami/v1/m1/up/reading", "ami/v1//up/reading",
        "ami/v1/m1/up/cmd", "ami/v1/m1/down/reading", "ami/v1/m1/sideways/reading",
        "ami/v1/+/up/reading", "ami/v1/#", "ami/v1/" + "x" * 33 + "/up/ack", "ami/v1/m\u00e91/up/ack",
        "ami/v1/m 1/up/ack", b"ami/v1/m\xff/up/ack", None, 17, ["ami", "v1"],
    ]  # fmt: skip
    for t in bad:
        e = raises(ProtocolError, topics.parse, t)
        assert e.field == "topic", t


def test_meter_id_valid():
    for ok in ("a", "Z", "0", "_", "-", "meter_0001", "A-b_C-9", "x" * 32):
        assert topics.meter_id_valid(ok), ok
    for no in ("", "x" * 33, "a/b", "a+b", "a#", "a b", "a.b", "\u00e4", "$SYS", b"m1", None, 1):
        assert not topics.meter_id_valid(no), no


def test_builders_reject_bad_ids_and_kinds():
    for fn in (topics.down_cmd, topics.meter_up_filter, topics.meter_down_filter, topics.will_topic):
        assert raises(ProtocolError, fn, "a/b").field == "meter_id"
        assert raises(ProtocolError, fn, "").field == "meter_id"
    assert raises(ProtocolError, topics.up, "+", "reading").field == "meter_id"
    assert raises(ProtocolError, topics.up, "m1", "cmd").field == "kind"
    assert raises(ProtocolError, topics.up, "m1", "#").field == "kind"


def test_filters():
    assert topics.PREFIX == "ami/v1"
    assert topics.HEADEND_UP_FILTER == "ami/v1/+/up/#"
    assert topics.HEADEND_SHARED_FILTER == "$share/headend/ami/v1/+/up/#"
    assert topics.HEADEND_DOWN_FILTER == "ami/v1/+/down/#"
    assert topics.meter_up_filter("m1") == "ami/v1/m1/up/#"
    assert topics.meter_down_filter("m1") == "ami/v1/m1/down/#"


def test_will():
    assert topics.will_topic("m1") == "ami/v1/m1/up/status"
    payload = topics.will_payload()
    assert payload == b"\xa2\x00\x04\x18\x28\x00"
    assert cbor.loads(payload) == {0: 4, 40: 0}
    assert topics.QOS == 1
    assert topics.retained("status")
    for kind in ("reading", "event", "ack", "cmd"):
        assert not topics.retained(kind)
