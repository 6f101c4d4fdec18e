"""m017: the index of readings VEE has not accepted (``idx_readings_vee_open``), which the bill
run's check for failed or unvalidated readings (``VEE_PROBLEMS``) reads instead of every reading
of the cycle. It must hold exactly the failed and pending readings, on both engines, follow each
VEE verdict, and be made for a database older than m017 with the readings it already has."""

import re
import sqlite3

from sqlite_utils import Database

from headend.billing.store_sql import VEE_PROBLEMS, marks
from headend.db.migrations import migrations
from headend.db.storage import Storage
from headend.ingest.store import IngestBatch

M017 = "m017_readings_vee_open_index"
FEB = 1_706_745_600
OPEN = "SELECT meter_id, seq FROM readings %s WHERE vee_state IN ('failed', 'pending') ORDER BY 1, 2"


def reading(meter, seq):
    ts = FEB + 900 * seq
    return (
        meter,
        seq,
        ts,
        ts + 1.0,
        900,
        "[%d,0]" % seq,
        "[0,0]",
        "[0,0,0,0]",
        None,
        None,
        0,
        1,
        b"f%d" % seq,
    )


def store_readings(s, meters, n):
    for m in meters:
        s.add_meter(m, "00" * 32, "$7$x", now=0)
    batch = IngestBatch()
    batch.readings = [reading(m, seq) for m in meters for seq in range(1, n + 1)]
    s.commit_batch(batch)


def open_readings(s):
    """The failed and pending readings, read through the index itself."""
    if getattr(s, "dialect", "sqlite") == "postgresql":
        with s.db.atomic():  # the planner must take the index: nothing else may serve the query
            for setting in ("enable_seqscan", "enable_bitmapscan"):
                s.conn.execute("SET LOCAL %s = off" % setting)
            plan = "\n".join(r[0] for r in s.conn.execute("EXPLAIN " + OPEN % ""))
            used = re.findall(r"Index (?:Only )?Scan using (\S+) on", plan)
            defs = [
                s.conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = ?", [i]).fetchone()[0]
                for i in used
            ]
            # each partition's index made from the partitioned one: its predicate is m017's
            assert defs and all("WHERE (vee_state = ANY" in d for d in defs), plan
            return s.conn.execute(OPEN % "").fetchall()
    return s.conn.execute(OPEN % "INDEXED BY idx_readings_vee_open").fetchall()


def test_the_index_follows_every_vee_verdict(db_target):
    with Storage(db_target) as s:
        store_readings(s, ["m1", "m2"], 6)
        every = [(m, q) for m in ("m1", "m2") for q in range(1, 7)]
        assert open_readings(s) == every  # stored: pending
        s.set_vee_state("m1", [1, 2, 3], "valid")
        s.set_vee_state("m1", [4], "failed")
        s.set_vee_state("m2", [1], "estimated")
        s.set_vee_state("m2", [2], "suspect")
        s.set_vee_state("m2", [3], "edited")
        assert open_readings(s) == [("m1", 4), ("m1", 5), ("m1", 6), ("m2", 4), ("m2", 5), ("m2", 6)]
        s.set_vee_state("m1", [4], "edited")  # a failed reading corrected leaves the index
        s.set_vee_state("m2", [1], "failed")  # and one failed again enters it
        assert open_readings(s) == [("m1", 5), ("m1", 6), ("m2", 1), ("m2", 4), ("m2", 5), ("m2", 6)]


def test_the_bill_runs_check_reads_the_index_on_sqlite(tmp_path):
    with Storage(str(tmp_path / "h.db")) as s:
        sql = VEE_PROBLEMS % marks(["a", "b"])
        plan = " ".join(
            r[3] for r in s.conn.execute("EXPLAIN QUERY PLAN " + sql, (FEB, FEB + 1, FEB + 1, "a", "b"))
        )
        assert "idx_readings_vee_open" in plan, plan


def test_an_older_database_gets_the_index_with_its_readings(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    migrations.apply(Database(conn), stop_before=M017)
    states = {1: "valid", 2: "valid", 3: "failed", 4: "pending"}
    conn.executemany(
        "INSERT INTO readings (meter_id, seq, ts, received_at, interval, imp, exp, q, inst, balance, flags,"
        " tariff, raw, vee_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [reading("m1", q) + (state,) for q, state in states.items()],
    )
    conn.commit()
    assert conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'idx_readings_vee_open'"
    ).fetchone() == (0,)
    conn.close()
    with Storage(path) as s:
        assert M017 in [m.name for m in migrations.applied(s.db)]
        assert open_readings(s) == [("m1", 3), ("m1", 4)]
