"""The strong constraints a bill must meet before it is issued, and review selection.

Pure functions over plain data: each returns the reasons (text) a bill must be held for,
an empty list when it passes. ``Usage`` is what a bill run gathered for one account and
cycle (integer Wh; seconds of data by source).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal, getcontext

from headend.billing.policy import Policy

REAL_STATES = ("valid", "suspect", "edited")  # a reading VEE accepted (edited: by an operator)
DAY = 86400


@dataclass
class Usage:
    wh_by_rate: dict[int, int] = field(default_factory=dict)
    min_wh: int = 0  # the smallest interval (or register delta) energy seen
    interval_s: int = 0  # 0: from boundary registers, no load profile
    intervals: int = 0  # intervals with data
    expected: int = 0  # intervals the cycle (and the account's meter links) should have
    seconds: dict[str, int] = field(default_factory=lambda: {"real": 0, "estimated": 0, "edited": 0})
    first_source: str | None = None  # source of the cycle's first / last interval, None: missing
    last_source: str | None = None
    register_wh: dict[int, int] | None = None  # per-rate delta of the boundary reads, when usable
    boundary: list[str] = field(default_factory=list)  # problems with the boundary reads
    vee: dict[str, int] = field(default_factory=dict)  # vee_state -> readings 'failed'/'pending'


def constraint_reasons(u: Usage, cycle_s: int, policy: Policy) -> list[str]:
    reasons: list[str] = []
    if u.min_wh < 0 or any(wh < 0 for wh in u.wh_by_rate.values()):
        reasons.append(
            "negative consumption (%d Wh in one interval or rate)" % min(u.min_wh, *u.wh_by_rate.values())
        )
    if u.interval_s and u.intervals < u.expected:
        reasons.append(
            "incomplete data: %d of %d intervals of %d s" % (u.intervals, u.expected, u.interval_s)
        )
    reasons += registers_add_up(u, policy)
    reasons += u.boundary
    reasons += estimated_within_policy(u, cycle_s, policy)
    if u.vee.get("failed"):
        reasons.append("unresolved VEE failure: %d failed readings in the cycle" % u.vee["failed"])
    if u.vee.get("pending"):
        reasons.append("%d readings in the cycle not validated yet (run VEE)" % u.vee["pending"])
    return reasons


def registers_add_up(u: Usage, policy: Policy) -> list[str]:
    """Per-rate load-profile sums against the boundary register deltas, and their total."""
    if u.register_wh is None or not u.interval_s or u.register_wh == u.wh_by_rate:
        return []  # equal: every difference is 0, within any tolerance
    tol = policy.register_tolerance_wh
    out = []
    for rate in sorted(set(u.register_wh) | set(u.wh_by_rate)):
        a, b = u.wh_by_rate.get(rate, 0), u.register_wh.get(rate, 0)
        if abs(a - b) > tol:
            out.append("rate T%d: load profile %d Wh but boundary registers %d Wh" % (rate, a, b))
    total, regs = sum(u.wh_by_rate.values()), sum(u.register_wh.values())
    if abs(total - regs) > tol:
        out.append("rate registers add up to %d Wh, the load-profile total is %d Wh" % (regs, total))
    return out


def estimated_within_policy(u: Usage, cycle_s: int, policy: Policy) -> list[str]:
    out = []
    est = u.seconds.get("estimated", 0)
    if est > policy.max_estimated_days * DAY or est * 100 > policy.max_estimated_pct * cycle_s:
        out.append(
            "estimated data %.2f days (%.1f %%) beyond policy (at most %d days and %d %%)"
            % (est / DAY, est * 100 / cycle_s, policy.max_estimated_days, policy.max_estimated_pct)
        )
    if u.interval_s and not policy.estimated_boundary:
        for name, src in (("first", u.first_source), ("last", u.last_source)):
            if src == "estimated":
                out.append(
                    "the cycle's %s interval is an estimate (policy: boundary reads must be real)" % name
                )
    return out


def fluctuation_reasons(kwh: Decimal, history: list[str], policy: Policy) -> list[str]:
    """Hold when consumption strays from the average of previous cycles by more than
    ``fluctuation_pct`` percent and more than ``fluctuation_floor_kwh``."""
    if len(history) < policy.min_history_cycles:
        return []
    avg = _average(history)
    dev = abs(kwh - avg)
    if dev > policy.fluctuation_floor_kwh and dev * 100 > avg * policy.fluctuation_pct:
        pct = "%+.0f %%" % ((kwh - avg) * 100 / avg) if avg else "from zero"
        return [
            "consumption %s kWh is %s vs the average %s kWh of %d previous cycles"
            " (policy: within %d %% or %s kWh)"
            % (
                kwh,
                pct,
                avg.quantize(Decimal("0.001")),
                len(history),
                policy.fluctuation_pct,
                policy.fluctuation_floor_kwh,
            )
        ]
    return []


_AVERAGES: dict[tuple, Decimal] = {}


def _average(history: list[str]) -> Decimal:
    """The mean of the history's kWh, computed once per distinct history (and context)."""
    ctx = getcontext()
    key = (ctx.prec, ctx.rounding, *history)
    avg = _AVERAGES.get(key)
    if avg is None:
        avg = sum(Decimal(h) for h in history) / len(history)
        if len(_AVERAGES) < 65536:
            _AVERAGES[key] = avg
    return avg


def sample_threshold(pct: Decimal) -> int:
    return int(pct * 2**64 / 100)


def sampled(seed: int, cycle: str, account_id: str, threshold: int) -> bool:
    """Whether a regular-zone bill is in the review sample: a keyed hash of (seed, cycle,
    account), so the sample is the same however a run is split into batches or resumed."""
    h = hashlib.blake2b(("%d:%s:%s" % (seed, cycle, account_id)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") < threshold
