"""PostgreSQL: what the bill run sends in bulk arrives as it was sent. A batch's new bills go in
by COPY in text format (``headend.db.engine.copy_text_data``, ``BillingStorageMixin._store_bills``)
and a batch's account ids go to its statements as one array literal (``pg_text_array``), both
formatted by the head-end rather than adapted value by value; values holding what either format
gives a meaning (backslashes, tabs, line breaks, quotes, commas, braces, ``NULL``) must survive."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from headend.billing.policy import Policy
from headend.billing.run import run_bills
from headend.billing.store_sql import BILL_COLUMNS, PG_IN_IDS, pg_text_array
from headend.db.engine import copy_text_data
from headend.db.storage import Storage
from tests.headend.billrun_support import NOW, add_account, hourly, tou_rates

AWKWARD = [
    "plain",
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "cr\rhere",
    "\\N",
    "NULL",
    'q"uote',
    "a,b",
    "{x}",
    " pad ",
    "",
]


def test_copy_text_data_is_read_back_exactly(pg_url):
    rows = [(i, s, None if i % 3 else float(i) / 4) for i, s in enumerate(AWKWARD)]
    rows.append((99, None, -0.5))
    with Storage(pg_url) as s:
        s.conn.execute("CREATE TABLE copied (n bigint, t text, f double precision)")
        s.conn.copy_text("COPY copied (n, t, f) FROM STDIN", rows, 3)
        assert s.conn.execute("SELECT n, t, f FROM copied ORDER BY n").fetchall() == rows


def test_plain_rows_take_the_joined_text_and_awkward_ones_the_escaped():
    plain = [("a", 1, None), ("b", 2.5, "c")]
    assert copy_text_data(plain, 3) == "a\t1\t\\N\nb\t2.5\tc\n"
    for value in ("x\\y", "x\ty", "x\ny", "x\ry"):
        text = copy_text_data([("a", value, None)], 3)
        assert text.count("\t") == 2 and text.count("\n") == 1 and "\r" not in text
        assert text.split("\t")[1] == value.replace("\\", "\\\\").replace("\t", "\\t").replace(
            "\n", "\\n"
        ).replace("\r", "\\r")


def test_an_id_array_literal_selects_exactly_its_ids(pg_url):
    with Storage(pg_url) as s:
        got = s.conn.execute("SELECT CAST(? AS text[])", [pg_text_array(AWKWARD)]).fetchone()[0]
        assert got == AWKWARD
        assert s.conn.execute("SELECT CAST(? AS text[])", [pg_text_array([])]).fetchone()[0] == []
        s.conn.execute("CREATE TABLE ids (id text)")
        s.conn.executemany("INSERT INTO ids VALUES (?)", [(i,) for i in AWKWARD + ["other"]])
        sql = "SELECT id FROM ids WHERE id" + PG_IN_IDS + " ORDER BY id"
        assert [r[0] for r in s.conn.execute(sql, [pg_text_array(AWKWARD[3:6])])] == sorted(AWKWARD[3:6])


@pytest.mark.parametrize("engine", ["postgresql"])
def test_new_bills_by_copy_keep_every_column_and_a_live_bill_is_not_replaced(db_target):
    now = 1_709_337_600.5
    bill = dict.fromkeys(BILL_COLUMNS)
    bill.update(account_id="acc-1", cycle="2024-02", run_id=1, state="issued", reasons='["a\\tb\\nc"]',
                lines="[]", total="1.25", rule="r", created_at=now, updated_at=now, issued_at=now,
                kwh_by_rate='{"1":"0.5"}', energy_kwh="0.500", period_start=10, period_end=20)  # fmt: skip
    with Storage(db_target) as s:
        add_account(s, "acc-1")
        s.commit_bill_batch(1, "2024-02", [bill], [], "acc-1", {}, now)
        stored = s.conn.execute("SELECT %s FROM bills" % ", ".join(BILL_COLUMNS)).fetchall()
        assert stored == [tuple(bill[c] for c in BILL_COLUMNS)]
        # a second new bill for the account: the COPY meets the live bill and is undone; the
        # upsert keeps the issued bill (only a held one is replaced)
        s.commit_bill_batch(1, "2024-02", [dict(bill, total="9.99", state="held")], [], "acc-1", {}, now)
        assert s.bill("acc-1", "2024-02")["total"] == "1.25"
        assert s.conn.execute("SELECT count(*) FROM bills").fetchone()[0] == 1


@pytest.mark.parametrize("engine", ["postgresql"])
def test_a_shared_runs_notices_are_those_the_outbox_query_makes(db_target):
    # a shared run makes its new bills' notices itself (copy_bill_notices_pg); they must be the
    # rows queue_notifications' INSERT ... SELECT makes for the same bills, payload text included
    contacts = {"e": ("e@example.org", None), "w": (None, "https://h.example/x?a=\"1\""),
                "ew": ("ü@example.org", "https://h.example/y"), "none": (None, None)}  # fmt: skip
    with Storage(db_target) as s:
        for account_id, (email, hook) in contacts.items():
            add_account(s, account_id, email=email, webhook=hook)
            hourly(s, "m-" + account_id, tou_rates)
        add_account(s, "held")  # no data: held, no notice
        done = run_bills(s, "2024-02", NOW, Policy(review_sample_pct=Decimal(0)))
        assert done["counts"]["issued"] == 4 and done["counts"]["held"] == 1
        columns = "bill_id, channel, target, payload, state, attempts, next_attempt_at, created_at"
        made = s.conn.execute("SELECT %s FROM outbox ORDER BY bill_id, channel" % columns).fetchall()
        expected = [("email", "e@example.org"), ("webhook", contacts["w"][1]), ("email", "ü@example.org"),
                    ("webhook", "https://h.example/y"), ("console", None)]  # fmt: skip
        assert sorted((r[1], r[2]) for r in made) == sorted(expected, key=lambda ct: (ct[0], ct[1] or ""))
        with s.db.atomic():
            s.conn.execute("DELETE FROM outbox")
            s.queue_notifications("2024-02", list(contacts), NOW)
            by_query = s.conn.execute("SELECT %s FROM outbox ORDER BY bill_id, channel" % columns).fetchall()
            s.conn.execute("ROLLBACK")
        assert made == by_query
        assert {json.loads(r[3])["account_id"] for r in made} == set(contacts)


def test_cycle_reads_equal_boundary_reads_and_vee_problems(pg_url):
    """PostgreSQL reads a batch's boundary reads and its failed and pending readings in one pass
    (``cycle_reads``); what gather takes from it equals the two statements SQLite runs, over link
    windows, reads at the cycle's edges in every state, several readings at one boundary, and
    readings outside the cycle or outside a link."""
    from headend.billing.usage import _cycle_reads, _links
    from tests.headend.billrun_support import FEB, MAR, reads

    def states(store, meter, by_seq):
        for seq, state in by_seq.items():
            store.set_vee_state(meter, [seq], state)

    with Storage(pg_url) as s:
        mid = FEB + 10 * 86400
        # two meters one after the other: m-a1 until mid, m-a2 from mid
        add_account(s, "a", meter="m-a1")
        s.conn.execute("UPDATE account_meters SET to_ts = ? WHERE account_id = 'a'", (mid,))
        s.link_meter("a", "m-a2", mid)
        s.add_meter("m-a2", "00" * 32, "$7$x", now=0)
        reads(
            s,
            "m-a1",
            [(FEB, [0, 0]), (FEB + 900, [1, 1]), (FEB + 1800, [2, 2]), (mid + 900, [9, 9]), (FEB, [0, 1])],
        )
        states(s, "m-a1", {1: "valid", 2: "failed", 3: "pending", 4: "pending", 5: "estimated"})
        reads(s, "m-a2", [(mid, [3, 3]), (MAR, [5, 5]), (MAR + 900, [6, 6]), (MAR - 900, [4, 4])])
        states(s, "m-a2", {1: "failed", 2: "failed", 3: "pending", 4: "pending"})
        add_account(s, "b")  # a pending start read (a boundary read, not a problem), an end read edited
        reads(s, "m-b", [(FEB, [0]), (MAR, [7]), (FEB - 900, [0])])
        states(s, "m-b", {1: "pending", 2: "edited", 3: "failed"})
        add_account(s, "c")  # nothing at all
        ids = ["a", "b", "c"]
        want_reads: dict = {}
        for row in s.boundary_reads(ids, FEB, MAR):
            want_reads.setdefault(row[0], []).append(tuple(row))
        want_vee: dict = {}
        for account_id, state, n in s.vee_problems(ids, FEB, MAR):
            want_vee.setdefault(account_id, {})[state] = n
        # the links as the shared run has them (postpaid_between's arrays) and as read for them
        links = _links(s, s.postpaid_between("", "c"), ids)
        assert links == _links(s, s.postpaid_after("", 10), ids)
        assert [link[:2] for link in links] == [("a", "m-a1"), ("a", "m-a2"), ("b", "m-b"), ("c", "m-c")]
        got_reads, got_vee = _cycle_reads(s, ids, FEB, MAR, links)
        assert {k: [tuple(r) for r in v] for k, v in got_reads.items()} == want_reads
        assert got_vee == want_vee
        # what the fixtures meant: the failures between, the failed end read, nothing outside
        assert want_vee == {"a": {"failed": 2, "pending": 2}}
        assert [(r[1], r[2], r[4]) for r in want_reads["a"]] == [
            ("m-a1", FEB, "valid"),
            ("m-a1", FEB, "estimated"),
            ("m-a2", MAR, "failed"),
        ]
        assert [(r[2], r[4]) for r in want_reads["b"]] == [(FEB, "pending"), (MAR, "edited")]


def test_a_fresh_shared_run_reads_no_bill_states_and_a_rerun_does(pg_url, monkeypatch):
    """A shared run of a cycle no other run has billed knows its batches' accounts have no bill of
    it (a batch's bills commit with its ``done``), resumed after a crash too; a later run of the
    cycle reads them, keeps the released bills and re-prices the held ones."""
    from tests.headend.billrun_support import FEB, MAR, reads

    policy = Policy(batch_size=2, review_sample_pct=Decimal(0))
    with Storage(pg_url) as s:
        for a in ("a1", "a2", "a3"):
            add_account(s, a)
            hourly(s, "m-" + a, tou_rates)
        add_account(s, "a4")  # no data: held
        calls = []
        real = s.bill_states
        monkeypatch.setattr(s, "bill_states", lambda ids, cycle: calls.append(list(ids)) or real(ids, cycle))

        class Crash(Exception):
            pass

        def crash(run):
            raise Crash()

        with pytest.raises(Crash):
            run_bills(s, "2024-02", NOW, policy, on_batch=crash)
        assert len(s.bills("2024-02")) == 2 and calls == []
        first = run_bills(s, "2024-02", NOW, policy)  # the same run, resumed
        assert first["counts"] == {"issued": 3, "held": 1, "review": 0, "skipped": 0} and calls == []
        assert s.bill("a4", "2024-02")["state"] == "held"
        reads(s, "m-a4", [(FEB, [0, 0]), (MAR, [104400, 69600])])  # a4's registers arrive
        again = run_bills(s, "2024-02", NOW, policy)
        assert again["run_id"] != first["run_id"] and sorted(sum(calls, [])) == ["a1", "a2", "a3", "a4"]
        assert again["counts"] == {"issued": 1, "held": 0, "review": 0, "skipped": 3}
        assert [s.bill(a, "2024-02")["state"] for a in ("a1", "a2", "a3", "a4")] == ["issued"] * 4
