"""Event rules: alerts raised by the meter's own events (docs/protocol.md event codes).

Each is ``rule(m: MeterInput, cfg, now) -> [Candidate]`` and considers only the events
later than the last resolved alert of the same rule and key (``MeterInput.new_events``), so
an event raises at most one alert; later events merge into the alert while it is open. An
event alert is never auto-resolved: an event is a fact someone must look at.

  tamper                 3 cover opened (warning), 4 magnetic tamper (warning; critical and
                         suspected theft when import dropped after it, see ``magnet_drop``)
  reverse_energy         5 reverse energy flow (warning)
  line_neutral_mismatch  17 line/neutral current mismatch: possible bypass (critical, theft)
  clock_step             11 clock adjusted by more than ``clock_step_s`` (warning)
  metering_ic_fault      18 metering IC fault (critical)
"""

from __future__ import annotations

from headend.alerts.config import AlertConfig
from headend.alerts.model import Candidate, MeterInput, iso
from headend.alerts.usage import energy_between

EVT_COVER, EVT_MAGNET, EVT_REVERSE, EVT_CLOCK, EVT_MISMATCH, EVT_IC_FAULT = 3, 4, 5, 11, 17, 18
MAX_LISTED = 20  # events kept in an alert's evidence (the count covers all)


def _events(evs: list[dict]) -> dict:
    return {
        "count": len(evs),
        "first_ts": evs[0]["ts"],
        "last_ts": evs[-1]["ts"],
        "events": [{k: e.get(k) for k in ("seq", "ts", "code", "detail")} for e in evs[-MAX_LISTED:]],
    }


def _simple(m: MeterInput, rule: str, code: int, severity: str, what: str, action: str,
            theft: bool = False) -> list[Candidate]:  # fmt: skip
    evs = m.new_events(rule, (code,))
    if not evs:
        return []
    summary = "%s (%d event(s), last at %s)" % (what, len(evs), iso(evs[-1]["ts"]))
    return [Candidate(rule, m.meter_id, severity, summary, action, _events(evs), "", evs[-1]["seq"], theft)]


def magnet_drop(readings: list[dict], event_ts: int, cfg: AlertConfig) -> dict:
    """Import rate (Wh/h) over ``magnet_baseline_s`` before the event and since it, and whether
    it fell below ``theft_drop_pct`` % (judged only ``magnet_after_min_s`` after the event)."""
    before = energy_between(readings, event_ts - cfg.magnet_baseline_s, event_ts)
    after = energy_between(readings, event_ts, readings[-1]["ts"]) if readings else None
    out = {"judged": False, "dropped": False, "threshold_pct": cfg.theft_drop_pct}
    if before is not None:
        out["before_wh_per_h"] = round(before[0] * 3600 / before[1], 1)
    if after is not None:
        out["after_wh_per_h"] = round(after[0] * 3600 / after[1], 1)
    if before is None or after is None or before[0] <= 0 or after[1] < cfg.magnet_after_min_s:
        return out
    out["judged"] = True
    # after rate < pct % of before rate, in integers: wa/sa * 100 < pct * wb/sb
    out["dropped"] = after[0] * before[1] * 100 < cfg.theft_drop_pct * before[0] * after[1]
    out["after_pct"] = round(100 * (after[0] / after[1]) / (before[0] / before[1]), 1)
    return out


def tamper(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    out = []
    for key, code, what in (("cover", EVT_COVER, "terminal cover opened"), ("magnet", EVT_MAGNET,
                            "magnetic tamper")):  # fmt: skip
        evs = m.new_events("tamper", (code,), key)
        if not evs:
            continue
        evidence, severity, theft = _events(evs), "warning", False
        action = "Inspect the terminal cover and its seals on site; look for changed wiring."
        summary = "%s (%d event(s), last at %s)" % (what, len(evs), iso(evs[-1]["ts"]))
        if key == "magnet":
            drop = magnet_drop(m.usable, evs[0]["ts"], cfg)
            evidence["consumption"] = drop
            action = "Inspect the meter for a magnet or other interference; take a manual reading."
            if drop["dropped"]:
                severity, theft = "critical", True
                summary += ", import since at %s %% of before: suspected theft" % drop["after_pct"]
                action = "Suspected theft: send a field crew to inspect the meter and take a manual reading."
        out.append(Candidate("tamper", m.meter_id, severity, summary, action, evidence, key, evs[-1]["seq"],
                             theft))  # fmt: skip
    return out


def reverse_energy(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    return _simple(
        m, "reverse_energy", EVT_REVERSE, "warning", "reverse energy flow",
        "Check for a reversed connection or unregistered generation at the premises.",
    )  # fmt: skip


def line_neutral_mismatch(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    return _simple(
        m, "line_neutral_mismatch", EVT_MISMATCH, "critical",
        "line/neutral current mismatch: possible bypass",
        "Suspected bypass: send a field crew to check the line and neutral wiring; take a manual reading.",
        theft=True,
    )  # fmt: skip


def _step(e: dict) -> int | None:
    d = e.get("detail") or {}
    old, new = d.get("0", d.get(0)), d.get("1", d.get(1))
    return new - old if isinstance(old, int) and isinstance(new, int) else None


def clock_step(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    evs = [e for e in m.new_events("clock_step", (EVT_CLOCK,)) if abs(_step(e) or 0) > cfg.clock_step_s]
    if not evs:
        return []
    evidence = _events(evs)
    evidence["steps_s"] = [_step(e) for e in evs[-MAX_LISTED:]]
    evidence["threshold_s"] = cfg.clock_step_s
    summary = "clock adjusted by %+d s (%d large step(s))" % (_step(evs[-1]), len(evs))
    action = "Check the meter's time source and sync its clock; check rate attribution around the step."
    return [Candidate("clock_step", m.meter_id, "warning", summary, action, evidence, "", evs[-1]["seq"])]


def metering_ic_fault(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    return _simple(
        m, "metering_ic_fault", EVT_IC_FAULT, "critical", "metering IC fault",
        "Readings may be wrong or frozen: schedule a meter test or replacement.",
    )  # fmt: skip
