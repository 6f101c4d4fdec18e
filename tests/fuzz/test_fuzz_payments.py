"""Fuzzing the payment notification check (headend.prepaid.payments.check_notification).

Seeds: signed notifications as the payment platform sends them. The fuzzer edits the body's
bytes (with or without re-signing) and its JSON tree (hostile values, added and deleted
fields) and re-signs some edits with the right secret, so the checks after the signature
(field types, lengths, amount) are reached too.

Documented errors: ``BadNotification`` (HTTP 400) and ``BadSignature`` (HTTP 401), both
``PrepaidError``. Properties: nothing else is raised; each call time-bounded; without the
secret no edit changes who is credited or how much (an accepted edited body carries the
seed's payment_id, account_id, amount and paid_at); a signed notification round-trips to
its values; a name or value holding '&', '=' or a control character (which could re-split
the signed string into other fields) is refused naming that field, signed or not; a paid_at
that is not an RFC 3339 date-time with an offset is refused naming paid_at.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headend.errors import BadNotification, BadSignature
from headend.prepaid.ledger import parse_amount
from headend.prepaid.payments import check_notification, is_date_time, sign
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


# what a name or value may hold: no lone surrogate (no UTF-8 form), no '&' or '=' (they would
# make the signed string ambiguous) and no control character
SIGNABLE = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="&=")
FORBIDDEN = st.sampled_from("&=\x00\n\r\t\x1f\x7f\x85")


def signable(min_size: int, max_size: int):
    return st.text(SIGNABLE, min_size=min_size, max_size=max_size)


@st.composite
def date_times(draw) -> str:
    """RFC 3339 date-times with an offset: Z or z, +-hh:mm, with or without a fraction."""
    dt = draw(st.datetimes()).isoformat(timespec="seconds")
    dt = dt[:10] + draw(st.sampled_from("Tt")) + dt[11:]
    frac = draw(st.sampled_from(["", ".5", ".123456789"]))
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    sign = "-" if minutes < 0 else "+"
    offset = draw(st.sampled_from(["Z", "z", "%s%02d:%02d" % ((sign,) + divmod(abs(minutes), 60))]))
    return dt + frac + offset


@fuzz(300)
@given(
    signable(1, 128),
    signable(1, 128),
    st.integers(1, 10**9),
    date_times(),
    st.dictionaries(signable(1, 10), signable(0, 20), max_size=3),
)
def test_signed_notifications_round_trip(payment_id, account_id, milli, paid_at, extra):
    fields = {**extra, "payment_id": payment_id, "account_id": account_id, "paid_at": paid_at}
    fields["amount"] = "%d.%03d" % divmod(milli, 1000)
    n = bounded(check_notification, signed(fields), SECRET)
    assert (n.payment_id, n.account_id, n.amount, n.paid_at) == (payment_id, account_id, milli, paid_at)
    assert n.body == "&".join(
        "%s=%s" % (k, fields[k]) for k in sorted(fields) if k != "sign" and fields[k] != ""
    )


@fuzz(300)
@given(
    st.sampled_from([*FIELDS, "extra"]),
    signable(0, 20),
    FORBIDDEN,
    signable(0, 20),
    st.booleans(),
)
def test_a_separator_or_control_character_is_refused_naming_the_field(name, head, bad, tail, in_name):
    """Signed or not: such a value could be re-split into other fields under the same sign."""
    fields = {**FIELDS, "extra": "x"}
    if in_name:
        name = head + bad + tail
        fields[name] = "x"
    else:
        fields[name] = head + bad + tail
    try:
        bounded(check_notification, signed(fields), SECRET)
    except BadNotification as e:
        assert e.field == name and "must not contain" in str(e)
        return
    raise AssertionError("accepted %r" % fields)


@fuzz(300)
@given(st.one_of(signable(1, 40), date_times().map(lambda t: t[:-1]), date_times().map(lambda t: " " + t)))
def test_a_paid_at_that_is_no_rfc3339_date_time_is_refused(paid_at):
    try:
        bounded(check_notification, signed({**FIELDS, "paid_at": paid_at}), SECRET)
    except BadNotification as e:
        assert e.field == "paid_at" and "paid_at" in str(e)
        return
    assert is_date_time(paid_at), paid_at  # a random text can still be a date-time


def test_paid_at_edges():
    for good in ("2024-02-29T23:59:60Z", "0000-02-29t00:00:00.1z", "2024-03-01T09:00:00-23:59"):
        assert check_notification(signed({**FIELDS, "paid_at": good}), SECRET).paid_at == good
    for bad in (
        "not a date",
        "2024-03-01",
        "2024-03-01T09:00:00",  # no offset
        "2024-03-01 09:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-03-01T24:00:00Z",
        "2024-03-01T09:00:61Z",
        "2024-03-01T09:00:00+24:00",
        "2024-03-01T09:00:00+0800",
        "\uff12024-03-01T09:00:00Z",
        "1709280000",
    ):
        with pytest.raises(BadNotification, match="paid_at"):
            check_notification(signed({**FIELDS, "paid_at": bad}), SECRET)


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
