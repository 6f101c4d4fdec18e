"""The VEE engine: read a meter's data, validate, estimate, rebuild its load profile.

``run_vee(store, meter_id, now, cfg=None) -> summary`` is idempotent: it computes
everything from the stored readings, events and edits, then writes only the
differences (results, states, estimates, audit entries) and replaces the load
profile, all in one ``store.transaction()``. A second run over the same data
writes no result, state or audit entry and leaves the same profile.

The storage interface it needs (``VeeStore`` below; ``headend.db.storage.Storage``
provides it). Rows are dicts; lists (imp, exp, values, old, new) come back decoded.

Reads:
  ``meter(meter_id) -> dict | None``  optional keys used: ``rates``, ``imax_ma``,
      ``un_mv``, ``interval`` (s), ``export_allowed`` (bool).
  ``readings_for_vee(meter_id) -> [dict]``  ``seq, ts, interval, imp, exp, q, balance,
      flags, received_at, vee_state`` (None or "pending" before the first run).
  ``events(meter_id) -> [dict]``  ``seq, ts, code, detail`` (codes 1/2 make outages).
  ``vee_results(meter_id) -> [dict]``  ``ts, rule, seq, outcome, detail``.
  ``estimates(meter_id, include_replaced=False) -> [dict]``  ``interval_start,
      interval_end, method, values`` ({"imp": [...], "exp": [...]}).
  ``audit(meter_id) -> [dict]``  ``id, target, old, new, reason, user, at`` by id.
Writes (all inside ``transaction()``, a context manager: commit on exit,
roll back on an exception, nestable):
  ``set_vee_state(meter_id, seqs, state)``
  ``add_vee_result(meter_id, ts, rule, outcome, detail=None, seq=None, run_at=None)``
      upsert on (meter_id, ts, rule).
  ``upsert_estimate(meter_id, interval_start, interval_end, method, values, created_at=None)``
      upsert on (meter_id, interval_start, interval_end), clears replaced_by_real.
  ``mark_estimates_replaced(meter_id, from_ts, to_ts)``  flag the active estimates
      overlapping (from_ts, to_ts) as replaced by real data.
  ``add_audit(meter_id, target, old, new, reason, user, at=None)``  append only.
  ``replace_load_profile(meter_id, interval_s, from_ts, to_ts, rows)``  rows:
      ``interval_start, rate, wh_imp, wh_exp, source`` (integer Wh; source real |
      estimated | edited).

Audit targets: ``reading/<seq>`` (state changes, except pending -> valid),
``estimate/<start>-<end>`` (created, re-estimated, replaced by real data),
``interval/<start>-<end>`` (operator edits, ``headend.vee.edit``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from headend.errors import VeeError
from headend.vee.config import VeeConfig
from headend.vee.estimate import OPEN_END, estimate_gaps, outages_from_events
from headend.vee.profile import base_slots, build_profile, measured_intervals
from headend.vee.registers import on_grid, ordered
from headend.vee.result import Result, expected_interval
from headend.vee.rules import RULE_NAMES, validate

USER = "vee"
EDIT_PREFIX = "interval/"


class VeeStore(Protocol):
    def meter(self, meter_id: str) -> dict | None: ...
    def readings_for_vee(self, meter_id: str) -> list[dict]: ...
    def events(self, meter_id: str) -> list[dict]: ...
    def vee_results(self, meter_id: str) -> list[dict]: ...
    def estimates(self, meter_id: str, include_replaced: bool = True) -> list[dict]: ...
    def audit(self, meter_id: str) -> list[dict]: ...
    def transaction(self) -> AbstractContextManager: ...
    def set_vee_state(self, meter_id: str, seqs: list[int], state: str) -> int: ...
    def add_vee_result(self, meter_id: str, ts: int, rule: str, outcome: str, detail=None, seq=None,
                       run_at=None) -> None: ...  # fmt: skip
    def upsert_estimate(self, meter_id: str, interval_start: int, interval_end: int, method: str, values,
                        created_at=None) -> None: ...  # fmt: skip
    def mark_estimates_replaced(self, meter_id: str, from_ts: int, to_ts: int) -> int: ...
    def add_audit(self, meter_id: str, target: str, old, new, reason: str, user: str, at=None) -> int: ...
    def replace_load_profile(self, meter_id: str, interval_s: int, from_ts: int, to_ts: int, rows) -> int: ...


@dataclass
class Plan:
    """Everything one run computes, before it writes."""

    meter_id: str
    iv: int
    readings: list[dict]
    results: list[Result]
    states: dict[int, str]  # seq -> state
    measured: dict[int, tuple]
    estimates: list[dict]
    edits: dict[int, dict]  # slot end -> {"imp", "exp"}
    slots: dict[int, tuple]  # slot end -> (imp, exp, source)
    profile: dict[int, list[dict]]


def edit_target(start: int, end: int) -> str:
    return "%s%d-%d" % (EDIT_PREFIX, start, end)


def current_edits(audit_rows: list[dict]) -> dict[int, dict]:
    """slot end -> the latest operator edit's new value, from the audit trail."""
    out = {}
    for row in sorted(audit_rows, key=lambda r: r["id"]):
        if row["target"].startswith(EDIT_PREFIX):
            out[int(row["target"][len(EDIT_PREFIX) :].split("-")[1])] = row["new"]
    return out


