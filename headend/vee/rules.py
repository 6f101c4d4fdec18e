"""Validation rules: pure functions over a meter's readings, its rating, the config and now.

Every rule has the signature ``rule(readings, meter, cfg, now) -> list[Result]``
and reports only what is NOT a pass (a reading with no result from a rule passed
it). ``readings`` are dicts as the storage gives them (``seq``, ``ts``,
``interval``, ``imp``, ``exp``, ``q``, ``flags``, ``received_at``; optional
``imp_total``/``exp_total`` where a meter reports a total register and
``interval_imp`` where it reports the interval's energy per rate), in any order.
``meter`` may carry ``rates``, ``imax_ma``, ``un_mv``, ``interval``,
``export_allowed``. A result is keyed by ``(ts, rule)``: one per reading per
rule (day rules report on the reading that closes the day, the duplicate rule
once per repeated ts, naming every repeat in ``seqs``).

A ``fail`` takes the reading out of the interval series (its interval gets
estimated); a ``warn`` makes it ``suspect`` but keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator

from headend.vee.config import VeeConfig
from headend.vee.registers import deltas, on_grid, ordered
from headend.vee.result import FLAG_BACKLOG, FLAG_CLOCK_UNSYNCED, Result, expected_interval
from headend.vee.rules_daily import high_low, spike, zero_consumption


def _regs(r: dict) -> list[int]:
    return list(r["imp"]) + list(r["exp"]) + list(r["q"])


def _reg_name(r: dict, i: int) -> str:
    n_imp, n_exp = len(r["imp"]), len(r["exp"])
    if i < n_imp:
        return "imp[%d]" % i
    return "exp[%d]" % (i - n_imp) if i < n_imp + n_exp else "q[%d]" % (i - n_imp - n_exp)


def chain(readings: list[dict], cfg: VeeConfig) -> Iterator[tuple[dict, dict | None, str | None, bool]]:
    """(reading, reference, problem, rolled) in ts order, the reference being the last
    earlier reading whose registers did not go wrong: a single bad value fails alone."""
    ref = None
    for r in ordered(readings)[0]:
        regs = _regs(r)
        big = [i for i, x in enumerate(regs) if x >= cfg.register_modulus_wh]
        if big:
            yield (
                r,
                ref,
                "%s = %d is not below the register modulus" % (_reg_name(r, big[0]), regs[big[0]]),
                False,
            )
            continue
        if ref is None:
            ref = r
            yield r, None, None, False
            continue
        old = _regs(ref)
        if len(old) != len(regs):
            yield (
                r,
                ref,
                "register count changed from %d to %d since seq %d" % (len(old), len(regs), ref["seq"]),
                False,
            )
            continue
        d, rolled = deltas(old, regs, cfg)
        if d is None:
            i = next(i for i, (p, c) in enumerate(zip(old, regs, strict=True)) if c < p)
            yield (
                r,
                ref,
                "%s decreased from %d to %d since seq %d" % (_reg_name(r, i), old[i], regs[i], ref["seq"]),
                False,
            )
            continue
        yield r, ref, None, rolled
        ref = r


def registers_monotonic(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    out = []
    for r, _ref, problem, rolled in chain(readings, cfg):
        if problem:
            out.append(Result(r["ts"], "registers_monotonic", "fail", problem, (r["seq"],)))
        elif rolled:
            detail = "register rollover at %d Wh assumed" % cfg.register_modulus_wh
            out.append(Result(r["ts"], "registers_monotonic", "warn", detail, (r["seq"],)))
    return out


def _mismatch(a: int, b: int, modulus: int) -> int:
    d = (a - b) % modulus
    return min(d, modulus - d)


def sum_check(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    out = []
    rows = ordered(readings)[0]
    for prev, r in zip([None] + rows, rows, strict=False):
        problems = []
        if meter.get("rates") and len(r["imp"]) != meter["rates"]:
            problems.append("%d rate registers, the meter has %d rates" % (len(r["imp"]), meter["rates"]))
        for name in ("imp", "exp"):
            total = r.get(name + "_total")
            if (
                total is not None
                and _mismatch(sum(r[name]), total, cfg.register_modulus_wh) > cfg.sum_tolerance_wh
            ):
                problems.append("sum of %s rates %d != total register %d" % (name, sum(r[name]), total))
        energy = r.get("interval_imp")
        if energy is not None and prev is not None and r["ts"] - prev["ts"] == r["interval"]:
            d = deltas(prev["imp"], r["imp"], cfg)[0]
            if (
                d is None
                or len(d) != len(energy)
                or any(abs(a - b) > cfg.sum_tolerance_wh for a, b in zip(d, energy, strict=True))
            ):
                problems.append("interval energy %s != register delta %s" % (list(energy), d))
        if problems:
            out.append(Result(r["ts"], "sum_check", "fail", "; ".join(problems), (r["seq"],)))
    return out


def gap(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    iv = expected_interval(meter, cfg)
    series = [r for r in ordered(readings)[0] if on_grid(r, iv)]
    out = []
    for prev, r in zip(series, series[1:], strict=False):
        if r["ts"] - prev["ts"] > iv:
            missing = (r["ts"] - prev["ts"]) // iv - 1
            detail = "%d interval(s) missing since ts %d (seq %d)" % (missing, prev["ts"], prev["seq"])
            out.append(Result(r["ts"], "gap", "warn", detail, (r["seq"],)))
    return out


def duplicate(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    by_ts: dict[int, list[tuple[dict, dict]]] = {}
    for rep, first in ordered(readings)[1]:
        by_ts.setdefault(rep["ts"], []).append((rep, first))
    out = []
    for ts, pairs in sorted(by_ts.items()):
        first = pairs[0][1]
        conflicts = [rep["seq"] for rep, _ in pairs if _regs(rep) != _regs(first)]
        seqs = tuple(rep["seq"] for rep, _ in pairs)
        if conflicts:
            detail = "seq %s conflict(s) with seq %d at the same ts" % (
                ", ".join(map(str, conflicts)),
                first["seq"],
            )
            out.append(Result(ts, "duplicate", "fail", detail, seqs))
        else:
            detail = "seq %s repeat(s) seq %d" % (", ".join(map(str, seqs)), first["seq"])
            out.append(Result(ts, "duplicate", "warn", detail, seqs))
    return out


def interval_length(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    iv = expected_interval(meter, cfg)
    out = []
    for r in ordered(readings)[0]:
        if r["ts"] % iv:
            detail = "off-grid reading (ts not a multiple of %d s): kept out of the interval series" % iv
            out.append(Result(r["ts"], "interval_length", "warn", detail, (r["seq"],)))
        elif r["interval"] != iv:
            detail = "interval %d s, expected %d s" % (r["interval"], iv)
            out.append(Result(r["ts"], "interval_length", "fail", detail, (r["seq"],)))
    return out


def clock_drift(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    out = []
    for r in ordered(readings)[0]:
        ahead = r["ts"] - min(r["received_at"], now)
        late = r["received_at"] - r["ts"]
        if ahead > cfg.clock_drift_s:
            res = ("fail", "ts is %d s ahead of the receive time" % ahead)
        elif r["flags"] & FLAG_CLOCK_UNSYNCED:
            res = ("warn", "the meter reports its clock unsynchronised")
        elif late > cfg.max_delivery_delay_s and not r["flags"] & FLAG_BACKLOG:
            res = ("warn", "received %d s after ts without the backlog flag: clock behind?" % late)
        else:
            continue
        out.append(Result(r["ts"], "clock_drift", res[0], res[1], (r["seq"],)))
    return out


def reverse_flow(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    if meter.get("export_allowed"):
        return []
    out = []
    for r, ref, problem, _ in chain(readings, cfg):
        if ref is None or problem:
            continue
        e = sum(deltas(ref["exp"], r["exp"], cfg)[0])
        if e > cfg.reverse_flow_wh:
            detail = "%d Wh exported since seq %d on a meter without export" % (e, ref["seq"])
            out.append(Result(r["ts"], "reverse_flow", "warn", detail, (r["seq"],)))
    return out


def impossible_power(readings, meter, cfg: VeeConfig, now: int) -> list[Result]:
    imax_ma = meter.get("imax_ma")
    if not imax_ma:
        return []  # rating unknown: nothing to check against
    un_mv = meter.get("un_mv") or cfg.default_un_mv
    out = []
    for r, ref, problem, _ in chain(readings, cfg):
        dt = 0 if ref is None else r["ts"] - ref["ts"]
        if problem or dt <= 0:
            continue
        for name in ("imp", "exp"):
            wh = sum(deltas(ref[name], r[name], cfg)[0])
            # average W = wh*3600/dt > imax_ma/1000 * un_mv/1000 * pct/100, in integers
            if wh * 3600 * 10**8 > imax_ma * un_mv * cfg.power_margin_pct * dt:
                limit = imax_ma * un_mv * cfg.power_margin_pct // 10**8
                detail = "%s: average %d W over %d s exceeds %d W (imax x un x %d %%)" % (
                    name, wh * 3600 // dt, dt, limit, cfg.power_margin_pct)  # fmt: skip
                out.append(Result(r["ts"], "impossible_power", "fail", detail, (r["seq"],)))
                break
    return out


RULES = (
    registers_monotonic, sum_check, gap, duplicate, interval_length, clock_drift,
    zero_consumption, high_low, spike, reverse_flow, impossible_power,
)  # fmt: skip
RULE_NAMES = tuple(f.__name__ for f in RULES)


def validate(readings: list[dict], meter: dict, cfg: VeeConfig, now: int) -> list[Result]:
    """Every rule's non-pass results, sorted by (ts, rule)."""
    out = []
    for rule in RULES:
        out.extend(rule(readings, meter, cfg, now))
    return sorted(out, key=lambda r: (r.ts, r.rule))
