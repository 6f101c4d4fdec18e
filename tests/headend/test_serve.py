"""End to end: a real Mosquitto from `headend broker-config`, a real `headend serve`
subprocess, meters publishing frames built with the independent `cwt` package."""

import json
import subprocess
import sys

import cbor2
import pytest

from headend.db.storage import Storage
from protocol import messages as M
from protocol import topics
from tests.headend.broker_support import (
    ROOT,
    MeterClient,
    Serve,
    cli_json,
    cwt_frame,
    reading_map,
    start_broker,
    wait_for,
)

T0 = 1_700_000_100  # an interval end (multiple of 900)


@pytest.fixture
def fleet(tmp_path, broker_tmp, capsys):
    """Meters A and B in the head-end's db; the broker also knows 'ghost', which
    the head-end does not (a meter the broker admits but the head-end never provisioned)."""
    db, broker_db = str(tmp_path / "headend.db"), str(tmp_path / "broker.db")
    meters = {}
    for mid in ("A", "B"):
        m = cli_json(capsys, "meter", "add", mid, "--db", broker_db)
        cli_json(capsys, "meter", "add", mid, "--db", db, "--key", m["key"])
        meters[mid] = m
    meters["ghost"] = cli_json(capsys, "meter", "add", "ghost", "--db", broker_db)
    broker, url = start_broker(capsys, broker_db, str(broker_tmp / "broker"))
    started = []

    def serve(*extra, subscribed=1):
        started.append(Serve(db, url, *extra, subscribed=subscribed))
        return started[-1]

    ports = {"port": broker.port, "headend_port": broker.headend_port}
    yield {"db": db, "url": url, **ports, "meters": meters, "serve": serve}
    for s in started:  # a failed test must not leave its `headend serve` running
        if s.proc.poll() is None:
            s.kill()
    broker.stop()


def key(m):
    return bytes.fromhex(m["key"])


def counters(db):
    with Storage(db) as s:
        return s.counters()


def total(c):
    return (
        c.get("accepted", 0)
        + c.get("duplicates", 0)
        + sum(v for k, v in c.items() if k.startswith("rejected:"))
    )


