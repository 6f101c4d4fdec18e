"""Args maps of the operator's commands (docs/protocol.md cmd 2, 4, 5, 6) from command-line input.

Each builder returns the int-keyed wire map (``protocol.commands`` builders); the queue
checks it with ``protocol.commands.command_args`` before sealing. Parsers turn operator
text into wire values and raise ``CommandError`` naming the option:

``parse_time(text, now, option)``    ``now``, epoch seconds or ISO 8601 (UTC unless offset).
``parse_money(text, option)``        decimal currency units -> milli-units (0..10**9).
``parse_friendly_hours(text)``       ``"0:22:00-24:00,5:00:00-08:00"`` (weekday 0 = Monday,
    ``HH:MM-HH:MM``, end up to 24:00), a JSON list of ``[weekday, start_minute,
    end_minute]``, or ``none`` (clear them all).
``describe_args(cmd, named)``        ``command_args``'s result as JSON-friendly names.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal

from headend.errors import CommandError
from protocol import commands, messages
from protocol import tariff_calendar as tc

RELAY_REASONS = {
    "operator": commands.REASON_OPERATOR,
    "credit": commands.REASON_CREDIT,
    "load-limit": commands.REASON_LOAD_LIMIT,
    "tamper": commands.REASON_TAMPER,
}
MAX_SETTING = 10**9  # milli-units: low balance, emergency credit (firmware.prepaid.MAX_SETTING)
_MONEY = re.compile(r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,3})?$")
_HOURS = re.compile(r"^([0-6]):([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})$")


def relay(open_: bool, reason: str = "operator") -> dict:
    if reason not in RELAY_REASONS:
        raise CommandError(
            "--reason must be one of %s, got %r" % (", ".join(RELAY_REASONS), reason), "reason"
        )
    return commands.relay_args(commands.RELAY_OPEN if open_ else commands.RELAY_CLOSE, RELAY_REASONS[reason])


def time_sync(ts: int) -> dict:
    return commands.time_sync_args(ts)


def read_now() -> dict:
    return {}


def config(
    interval: int | None = None,
    low_balance: int | None = None,
    emergency_credit: int | None = None,
    friendly_hours: list | None = None,
) -> dict:
    args = commands.config_args(interval, low_balance, emergency_credit, friendly_hours)
    if not args:
        raise CommandError(
            "set config needs at least one of --interval, --low-balance, --emergency-credit,"
            " --friendly-hours",
            "args",
        )
    return args


# ---------------------------------------------------------------- parsers


def parse_time(text: str, now: float, option: str = "--ts") -> int:
    """Unix seconds of ``now``, an integer, or an ISO 8601 time (UTC unless it has an offset)."""
    if text == "now":
        return int(now)
    try:
        value = int(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise CommandError(
                "%s must be now, epoch seconds or an ISO 8601 time, got %r" % (option, text), option[2:]
            )
        value = int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())
    if not 0 <= value <= messages.UINT_MAX:
        raise CommandError("%s must not be before 1970, got %r" % (option, text), option[2:])
    return value


def parse_money(text: str, option: str) -> int:
    """Milli-units of a decimal amount of currency units, 0..1000000 ("12.5" -> 12500)."""
    if not _MONEY.match(text):
        raise CommandError(
            "%s must be currency units with at most 3 decimals, e.g. 5 or 12.50, got %r" % (option, text),
            option[2:],
        )
    milli = int(Decimal(text) * 1000)
    if milli > MAX_SETTING:
        raise CommandError(
            "%s must be at most %d units, got %r" % (option, MAX_SETTING // 1000, text), option[2:]
        )
    return milli


def _minute(h: str, m: str, entry: str) -> int:
    hh, mm = int(h), int(m)
    if mm > 59 or hh > 24 or (hh == 24 and mm):
        raise CommandError("--friendly-hours %r: no such time of day %s:%s" % (entry, h, m), "friendly_hours")
    return hh * 60 + mm


def parse_friendly_hours(text: str) -> list[list[int]]:
    """Friendly hours as [[weekday, start_minute, end_minute], ...] (checked again by command_args)."""
    text = text.strip()
    if text.lower() == "none":
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise CommandError("--friendly-hours is not valid JSON: %s" % e, "friendly_hours")
        if not isinstance(value, list):
            raise CommandError(
                "--friendly-hours JSON must be a list of [weekday, start, end]", "friendly_hours"
            )
        return value
    out = []
    for i, entry in enumerate(text.split(",")):
        entry = entry.strip()
        m = _HOURS.match(entry)
        if not m:
            raise CommandError(
                "--friendly-hours entry %d %r must be WEEKDAY:HH:MM-HH:MM (weekday 0..6, Monday 0),"
                " e.g. 0:22:00-24:00" % (i + 1, entry),
                "friendly_hours[%d]" % i,
            )
        start, end = _minute(m[2], m[3], entry), _minute(m[4], m[5], entry)
        if end <= start:
            raise CommandError(
                "--friendly-hours entry %d %r must end after it starts; split one that crosses"
                " midnight, e.g. 0:22:00-24:00,1:00:00-06:00" % (i + 1, entry),
                "friendly_hours[%d]" % i,
            )
        out.append([int(m[1]), start, end])
    return out


# ---------------------------------------------------------------- display


def describe_args(cmd: int, named: dict) -> dict:
    """The args ``command_args`` returned, keyed and valued for people and JSON."""
    if cmd == messages.CMD_RELAY:
        reasons = {v: k for k, v in RELAY_REASONS.items()}
        out = {"state": "open" if named["state"] == commands.RELAY_OPEN else "close"}
        if "reason" in named:
            out["reason"] = reasons[named["reason"]]
        return out
    if cmd == messages.CMD_SET_TARIFF:
        return {tc.FIELD_NAMES[k]: v for k, v in sorted(named["tariff"].items()) if k < len(tc.FIELD_NAMES)}
    out = dict(named)
    if "key" in out:  # set config key 4 (a key rotation): never shown
        out["key"] = "(new key)"
    return out