def reading_states(readings, results, estimated_ends, edits) -> dict[int, str]:
    worst: dict[int, str] = {}
    for r in results:
        for s in r.seqs:
            if worst.get(s) != "fail":
                worst[s] = r.outcome
    firsts = {r["seq"] for r in ordered(readings)[0]}
    states = {}
    for r in readings:
        w, mine = worst.get(r["seq"]), r["seq"] in firsts
        if mine and r["ts"] in edits:
            states[r["seq"]] = "edited"
        elif w == "fail":
            states[r["seq"]] = "estimated" if mine and r["ts"] in estimated_ends else "failed"
        else:
            states[r["seq"]] = "suspect" if w == "warn" else "valid"
    return states


def plan(store: VeeStore, meter_id: str, now: int, cfg: VeeConfig) -> Plan:
    meter = store.meter(meter_id)
    if meter is None:
        raise VeeError("unknown meter %r" % (meter_id,), "meter_id")
    iv = expected_interval(meter, cfg)
    readings = store.readings_for_vee(meter_id)
    outages = outages_from_events(store.events(meter_id))
    results = validate(readings, meter, cfg, now)
    failed = {s for r in results if r.outcome == "fail" for s in r.seqs}
    series = [r for r in ordered(readings)[0] if on_grid(r, iv) and r["seq"] not in failed]
    measured = measured_intervals(series, iv, cfg)
    estimates = estimate_gaps(series, measured, outages, cfg, iv, now)
    edits = current_edits(store.audit(meter_id))
    states = reading_states(readings, results, {e["interval_end"] for e in estimates}, edits)
    slots = base_slots(measured, estimates, edits)
    profile = build_profile(measured, estimates, edits, iv, cfg)
    return Plan(meter_id, iv, readings, results, states, measured, estimates, edits, slots, profile)


def _write_results(store: VeeStore, p: Plan, now: int) -> int:
    old = {(r["ts"], r["rule"]): r for r in store.vee_results(p.meter_id)}
    new = {(r.ts, r.rule): r for r in p.results}
    n = 0
    for key, r in new.items():
        o = old.get(key)
        if o is None or (o["outcome"], o["detail"], o.get("seq")) != (r.outcome, r.detail, r.seqs[0]):
            store.add_vee_result(p.meter_id, r.ts, r.rule, r.outcome, r.detail, seq=r.seqs[0], run_at=now)
            n += 1
    for key, o in old.items():
        if key not in new and o["outcome"] != "pass":
            store.add_vee_result(
                p.meter_id, key[0], key[1], "pass", "passes now", seq=o.get("seq"), run_at=now
            )
            n += 1
    return n


