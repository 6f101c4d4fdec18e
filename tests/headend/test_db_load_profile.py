"""m016: SQLite's ``load_profile`` rebuilt as a WITHOUT ROWID table (clustered by its key), keeping
its rows, key, constraints and the VEE engine's replace behaviour; the rebuild is all or nothing."""

import sqlite3
import subprocess
import sys
import textwrap

import pytest
from sqlite_utils import Database

from headend.db.migrations import migrations
from headend.db.storage import Storage

M016 = "m016_load_profile_without_rowid"
T0 = 1704067200
INSERT = "INSERT INTO load_profile (meter_id, interval_start, interval_s, rate, wh_imp, wh_exp, source)"


def old_rows(meters=("m2", "m1", "m3"), hours=48):
    """Written as the ingest and VEE write them: every meter's hour, then the next hour; two rates,
    hourly and 15-minute rows, every source."""
    rows = []
    for h in range(hours):
        for k, m in enumerate(meters):
            for rate in (1, 2):
                rows.append((m, T0 + 3600 * h, 3600, rate, 10 * h + k + rate, k, "real"))
                rows.append((m, T0 + 3600 * h + 900, 900, rate, h + k, 0, ("estimated", "edited")[rate - 1]))
    return rows


def make_old(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    migrations.apply(Database(conn), stop_before=M016)
    conn.executemany(INSERT + " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def table_sql(conn):
    return conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'load_profile'"
    ).fetchone()[0]


def columns(conn):
    return conn.execute('PRAGMA table_info("load_profile")').fetchall()  # name, type, notnull, default, pk


def all_rows(conn):
    return sorted(conn.execute("SELECT * FROM load_profile").fetchall())


def test_an_older_database_gets_a_without_rowid_load_profile_with_the_same_rows_and_key(tmp_path):
    path = str(tmp_path / "old.db")
    rows = old_rows()
    make_old(path, rows)
    conn = sqlite3.connect(path)
    before_columns, before_sql = columns(conn), table_sql(conn)
    conn.close()
    assert not before_sql.rstrip().upper().endswith("WITHOUT ROWID")

    with Storage(path) as s:
        assert M016 in [m.name for m in migrations.applied(s.db)]
        sql = table_sql(s.conn)
        assert sql.rstrip().endswith(") WITHOUT ROWID")
        assert sql == before_sql + " WITHOUT ROWID"  # the same DDL, name included
        # names, types, NOT NULL, key positions; the key columns NOT NULL now (WITHOUT ROWID)
        assert [c[:3] for c in before_columns if c[5]] == [
            (0, "meter_id", "TEXT"), (1, "interval_start", "INTEGER"), (2, "interval_s", "INTEGER"),
            (3, "rate", "INTEGER")]  # fmt: skip
        assert columns(s.conn) == [c[:3] + (c[3] or int(c[5] > 0),) + c[4:] for c in before_columns]
        assert all_rows(s.conn) == sorted(rows)
        assert s.conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '%m016%'").fetchall() == []
        # clustered by the key: a plain scan of every column comes out in key order (m002's table
        # gave the rows in the order they were written: every meter's hour, then the next hour)
        scan = [r[:1] + (r[2], r[1], r[3]) for r in s.conn.execute("SELECT * FROM load_profile")]
        assert scan == sorted(scan) and len(scan) == len(rows)
        with pytest.raises(sqlite3.OperationalError):  # no rowid any more
            s.conn.execute("SELECT rowid FROM load_profile")
        # the key is still unique, the values still NOT NULL, and the key columns now NOT NULL too
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            s.conn.execute(INSERT + " VALUES ('m1', ?, 3600, 1, 5, 0, 'real')", [T0])
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            s.conn.execute(INSERT + " VALUES ('m1', ?, 3600, 1, NULL, 0, 'real')", [T0 - 3600])
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            s.conn.execute(INSERT + " VALUES (NULL, ?, 3600, 1, 1, 0, 'real')", [T0 - 3600])
        s.conn.rollback()

        # VEE's replace: one meter's hourly rows in a range replaced, the rest untouched
        new = [{"interval_start": T0 + 3600 * h, "rate": 1, "wh_imp": 7, "wh_exp": 0, "source": "edited"}
               for h in range(10, 20)]  # fmt: skip
        assert s.replace_load_profile("m1", 3600, T0 + 3600 * 10, T0 + 3600 * 30, new) == 10
        got = s.load_profile("m1", 3600)
        assert [(r["interval_start"], r["rate"]) for r in got] == sorted(
            [(T0 + 3600 * h, r) for h in range(48) if not 10 <= h < 30 for r in (1, 2)]
            + [(T0 + 3600 * h, 1) for h in range(10, 20)]
        )
        assert [r["wh_imp"] for r in got if 10 <= (r["interval_start"] - T0) // 3600 < 20] == [7] * 10
        assert all_rows(s.conn) == sorted(
            [r for r in rows if not (r[0] == "m1" and r[2] == 3600 and T0 + 36000 <= r[1] < T0 + 108000)]
            + [("m1", T0 + 3600 * h, 3600, 1, 7, 0, "edited") for h in range(10, 20)]
        )
    with Storage(path) as s:  # opened again: nothing pending, nothing rebuilt
        assert table_sql(s.conn).endswith(") WITHOUT ROWID")
        assert [r["wh_imp"] for r in s.load_profile("m1", 3600, T0 + 36000, T0 + 36001)] == [7]


def test_a_new_database_has_the_without_rowid_table_from_the_start(tmp_path):
    with Storage(str(tmp_path / "new.db")) as s:
        assert table_sql(s.conn).endswith(") WITHOUT ROWID")
        assert s.replace_load_profile("m1", 900, 0, 2**62, [
            {"interval_start": T0, "rate": 1, "wh_imp": 3, "wh_exp": 1, "source": "real"}]) == 1  # fmt: skip
        assert s.load_profile("m1", 900) == [
            {"meter_id": "m1", "interval_start": T0, "interval_s": 900, "rate": 1, "wh_imp": 3, "wh_exp": 1,
             "source": "real"}]  # fmt: skip


def test_a_failed_copy_leaves_the_old_table_and_the_migration_pending(tmp_path):
    # a rowid table's key columns take NULL (SQLite's legacy), a WITHOUT ROWID table's do not:
    # such a row makes the copy fail, and the runner's transaction rolls the whole rebuild back
    path = str(tmp_path / "old.db")
    rows = old_rows(hours=4) + [(None, T0, 3600, 1, 1, 0, "real")]
    make_old(path, rows)
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        Storage(path)
    conn = sqlite3.connect(path)
    assert not table_sql(conn).upper().rstrip().endswith("WITHOUT ROWID")
    assert sorted(conn.execute("SELECT * FROM load_profile").fetchall(), key=repr) == sorted(rows, key=repr)
    assert M016 in [m.name for m in migrations.pending(Database(conn))]
    assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '%m016%'").fetchall() == []
    conn.close()


CRASH = textwrap.dedent(
    """
    import os, sqlite3, sys
    from sqlite_utils import Database
    from headend.db.migrations import migrations
    (m,) = [m for m in migrations._migrations if m.name == sys.argv[2]]
    inner, calls = m.fn, [0]
    def dies(conn):
        calls[0] += 1
        if calls[0] == 50:  # 50,000 VM steps into the rebuild: the copy is under way
            os._exit(9)
    def crashing(db):
        db.conn.set_progress_handler(lambda: dies(db.conn), 1000)
        inner(db)
        print("the rebuild finished before the crash")
    m.fn = crashing
    conn = sqlite3.connect(sys.argv[1])
    conn.execute("PRAGMA journal_mode=WAL")
    migrations.apply(Database(conn))
    """
)


def test_a_crash_during_the_rebuild_leaves_the_old_table(tmp_path):
    path = str(tmp_path / "old.db")
    rows = old_rows(meters=["m%03d" % k for k in range(40)], hours=100)  # 16,000 rows
    make_old(path, rows)
    done = subprocess.run([sys.executable, "-c", CRASH, path, M016], capture_output=True, text=True)
    assert done.returncode == 9, done.stdout + done.stderr  # killed mid-rebuild, not finished
    conn = sqlite3.connect(path)
    assert not table_sql(conn).upper().rstrip().endswith("WITHOUT ROWID")
    assert all_rows(conn) == sorted(rows)
    assert M016 in [m.name for m in migrations.pending(Database(conn))]
    conn.close()
    with Storage(path) as s:  # the next open rebuilds it
        assert table_sql(s.conn).endswith(") WITHOUT ROWID")
        assert all_rows(s.conn) == sorted(rows)


def test_postgresql_keeps_its_partitioned_load_profile(db_target):
    with Storage(db_target) as s:
        if s.dialect == "sqlite":
            assert table_sql(s.conn).endswith(") WITHOUT ROWID")
            return
        kind = s.conn.execute("SELECT relkind FROM pg_class WHERE relname = 'load_profile'").fetchone()[0]
        assert kind == "p"  # still partitioned by month; m016 recorded, nothing done
        assert s.conn.execute(
            "SELECT count(*) FROM _headend_migrations WHERE name = ?", [M016]
        ).fetchone()[0] == 1  # fmt: skip
