"""COSE_Mac0 envelope against cwt-confirmed vectors: runs under pytest and micropython."""

try:
    from tests.dual.support import iter_vectors, raises
except ImportError:
    from support import iter_vectors, raises

from protocol import cbor, cose
from protocol.errors import COSEError, ProtocolError

KEY = bytes(range(32))


def _frame(protected=b"\xa1\x01\x05", unprotected=None, payload=b"\xa0", tag=None, key=KEY, tagnum=17):
    """A frame built piece by piece; tag defaults to the right one for these pieces."""
    if unprotected is None:
        unprotected = {4: b"m1"}
    if tag is None:
        tag = cose.hmac_sha256(key, cbor.dumps(["MAC0", protected, b"", payload]))
    return cbor.dumps(cbor.Tag(tagnum, [protected, unprotected, payload, tag]))


def _field(data, key=KEY, kid=b"m1"):
    e = raises(COSEError, cose.mac0_decode, key, kid, data)
    return e.field


def test_hmac_sha256_rfc4231():
    for v in iter_vectors("cose_mac0.json", "hmac_sha256"):
        got = cose.hmac_sha256(bytes.fromhex(v["key"]), bytes.fromhex(v["data"]))
        assert got.hex() == v["mac"], v["mac"]
    # a 64-byte key is used as is, a 65-byte key is hashed first: both differ
    assert cose.hmac_sha256(b"k" * 64, b"x") != cose.hmac_sha256(b"k" * 65, b"x")
    assert len(cose.hmac_sha256(b"", b"")) == 32


def test_ct_equal():
    assert cose.ct_equal(b"", b"")
    assert cose.ct_equal(b"abc", b"abc")
    assert cose.ct_equal(b"abc", bytearray(b"abc"))
    assert not cose.ct_equal(b"abc", b"abd")
    assert not cose.ct_equal(b"\x00bc", b"abc")
    assert not cose.ct_equal(b"abc", b"ab")


def test_frame_vectors_encode_and_decode():
    n = 0
    for v in iter_vectors("cose_mac0.json", "frames"):
        n += 1
        key = bytes.fromhex(v["key"])
        kid = v["meter_id"].encode()
        payload = bytes.fromhex(v["message"])
        frame = bytes.fromhex(v["frame"])
        assert cose.mac0_encode(key, kid, payload) == frame, v["meter_id"]
        assert cose.mac0_encode(key, v["meter_id"], payload) == frame  # kid as str
        assert cose.mac0_decode(key, kid, frame) == payload
        assert cose.mac0_decode(key, v["meter_id"], bytearray(frame)) == payload
        assert cose.mac0_kid(frame) == kid
    assert n >= 4


def test_broken_vectors_report_the_first_failed_check():
    n = 0
    for v in iter_vectors("cose_mac0.json", "broken"):
        n += 1
        key = bytes.fromhex(v["key"])
        frame = bytes.fromhex(v["frame"])
        if v["field"] is None:
            cose.mac0_decode(key, v["kid"], frame)
        else:
            assert _field(frame, key, v["kid"]) == v["field"], v["name"]
    assert n > 15


def test_frame_layout_is_the_protocol_one():
    frame = cose.mac0_encode(KEY, b"m1", b"\xa0")
    # 17([h'a10105', {4: h'6d31'}, h'a0', h'<32 bytes>'])
    assert frame[:13].hex() == "d18443a10105a104426d3141a0"
    assert frame[13:15] == b"\x58\x20" and len(frame) == 47
    assert frame == _frame()


def test_check_order():
    bad_tag = b"\x00" * 32
    assert _field(b"\xd1\x83\x00\x00\x00") == "structure"
    assert _field(_frame(protected=b"\xa1\x01\x06", tag=bad_tag, unprotected={4: b"zz"})) == "alg"
    assert _field(_frame(protected=b"\xa1\x01\x06", tag=bad_tag)) == "alg"
    assert _field(_frame(protected=b"\xa1\x01\xf5")) == "alg"  # true is not 5
    assert _field(_frame(protected=b"\xa1\x01\x65HS256")) == "alg"
    assert _field(_frame(protected=b"")) == "alg"  # empty protected header: no alg
    assert _field(_frame(unprotected={4: b"m2"}, tag=bad_tag)) == "kid"
    assert _field(_frame(unprotected={4: b"m"})) == "kid"
    assert _field(_frame(tag=bad_tag)) == "tag"
    assert _field(_frame(), key=b"\x01" * 32) == "tag"
    assert cose.mac0_decode(KEY, b"m1", _frame(unprotected={4: b"m1", 99: "extra"})) == b"\xa0"


def test_structure_checks():
    good = _frame()
    assert _field(good[1:]) == "structure"  # untagged
    assert _field(_frame(tagnum=16)) == "structure"
    assert _field(_frame(protected={1: 5})) == "structure"
    assert _field(_frame(protected=b"\x01")) == "structure"
    assert _field(_frame(protected=b"\xa1\x01")) == "structure"
    assert _field(_frame(unprotected=[4, b"m1"])) == "structure"
    assert _field(_frame(unprotected={4: 1})) == "structure"
    assert _field(_frame(payload="text")) == "structure"
    assert _field(_frame(tag=b"\x00" * 33)) == "structure"
    assert _field(cbor.dumps(cbor.Tag(17, {}))) == "structure"
    assert _field(good + b"\x00") == "structure"
    assert _field(b"") == "structure"
    for not_bytes in ("d1", None, 17, [1]):
        assert _field(not_bytes) == "structure"
    assert raises(COSEError, cose.mac0_kid, _frame(unprotected={})).field == "structure"


def test_flipped_bit_anywhere_never_verifies():
    frame = cose.mac0_encode(KEY, b"m1", b"\xa3\x00\x02\x01\x01\x02\x00")
    buf = bytearray(frame)
    for i in range(len(buf)):
        for bit in range(8):
            buf[i] ^= 1 << bit
            e = raises(ProtocolError, cose.mac0_decode, KEY, b"m1", buf)
            assert e.field in ("structure", "alg", "kid", "tag"), (i, bit, e.field)
            buf[i] ^= 1 << bit
    assert cose.mac0_decode(KEY, b"m1", buf) == b"\xa3\x00\x02\x01\x01\x02\x00"


def test_truncations_raise_only_protocol_errors():
    frame = cose.mac0_encode(KEY, b"meter-42", b"\xa2\x00\x01\x01\x05")
    for n in range(len(frame)):
        e = raises(ProtocolError, cose.mac0_decode, KEY, b"meter-42", frame[:n])
        assert e.field == "structure", n
        raises(COSEError, cose.mac0_kid, frame[:n])


def test_key_must_be_32_bytes():
    for key in (b"", b"k" * 31, b"k" * 33, "k" * 32, None):
        assert raises(ProtocolError, cose.mac0_encode, key, b"m1", b"").field == "key"
        assert raises(ProtocolError, cose.mac0_decode, key, b"m1", _frame()).field == "key"
    assert raises(ProtocolError, cose.mac0_encode, KEY, 1, b"").field == "kid"


def test_empty_payload_and_long_kid():
    kid = b"x" * 32
    frame = cose.mac0_encode(KEY, kid, b"")
    assert cose.mac0_decode(KEY, kid, frame) == b""
    assert cose.mac0_kid(frame) == kid
