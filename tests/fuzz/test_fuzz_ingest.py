"""Fuzzing the head-end's ingest of one MQTT message (headend.ingest.verify.add), the path every
byte a meter (or anyone holding a meter's broker password) publishes goes through.

Two sources: unsigned edits of valid frames and topics (refused before or at the envelope),
and frames correctly signed by a provisioned meter whose message map was edited (hostile
values, detail maps holding bytes, tags, bignums, NaN; unknown keys): a meter with a known
key is an adversary too. Plus a hash-flooding frame: a map of thousands of bignum keys that
collide in Python's hash.

Documented behaviour (headend/ingest/verify.py): ``add`` never raises for anything on the wire;
each message becomes exactly one row (reading, event, ack, status or will) or one quarantine
row with a reason from the documented list, and ``rejected:<reason>`` is counted. Properties:
exactly that, each call time-bounded; JSON columns parse back; a refused frame is kept
verbatim (up to MAX_QUARANTINED_PAYLOAD bytes).
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from headend.ingest import verify as ingest
from headend.ingest.store import IngestBatch
from protocol import cbor, cose, topics
from protocol import messages as M
from tests.fuzz.support import bounded, colliding_map, fuzz, mutated
from tests.fuzz.test_fuzz_messages import SEED_MSGS, edited

KA = bytes(range(32))
KEYS = {"A": KA, "B": bytes(range(1, 33))}
REASONS = {"topic", "unknown_meter", "structure", "alg", "kid", "tag", "message", "wrong_type"}
KIND_OF = {M.TYPE_READING: "reading", M.TYPE_EVENT: "event", M.TYPE_ACK: "ack", M.TYPE_STATUS: "status"}
FRAMES = tuple(M.seal(KA, "A", m) for m in SEED_MSGS if m[0] in KIND_OF)
PAYLOADS = {cose.mac0_decode(KA, "A", f) for f in FRAMES}
TOPICS = tuple(topics.up("A", k) for k in ("reading", "event", "ack", "status")) + (
    topics.up("B", "reading"),
    topics.up("Z", "reading"),
    topics.down_cmd("A"),
    "ami/v1/A/up/reading/x",
    "ami/v1/A'); DROP TABLE meters;--/up/reading",
    "ami/v1/" + "A" * 33 + "/up/reading",
    "",
)


def ingest_one(topic, payload, seen: set):
    batch = IngestBatch()
    v = bounded(ingest.add, batch, topic, payload, 1.5, KEYS)
    served = IngestBatch()  # what `headend serve` calls, with the topic as it reads it (bytes)
    bounded(ingest.take, served, topic.encode() if type(topic) is str else topic, payload, 1.5, KEYS)
    for field in IngestBatch.__slots__:
        assert getattr(served, field) == getattr(batch, field), field
    rows = {
        "reading": batch.readings,
        "event": batch.events,
        "ack": batch.acks,
        "status": batch.statuses,
        "will": batch.statuses,
    }
    if v.kind == "rejected":
        assert v.reason in REASONS, v.reason
        assert batch.counters == {"rejected:" + v.reason: 1} and len(batch.quarantine) == 1
        q = batch.quarantine[0]
        assert q[3] == v.reason and q[5] == bytes(payload[: ingest.MAX_QUARANTINED_PAYLOAD])
        assert not (batch.readings or batch.events or batch.acks or batch.statuses)
        seen.add(v.reason)
        return v
    seen.add(v.kind)
    assert len(rows[v.kind]) == 1 and not batch.quarantine
    assert sum(map(len, (batch.readings, batch.events, batch.acks, batch.statuses))) == 1
    if v.kind == "event":
        assert batch.events[0][4] is None or json.loads(batch.events[0][4]) is not None
    if v.kind == "ack":
        assert batch.acks[0][4] is None or json.loads(batch.acks[0][4]) is not None
    if v.kind == "reading":
        for col in (5, 6, 7):
            assert all(type(x) is int for x in json.loads(batch.readings[0][col]))
    return v


@st.composite
def inside(draw, frame: bytes) -> bytes:
    """One bit flipped between the kid and the tag: the structure holds, the tag must not."""
    buf = bytearray(frame)
    buf[draw(st.integers(12, len(buf) - 35))] ^= 1 << draw(st.integers(0, 7))
    return bytes(buf)


def test_unsigned_edits_of_frames_and_topics_are_refused_by_reason():
    seen: set = set()

    @fuzz(400)
    @given(
        st.sampled_from(TOPICS[:1] * 6 + TOPICS[4:5] * 3 + TOPICS),
        st.sampled_from(FRAMES).flatmap(lambda f: mutated(f, FRAMES) | inside(f)),
    )
    def run(topic, payload):
        v = ingest_one(topic, payload, seen)
        if v.kind not in ("rejected", "will"):  # accepted unsigned edits carry a payload A signed
            assert cose.mac0_decode(KA, "A", payload) in PAYLOADS

    run()
    assert {"topic", "unknown_meter", "structure", "tag", "kid"} <= seen, seen


DETAILS = [
    {0: b"\x00\xff"}, {b"k": 1}, {0: cbor.Tag(99, [1])}, {cbor.Tag(5, 1): 1}, {0: float("nan")},
    {0: cbor.UNDEFINED, 1: cbor.Simple(7)}, {0: 2**64 - 1, 99: -(2**64)}, {0: 7, 1: 10**40},
    {0: {1: {2: {3: [b"deep"]}}}}, {"text": "x'); DROP TABLE events;--"}, {0: 1.5, 1: -0.0},
    {None: None, True: False},
]  # fmt: skip


@st.composite
def signed_hostile(draw):
    seed = draw(st.sampled_from([m for m in SEED_MSGS if m[0] in KIND_OF]))
    msg = draw(edited(seed))
    if draw(st.booleans()) and type(msg) is dict and msg.get(0) in (M.TYPE_EVENT, M.TYPE_ACK):
        msg[11 if msg[0] == M.TYPE_EVENT else 32] = draw(st.sampled_from(DETAILS))
    other = draw(st.sampled_from(list(KIND_OF.values())))
    t = msg.get(0) if type(msg) is dict else None
    kind = KIND_OF.get(t, other) if type(t) is int else other
    if draw(st.integers(0, 9)) == 0:
        kind = other  # sometimes on another kind's topic
    return topics.up("A", kind), cose.mac0_encode(KA, "A", cbor.dumps(msg))


def test_signed_hostile_messages_become_one_row_or_a_refusal():
    seen: set = set()

    @fuzz(500)
    @given(signed_hostile())
    def run(case):
        ingest_one(case[0], case[1], seen)

    run()
    assert {"reading", "event", "ack", "status", "message", "wrong_type"} <= seen, seen


def test_event_and_ack_details_of_any_cbor_are_stored_as_json():
    """The poison-message bug: bytes/tags/bignums in a signed detail map made json.dumps raise
    TypeError out of ingest.add, killing `headend serve` on every redelivery."""
    for i, detail in enumerate(DETAILS):
        for msg, topic in (
            (M.event(100 + i, 900, 3, detail), topics.up("A", "event")),
            (M.ack(200 + i, 900, 1, 0, detail), topics.up("A", "ack")),
        ):
            v = ingest_one(topic, M.seal(KA, "A", msg), set())
            assert v.kind in ("event", "ack"), (detail, v)


def test_hash_flooding_frames_are_refused_in_bounded_time():
    """Decoding n colliding keys takes time ~ n**2 (a 330 KB frame took 6.5 s, 1 MB ~1 min,
    before the envelope is checked, so no key is needed): frames over MAX_FRAME are refused
    undecoded, and one just under it decodes quickly."""
    big = cbor.dumps(cbor.Tag(17, [cose.PROTECTED, {4: b"A"}, b"", bytes(32)]))[:-34] + colliding_map(90_000)
    assert len(big) > 10**6
    v = ingest_one(topics.up("A", "reading"), big, set())
    assert (v.kind, v.reason) == ("rejected", "structure") and "over" in v.detail
    n = (ingest.MAX_FRAME - 64) // 12
    small = cbor.dumps(cbor.Tag(17, [cose.PROTECTED, {4: b"A"}, colliding_map(n), bytes(32)]))
    assert len(small) <= ingest.MAX_FRAME
    v = ingest_one(topics.up("A", "reading"), small, set())
    assert (v.kind, v.reason) == ("rejected", "tag")
