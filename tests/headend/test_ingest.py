"""ingest.verify / ingest.add: the check order of docs/protocol.md, one reason per refusal."""

import hashlib
import hmac
import json

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headend.ingest import fast as ingest_fast
from headend.ingest import verify as ingest
from headend.ingest.store import IngestBatch
from protocol import cbor, cose, topics
from protocol import messages as M
from protocol.errors import ProtocolError
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
    """The verdict with the fast paths (envelope, payload decode and check) switched off."""
    saved = ingest._fast_envelope, ingest_fast.reading
    ingest._fast_envelope = lambda *a: None
    ingest_fast.reading = lambda body: None
    try:
        return ingest.verify(topic, payload, KEYS)
    finally:
        ingest._fast_envelope, ingest_fast.reading = saved


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


@pytest.mark.parametrize(
    "size, head",
    [(size, "preferred") for size in (5, 200, 300)]
    + [(size, "one byte") for size in (5, 6, 200)]  # payloads of 16, 17 (below 24) and 212 bytes
    + [(size, "two bytes") for size in (5, 200, 300)],
)
def test_the_fast_envelope_takes_only_the_preferred_payload_length(size, head):
    """A payload's length in a longer head than it needs (0x58 below 24, 0x59 below 256), its
    tag computed over exactly those bytes: the fast path declines and the verdict is the
    reference's; in the preferred head it is taken."""
    body = cbor.dumps({0: 1, 1: 3, 2: 900, 12: b"x" * size})  # too short a reading if short: refused
    n = len(body)
    if head == "preferred":
        length = ingest._bstr_head(n)
    elif head == "one byte":
        length = b"\x58" + n.to_bytes(1, "big")
    else:
        length = b"\x59" + n.to_bytes(2, "big")
    protected = cbor.dumps(cose.PROTECTED)  # h'a10105' as a bstr
    tag = hmac.new(KA, b"\x84\x64MAC0" + protected + b"\x40" + length + body, hashlib.sha256).digest()
    frame = b"\xd1\x84" + protected + b"\xa1\x04\x41A" + length + body + b"\x58\x20" + tag
    preferred = length == ingest._bstr_head(n)
    assert (ingest._fast_envelope(KA, "A", frame) == body) == preferred
    assert (ingest._fast_envelope(KA, "A", frame) is None) == (not preferred)
    assert ingest.verify(UP, frame, KEYS) == reference(UP, frame)


# ---------------------------------------------------------------- payload fast path (ingest_fast)


def slow(body):
    """protocol.cbor + messages.parse: the parsed reading, or the ProtocolError it raises."""
    try:
        return ingest._reference_message(body)
    except ProtocolError as e:
        return e


def assert_agrees(body):
    fast, ref = ingest_fast.reading(body), slow(body)
    if fast is not None:  # None = "ask the reference"; anything else must be exactly its answer
        assert not isinstance(ref, ProtocolError), (body.hex(), ref)
        assert fast == ref and list(fast) == list(ref)  # same keys in the same order
        assert ingest._ints(fast["imp"]) == json.dumps(ref["imp"], separators=(",", ":"))
        assert ingest._inst_json(fast.get("inst")) == ingest._json(ref.get("inst"))
    row = ingest_fast.reading_row(body)  # serve's columns: the same verdict, the same values
    if fast is None:
        assert row is None
    else:
        assert row == (
            ref["seq"], ref["ts"], ref["interval"],
            json.dumps(ref["imp"], separators=(",", ":")), json.dumps(ref["exp"], separators=(",", ":")),
            json.dumps(ref["q"], separators=(",", ":")), ingest._json(ref.get("inst")),
            ref.get("balance"), ref.get("flags", 0), ref.get("tariff"),
        )  # fmt: skip
    return fast, ref


def indefinite_imp():
    """reading_map(3, 2700, 5) with imp as an indefinite-length array."""
    m = reading_map(3, 2700, 5)
    pairs = [cbor.dumps(k) + cbor.dumps(v) for k, v in m.items() if k != 4]
    imp = b"\x04\x9f" + b"".join(cbor.dumps(x) for x in m[4]) + b"\xff"
    return bytes([0xA0 + len(m)]) + pairs[0] + pairs[1] + pairs[2] + pairs[3] + imp + b"".join(pairs[4:])


def test_fast_payload_takes_our_readings():
    body = cbor.dumps(reading_map(3, 2700, 5))
    fast, ref = assert_agrees(body)
    assert fast is not None and fast["inst"] == {"urms_mv": 230000, "irms_ma": 1000, "p_w": 230}
    full = M.reading(
        9, 900, 900, [1] * 8, [2**64 - 1] * 8, [0, 1, 2, 3], balance=-(2**64), flags=31, tariff=7
    )
    assert assert_agrees(cbor.dumps(full))[0] is not None


