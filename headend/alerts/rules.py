"""Alert rules: one pure function per rule, over the rows of one meter (``MeterInput``).

``rule(m, cfg, now) -> [Candidate]`` (``fluctuation_peers`` takes every meter's input).
The event rules live in ``rules_events``; the rules here are *conditions*, evaluated afresh
on every run: while a condition holds its alert is updated, and when it no longer holds
the engine resolves it (auto-resolve, audited as the ``alerts`` user).

  comm_loss            no reading received for ``comm_loss_intervals`` intervals before now
                       (the head-end's clock, ``received_at``: never the readings' meter ts),
                       or offline by its will message (``online = 0`` after a status);
                       critical after ``comm_loss_critical_s``. Only meters that were heard.
  fluctuation_history  the last whole day's import outside [low, high] % of the median of
                       the account's previous ``fluct_history_days`` days (warning)
  fluctuation_peers    the same day against the median of the other accounts on the same
                       tariff and zone: outside [low, high] % warning, below
                       ``peer_theft_pct`` critical and suspected theft
  zero_consumption     no import increase for ``zero_hours`` on an account's meter that is
                       online with its relay closed (warning)
  clock_drift          the last reading received (by ``received_at``, whatever its ts): its ts
                       off its receive time by more than ``clock_drift_s`` (ahead; or behind
                       without the backlog flag, bit 4) (warning)
  relay_mismatch       the latest reading after the last acked relay command shows the other
                       relay state (flags bit 0), unless the meter reported opening it itself
                       (event 6 with a credit/load/tamper reason) (critical)
  balance_mismatch     meter-reported balance (key 8) vs the ledger's expected balance beyond
                       ``balance_tolerance``, not while a top-up is in flight (warning)
  low_balance          the latest balance below ``low_balance`` or a low-balance event (8)
                       since (info); negative balance or credit exhausted (9) (warning)
  vee_failures         readings VEE left ``failed`` in the last ``vee_window_s`` (warning)
"""

from __future__ import annotations

from headend.alerts.config import AlertConfig
from headend.alerts.model import RULE_NAMES, Candidate, MeterInput, iso
from headend.alerts.rules_events import (
    clock_step,
    line_neutral_mismatch,
    metering_ic_fault,
    reverse_energy,
    tamper,
)
from headend.alerts.usage import history_median, local_day, median_without, total_imp, zero_run

FLAG_RELAY_OPEN, FLAG_BACKLOG = 1, 16
EVT_RELAY_OPENED, EVT_RELAY_CLOSED, EVT_LOW_BALANCE, EVT_CREDIT_EXHAUSTED = 6, 7, 8, 9


def _day(now: float, cfg: AlertConfig) -> int:
    """The last whole local day before now."""
    return local_day(int(now), cfg.utc_offset_minutes) - 1


def _date(day: int) -> str:
    return iso(day * 86400)[:10]


