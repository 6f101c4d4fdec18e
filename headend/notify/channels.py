"""The outbox's channels: the console, a webhook (HTTP POST of JSON) and e-mail (SMTP).

``send(message, row, cfg, console)`` delivers one rendered message (see ``headend.notify.outbox``)
on the row's channel; a failure is a ``DeliveryError`` naming the channel and why, which the
outbox retries.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage

from headend.billing.policy import OutboxPolicy
from headend.errors import DeliveryError


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


def send(message: dict, row: dict, cfg: OutboxPolicy, console) -> None:
    if row["channel"] == "console":
        console(message["console"])
    elif row["channel"] == "webhook":
        post_webhook(row["target"], message["webhook"], cfg.timeout_s)
    elif row["channel"] == "email":
        send_email(cfg, row["target"], message["subject"], message["text"], message["html"])
    else:
        raise DeliveryError("unknown channel %r" % row["channel"])
