"""A year's annual bill total for many accounts under one tariff: the calendar once, the sums in C.

Every account of a tariff comparison has intervals ``t0 + k * interval`` (k < n) for the year:
``plan(tariff, interval, t0, n)`` (cached on the tariff) walks the tariff for those intervals
once, with the engine's own steps (``intervals._groups``: the runs of one local month under one
version; ``segments.layout``: each run's periods by index range), and keeps what every account
shares: the segment boundaries (the start of each run of one period in one run), which
(run, period) each segment adds to, and each month's fixed and minimum charges.
``Plan.annual_total(wh)`` then takes one account's Wh (a numpy int64 array of the n
intervals): the sums per segment and per (run, period) are two ``np.add.reduceat`` calls, and
only the month lines are Decimal: the energy charge of each run (the one tier the window stays
in, or one tier table shared by the run's periods split at its bounds, else the engine's
time-order walk on that run), rounded as ``engine.bill_intervals`` rounds it, plus the month's
fixed line, its demand line (each month's peak and each TOU demand period's, by
``np.maximum.reduceat`` over the month's demand layout, priced by ``engine._demand``) and its
minimum, and the annual minimum. The result is the sum of ``bill_intervals``' monthly totals,
to the cent, with the same Decimal operations on the same exact values
(tests/headend/test_billing_plan.py checks it against ``bill_intervals`` on random profiles
and tariffs).

A tariff the engine refuses for these intervals (no version in force, a period that changes
inside an interval) raises the engine's ``BillingError`` from ``annual_total``.
``annual_total`` returns None for a profile it leaves to the engine: a negative interval with
tiers in time order (the engine's per-interval walk), or sums that could overflow int64.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

import numpy as np

from headend.billing.calendar import days_in_month, month_seconds, year_seconds
from headend.billing.engine import PRECISION, _demand, _prorated_energy
from headend.billing.intervals import (
    _groups,
    _Month,
    _one_tier,
    _split_units,
    _Tables,
    _time_order,
    bound_decimals,
    layouts,
    split_error,
)
from headend.billing.segments import layout
from headend.billing.tariff.model import Tariff
from headend.errors import BillingError

ZERO = Decimal(0)
CACHE_MAX = 64  # plans kept per tariff


class _Run:
    """One run of intervals in one local month under one version: ``keys`` its (period, index
    into the per-(run, period) sums) in the order the engine's ``sums`` has them (first
    appearance, by the layout's ``pick``)."""

    __slots__ = ("i0", "i1", "vi", "key", "dim", "lay", "periods", "shared")

    def __init__(self, i0, i1, vi, key, dim, lay, periods, shared):
        self.i0, self.i1, self.vi, self.key, self.dim = i0, i1, vi, key, dim
        self.lay, self.periods, self.shared = lay, periods, shared


