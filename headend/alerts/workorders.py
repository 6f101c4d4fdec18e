"""Field work orders for suspected theft, and closing them with the crew's findings.

``open_for(store, alert, account, now)`` creates the work order of a theft alert (once:
the alert keeps its ``work_order_id``) with the meter, a location (the account's address
and zone, else the meter id), the reason (the alert's summary) and the alert's evidence,
links it to the alert and audits it, inside the caller's transaction.
``close(store, work_order_id, user, findings, now)`` closes it (audited); the alert it came
from, if still open or acknowledged, is resolved with the findings as the note.
A reading the crew takes on site is entered with ``headend reading enter``
(``headend.vee.manual``) and goes through VEE like any other.
"""

from __future__ import annotations

from headend.alerts import ENGINE_USER
from headend.errors import AlertError


def location(meter_id: str, account: dict | None) -> str:
    account = account or {}
    address, zone = account.get("address"), account.get("zone")
    if address:
        return "%s (zone %s)" % (address, zone) if zone else address
    if zone:
        return "zone %s, meter %s" % (zone, meter_id)
    return "meter %s" % meter_id


def open_for(store, alert: dict, account: dict | None, now: float) -> int:
    wo_id = store.insert_work_order(
        {
            "alert_id": alert["id"],
            "meter_id": alert["meter_id"],
            "account_id": alert.get("account_id"),
            "location": location(alert["meter_id"], account),
            "reason": "%s: %s" % (alert["rule"], alert["summary"]),
            "evidence": alert["evidence"],
            "state": "open",
            "created_at": now,
        }
    )
    store.update_alert(alert["id"], work_order_id=wo_id)
    store.add_alert_audit(alert["id"], "workorder_open", None, "open", ENGINE_USER, now,
                          "suspected theft: field work order %d" % wo_id, wo_id)  # fmt: skip
    return wo_id


def close(store, work_order_id: int, user: str, findings: str, now: float) -> dict:
    if not findings or not findings.strip():
        raise AlertError("findings must not be empty", "findings")
    if not user or not user.strip():
        raise AlertError("the closing user (--by) must not be empty", "by")
    return store.close_work_order(work_order_id, user, findings.strip(), now)
