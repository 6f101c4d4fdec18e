"""CBOR codec against RFC 8949 vectors: runs under pytest and micropython."""

import struct

try:
    from tests.dual.support import load_vectors, raises
except ImportError:
    from support import load_vectors, raises

from protocol import cbor
from protocol.errors import CBORError, ProtocolError


def _value(v):
    """Turn a vector's JSON value (with $-markers) into the expected object."""
    if isinstance(v, dict):
        if "$bytes" in v:
            return bytes.fromhex(v["$bytes"])
        if "$tag" in v:
            return cbor.Tag(v["$tag"][0], _value(v["$tag"][1]))
        if "$float" in v:
            return float(v["$float"])
        if "$undefined" in v:
            return cbor.UNDEFINED
        if "$simple" in v:
            return cbor.Simple(v["$simple"])
        if "$map" in v:
            return {_value(k): _value(x) for k, x in v["$map"]}
        return {k: _value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def _same(a, b):
    """Equality that tells -0.0 from 0.0 and NaN from NaN, recursively."""
    if type(a) is float and type(b) is float:
        if a != a:
            return b != b
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and _same(a[k], b[k]) for k in a)
    if isinstance(a, cbor.Tag):
        return a.tag == b.tag and _same(a.value, b.value)
    return a == b


def test_appendix_a_decodes():
    vectors = load_vectors("cbor_rfc8949.json")["examples"]
    assert len(vectors) == 81
    for vec in vectors:
        got = cbor.loads(bytes.fromhex(vec["hex"]))
        assert _same(got, _value(vec["value"])), (vec["hex"], got)


def test_appendix_a_encodes_preferred():
    for vec in load_vectors("cbor_rfc8949.json")["examples"]:
        if vec["roundtrip"]:
            got = cbor.dumps(_value(vec["value"])).hex()
            assert got == vec["hex"], (vec["hex"], got)


def test_non_roundtrip_examples_reencode_shorter():
    # indefinite lengths and long floats re-encode in definite, preferred form
    for vec in load_vectors("cbor_rfc8949.json")["examples"]:
        if not vec["roundtrip"]:
            again = cbor.dumps(cbor.loads(bytes.fromhex(vec["hex"])))
            assert len(again) <= len(vec["hex"]) // 2, vec["hex"]  # hex has 2 chars a byte
            assert again[0] & 31 != 31, vec["hex"]  # definite length
            assert _same(cbor.loads(again), _value(vec["value"]))


def test_malformed_raise_cbor_error_only():
    malformed = load_vectors("cbor_rfc8949.json")["malformed"]
    assert len(malformed) > 90
    for h in malformed:
        e = raises(CBORError, cbor.loads, bytes.fromhex(h))
        assert isinstance(e, ProtocolError) and isinstance(e, ValueError), h
        assert e.field, h


def test_every_truncation_of_a_message_is_refused():
    msg = {0: 1, 1: 7, 2: 1767225600, 4: [1, 2, 3, 4], 7: {0: 230000, 2: -15}, 9: 0, "x": b"\x00" * 30}
    data = cbor.dumps(msg)
    assert cbor.loads(data) == msg
    for n in range(len(data)):
        raises(CBORError, cbor.loads, data[:n])


def test_depth_limit_is_exact():
    ok = b"\x81" * cbor.MAX_DEPTH + b"\x00"
    value = cbor.loads(ok)
    for _ in range(cbor.MAX_DEPTH):
        value = value[0]
    assert value == 0
    raises(CBORError, cbor.loads, b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00")
    raises(CBORError, cbor.loads, b"\xc1" * (cbor.MAX_DEPTH + 1) + b"\x00")
    deep = 0
    for _ in range(cbor.MAX_DEPTH + 1):
        deep = [deep]
    raises(CBORError, cbor.dumps, deep)


def test_huge_declared_lengths_do_not_allocate():
    raises(CBORError, cbor.loads, b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff")
    raises(CBORError, cbor.loads, b"\xbb\x7f\xff\xff\xff\xff\xff\xff\xff\x00")
    raises(CBORError, cbor.loads, b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff")


def test_map_keys_sorted_bytewise():
    # RFC 8949 §4.2.1: 10 < 100 < -1 < "z" < "aa" < [100] < [-1] < false
    m = {False: 8, "aa": 5, -1: 3, "z": 4, 100: 2, 10: 1}
    assert cbor.dumps(m).hex() == "a60a011864022003617a0462616105f408"
    # the same bytes whatever the insertion order
    assert cbor.dumps({10: 1, 100: 2, -1: 3, "z": 4, "aa": 5, False: 8}) == cbor.dumps(m)


def test_tag_and_simple_types():
    t = cbor.Tag(17, [b"", {}, b"p", b"t"])
    assert cbor.loads(cbor.dumps(t)) == t
    assert t.tag == 17 and t.value[2] == b"p"
    assert cbor.Tag(1, 2) != cbor.Tag(1, 3)
    raises(CBORError, cbor.dumps, cbor.Simple(24))
    raises(CBORError, cbor.dumps, cbor.Tag(-1, 0))


def test_bytes_like_inputs():
    assert cbor.loads(bytearray(b"\x83\x01\x02\x03")) == [1, 2, 3]
    assert cbor.loads(memoryview(b"\x62\xc3\xbc")) == "\u00fc"
    assert cbor.dumps(bytearray(b"ab")) == b"\x42ab"
    assert cbor.dumps((1, 2)) == b"\x82\x01\x02"


def test_unencodable_and_non_bytes_input():
    raises(CBORError, cbor.dumps, object())
    raises(CBORError, cbor.dumps, {1: {2, 3}})
    raises(CBORError, cbor.loads, "a0")
    raises(CBORError, cbor.loads, None)


def test_floats_shortest_exact():
    assert cbor.dumps(0.5) == b"\xf9\x38\x00"
    assert cbor.dumps(3.4028234663852886e38) == b"\xfa\x7f\x7f\xff\xff"
    assert cbor.dumps(1e-300)[0] == 0xFB
    assert cbor.dumps(5.960464477539063e-08) == b"\xf9\x00\x01"
    assert cbor.dumps(65536.0) == b"\xfa\x47\x80\x00\x00"  # above the largest half