def test_exactly_the_valid_frames_are_stored_and_the_rest_counted_by_reason(fleet, capsys):
    a, ka = fleet["meters"]["A"], key(fleet["meters"]["A"])
    serve = fleet["serve"]()
    pub = MeterClient("A", a["mqtt_password"], fleet["port"])
    ghost = MeterClient("ghost", fleet["meters"]["ghost"]["mqtt_password"], fleet["port"])
    up, ev = topics.up("A", "reading"), topics.up("A", "event")
    valid = [cwt_frame(ka, "A", reading_map(seq, T0 + 900 * seq, 1000 + seq)) for seq in range(1, 21)]
    bad_map = reading_map(30, T0, 1)
    del bad_map[4]  # no imp registers
    forged = bytearray(cwt_frame(ka, "A", reading_map(21, T0, 5)))
    forged[-1] ^= 0x01  # last tag byte
    tampered = bytearray(valid[0])
    tampered[30] ^= 0x01  # inside the payload
    alg6 = cbor2.dumps(
        cbor2.CBORTag(17, [cbor2.dumps({1: 6}), {4: b"A"}, cbor2.dumps(reading_map(22, T0, 1)), bytes(32)])
    )
    pub.publish_all(
        [(up, f) for f in valid]
        + [(up, valid[4])]  # a QoS duplicate: the same frame again
        + [(up, f) for f in valid[:3]]  # replays of old frames
        + [(up, bytes(forged)), (up, bytes(tampered))]  # tag
        + [(up, cwt_frame(ka, "B", reading_map(23, T0, 1)))]  # kid B on A's topic
        + [(up, alg6)]  # alg
        + [(up, b"\x00garbage\xff" * 3)]  # structure
        + [(up, cwt_frame(ka, "A", bad_map))]  # message
        + [(ev, cwt_frame(ka, "A", reading_map(24, T0, 1)))]  # a reading on the event topic
        + [(up, cwt_frame(ka, "A", reading_map(1, T0, 999)))]  # seq 1 again, another frame
        + [(ev, cwt_frame(ka, "A", {0: 2, 1: 25, 2: T0, 10: 3, 11: {0: 1}}))]  # a valid event
    )
    ghost.publish_all([(topics.up("ghost", "reading"), cwt_frame(bytes(32), "ghost", reading_map(1, T0, 1)))])
    expected = {
        "accepted": 21,
        "accepted:reading": 20,
        "accepted:event": 1,
        "duplicates": 4,
        "rejected:tag": 2,
        "rejected:kid": 1,
        "rejected:alg": 1,
        "rejected:structure": 1,
        "rejected:message": 1,
        "rejected:wrong_type": 1,
        "rejected:seq_reused": 1,
        "rejected:unknown_meter": 1,
    }
    wait_for(lambda: total(counters(fleet["db"])) >= 34, 15, "all 34 frames counted")
    assert serve.terminate() == 0
    pub.close()
    ghost.close()
    assert counters(fleet["db"]) == expected
    with Storage(fleet["db"]) as s:
        stored = s.readings("A")
        assert [r["seq"] for r in stored] == list(range(1, 21))
        assert [r["raw"] for r in stored] == valid
        assert stored[0]["imp"] == [1001, 0, 0, 0] and stored[0]["inst"] == {
            "urms_mv": 230000,
            "irms_ma": 1000,
            "p_w": 230,
        }
        assert s.readings("B") == [] and s.readings("ghost") == []
        assert [(e["seq"], e["code"], e["detail"]) for e in s.events("A")] == [(25, 3, {"0": 1})]
        reasons = sorted(q["reason"] for q in s.quarantined())
        assert reasons == sorted(
            k.split(":")[1] for k, v in expected.items() if k.startswith("rejected:") for _ in range(v)
        )
        assert s.meter("A")["last_seen"] is not None
    assert cli_json(capsys, "stats", "--json", "--db", fleet["db"])["rejected"]["tag"] == 2
    assert "stopped: accepted 21" in serve.lines[-1]


def test_a_signed_reading_past_what_storage_holds_is_quarantined_not_a_poison_message(fleet):
    # seq is a uint64 on the wire; storage holds signed 64-bit integers. Such a frame used to
    # fail its batch, so serve never acknowledged it and failed again on each redelivery.
    a, ka = fleet["meters"]["A"], key(fleet["meters"]["A"])
    serve = fleet["serve"]()
    pub = MeterClient("A", a["mqtt_password"], fleet["port"])
    up = topics.up("A", "reading")
    frames = [cwt_frame(ka, "A", reading_map(seq, T0 + 900 * k, k)) for k, seq in enumerate((1, 2**63, 3))]
    pub.publish_all([(up, f) for f in frames])
    wait_for(lambda: total(counters(fleet["db"])) >= 3, 15, "all 3 frames counted")
    assert serve.terminate() == 0
    pub.close()
    assert counters(fleet["db"]) == {
        "accepted": 2,
        "accepted:reading": 2,
        "rejected:range": 1,
    }
    with Storage(fleet["db"]) as s:
        assert [r["seq"] for r in s.readings("A")] == [1, 3]
        (q,) = s.quarantined()
        assert (q["reason"], q["payload"]) == ("range", frames[1])
        assert "seq %d is beyond what the head-end stores" % 2**63 in q["detail"]