def _write_states(store: VeeStore, p: Plan, now: int) -> int:
    why: dict[int, list[str]] = {}
    for r in p.results:
        for s in r.seqs:
            why.setdefault(s, []).append("%s %s: %s" % (r.rule, r.outcome, r.detail))
    changed: dict[str, list[int]] = {}
    n = 0
    for r in p.readings:
        old, new = r.get("vee_state"), p.states[r["seq"]]
        if old == new:
            continue
        changed.setdefault(new, []).append(r["seq"])
        if not (old in (None, "pending") and new == "valid"):
            reason = "; ".join(why.get(r["seq"], ["passes every rule"]))
            if new == "edited":
                reason = "operator edit of its interval"
            store.add_audit(p.meter_id, "reading/%d" % r["seq"], old, new, reason, USER, at=now)
            n += 1
    for state, seqs in sorted(changed.items()):
        store.set_vee_state(p.meter_id, seqs, state)
    return n


def _write_estimates(store: VeeStore, p: Plan, now: int) -> dict[str, int]:
    old = {e["interval_start"]: e for e in store.estimates(p.meter_id, include_replaced=False)}
    counts = {"created": 0, "updated": 0, "replaced": 0}
    for e in p.estimates:
        values = {"imp": e["imp"], "exp": e["exp"]}
        o = old.pop(e["interval_start"], None)
        if o is not None and o["method"] == e["method"] and o["values"] == values:
            continue
        store.upsert_estimate(
            p.meter_id, e["interval_start"], e["interval_end"], e["method"], values, created_at=now
        )
        word = "created" if o is None else "updated"
        before = None if o is None else {"method": o["method"], **o["values"]}
        store.add_audit(p.meter_id, "estimate/%d-%d" % (e["interval_start"], e["interval_end"]), before,
                        {"method": e["method"], **values}, "estimate %s (%s)" % (word, e["method"]), USER,
                        at=now)  # fmt: skip
        counts[word] += 1
    for start, o in sorted(old.items()):
        end = o["interval_end"]
        store.mark_estimates_replaced(p.meter_id, start, end)
        real = p.measured.get(end)
        new = None if real is None else {"imp": real[0], "exp": real[1]}
        reason = "replaced by real data" if real is not None else "withdrawn: slot no longer missing"
        store.add_audit(p.meter_id, "estimate/%d-%d" % (start, end), {"method": o["method"], **o["values"]},
                        new, reason, USER, at=now)  # fmt: skip
        counts["replaced"] += 1
    return counts


def apply(store: VeeStore, p: Plan, now: int) -> dict:
    with store.transaction():
        n_results = _write_results(store, p, now)
        n_state_audit = _write_states(store, p, now)
        est = _write_estimates(store, p, now)
        for resolution, rows in sorted(p.profile.items()):
            store.replace_load_profile(p.meter_id, resolution, 0, OPEN_END, rows)
    states = {s: 0 for s in ("valid", "suspect", "failed", "estimated", "edited")}
    for s in p.states.values():
        states[s] += 1
    rules = {name: {"warn": 0, "fail": 0} for name in RULE_NAMES}
    for r in p.results:
        rules[r.rule][r.outcome] += 1
    return {
        "meter_id": p.meter_id,
        "interval_s": p.iv,
        "readings": len(p.readings),
        "states": states,
        "rules": rules,
        "results_written": n_results,
        "estimates": {"total": len(p.estimates), **est},
        "edits": len(p.edits),
        "profile_rows": {str(r): len(rows) for r, rows in sorted(p.profile.items())},
        "audit_entries": n_state_audit + sum(est.values()),
    }


def run_vee(store: VeeStore, meter_id: str, now: int, cfg: VeeConfig | None = None) -> dict:
    """Validate, estimate and rebuild the profile of one meter; return a summary dict."""
    cfg = cfg or VeeConfig()
    return apply(store, plan(store, meter_id, now, cfg), now)
