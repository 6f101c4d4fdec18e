"""The quarantine keeps a bounded sample per (owner, hour); every refused frame is still counted
(headend/ingest/store_quarantine.py): the first SAMPLE_PER_HOUR refused frames of an owner's hour are
kept as rows, the rest only counted per (owner, hour, reason), exactly, across batches, restarts
and both writers of the table (ingest's refusals and storage's seq_reused)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlite_utils import Database

from headend.cli import main as headend_main
from headend.db.migrations import migrations
from headend.db.storage import IngestBatch, Storage
from headend.ingest import verify as ingest
from headend.ingest.store_quarantine import SAMPLE_PER_HOUR, owner
from protocol import messages as M
from protocol import topics
from tests.headend.broker_support import cli_json

N = SAMPLE_PER_HOUR
KA = bytes(range(32))
H0 = 1_700_002_800.0  # an hour start (a multiple of 3600)
UP = topics.up("A", "reading")


@pytest.fixture
def db(db_target):  # both engines (tests/conftest.py)
    path = db_target
    with Storage(path) as s:
        s.add_meter("A", KA.hex(), "$7$x", now=1.0)
        s.add_meter("B", bytes(32).hex(), "$7$x", now=1.0)
    return path


def refused_batch(frames, at: float, topic: str = UP) -> IngestBatch:
    """Each frame through headend.ingest.verify.add (refused: no valid tag), received at ``at``."""
    batch = IngestBatch()
    keys = {"A": KA, "B": bytes(32)}
    for f in frames:
        assert ingest.add(batch, topic, f, at, keys).kind == "rejected"
    return batch


def junk(i: int) -> bytes:
    return b"\xff" + i.to_bytes(4, "big")  # refused as "structure", each one distinct


def forged(i: int) -> bytes:
    return M.seal(bytes(32), "A", M.reading(i, 900, 900, [1], [0], [0] * 4))  # A's kid, wrong key: "tag"


def rows_of(s: Storage, meter_id="A") -> list[bytes]:
    return [q["payload"] for q in s.quarantined(limit=10**6) if q["meter_id"] == meter_id]


def test_the_first_n_of_an_hour_are_kept_the_rest_counted_and_the_next_hour_keeps_n_again(db):
    with Storage(db) as s:
        # 3 batches within one hour: 15 junk, then 10 forged, then 30 junk; 55 refused frames
        s.commit_batch(refused_batch([junk(i) for i in range(15)], H0 + 1))
        s.commit_batch(refused_batch([forged(i) for i in range(1, 11)], H0 + 1800))
        s.commit_batch(refused_batch([junk(i) for i in range(15, 45)], H0 + 3599.9))
        assert rows_of(s) == [junk(i) for i in range(15)] + [forged(i) for i in range(1, N - 15 + 1)]
        assert s.counters() == {"rejected:structure": 45, "rejected:tag": 10}
        assert [(q["hour"], q["reason"], q["kept"], q["dropped"]) for q in s.quarantine_hours("A")] == [
            (int(H0), "structure", 15, 30),
            (int(H0), "tag", N - 15, 10 - (N - 15)),
        ]
        # the next hour: N again, from its first frame
        s.commit_batch(refused_batch([junk(i) for i in range(100, 100 + N + 7)], H0 + 3600))
        assert rows_of(s)[N:] == [junk(i) for i in range(100, 100 + N)]
        assert s.counters()["rejected:structure"] == 45 + N + 7
        assert s.quarantine_hours("A")[0] == {
            "owner": "A",
            "hour": int(H0) + 3600,
            "reason": "structure",
            "kept": N,
            "dropped": 7,
        }
        assert s.quarantine_summary() == {
            "kept": 2 * N,
            "dropped": 30 + 10 - (N - 15) + 7,
            "dropped_by_reason": {"structure": 37, "tag": 10 - (N - 15)},
            "sample_per_hour": N,
        }


def test_one_batch_over_the_cap_other_owners_and_a_restart(db):
    with Storage(db) as s:
        batch = refused_batch([junk(i) for i in range(3 * N)], H0 + 5)
        for f in refused_batch([junk(i) for i in range(5)], H0 + 6, topics.up("B", "reading")).quarantine:
            batch.quarantine.append(f)
            batch.count("rejected:structure")
        s.commit_batch(batch)
        assert rows_of(s) == [junk(i) for i in range(N)] and rows_of(s, "B") == [junk(i) for i in range(5)]
        assert s.counters() == {"rejected:structure": 3 * N + 5}
    with Storage(db) as s:  # a restart of the head-end: the hour's sample stays taken
        s.commit_batch(refused_batch([junk(i) for i in range(10)], H0 + 7))
        s.commit_batch(refused_batch([junk(i) for i in range(10)], H0 + 8, topics.up("B", "reading")))
        assert len(rows_of(s)) == N and len(rows_of(s, "B")) == 15
        assert {(q["owner"], q["kept"], q["dropped"]) for q in s.quarantine_hours()} == {
            ("A", N, 2 * N + 10),
            ("B", 15, 0),
        }
        assert s.counters() == {"rejected:structure": 3 * N + 5 + 20}


def test_frames_without_a_meter_take_the_topic_owners_sample_or_a_shared_one(db):
    assert owner(None, "ami/v1/A/up/reading/x") == "A" and owner("B", "ami/v1/A/up/x") == "B"
    assert owner(None, "junk") == owner(None, "ami/v1/" + "A" * 33 + "/up/x") == owner(None, "") == ""
    with Storage(db) as s:
        s.commit_batch(refused_batch([junk(i) for i in range(N + 3)], H0, "ami/v1/A/up/reading/extra"))
        s.commit_batch(refused_batch([junk(i) for i in range(N + 4)], H0, "elsewhere/" + "x" * 300))
        s.commit_batch(refused_batch([junk(0)], H0, UP))  # A's sample is full: its bad topics took it
        got = {(q["owner"], q["reason"], q["kept"], q["dropped"]) for q in s.quarantine_hours()}
        assert got == {("A", "topic", N, 3), ("A", "structure", 0, 1), ("", "topic", N, 4)}
        assert s.counters() == {"rejected:topic": 2 * N + 7, "rejected:structure": 1}
        assert all(len(q["topic"]) <= 256 for q in s.quarantined())


def test_seq_reused_and_single_quarantine_calls_share_the_sample(db):
    def reading_row(seq, raw):
        return ("A", seq, 900 * seq, H0 + 10, 900, "[1]", "[0]", "[0,0,0,0]", None, None, 0, None, raw)

    with Storage(db) as s:
        s.insert_readings_batch([reading_row(seq, b"first-%d" % seq) for seq in range(1, N + 6)])
        for i in range(N - 2):
            s.quarantine(UP, "tag", junk(i), meter_id="A", received_at=H0 + 20)
        assert s.insert_readings_batch([reading_row(seq, b"other-%d" % seq) for seq in range(1, 6)]) == (0, 5)
        assert rows_of(s) == [junk(i) for i in range(N - 2)] + [b"other-1", b"other-2"]
        assert {(q["reason"], q["kept"], q["dropped"]) for q in s.quarantine_hours("A")} == {
            ("tag", N - 2, 0),
            ("seq_reused", 2, 3),
        }
        assert s.counters()["rejected:seq_reused"] == 5 and s.counters()["rejected:tag"] == N - 2
        assert [r["raw"] for r in s.readings("A")][:5] == [b"first-%d" % i for i in range(1, 6)]


def test_a_failing_batch_keeps_no_sample_and_counts_nothing(db):
    with Storage(db) as s:
        batch = refused_batch([junk(i) for i in range(5)], H0)
        batch.events = [("A", 2, 900, None, None, 1.0)]  # code is NOT NULL: the batch fails
        with pytest.raises(sqlite3.IntegrityError):
            s.commit_batch(batch)
        assert s.quarantined() == [] and s.quarantine_hours() == [] and s.counters() == {}
        s.commit_batch(refused_batch([junk(i) for i in range(N + 1)], H0))  # the hour is still whole
        assert len(rows_of(s)) == N


def test_two_connections_share_one_sample(db):
    # `headend serve --workers 2`: two processes, one database; the cap is read under the write lock
    with Storage(db) as s1, Storage(db) as s2:
        for i in range(2 * N):
            (s1 if i % 2 else s2).commit_batch(refused_batch([junk(i)], H0 + i))
        assert rows_of(s1) == [junk(i) for i in range(N)]
        assert s2.quarantine_summary()["dropped"] == N


def test_an_older_database_counts_its_rows_as_the_hour_sample(tmp_path):
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    old = Database(conn)
    migrations.apply(old, stop_before="m008_quarantine_sample")
    conn.executemany(
        "INSERT INTO quarantine (received_at, topic, meter_id, reason, detail, payload)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(H0 + i, UP, "A", "tag", None, junk(i)) for i in range(N - 3)]
        + [(H0 + 1, "ami/v1/B/up/x", None, "topic", None, b"x"), (H0 - 1, "junk", None, "topic", None, b"y")],
    )
    conn.commit()
    conn.close()
    with Storage(path) as s:
        assert {(q["owner"], q["hour"], q["reason"], q["kept"]) for q in s.quarantine_hours()} == {
            ("A", int(H0), "tag", N - 3),
            ("B", int(H0), "topic", 1),
            ("", int(H0) - 3600, "topic", 1),
        }
        s.commit_batch(refused_batch([junk(i) for i in range(100, 110)], H0 + 60))
        assert len(rows_of(s)) == N


def test_stats_shows_kept_and_dropped_beside_the_exact_counters(db, capsys):
    with Storage(db) as s:
        s.commit_batch(refused_batch([junk(i) for i in range(N + 5)], H0))
    out = cli_json(capsys, "stats", "--json", "--db", db)
    assert (out["rejected"], out["rejected_total"]) == ({"structure": N + 5}, N + 5)
    assert out["quarantine"] == {
        "kept": N,
        "dropped": 5,
        "dropped_by_reason": {"structure": 5},
        "sample_per_hour": N,
    }
    assert headend_main(["stats", "--db", db]) == 0
    assert "quarantine: %d kept, 5 refused frames not kept" % N in capsys.readouterr().out
