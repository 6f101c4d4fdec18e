"""Issue 17 item 4: `bill run` refuses a cycle that has not ended (unless `--interim`), and
`bill void` voids a bill (kept, audited) so the next run bills the account again."""

import json
import sqlite3

import pytest

from headend import cli
from tests.headend.billrun_support import MAR, NOW, TOU, add_account, hourly, new_store, tou_rates

H = 3600
TOU_CST = TOU.replace('currency = "CNY"\n', 'currency = "CNY"\nutc_offset = 480\n')  # UTC+08:00


def run(capsys, db, *argv):
    code = cli.main(["--db", db, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def fleet(db, tariff=TOU):
    with new_store(db) as s:
        add_account(s, "A1", tariff=tariff, meter="m1")
        hourly(s, "m1", tou_rates)
    return db


def test_a_cycle_that_has_not_ended_is_refused_naming_when_it_ends(db_target, capsys):
    db = fleet(db_target)
    code, out, err = run(capsys, db, "bill", "run", "--cycle", "2024-03", "--now", str(NOW))
    assert code == 1 and out == ""
    assert "cycle 2024-03 has not ended" in err and "2024-04-01T00:00:00Z" in err and "--interim" in err
    code, _, err = run(capsys, db, "bill", "run", "--cycle", "2027-01", "--now", str(NOW))
    assert code == 1 and "cycle 2027-01 has not ended" in err and "2027-02-01T00:00:00Z" in err
    with new_store(db) as s:
        assert s.bills("2024-03") == [] and s.running_run("2024-03") is None  # nothing started


def test_the_cycle_ends_at_midnight_of_the_tariffs_local_time(db_target, capsys):
    db = fleet(db_target, TOU_CST)
    # 2024-02-29 23:00 at UTC+08:00: February has an hour to go there
    code, _, err = run(capsys, db, "bill", "run", "--cycle", "2024-02", "--now", str(MAR - 9 * H))
    assert code == 1 and "2024-02-29T16:00:00Z" in err and "1 h from now" in err
    # 2024-03-01 04:00 at UTC+08:00 (still February in UTC): ended there, billed
    code, out, _ = run(capsys, db, "bill", "run", "--cycle", "2024-02", "--now", str(MAR - 4 * H), "--json")
    assert code == 0 and json.loads(out)["cycle"] == "2024-02"


def test_an_interim_run_is_allowed_when_asked_for(db_target, capsys):
    db = fleet(db_target)
    argv = ("bill", "run", "--cycle", "2024-03", "--interim", "--now", str(NOW), "--json")
    code, out, _ = run(capsys, db, *argv)
    assert code == 0
    summary = json.loads(out)
    assert summary["cycle"] == "2024-03" and summary["held"] + summary["issued"] + summary["review"] == 1


def test_void_keeps_the_bill_audited_and_the_next_run_bills_again(db_target, tmp_path, capsys):
    db = fleet(db_target)
    policy = tmp_path / "policy.toml"
    policy.write_text("review_sample_pct = 0\n")
    base = ("bill", "run", "--cycle", "2024-02", "--policy", str(policy), "--now", str(NOW), "--json")
    code, out, _ = run(capsys, db, *base)
    assert code == 0 and json.loads(out)["issued"] == 1
    with new_store(db) as s:
        first = s.bill("A1", "2024-02")
        assert [o["state"] for o in s.outbox()] == ["pending"]

    argv = ("bill", "void", "A1", "--cycle", "2024-02", "--reason", "wrong tariff", "--user", "clerk")
    code, out, err = run(capsys, db, *argv)
    assert code == 0, err
    voided = json.loads(out)
    assert voided["state"] == "void" and voided["account_id"] == "A1"
    with new_store(db) as s:
        [audit] = [a for a in s.bill_audit(first["id"]) if a["action"] == "void"]
        assert (audit["old_state"], audit["new_state"], audit["user"], audit["reason"]) == (
            "issued", "void", "clerk", "wrong tariff")  # fmt: skip
        assert audit["at"] > 0
        # the voided bill's notice is never sent
        assert [(o["state"], o["last_error"]) for o in s.outbox()] == [
            ("failed", "bill voided: wrong tariff")
        ]
        assert s.bills("2024-02") == [] and [b["id"] for b in s.bills("2024-02", "void")] == [first["id"]]
    code, out, _ = run(capsys, db, "bill", "list", "--cycle", "2024-02", "--json")
    assert json.loads(out) == []
    code, out, _ = run(capsys, db, "bill", "list", "--cycle", "2024-02", "--state", "void", "--json")
    assert [b["state"] for b in json.loads(out)] == ["void"]

    # billed again: a new bill, the void one kept
    code, out, _ = run(capsys, db, *base)
    assert code == 0 and json.loads(out)["issued"] == 1
    with new_store(db) as s:
        again = s.bill("A1", "2024-02")
        assert again["id"] != first["id"] and again["state"] == "issued" and again["total"] == first["total"]
        assert s.bill_by_id(first["id"])["state"] == "void"
        assert [b["id"] for b in s.bills("2024-02")] == [again["id"]]
        # still never two live bills for one account and cycle
        with pytest.raises(sqlite3.IntegrityError):
            s.conn.execute(
                "INSERT INTO bills (account_id, cycle, run_id, state, reasons, lines, total, created_at)"
                " VALUES ('A1', '2024-02', 1, 'held', '[]', '[]', '0', 0)"
            )
    # a third run leaves the live bill alone
    code, out, err = run(capsys, db, *base)
    assert code == 0 and json.loads(out)["skipped"] == 1, err


def test_voiding_an_unknown_or_void_bill_names_it(db_target, capsys):
    db = fleet(db_target)
    code, _, err = run(capsys, db, "bill", "void", "A-NOPE", "--cycle", "2024-02", "--reason", "x")
    assert code == 1 and "'A-NOPE'" in err and "2024-02" in err and "no such account" in err
    code, _, err = run(capsys, db, "bill", "void", "A1", "--cycle", "2024-02", "--reason", "x")
    assert code == 1 and "no bill for account 'A1' in cycle 2024-02" in err
    run(capsys, db, "bill", "run", "--cycle", "2024-02", "--now", str(NOW))
    code, _, err = run(capsys, db, "bill", "void", "A1", "--cycle", "2024-02", "--reason", " ")
    assert code == 1 and "reason is required" in err
    assert run(capsys, db, "bill", "void", "A1", "--cycle", "2024-02", "--reason", "dup")[0] == 0
    code, _, err = run(capsys, db, "bill", "void", "A1", "--cycle", "2024-02", "--reason", "again")
    assert code == 1 and "already void" in err


def test_an_older_database_keeps_its_bills_and_gets_the_live_bill_index(tmp_path):
    from sqlite_utils import Database

    from headend.db.migrations import migrations
    from headend.db.storage import Storage

    db = str(tmp_path / "old.db")
    conn = sqlite3.connect(db)
    migrations.apply(Database(conn), stop_before="m010_bill_void")
    conn.execute(
        "INSERT INTO bills (account_id, cycle, run_id, state, reasons, lines, total, created_at)"
        " VALUES ('A1', '2024-02', 1, 'issued', '[]', '[]', '9.00', 0)"
    )
    conn.commit()
    conn.close()
    with Storage(db) as s:
        assert s.bill("A1", "2024-02")["total"] == "9.00"
        indexes = {
            r[0]: r[1] for r in s.conn.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'bills'")
        }
        assert "idx_bills_account_id_cycle" not in indexes
        assert "WHERE state != 'void'" in indexes["idx_bills_live_account_cycle"]
