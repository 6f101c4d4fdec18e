"""Operator review of bills: approve (release) or correct, each with a reason, audited.

``approve(store, account_id, cycle, reason, user, now)``: a bill in ``review`` (or an
operator's override of a ``held`` one) becomes ``approved``, i.e. released to the
customer: its notifications are queued. ``correct(store, account_id, cycle, amount,
reason, user, now)`` adds an ``adjustment`` line (positive or negative, in the bill's
minor unit) with the reason and updates the total; the bill keeps its state and still
needs approving. Both append to ``bill_audit`` in the same transaction.
``void(store, account_id, cycle, reason, user, now)``: the account's live bill for the
cycle, in any state, becomes ``void`` (kept, audited, its unsent notices dropped); the next
``headend bill run`` of the cycle bills the account again.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from headend.errors import ReviewError  # noqa: F401

OPEN_STATES = ("review", "held")


def _open_bill(store, account_id: str, cycle: str, action: str) -> dict:
    bill = store.bill(account_id, cycle)
    if bill is None:
        raise ReviewError("no bill for account %r in cycle %s" % (account_id, cycle))
    if bill["state"] not in OPEN_STATES:
        raise ReviewError(
            "the bill of %r for %s is %s; only bills in review or held can be %s"
            % (account_id, cycle, bill["state"], action)
        )
    return bill


def _reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise ReviewError("a reason is required", "reason")
    return reason.strip()


def approve(store, account_id: str, cycle: str, reason: str, user: str, now: float) -> dict:
    reason = _reason(reason)
    bill = _open_bill(store, account_id, cycle, "approved")
    if not bill["lines"]:
        raise ReviewError("the bill of %r for %s has no priced lines; correct it first" % (account_id, cycle))
    audit = {
        "action": "approve",
        "old_state": bill["state"],
        "new_state": "approved",
        "reason": reason,
        "user": user,
        "at": now,
    }
    store.update_bill(
        bill["id"], {"state": "approved", "issued_at": now, "updated_at": now}, audit, notify=True
    )
    return store.bill(account_id, cycle)


def void(store, account_id: str, cycle: str, reason: str, user: str, now: float) -> dict:
    reason = _reason(reason)
    bill = store.bill(account_id, cycle)
    if bill is None:
        known = store.account(account_id) is not None
        raise ReviewError(
            "no bill for account %r in cycle %s%s"
            % (account_id, cycle, "" if known else " (no such account)")
        )
    if bill["state"] == "void":
        raise ReviewError("the bill of %r for %s is already void" % (account_id, cycle))
    store.void_bill(bill["id"], reason, user, now)
    return store.bill_by_id(bill["id"])


def parse_amount(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except (InvalidOperation, TypeError):
        raise ReviewError("amount must be a decimal number, not %r" % (text,), "amount")
    if not amount.is_finite() or amount == 0:
        raise ReviewError("amount must be a non-zero finite number, not %r" % (text,), "amount")
    return amount


def correct(store, account_id: str, cycle: str, amount: Decimal, reason: str, user: str, now: float) -> dict:
    reason = _reason(reason)
    bill = _open_bill(store, account_id, cycle, "corrected")
    unit = Decimal(1).scaleb(Decimal(bill["total"]).as_tuple().exponent if bill["lines"] else -2)
    if amount != amount.quantize(unit):
        raise ReviewError(
            "amount %s has more decimals than the bill's minor unit %s" % (amount, unit), "amount"
        )
    amount = amount.quantize(unit)
    lines = bill["lines"] + [{"item": "adjustment", "amount": str(amount), "reason": reason}]
    total = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
    audit = {
        "action": "correct",
        "old_state": bill["state"],
        "new_state": bill["state"],
        "amount": str(amount),
        "reason": reason,
        "user": user,
        "at": now,
    }
    store.update_bill(bill["id"], {"lines": lines, "total": str(total), "updated_at": now}, audit)
    return store.bill(account_id, cycle)
