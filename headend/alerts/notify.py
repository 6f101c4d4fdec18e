"""Alert notifications, queued in the outbox that ``headend.notify`` delivers.

``queue(store, alert, cfg, now) -> n`` puts a new warning/critical alert into the
``outbox`` table (``alert_id`` set, ``bill_id`` NULL) on the staff channels of the config:
``notify_email``, ``notify_webhook``, or the console when neither is set. The outbox's
unique (alert_id, channel) index makes it once per alert and channel, however many runs see
the alert. ``headend outbox send`` delivers them with the bills' retries and back-off;
``alert_message(store, row)`` renders one for it.
"""

from __future__ import annotations

import html
import json

from headend.alerts.config import AlertConfig
from headend.alerts.model import iso

NOTIFY_SEVERITIES = ("warning", "critical")
PAYLOAD_FIELDS = (
    "rule",
    "severity",
    "meter_id",
    "account_id",
    "summary",
    "action",
    "work_order_id",
    "first_seen",
)


def channels(cfg: AlertConfig) -> list[tuple[str, str | None]]:
    out = []
    if cfg.notify_email:
        out.append(("email", cfg.notify_email))
    if cfg.notify_webhook:
        out.append(("webhook", cfg.notify_webhook))
    return out or [("console", None)]


def payload(alert: dict) -> dict:
    return {"alert_id": alert["id"], **{k: alert.get(k) for k in PAYLOAD_FIELDS}}


def queue(store, alert: dict, cfg: AlertConfig, now: float) -> int:
    if alert["severity"] not in NOTIFY_SEVERITIES:
        return 0
    body = payload(alert)
    return sum(
        store.queue_alert_notification(alert["id"], ch, target, body, now) for ch, target in channels(cfg)
    )


def render_text(p: dict) -> str:
    lines = [
        "ALERT %d [%s] %s on meter %s%s" % (p["alert_id"], p["severity"], p["rule"], p["meter_id"],
                                           " (account %s)" % p["account_id"] if p.get("account_id") else ""),
        p["summary"],
        "Suggested action: %s" % p["action"],
    ]  # fmt: skip
    if p.get("work_order_id"):
        lines.append("Field work order %d opened." % p["work_order_id"])
    if p.get("first_seen"):
        lines.append("Raised at %s." % iso(p["first_seen"]))
    return "\n".join(lines) + "\n"


def alert_message(store, row: dict) -> dict:
    """The message of one alert outbox row, for ``headend.notify`` to send (``store`` unused:
    an alert's notice is all in its payload)."""
    p = json.loads(row["payload"])
    text = render_text(p)
    return {
        "console": "--- notification %d (alert %d) ---\n%s" % (row["id"], p["alert_id"], text),
        "webhook": {**p, "event": "alert.opened"},
        "subject": "[%s] %s on meter %s" % (p["severity"], p["rule"], p["meter_id"]),
        "text": text,
        "html": "<pre>%s</pre>" % html.escape(text),
    }
