"""Deliver queued bill notifications: console, webhook (HTTP POST, JSON), e-mail (SMTP).

``send_pending(store, now, cfg, console=print) -> {"sent", "retry", "failed", "errors"}``
takes every pending outbox row due at ``now``. Retries and back-off live here only: a
failed attempt is tried again after ``backoff_s * 2**(attempts - 1)`` seconds (at most
``backoff_max_s``), and after ``max_attempts`` attempts the row is ``failed`` with its
last error. The first delivery renders the bill (text and HTML) and keeps that copy on
the bill row: what the customer was sent.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage

from headend.billing.policy import OutboxPolicy
from headend.billing.render import render_html, render_text
from headend.errors import DeliveryError  # noqa: F401


def post_webhook(url: str, body: dict, timeout: float) -> None:
    data = json.dumps(body, sort_keys=True).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                raise DeliveryError("HTTP %d" % resp.status)
    except urllib.error.HTTPError as e:
        raise DeliveryError("HTTP %d from %s" % (e.code, url))
    except (urllib.error.URLError, OSError) as e:
        raise DeliveryError("webhook %s: %s" % (url, getattr(e, "reason", e)))


def send_email(cfg: OutboxPolicy, to: str, subject: str, text: str, html_doc: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = cfg.mail_from, to, subject
    msg.set_content(text)
    msg.add_alternative(html_doc, subtype="html")
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError("smtp %s:%d: %s" % (cfg.smtp_host, cfg.smtp_port, e))


def _documents(store, bill: dict) -> tuple[str, str]:
    if bill.get("rendered_text") and bill.get("rendered_html"):
        return bill["rendered_text"], bill["rendered_html"]
    account = store.account(bill["account_id"])
    text, doc = render_text(bill, account), render_html(bill, account)
    store.update_bill(bill["id"], {"rendered_text": text, "rendered_html": doc})
    return text, doc


def deliver(store, row: dict, cfg: OutboxPolicy, console) -> None:
    if row.get("alert_id") is not None:  # an alert notification (headend.alerts.notify)
        from headend.alerts.notify import deliver_alert

        return deliver_alert(row, cfg, console)
    bill = store.bill_by_id(row["bill_id"])
    text, doc = _documents(store, bill)
    payload = json.loads(row["payload"])
    subject = "Your bill for %s: %s %s" % (bill["cycle"], bill["total"], bill.get("currency") or "")
    if row["channel"] == "console":
        console("--- notification %d (bill %d) ---\n%s" % (row["id"], bill["id"], text))
    elif row["channel"] == "webhook":
        post_webhook(row["target"], {**payload, "event": "bill.issued", "document": text}, cfg.timeout_s)
    elif row["channel"] == "email":
        send_email(cfg, row["target"], subject.strip(), text, doc)
    else:
        raise DeliveryError("unknown channel %r" % row["channel"])


def send_pending(
    store, now: float, cfg: OutboxPolicy | None = None, console=print, limit: int = 1000
) -> dict:
    cfg = cfg or OutboxPolicy()
    out = {"sent": 0, "retry": 0, "failed": 0, "errors": []}
    for row in store.outbox_due(now, limit):
        attempts = row["attempts"] + 1
        try:
            deliver(store, row, cfg, console)
        except DeliveryError as e:
            if attempts >= cfg.max_attempts:
                state, key, next_at = "failed", "failed", row["next_attempt_at"]
            else:
                state, key = "pending", "retry"
                next_at = now + min(cfg.backoff_s * 2 ** (attempts - 1), cfg.backoff_max_s)
            store.outbox_update(
                row["id"], state=state, attempts=attempts, next_attempt_at=next_at, last_error=str(e)
            )
            out[key] += 1
            out["errors"].append(
                {"id": row["id"], "channel": row["channel"], "error": str(e), "state": state}
            )
            continue
        store.outbox_update(row["id"], state="sent", attempts=attempts, sent_at=now, last_error=None)
        out["sent"] += 1
    return out
