"""`headend serve --db postgresql://...` against a real Mosquitto, SIGKILLed mid-stream: one process, then
two processes of one shared subscription (`--mqtt 5 --share GROUP`). Every reading is stored exactly
once, and acknowledged to the broker only after its commit (what a kill leaves uncommitted, the
broker still has and delivers again).

The shared case pins Mosquitto's behaviour (2.0 here): a member's persistent session keeps what was
in flight to it when it died, and the broker goes on routing that member its round-robin turn of new
messages while it is away; none of them goes to the surviving member. They are delivered when the
member reconnects under its client id (docs/scaling.md). The test counts what the broker sent to
each member from the broker's debug log ("Sending PUBLISH to <client id>").

Gated on events (meters at a stop, the broker's PUBACKs, rows in the database, the broker's log),
never on sleeps.
"""

from __future__ import annotations

import pytest

from protocol import topics
from tests.faults.support import Fleet, Stream, wait_for
from tests.headend.broker_support import cwt_frame, reading_map

T0 = 1_700_000_100


def pg_rows(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as c:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in c.execute(sql)]


def stored(url: str) -> int:
    return pg_rows(url, "SELECT count(*) FROM readings")[0][0]


def frames(fleet: Fleet, n: int) -> dict:
    """meter -> [(topic, frame)] for seq 1..n, and meter -> [(meter, seq, frame)]."""
    seqs = range(1, n + 1)
    items, sent = {}, {}
    for m in fleet.ids:
        fs = [cwt_frame(fleet.key(m), m, reading_map(seq, T0 + 900 * seq, 500 + seq)) for seq in seqs]
        items[m] = [(topics.up(m, "reading"), f) for f in fs]
        sent[m] = [(m, seq, f) for seq, f in enumerate(fs, 1)]
    return items, sent


def all_acked_by_broker(clients, stream) -> bool:
    return sum(len(c.acked) for c in clients.values()) == stream.handed()


def assert_exactly_once(url: str, fleet: Fleet, sent: dict, total: int) -> dict:
    got = pg_rows(url, "SELECT meter_id, seq, raw FROM readings ORDER BY meter_id, seq")
    assert got == [row for m in fleet.ids for row in sent[m]]
    assert pg_rows(url, "SELECT count(*) FROM reading_keys") == [(total,)]
    c = dict(pg_rows(url, "SELECT name, value FROM counters"))
    assert c["accepted:reading"] == total and not [k for k in c if k.startswith("rejected")]
    return c


def test_serve_on_postgresql_sigkilled_mid_stream_stores_each_reading_once(pg_url, tmp_path):
    fleet = Fleet(tmp_path, 4, db=pg_url)
    try:
        items, sent = frames(fleet, 250)
        serve = fleet.serve("--batch", "500", "--batch-ms", "600000")  # whole batches of 500 only
        clients = {m: fleet.meter(m) for m in fleet.ids}
        stream = Stream({clients[m]: items[m] for m in fleet.ids}, pace_s=0.002, stops=(150,))
        stream.wait_stopped(1)  # 600 messages handed to the broker
        wait_for(lambda: all_acked_by_broker(clients, stream), 30, "the broker's PUBACKs")
        wait_for(lambda: stored(pg_url) == 500, 30, "the first batch of 500 committed")
        serve.kill()  # 100 the broker acknowledged to the meters are in serve's open batch
        assert stored(pg_url) == 500
        serve = fleet.serve("--batch", "200")
        stream.release()
        stream.join()
        for c in clients.values():
            c.wait_acked(30)
        wait_for(lambda: stored(pg_url) >= 1000, 30, "every reading stored")
        assert serve.terminate() == 0
        assert_exactly_once(pg_url, fleet, sent, 1000)
    finally:
        fleet.close()


def sent_to(log: str, client_id: str) -> int:
    with open(log) as f:
        return f.read().count("Sending PUBLISH to %s " % client_id)


