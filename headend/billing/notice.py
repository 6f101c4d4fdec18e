"""A bill's notice for the outbox (``headend.notify``): rendered here, delivered there.

``bill_message(store, row)`` renders the bill of an outbox row as text and HTML; the first
delivery keeps that copy on the bill row (what the customer was sent), later attempts reuse it.
The message is the outbox's plain dict: ``console``, ``webhook`` (the JSON body), ``subject``,
``text``, ``html``.
"""

from __future__ import annotations

import json

from headend.billing.render import render_html, render_text


def _documents(store, bill: dict) -> tuple[str, str]:
    if bill.get("rendered_text") and bill.get("rendered_html"):
        return bill["rendered_text"], bill["rendered_html"]
    account = store.account(bill["account_id"])
    text, doc = render_text(bill, account), render_html(bill, account)
    store.update_bill(bill["id"], {"rendered_text": text, "rendered_html": doc})
    return text, doc


def bill_message(store, row: dict) -> dict:
    bill = store.bill_by_id(row["bill_id"])
    text, doc = _documents(store, bill)
    payload = json.loads(row["payload"])
    subject = "Your bill for %s: %s %s" % (bill["cycle"], bill["total"], bill.get("currency") or "")
    return {
        "console": "--- notification %d (bill %d) ---\n%s" % (row["id"], bill["id"], text),
        "webhook": {**payload, "event": "bill.issued", "document": text},
        "subject": subject.strip(),
        "text": text,
        "html": doc,
    }
