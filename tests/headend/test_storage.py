"""Storage: migrations, idempotent batches, quarantine, counters, status, VEE tables."""

import sqlite3

import pytest

from headend.db.migrations import migrations
from headend.db.storage import Storage
from headend.errors import MeterExists
from headend.ingest.store import IngestBatch


@pytest.fixture
def store(db_target):  # both engines (tests/conftest.py)
    with Storage(db_target) as s:
        s.add_meter("m1", "00" * 32, "$7$hash", account="acc-1", now=1.0)
        yield s


def row(seq, ts=900, raw=None, meter="m1"):
    raw = raw if raw is not None else b"frame-%d" % seq
    return (meter, seq, ts, 1000.0 + seq, 900, "[%d,0]" % seq, "[0,0]", "[0,0,0,0]", None, None, 0, 1, raw)


def test_open_applies_migrations_once_and_enables_wal(tmp_path):
    path = tmp_path / "h.db"
    Storage(path).close()
    with Storage(path) as s:
        assert s.db.journal_mode == "wal"
        assert [m.name for m in migrations.applied(s.db)] == [
            "m001_ingest",
            "m002_vee",
            "m003_billing",
            "m004_prepaid",
            "m005_alerts",
            "m006_commands",
            "m007_web_users",
            "m008_quarantine_sample",
            "m009_sealed_secrets",
            "m010_bill_void",
            "m011_meter_privacy",
            "m012_bill_run_batches",
            "m013_drop_readings_vee_state_index",
            "m014_meter_next_key",
            "m015_reading_keys_claimed_by_batch",
            "m016_load_profile_without_rowid",
            "m017_outbox_partial_unique_keys",
        ]
        assert {
            "meters",
            "readings",
            "events",
            "acks",
            "quarantine",
            "counters",
            "vee_results",
            "estimates",
            "audit",
            "load_profile",
        } <= set(s.db.table_names())


def test_add_meter_refuses_a_second_registration(store):
    with pytest.raises(MeterExists, match="m1"):
        store.add_meter("m1", "11" * 32, "$7$x")
    assert store.meter("m1")["key"] == "00" * 32 and store.meter_keys() == {"m1": bytes(32)}


def test_readings_batch_is_idempotent_on_meter_and_seq(store):
    assert store.insert_readings_batch([row(1), row(2), row(3)]) == (3, 0)
    assert store.insert_readings_batch([row(2), row(3), row(4), row(4)]) == (1, 3)
    assert [r["seq"] for r in store.readings("m1")] == [1, 2, 3, 4]
    assert store.counters() == {"accepted": 4, "accepted:reading": 4, "duplicates": 3}
    r = store.readings("m1")[0]
    assert (
        r["imp"] == [1, 0]
        and r["q"] == [0, 0, 0, 0]
        and r["vee_state"] == "pending"
        and r["raw"] == b"frame-1"
    )


def test_another_frame_under_a_stored_seq_is_quarantined_not_stored(store):
    store.insert_readings_batch([row(1)])
    assert store.insert_readings_batch([row(1, raw=b"other")]) == (0, 1)
    assert store.readings("m1")[0]["raw"] == b"frame-1"
    q = store.quarantined()
    assert [(x["reason"], x["meter_id"], x["payload"]) for x in q] == [("seq_reused", "m1", b"other")]
    assert store.counters()["rejected:seq_reused"] == 1 and "duplicates" not in store.counters()


def test_a_failing_batch_writes_nothing(store):
    batch = IngestBatch()
    batch.readings = [row(1)]
    batch.count("rejected:tag")
    batch.events = [("m1", 2, 900, None, None, 1.0)]  # code is NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_batch(batch)
    assert store.readings("m1") == [] and store.counters() == {}


