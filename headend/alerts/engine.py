"""The alert engine: run every rule, reconcile the candidates with the stored alerts.

``run_alerts(store, now, cfg=None) -> summary`` reads the rules' inputs (``gather``),
evaluates the rules (``rules.evaluate``) and applies the result in ONE transaction:

* a candidate whose (rule, meter, key) has an open or acknowledged alert updates it
  (de-duplication): evidence, summary, ``last_seen``; ``count`` is the number of events it
  covers (event rules) or of runs that saw the condition (condition rules). An event alert
  changes only when new events arrive or its severity rises.
* otherwise a new ``open`` alert is stored, unless a person resolved the same (rule, meter,
  key) while its condition still held (``silenced``): that incident stays closed until the
  condition clears once. Event rules need no such guard: they only see later events.
* auto-resolve: an active alert of a condition rule whose candidate is gone (the condition
  cleared) is resolved by the ``alerts`` user with the note "condition cleared". Event
  alerts (tamper, reverse energy, ...) are never auto-resolved; disabled rules are left alone.
* a suspected theft opens one field work order per alert (``workorders.open_for``);
* a warning or critical alert is queued once per channel in the bills' outbox (``notify``).
Every state or severity change and every work order is a row of ``alert_audit``.

The summary: {"new", "updated", "resolved", "unchanged", "silenced", "work_orders",
"notifications", "alerts": [{"id", "rule", "meter_id", "severity", "change"}]}.
"""

from __future__ import annotations

import time

from headend.alerts import ENGINE_USER, notify, severity_rank, workorders
from headend.alerts.config import AlertConfig
from headend.alerts.gather import gather
from headend.alerts.model import Candidate
from headend.alerts.rules import EVENT_RULES, evaluate


def _key(x) -> tuple[str, str, str]:
    return (x.rule, x.meter_id, x.key) if isinstance(x, Candidate) else (x["rule"], x["meter_id"], x["key"])


def _count(c: Candidate) -> int:
    return c.evidence.get("count", 1) if c.rule in EVENT_RULES else 1


def _open(store, c: Candidate, account: dict | None, now: float) -> dict:
    alert_id = store.insert_alert(
        {
            "rule": c.rule, "meter_id": c.meter_id, "account_id": account and account["account_id"],
            "key": c.key, "severity": c.severity, "state": "open", "summary": c.summary,
            "action": c.action, "evidence": c.evidence, "count": _count(c), "ref_seq": c.ref_seq,
            "theft": int(c.theft), "silenced": 0, "first_seen": now, "last_seen": now, "updated_at": now,
        }
    )  # fmt: skip
    store.add_alert_audit(
        alert_id, "open", None, "open", ENGINE_USER, now, "%s: %s" % (c.severity, c.summary)
    )
    return store.alert(alert_id)


def _update(store, old: dict, c: Candidate, now: float) -> dict | None:
    """The updated alert, or None when an event alert has nothing new."""
    rises = severity_rank(c.severity) > severity_rank(old["severity"])
    if c.rule in EVENT_RULES and not (rises or (c.ref_seq or 0) > (old["ref_seq"] or 0)):
        return None
    changes = {"summary": c.summary, "action": c.action, "evidence": c.evidence, "last_seen": now,
               "updated_at": now, "theft": int(c.theft or old["theft"]),
               "count": _count(c) if c.rule in EVENT_RULES else old["count"] + 1}  # fmt: skip
    if c.ref_seq is not None:
        changes["ref_seq"] = c.ref_seq
    if c.severity != old["severity"] and (rises or c.rule not in EVENT_RULES):
        changes["severity"] = c.severity
        store.add_alert_audit(old["id"], "severity", old["severity"], c.severity, ENGINE_USER, now, c.summary)
    store.update_alert(old["id"], **changes)
    return store.alert(old["id"])


def _auto_resolve(store, alert: dict, now: float) -> None:
    store.update_alert(alert["id"], state="resolved", resolved_at=now, resolved_by=ENGINE_USER, silenced=0,
                       updated_at=now)  # fmt: skip
    store.add_alert_audit(alert["id"], "resolve", alert["state"], "resolved", ENGINE_USER, now,
                          "condition cleared")  # fmt: skip


def apply(store, candidates: list[Candidate], accounts: dict, cfg: AlertConfig, now: float) -> dict:
    out = {"new": 0, "updated": 0, "resolved": 0, "unchanged": 0, "silenced": 0, "work_orders": 0,
           "notifications": 0, "alerts": []}  # fmt: skip

    def note(alert, change):
        out[change] += 1
        out["alerts"].append(
            {k: alert[k] for k in ("id", "rule", "meter_id", "severity")} | {"change": change}
        )

    with store.transaction():
        active = {_key(a): a for a in store.active_alerts()}
        silenced: dict[tuple, list[int]] = {}
        for a in store.silenced_alerts():
            silenced.setdefault(_key(a), []).append(a["id"])
        seen = set()
        for c in candidates:
            k = _key(c)
            if k in seen:
                continue
            seen.add(k)
            account = accounts.get(c.meter_id)
            if k in active:
                alert = _update(store, active[k], c, now)
                if alert is None:
                    out["unchanged"] += 1
                    continue
                note(alert, "updated")
            elif k in silenced and c.rule not in EVENT_RULES:
                out["silenced"] += 1
                continue
            else:
                alert = _open(store, c, account, now)
                note(alert, "new")
            if alert["theft"] and alert["work_order_id"] is None:
                workorders.open_for(store, alert, account, now)
                alert = store.alert(alert["id"])
                out["work_orders"] += 1
            out["notifications"] += notify.queue(store, alert, cfg, now)
        for k, alert in active.items():
            if k not in seen and alert["rule"] not in EVENT_RULES and alert["rule"] not in cfg.disabled_rules:
                _auto_resolve(store, alert, now)
                note(alert, "resolved")
        for k, ids in silenced.items():
            if k not in seen:  # the condition cleared: the next occurrence is a new incident
                for alert_id in ids:
                    store.update_alert(alert_id, silenced=0)
    return out


def run_alerts(store, now: float | None = None, cfg: AlertConfig | None = None) -> dict:
    """Evaluate every rule as of ``now`` (default: the clock) and apply the result."""
    cfg = cfg or AlertConfig()
    now = time.time() if now is None else now
    inputs = gather(store, now, cfg)
    return apply(store, evaluate(inputs, cfg, now), {m.meter_id: m.account for m in inputs}, cfg, now)
