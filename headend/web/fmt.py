"""Readable values for the dashboard's pages (pure text, no HTML): what a person reads in place
of what the storage layer holds.

- ``iso(ts)``: epoch seconds as ISO 8601 UTC, ``2024-03-17T04:00:00Z``;
- ``duration(s)``: seconds as the two largest units, ``6 d 6 h``, ``15 min``, ``-45 s``;
- ``money(milli, currency)``: milli-units of currency as ``12.345 CNY``;
- ``amount(text, currency)``: a decimal string of currency units (bills) as ``78.08 CNY``;
- ``kwh(value)``: a kWh figure (decimal string or number) as ``174.000 kWh``; ``wh(n)`` Wh as kWh;
- ``missing(reason)``: the dash shown for an absent value, with why it is absent;
- ``event_name(code)``: an event code's short name (``tamper cover``);
- ``event_fields(code, detail, currency)``: an event's detail as named ``(label, text)``
  pairs (names from ``headend.console.decode.EVENT_DETAILS``, the protocol's table).

``NONE`` (an em dash) stands for a value that is not there; pages never print ``None``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from headend.console import decode
from headend.prepaid.ledger import units
from protocol import messages

NONE = "\u2014"
UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def iso(ts) -> str:
    """``2024-03-17T04:00:00Z`` (seconds dropped below a second); ``NONE`` for None."""
    if ts is None:
        return NONE
    try:
        return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "%s (not a valid time)" % ts


def iso_day(ts) -> str:
    """``2024-03-17``; ``NONE`` for None."""
    return NONE if ts is None else iso(ts)[:10]


def duration(seconds) -> str:
    """The largest unit and the one below it, when not zero: 540000 -> ``6 d 6 h``, 900 ->
    ``15 min``, 61 -> ``1 min 1 s``, 0 -> ``0 s``; a negative span keeps its sign
    (``-1 h 30 min``); ``NONE`` for None."""
    if seconds is None:
        return NONE
    sign, left = ("-" if seconds < 0 else ""), round(abs(seconds))
    counts = []
    for name, size in UNITS:
        n, left = divmod(left, size)
        counts.append((n, name))
    first = next((i for i, (n, _) in enumerate(counts) if n), len(counts) - 1)
    parts = ["%d %s" % counts[first]]
    if first + 1 < len(counts) and counts[first + 1][0]:
        parts.append("%d %s" % counts[first + 1])
    return sign + " ".join(parts)


def money(milli, currency: str | None = "") -> str:
    """Milli-units of currency as ``12.345 CNY`` (``12.345`` without a currency)."""
    if milli is None:
        return NONE
    if not isinstance(milli, int) or isinstance(milli, bool):
        return str(milli)
    return ("%s %s" % (units(milli), currency or "")).rstrip()


def amount(value, currency: str | None = "") -> str:
    """A bill's decimal amount (text of currency units) with its currency: ``78.08 CNY``."""
    if value is None or value == "":
        return NONE
    return ("%s %s" % (value, currency or "")).rstrip()


def kwh(value, places: int = 3) -> str:
    """A kWh figure as ``174.000 kWh``; ``NONE`` for None."""
    if value is None or value == "":
        return NONE
    try:
        return "%s kWh" % Decimal(str(value)).quantize(Decimal(1).scaleb(-places))
    except (InvalidOperation, ValueError):
        return "%s kWh" % value


def wh(value) -> str:
    """Wh as kWh: 1500 -> ``1.500 kWh``."""
    if value is None:
        return NONE
    return kwh(Decimal(str(value)) / 1000)


def missing(reason: str | None = None) -> str:
    """The dash of an absent value with why: ``— (no readings in the cycle)``."""
    return "%s (%s)" % (NONE, reason) if reason else NONE


# the dashboard's short event names (``EVT_TAMPER_COVER`` -> ``tamper cover``)
EVENT_NAMES = {
    getattr(messages, n): n[4:].lower().replace("_", " ") for n in dir(messages) if n.startswith("EVT_")
}


def event_name(code: int) -> str:
    return EVENT_NAMES.get(code, "event %d" % code)


def event_fields(code: int, detail, currency: str | None = "") -> list[tuple[str, str]]:
    """An event's detail as named pairs: ``[("old", "2024-03-17T02:00:00Z"), ...]``, money in
    the account's currency; a detail without protocol keys (named by whoever stored it)
    keeps its own names."""
    pairs = decode.event_details(code, detail, ts=iso, money=lambda m: money(m, currency))
    return [(_own_name(k), v) for k, v in pairs]


def _own_name(label: str) -> str:
    """``detail in_ma`` -> ``in_ma``: a key someone named needs no ``detail`` before it (an
    undocumented number keeps it: ``detail 5``)."""
    key = label[7:] if label.startswith("detail ") else ""
    return key if key and not key.isdigit() else label


def pairs_text(pairs) -> str:
    """``label: text, label: text``."""
    return ", ".join("%s: %s" % kv for kv in pairs)
