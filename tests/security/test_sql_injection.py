"""SQL injection through every text field a user or a meter can reach: the `headend` command
line (in-process, as a shell would call it) and ingest (signed frames, topics, payment
callbacks).

Each field gets strings built to break a query glued together by hand (quotes, comment
markers, statement separators, a DROP TABLE). Every one must be either refused with an
``error: ...`` naming the field, or stored and shown back verbatim; afterwards the schema
(sqlite_master) is exactly what it was, the database passes integrity and foreign-key
checks, and no row was lost.
"""

from __future__ import annotations

import io
import json
import sqlite3
import unicodedata

import pytest

from headend.cli import main
from headend.db.storage import Storage
from headend.errors import PrepaidError
from headend.ingest import verify as ingest
from headend.ingest.store import IngestBatch
from headend.prepaid.payments import BadNotification, check_notification
from headend.prepaid.service import credit
from protocol import messages as M
from protocol import topics
from tests.headend import billrun_support as billrun
from tests.headend.alerts_support import NOW as ALERTS_NOW
from tests.headend.alerts_support import add_event, hourly
from tests.headend.prepaid_support import TARIFF, notification

INJECTIONS = [
    "x'); DROP TABLE meters;--",
    "' OR '1'='1' --",
    '"; DELETE FROM accounts; --',
    "Robert'); DROP TABLE readings;--\nnext line",
    "%s %d {0} \\' `$(id)` ; ATTACH DATABASE '/tmp/x.db' AS x;--",
    "☃ 𝄞 \u202e' /* */ UNION SELECT key FROM meters --",
]
ALL = " | ".join(INJECTIONS[:4])  # for fields that take one value per run (notes, findings)
KEY = bytes(range(32))
PAY_SECRET = b"merchant-secret-0123456789"


def signable(text: str) -> bool:
    """Text a payment callback may carry: no '&', '=' or control character (see payments.py)."""
    return not any(c in "&=" or unicodedata.category(c) == "Cc" for c in text)


