"""Each strong constraint holds a bill with its reason; review selection, approve and correct."""

from decimal import Decimal

import pytest

from headend.billing.checks import sample_threshold, sampled
from headend.billing.policy import Policy, load_policy
from headend.billing.review import approve, correct
from headend.billing.run import run_bills
from headend.billing.store_sql import BILL_COLUMNS
from headend.errors import PolicyError, ReviewError
from tests.headend.billrun_support import FEB, JAN, MAR, NOW, add_account, hourly, new_store, reads, tou_rates

NO_REVIEW = Policy(review_sample_pct=Decimal(0))


@pytest.fixture
def store(db_target):  # both engines (tests/conftest.py)
    with new_store(db_target) as s:
        yield s


def held(store, account_id):
    b = store.bill(account_id, "2024-02")
    assert b["state"] == "held", b
    return b["reasons"]


def test_negative_consumption(store):
    add_account(store, "n")
    hourly(store, "m-n", lambda ts: [-5, 0] if ts == FEB else tou_rates(ts))
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert held(store, "n") == ["negative consumption (-5 Wh in one interval or rate)"]


def test_negative_register_delta(store):
    add_account(store, "nr")
    reads(store, "m-nr", [(FEB, [5000, 0]), (MAR, [4000, 10])])
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert held(store, "nr") == ["negative consumption (-1000 Wh in one interval or rate)"]


def test_rate_registers_must_add_up_to_the_profile(store):
    add_account(store, "ru")
    hourly(store, "m-ru", tou_rates)
    reads(store, "m-ru", [(FEB, [0, 0]), (MAR, [104400 + 10, 69600])])
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert held(store, "ru") == [
        "rate T1: load profile 104400 Wh but boundary registers 104410 Wh",
        "rate registers add up to 174010 Wh, the load-profile total is 174000 Wh",
    ]
    add_account(store, "ok")
    hourly(store, "m-ok", tou_rates)
    reads(store, "m-ok", [(FEB, [0, 0]), (MAR, [104400, 69600 + 1])])  # within the 1 Wh tolerance
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert store.bill("ok", "2024-02")["state"] == "issued"


def test_boundary_read_estimated_without_profile(store):
    add_account(store, "be")
    reads(store, "m-be", [(FEB, [0, 0]), (MAR, [104400, 69600])], state="estimated")
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert held(store, "be") == [
        "boundary read of meter m-be at %d is estimated" % FEB,
        "boundary read of meter m-be at %d is estimated" % MAR,
    ]


def test_unresolved_vee_failure_and_unvalidated_readings(store):
    add_account(store, "vf")
    hourly(store, "m-vf", tou_rates)
    reads(store, "m-vf", [(FEB + 900, [1, 1]), (FEB + 1800, [2, 2])], state="failed")
    add_account(store, "vp")
    hourly(store, "m-vp", tou_rates)
    reads(store, "m-vp", [(FEB + 900, [1, 1])], state="pending")
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert held(store, "vf") == ["unresolved VEE failure: 2 failed readings in the cycle"]
    assert held(store, "vp") == ["1 readings in the cycle not validated yet (run VEE)"]


def test_incomplete_data_and_no_meter(store):
    add_account(store, "gap")
    hourly(store, "m-gap", tou_rates, end=MAR - 7200)
    store.add_account(
        {
            "account_id": "nom",
            "zone": "Z",
            "zone_kind": "regular",
            "billing": "postpaid",
            "tariff_id": store.account("gap")["tariff_id"],
        }
    )
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert held(store, "gap") == ["incomplete data: 694 of 696 intervals of 3600 s"]
    assert held(store, "nom") == ["no meter linked to the account"]


def test_fluctuation_against_history(store):
    add_account(store, "f")
    hourly(store, "m-f", tou_rates, start=JAN, end=FEB)  # January: 31 x (3.6 + 2.4) = 186 kWh
    hourly(store, "m-f", lambda ts: tou_rates(ts, 900, 600))  # February: 522 kWh, +181 %
    assert run_bills(store, "2024-01", NOW, NO_REVIEW)["counts"]["issued"] == 1
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert held(store, "f") == [
        "consumption 522.000 kWh is +181 % vs the average 186.000 kWh of 1 previous cycles"
        " (policy: within 50 % or 50 kWh)"
    ]
    # a looser policy on a re-run releases it; the held bill is replaced in place, audited
    run_bills(store, "2024-02", NOW, Policy(review_sample_pct=Decimal(0), fluctuation_pct=200))
    b = store.bill("f", "2024-02")
    assert b["state"] == "issued"
    assert [(a["action"], a["old_state"], a["new_state"]) for a in store.bill_audit(b["id"])] == [
        ("recompute", "held", "issued")
    ]


