"""`headend vee run` and `headend vee edit` on a real SQLite file."""

import json

from headend.cli import main
from headend.db.storage import Storage
from headend.ingest.store import READING_COLUMNS

T0 = 1704067200  # 2024-01-01 00:00 UTC, a Monday


def add_readings(db, meter_id, imp_wh):
    rows = []
    for i, wh in enumerate(imp_wh):
        r = {"meter_id": meter_id, "seq": i + 1, "ts": T0 + 900 * i, "interval": 900,
             "imp": json.dumps([wh, 0, 0, 0]), "exp": json.dumps([0, 0, 0, 0]), "q": json.dumps([0, 0, 0, 0]),
             "inst": None, "balance": None, "flags": 0, "tariff": None, "received_at": T0 + 900 * i + 5,
             "raw": b"frame%d" % i}  # fmt: skip
        rows.append(tuple(r.get(c) for c in READING_COLUMNS))
    with Storage(db) as store:
        store.set_meter_rating(meter_id, imax_ma=60000, un_mv=230000, rates=4)
        store.insert_readings_batch(rows)


def run(capsys, *argv):
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_vee_run_then_edit_is_audited_and_rerun_changes_nothing(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    assert run(capsys, "--db", db, "meter", "add", "m1")[0] == 0
    # 00:00 1000, 00:15 1010, 00:30 1020, (00:45 missing), 01:00 1040 -> the 00:45 slot is
    # interpolated: 1040 - 1020 = 20 Wh over two slots, 10 Wh each
    add_readings(db, "m1", [1000, 1010, 1020])
    with Storage(db) as store:
        store.insert_readings_batch(
            [
                tuple(
                    {
                        "meter_id": "m1",
                        "seq": 5,
                        "ts": T0 + 3600,
                        "interval": 900,
                        "imp": "[1040, 0, 0, 0]",
                        "exp": "[0, 0, 0, 0]",
                        "q": "[0, 0, 0, 0]",
                        "inst": None,
                        "balance": None,
                        "flags": 0,
                        "tariff": None,
                        "received_at": T0 + 3605,
                        "raw": b"x",
                    }.get(c)  # fmt: skip
                    for c in READING_COLUMNS
                )
            ]
        )
    rc, out, _ = run(capsys, "--db", db, "vee", "run", "m1", "--json", "--now", str(T0 + 4000))
    summary = json.loads(out)["m1"]
    assert rc == 0 and summary["estimates"]["created"] >= 1
    with Storage(db) as store:
        lp = {
            (r["interval_start"] - T0, r["rate"]): (r["wh_imp"], r["source"])
            for r in store.load_profile("m1", 900)
        }
    assert lp[(2700, 1)] == (10, "estimated") and lp[(0, 1)] == (10, "real")

    rc, out, _ = run(
        capsys,
        "--db",
        db,
        "vee",
        "edit",
        "m1",
        str(T0 + 3600),
        "--imp",
        "12,0,0,0",
        "--reason",
        "site visit reading",
        "--user",
        "alice",
        "--now",
        str(T0 + 4100),
    )
    edit = json.loads(out)
    assert rc == 0 and edit["new"]["imp"] == [12, 0, 0, 0] and edit["user"] == "alice"
    with Storage(db) as store:
        audit = [a for a in store.audit("m1") if a["reason"] == "site visit reading"]
        lp = {
            (r["interval_start"] - T0, r["rate"]): (r["wh_imp"], r["source"])
            for r in store.load_profile("m1", 900)
        }
    assert len(audit) == 1 and audit[0]["user"] == "alice" and lp[(2700, 1)] == (12, "edited")

    rc, out, _ = run(capsys, "--db", db, "vee", "run", "m1", "--json", "--now", str(T0 + 4200))
    assert rc == 0 and json.loads(out)["m1"]["audit_entries"] == 0  # idempotent after the edit


def test_vee_edit_names_bad_input(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    run(capsys, "--db", db, "meter", "add", "m1")
    rc, _, err = run(capsys, "--db", db, "vee", "edit", "m1", str(T0), "--imp", "ten", "--reason", "x")
    assert rc != 0 and "--imp" in err
    rc, _, err = run(capsys, "--db", db, "vee", "edit", "nope", str(T0), "--imp", "1", "--reason", "x")
    assert rc != 0 and "nope" in err
