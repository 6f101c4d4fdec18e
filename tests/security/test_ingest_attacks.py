"""Hostile meters and eavesdroppers against a real Mosquitto (per-meter passwords and ACL from
`headend broker-config`) and a real `headend serve` subprocess.

- A replayed reading (the same frame again, before and after a restart of serve) is stored
  once; another frame under a used seq is refused (seq_reused), the first one kept.
- Forged readings (another meter's key, a flipped tag, alg none, no kid) are quarantined
  verbatim with their reason and counted, never stored.
- Meter A cannot publish as B: the broker ACL drops A's publishes on B's topics (checked by a
  head-end-user subscriber on the broker itself), cannot read B's readings or commands, and
  cannot log in as B; a frame of A's that B (or anyone) publishes on B's topic is refused by
  serve (kid), and one re-signed under B's name with A's key fails the tag.
- A meter holding its own key cannot stop ingest: a signed event whose detail holds bytes,
  tags and bignums is stored (it used to raise out of ingest and kill serve, then again on
  every redelivery) and a 1 MB hash-flooding frame is refused at once (it used to take
  about a minute to decode).
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from headend.db.storage import Storage
from protocol import cbor, cose, topics
from protocol import messages as M
from tests.fuzz.support import colliding_map
from tests.headend.broker_support import MeterClient, cwt_frame, reading_map, wait_for
from tests.security.support import counters, listener, total

T0 = 1_700_000_100


def reading(key: bytes, meter_id: str, seq: int, wh: int = 1) -> bytes:
    return M.seal(key, meter_id, M.reading(seq, T0 + 900 * seq, 900, [wh, 0, 0, 0], [0] * 4, [0] * 4))


def raw_frame(protected: bytes, unprotected: dict, msg: dict) -> bytes:
    """17([protected, unprotected, payload, 32 zero bytes]): a frame nobody could sign."""
    return cbor.dumps(cbor.Tag(17, [protected, unprotected, cbor.dumps(msg), bytes(32)]))


def connack(user: str | None, password: str | None, port: int):
    """The CONNACK reason code the broker answers a login with."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
    if user is not None:
        c.username_pw_set(user, password)
    codes = []
    c.on_connect = lambda cl, u, f, rc, p: codes.append(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        wait_for(lambda: codes, 5, "CONNACK")
    finally:
        c.loop_stop()
        c.disconnect()
    return codes[0]


def test_replayed_readings_are_stored_once_and_a_reused_seq_is_refused(fleet):
    ka, up = fleet["key"]["A"], topics.up("A", "reading")
    frames = [reading(ka, "A", seq, 100 + seq) for seq in (1, 2, 3)]
    serve = fleet["serve"]()
    a = MeterClient("A", fleet["password"]["A"], fleet["port"])
    a.publish_all([(up, f) for f in frames] + [(up, frames[1])] * 5 + [(up, reading(ka, "A", 2, 999))])
    wait_for(lambda: total(counters(fleet["db"])) == 9, 15, "9 frames judged")
    assert serve.terminate() == 0
    serve = fleet["serve"]()  # a replay after a restart of the head-end is no different
    a.publish_all([(up, frames[0]), (up, frames[2])])
    wait_for(lambda: total(counters(fleet["db"])) == 11, 15, "11 frames judged")
    assert serve.terminate() == 0
    a.close()
    c = counters(fleet["db"])
    assert (c["accepted:reading"], c["duplicates"], c["rejected:seq_reused"]) == (3, 7, 1)
    with Storage(fleet["db"]) as s:
        rows = s.readings("A")
        assert [(r["seq"], r["imp"][0], r["raw"]) for r in rows] == [
            (i + 1, 101 + i, frames[i]) for i in range(3)
        ]
        [q] = s.quarantined()
        assert (q["reason"], q["meter_id"], q["payload"]) == ("seq_reused", "A", reading(ka, "A", 2, 999))


def test_forged_readings_are_quarantined_verbatim_counted_and_not_stored(fleet):
    ka, kb, up = fleet["key"]["A"], fleet["key"]["B"], topics.up("A", "reading")
    flipped = bytearray(reading(ka, "A", 2))
    flipped[-1] ^= 0x80
    forged = {
        "tag": [reading(kb, "A", 1), bytes(flipped), cwt_frame(bytes(32), "A", reading_map(3, T0, 1))],
        "alg": [
            raw_frame(b"\xa1\x01\x00", {4: b"A"}, reading_map(4, T0, 1)),  # alg 0, "none"
            raw_frame(b"", {4: b"A"}, reading_map(5, T0, 1)),  # no alg at all
        ],
        "structure": [raw_frame(cose.PROTECTED, {}, reading_map(6, T0, 1))],  # no kid
        "kid": [reading(kb, "B", 7)],
    }  # fmt: skip
    serve = fleet["serve"]()
    a = MeterClient("A", fleet["password"]["A"], fleet["port"])
    a.publish_all([(up, f) for frames in forged.values() for f in frames])
    n = sum(map(len, forged.values()))
    wait_for(lambda: total(counters(fleet["db"])) == n, 15, "%d forged frames judged" % n)
    assert serve.terminate() == 0
    a.close()
    c = counters(fleet["db"])
    assert {k: v for k, v in c.items() if k.startswith("rejected:")} == {
        "rejected:" + r: len(f) for r, f in forged.items()
    }
    assert c.get("accepted", 0) == 0
    with Storage(fleet["db"]) as s:
        assert s.readings("A") == [] and s.readings("B") == []
        got = sorted((q["reason"], q["payload"]) for q in s.quarantined())
        assert got == sorted((r, f) for r, frames in forged.items() for f in frames)


def test_a_meter_cannot_publish_read_or_log_in_as_another(fleet):
    ka = fleet["key"]["A"]
    user, password = fleet["headend_user"]
    # what reaches the head-end side (its own listener)
    spy = listener(user, password, fleet["headend_port"], "ami/v1/+/up/#", client_id="headend.spy")
    wait_for(lambda: spy.subacks, 10, "the spy's SUBACK")
    serve = fleet["serve"]()
    b = MeterClient("B", fleet["password"]["B"], fleet["port"])
    b.client.subscribe(topics.meter_down_filter("B"), qos=1)
    wait_for(lambda: b.subacks, 10, "B's SUBACK")
    a = MeterClient("A", fleet["password"]["A"], fleet["port"])
    a.client.subscribe("ami/v1/+/up/#", qos=1)  # eavesdrop on every meter's readings
    a.client.subscribe(topics.meter_down_filter("B"), qos=1)  # and on B's commands
    wait_for(lambda: len(a.subacks) == 2, 10, "A's SUBACKs")

    # A publishes as B: a reading of its own, one re-signed under B's kid with A's key, a status
    a.publish_all([
        (topics.up("B", "reading"), reading(ka, "A", 1)),
        (topics.up("B", "reading"), reading(ka, "B", 2)),
        (topics.up("B", "status"), M.seal(ka, "B", M.status(3, T0, "x", "x", "x", 1, 1, 1))),
        (topics.down_cmd("B"), M.seal(ka, "B", M.command(1, T0, M.CMD_RELAY, {0: 0, 1: 0}))),
    ])  # fmt: skip
    marker = reading(ka, "A", 9)
    a.publish_all([(topics.up("A", "reading"), marker)])
    wait_for(lambda: any(p == marker for _t, p in spy.received), 10, "A's own reading at the broker")
    assert [(t, p) for t, p in spy.received] == [(topics.up("A", "reading"), marker)], "the ACL let A write B"

    # B (or anyone with B's password) replays A's frame on B's topic: A's kid on B's topic;
    # and a frame under B's kid signed with A's key
    b.publish_all(
        [(topics.up("B", "reading"), reading(ka, "A", 10)), (topics.up("B", "reading"), reading(ka, "B", 11))]
    )
    wait_for(lambda: total(counters(fleet["db"])) == 3, 15, "3 frames judged")
    assert serve.terminate() == 0
    time.sleep(0.2)
    assert not [m for m in a.received if m[0] != topics.up("A", "reading")], "A read another meter's topic"
    assert b.received == [], "A's command reached B"
    c = counters(fleet["db"])
    assert (c["accepted:reading"], c["rejected:kid"], c["rejected:tag"]) == (1, 1, 1)
    with Storage(fleet["db"]) as s:
        assert s.readings("B") == [] and [r["raw"] for r in s.readings("A")] == [marker]

    # A's password does not open B's account, and no anonymous or wrong-password login works
    for user_, pw in (("B", fleet["password"]["A"]), ("A", "wrong"), (None, None)):
        assert connack(user_, pw, fleet["port"]).is_failure, user_
    for cl in (a, b, spy):
        cl.close()


def test_a_meter_with_its_key_cannot_stop_ingest(fleet):
    # two layers against a meter that holds its key: a signed event whose detail JSON cannot encode is
    # stored as text; a frame far bigger than any meter's (decoding it would take minutes) is dropped by
    # the broker (max_packet_size, headend broker-config) and, should a broker let it through, refused
    # by ingest undecoded (headend.ingest.verify.MAX_FRAME)
    from headend.ingest import verify as ingest

    ka = fleet["key"]["A"]
    serve = fleet["serve"]()
    a = MeterClient("A", fleet["password"]["A"], fleet["port"])
    poison = M.seal(ka, "A", M.event(1, T0, 3, {0: b"\x00\xff", 1: cbor.Tag(99, [1]), 2: 10**40, 3: "ok"}))
    flood = cbor.dumps(cbor.Tag(17, [cose.PROTECTED, {4: b"A"}, b"", bytes(32)]))[:-34] + colliding_map(
        90_000
    )
    a.publish_all([(topics.up("A", "event"), poison)])
    info = a.publish(topics.up("A", "reading"), flood)
    try:
        info.wait_for_publish(3)
    except (RuntimeError, ValueError):  # the broker closed the connection on the oversized packet
        pass
    a.close()
    assert not info.is_published(), "the broker acknowledged a %d-byte packet" % len(flood)
    a = MeterClient("A", fleet["password"]["A"], fleet["port"])
    a.publish_all([(topics.up("A", "reading"), reading(ka, "A", 2))])
    # not stalled: the reading after them is stored (decoding the flood would take minutes)
    wait_for(lambda: counters(fleet["db"]).get("accepted:reading") == 1, 30, "the reading after them")
    assert serve.proc.poll() is None, "".join(serve.lines)
    assert serve.terminate() == 0
    a.close()
    c = counters(fleet["db"])
    assert c["accepted:event"] == 1
    with Storage(fleet["db"]) as s:
        [e] = s.events("A")
        assert e["detail"] == {"0": "h'00ff'", "1": "Tag(99, [1])", "2": hex(10**40), "3": "ok"}
        keys = s.meter_keys()
    t1 = time.thread_time()  # this thread's CPU time: what the refusal cost, whatever else runs
    v = ingest.verify(topics.up("A", "reading"), flood, keys)
    assert v.reason == "structure" and "over" in v.detail and time.thread_time() - t1 < 1