class Plan:
    def __init__(self, tariff: Tariff, interval: int, t0: int, n: int):
        self.tariff, self.interval, self.n = tariff, interval, n
        self.error: BillingError | None = None
        self.decimals = max(3, bound_decimals(tariff))
        self.scale = 10 ** (self.decimals - 3)
        ts = range(t0, t0 + n * interval, interval)
        self._ym: list[tuple[int, int]] = []
        try:
            groups = _groups(tariff, ts)
            lays = layouts(tariff, interval, ts, groups)
            self._demand_layouts(ts, groups)
        except BillingError as e:
            self.error = e
            return
        self.tables = _Tables(tariff, self.decimals)
        starts, keys, vp = [], [], 0
        self.months: list[tuple] = []  # (year, month, [runs], fixed line, minimum, version shares)
        annual: dict[int, Decimal] = {}
        q = tariff.minor_unit
        with localcontext(prec=PRECISION):
            for (i0, i1, y, m, vi), lay in zip(groups, lays, strict=True):
                if not self.months or self.months[-1][:2] != (y, m):
                    self.months.append((y, m, [], {}))
                runs, covered = self.months[-1][2], self.months[-1][3]
                periods = {}
                for p in lay.pick:
                    periods[p] = vp
                    vp += 1
                for lo, _hi, p in lay.ranges:
                    starts.append(i0 + lo)
                    keys.append(periods[p])
                key = (y, m) if tariff.tier_basis == "monthly" else y
                dim = days_in_month(y, m)
                tables = [self.tables.get(vi, p, dim) for p in periods]
                shared = tables[0][1] and all(t[0] == tables[0][0] for t in tables)
                runs.append(_Run(i0, i1, vi, key, dim, lay, list(periods.items()), shared))
                covered[vi] = covered.get(vi, 0) + interval * (i1 - i0)
            for k, (y, m, runs, covered) in enumerate(self.months):
                ms = month_seconds(y, m)
                fixed, minimum = ZERO, ZERO
                for vi, seconds in covered.items():
                    v = tariff.versions[vi]
                    share = Decimal(seconds) / ms
                    fixed += v.fixed_monthly * share + v.fixed_daily * seconds / 86400
                    minimum += v.min_monthly * share
                    annual[y] = annual.get(y, ZERO) + v.min_annual * seconds / year_seconds(y)
                shares = [(vi, tariff.versions[vi], Decimal(s) / ms) for vi, s in covered.items()]
                self.months[k] = (
                    y,
                    m,
                    runs,
                    fixed.quantize(q, ROUND_HALF_UP),
                    minimum.quantize(q, ROUND_HALF_UP),
                    shares,
                )
            self.hours = Decimal(interval) / 3600
            self.no_demand = ZERO.quantize(q, ROUND_HALF_UP)
            self.annual = {y: x.quantize(q, ROUND_HALF_UP) for y, x in annual.items()}
        self.starts = np.array(starts, dtype=np.intp)
        order = np.argsort(np.array(keys, dtype=np.intp), kind="stable")
        self.order = order
        self.key_starts = np.searchsorted(np.array(keys, dtype=np.intp)[order], np.arange(vp))
        self.limit = (2**63 - 1) // max(1, n * self.scale)

    def _demand_layouts(self, ts, groups) -> None:
        """Each month's TOU demand periods per version (the engine's ``_tou_peaks``: the version's
        demand calendar over the whole month) as segments for ``np.maximum.reduceat``, one
        layer per version (a layer's segments tile [0, n), fillers keyed -1 where it has none)."""
        t = self.tariff
        self.any_demand = any(v.demand or any(v.flat_demand) for v in t.versions)
        if not self.any_demand:
            return
        bounds: list[tuple[int, int]] = []  # month (i0, i1), in order
        covered: list[dict] = []
        for i0, i1, y, m, vi in groups:
            if not bounds or self._ym[-1] != (y, m):
                bounds.append((i0, i1))
                covered.append({})
                self._ym.append((y, m))
            bounds[-1] = (bounds[-1][0], i1)
            covered[-1][vi] = True
        self.month_starts = np.array([b[0] for b in bounds], dtype=np.intp)
        layers: dict[int, list[tuple[int, int]]] = {}
        self.month_tou: list[list[tuple[int, list[tuple[int, int]]]]] = []
        nkeys = 0
        for (mi0, mi1), vis in zip(bounds, covered, strict=True):
            tou = []
            for vi in vis:
                v = t.versions[vi]
                if not v.demand:
                    continue
                lay = layout(v.demand_calendar, ts, mi0, mi1, self.interval)
                if lay.bad is not None:
                    raise split_error("demand", ts[mi0 + lay.bad], self.interval, t.utc_offset)
                keys = {q: nkeys + k for k, q in enumerate(lay.pick)}
                nkeys += len(keys)
                segs = layers.setdefault(vi, [])
                if not segs and mi0 > 0:  # a filler before the layer's first month
                    segs.append((0, -1))
                elif segs and segs[-1][0] == mi0:  # no gap since its last month: no filler
                    segs.pop()
                segs.extend((mi0 + lo, keys[q]) for lo, _hi, q in lay.ranges)
                segs.append((mi1, -1))  # the layer's end so far
                tou.append((vi, list(keys.items())))
            self.month_tou.append(tou)
        self.layers = []
        for segs in layers.values():
            if segs[-1][0] >= self.n:
                segs.pop()
            starts = np.array([a for a, _ in segs], dtype=np.intp)
            keys = np.array([k for _, k in segs], dtype=np.intp)
            pick = np.flatnonzero(keys >= 0)
            order = pick[np.argsort(keys[pick], kind="stable")]
            distinct = np.unique(keys[order])
            self.layers.append((starts, order, np.searchsorted(keys[order], distinct), distinct))
        self.nkeys = nkeys

    def _peaks(self, wh) -> tuple[list, list]:
        """(each month's peak, each (month, version, demand period)'s peak) in units."""
        month = np.maximum.reduceat(wh, self.month_starts).tolist()
        peaks = [0] * self.nkeys
        for starts, order, key_starts, keys in self.layers:
            got = np.maximum.reduceat(np.maximum.reduceat(wh, starts)[order], key_starts).tolist()
            for k, u in zip(keys.tolist(), got, strict=True):
                peaks[k] = u
        return month, peaks

    def annual_total(self, wh: np.ndarray) -> Decimal | None:
        """The sum of ``bill_intervals``' monthly totals for Wh ``wh`` (see the module doc)."""
        if self.error is not None:
            raise self.error
        t = self.tariff
        lo, hi = int(wh.min()), int(wh.max())
        if hi > self.limit or -lo > self.limit:
            return None
        nonneg = lo >= 0
        time_order = t.tier_mode == "time_order"
        if time_order and not nonneg:
            return None
        if self.scale != 1:
            wh = wh * self.scale
        vp = np.add.reduceat(np.add.reduceat(wh, self.starts)[self.order], self.key_starts).tolist()
        q, d = t.minor_unit, self.decimals
        if self.any_demand:
            month_peak, peaks = self._peaks(wh)
        window: dict = {}
        years: dict[int, Decimal] = {}
        with localcontext(prec=PRECISION):
            hours = self.hours

            def kw(u: int) -> Decimal:
                return Decimal(u).scaleb(-d) / hours

            for k, (y, m, runs, fixed, minimum, shares) in enumerate(self.months):
                charge, units, tier_start = ZERO, 0, None
                by_vp = {} if not time_order else None
                for run in runs:
                    sums = {p: vp[j] for p, j in run.periods}
                    total = sum(sums.values())
                    before = window.get(run.key, 0)
                    if tier_start is None:
                        tier_start = before
                    if time_order:
                        charge += self._energy(run, sums, before, total, wh)
                    else:
                        for p, s in sums.items():
                            by_vp[(run.vi, p)] = by_vp.get((run.vi, p), 0) + s
                    units += total
                    window[run.key] = before + total
                if time_order:
                    energy = charge.scaleb(-d)
                else:
                    mo = _Month(y, m, 0, units=units, tier_start=tier_start, by_vp=by_vp)
                    energy = _prorated_energy(t, mo, lambda u: Decimal(u).scaleb(-d))
                if self.any_demand:
                    tou = {vi: {p: peaks[key] for p, key in keys} for vi, keys in self.month_tou[k]}
                    tou_units = [u for x in tou.values() for u in x.values()]
                    peak = kw(max(tou_units) if tou_units else month_peak[k])
                    demand = ZERO
                    for vi, v, share in shares:
                        demand += _demand(v, m, peak, tou.get(vi), kw) * share
                    demand = demand.quantize(q, ROUND_HALF_UP)
                else:
                    demand = self.no_demand
                subtotal = energy.quantize(q, ROUND_HALF_UP) + fixed + demand
                total = subtotal + max(ZERO, minimum - subtotal).quantize(q)
                years[y] = years.get(y, ZERO) + total
            out = ZERO
            for y, total in years.items():
                minimum = self.annual.get(y, ZERO)
                out += minimum if minimum and minimum - total > 0 else total
        return out

    def _energy(self, run: _Run, sums: dict, before: int, total: int, wh) -> Decimal:
        """The time-order energy charge (rate x units) of one run, as ``intervals._time_order``
        (no interval negative)."""
        tables = self.tables
        charge = ZERO
        for p, s in sums.items():
            rate = _one_tier(*tables.get(run.vi, p, run.dim), before, before + total)
            if rate is None:
                break
            charge += rate * s
        else:
            return charge
        if run.shared:  # one rising table: the window's units split at its bounds, in any order
            charge = ZERO
            for rate, part in _split_units(before, total, tables.get(run.vi, run.periods[0][0], run.dim)[0]):
                charge += rate * part
            return charge
        mu = wh[run.i0 : run.i1].tolist()
        return _time_order(tables, run.vi, run.lay, mu, sums, before, total, run.dim, True)


def plan(tariff: Tariff, interval: int, t0: int, n: int) -> Plan:
    """The cached ``Plan`` of ``tariff`` for intervals ``t0 + k * interval`` (k < n)."""
    cache = tariff.__dict__.setdefault("_plans", {})
    key = (interval, t0, n)
    got = cache.get(key)
    if got is None:
        if len(cache) >= CACHE_MAX:
            cache.clear()
        got = cache[key] = Plan(tariff, interval, t0, n)
    return got