@pytest.mark.parametrize(
    "bad",
    [
        ("reading", "seq", 2**63),
        ("reading", "ts", 2**64 - 1),
        ("reading", "ts", 253402300800),  # 10000-01-01: no month to store it in
        ("reading", "balance", -(2**64)),
        ("event", "seq", 2**63),
        ("ack", "cmd_seq", 2**64 - 1),
        ("status", "boot_count", 2**63),
    ],
)
def test_an_integer_storage_cannot_hold_is_quarantined_and_the_rest_stored(store, bad):
    # a validly signed message may carry any uint64 (docs/protocol.md); storage holds signed
    # 64-bit integers: such a message failed every batch it was redelivered in (a poison message)
    kind, field, value = bad
    b = IngestBatch()
    b.readings = [row(1), row(3, ts=1800)]
    b.events = [("m1", 4, 900, 3, None, 1.0)]
    b.acks = [("m1", 5, 1, 0, None, 900, 1.0)]
    if kind == "reading":
        r = list(row(2, raw=b"bad-frame"))
        r[{"seq": 1, "ts": 2, "balance": 9}[field]] = value
        b.readings.insert(1, tuple(r))
    elif kind == "event":
        b.events.append(("m1", value, 900, 3, None, 1.0))
    elif kind == "ack":
        b.acks.append(("m1", 6, value, 0, None, 900, 1.0))
    else:
        b.statuses.append(("m1", 1, 1.0, 7, {field: value}))
    assert store.commit_batch(b) == {"accepted": 4, "duplicates": 0, "reused": 0}
    assert [r["seq"] for r in store.readings("m1")] == [1, 3]
    assert [e["seq"] for e in store.events("m1")] == [4] and [a["seq"] for a in store.acks("m1")] == [5]
    (q,) = store.quarantined()
    assert (q["reason"], q["meter_id"], q["topic"]) == ("range", "m1", "ami/v1/m1/up/" + kind)
    assert "%s %d is beyond what the head-end stores" % (field, value) in q["detail"]
    assert q["payload"] == (b"bad-frame" if kind == "reading" else b"")
    c = store.counters()
    assert c["rejected:range"] == 1 and c["accepted"] == 4


def test_quarantine_and_counters(store):
    store.quarantine("ami/v1/zz/up/reading", "unknown_meter", b"\x01", meter_id="zz", detail="no such meter")
    store.quarantine("junk", "topic", b"\x02")
    store.bump({"rejected:topic": 2, "custom": 5})
    assert store.counters() == {"rejected:unknown_meter": 1, "rejected:topic": 3, "custom": 5}
    assert [q["reason"] for q in store.quarantined()] == ["unknown_meter", "topic"]
    assert [q["payload"] for q in store.quarantined(reason="topic")] == [b"\x02"]


def test_readings_range_and_order(store):
    store.insert_readings_batch([row(3, ts=2700), row(1, ts=900), row(2, ts=1800)])
    assert [r["seq"] for r in store.readings("m1", 1800)] == [2, 3]
    assert [r["seq"] for r in store.readings("m1", None, 1800)] == [1, 2]
    assert store.readings("other") == []


def test_status_sets_online_and_fields_and_an_older_status_is_ignored(store):
    store.set_online("m1", True, 50.0, seq=10, fields={"fw": "1.1", "boot_count": 3})
    store.set_online("m1", True, 60.0, seq=9, fields={"fw": "1.0"})  # late, older
    m = store.meter("m1")
    assert (m["online"], m["fw"], m["boot_count"], m["status_seq"], m["last_seen"]) == (1, "1.1", 3, 10, 50.0)
    store.set_online("m1", False, 70.0)  # the will
    m = store.meter("m1")
    assert (m["online"], m["last_seen"]) == (0, 50.0)


def test_events_and_acks_dedupe(store):
    b = IngestBatch()
    b.events = [("m1", 5, 900, 3, '{"0":1}', 1.0), ("m1", 5, 900, 3, '{"0":1}', 2.0)]
    b.acks = [("m1", 6, 1, 0, None, 900, 1.0)]
    b.seen["m1"] = 99.0
    assert store.commit_batch(b) == {"accepted": 2, "duplicates": 1, "reused": 0}
    assert [(e["seq"], e["detail"]) for e in store.events("m1")] == [(5, {"0": 1})]
    assert [(a["cmd_seq"], a["result"]) for a in store.acks("m1")] == [(1, 0)]
    assert store.meter("m1")["last_seen"] == 99.0