def test_share_group_member_sigkilled_its_messages_wait_for_its_session_then_exactly_once(pg_url, tmp_path):
    fleet = Fleet(tmp_path, 4, db=pg_url)
    try:
        broker = fleet.broker
        broker.stop()
        with open(broker.mq.conf, "a") as f:
            f.write("log_type all\n")  # "Sending PUBLISH to <client id>": who got what
        broker.restart()
        log = broker.mq.log
        items, sent = frames(fleet, 200)
        a_id, b_id = "headend.share-a", "headend.share-b"
        share = ("--mqtt", "5", "--share", "ingest")
        # member a never commits (its batch is out of reach): what it is sent is in flight at the kill
        a = fleet.serve(*share, "--client-id", a_id, "--batch", "100000", "--batch-ms", "600000")
        b = fleet.serve(*share, "--client-id", b_id, "--batch", "50")
        assert "subscribed to $share/ingest/ami/v1/+/up/#" in "".join(a.lines + b.lines)
        clients = {m: fleet.meter(m) for m in fleet.ids}
        stream = Stream({clients[m]: items[m] for m in fleet.ids}, pace_s=0.002, stops=(100,))
        stream.wait_stopped(1)
        wait_for(lambda: all_acked_by_broker(clients, stream), 30, "the broker's PUBACKs")
        wait_for(lambda: sent_to(log, a_id) > 0, 30, "messages in flight to member a")
        wait_for(lambda: stored(pg_url) == sent_to(log, b_id) > 0, 30, "member b's share committed")
        in_flight_to_a = sent_to(log, a_id)
        a.kill()
        assert stored(pg_url) + in_flight_to_a <= 400

        stream.release()  # 400 more while a is away
        stream.join()
        for c in clients.values():
            c.wait_acked(30)
        # (the broker logs its PUBLISH to b before it acknowledges the meter's: b's share is known here)
        wait_for(lambda: stored(pg_url) == sent_to(log, b_id), 30, "member b idle, all it got committed")
        waiting = 800 - stored(pg_url)
        # Mosquitto gave b none of a's in-flight messages and went on routing a its turn of the new ones
        assert waiting > in_flight_to_a and sent_to(log, a_id) == in_flight_to_a

        a = fleet.serve(*share, "--client-id", a_id, "--batch", "200")  # the same session comes back
        assert "session present: True" in "".join(a.lines)
        wait_for(lambda: stored(pg_url) >= 800, 30, "every reading stored")
        assert a.terminate() == 0 and b.terminate() == 0
        c = assert_exactly_once(pg_url, fleet, sent, 800)
        assert c.get("duplicates", 0) == 0  # a never committed before its kill, b never died
        assert sent_to(log, a_id) - in_flight_to_a >= waiting  # a's new life got what waited for it
    finally:
        fleet.close()


def test_bench_ingest_into_postgresql_merges_beside_sqlite_and_bench_shows_it(pg_session, tmp_path):
    """tools/bench_ingest.py --postgresql at toy size: a database of its own for the run, nothing
    lost, figures under ingest_postgresql.workers_1 beside the SQLite ones, tools/bench.py's summary
    (the >= 10000 readings/s target is for two processes: none for one)."""
    import json
    import subprocess
    import sys

    from tests.headend.broker_support import ROOT
    from tools.bench import summary_rows

    if pg_session.url is None:
        pytest.skip(pg_session.why_not)
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"ingest": {"kept": True}}))
    cmd = [sys.executable, "tools/bench_ingest.py", "--meters", "4", "--per-meter", "25", "--publishers", "2"]
    cmd += ["--runs", "1", "--no-ceiling", "--workers", "1", "--postgresql", pg_session.url]
    run = subprocess.run(cmd + ["--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert data["ingest"] == {"kept": True}
    pg = data["ingest_postgresql"]["workers_1"]
    assert pg["engine"] == "postgresql" and pg["lost"] == 0 and pg["runs"][0]["readings_stored"] == 100
    assert pg["target_readings_per_s"] is None and "postgresql" in pg["cpu_us_per_reading"]
    assert "into PostgreSQL, 1 serve process(es)" in run.stdout and "--postgresql" in pg["command"]
    rows = [r for r in summary_rows({"ingest_postgresql": data["ingest_postgresql"]}) if "PostgreSQL" in r[1]]
    assert rows == [
        ("ingest", "readings/s into PostgreSQL, 1 serve process(es)", pg["readings_per_s"], "", "")
    ]
    # the schema of the run is gone
    assert pg_rows(
        pg_session.url, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'openami_bench_%'"
    ) == [(0,)]


def test_a_batch_whose_meters_another_transaction_locks_in_the_other_order_commits(pg_url):
    """Several serve processes update meters' last_seen at once: a batch locks its meters in
    meter_id order, so it cannot deadlock with another batch (without that order, PostgreSQL
    aborts one of them as a deadlock, and serve would stop). Gated on the batch waiting for the
    lock (pg_stat_activity), not on time."""
    import threading

    from headend.db.storage import Storage
    from headend.ingest.store import IngestBatch

    with Storage(pg_url) as s:
        for m in ("m1", "m2"):
            s.add_meter(m, "00" * 32, "$7$x")
    other, store = Storage(pg_url), Storage(pg_url)
    try:
        other.conn.execute("BEGIN")
        other.conn.execute("UPDATE meters SET last_seen = 1 WHERE meter_id = 'm1'")
        batch = IngestBatch()
        batch.seen = {"m2": 5.0, "m1": 5.0}  # arrival order m2, m1: the other transaction's reverse
        out: list = []

        def commit() -> None:
            try:
                out.append(store.commit_batch(batch))
            except Exception as e:  # noqa: BLE001 (reported below)
                out.append(e)

        t = threading.Thread(target=commit)
        t.start()
        pid = store.conn.raw.info.backend_pid
        q = "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND wait_event_type = 'Lock'" % pid
        wait_for(lambda: pg_rows(pg_url, q) == [(1,)], 30, "the batch waiting for m1's lock")
        other.conn.execute("UPDATE meters SET last_seen = 2 WHERE meter_id = 'm2'")  # m1 then m2
        other.conn.execute("COMMIT")
        t.join(30)
        assert out == [{"accepted": 0, "duplicates": 0, "reused": 0}]
        assert pg_rows(pg_url, "SELECT meter_id, last_seen FROM meters ORDER BY meter_id") == [
            ("m1", 5.0),
            ("m2", 5.0),
        ]
    finally:
        other.close()
        store.close()