def test_sigkill_mid_stream_loses_none_and_duplicates_none(fleet):
    a, ka = fleet["meters"]["A"], key(fleet["meters"]["A"])
    frames = [
        M.seal(ka, "A", M.reading(seq, T0 + 900 * seq, 900, [seq, 0, 0, 0], [0] * 4, [0] * 4))
        for seq in range(1, 2001)
    ]
    serve = fleet["serve"]("--batch", "50")
    pub = MeterClient("A", a["mqtt_password"], fleet["port"])
    infos = [pub.publish(topics.up("A", "reading"), f) for f in frames]

    def stored():
        with Storage(fleet["db"]) as s:
            return s.count_readings("A")

    wait_for(lambda: stored() >= 100, 15, "the first readings")
    serve.kill()  # SIGKILL: no shutdown, batches in flight are neither committed nor acked
    at_kill = stored()
    for info in infos:
        info.wait_for_publish(15)  # the broker has every frame: it queues them for the head-end's session
    assert at_kill < 2000, "the kill came too late to test anything"
    serve = fleet["serve"]()
    wait_for(lambda: stored() == 2000, 30, "all 2000 readings")
    assert serve.terminate() == 0
    pub.close()
    with Storage(fleet["db"]) as s:
        assert [r["seq"] for r in s.readings("A")] == list(range(1, 2001))
        c = s.counters()
    assert c["accepted:reading"] == 2000 and not any(k.startswith("rejected") for k in c)


def test_acl_a_meter_cannot_publish_or_subscribe_as_another(fleet):
    a, b = fleet["meters"]["A"], fleet["meters"]["B"]
    serve = fleet["serve"]()
    intruder = MeterClient("A", a["mqtt_password"], fleet["port"])
    # even with B's key (a valid frame), A may not write B's topic: the broker acks and drops it
    spoof = M.seal(key(b), "B", M.reading(1, T0, 900, [1, 0, 0, 0], [0] * 4, [0] * 4))
    intruder.publish_all([(topics.up("B", "reading"), spoof)])
    marker = M.seal(key(a), "A", M.reading(1, T0, 900, [7, 0, 0, 0], [0] * 4, [0] * 4))
    intruder.publish_all([(topics.up("A", "reading"), marker)])
    wait_for(lambda: counters(fleet["db"]).get("accepted:reading") == 1, 15, "the marker reading")

    # A subscribing to B's commands gets none of them. (Mosquitto 2.0 checks the read ACL
    # per delivered message: the SUBACK may grant the filter, the messages never come.)
    intruder.client.subscribe(topics.meter_down_filter("B"), qos=1)
    intruder.client.subscribe(topics.meter_down_filter("A"), qos=1)
    wait_for(lambda: len(intruder.subacks) == 2, 10, "two SUBACKs")
    url = fleet["url"].split("//")[1]
    user, password = url.split("@")[0].split(":")
    # the head-end user, publishing commands on the head-end's listener
    headend = MeterClient(user, password, fleet["headend_port"], client_id="headend.test-commands")
    headend.publish_all([(topics.down_cmd("B"), b"for B"), (topics.down_cmd("A"), b"for A")])
    wait_for(lambda: intruder.received, 10, "A's own command")
    assert intruder.received == [(topics.down_cmd("A"), b"for A")]
    assert serve.terminate() == 0
    for c in (intruder, headend):
        c.close()
    with Storage(fleet["db"]) as s:
        assert s.readings("B") == [] and [r["imp"] for r in s.readings("A")] == [[7, 0, 0, 0]]
        assert s.quarantined() == []


def test_status_and_will_keep_online_state(fleet):
    a, ka = fleet["meters"]["A"], key(fleet["meters"]["A"])
    serve = fleet["serve"]()
    meter = MeterClient("A", a["mqtt_password"], fleet["port"], will=topics.will_payload())
    status = cwt_frame(
        ka, "A", {0: 4, 1: 7, 2: T0, 40: 1, 41: "1.2.0", 42: "unix", 43: "adc", 44: 4, 45: 3, 46: 12}
    )
    meter.publish_all([(topics.up("A", "status"), status)])

    def row():
        with Storage(fleet["db"]) as s:
            return s.meter("A")

    wait_for(lambda: row()["online"] == 1, 15, "A online")
    r = row()
    assert (r["fw"], r["board"], r["metering"], r["status_rates"], r["tariff"], r["boot_count"]) == (
        "1.2.0",
        "unix",
        "adc",
        4,
        3,
        12,
    )
    seen = r["last_seen"]
    meter.client.loop_stop()
    meter.client.socket().close()  # the connection dies without DISCONNECT: the broker sends the will
    wait_for(lambda: row()["online"] == 0, 15, "A offline by its will")
    assert row()["last_seen"] == seen  # the will is the broker speaking, not the meter
    assert serve.terminate() == 0
    c = counters(fleet["db"])
    assert c["accepted:status"] == 1 and c["accepted:will"] == 1