def test_last_seen_only_moves_forward_for_each_meter_of_a_batch(store):
    store.add_meter("m2", "00" * 32, "$7$hash", now=1.0)
    for seen in ({"m1": 50.0, "m2": 70.0}, {"m2": 60.0, "m1": 80.0, "nobody": 90.0}):
        b = IngestBatch()
        b.seen = seen
        store.commit_batch(b)
    assert (store.meter("m1")["last_seen"], store.meter("m2")["last_seen"]) == (80.0, 70.0)


def test_vee_tables_round_trip_and_rerun_idempotently(store):
    store.insert_readings_batch([row(1, ts=900), row(2, ts=1800)])
    assert store.set_vee_state("m1", [1, 2], "valid") == 2
    assert [r["seq"] for r in store.readings_for_vee("m1", states=["valid"])] == [1, 2]
    for _ in range(2):
        store.add_vee_result("m1", 900, "registers_monotonic", "pass", {"delta": 1}, seq=1, run_at=5.0)
    assert [(v["rule"], v["detail"]) for v in store.vee_results("m1")] == [
        ("registers_monotonic", {"delta": 1})
    ]
    store.upsert_estimate("m1", 1800, 3600, "linear", [1, 2], created_at=6.0)
    store.upsert_estimate("m1", 1800, 3600, "linear", [1, 3], created_at=7.0)
    assert store.mark_estimates_replaced("m1", 2700, 2700) == 1
    [e] = store.estimates("m1")
    assert (e["values"], e["replaced_by_real"]) == ([1, 3], 1) and store.estimates("m1", False) == []
    aid = store.add_audit("m1", "reading:2", {"imp": [1]}, {"imp": [2]}, "meter swap", "ops", at=8.0)
    assert [(a["id"], a["old"], a["new"]) for a in store.audit("m1")] == [(aid, {"imp": [1]}, {"imp": [2]})]
    rows = [{"interval_start": 0, "rate": 1, "wh_imp": 500, "wh_exp": 0, "source": "real"}]
    for _ in range(2):
        store.replace_load_profile("m1", 900, 0, 3600, rows)
    assert [(p["wh_imp"], p["source"]) for p in store.load_profile("m1", 900)] == [(500, "real")]
    store.set_meter_rating("m1", ib_ma=5000, imax_ma=60000)
    assert (store.meter("m1")["ib_ma"], store.meter("m1")["imax_ma"]) == (5000, 60000)
    with pytest.raises(ValueError, match="volts"):
        store.set_meter_rating("m1", volts=1)


def test_a_seq_repeated_in_another_month_is_not_stored_twice(store):
    # PostgreSQL partitions readings by month of ts: (meter_id, seq) stays unique across partitions
    # (reading_keys, docs/scaling.md); on SQLite it is the primary key
    assert store.insert_readings_batch([row(7, ts=1_700_000_000)]) == (1, 0)
    assert store.insert_readings_batch([row(7, ts=1_710_000_000)]) == (0, 1)  # same frame, 4 months on
    assert store.insert_readings_batch([row(7, ts=1_720_000_000, raw=b"other")]) == (0, 1)  # seq reused
    assert store.count_readings("m1") == 1 and store.readings("m1")[0]["ts"] == 1_700_000_000
    assert store.counters()["rejected:seq_reused"] == 1


def test_readings_keep_the_meter_ts_index_and_not_the_vee_state_one(db_target):
    """m013: every vee_state filter comes with a meter and a ts range (served by (meter_id, ts));
    readings(vee_state) cost ingest on every reading and served no query."""
    with Storage(db_target) as s:
        if s.dialect == "sqlite":
            q = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings'"
        else:
            q = "SELECT indexname FROM pg_indexes WHERE tablename = 'readings'"
            q += " AND schemaname = current_schema()"
        names = {r[0] for r in s.conn.execute(q)}
    assert "idx_readings_meter_id_ts" in names and "idx_readings_vee_state" not in names
