"""Fuzzing the meter's MQTT 3.1.1 packet decoders (firmware.mqtt_packets): what the broker
(or anyone on the path) sends the meter.

Seeds: every packet type the module encodes, with generated fields. The fuzzer edits their
bytes (flags, remaining-length varints, string lengths, packet ids, truncation, splices).

Documented errors: ``MQTTError`` (an ``OSError``) for anything that came off the wire.
Properties: ``split`` then the decoder for the packet's type raise nothing else, each call
time-bounded; every encoded packet decodes to what was encoded (round trip); a remaining
length decodes to the varint that encodes it.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware import mqtt_packets as P
from tests.fuzz.support import bounded, fuzz, mutated

names = st.text(
    st.characters(blacklist_characters="\x00+#", blacklist_categories=("Cs",)), min_size=1, max_size=20
)
pids = st.integers(1, 65535)


@st.composite
def packets(draw):
    """(packet bytes, the decoded value it must give)."""
    kind = draw(st.sampled_from(["connect", "connack", "publish", "puback", "subscribe", "suback", "empty"]))
    if kind == "connect":
        will = draw(st.booleans())
        user = draw(st.none() | names)
        kw = dict(
            client_id=draw(names),
            username=user,
            password=draw(st.none() | st.binary(max_size=10)) if user is not None else None,
            clean_session=draw(st.booleans()),
            keepalive=draw(st.integers(0, 65535)),
            will_topic=draw(names) if will else None,
            will_payload=draw(st.binary(max_size=10)) if will else b"",
            will_qos=draw(st.integers(0, 2)) if will else 0,
            will_retain=draw(st.booleans()) if will else False,
        )
        value = dict(kw)
        if not will:
            value["will_retain"] = False
        return P.encode_connect(**kw), value
    if kind == "connack":
        sp, rc = draw(st.booleans()), draw(st.integers(0, 255))
        return P.encode_connack(sp, rc), (sp, rc)
    if kind == "publish":
        qos = draw(st.integers(0, 2))
        topic, payload, retain = draw(names), draw(st.binary(max_size=40)), draw(st.booleans())
        dup = draw(st.booleans()) if qos else False
        pid = draw(pids) if qos else 0
        return P.encode_publish(topic, payload, qos, retain, dup, pid), (
            topic,
            payload,
            qos,
            retain,
            dup,
            pid,
        )
    if kind == "puback":
        pid = draw(pids)
        return P.encode_puback(pid), pid
    if kind == "subscribe":
        pid, topics = draw(pids), draw(st.lists(st.tuples(names, st.integers(0, 2)), min_size=1, max_size=3))
        return P.encode_subscribe(pid, topics), (pid, topics)
    if kind == "suback":
        pid, codes = draw(pids), draw(st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4))
        return P.encode_suback(pid, codes), (pid, codes)
    return draw(st.sampled_from([P.PINGREQ_PACKET, P.PINGRESP_PACKET, P.DISCONNECT_PACKET])), None


def decode(packet: bytes):
    ptype, flags, body = P.split(packet, 4096)
    if ptype == P.CONNECT:
        return P.decode_connect(body)
    if ptype == P.CONNACK:
        return P.decode_connack(body)
    if ptype == P.PUBLISH:
        return P.decode_publish(flags, body)
    if ptype == P.PUBACK:
        return P.decode_puback(body)
    if ptype == P.SUBSCRIBE:
        return P.decode_subscribe(body)
    if ptype == P.SUBACK:
        return P.decode_suback(body)
    if ptype in (P.PINGREQ, P.PINGRESP, P.DISCONNECT):
        return P.check_empty(ptype, body)
    return None  # PUBREC/PUBREL/PUBCOMP/UNSUBSCRIBE/UNSUBACK: the meter never decodes them


@fuzz(300)
@given(packets())
def test_packets_round_trip(case):
    packet, value = case
    assert bounded(decode, packet) == value


SEEDS = (
    P.encode_publish("ami/v1/m1/down/cmd", b"\xd1\x84" + bytes(60), 1, False, False, 7),
    P.encode_connect(
        "m1", "m1", "pw", will_topic="ami/v1/m1/up/status", will_payload=b"\xa2\x00\x04\x18\x28\x00"
    ),
    P.encode_subscribe(1, [("ami/v1/m1/down/#", 1)]),
    P.encode_suback(1, [1]),
    P.encode_connack(False, 0),
)


def test_mutated_packets_raise_only_mqtt_errors():
    seen: set = set()

    @fuzz(500)
    @given(
        st.one_of(st.sampled_from(SEEDS), packets().map(lambda c: c[0])).flatmap(lambda b: mutated(b, SEEDS))
    )
    def run(packet):
        try:
            bounded(decode, packet)
        except P.MQTTError as e:
            assert isinstance(e, OSError)
            seen.add(str(e).split(":")[0].split(" ")[-1])
            return
        seen.add("ok")

    run()
    assert "ok" in seen and len(seen) >= 12, seen


@fuzz(300)
@given(st.integers(0, P.MAX_REMAINING), st.binary(max_size=6))
def test_varints_round_trip_and_garbage_is_refused(n, junk):
    enc = P.encode_varint(n)
    assert P.decode_varint(enc + junk) == (n, len(enc))
    try:
        value, off = bounded(P.decode_varint, junk)
    except P.MQTTError:
        return
    assert 1 <= off <= 4 and 0 <= value <= P.MAX_REMAINING
    assert P.decode_varint(P.encode_varint(value)) == (value, len(P.encode_varint(value)))
