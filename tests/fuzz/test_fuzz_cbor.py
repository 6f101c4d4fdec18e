"""Fuzzing protocol.cbor.loads with near-valid input (tests/protocol/test_cbor_cbor2.py covers
random bytes and one-byte edits; this adds multi-edit mutations, splices, deep nesting, huge
length heads, a differential check against cbor2 and the set of refusal reasons reached).

Documented errors (protocol/cbor.py): ``CBORError`` only, whose ``field`` names the reason.
Properties: only CBORError; every call under support.LIMIT_S; whatever decodes re-encodes
to bytes that decode to the same value (dumps . loads is idempotent on accepted input); a
value cbor2 also reads the same way; nesting deeper than MAX_DEPTH is refused as "depth".
"""

from __future__ import annotations

import math
import struct

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor
from protocol.errors import CBORError
from tests.fuzz.support import bounded, fuzz, mutated

keys = st.integers(-(2**64), 2**64 - 1) | st.text(max_size=6) | st.binary(max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.builds(cbor.Simple, st.integers(0, 19) | st.integers(32, 255))
    | st.just(cbor.UNDEFINED)
)
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(keys, kids, max_size=4)
        | st.builds(cbor.Tag, st.integers(4, 2**64 - 1), kids)
    ),
    max_leaves=16,
)
SEEDS = tuple(
    cbor.dumps(v)
    for v in (
        {0: 1, 1: 7, 2: 1_700_000_100, 3: 900, 4: [1, 2], 5: [0, 0], 6: [0, 0, 0, 0], 7: {0: 230000}},
        cbor.Tag(17, [b"\xa1\x01\x05", {4: b"m1"}, b"\xa0", bytes(32)]),
        [1.5, -0.0, float("inf"), "text", b"bytes", None, True, 2**70, -(2**70)],
    )
)


def canonical(data: bytes) -> bytes:
    return cbor.dumps(cbor.loads(data))


def plain(v):
    """v if it is made of types cbor2 decodes to the same Python values, else None."""
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if v is None or type(v) in (bool, int, str, bytes):
        return v
    if type(v) is list:
        out = [plain(x) for x in v]
        return None if any(x is None and y is not None for x, y in zip(out, v, strict=True)) else out
    if type(v) is dict:
        if not all(type(k) in (int, str) for k in v):
            return None
        out = {k: plain(x) for k, x in v.items()}
        return None if any(out[k] is None and v[k] is not None for k in v) else out
    return None


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def check(data: bytes, seen: set) -> None:
    try:
        value = bounded(cbor.loads, data)
    except CBORError as e:
        assert e.field, "a CBORError names its reason"
        seen.add(e.field)
        return
    seen.add("ok")
    again = bounded(canonical, data)
    assert canonical(again) == again, "dumps . loads is idempotent on accepted input"
    p = plain(value)
    if p is not None:
        assert same(cbor2.loads(data), p), "cbor2 reads the same value"


def test_mutated_encodings_raise_only_cbor_error_and_reencode_stably():
    seen: set[str] = set()

    @fuzz(500)
    @given(st.one_of(values.map(cbor.dumps), st.sampled_from(SEEDS)).flatmap(lambda b: mutated(b, SEEDS)))
    def run(data):
        check(data, seen)

    run()
    # the mutations are near-valid: they reach the decoder's deep checks, and some still decode
    assert {"ok", "truncated", "trailing"} <= seen and len(seen - {"ok"}) >= 5, seen


@st.composite
def nested(draw):
    """(encoding, depth) of a chain of containers/tags ``depth`` deep around a leaf."""
    depth = draw(st.integers(0, 40))
    kinds = draw(st.lists(st.sampled_from(["array", "map", "tag", "indef"]), min_size=depth, max_size=depth))
    enc = b"\x00"
    for kind in reversed(kinds):
        enc = {
            "array": lambda e: b"\x81" + e,
            "map": lambda e: b"\xa1\x00" + e,
            "tag": lambda e: b"\xd8\x2a" + e,
            "indef": lambda e: b"\x9f" + e + b"\xff",
        }[kind](enc)
    return enc, depth


@fuzz(300)
@given(nested())
def test_nesting_deeper_than_max_depth_is_refused_as_depth(case):
    enc, depth = case
    try:
        bounded(cbor.loads, enc)
    except CBORError as e:
        assert depth > cbor.MAX_DEPTH and e.field == "depth", (depth, e.field)
    else:
        assert depth <= cbor.MAX_DEPTH


@fuzz(300)
@given(
    st.sampled_from([2, 3, 4, 5]),
    st.sampled_from([26, 27]),
    st.integers(2**20, 2**64 - 1),
    st.binary(max_size=64),
    st.sampled_from(SEEDS),
    st.integers(0, 200),
)
def test_huge_lengths_are_refused_before_allocating(major, ai, n, tail, seed, at):
    size = 4 if ai == 26 else 8
    n = min(n, 2 ** (8 * size) - 1)
    head = bytes([major << 5 | ai]) + n.to_bytes(size, "big")
    try:
        bounded(cbor.loads, head + tail)
        raise AssertionError("a %d-item head decoded from %d bytes" % (n, len(head + tail)))
    except CBORError as e:
        assert e.field == "truncated", e.field
    try:  # inside a valid item the head may land in a string's content; either way, fast
        bounded(cbor.loads, seed[: at % (len(seed) + 1)] + head + tail)
    except CBORError:
        pass
