"""VEE thresholds: defaults, loading from a dict, a TOML or a JSON file, validation.

``load_config(source)`` takes None (all defaults), a dict, or a path ending in
``.toml`` or ``.json`` (a ``[vee]`` table / ``"vee"`` key is used when present,
else the top level). Unknown keys, wrong types and out-of-range values raise
``VeeConfigError`` naming the field. Energy in Wh, time in seconds, ratios in
percent (integers, so thresholds compare exactly).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, fields
from pathlib import Path

from headend.config_file import settings
from headend.errors import VeeConfigError

DAY = 86400


@dataclass(frozen=True)
class VeeConfig:
    interval_s: int = 900  # expected reading interval unless the meter row says otherwise
    register_modulus_wh: int = 10**9  # a register wraps to 0 at this value
    rollover_margin_wh: int = 10**6  # a drop is a rollover if prev >= modulus - margin and cur < margin
    sum_tolerance_wh: int = 1  # rate registers vs reported total, interval energy vs register delta
    clock_drift_s: int = 300  # ts ahead of received_at (or of now) by more: fail; unsynced flag: warn
    max_delivery_delay_s: int = 3600  # received later than this after ts without the backlog flag: warn
    zero_span_s: int = DAY  # zero import (relay closed) for at least this long: warn
    history_days: int = 28  # high/low: window of previous whole days for the average daily use
    min_history_days: int = 7  # high/low: fewer whole days in the window: no verdict
    high_pct: int = 300  # day's use above this % of the average: warn
    low_pct: int = 20  # day's use below this % of the average: warn
    spike_ratio_pct: int = 1000  # highest interval above this % of the day's third-highest: warn
    spike_min_wh: int = 100  # ... and at least this much (noise floor)
    reverse_flow_wh: int = 0  # export above this per interval on a meter without export_allowed: warn
    power_margin_pct: int = 120  # average power above imax x un x this %: fail
    default_un_mv: int = 230_000  # nominal voltage when the meter row has none
    linear_max_span_s: int = 7200  # linear interpolation for gaps up to this span between readings
    like_days: int = 3  # like-day estimation averages this many nearest like days
    holidays: tuple[str, ...] = ()  # "YYYY-MM-DD" dates estimated like each other, not as weekdays
    weekend_days: tuple[int, ...] = (5, 6)  # Python weekday numbers (Monday 0)
    utc_offset_minutes: int = 0  # local day boundaries for day rules, like days and hourly buckets
    trailing_grace_s: int = 3600  # estimate past the last reading only for slots older than this
    trailing_max_s: int = 7 * DAY  # ... and at most this far past it
    profile_resolutions: tuple[int, ...] = (900, 3600)


# field -> (min, max) for ints; tuple fields are checked separately
_RANGES = {
    "interval_s": (1, DAY),
    "register_modulus_wh": (1000, 2**63),
    "rollover_margin_wh": (1, 2**62),
    "sum_tolerance_wh": (0, 10**9),
    "clock_drift_s": (0, 30 * DAY),
    "max_delivery_delay_s": (0, 365 * DAY),
    "zero_span_s": (1, 365 * DAY),
    "history_days": (1, 3660),
    "min_history_days": (1, 3660),
    "high_pct": (100, 10**6),
    "low_pct": (0, 100),
    "spike_ratio_pct": (100, 10**6),
    "spike_min_wh": (0, 10**9),
    "reverse_flow_wh": (0, 10**9),
    "power_margin_pct": (1, 10**4),
    "default_un_mv": (1, 10**7),
    "linear_max_span_s": (0, 365 * DAY),
    "like_days": (1, 60),
    "utc_offset_minutes": (-14 * 60, 14 * 60),
    "trailing_grace_s": (0, 365 * DAY),
    "trailing_max_s": (0, 3660 * DAY),
}


def _int(name: str, value) -> int:
    lo, hi = _RANGES[name]
    if type(value) is not int or not lo <= value <= hi:
        raise VeeConfigError("%s: must be an integer %d..%d, got %r" % (name, lo, hi, value), name)
    return value


def _list(name: str, value) -> list:
    if not isinstance(value, list | tuple):
        raise VeeConfigError("%s: must be a list, got %r" % (name, value), name)
    return list(value)


def _holidays(value) -> tuple[str, ...]:
    out = []
    for i, d in enumerate(_list("holidays", value)):
        try:
            out.append(datetime.date.fromisoformat(d).isoformat())
        except (TypeError, ValueError):
            raise VeeConfigError("holidays[%d]: must be a YYYY-MM-DD date, got %r" % (i, d), "holidays")
    return tuple(sorted(set(out)))


def _int_list(name: str, value, lo: int, hi: int) -> tuple[int, ...]:
    items = _list(name, value)
    for i, x in enumerate(items):
        if type(x) is not int or not lo <= x <= hi:
            raise VeeConfigError("%s[%d]: must be an integer %d..%d, got %r" % (name, i, lo, hi, x), name)
    return tuple(sorted(set(items)))


def from_dict(values: dict) -> VeeConfig:
    """A VeeConfig from a dict of overrides, every value checked."""
    if not isinstance(values, dict):
        raise VeeConfigError("vee config: must be a table/object, got %r" % (values,), "vee")
    known = {f.name for f in fields(VeeConfig)}
    kw = {}
    for name, value in values.items():
        if name not in known:
            raise VeeConfigError("%s: unknown VEE setting" % (name,), name)
        if name == "holidays":
            kw[name] = _holidays(value)
        elif name == "weekend_days":
            kw[name] = _int_list(name, value, 0, 6)
        elif name == "profile_resolutions":
            kw[name] = _int_list(name, value, 60, DAY)
        else:
            kw[name] = _int(name, value)
    cfg = VeeConfig(**kw)
    if DAY % cfg.interval_s:
        raise VeeConfigError("interval_s: must divide a day (86400 s), got %d" % cfg.interval_s, "interval_s")
    if 2 * cfg.rollover_margin_wh >= cfg.register_modulus_wh:
        raise VeeConfigError(
            "rollover_margin_wh: must be below half of register_modulus_wh", "rollover_margin_wh"
        )
    if cfg.min_history_days > cfg.history_days:
        raise VeeConfigError("min_history_days: must not exceed history_days", "min_history_days")
    for r in cfg.profile_resolutions:
        if DAY % r:
            raise VeeConfigError("profile_resolutions: %d does not divide a day" % r, "profile_resolutions")
    return cfg


def load_config(source: dict | str | Path | None = None) -> VeeConfig:
    """Defaults (None), a dict of overrides, or a .toml/.json file of them."""
    if source is None:
        return VeeConfig()
    return from_dict(settings(source, "vee", VeeConfigError))
