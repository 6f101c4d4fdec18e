"""protocol.cbor against cbor2 (an independent codec), and under fuzzing."""

import math
import struct

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import cbor
from protocol.errors import CBORError

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
hashable = st.integers(min_value=-(2**64), max_value=2**64 - 1) | st.text(max_size=8) | st.booleans()
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(hashable, children, max_size=5),
    max_leaves=20,
)


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b) or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@SETTINGS
@given(values)
def test_ours_decodes_what_cbor2_encodes(value):
    assert same(cbor.loads(cbor2.dumps(value)), value)
    assert same(cbor.loads(cbor2.dumps(value, canonical=True)), value)


@SETTINGS
@given(values)
def test_cbor2_decodes_what_ours_encodes(value):
    assert same(cbor2.loads(cbor.dumps(value)), value)


@SETTINGS
@given(st.lists(st.integers(min_value=-(2**64), max_value=2**64 - 1) | st.text(max_size=10), max_size=8))
def test_same_bytes_as_cbor2_canonical_for_ints_and_text(items):
    # cbor2's canonical mode is preferred serialization too; for arrays of ints
    # and text the two must agree to the byte
    assert cbor.dumps(items) == cbor2.dumps(items, canonical=True)


@SETTINGS
@given(st.floats(allow_nan=False, width=64))
def test_floats_shortest_like_cbor2_canonical(x):
    assert cbor.dumps(x) == cbor2.dumps(x, canonical=True)


@SETTINGS
@given(
    st.dictionaries(
        st.integers(min_value=0, max_value=2**32) | st.text(max_size=4), st.integers(), max_size=8
    )
)
def test_map_bytes_are_deterministic(m):
    reordered = dict(reversed(list(m.items())))
    assert cbor.dumps(m) == cbor.dumps(reordered)
    assert cbor.loads(cbor.dumps(m)) == m


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_cbor_error(data):
    try:
        value = cbor.loads(data)
    except CBORError:
        return
    # whatever decodes must re-encode and decode to the same thing
    assert same(cbor.loads(cbor.dumps(value)), value) or isinstance(value, cbor.Tag)


@SETTINGS
@given(values, st.data())
def test_truncated_and_mutated_encodings(value, data):
    enc = cbor.dumps(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(enc) - 1))
    try:
        cbor.loads(enc[:cut])
        raise AssertionError("truncated input decoded")
    except CBORError:
        pass
    pos = data.draw(st.integers(min_value=0, max_value=len(enc) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    mutated = bytearray(enc)
    mutated[pos] ^= flip
    try:
        cbor.loads(bytes(mutated))
    except CBORError:
        pass


def test_cbor2_agrees_on_malformed_verdicts():
    # every RFC 8949 Appendix F item that cbor2 also rejects is rejected by us
    import json
    import pathlib

    vectors = json.loads((pathlib.Path(cbor.__file__).parent / "vectors" / "cbor_rfc8949.json").read_text())
    rejected_by_cbor2 = 0
    for h in vectors["malformed"]:
        data = bytes.fromhex(h)
        try:
            cbor2.loads(data)
        except Exception:
            rejected_by_cbor2 += 1
        try:
            cbor.loads(data)
            raise AssertionError("accepted malformed " + h)
        except CBORError:
            pass
    assert rejected_by_cbor2 > 60
