"""Fuzzing the payment notification check (headend.prepaid.payments.check_notification).

Seeds: signed notifications as the payment platform sends them. The fuzzer edits the body's
bytes (with or without re-signing) and its JSON tree (hostile values, added and deleted
fields) and re-signs some edits with the right secret, so the checks after the signature
(field types, lengths, amount) are reached too.

Documented errors: ``BadNotification`` (HTTP 400) and ``BadSignature`` (HTTP 401), both
``PrepaidError``. Properties: nothing else is raised; each call time-bounded; without the
secret no edit changes who is credited or how much (an accepted edited body carries the
seed's payment_id, account_id, amount and paid_at); a signed notification round-trips to
its values.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from headend.errors import BadNotification, BadSignature
from headend.prepaid.ledger import parse_amount
from headend.prepaid.payments import check_notification, sign
from tests.fuzz.support import bounded, fuzz, mutated, mutated_tree

SECRET = b"merchant-secret-0123456789"
FIELDS = {
    "payment_id": "PAY-1",
    "account_id": "P1",
    "amount": "30.00",
    "paid_at": "2024-03-01T09:00:00+08:00",
}


def signed(fields: dict, secret: bytes = SECRET) -> bytes:
    body = dict(fields)
    body["sign"] = sign(body, secret)
    return json.dumps(body).encode()


SEEDS = (signed(FIELDS), signed({**FIELDS, "amount": "0.001", "extra": "x"}), signed(FIELDS, b"other"))


def check(body: bytes, seen: set):
    try:
        n = bounded(check_notification, body, SECRET)
    except (BadNotification, BadSignature) as e:
        assert e.status in (400, 401)
        seen.add("%s:%s" % (type(e).__name__, e.field))
        return None
    seen.add("ok")
    return n


def test_edited_bodies_never_change_the_payment_without_the_secret():
    seen: set = set()

    @fuzz(500)
    @given(st.sampled_from(SEEDS).flatmap(lambda b: mutated(b, SEEDS)))
    def run(body):
        n = check(body, seen)
        if n is not None:
            assert (n.payment_id, n.account_id, n.paid_at) in (
                (FIELDS["payment_id"], FIELDS["account_id"], FIELDS["paid_at"]),
            )
            assert n.amount in (30000, 1)

    run()
    assert {"ok", "BadSignature:sign", "BadNotification:body"} <= seen, seen


def test_edited_fields_re_signed_reach_every_check():
    seen: set = set()
    doc = json.loads(SEEDS[1])
    del doc["sign"]

    @fuzz(400)
    @given(mutated_tree(doc, ("payment_id", "amount", "sign", "x")), st.booleans())
    def run(fields, resign):
        if resign and isinstance(fields, dict):
            try:
                fields["sign"] = sign(fields, SECRET)
            except (TypeError, UnicodeEncodeError):
                pass  # a value sign() cannot render: the check must refuse it anyway
        try:
            body = json.dumps(fields).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError):
            return
        n = check(body, seen)
        if n is not None:
            assert n.amount == parse_amount(fields["amount"]) and n.payment_id == fields["payment_id"]

    run()
    assert "ok" in seen and len(seen) >= 9, seen


@fuzz(300)
@given(
    st.text(min_size=1, max_size=128),
    st.text(min_size=1, max_size=128),
    st.integers(1, 10**9),
    st.text(min_size=1, max_size=40),
    st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3),
)
def test_signed_notifications_round_trip(payment_id, account_id, milli, paid_at, extra):
    try:
        for s in (payment_id, account_id, paid_at, *extra, *extra.values()):
            s.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates: no UTF-8 body can carry them
    fields = {**extra, "payment_id": payment_id, "account_id": account_id, "paid_at": paid_at}
    fields["amount"] = "%d.%03d" % divmod(milli, 1000)
    n = bounded(check_notification, signed(fields), SECRET)
    assert (n.payment_id, n.account_id, n.amount, n.paid_at) == (payment_id, account_id, milli, paid_at)
    assert n.body == "&".join(
        "%s=%s" % (k, fields[k]) for k in sorted(fields) if k != "sign" and fields[k] != ""
    )


def test_seeds_of_the_bugs_found_are_bad_notifications():
    """Each was an undocumented exception (RecursionError, UnicodeEncodeError) before."""
    for body in (
        b"[" * 15000,
        b'{"payment_id": "\\ud800", "account_id": "P1", "amount": "1", "paid_at": "x", "sign": "ab"}',
        b'{"payment_id": "a", "account_id": "P1", "amount": "1", "paid_at": "x", "sign": "\\udfff"}',
        b'{"payment_id":"a","account_id":"P1","amount":"1","paid_at":"x","sign":"ab","\\ud800":"1"}',
    ):
        try:
            bounded(check_notification, body, SECRET)
        except BadNotification:
            continue
        raise AssertionError("not refused as a bad notification: %r" % body[:60])
