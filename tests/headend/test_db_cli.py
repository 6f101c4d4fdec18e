"""`headend db migrate` on both engines and `headend db partitions` (PostgreSQL)."""

import json

import pytest

from headend.cli import main as headend_main
from headend.db import partitions
from headend.db.migrations import migrations
from headend.db.storage import Storage
from tests.headend.test_storage import row


def test_migrate_applies_once_and_says_what(db_target, capsys):
    assert headend_main(["db", "migrate", "--db", db_target]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["applied"] == [m.name for m in migrations._migrations]  # m001_ingest, ... in order
    assert first["applied"][0] == "m001_ingest" and len(first["applied"]) >= 15
    assert headend_main(["db", "migrate", "--db", db_target]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] == []


def test_partitions_are_made_ahead_and_on_demand(db_target, engine, capsys):
    with Storage(db_target) as s:
        s.add_meter("m1", "00" * 32, "$7$x")
        s.insert_readings_batch([row(1, ts=1_700_000_000)])  # 2023-11: made by ingest
    rc = headend_main(["db", "partitions", "--json", "--db", db_target])
    out, err = capsys.readouterr()
    if engine == "sqlite":
        assert rc == 1 and "no partitions" in err
        return
    parts = {(p["table"], p["month"]): p["rows"] for p in json.loads(out)}
    assert parts[("readings", "2023-11")] == 1
    assert sum(1 for t, _ in parts if t == "load_profile") >= 4  # this month and 3 ahead


@pytest.mark.parametrize("engine", ["postgresql"])  # SQLite has no partitions
def test_a_partition_made_inside_a_transaction_is_that_transactions(db_target, engine):
    """VEE's apply writes a meter's load profile inside its own transaction: the month's partition
    made there commits or rolls back with it (it used to commit the caller's transaction)."""
    with Storage(db_target) as s:
        with pytest.raises(RuntimeError, match="rolled back"), s.db.atomic():
            s.bump({"before": 1})
            assert partitions.ensure(s.conn, "load_profile", [(2023, 5)]) == ["load_profile_p202305"]
            assert s.conn.in_transaction
            raise RuntimeError("rolled back")
        assert "before" not in s.counters()
        assert "load_profile_p202305" not in partitions.existing(s.conn, "load_profile")
        with s.db.atomic():
            partitions.ensure(s.conn, "load_profile", [(2023, 5)])
        assert "load_profile_p202305" in partitions.existing(s.conn, "load_profile")


def test_backup_and_restore_of_a_postgresql_database_name_pg_dump(tmp_path, capsys):
    url = "postgresql://postgres@127.0.0.1:5432/any"  # refused before any connection
    assert headend_main(["backup", "--db", url, "--out", str(tmp_path / "b.db")]) == 1
    err = capsys.readouterr().err
    assert "headend backup copies a SQLite database file" in err and "pg_dump / pg_restore" in err
    assert "not yet" not in err
    assert headend_main(["restore", "--db", url, "--from", str(tmp_path / "b.db")]) == 1
    assert "headend restore copies a SQLite database file" in capsys.readouterr().err
    assert not (tmp_path / "b.db").exists()
