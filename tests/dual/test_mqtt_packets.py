"""MQTT 3.1.1 packet encoding and decoding (firmware/mqtt_packets.py), on CPython and MicroPython.

Expected bytes are written out from the MQTT 3.1.1 specification's layouts,
not produced by the module under test.
"""

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises

from firmware.mqtt_packets import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ,
    PINGREQ_PACKET,
    PINGRESP,
    PINGRESP_PACKET,
    PUBACK,
    PUBLISH,
    SUBACK,
    SUBSCRIBE,
    MQTTError,
    check_empty,
    check_header,
    check_length,
    connack_error,
    connack_name,
    decode_connack,
    decode_connect,
    decode_puback,
    decode_publish,
    decode_suback,
    decode_subscribe,
    decode_varint,
    encode_connack,
    encode_connect,
    encode_puback,
    encode_publish,
    encode_suback,
    encode_subscribe,
    encode_varint,
    publish_header_into,
    split,
)

# (value, its remaining-length encoding) at each byte-count boundary
VARINTS = (
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"),
    (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
)


def test_remaining_length_boundaries_encode_and_decode_to_the_spec_bytes():
    for n, wire in VARINTS:
        assert encode_varint(n) == wire, n
        assert decode_varint(wire) == (n, len(wire)), n
        assert decode_varint(b"\xaa" + wire + b"\xbb", 1) == (n, 1 + len(wire)), n


def test_remaining_length_outside_the_protocol_range_is_refused():
    raises(ValueError, encode_varint, 268435456)
    raises(ValueError, encode_varint, -1)
    e = raises(MQTTError, decode_varint, b"\xff\xff\xff\xff\x01")
    assert "more than 4 bytes" in str(e)
    e = raises(MQTTError, decode_varint, b"\x80\x80")
    assert "truncated" in str(e)
    raises(MQTTError, decode_varint, b"")


def test_packets_at_remaining_length_boundaries_split_and_respect_max_packet():
    for n in (127, 128, 129):
        payload = b"x" * (n - 5)  # topic "a/b" takes 5 bytes of the remaining length
        packet = encode_publish("a/b", payload)
        assert len(packet) == 1 + (1 if n < 128 else 2) + n
        if n <= 128:
            ptype, flags, body = split(packet, 128)
            assert ptype == PUBLISH and len(body) == n
            assert decode_publish(flags, body) == ("a/b", payload, 0, False, False, 0)
        else:
            e = raises(MQTTError, split, packet, 128)
            assert "remaining length 129 > max_packet 128" in str(e)
            assert split(packet)[0] == PUBLISH  # no limit given: the protocol's own
    # 16 KiB packets: headers only (a 64 KiB heap has no room for several copies)
    buf = bytearray(16)
    for n, length_bytes in ((16383, 2), (16384, 3), (2097151, 3), (2097152, 4)):
        k = publish_header_into(buf, b"a/b", n - 5)
        assert k == 1 + length_bytes + 5 and decode_varint(buf, 1) == (n, 1 + length_bytes)
    check_length(16384, 16384)
    e = raises(MQTTError, check_length, 16385, 16384)
    assert "remaining length 16385 > max_packet 16384" in str(e)


def test_connect_minimal_is_the_spec_layout():
    packet = encode_connect("a", keepalive=60)
    # 10 len | 00 04 'MQTT' | level 4 | flags clean | keepalive 60 | client id "a"
    assert packet == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a"
    fields = decode_connect(split(packet)[2])
    assert fields["client_id"] == "a" and fields["clean_session"] and fields["keepalive"] == 60
    assert fields["username"] is None and fields["password"] is None and fields["will_topic"] is None


def test_connect_round_trips_will_credentials_and_persistent_session():
    will = b"\xa2\x00\x04\x18\x28\x00"
    packet = encode_connect(
        "emu-0001",
        "emu-0001",
        "s3cret",
        clean_session=False,
        keepalive=300,
        will_topic="ami/v1/emu-0001/up/status",
        will_payload=will,
    )
    ptype, flags, body = split(packet)
    assert ptype == CONNECT and flags == 0
    assert body[7] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04  # user, password, will retain, will QoS 1, will
    f = decode_connect(body)
    assert f["client_id"] == "emu-0001" and f["username"] == "emu-0001" and f["password"] == b"s3cret"
    assert not f["clean_session"] and f["keepalive"] == 300
    assert f["will_topic"] == "ami/v1/emu-0001/up/status" and f["will_payload"] == will
    assert f["will_qos"] == 1 and f["will_retain"]


def test_connect_refuses_bad_arguments_naming_them():
    assert "password" in str(raises(ValueError, encode_connect, "a", None, "pw"))
    assert "keepalive" in str(raises(ValueError, encode_connect, "a", keepalive=70000))
    assert "client_id" in str(raises(ValueError, encode_connect, "a\x00b"))


def test_connack_round_trip_and_refusals_are_named():
    assert encode_connack(True, 0) == b"\x20\x02\x01\x00"
    ptype, flags, body = split(encode_connack(False, 5))
    assert ptype == CONNACK and decode_connack(body) == (False, 5)
    assert decode_connack(b"\x01\x00") == (True, 0)
    e = connack_error(5)
    assert isinstance(e, OSError) and e.code == 5
    assert "not authorized (5)" in str(e)
    assert connack_name(4) == "bad user name or password (4)"
    assert connack_name(1) == "unacceptable protocol version (1)"
    assert connack_name(9) == "unknown return code (9)"


def test_publish_qos0_and_qos1_are_the_spec_layout_and_round_trip():
    assert encode_publish("a/b", b"hi") == b"\x30\x07\x00\x03a/b" + b"hi"
    packet = encode_publish("a/b", b"hi", qos=1, retain=True, dup=True, pid=10)
    assert packet == b"\x3b\x09\x00\x03a/b\x00\x0a" + b"hi"
    ptype, flags, body = split(packet)
    assert ptype == PUBLISH
    assert decode_publish(flags, body) == ("a/b", b"hi", 1, True, True, 10)
    assert decode_publish(0x02, b"\x00\x03a/b\xff\xff") == ("a/b", b"", 1, False, False, 65535)


def test_publish_header_into_a_reused_buffer_matches_the_whole_packet():
    buf = bytearray(64)
    for qos, pid, payload in ((0, 0, b""), (1, 1, b"p" * 300), (1, 65535, b"q")):
        n = publish_header_into(buf, b"ami/v1/m/up/reading", len(payload), qos, False, False, pid)
        assert bytes(buf[:n]) + payload == encode_publish("ami/v1/m/up/reading", payload, qos, pid=pid)


def test_publish_refuses_bad_arguments_naming_them():
    assert "wildcard" in str(raises(ValueError, encode_publish, "a/#", b""))
    assert "wildcard" in str(raises(ValueError, encode_publish, "a/+/b", b""))
    assert "empty" in str(raises(ValueError, encode_publish, "", b""))
    assert "packet id" in str(raises(ValueError, encode_publish, "a", b"", 1, False, False, 0))
    assert "packet id" in str(raises(ValueError, encode_publish, "a", b"", 1, False, False, 65536))
    assert "qos" in str(raises(ValueError, encode_publish, "a", b"", 3))
    assert "dup" in str(raises(ValueError, encode_publish, "a", b"", 0, False, True))


def test_utf8_topics_round_trip():
    topic = "ami/v1/z\u00e4hler/down/cmd"
    ptype, flags, body = split(encode_publish(topic, b"\x00\x01", 1, pid=7))
    assert decode_publish(flags, body)[0] == topic
    assert len(topic) == 22 and body[:2] == b"\x00\x17"  # 23 bytes: the a-umlaut takes 2


def test_puback_round_trip():
    assert encode_puback(65535) == b"\x40\x02\xff\xff"
    ptype, flags, body = split(encode_puback(1))
    assert ptype == PUBACK and decode_puback(body) == 1


def test_subscribe_and_suback_round_trip():
    packet = encode_subscribe(1, [("ami/v1/m/down/#", 1)])
    assert packet[:6] == b"\x82\x14\x00\x01\x00\x0f" and packet[-1:] == b"\x01"
    ptype, flags, body = split(packet)
    assert ptype == SUBSCRIBE and flags == 2
    assert decode_subscribe(body) == (1, [("ami/v1/m/down/#", 1)])
    two = split(encode_subscribe(300, [("a", 0), ("b/+", 2)]))[2]
    assert decode_subscribe(two) == (300, [("a", 0), ("b/+", 2)])
    assert encode_suback(1, [1]) == b"\x90\x03\x00\x01\x01"
    ptype, flags, body = split(encode_suback(9, [0, 1, 2, 0x80]))
    assert ptype == SUBACK and decode_suback(body) == (9, [0, 1, 2, 0x80])


def test_ping_and_disconnect_packets():
    assert split(PINGREQ_PACKET) == (PINGREQ, 0, b"")
    assert split(PINGRESP_PACKET) == (PINGRESP, 0, b"")
    assert split(DISCONNECT_PACKET) == (DISCONNECT, 0, b"")
    check_empty(PINGRESP, b"")
    assert "PINGRESP" in str(raises(MQTTError, check_empty, PINGRESP, b"\x00"))


def test_malformed_fixed_headers_raise_mqtterror_naming_the_fault():
    cases = (
        (b"", "empty"),
        (b"\x00\x00", "reserved packet type 0"),
        (b"\xf0\x00", "reserved packet type 15"),
        (b"\x80\x05\x00\x01\x00\x01a", "SUBSCRIBE: fixed header flags 0"),
        (b"\x36\x00", "QoS 3"),
        (b"\x38\x03\x00\x01a", "DUP set on QoS 0"),
        (b"\x41\x02\x00\x01", "PUBACK: fixed header flags 1"),
        (b"\x40\x03\x00\x01", "remaining length 3 but 2"),
        (b"\x40\x02\x00\x01\x00", "remaining length 2 but 3"),
        (b"\x40\xff\xff\xff\xff\x7f", "more than 4 bytes"),
    )
    for packet, what in cases:
        e = raises(MQTTError, split, packet)
        assert what in str(e), (packet, str(e))
    assert check_header(0x82) == (SUBSCRIBE, 2)


def test_malformed_bodies_raise_mqtterror_naming_the_field():
    cases = (
        (decode_puback, (b"\x00",), "PUBACK: remaining length 1"),
        (decode_puback, (b"\x00\x00",), "packet id 0"),
        (decode_connack, (b"\x02\x00",), "acknowledge flags 2"),
        (decode_connack, (b"\x00",), "CONNACK: remaining length 1"),
        (decode_publish, (0, b"\x00\x05ab"), "topic truncated"),
        (decode_publish, (0, b"\x00"), "topic length truncated"),
        (decode_publish, (0, b"\x00\x02\xff\xfe"), "topic is not UTF-8"),
        (decode_publish, (0, b"\x00\x03a\x00b"), "U+0000"),
        (decode_publish, (0, b"\x00\x03a/#"), "wildcard"),
        (decode_publish, (0, b"\x00\x00"), "empty"),
        (decode_publish, (2, b"\x00\x01a"), "PUBLISH: packet id truncated"),
        (decode_publish, (6, b"\x00\x01a\x00\x01"), "QoS 3"),
        (decode_suback, (b"\x00\x01\x03",), "return code 3"),
        (decode_suback, (b"\x00\x01",), "no return code"),
        (decode_subscribe, (b"\x00\x01\x00\x01a\x03",), "QoS"),
        (decode_subscribe, (b"\x00\x01",), "no topic filter"),
        (decode_connect, (b"\x00\x04MQTX\x04\x02\x00\x3c\x00\x01a",), "not protocol MQTT"),
        (decode_connect, (b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x01a",), "reserved flag"),
        (decode_connect, (b"\x00\x04MQTT\x04\x42\x00\x3c\x00\x01a\x00\x00",), "password without username"),
        (decode_connect, (b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x01ab",), "trailing"),
    )
    for fn, args, what in cases:
        e = raises(MQTTError, fn, *args)
        assert what in str(e), (args, str(e))


def test_mqtterror_is_an_oserror_so_one_handler_catches_network_and_protocol_faults():
    e = MQTTError("x")
    assert isinstance(e, OSError) and e.code is None and str(e) == "x"
