"""The load profile: energy per rate per 15 minutes and per hour, ready for billing.

Units: integer Wh (``wh_imp``, ``wh_exp``), never floats: register deltas are
exact integers and billing converts to kWh in Decimal at the very end.

Base slots are the meter's intervals:
  * ``real``: a register delta between two consecutive series readings exactly
    one interval apart (rollover handled by ``registers.deltas``);
  * ``estimated``: an estimate row (estimation fills the gaps; nothing here is
    invented: a slot with neither a measurement nor an estimate is absent);
  * ``edited``: an operator's value, which takes precedence over both.
A profile slot of resolution R (a multiple of the interval, aligned to local
time) exists only if every base slot in it exists; it sums them and its source
is the "worst" of theirs (edited > estimated > real).

Rows (one per slot and rate, rates numbered from 1)::

    {"interval_start", "rate", "wh_imp", "wh_exp", "source"}
"""

from __future__ import annotations

from headend.vee.config import VeeConfig
from headend.vee.registers import deltas

RANK = {"real": 0, "estimated": 1, "edited": 2}


def measured_intervals(series: list[dict], iv: int, cfg: VeeConfig) -> dict[int, tuple[list[int], list[int]]]:
    """slot end -> (imp Wh per rate, exp Wh per rate) for consecutive readings one interval apart."""
    out = {}
    for a, b in zip(series, series[1:], strict=False):
        if b["ts"] - a["ts"] == iv:
            d_imp, d_exp = deltas(a["imp"], b["imp"], cfg)[0], deltas(a["exp"], b["exp"], cfg)[0]
            if d_imp is not None and d_exp is not None:
                out[b["ts"]] = (d_imp, d_exp)
    return out


def base_slots(measured: dict, estimates: list[dict], edits: dict[int, dict]) -> dict[int, tuple]:
    """slot end -> (imp, exp, source): measurements, estimates, then edits over both."""
    slots = {end: (imp, exp, "real") for end, (imp, exp) in measured.items()}
    for e in estimates:
        slots.setdefault(e["interval_end"], (e["imp"], e["exp"], "estimated"))
    for end, e in edits.items():
        old = slots.get(end)
        exp = e.get("exp") if e.get("exp") is not None else (old[1] if old else [0] * len(e["imp"]))
        slots[end] = (list(e["imp"]), list(exp), "edited")
    return slots


def aggregate(slots: dict[int, tuple], iv: int, resolution: int, cfg: VeeConfig) -> list[dict]:
    """Profile rows of one resolution from the base slots."""
    off = cfg.utc_offset_minutes * 60
    buckets: dict[int, list[tuple]] = {}
    for end in sorted(slots):
        start = ((end - iv + off) // resolution) * resolution - off
        buckets.setdefault(start, []).append(slots[end])
    rows = []
    for start, parts in sorted(buckets.items()):
        n = len(parts[0][0])
        if len(parts) != resolution // iv or any(len(p[0]) != n or len(p[1]) != n for p in parts):
            continue
        source = max((p[2] for p in parts), key=RANK.__getitem__)
        for rate in range(n):
            rows.append({
                "interval_start": start, "rate": rate + 1, "source": source,
                "wh_imp": sum(p[0][rate] for p in parts), "wh_exp": sum(p[1][rate] for p in parts),
            })  # fmt: skip
    return rows


def build_profile(measured: dict, estimates: list[dict], edits: dict[int, dict], iv: int,
                  cfg: VeeConfig) -> dict[int, list[dict]]:  # fmt: skip
    """resolution (s) -> rows, for each configured resolution the interval divides."""
    slots = base_slots(measured, estimates, edits)
    return {r: aggregate(slots, iv, r, cfg) for r in cfg.profile_resolutions if r % iv == 0}
