"""ingest.verify / ingest.add: the check order of PROTOCOL.md, one reason per refusal."""

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headend import ingest
from headend.storage import IngestBatch
from protocol import messages as M
from protocol import topics
from tests.headend.broker_support import cwt_frame, reading_map

KA, KB = bytes(range(32)), bytes(range(1, 33))
KEYS = {"A": KA, "B": KB}
UP = topics.up("A", "reading")


def reading(seq=1, key=KA, kid="A"):
    return M.seal(
        key, kid, M.reading(seq, 900, 900, [10, 20], [0, 0], [1, 2, 3, 4], balance=-5, flags=8, tariff=2)
    )


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        ("ami/v2/A/up/reading", reading(), "topic"),
        ("ami/v1/A/down/cmd", reading(), "topic"),
        ("ami/v1/Z/up/reading", reading(), "unknown_meter"),
        (UP, b"\xff\x00", "structure"),
        (UP, cbor2.dumps(cbor2.CBORTag(17, [b"\xa1\x01\x06", {4: b"A"}, b"\xa0", bytes(32)])), "alg"),
        (UP, reading(kid="B", key=KA), "kid"),
        (UP, reading(key=KB), "tag"),
        (UP, cwt_frame(KA, "A", {0: 1, 1: 1, 2: 900}), "message"),
        (topics.up("A", "event"), reading(), "wrong_type"),
        (topics.up("A", "status"), cbor2.dumps({0: 4, 40: 1}), "structure"),  # not the will, not signed
    ],
)
def test_each_refusal_has_its_reason(topic, payload, reason):
    v = ingest.verify(topic, payload, KEYS)
    assert (v.kind, v.reason) == ("rejected", reason)
    batch = IngestBatch()
    ingest.add(batch, topic, payload, 5.0, KEYS)
    assert batch.counters == {"rejected:" + reason: 1} and batch.quarantine[0][3] == reason
    assert batch.readings == [] and batch.seen == {}


def test_kid_is_checked_before_the_tag():
    # B's frame under B's key on A's topic: wrong kid AND wrong key; kid is reported
    assert ingest.verify(UP, reading(key=KB, kid="B"), KEYS).reason == "kid"


def test_a_reading_becomes_one_row():
    batch = IngestBatch()
    frame = reading(7)
    v = ingest.add(batch, UP, frame, 1234.5, KEYS)
    assert v.kind == "reading" and v.msg["seq"] == 7
    assert batch.readings == [
        ("A", 7, 900, 1234.5, 900, "[10,20]", "[0,0]", "[1,2,3,4]", None, -5, 8, 2, frame)
    ]
    assert batch.seen == {"A": 1234.5} and batch.counters == {}


def test_cwt_frames_are_accepted():
    v = ingest.verify(UP, cwt_frame(KA, "A", reading_map(3, 2700, 5)), KEYS)
    assert (v.kind, v.msg["imp"], v.msg["inst"]["p_w"]) == ("reading", [5, 0, 0, 0], 230)


def test_status_event_ack_and_will():
    batch = IngestBatch()
    st = M.seal(KA, "A", M.status(3, 900, "1.0", "esp32", "atm90e26", 4, 1, 9))
    ingest.add(batch, topics.up("A", "status"), st, 1.0, KEYS)
    ingest.add(
        batch, topics.up("A", "event"), M.seal(KA, "A", M.event(4, 900, 10, {0: 77, 1: 5000})), 2.0, KEYS
    )
    ingest.add(batch, topics.up("A", "ack"), M.seal(KA, "A", M.ack(5, 900, 12, 0)), 3.0, KEYS)
    assert ingest.add(batch, topics.will_topic("A"), topics.will_payload(), 4.0, KEYS).kind == "will"
    assert batch.statuses == [
        (
            "A",
            1,
            1.0,
            3,
            {
                "fw": "1.0",
                "board": "esp32",
                "metering": "atm90e26",
                "status_rates": 4,
                "tariff": 1,
                "boot_count": 9,
            },
        ),
        ("A", 0, 4.0, None, {}),
    ]
    assert batch.events == [("A", 4, 900, 10, '{"0":77,"1":5000}', 2.0)]
    assert batch.acks == [("A", 5, 12, 0, None, 900, 3.0)]
    assert batch.seen == {"A": 3.0}


def test_quarantined_payload_is_capped():
    batch = IngestBatch()
    ingest.add(batch, UP, b"\x00" * 10000, 1.0, KEYS)
    q = batch.quarantine[0]
    assert len(q[5]) == ingest.MAX_QUARANTINED_PAYLOAD and "truncated from 10000" in q[4]


def reference(topic, payload):
    """The verdict with the fast envelope path switched off."""
    saved = ingest._fast_envelope
    ingest._fast_envelope = lambda *a: None
    try:
        return ingest.verify(topic, payload, KEYS)
    finally:
        ingest._fast_envelope = saved


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 2**40),
    st.sampled_from(["A", "B"]),
    st.sampled_from([KA, KB]),
    st.binary(max_size=300),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
    st.integers(0, 3),
)
def test_fast_envelope_agrees_with_protocol_open_frame(seq, kid, key, extra, flips, cut):
    """On valid frames, long payloads, wrong keys and kids, flipped and cut bytes, and
    frames cwt builds with extra headers, ingest's C-speed path gives open_frame's verdict."""
    for frame in (
        reading(seq, key=key, kid=kid),
        M.seal(KA, "A", M.event(seq, 900, 3, {0: extra, 1: seq})),  # payload lengths past 23 and 255 bytes
        cwt_frame(KA, "A", reading_map(seq, 900, 1), protected={1: 5, 3: 60}),
    ):
        mutated = bytearray(frame)
        for pos, value in flips:
            if pos < len(mutated):
                mutated[pos] = value
        mutated = bytes(mutated[: len(mutated) - cut])
        for topic in (UP, topics.up("A", "event")):
            for payload in (frame, mutated):
                assert ingest.verify(topic, payload, KEYS) == reference(topic, payload)


def test_the_fast_path_is_taken_for_our_frames():
    assert ingest._fast_envelope(KA, "A", reading(3)) is not None
    assert ingest._fast_envelope(KB, "A", reading(3)) is None
