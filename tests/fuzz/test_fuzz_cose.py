"""Fuzzing COSE_Mac0 verification (protocol.cose.mac0_decode / mac0_kid).

tests/protocol/test_cose_cwt_interop.py covers random bytes and single-byte edits of one
frame; this adds multi-edit mutations and splices of frames under two keys and kids, and a
structural fuzzer that builds 17([protected, unprotected, payload, tag]) from hostile parts
and checks the refusal against a model of docs/protocol.md's check order.

Documented errors (protocol/cose.py): ``COSEError`` whose ``field`` is the first failed
check: ``structure``, ``alg``, ``kid``, ``tag``. Properties: nothing else is raised; every
call is time-bounded; a frame verifies only if its payload is one that key really signed
(and ``mac0_kid`` of a verified frame is the expected kid); the reported field is the
model's first failing check.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor, cose
from protocol.errors import COSEError
from tests.fuzz.support import bounded, fuzz, mutated

KA, KB = bytes(range(32)), bytes(range(100, 132))
PAYLOADS = (cbor.dumps({0: 1, 1: 1, 2: 900}), b"", cbor.dumps([1, 2, 3]), b"\xa0")
FRAMES = tuple(cose.mac0_encode(k, kid, p) for k in (KA, KB) for kid in ("m1", "m2") for p in PAYLOADS)
SIGNED = {(KA, "m1"): set(PAYLOADS)}  # what KA has signed under kid m1
CHECKS = ("structure", "alg", "kid", "tag")


def verify(frame: bytes, seen: set) -> None:
    try:
        payload = bounded(cose.mac0_decode, KA, "m1", frame)
    except COSEError as e:
        assert e.field in CHECKS, e.field
        seen.add(e.field)
        try:
            bounded(cose.mac0_kid, frame)
        except COSEError as k:
            assert k.field == "structure" and e.field == "structure", (k.field, e.field)
        else:
            assert e.field != "structure", "mac0_kid read a kid from a frame of bad structure"
        return
    seen.add("ok")
    assert payload in SIGNED[(KA, "m1")], "a frame verified with a payload KA never signed as m1"
    assert bounded(cose.mac0_kid, frame) == b"m1"


def test_mutated_and_spliced_frames_verify_only_as_signed():
    seen: set[str] = set()

    @fuzz(500)
    @given(st.sampled_from(FRAMES).flatmap(lambda f: mutated(f, FRAMES)))
    def run(frame):
        verify(frame, seen)

    run()
    assert {"structure", "kid", "tag"} <= seen, seen


PROTECTED = [
    cose.PROTECTED,  # {1: 5}
    b"",  # the empty map
    b"\xa0",  # {}
    b"\xa1\x01\x06",  # alg 6
    b"\xa1\x01\x25",  # alg -6
    b"\xa1\x01\xf5",  # alg true
    b"\xa2\x01\x05\x04\x41\x00",  # {1: 5, 4: h'00'}: extra protected header
    b"\xa2\x01\x05\x01\x05",  # duplicate key: not CBOR
    b"\x80",  # an array
    b"\xa1\x01",  # truncated
    b"\xa1\x01\x05\x00",  # trailing byte
]
KIDS = [b"m1", b"m2", b"", b"m1\x00", "m1", 1, None, b"M1"]


@st.composite
def frames(draw):
    """(frame bytes, the field the model says must fail, or None if it must verify)."""
    parts = ("protected", "unprotected", "kid", "payload", "tag", "wrapper", "arity")
    bad = draw(st.sets(st.sampled_from(parts), max_size=3))  # the parts drawn hostile; others are right

    def part(name, right, hostile):
        return draw(hostile) if name in bad else right

    protected = part("protected", cose.PROTECTED, st.sampled_from(PROTECTED) | st.binary(max_size=6))
    unprotected = part("unprotected", "map", st.sampled_from(["map", "none", "list", "extra"]))
    kid = part("kid", b"m1", st.sampled_from(KIDS))
    payload = part("payload", PAYLOADS[0], st.sampled_from([*PAYLOADS, "text", None, [b"x"]]))
    tag_kind = part("tag", "right", st.sampled_from(["right", "wrong", "short", "long", "text", "other_key"]))
    wrapper = part("wrapper", 17, st.sampled_from([17, 18, 16, None]))
    arity = part("arity", 4, st.sampled_from([4, 3, 5, 0]))

    uhdr = {"map": {4: kid}, "none": {}, "list": [4, kid], "extra": {4: kid, 5: b"iv", "x": 1}}[unprotected]
    good_payload = type(payload) is bytes
    mac_key = KB if tag_kind == "other_key" else KA
    mac = cose.hmac_sha256(mac_key, cbor.dumps(["MAC0", protected, b"", payload if good_payload else b""]))
    tag = {"wrong": bytes(32), "short": mac[:31], "long": mac + b"\x00", "text": "t" * 32}.get(tag_kind, mac)
    arr = [protected, uhdr, payload, tag][:arity] + [b""] * (arity - 4)
    frame = cbor.dumps(arr if wrapper is None else cbor.Tag(wrapper, arr))

    # the model: docs/protocol.md's order, structure -> alg -> kid -> tag
    try:
        pmap = cbor.loads(protected) if protected else {}
    except Exception:
        pmap = None
    structure_ok = (
        wrapper == 17
        and arity == 4
        and type(pmap) is dict
        and type(uhdr) is dict
        and type(uhdr.get(4)) is bytes
        and good_payload
        and tag_kind not in ("short", "long", "text")
    )
    if not structure_ok:
        return frame, "structure"
    alg = pmap.get(1)
    if type(alg) is not int or alg != 5:
        return frame, "alg"
    if uhdr[4] != b"m1":
        return frame, "kid"
    if tag_kind in ("wrong", "other_key"):
        return frame, "tag"
    return frame, None


def test_structural_frames_fail_at_the_first_check_the_protocol_orders():
    seen: set = set()

    @fuzz(400)
    @given(frames())
    def run(case):
        frame, expected = case
        try:
            bounded(cose.mac0_decode, KA, "m1", frame)
        except COSEError as e:
            assert e.field == expected, (e.field, expected)
            seen.add(e.field)
        else:
            assert expected is None, "verified, but the model expected %r" % expected
            seen.add(None)

    run()
    assert seen == {"structure", "alg", "kid", "tag", None}, seen
