"""Fleet simulator inputs: the fault script and each meter's load scenario (tools/fleet_sim.py uses them).

Fault script (``--faults FILE``): ``{"faults": [...]}`` or a bare list; times
are hours after the simulation's start (floats), ``meter`` is a meter id or a
0-based index into the fleet (sorted by id):

    {"kind": "broker_outage", "at": 20, "hours": 6}
        the simulator stops its Mosquitto at ``at`` and starts it again
        ``hours`` later (emulated time; every meter is held at both instants)
    {"kind": "power_cut", "meter": 1, "at": 30}
        SIGKILL of that meter's firmware process at ``at``; it restarts at
        once from its flash (clock and state as last persisted)
    {"kind": "tamper", "meter": "m-0001", "at": 10, "hours": 1, "switch": "cover" | "magnet"}
        the terminal-cover or magnet switch is active for ``hours``
    {"kind": "theft", "meter": 2, "at": 36, "hours": 4, "mode": "bypass" | "drop", "share": 0.5}
        bypass: ``share`` of the load bypasses the line CT (line current
        (1 - share) x load, neutral current the full load: an L/N mismatch,
        ATM90E26 meters only); drop: consumption falls to (1 - share) x load

Load profile (``meter_segments``): one segment per clock hour (cut at fault
window edges), current = the meter's peak x a residential daily shape
(night trough, morning and evening peaks) x gaussian noise (sd ``NOISE``),
voltage 230 V +- noise, a fixed per-meter lag of 5..30 degrees. Every
random number comes from ``random.Random("<seed>:<meter_id>[:<hour>]")``,
so a meter's load at a given hour is the same whatever the run's start.
"""

from __future__ import annotations

import json
import math
import random

HOUR = 3600
SHAPE = (  # share of the meter's peak current by hour of day (UTC)
    0.30, 0.25, 0.22, 0.22, 0.25, 0.35, 0.60, 0.80, 0.70, 0.50, 0.45, 0.45,
    0.50, 0.45, 0.40, 0.45, 0.60, 0.85, 1.00, 1.00, 0.90, 0.75, 0.55, 0.40,
)  # fmt: skip
NOISE = 0.15
KINDS = {
    "broker_outage": {"kind", "at", "hours"},
    "power_cut": {"kind", "at", "meter"},
    "tamper": {"kind", "at", "hours", "meter", "switch"},
    "theft": {"kind", "at", "hours", "meter", "mode", "share"},
}
REQUIRED = {
    "broker_outage": ("at", "hours"),
    "power_cut": ("at", "meter"),
    "tamper": ("at", "hours", "meter"),
    "theft": ("at", "hours", "meter"),
}


class FaultError(ValueError):
    """A fault script the simulator cannot play; the message names the entry and field."""


