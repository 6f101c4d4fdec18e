"""PostgreSQL: a reading's (meter_id, seq) is stored once across the month partitions of
``readings`` (reading_keys, claimed a batch at a time since m015: headend/db/migrations.py,
headend/ingest/store.py ``_CLAIM_NEW``, ``_CLAIM_FREE``), between concurrent transactions too.

The concurrent cases hold one connection's claim uncommitted and start the other connection's
batch in a thread; the first commits (or rolls back) only once PostgreSQL shows the second
waiting for its lock, so the order is fixed by events, not by timing.
"""

from __future__ import annotations

import threading

import pytest

from headend.db import migrations as mig
from headend.db import partitions
from headend.db.storage import Storage
from headend.ingest.store import IngestBatch
from tests.headend.broker_support import wait_for

JAN = 1_704_067_200 + 900  # 2024-01-01 00:15 UTC
APR = 1_711_929_600 + 900  # 2024-04-01 00:15 UTC: another month's partition


def row(seq, ts=JAN, raw=None, meter="m1"):
    raw = raw if raw is not None else b"frame-%d" % seq
    return (meter, seq, ts, 1000.0 + seq, 900, "[%d,0]" % seq, "[0,0]", "[0,0,0,0]", None, None, 0, 1, raw)


def batch(*rows):
    b = IngestBatch()
    b.readings = list(rows)
    return b


@pytest.fixture
def two(pg_url):
    """Two Storage connections to one database, meter m1 provisioned."""
    with Storage(pg_url) as a, Storage(pg_url) as b, Storage(pg_url) as watcher:
        a.add_meter("m1", "00" * 32, "$7$hash", now=1.0)
        yield a, b, watcher


def waiting_for_a_lock(watcher, store) -> bool:
    pid = store.conn.raw.info.backend_pid
    r = watcher.conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?", [pid]).fetchone()
    return r is not None and r[0] == "Lock"


def race(two, first, second, outcome="commit"):
    """``a`` commits batch ``first`` in an open transaction; ``b`` commits ``second`` meanwhile
    (a thread) and must wait for ``a``'s claim; then ``a`` commits or rolls back. b's result."""
    a, b, watcher = two
    result = {}
    a.conn.execute("BEGIN")
    assert a.commit_batch(first)["accepted"] == 1
    t = threading.Thread(target=lambda: result.update(b.commit_batch(second)))
    t.start()
    try:
        wait_for(lambda: waiting_for_a_lock(watcher, b), what="the second batch waiting for the claim")
        assert t.is_alive() and not result
    finally:
        a.conn.execute("COMMIT" if outcome == "commit" else "ROLLBACK")
        t.join(30)
    assert not t.is_alive()
    return result


def keys(store) -> list[tuple]:
    return store.conn.execute("SELECT meter_id, seq, ts FROM reading_keys ORDER BY 1, 2").fetchall()


def test_one_reading_committed_by_two_connections_at_once_is_stored_once(two):
    a = two[0]
    assert race(two, batch(row(7)), batch(row(7))) == {"accepted": 0, "duplicates": 1, "reused": 0}
    assert [(r["seq"], r["raw"]) for r in a.readings("m1")] == [(7, b"frame-7")]
    assert keys(a) == [("m1", 7, JAN)]
    assert a.counters() == {"accepted": 1, "accepted:reading": 1, "duplicates": 1}


def test_another_frame_under_a_seq_claimed_concurrently_in_another_month_is_refused(two):
    a = two[0]
    got = race(two, batch(row(7)), batch(row(7, ts=APR, raw=b"forged")))
    assert got == {"accepted": 0, "duplicates": 0, "reused": 1}
    assert [(r["ts"], r["raw"]) for r in a.readings("m1")] == [(JAN, b"frame-7")]
    assert keys(a) == [("m1", 7, JAN)]
    assert [(q["reason"], q["payload"]) for q in a.quarantined()] == [("seq_reused", b"forged")]
    assert a.counters()["rejected:seq_reused"] == 1
    assert a.conn.execute("SELECT count(*) FROM readings_p202404").fetchone()[0] == 0


