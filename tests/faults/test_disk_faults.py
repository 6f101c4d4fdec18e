"""A full disk and a read-only database, on a real small file system (a tmpfs of a few MiB; see
smallfs.py): every command that must write fails with `error: ...` naming the problem and exit
status 1, writes nothing (integrity_check ok, every table's row count unchanged, no stray files),
and works again once the space is back. `headend serve` stops on a full disk without
acknowledging what it could not commit, so the broker keeps it and a restarted serve stores it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from headend.db.storage import Storage
from protocol import topics
from tests.faults.data import FEB, IV, vee_fleet
from tests.faults.smallfs import mount_small_fs
from tests.faults.support import (
    ROOT,
    Fleet,
    Lines,
    count,
    headend,
    integrity,
    pay_post,
    rows,
    sigkill,
    wait_for,
)
from tests.headend.broker_support import cwt_frame, reading_map
from tests.headend.prepaid_support import SECRET, add_prepaid, notification
from tests.mosquitto_broker import free_port

NOW = FEB + 7 * 86400 + IV + 3600
T0 = 1_700_000_100


@pytest.fixture
def fs(tmp_path):
    yield from mount_small_fs(tmp_path)


def table_counts(db) -> dict[str, int]:
    names = [r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: rows(db, "SELECT count(*) FROM [%s]" % t)[0][0] for t in names}


def populated(path) -> str:
    db = str(path / "headend.db")
    vee_fleet(db, 3, 7, seed=3)
    with Storage(db) as st:
        add_prepaid(st, "m1", "P1")
    return db


CRASHING_WRITER = """
import sys, time
from headend.db.storage import Storage
st = Storage(sys.argv[1])
st.bump({"crash-marker": 1})
print("committed", flush=True)
time.sleep(60)
"""
WRITES = {
    "vee run": ("vee", "run", "--now", str(NOW)),
    "meter add": ("meter", "add", "new-meter"),
    "topup": ("topup", "m1", "10", "--payment-id", "PAY-9"),
}


def test_full_disk_commands_fail_clearly_and_write_nothing(fs):
    db = populated(fs.path)
    before = table_counts(db)
    holder = sqlite3.connect(db)  # a running service keeps the database (and its -shm) open
    holder.execute("SELECT count(*) FROM readings").fetchone()
    fs.fill()
    for name, argv in WRITES.items():
        out = headend("--db", db, *argv)
        assert out.returncode == 1 and out.stderr.startswith("error: "), (name, out.stderr)
        assert "full" in out.stderr and "Traceback" not in out.stderr, (name, out.stderr)
    out = headend("--db", db, "backup", "--out", str(fs.path / "backup.db"))
    assert out.returncode == 1 and "cannot back up" in out.stderr and "full" in out.stderr, out.stderr
    out = headend("--db", db, "stats", "--json")  # reading still works
    assert out.returncode == 0, out.stderr
    assert integrity(db) == "ok" and table_counts(db) == before
    holder.close()
    # headend.master-key: the master key sealing the meter keys, made with the database (populated)
    assert set(os.listdir(fs.path)) <= {
        "filler",
        "headend.db",
        "headend.db-shm",
        "headend.db-wal",
        "headend.master-key",
    }

    # the service stopped (its -wal and -shm went away) and the space it freed was taken too:
    # SQLite cannot even size a new -shm file
    assert not os.path.exists(db + "-shm")
    fs.fill()
    out = headend("--db", db, "vee", "run", "--now", str(NOW))
    assert out.returncode == 1
    assert out.stderr.startswith("error: cannot open database %s" % db), out.stderr
    assert "the file system holding it is full" in out.stderr, out.stderr

    fs.free()
    assert integrity(db) == "ok" and table_counts(db) == before
    for name, argv in WRITES.items():
        out = headend("--db", db, *argv)
        assert out.returncode == 0, (name, out.stderr)
    after = table_counts(db)
    assert after["meters"] == before["meters"] + 1 and after["payments"] == before["payments"] + 1
    assert after["vee_results"] > 0


@pytest.mark.parametrize("left_by", ["clean shutdown", "crash"])
def test_read_only_database_commands_fail_clearly_and_a_rescue_backup_works(fs, tmp_path, left_by):
    db = populated(fs.path)
    before = table_counts(db)
    if left_by == "crash":  # a process killed after a commit leaves its -wal (not checkpointed) and -shm
        cmd = [sys.executable, "-c", CRASHING_WRITER, db]
        writer = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"committed\n"
        sigkill(writer)
        assert os.path.getsize(db + "-wal") > 0  # (reading it now would checkpoint and remove it)
        before["counters"] += 1
    files = sorted(os.listdir(fs.path))
    fs.read_only()
    try:
        for name, argv in WRITES.items():
            out = headend("--db", db, *argv)
            assert out.returncode == 1 and out.stderr.startswith("error: "), (name, out.stderr)
            assert "Traceback" not in out.stderr, out.stderr
            if left_by == "crash":  # SQLite opens it read-only; the first write is refused
                assert "attempt to write a readonly database" in out.stderr, (name, out.stderr)
            else:  # no -shm and none can be made: it cannot be opened at all
                assert out.stderr.startswith("error: cannot open database %s" % db), out.stderr
                assert "the file system holding it is read-only" in out.stderr, out.stderr
        out = headend("--db", db, "backup", "--out", str(tmp_path / "rescue.db"))  # off the failing disk
        assert out.returncode == 0, out.stderr
        assert table_counts(tmp_path / "rescue.db") == before and integrity(tmp_path / "rescue.db") == "ok"
    finally:
        fs.read_only(False)
    assert sorted(os.listdir(fs.path)) == files
    assert integrity(db) == "ok" and table_counts(db) == before


def test_full_disk_during_ingest_serve_stops_unacked_then_every_reading_once(fs, tmp_path):
    fleet = Fleet(tmp_path, 1, db=str(fs.path / "headend.db"))
    try:
        m = fleet.ids[0]
        serve = fleet.serve("--batch", "100")
        meter = fleet.meter(m)
        frames = [cwt_frame(fleet.key(m), m, reading_map(s, T0 + 900 * s, s)) for s in range(1, 4001)]
        topic = topics.up(m, "reading")
        for f in frames[:100]:
            meter.publish(topic, f)
        wait_for(lambda: count(fleet.db) == 100, 15, "the first 100 readings")
        fs.fill()
        sent = 100
        while serve.proc.poll() is None and sent < len(frames):  # until a commit needs a new block
            for f in frames[sent : sent + 200]:
                meter.publish(topic, f)
            sent += 200
            meter.wait_acked(15)
            done = lambda n=sent: serve.proc.poll() is not None or count(fleet.db) == n  # noqa: E731
            wait_for(done, 15, "ingest")
        assert serve.proc.wait(10) == 1, "".join(serve.lines)
        err = "".join(serve.lines)
        assert "error: database or disk is full" in err and "Traceback" not in err, err
        stored = count(fleet.db)
        assert 100 <= stored < sent  # it stopped with readings it could not commit
        fs.free()
        assert integrity(fleet.db) == "ok" and count(fleet.db) == stored
        serve = fleet.serve()
        wait_for(lambda: count(fleet.db) == sent, 30, "every reading after the space came back")
        assert serve.terminate() == 0
        got = rows(fleet.db, "SELECT seq, raw FROM readings ORDER BY seq")
        assert got == list(enumerate(frames[:sent], 1))
        c = dict(rows(fleet.db, "SELECT name, value FROM counters"))
        assert c["accepted:reading"] == sent and not [k for k in c if k.startswith("rejected")]
    finally:
        fleet.close()


def test_full_disk_pay_serve_answers_503_records_nothing_then_the_retries_credit_once(fs, tmp_path):
    db = str(fs.path / "headend.db")
    with Storage(db) as st:
        add_prepaid(st, "m1", "P1")
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    port = free_port()
    srv = Lines("--db", db, "pay", "serve", "--port", str(port), "--secret-file", str(secret))
    try:
        wait_for(lambda: srv.saw("headend pay: listening"), 15, "pay serve")
        assert pay_post(port, notification(payment_id="PAY-0", amount="1.00"))[0] == 200
        fs.fill()
        bodies = [notification(payment_id="PAY-%d" % i, amount="%d.00" % i) for i in (1, 2, 3)]
        for body in bodies:
            status, reply = pay_post(port, body)
            assert status == 503 and reply["code"] == "FAIL" and "full" in reply["message"], reply
        assert srv.proc.poll() is None  # still serving
        fs.free()
        for body in bodies + bodies:  # the platform's retries, and one replay each
            assert pay_post(port, body) == (200, {"code": "SUCCESS", "message": "OK"})
    finally:
        srv.kill()
    log = "".join(srv.lines)
    assert "Traceback" not in log and log.count("replied 503") == 3, log
    assert rows(db, "SELECT ref, amount FROM prepaid_ledger ORDER BY id") == [
        ("PAY-0", 1000),
        ("PAY-1", 1000),
        ("PAY-2", 2000),
        ("PAY-3", 3000),
    ]
    assert integrity(db) == "ok"