@pytest.mark.parametrize(
    "body, refused",
    [
        (bytes.fromhex("a3") + bytes.fromhex("0001") + bytes.fromhex("0102") + bytes.fromhex("0103"), True),
        (cbor.dumps(reading_map(3, 2700, 5)) + b"\x00", True),  # trailing byte
        (cbor.dumps(reading_map(3, 2700, 5)).replace(b"\x01\x03", b"\x01\x18\x03", 1), False),  # seq 3 long
        (indefinite_imp(), False),
        (cbor2.dumps({**reading_map(3, 2700, 5), 1: True}), True),  # a bool is not an int
        (cbor2.dumps({**reading_map(3, 2700, 5), 12: 1.5}), False),  # an unknown key is ignored
        (cbor2.dumps({**reading_map(3, 2700, 5), 1: cbor2.CBORTag(2, b"\x03")}), False),  # bignum 3
        (cbor2.dumps({**reading_map(3, 2700, 5), 4: [1] * 9, 5: [0] * 9}), True),  # 9 rates
        (cbor2.dumps({**reading_map(3, 2700, 5), 5: [0, -1, 0, 0]}), True),  # a negative register
        (cbor2.dumps({**reading_map(3, 2700, 5), 6: [0, 0, 0]}), True),  # q has 4 values
        (cbor2.dumps({**reading_map(3, 2700, 5), 7: {0: 1, 4: -1001}}), True),  # pf out of range
    ],
)
def test_fast_payload_leaves_the_unusual_to_the_reference(body, refused):
    """Duplicate keys, trailing bytes, long heads, indefinite lengths, bools, unknown keys,
    tags, out-of-range values: the fast path says None and the reference decides."""
    fast, ref = assert_agrees(body)
    assert fast is None
    if refused is not None:
        assert isinstance(ref, ProtocolError) == refused


def test_fast_payload_duplicate_key_is_refused_by_the_reference():
    dup = bytearray(cbor.dumps(reading_map(3, 2700, 5)))
    dup[0] += 1  # one more pair: seq again, after the rest
    dup += b"\x01\x04"
    assert cbor2.loads(bytes(dup))[1] == 4  # cbor2 keeps the last value silently
    fast, ref = assert_agrees(bytes(dup))
    assert fast is None and isinstance(ref, ProtocolError)


_values = st.one_of(
    st.integers(-(2**65), 2**65),
    st.integers(0, 30),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.lists(st.integers(-2, 2**64 + 1), max_size=10),
    st.lists(st.sampled_from([-1, 0, 23, 24, 2**64 - 1, 2**64, True]), min_size=4, max_size=4),
    st.dictionaries(st.integers(-1, 8), st.integers(-2000, 2**64), max_size=8),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 2**64 - 1),
    st.dictionaries(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, -1]), _values, max_size=4),
    st.sets(st.sampled_from([3, 4, 5, 6, 7, 8, 9, 11]), max_size=2),
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=3),
    st.integers(0, 2),
    st.booleans(),
)
def test_fast_payload_agrees_with_the_reference(seq, changes, dropped, flips, cut, canonical):
    """Readings with keys changed to other types and ranges, keys dropped, bytes flipped,
    cut or appended, encoded by cbor2 (insertion order or canonical): the fast verdict is
    None or exactly the reference's."""
    m = {**reading_map(seq, 900 * seq, seq % 1000), 8: -seq, 11: 2, **changes}
    for k in dropped:
        m.pop(k, None)
    try:
        body = cbor2.dumps(m, canonical=canonical)
    except (ValueError, TypeError):
        return
    mutated = bytearray(body)
    for pos, value in flips:
        if pos < len(mutated):
            mutated[pos] = value
    mutated = bytes(mutated[: len(mutated) - cut]) + (b"\x01" if cut == 2 else b"")
    for b in (body, mutated):
        assert_agrees(b)


def test_serve_tunes_its_own_sqlite_connection(tmp_path):
    """serve's SQLite connection checkpoints the WAL every SQLITE_WAL_AUTOCHECKPOINT pages and
    caches SQLITE_CACHE_KIB (tools/profile_ingest.py measures why); other connections keep
    SQLite's defaults."""
    from headend.db.storage import Storage
    from headend.ingest.service import SQLITE_CACHE_KIB, SQLITE_WAL_AUTOCHECKPOINT, IngestService

    db = str(tmp_path / "h.db")
    with Storage(db) as store, Storage(db) as other:
        IngestService(store, "mqtt://headend.ingest:x@127.0.0.1:1", log=lambda t: None)
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == SQLITE_WAL_AUTOCHECKPOINT
        assert store.conn.execute("PRAGMA cache_size").fetchone()[0] == -SQLITE_CACHE_KIB
        assert other.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
