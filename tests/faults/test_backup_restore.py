"""`headend backup` while `headend serve` ingests a stream from four meters: every backup is a
consistent snapshot (one commit: the ingest counters equal the stored rows, each meter's readings
a gapless prefix), one self-contained file that passes integrity_check. `headend restore` refuses
what it must: an existing database without --force, a database in use even with --force, a
damaged backup, a file that is not a head-end database; and a refused restore leaves the target
exactly as it was."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from protocol import topics
from tests.faults.support import Fleet, Stream, count, headend, integrity, rows, wait_for
from tests.headend.broker_support import cwt_frame, reading_map

METERS, PER_METER = 4, 500
BACKUPS, PART = 4, 100  # a backup in each of the first four parts of 100 readings per meter
T0 = 1_700_000_100


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path, METERS)
    yield f
    f.close()


def consistent(path) -> dict[str, int]:
    """The snapshot's per-meter reading counts, after checking it is one commit's state."""
    assert integrity(path) == "ok"
    assert rows(path, "PRAGMA journal_mode") == [("delete",)]
    per_meter = dict(rows(path, "SELECT meter_id, count(*) FROM readings GROUP BY meter_id"))
    for m, n in per_meter.items():  # a meter's readings arrive in seq order: a prefix, no hole
        assert rows(path, "SELECT min(seq), max(seq) FROM readings WHERE meter_id = ?", [m]) == [(1, n)]
    counters = dict(rows(path, "SELECT name, value FROM counters"))
    assert counters.get("accepted:reading", 0) == sum(per_meter.values())  # same transaction
    return per_meter


def test_backups_during_ingest_are_consistent_snapshots_and_restore_refuses_a_live_db(fleet, tmp_path):
    serve = fleet.serve("--batch", "50")
    clients = {m: fleet.meter(m) for m in fleet.ids}
    items = {
        clients[m]: [
            (topics.up(m, "reading"), cwt_frame(fleet.key(m), m, reading_map(s, T0 + 900 * s, s)))
            for s in range(1, PER_METER + 1)
        ]
        for m in fleet.ids
    }
    # the stream is gated, not timed: each meter stops after every PART readings until the backup
    # of that part is taken, so backup i sees part i being ingested and never anything past it
    stream = Stream(items, pace_s=0.004, stops=tuple(PART * (i + 1) for i in range(BACKUPS)))
    taken = []
    for i in range(BACKUPS):
        before = i * PART * METERS  # every earlier part, then at least one reading of part i
        wait_for(lambda n=before: count(fleet.db) > n, 30, "ingest of part %d" % i)
        out = headend("--db", fleet.db, "backup", "--out", str(tmp_path / ("b%d.db" % i)))
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["integrity"] == "ok" and summary["bytes"] > 0
        taken.append((summary, consistent(tmp_path / ("b%d.db" % i))))
        stream.release()  # the next part
    stream.join()
    for c in clients.values():
        c.wait_acked(30)
    wait_for(lambda: count(fleet.db) == METERS * PER_METER, 30, "every reading")
    totals = [sum(per_meter.values()) for _, per_meter in taken]
    for i, total in enumerate(totals):  # mid-stream, each a step further: inside its own part
        assert i * PART * METERS < total <= (i + 1) * PART * METERS, totals
    assert totals[-1] < METERS * PER_METER
    assert [s["counts"]["readings"] for s, _ in taken] == totals
    assert not list(tmp_path.glob("b*.db-*")) and not list(tmp_path.glob("*.tmp-*"))  # single files

    out = headend("--db", fleet.db, "restore", "--from", str(tmp_path / "b0.db"))
    assert out.returncode == 1 and "exists" in out.stderr and "--force" in out.stderr, out.stderr
    out = headend("--db", fleet.db, "restore", "--from", str(tmp_path / "b0.db"), "--force")
    assert out.returncode == 1 and "in use by another process" in out.stderr, out.stderr
    assert serve.terminate() == 0  # serve never noticed: nothing was touched
    assert count(fleet.db) == METERS * PER_METER and integrity(fleet.db) == "ok"

    out = headend("--db", fleet.db, "restore", "--from", str(tmp_path / "b2.db"), "--force")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["replaced"] is True
    assert consistent(fleet.db) == taken[2][1]  # the restored database is that snapshot
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("headend.db")) == ["headend.db"]


def test_restore_refuses_damaged_or_foreign_backups_and_leaves_the_target_alone(fleet, tmp_path):
    out = headend("--db", fleet.db, "backup", "--out", str(tmp_path / "good.db"))
    assert out.returncode == 0, out.stderr
    target = tmp_path / "target.db"
    shutil.copy(tmp_path / "good.db", target)
    target_bytes = target.read_bytes()

    damaged = tmp_path / "damaged.db"
    data = bytearray((tmp_path / "good.db").read_bytes())
    [(root, page)] = rows(
        tmp_path / "good.db",
        "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master WHERE name = 'meters'",
    )
    at = (root - 1) * page
    data[at : at + 8] = b"\x0d\x00\x00\xff\xff\x00\x00\x00"  # the meters table's page header, garbled
    damaged.write_bytes(bytes(data))
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)

    cases = {
        damaged: ("integrity_check", "malformed"),
        foreign: ("not a head-end database",),
        garbage: ("not a database",),
        tmp_path / "missing.db": ("does not exist",),
    }
    for src, words in cases.items():
        out = headend("--db", str(target), "restore", "--from", str(src), "--force")
        assert out.returncode == 1 and out.stderr.startswith("error: "), (src, out.stderr)
        assert any(w in out.stderr for w in words), (src, out.stderr)
        assert target.read_bytes() == target_bytes
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("target")) == ["target.db"]

    out = headend("--db", str(fleet.db), "backup", "--out", str(tmp_path / "nodir" / "b.db"))
    assert out.returncode == 1 and "does not exist" in out.stderr, out.stderr
    out = headend("--db", str(tmp_path / "nothing.db"), "backup", "--out", str(tmp_path / "b.db"))
    # the root CLI refuses a missing database for every command that does not create one
    assert out.returncode == 1 and "error: no database at %s" % (tmp_path / "nothing.db") in out.stderr, (
        out.stderr
    )
    assert not (tmp_path / "nothing.db").exists()  # a backup never creates the database it reads