def comm_loss(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    """Judged on the head-end's clock: how long since it last received a reading (its
    ``received_at``, whatever the reading's ts says), or the will message."""
    meter = m.meter
    last = m.last
    offline = meter.get("online") == 0 and meter.get("status_seq") is not None
    heard = meter.get("last_seen")
    if last is None and (heard is None or heard > now):
        return []  # never heard from (by now): not a loss
    iv = (last or {}).get("interval") or cfg.interval_s
    # no reading ever received: silent since the meter was last heard from (a status, an event)
    silent = max(now - (last["received_at"] if last else heard), 0.0)
    missed = int(silent // iv)
    if missed < cfg.comm_loss_intervals and not offline:
        return []
    severity = "critical" if silent >= cfg.comm_loss_critical_s else "warning"
    evidence = {
        "last_reading": {k: last[k] for k in ("seq", "ts", "received_at")} if last else None,
        "silent_s": int(silent),
        "missed_intervals": missed,
        "interval_s": iv,
        "online": meter.get("online"),
        "last_seen": meter.get("last_seen"),
    }
    what = "offline (will message)" if offline else "no reading"
    if last:
        when = iso(last["received_at"])
        summary = "%s; last reading received %s, %d interval(s) ago" % (what, when, missed)
    else:
        summary = "%s; no reading ever received, last heard from %s" % (what, iso(heard))
    action = "Check the meter's power and network link; if it stays silent, visit and take a manual reading."
    return [Candidate("comm_loss", m.meter_id, severity, summary, action, evidence)]


def fluctuation_history(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    day = _day(now, cfg)
    if m.account is None or day not in m.daily:
        return []
    med, n = history_median(m.daily, day, cfg.fluct_history_days)
    if n < cfg.fluct_min_history_days or med < cfg.fluct_min_median_wh:
        return []
    own = m.daily[day]
    low, high = own * 100 < cfg.fluct_low_pct * med, own * 100 > cfg.fluct_high_pct * med
    if not (low or high):
        return []
    pct = round(100 * own / med, 1)
    evidence = {"day": _date(day), "wh": own, "median_wh": med, "history_days": n, "ratio_pct": pct,
                "low_pct": cfg.fluct_low_pct, "high_pct": cfg.fluct_high_pct}  # fmt: skip
    summary = "import on %s %d Wh is %s %% of its %d-day median %s Wh" % (_date(day), own, pct, n, med)
    action = (
        "Far below its own history: check for a stopped meter, a bypass or a vacant premises."
        if low
        else "Far above its own history: check for a fault, a register error or a new load."
    )
    return [Candidate("fluctuation_history", m.meter_id, "warning", summary, action, evidence)]


def fluctuation_peers(ms: list[MeterInput], cfg: AlertConfig, now: float) -> list[Candidate]:
    day = _day(now, cfg)
    groups: dict[tuple, list[MeterInput]] = {}
    for m in ms:
        if m.account is not None and day in m.daily:
            groups.setdefault((m.account["tariff_id"], m.account["zone"]), []).append(m)
    out = []
    for (tariff_id, zone), members in sorted(groups.items()):
        if len(members) < cfg.peer_min_accounts:
            continue
        values = sorted(p.daily[day] for p in members)
        for m in members:
            own = m.daily[day]
            med = median_without(values, own)
            if med < cfg.peer_min_median_wh:
                continue
            theft = own * 100 < cfg.peer_theft_pct * med
            low, high = own * 100 < cfg.peer_low_pct * med, own * 100 > cfg.peer_high_pct * med
            if not (low or high):
                continue
            pct = round(100 * own / med, 1)
            evidence = {"day": _date(day), "wh": own, "peer_median_wh": med, "peers": len(members) - 1,
                        "tariff_id": tariff_id, "zone": zone, "ratio_pct": pct,
                        "low_pct": cfg.peer_low_pct, "high_pct": cfg.peer_high_pct,
                        "theft_pct": cfg.peer_theft_pct}  # fmt: skip
            summary = "import on %s %d Wh is %s %% of the median of %d peers (%s, zone %s)" % (
                _date(day), own, pct, len(members) - 1, tariff_id, zone)  # fmt: skip
            if theft:
                summary += ": suspected theft"
                action = "Suspected theft: send a field crew to inspect the meter and take a manual reading."
            elif low:
                action = "Far below similar accounts: check the meter and the premises' occupancy."
            else:
                action = "Far above similar accounts: check for a fault or a misclassified account."
            out.append(Candidate("fluctuation_peers", m.meter_id, "critical" if theft else "warning", summary,
                                 action, evidence, theft=theft))  # fmt: skip
    return out


def zero_consumption(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    if m.account is None or m.meter.get("online") != 1:
        return []
    run = zero_run(m.usable)
    if run is None:
        return []
    first, last = run
    span = last["ts"] - first["ts"]
    rows = [r for r in m.usable if first["ts"] <= r["ts"] <= last["ts"]]
    if span < cfg.zero_hours * 3600 or any(r["flags"] & FLAG_RELAY_OPEN for r in rows):
        return []
    evidence = {"since_ts": first["ts"], "last_ts": last["ts"], "hours": round(span / 3600, 1),
                "import_wh": total_imp(last), "readings": len(rows), "first_seq": first["seq"],
                "last_seq": last["seq"]}  # fmt: skip
    summary = "no import since %s (%.1f h) while online with the relay closed" % (
        iso(first["ts"]),
        span / 3600,
    )
    action = "Check for a bypass, a stopped meter or a vacant premises; take a manual reading."
    return [Candidate("zero_consumption", m.meter_id, "warning", summary, action, evidence)]


def clock_drift(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    """The last reading received (by the head-end's clock) against its arrival: a live reading
    is made at its ts and sent at once, so ts far from ``received_at`` is the meter's clock. A
    reading with the backlog flag (bit 4: made offline or behind a queue) may arrive any time
    later, so only a ts *ahead* of its arrival counts for it."""
    r = m.last
    if r is None:
        return []
    offset = r["ts"] - r["received_at"]  # > 0: the meter's clock is ahead
    if not (offset > cfg.clock_drift_s or (-offset > cfg.clock_drift_s and not r["flags"] & FLAG_BACKLOG)):
        return []
    evidence = {"seq": r["seq"], "ts": r["ts"], "received_at": r["received_at"], "offset_s": round(offset),
                "flags": r["flags"], "threshold_s": cfg.clock_drift_s}  # fmt: skip
    summary = "meter clock %s by %d s (reading seq %d, ts %s, received %s)" % (
        "ahead" if offset > 0 else "behind", abs(offset), r["seq"], iso(r["ts"]),
        iso(r["received_at"]))  # fmt: skip
    action = "Send a time sync command; if the clock drifts again, check the meter's RTC."
    return [Candidate("clock_drift", m.meter_id, "warning", summary, action, evidence)]


def _expected_open(cmd: dict, events: list[dict], at: int) -> tuple[bool, list[dict]]:
    """The relay state the head-end expects at meter time ``at``: the command's, unless the
    meter opened it itself afterwards (event 6, reason credit/load/tamper) and maybe closed it
    again itself (event 7). Also the events that changed the expectation."""
    state = cmd["args"].get("0", cmd["args"].get(0))
    expected, own_open, used = state == 0, False, []
    for e in events:
        if not cmd["ack_ts"] < e["ts"] <= at:
            continue
        reason = (e.get("detail") or {}).get("0", (e.get("detail") or {}).get(0, 0))
        if e["code"] == EVT_RELAY_OPENED and reason != 0:
            expected, own_open = True, True
            used.append(e)
        elif e["code"] == EVT_RELAY_CLOSED and own_open:
            expected, own_open = False, False
            used.append(e)
    return expected, used


def relay_mismatch(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    cmd = m.relay
    if cmd is None or cmd.get("ack_ts") is None:
        return []
    after = [r for r in m.readings if r["ts"] > cmd["ack_ts"]]
    if not after:
        return []
    r = after[-1]
    expected, used = _expected_open(cmd, m.events, r["ts"])
    actual = bool(r["flags"] & FLAG_RELAY_OPEN)
    if actual == expected:
        return []
    word = {True: "open", False: "closed"}
    evidence = {
        "command": {"seq": cmd["seq"], "state": word[cmd["args"].get("0", cmd["args"].get(0)) == 0],
                    "ack_ts": cmd["ack_ts"]},
        "reading": {"seq": r["seq"], "ts": r["ts"], "flags": r["flags"], "relay": word[actual]},
        "expected": word[expected],
        "meter_events": [{k: e.get(k) for k in ("seq", "ts", "code", "detail")} for e in used],
    }  # fmt: skip
    summary = "relay %s but expected %s (command seq %d acked at %s)" % (
        word[actual], word[expected], cmd["seq"], iso(cmd["ack_ts"]))  # fmt: skip
    action = "Re-send the relay command; if it persists, inspect the relay (fault or bypass)."
    return [Candidate("relay_mismatch", m.meter_id, "critical", summary, action, evidence)]


def balance_mismatch(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    b = m.balance
    if b is None or b["in_flight"]:
        return []
    diff = b["meter_balance"] - b["expected"]
    if abs(diff) <= cfg.balance_tolerance:
        return []
    evidence = {
        "seq": b["seq"],
        "ts": b["ts"],
        "meter_balance": b["meter_balance"],
        "ledger_balance": b["expected"],
        "difference": diff,
        "tolerance": cfg.balance_tolerance,
    }
    summary = "meter balance %d differs from the ledger's %d by %+d milli-units (reading seq %d)" % (
        b["meter_balance"], b["expected"], diff, b["seq"])  # fmt: skip
    action = (
        "Look for an undelivered or twice-applied top-up and the meter's prices; run `headend prepaid "
        "sync` and adjust the ledger with a reason."
    )
    return [Candidate("balance_mismatch", m.meter_id, "warning", summary, action, evidence)]


def low_balance(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    with_balance = [r for r in m.readings if r.get("balance") is not None]
    r = with_balance[-1] if with_balance else None
    since = r["ts"] if r else None
    evs = [e for e in m.events if e["code"] in (EVT_LOW_BALANCE, EVT_CREDIT_EXHAUSTED)
           and (since is None or e["ts"] > since)]  # fmt: skip
    low = r is not None and r["balance"] < cfg.low_balance
    if not (low or evs):
        return []
    exhausted = (r is not None and r["balance"] < 0) or any(e["code"] == EVT_CREDIT_EXHAUSTED for e in evs)
    evidence = {
        "reading": {"seq": r["seq"], "ts": r["ts"], "balance": r["balance"]} if r else None,
        "threshold": cfg.low_balance,
        "events": [{k: e.get(k) for k in ("seq", "ts", "code")} for e in evs[-20:]],
    }
    summary = ("credit exhausted or on emergency credit" if exhausted else "low balance") + (
        " (balance %d milli-units)" % r["balance"] if r else " (meter event)")  # fmt: skip
    action = "Remind the customer to top up; the meter disconnects when its credit runs out."
    return [
        Candidate("low_balance", m.meter_id, "warning" if exhausted else "info", summary, action, evidence)
    ]


def vee_failures(m: MeterInput, cfg: AlertConfig, now: float) -> list[Candidate]:
    if not m.vee_failed:
        return []
    rows = m.vee_failed
    seqs = sorted({r["seq"] for r in rows})
    evidence = {"count": len(seqs), "seqs": seqs[-100:], "failures": rows[-20:]}
    summary = "%d reading(s) failed validation and were not estimated or edited (last seq %d at %s)" % (
        len(seqs), rows[-1]["seq"], iso(rows[-1]["ts"]))  # fmt: skip
    action = "Review them (`headend readings`), correct with `headend vee edit`, or take a manual reading."
    return [Candidate("vee_failures", m.meter_id, "warning", summary, action, evidence)]


METER_RULES = (
    comm_loss, tamper, reverse_energy, line_neutral_mismatch, fluctuation_history, zero_consumption,
    clock_drift, clock_step, relay_mismatch, balance_mismatch, low_balance, vee_failures, metering_ic_fault,
)  # fmt: skip
FLEET_RULES = (fluctuation_peers,)
assert RULE_NAMES == tuple(f.__name__ for f in METER_RULES + FLEET_RULES), "model.RULE_NAMES is stale"
EVENT_RULES = frozenset(
    ("tamper", "reverse_energy", "line_neutral_mismatch", "clock_step", "metering_ic_fault")
)


def evaluate(inputs: list[MeterInput], cfg: AlertConfig, now: float) -> list[Candidate]:
    """Every enabled rule's candidates, meter rules first, in a stable order."""
    out = []
    for m in inputs:
        for rule in METER_RULES:
            if rule.__name__ not in cfg.disabled_rules:
                out.extend(rule(m, cfg, now))
    for rule in FLEET_RULES:
        if rule.__name__ not in cfg.disabled_rules:
            out.extend(rule(inputs, cfg, now))
    return out