def test_a_claim_rolled_back_leaves_the_key_to_the_waiting_batch(two):
    a = two[0]
    got = race(two, batch(row(7)), batch(row(7, ts=APR, raw=b"later")), outcome="rollback")
    assert got == {"accepted": 1, "duplicates": 0, "reused": 0}
    assert [(r["ts"], r["raw"]) for r in a.readings("m1")] == [(APR, b"later")]
    assert keys(a) == [("m1", 7, APR)]


def test_one_key_twice_in_a_batch_keeps_the_first_and_refuses_the_other_frame(two):
    a = two[0]
    got = a.commit_batch(batch(row(8, ts=APR, raw=b"first"), row(7), row(8, ts=JAN, raw=b"second"), row(7)))
    assert got == {"accepted": 2, "duplicates": 1, "reused": 1}
    assert [(r["seq"], r["ts"], r["raw"]) for r in a.readings("m1")] == [
        (7, JAN, b"frame-7"),
        (8, APR, b"first"),
    ]
    assert keys(a) == [("m1", 7, JAN), ("m1", 8, APR)]  # the stored row's ts: retention trims by it


def test_other_ways_into_readings_still_claim_their_key_through_the_trigger(two):
    a = two[0]
    a.insert_readings_batch([row(7)])
    partitions.ensure(a.conn, "readings", [(2024, 4)])  # as manual readings do
    insert = 'INSERT INTO readings (meter_id, seq, ts, received_at, "interval", imp, exp, q, flags, raw)'
    insert += " VALUES ('m1', ?, ?, 1.0, 900, '[0]', '[0]', '[0,0,0,0]', 0, ?)"
    with a.db.atomic():  # after a batch in the same transaction: its setting is cleared
        a.commit_batch(batch(row(9)))
        assert a.conn.execute("SELECT current_setting('headend.reading_keys', true)").fetchone()[0] == ""
        assert a.conn.execute(insert, [7, APR, b"manual"]).rowcount == 0  # the key is claimed
        assert a.conn.execute(insert, [-1, APR, b"manual"]).rowcount == 1
        assert a.conn.execute(insert, [-1, JAN, b"again"]).rowcount == 0
    assert [(r["seq"], r["ts"]) for r in a.readings("m1")] == [(7, JAN), (9, JAN), (-1, APR)]
    assert keys(a) == [("m1", -1, APR), ("m1", 7, JAN), ("m1", 9, JAN)]


def test_m015_converts_a_database_made_by_m001_to_m014(pg_url, monkeypatch):
    everything = list(mig.migrations._migrations)
    upto = [m for m in everything if m.name < "m015"]
    assert len(upto) == 14
    monkeypatch.setattr(mig.migrations, "_migrations", upto)
    with Storage(pg_url) as s:  # m001..m014: the per-row trigger claims every key
        s.add_meter("m1", "00" * 32, "$7$hash", now=1.0)
        partitions.ensure(s.conn, "readings", [(2024, 1)])
        s.conn.execute(
            'INSERT INTO readings (meter_id, seq, ts, received_at, "interval", imp, exp, q, flags, raw)'
            " VALUES ('m1', 7, ?, 1.0, 900, '[7,0]', '[0,0]', '[0,0,0,0]', 0, ?)",
            [JAN, b"frame-7"],
        )
        old = "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'readings_claim_key'"
        old += " AND tgrelid = 'readings'::regclass"
        assert "WHEN" not in s.conn.execute(old).fetchone()[0]
    monkeypatch.setattr(mig.migrations, "_migrations", everything)
    with Storage(pg_url) as s:
        defs = [
            r[0]
            for r in s.conn.execute(
                "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE t.tgname = 'readings_claim_key' AND c.relnamespace = current_schema()::regnamespace"
            )
        ]
        assert len(defs) > 1  # the partitions' clones too
        assert all(" WHEN ((current_setting('headend.reading_keys'" in d for d in defs), defs
        assert s.insert_readings_batch([row(7, ts=APR), row(8, ts=APR)]) == (1, 1)
        assert s.insert_readings_batch([row(8, ts=JAN, raw=b"other")]) == (0, 1)
        assert [(r["seq"], r["ts"]) for r in s.readings("m1")] == [(7, JAN), (8, APR)]
        assert keys(s) == [("m1", 7, JAN), ("m1", 8, APR)]
        assert s.counters()["rejected:seq_reused"] == 1