def readings(key_bytes, meter_id, seqs):
    return [
        M.seal(key_bytes, meter_id, M.reading(seq, T0 + 900 * seq, 900, [seq, 0, 0, 0], [0] * 4, [0] * 4))
        for seq in seqs
    ]


def test_workers_share_the_load_and_store_each_reading_once(fleet):
    """`--workers 2`: two processes, each its own persistent session on $share/headend/..."""
    serve = fleet["serve"]("--workers", "2", "--client-id", "headend.w", "--batch", "20", subscribed=2)
    subscribed = [line for line in serve.lines if "subscribed" in line]
    assert len(subscribed) == 2 and all("$share/headend/ami/v1/+/up/#" in line for line in subscribed)
    pubs = {m: MeterClient(m, fleet["meters"][m]["mqtt_password"], fleet["port"]) for m in ("A", "B")}
    for m, pub in pubs.items():
        pub.publish_all(
            [(topics.up(m, "reading"), f) for f in readings(key(fleet["meters"][m]), m, range(1, 301))]
        )
    wait_for(lambda: counters(fleet["db"]).get("accepted:reading") == 600, 30, "600 readings")
    assert serve.terminate() == 0
    for pub in pubs.values():
        pub.close()
    stops = [line for line in serve.lines if "stopped: accepted" in line]
    assert len(stops) == 2  # both workers shut down cleanly...
    shares = sorted(int(line.split("accepted ")[1].split(",")[0]) for line in stops)
    assert sum(shares) == 600 and shares[0] > 0  # ...and both took part
    with Storage(fleet["db"]) as s:
        assert (
            [r["seq"] for r in s.readings("A")] == [r["seq"] for r in s.readings("B")] == list(range(1, 301))
        )
    assert counters(fleet["db"]).get("duplicates", 0) == 0


def test_mqtt5_session_ingests_too(fleet):
    a = fleet["meters"]["A"]
    serve = fleet["serve"]("--mqtt", "5")
    assert "MQTT 5" in "".join(serve.lines)
    pub = MeterClient("A", a["mqtt_password"], fleet["port"])
    pub.publish_all([(topics.up("A", "reading"), f) for f in readings(key(a), "A", range(1, 51))])
    wait_for(lambda: counters(fleet["db"]).get("accepted:reading") == 50, 15, "50 readings")
    assert serve.terminate() == 0
    pub.close()
    with Storage(fleet["db"]) as s:
        assert s.count_readings("A") == 50 and s.meter("A")["last_seen"] is not None


def test_serve_refuses_bad_workers(fleet, capsys):
    from headend.cli import main

    assert main(["serve", "--db", fleet["db"], "--broker", fleet["url"], "--workers", "0"]) == 1
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_serve_share_needs_its_own_client_id_and_a_group_name(fleet, capsys):
    from headend.cli import main

    base = ["serve", "--db", fleet["db"], "--broker", fleet["url"], "--mqtt", "5"]
    assert main(base + ["--share", "g"]) == 1
    assert "--share needs --client-id" in capsys.readouterr().err
    assert main(base + ["--share", "a/b", "--client-id", "headend.a"]) == 1
    assert "share group" in capsys.readouterr().err