def cli(capsys, db, *argv, stdin=None, monkeypatch=None):
    capsys.readouterr()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(["--db", db, *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def schema(db: str) -> list:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def assert_intact(db: str, before: list) -> None:
    assert schema(db) == before, "the schema changed"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "h.db")
    with Storage(path) as s:
        s.add_meter("m0", KEY.hex(), "$7$x", now=0)  # theft suspect: an alert and a work order
        hourly(s, "m0")
        add_event(s, "m0", 5000, ALERTS_NOW - 3600, 17)
        billrun.add_account(s, "bill'); DROP TABLE bills;--", key=True, meter="mb")  # a bill in review
        billrun.hourly(s, "mb", billrun.tou_rates)
    return path


def test_every_cli_text_field_is_stored_verbatim_or_refused(db, tmp_path, capsys, monkeypatch):
    before = schema(db)
    for i, p in enumerate(INJECTIONS):
        mid = "m%d" % (i + 1)
        rc, _, err = cli(capsys, db, "meter", "add", p)
        assert rc == 1 and "meter id" in err and "invalid" in err
        rc, out, err = cli(capsys, db, "meter", "add", mid, "--account", p)  # no such account yet
        assert rc == 1 and out == "" and "no account %r" % p in err
        rc, out, _ = cli(capsys, db, "meter", "add", mid)
        assert rc == 0 and json.loads(out)["meter_id"] == mid
        tariff = tmp_path / ("t%d.json" % i)
        tariff.write_text(
            json.dumps({"format": "open-ami-tariff", "name": p, "periods": ["all"], "energy": {"all": "0.5"}})
        )
        rc, out, err = cli(
            capsys,
            db,
            "account",
            "add",
            p,
            "--prepaid",
            "--zone",
            p,
            "--name",
            p,
            "--address",
            p,
            "--email",
            p,
            "--webhook",
            p,
            "--tariff",
            str(tariff),
            "--meter",
            mid,
        )
        assert rc == 0, err
        acc = json.loads(out)
        assert (
            acc["account_id"],
            acc["zone"],
            acc["name"],
            acc["address"],
            acc["email"],
            acc["webhook"],
        ) == (p,) * 6
        rc, out, err = cli(capsys, db, "meter", "add", mid + "b", "--account", p)  # the account exists now
        assert rc == 0 and json.loads(out)["meter_id"] == mid + "b", err
        rc, out, _ = cli(capsys, db, "meter", "list", "--json")
        assert {m["meter_id"]: m["account"] for m in json.loads(out)}[mid + "b"] == p
        for argv in (("readings", p), ("commands", "list", p), ("command", "read-now", p)):
            rc, out, err = cli(capsys, db, *argv)
            assert rc == 1 and out == "" and "error:" in err, argv
        rc, out, _ = cli(capsys, db, "alerts", "list", "--meter", p, "--json")
        assert rc == 0 and json.loads(out) == []
        rc, out, err = cli(capsys, db, "topup", mid, "5", "--payment-id", p, "--json", "--now", "1e9")
        assert rc == 0 and json.loads(out)["payment_id"] == p, err
        rc, out, err = cli(capsys, db, "prepaid", "adjust", p, "-1.25", "--reason", p, "--user", p)
        assert rc == 0, err
        rc, out, _ = cli(capsys, db, "prepaid", "ledger", p, "--json")
        ledger = json.loads(out)
        assert [(e["kind"], e["amount"]) for e in ledger["entries"]] == [
            ("topup", 5000),
            ("adjustment", -1250),
        ]
        assert ledger["entries"][1]["ref"] == p and ledger["entries"][1]["user"] == p
        rc, out, err = cli(
            capsys,
            db,
            "web",
            "user",
            "add",
            p,
            "--role",
            "viewer",
            "--password-stdin",
            stdin="a long enough password\n",
            monkeypatch=monkeypatch,
        )
        assert rc == 0 or ("error:" in err and "name" in err), err

    # one alert, one work order, one manual reading, one bill: the combined strings
    rc, out, _ = cli(capsys, db, "alerts", "run", "--now", str(ALERTS_NOW), "--json")
    assert rc == 0 and json.loads(out)["work_orders"] == 1
    with Storage(db) as s:
        [wo] = s.work_orders()
        alert = s.alert(wo["alert_id"])
    rc, _, err = cli(capsys, db, "alerts", "ack", str(alert["id"]), "--by", ALL, "--note", ALL)
    assert rc == 0, err
    rc, _, err = cli(
        capsys,
        db,
        "reading",
        "enter",
        "m0",
        "--ts",
        str(ALERTS_NOW - 600),
        "--imp",
        "999999",
        "--by",
        ALL,
        "--note",
        ALL,
        "--work-order",
        str(wo["id"]),
    )
    assert rc == 0, err
    rc, _, err = cli(capsys, db, "workorder", "close", str(wo["id"]), "--by", ALL, "--findings", ALL)
    assert rc == 0, err
    bill_acc = "bill'); DROP TABLE bills;--"
    policy = tmp_path / "policy.toml"
    policy.write_text("[billrun]\nreview_sample_pct = 0\n")
    rc, out, err = cli(
        capsys,
        db,
        "bill",
        "run",
        "--cycle",
        "2024-02",
        "--now",
        str(billrun.NOW),
        "--policy",
        str(policy),
        "--json",
    )
    assert rc == 0, err
    rc, out, err = cli(
        capsys,
        db,
        "bill",
        "correct",
        bill_acc,
        "--cycle",
        "2024-02",
        "--amount",
        "-1.00",
        "--reason",
        ALL,
        "--user",
        ALL,
    )
    assert rc == 0, err
    rc, out, err = cli(
        capsys, db, "bill", "approve", bill_acc, "--cycle", "2024-02", "--reason", ALL, "--user", ALL
    )
    assert rc == 0 and json.loads(out)["state"] == "approved", err
    rc, out, err = cli(capsys, db, "bill", "show", "x' OR '1'='1", "--cycle", "2024-02")
    assert rc == 1 and "error:" in err

    assert_intact(db, before)
    with Storage(db) as s:
        assert sorted(m["meter_id"] for m in s.meters()) == sorted(
            ["m0", "mb", *("m%d" % (i + 1) for i in range(len(INJECTIONS)))]
            + ["m%db" % (i + 1) for i in range(len(INJECTIONS))]
        )
        assert {
            m["account"] for m in s.meters() if m["meter_id"].endswith("b") and m["meter_id"] != "mb"
        } == set(INJECTIONS)
        assert s.meter_account_ids()["m1"] == INJECTIONS[0]  # linked by `account add --meter`
        assert {a["account_id"] for a in s.accounts()} == {*INJECTIONS, bill_acc}
        assert {t["payment_id"] for t in s.topups()} == set(INJECTIONS)
        assert s.work_order(wo["id"])["findings"] == ALL and s.work_order(wo["id"])["closed_by"] == ALL
        audit = s.alert_audit(alert["id"])
        assert (ALL, ALL) in [(a["user"], a["note"]) for a in audit]
        [manual] = s.manual_readings("m0")
        assert (manual["user"], manual["note"]) == (ALL, ALL)
        assert len(s.readings("m0")) > 24 and s.bill(bill_acc, "2024-02")["state"] == "approved"


def test_meter_supplied_text_and_payment_fields_are_stored_verbatim(db, capsys):
    before = schema(db)
    with Storage(db) as s:
        s.add_tariff("t-p", "t", TARIFF)
        batch = IngestBatch()
        for i, p in enumerate(INJECTIONS[:5]):
            text = (p + "\x00nul")[:64]
            status = M.seal(KEY, "m0", M.status(10 + i, 900, text, text, text, 4, 1, 1))
            ingest.add(batch, topics.up("m0", "status"), status, 1.0, {"m0": KEY})
            event = M.seal(KEY, "m0", M.event(20 + i, 900, 3, {0: p, 1: p.encode()}))
            ingest.add(batch, topics.up("m0", "event"), event, 2.0, {"m0": KEY})
            ingest.add(batch, "ami/v1/%s/up/reading" % p, b"\x00", 3.0, {"m0": KEY})
        s.commit_batch(batch)
        m0 = s.meter("m0")
        assert (m0["fw"], m0["board"], m0["metering"]) == ((INJECTIONS[4] + "\x00nul")[:64],) * 3
        details = [e["detail"] for e in s.events("m0") if 20 <= e["seq"] < 30]
        assert details == [{"0": p, "1": "h'%s'" % p.encode().hex()} for p in INJECTIONS[:5]]
        topics_seen = [q["topic"] for q in s.quarantined("topic")]
        assert topics_seen == ["ami/v1/%s/up/reading" % p for p in INJECTIONS[:5]]

        # payment callbacks: an unknown account named by an injection, then a real one. The
        # callback refuses a name or value holding '&', '=' or a control character (400 naming
        # the field: it could re-split the signed string) and a paid_at that is no RFC 3339
        # date-time; those injections reach storage directly (as `headend topup` would).
        for p in INJECTIONS:
            body = notification(account_id=p, payment_id=p)
            if not signable(p):
                with pytest.raises(BadNotification) as e:
                    check_notification(body, PAY_SECRET)
                assert e.value.field in ("account_id", "payment_id") and e.value.field in str(e.value)
                continue
            n = check_notification(body, PAY_SECRET)
            with pytest.raises(PrepaidError, match="account"):
                credit(s, n.payment_id, n.amount, 1e9, account_id=n.account_id, source="online", body=n.body)
        s.add_account(
            {
                "account_id": INJECTIONS[0],
                "zone": "z",
                "zone_kind": "regular",
                "billing": "prepaid",
                "tariff_id": "t-p",
            },
            "m0",
            0,
        )
        for p in INJECTIONS:
            with pytest.raises(BadNotification) as e:
                check_notification(notification(account_id=INJECTIONS[0], paid_at=p), PAY_SECRET)
            assert e.value.field == "paid_at" and "paid_at" in str(e.value)
            if signable(p):
                n = check_notification(notification(account_id=INJECTIONS[0], payment_id=p), PAY_SECRET)
                assert (n.payment_id, n.account_id) == (p, INJECTIONS[0])
            credit(s, p, 30000, 1e9, account_id=INJECTIONS[0], source="online", paid_at=p, body=p)
        got = [(t["payment_id"], t["account_id"], t["paid_at"]) for t in s.topups()]
        assert sorted(got) == sorted((p, INJECTIONS[0], p) for p in INJECTIONS)
        assert s.ledger_balance(INJECTIONS[0]) == 30000 * len(INJECTIONS)
    assert_intact(db, before)