def _num(where, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise FaultError("%s: expected a number %s..%s, got %r" % (where, lo, hi, v))
    return float(v)


def load_faults(path: str) -> list:
    try:
        with open(path) as f:
            obj = json.load(f)
    except OSError as e:
        raise FaultError("cannot read fault script %s: %s" % (path, e.strerror)) from None
    except ValueError as e:
        raise FaultError("fault script %s is not valid JSON: %s" % (path, e)) from None
    return obj


def parse_faults(obj, meters: list[dict], hours: float) -> list[dict]:
    """Check a fault script against the fleet; faults with ``meter`` resolved to an id, ``at_s``/``end_s``
    in seconds after the start. ``meters``: [{"meter_id", "frontend"}] in fleet order."""
    if isinstance(obj, dict):
        if set(obj) - {"faults"}:
            raise FaultError("faults: unknown key(s) %s" % ", ".join(sorted(set(obj) - {"faults"})))
        obj = obj.get("faults", [])
    if not isinstance(obj, list):
        raise FaultError('faults: expected a list or {"faults": [...]}')
    by_id = {m["meter_id"]: m for m in meters}
    out = []
    for i, f in enumerate(obj):
        w = "faults[%d]" % i
        if not isinstance(f, dict) or f.get("kind") not in KINDS:
            raise FaultError("%s.kind: expected one of %s" % (w, ", ".join(sorted(KINDS))))
        kind = f["kind"]
        extra = set(f) - KINDS[kind]
        if extra:
            raise FaultError("%s.%s: unknown key for %s" % (w, sorted(extra)[0], kind))
        for k in REQUIRED[kind]:
            if k not in f:
                raise FaultError("%s.%s: required for %s" % (w, k, kind))
        at = _num(w + ".at", f["at"], 0, hours)
        if at >= hours:
            raise FaultError("%s.at: %s h is not before the end of the run (%s h)" % (w, at, hours))
        dur = _num(w + ".hours", f["hours"], 1.0 / 60, hours) if "hours" in f else 0.0
        g = {"kind": kind, "at_s": int(round(at * HOUR)), "end_s": int(round((at + dur) * HOUR))}
        if "meter" in f:
            m = f["meter"]
            if isinstance(m, int) and not isinstance(m, bool):
                if not 0 <= m < len(meters):
                    raise FaultError("%s.meter: index %d, the fleet has %d meters" % (w, m, len(meters)))
                m = meters[m]["meter_id"]
            if m not in by_id:
                raise FaultError("%s.meter: %r is not in the fleet" % (w, m))
            g["meter"] = m
        if kind == "tamper":
            g["switch"] = f.get("switch", "cover")
            if g["switch"] not in ("cover", "magnet"):
                raise FaultError('%s.switch: expected "cover" or "magnet", got %r' % (w, g["switch"]))
        if kind == "theft":
            g["mode"] = f.get("mode", "bypass")
            if g["mode"] not in ("bypass", "drop"):
                raise FaultError('%s.mode: expected "bypass" or "drop", got %r' % (w, g["mode"]))
            g["share"] = _num(w + ".share", f.get("share", 0.5), 0.05, 1.0)
            if g["mode"] == "bypass" and by_id[g["meter"]]["frontend"] != "atm90e26":
                raise FaultError(
                    "%s: a bypass (L/N mismatch) needs the atm90e26 front end's neutral channel; meter %s"
                    " has %s (use mode drop)" % (w, g["meter"], by_id[g["meter"]]["frontend"])
                )
        if kind == "broker_outage" and g["end_s"] > hours * HOUR:
            raise FaultError("%s.hours: the outage must end before the end of the run" % w)
        out.append(g)
    return out


def _meter_traits(seed, meter_id):
    rng = random.Random("%s:%s" % (seed, meter_id))
    return rng.uniform(4.0, 14.0), rng.uniform(5.0, 30.0), rng.randint(-1, 1)


def hourly_load(seed, meter_id: str, hour: int) -> tuple[float, float, float]:
    """(urms V, irms A, phase_deg) of a meter during absolute hour ``hour`` (unix s // 3600)."""
    peak, phase, shift = _meter_traits(seed, meter_id)
    rng = random.Random("%s:%s:%d" % (seed, meter_id, hour))
    shape = SHAPE[(hour + shift) % 24]
    irms = max(0.05, peak * shape * rng.gauss(1.0, NOISE))
    urms = min(240.0, max(220.0, rng.gauss(230.0, 2.0)))
    return round(urms, 2), round(irms, 3), round(phase + rng.uniform(-2.0, 2.0), 2)


def meter_segments(seed, meter_id: str, start: int, end: int, faults: list[dict]) -> list[dict]:
    """Scenario segments covering [start, end) for one meter, with its tamper/theft windows applied."""
    mine = [f for f in faults if f.get("meter") == meter_id and f["kind"] in ("tamper", "theft")]
    cuts = {start, end}
    t = (start // HOUR + 1) * HOUR
    while t < end:
        cuts.add(t)
        t += HOUR
    for f in mine:
        for edge in (start + f["at_s"], start + f["end_s"]):
            if start < edge < end:
                cuts.add(edge)
    edges = sorted(cuts)
    segs = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        urms, irms, phase = hourly_load(seed, meter_id, a // HOUR)
        seg = {"seconds": b - a, "urms": urms, "irms": irms, "phase_deg": phase}
        for f in mine:
            if start + f["at_s"] <= a < start + f["end_s"]:
                if f["kind"] == "tamper":
                    seg[f["switch"]] = 1
                elif f["mode"] == "bypass":
                    seg["irms_n"] = irms
                    seg["irms"] = round(irms * (1 - f["share"]), 3)
                else:
                    seg["irms"] = round(irms * (1 - f["share"]), 3)
        segs.append(seg)
    return segs


def daily_kwh(seed, meter_id: str) -> float:
    """The meter's mean daily energy without noise (for the summary), kWh."""
    peak, phase, _shift = _meter_traits(seed, meter_id)
    return sum(230.0 * peak * s for s in SHAPE) * math.cos(math.radians(phase)) / 1000.0
