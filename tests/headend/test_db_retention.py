"""`headend db retention --months N`: months older than N are retired only once every meter's data
in them is billed (else refused naming the meters and months, nothing changed); on PostgreSQL their
partitions are detached (or dropped) and their idempotency keys trimmed, the keys of kept readings
kept; on SQLite their rows are deleted in one transaction. Both engines."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from headend import cli
from headend.billing.policy import Policy
from headend.billing.run import run_bills
from headend.db import partitions
from tests.headend.billrun_support import FEB, MAR, NOW, add_account, hourly, new_store, reads, tou_rates
from tests.headend.test_storage import row

MAY = 1714521600  # 2024-05-01 00:00 UTC
JUNE_15 = 1718409600  # 2024-06-15 00:00 UTC: with --months 2, April on is kept
NO_REVIEW = Policy(review_sample_pct=Decimal(0))


def retention(capsys, db, *argv):
    code = cli.main(["--db", db, "db", "retention", "--now", str(JUNE_15), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def counts(s) -> tuple[int, int]:
    return (
        s.conn.execute("SELECT count(*) FROM readings").fetchone()[0],
        s.conn.execute("SELECT count(*) FROM load_profile").fetchone()[0],
    )


@pytest.fixture
def db(db_target):
    """A1 billed from boundary reads (Feb 1, Mar 1), A2 from February's hourly profile, a kept
    reading of A1's meter in May, and m-x: boundary reads of a meter on no account."""
    with new_store(db_target) as s:
        add_account(s, "A1")
        reads(s, "m-A1", [(FEB, [1000, 2000]), (MAR, [105400, 71600])])
        s.insert_readings_batch([row(10, ts=MAY, meter="m-A1")])
        add_account(s, "A2")
        hourly(s, "m-A2", tou_rates)
        s.add_meter("m-x", "00" * 32, "$7$x", now=0)
        reads(s, "m-x", [(FEB, [1000, 2000]), (MAR, [1400, 2400])])
    return db_target


def test_unbilled_months_are_refused_naming_the_meters_and_nothing_changes(db, capsys):
    with new_store(db) as s:
        before = counts(s)
    code, out, err = retention(capsys, db, "--months", "2")
    assert code == 1 and out == ""
    # nothing billed yet: every meter with February data is named, with the month
    for meter in ("m-A1", "m-A2", "m-x"):
        assert meter + " 2024-02" in err
    assert "3 meter(s)" in err and "nothing was retired" in err and "--months" in err
    with new_store(db) as s:
        run_bills(s, "2024-02", NOW, NO_REVIEW)
        assert {b["account_id"]: b["state"] for b in s.bills("2024-02")} == {"A1": "issued", "A2": "issued"}
    code, _, err = retention(capsys, db, "--months", "2", "--dry-run")
    assert code == 1 and "1 meter(s)" in err and "m-x 2024-02 (readings 1 rows" in err and "m-A1" not in err
    with new_store(db) as s:
        assert counts(s) == before


def test_billed_months_are_retired_and_kept_readings_stay_exactly_once(db, engine, capsys):
    with new_store(db) as s:
        run_bills(s, "2024-02", NOW, NO_REVIEW)
        add_account(s, "X", meter="m-x")  # m-x's February billed too
        assert run_bills(s, "2024-02", NOW, NO_REVIEW)["counts"]["issued"] == 1
        before = counts(s)
    assert before == (5, 29 * 24 * 2)
    code, out, _ = retention(capsys, db, "--months", "2", "--dry-run", "--json")
    assert code == 0
    dry = json.loads(out)
    verb = "detach" if engine == "postgresql" else "delete"
    assert dry["kept_from"] == "2024-04-01T00:00:00Z" and dry["dry_run"] is True
    assert dry["retired"] == [
        {"month": "2024-02", "readings": 2, "load_profile": 29 * 24 * 2, "action": "would " + verb},
        {"month": "2024-03", "readings": 2, "load_profile": 0, "action": "would " + verb},
    ]
    with new_store(db) as s:
        assert counts(s) == before  # a dry run changes nothing

    code, out, _ = retention(capsys, db, "--months", "2")
    assert code == 0 and "2024-02: %s (2 readings, 1392 load-profile rows)" % verb in out
    with new_store(db) as s:
        assert counts(s) == (1, 0)  # the May reading kept
        assert [r["seq"] for r in s.readings("m-A1")] == [10]
        # exactly once still holds for what is kept: the May reading sent again is a duplicate
        assert s.insert_readings_batch([row(10, ts=MAY, meter="m-A1")]) == (0, 1)
        assert counts(s) == (1, 0)
        assert s.conn.execute("SELECT value FROM settings WHERE name = 'retention.kept_from'").fetchone() == (
            "1711929600",
        )
        if engine == "postgresql":
            keys = s.conn.execute("SELECT meter_id, seq FROM reading_keys ORDER BY 1, 2").fetchall()
            assert keys == [("m-A1", 10)]  # the retired months' keys trimmed
            attached = {p["partition"] for p in partitions.listing(s.conn)}
            assert not attached & {"readings_p202402", "readings_p202403", "load_profile_p202402"}
            assert "readings_p202405" in attached
            # detached, not dropped: still there as a table of its own, its name free again
            assert s.conn.execute('SELECT count(*) FROM "readings_p202402_retired"').fetchone()[0] == 2
            assert s.conn.execute("SELECT to_regclass('readings_p202402')").fetchone() == (None,)
    # again: nothing older left
    code, out, _ = retention(capsys, db, "--months", "2", "--json")
    assert code == 0 and json.loads(out)["retired"] == []


def test_drop_and_bad_arguments(db, engine, capsys):
    code, _, err = retention(capsys, db, "--months", "0")
    assert code == 1 and "--months must be a whole number of months, at least 1" in err
    if engine == "sqlite":
        code, _, err = retention(capsys, db, "--months", "2", "--drop")
        assert code == 1 and "--drop applies to PostgreSQL's partitions" in err
        return
    with new_store(db) as s:
        run_bills(s, "2024-02", NOW, NO_REVIEW)
        add_account(s, "X", meter="m-x")
        run_bills(s, "2024-02", NOW, NO_REVIEW)
    code, out, _ = retention(capsys, db, "--months", "2", "--drop", "--json")
    assert code == 0 and [r["action"] for r in json.loads(out)["retired"]] == ["drop", "drop"]
    with new_store(db) as s:
        assert s.conn.execute("SELECT to_regclass('readings_p202402')").fetchone() == (None,)
        assert s.conn.execute("SELECT to_regclass('readings_p202402_retired')").fetchone() == (None,)
        assert counts(s) == (1, 0)
