"""The notification outbox: deliver what bill runs and alerts queued, with retries.

``send_pending(store, now, cfg, console=print) -> {"sent", "retry", "failed", "errors"}``
takes every pending outbox row due at ``now``, has its feature render it (``RENDER``: a bill's
notice is ``headend.billing.notice``, an alert's ``headend.alerts.notify``; neither imports the
other nor this package) and sends the message on the row's channel (``channels``). Retries and
back-off live here only: a failed attempt is tried again after ``backoff_s * 2**(attempts - 1)``
seconds (at most ``backoff_max_s``), and after ``max_attempts`` attempts the row is ``failed``
with its last error. The SQL is ``headend.notify.store``.
"""

from __future__ import annotations

from headend.alerts.notify import alert_message
from headend.billing.notice import bill_message
from headend.billing.policy import OutboxPolicy
from headend.errors import DeliveryError
from headend.notify import channels

# what each kind of outbox row is rendered by: render(store, row) -> message (a dict of
# console, webhook, subject, text, html)
RENDER = {"bill": bill_message, "alert": alert_message}


def deliver(store, row: dict, cfg: OutboxPolicy, console) -> None:
    kind = "alert" if row.get("alert_id") is not None else "bill"
    channels.send(RENDER[kind](store, row), row, cfg, console)


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