def test_bench_ingest_reports_and_merges_results(tmp_path):
    """tools/bench_ingest.py end to end at toy size: nothing lost, the table, results merged."""
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"other": {"kept": True}}))
    cmd = [sys.executable, "tools/bench_ingest.py", "--meters", "4", "--per-meter", "25", "--publishers", "2"]
    run = subprocess.run(
        cmd + ["--runs", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert data["other"] == {"kept": True}
    ingest_result = data["ingest"]
    assert ingest_result["lost"] == 0 and ingest_result["runs"][0]["readings_stored"] == 100
    assert ingest_result["target_readings_per_s"] == 10000 and ingest_result["headend_peak_rss_mib"] > 0
    assert "target 10000" in run.stdout and "CPUs" in run.stdout
    # the broker's ceiling in the same run: mosquitto_sub -q 1 -C N received every message
    run0 = ingest_result["runs"][0]
    assert run0["ceiling"]["messages"] == 100 and run0["broker_ceiling_per_s"] > 0
    assert ingest_result["broker_ceiling_per_s"] == run0["broker_ceiling_per_s"]
    assert ingest_result["ratio_to_broker"] == round(
        ingest_result["readings_per_s"] / ingest_result["broker_ceiling_per_s"], 3
    )
    assert ingest_result["target_ratio_to_broker"] == 0.6 and ingest_result["goal_ratio_to_broker"] == 0.9
    assert ingest_result["cpu_us_per_reading"]["headend"] >= 0  # /proc counts 10 ms ticks: 0 at toy size
    assert (
        "broker ceiling" in run.stdout and "ratio to broker" in run.stdout and "target >= 0.6" in run.stdout
    )


# ---------------------------------------------------------------- serve's own PUBLISH reader


class _FakeSock:
    """A socket whose recv hands out the given chunks, then BlockingIOError (nothing yet)."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def recv(self, bufsize):
        if not self.chunks:
            raise BlockingIOError
        chunk = self.chunks.pop(0)
        if len(chunk) > bufsize:
            chunk, rest = chunk[:bufsize], chunk[bufsize:]
            self.chunks.insert(0, rest)
        return chunk

    def close(self):
        pass


def _publish(topic: bytes, payload: bytes, qos: int, mid: int, flags: int = 0) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + payload
    n, length = len(body), b""
    while True:
        n, digit = n >> 7, n & 0x7F
        length += bytes((digit | (0x80 if n else 0),))
        if not n:
            break
    return bytes((0x30 | qos << 1 | flags,)) + length + body


@pytest.mark.parametrize("seed", range(6))
def test_serve_reads_publishes_as_paho_would_whatever_the_chunks(seed):
    """_Client takes complete QoS 1 PUBLISHes itself (any DUP/RETAIN, 1- to 3-byte lengths) and
    leaves QoS 0, other packets and partial ones to paho: every message arrives once, in order,
    with its topic, payload and packet id, however the stream is cut into recv chunks, and a
    full batch (take_publish False) leaves the rest for the next read."""
    import random

    import paho.mqtt.client as mqtt

    from headend.ingest.service import _Client

    rnd = random.Random(seed)
    stream, expected = b"", []
    for _ in range(120):
        topic = ("ami/v1/m%d/up/reading" % rnd.randrange(50)).encode()
        payload = rnd.randbytes(rnd.choice((0, 5, 120, 200, 20000)))
        qos, flags = rnd.choice(((1, 0), (1, 0), (1, 8), (1, 1), (0, 0)))
        mid = rnd.randrange(1, 65536) if qos else None
        stream += _publish(topic, payload, qos, mid or 0, flags)
        expected.append((topic.decode(), payload, mid))
        if rnd.random() < 0.1:
            stream += b"\xd0\x00"  # PINGRESP, paho's
    cuts = sorted(rnd.sample(range(1, len(stream)), 40))
    chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)], strict=True)]
    c = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id="headend.test", manual_ack=True)
    c._sock = _FakeSock(chunks)
    got, taken = [], []
    c.on_message = lambda client, userdata, m: got.append((m.topic, m.payload, m.mid if m.qos else None))
    room = [7]

    def take(topic, payload, mid):
        if room[0] == 0:
            return False
        room[0] -= 1
        taken.append(1)
        got.append((topic.decode(), payload, mid))
        return True

    c.take_publish = take
    for _ in range(10_000):
        room[0] = 7
        assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
        if not c._sock.chunks and not c.buffered():
            break
    assert c._in_packet["command"] == 0  # no packet left half read
    assert got == expected
    assert len(taken) > len(expected) // 2  # most went the fast way