def test_key_zone_always_reviewed_and_regular_sample_reproducible(tmp_path):
    ids = ["acc%03d" % i for i in range(60)]

    def run(seed, name):
        with _store(tmp_path, name) as s:
            add_account(s, "key1", zone="K", key=True)
            hourly(s, "m-key1", tou_rates)
            for a in ids:
                add_account(s, a)
                hourly(s, "m-" + a, tou_rates, interval=86400)
            run_bills(
                s, "2024-02", NOW, Policy(review_sample_pct=Decimal(25), review_seed=seed, batch_size=7)
            )
            assert s.bill("key1", "2024-02")["reasons"] == ["key zone"]
            return {b["account_id"] for b in s.bills("2024-02", "review")} - {"key1"}

    a, b, c = run(7, "a"), run(7, "b"), run(8, "c")
    assert a == b != c
    assert a == {x for x in ids if sampled(7, "2024-02", x, sample_threshold(Decimal(25)))}
    assert 5 <= len(a) <= 25


def _store(tmp_path, name):
    (tmp_path / name).mkdir()
    return new_store(tmp_path / name)


def test_approve_and_correct_are_audited(store):
    add_account(store, "k", key=True, email="k@example.org")
    hourly(store, "m-k", tou_rates)
    run_bills(store, "2024-02", NOW, NO_REVIEW)
    assert store.bill("k", "2024-02")["state"] == "review" and store.outbox() == []
    with pytest.raises(ReviewError, match="reason is required"):
        correct(store, "k", "2024-02", Decimal("-5"), " ", "ops", NOW)
    with pytest.raises(ReviewError, match="more decimals"):
        correct(store, "k", "2024-02", Decimal("-5.001"), "meter test", "ops", NOW)
    b = correct(store, "k", "2024-02", Decimal("-5.00"), "goodwill credit", "ops", NOW)
    assert b["total"] == "73.08" and b["lines"][-1] == {
        "item": "adjustment",
        "amount": "-5.00",
        "reason": "goodwill credit",
    }
    assert b["state"] == "review"
    b = approve(store, "k", "2024-02", "checked against the meter", "ops", NOW + 1)
    assert b["state"] == "approved" and b["issued_at"] == NOW + 1
    log = store.bill_audit(b["id"])
    assert [
        (x["action"], x["old_state"], x["new_state"], x["amount"], x["reason"], x["user"]) for x in log
    ] == [
        ("correct", "review", "review", "-5.00", "goodwill credit", "ops"),
        ("approve", "review", "approved", None, "checked against the meter", "ops"),
    ]
    [n] = store.outbox()
    assert (n["channel"], n["target"], n["bill_id"]) == ("email", "k@example.org", b["id"])
    with pytest.raises(ReviewError, match="is approved"):
        approve(store, "k", "2024-02", "again", "ops", NOW)


def test_policy_validation_names_the_field(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text("[billrun]\nmax_estimated_days = 40\n")
    with pytest.raises(PolicyError, match="max_estimated_days must be 0..31"):
        load_policy(p)
    with pytest.raises(PolicyError, match="fluctuaton: unknown policy field"):
        load_policy({"fluctuaton": 3})
    with pytest.raises(PolicyError, match="outbox.smtp_port must be 1..65535"):
        load_policy({"outbox": {"smtp_port": 0}})
    p.write_text('[billrun]\nreview_sample_pct = "12.5"\n[outbox]\nsmtp_host = "mail"\n')
    pol = load_policy(p)
    assert pol.review_sample_pct == Decimal("12.5") and pol.outbox.smtp_host == "mail"


def test_history_is_the_last_released_bills_newest_first(store):
    # eight earlier cycles in every state: only issued and approved ones count, the newest n
    add_account(store, "h")
    add_account(store, "other")
    states = ["issued", "approved", "held", "void", "review", "issued", "issued", "approved"]
    for k, state in enumerate(states):
        bill = dict.fromkeys(BILL_COLUMNS)
        bill.update(account_id="h", cycle="2023-%02d" % (k + 1), run_id=1, state=state, reasons="[]")
        bill.update(lines="[]")
        bill.update(energy_kwh="%d.000" % (k + 1), total="0", rule="r", created_at=NOW, updated_at=NOW)
        store.commit_bill_batch(1, bill["cycle"], [bill], [], "h", {}, NOW)
    later = {**bill, "cycle": "2024-03", "energy_kwh": "99.000", "state": "issued"}
    store.commit_bill_batch(1, "2024-03", [later], [], "h", {}, NOW)  # after the cycle: not history
    got = store.bill_history(["h", "other"], "2024-02", 3)
    assert got == {"h": ["8.000", "7.000", "6.000"]}
    assert store.bill_history(["h"], "2023-05", 6) == {"h": ["2.000", "1.000"]}
