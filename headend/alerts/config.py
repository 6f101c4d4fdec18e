"""Alert thresholds: defaults, loading from a dict or a TOML/JSON file, validation.

``load_config(source)`` takes None (defaults), a dict, or a path ending in ``.toml`` or
``.json``; an ``[alerts]`` table (``"alerts"`` key) is used when present, else the top
level. Unknown keys, wrong types and out-of-range values raise ``AlertError`` naming the
field. Time in seconds, energy in Wh, money in milli-units, ratios in integer percent (so
thresholds compare exactly). Example::

    [alerts]
    comm_loss_intervals = 4        # no reading received for this many intervals
    fluct_low_pct = 30             # a day below 30 % of the median of the previous days
    peer_theft_pct = 10            # below 10 % of the peer median: suspected theft
    notify_email = "ops@utility.example"
    disabled_rules = ["fluctuation_peers"]
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from headend.alerts.model import RULE_NAMES
from headend.config_file import settings
from headend.errors import AlertError

DAY = 86400


@dataclass(frozen=True)
class AlertConfig:
    interval_s: int = 900  # reading interval when a meter's readings do not say
    lookback_days: int = 16  # readings this far back are read (covers the history windows)
    comm_loss_intervals: int = 4  # no reading received for this many intervals: comm_loss
    comm_loss_critical_s: int = DAY  # silent or offline this long: critical
    event_window_s: int = 7 * DAY  # events received this long before now are considered
    magnet_baseline_s: int = 7 * DAY  # import rate before a magnet event, over this span
    magnet_after_min_s: int = 6 * 3600  # judge a drop only this long after the event
    theft_drop_pct: int = 50  # import rate after the magnet event below this % of before: theft
    clock_drift_s: int = 300  # reading ts off its receive time by more (not a backlog read)
    clock_step_s: int = 600  # event 11 moving the clock by more
    zero_hours: int = 24  # no import increase for this long on an active account
    fluct_history_days: int = 14  # days before the last whole day whose median is the reference
    fluct_min_history_days: int = 7  # fewer days with data: no verdict
    fluct_low_pct: int = 30  # last day below this % of the reference median
    fluct_high_pct: int = 300  # ... or above this %
    fluct_min_median_wh: int = 500  # reference median below this: too small to judge
    peer_min_accounts: int = 5  # a peer group (same tariff and zone) needs this many with data
    peer_low_pct: int = 30  # last day below this % of the peer median
    peer_high_pct: int = 300  # ... or above this %
    peer_theft_pct: int = 10  # below this %: suspected theft (work order)
    peer_min_median_wh: int = 500
    day_boundary_tolerance_s: int = 3600  # a day's usage needs a reading this close to each midnight
    utc_offset_minutes: int = 0  # local midnight for daily usage
    balance_tolerance: int = 100  # milli-units between meter and ledger balance
    low_balance: int = 10_000  # milli-units: balance below this is low
    vee_window_s: int = 7 * DAY  # failed readings this recent
    notify_email: str | None = None  # staff address for new warning/critical alerts
    notify_webhook: str | None = None  # staff webhook; neither: the console channel
    disabled_rules: tuple[str, ...] = ()


_RANGES = {
    "interval_s": (1, DAY),
    "lookback_days": (1, 3660),
    "comm_loss_intervals": (1, 10**6),
    "comm_loss_critical_s": (1, 3660 * DAY),
    "event_window_s": (1, 3660 * DAY),
    "magnet_baseline_s": (3600, 3660 * DAY),
    "magnet_after_min_s": (0, 3660 * DAY),
    "theft_drop_pct": (0, 100),
    "clock_drift_s": (0, 365 * DAY),
    "clock_step_s": (0, 365 * DAY),
    "zero_hours": (1, 24 * 3660),
    "fluct_history_days": (1, 3660),
    "fluct_min_history_days": (1, 3660),
    "fluct_low_pct": (0, 100),
    "fluct_high_pct": (100, 10**6),
    "fluct_min_median_wh": (0, 10**9),
    "peer_min_accounts": (2, 10**6),
    "peer_low_pct": (0, 100),
    "peer_high_pct": (100, 10**6),
    "peer_theft_pct": (0, 100),
    "peer_min_median_wh": (0, 10**9),
    "day_boundary_tolerance_s": (0, DAY),
    "utc_offset_minutes": (-14 * 60, 14 * 60),
    "balance_tolerance": (0, 10**12),
    "low_balance": (-(10**12), 10**12),
    "vee_window_s": (1, 3660 * DAY),
}


def _check(name: str, value):
    if name in _RANGES:
        lo, hi = _RANGES[name]
        if type(value) is not int or not lo <= value <= hi:
            raise AlertError("%s: must be an integer %d..%d, got %r" % (name, lo, hi, value), name)
        return value
    if name == "disabled_rules":
        if not isinstance(value, list | tuple) or any(not isinstance(v, str) for v in value):
            raise AlertError("disabled_rules: must be a list of rule names, got %r" % (value,), name)
        bad = [v for v in value if v not in RULE_NAMES]
        if bad:
            raise AlertError(
                "disabled_rules: unknown rule %r (rules: %s)" % (bad[0], ", ".join(RULE_NAMES)), name
            )
        return tuple(value)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise AlertError("%s: must be a non-empty string, got %r" % (name, value), name)
    if name == "notify_webhook" and value and not value.startswith(("http://", "https://")):
        raise AlertError("notify_webhook: must be an http:// or https:// URL, got %r" % value, name)
    return value


def from_dict(values: dict) -> AlertConfig:
    """An AlertConfig from a dict of overrides, every value checked."""
    if not isinstance(values, dict):
        raise AlertError("alerts config: must be a table/object, got %r" % (values,), "alerts")
    known = {f.name for f in fields(AlertConfig)}
    kw = {}
    for name, value in values.items():
        if name not in known:
            raise AlertError("%s: unknown alert setting" % (name,), name)
        kw[name] = _check(name, value)
    cfg = AlertConfig(**kw)
    if cfg.fluct_min_history_days > cfg.fluct_history_days:
        raise AlertError(
            "fluct_min_history_days: must not exceed fluct_history_days", "fluct_min_history_days"
        )
    if cfg.lookback_days < cfg.fluct_history_days + 2:
        raise AlertError("lookback_days: must be at least fluct_history_days + 2", "lookback_days")
    if cfg.lookback_days * DAY < cfg.event_window_s + cfg.magnet_baseline_s:
        raise AlertError(
            "lookback_days: must cover event_window_s + magnet_baseline_s (%d s)"
            % (cfg.event_window_s + cfg.magnet_baseline_s),
            "lookback_days",
        )
    if cfg.peer_theft_pct > cfg.peer_low_pct:
        raise AlertError("peer_theft_pct: must not exceed peer_low_pct", "peer_theft_pct")
    return cfg


def load_config(source: dict | str | Path | None = None) -> AlertConfig:
    """Defaults (None), a dict of overrides, or a .toml/.json file of them."""
    if source is None:
        return AlertConfig()
    return from_dict(settings(source, "alerts", AlertError))
