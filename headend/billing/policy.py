"""Bill-run policy: thresholds of the strong constraints, review sampling, outbox delivery.

``load_policy(source)`` takes None (defaults), a dict, or a TOML file path; a ``[billrun]``
table is used when present, else the top level. Unknown keys, wrong types and values out
of range raise ``PolicyError`` naming the field. Example::

    [billrun]
    batch_size = 1000
    max_estimated_days = 3          # estimated data in the cycle, at most this many days ...
    max_estimated_pct = 10          # ... and this share of the cycle
    estimated_boundary = true       # a cycle's first/last interval may be an estimate
    fluctuation_pct = 50            # hold when kWh differs from the history average by more ...
    fluctuation_floor_kwh = "50"    # ... and by more than this many kWh
    history_cycles = 3              # average over up to this many previous released bills
    min_history_cycles = 1          # fewer: no fluctuation check
    register_tolerance_wh = 1       # boundary register deltas vs the load-profile sum per rate
    review_sample_pct = "5"         # share of regular-zone bills sampled for review
    review_seed = 42                # optional: fixed sample seed (default: random, recorded)
    workers = 0                     # pricing processes; 0: auto (one per CPU on large runs), 1: none
    [outbox]
    smtp_host = "localhost"
    smtp_port = 25
    mail_from = "billing@utility.example"
    max_attempts = 5
    backoff_s = 60                  # first retry after this, doubling, at most backoff_max_s
    backoff_max_s = 3600
    timeout_s = 10
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from headend.errors import PolicyError  # noqa: F401


@dataclass(frozen=True)
class OutboxPolicy:
    smtp_host: str = "localhost"
    smtp_port: int = 25
    mail_from: str = "billing@localhost"
    max_attempts: int = 5
    backoff_s: int = 60
    backoff_max_s: int = 3600
    timeout_s: int = 10


@dataclass(frozen=True)
class Policy:
    batch_size: int = 1000
    max_estimated_days: int = 3
    max_estimated_pct: int = 10
    estimated_boundary: bool = True
    fluctuation_pct: int = 50
    fluctuation_floor_kwh: Decimal = Decimal(50)
    history_cycles: int = 3
    min_history_cycles: int = 1
    register_tolerance_wh: int = 1
    review_sample_pct: Decimal = Decimal(5)
    review_seed: int | None = None
    workers: int = 0
    outbox: OutboxPolicy = field(default_factory=OutboxPolicy)

    def as_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = (
                dataclasses.asdict(v) if f.name == "outbox" else str(v) if isinstance(v, Decimal) else v
            )
        return out


_RANGES = {
    "batch_size": (1, 100_000),
    "max_estimated_days": (0, 31),
    "max_estimated_pct": (0, 100),
    "fluctuation_pct": (1, 10_000),
    "fluctuation_floor_kwh": (0, 10**9),
    "history_cycles": (1, 120),
    "min_history_cycles": (1, 120),
    "register_tolerance_wh": (0, 10**9),
    "review_sample_pct": (0, 100),
    "review_seed": (0, 2**63 - 1),
    "workers": (0, 64),
    "smtp_port": (1, 65535),
    "max_attempts": (1, 100),
    "backoff_s": (0, 86400),
    "backoff_max_s": (0, 7 * 86400),
    "timeout_s": (1, 600),
}


def _value(cls, name: str, value, where: str):
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise PolicyError("%s must be true or false, not %r" % (where, value), where)
        return value
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise PolicyError("%s must be a non-empty string" % where, where)
        return value
    if kind == "Decimal":
        try:
            value = Decimal(str(value)) if not isinstance(value, bool) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite():
            raise PolicyError("%s must be a decimal number" % where, where)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError("%s must be an integer, not %r" % (where, value), where)
    lo, hi = _RANGES[name]
    if not lo <= value <= hi:
        raise PolicyError("%s must be %s..%s, not %s" % (where, lo, hi, value), where)
    return value


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise PolicyError("%s must be a table" % prefix.rstrip("."), prefix.rstrip("."))
    names = {f.name for f in dataclasses.fields(cls)} - {"outbox"}
    kwargs = {}
    for key, value in data.items():
        where = prefix + key
        if key == "outbox" and cls is Policy:
            kwargs["outbox"] = _build(OutboxPolicy, value, "outbox.")
        elif key not in names:
            raise PolicyError(
                "%s: unknown policy field (allowed: %s)" % (where, ", ".join(sorted(names))), where
            )
        else:
            kwargs[key] = _value(cls, key, value, where)
    return cls(**kwargs)


def load_policy(source=None) -> Policy:
    if source is None:
        return Policy()
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise PolicyError("%s: not valid TOML: %s" % (path, e))
    data = dict(data)
    if "billrun" in data:
        outbox = data.pop("outbox", None)
        data = dict(data.pop("billrun"))
        if outbox is not None:
            data["outbox"] = outbox
    policy = _build(Policy, data, "")
    if policy.min_history_cycles > policy.history_cycles:
        raise PolicyError("min_history_cycles must not exceed history_cycles", "min_history_cycles")
    return policy
