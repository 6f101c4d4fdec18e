"""The console's input line -> an ``Action`` (pure: no broker, no SQL).

``parse_line(line, now) -> Action | None`` (None for a blank line). Words are split like a
shell (quotes keep spaces); ``key=value`` words are options. Commands (``HELP``):

  relay METER open|close [operator|credit|load-limit|tamper] [ttl=S]
  read-now METER [ttl=S]
  time-sync METER [now|EPOCH|ISO] [ttl=S]
  topup METER AMOUNT [ttl=S]
  config METER [interval=S] [low-balance=AMOUNT] [emergency-credit=AMOUNT]
                [friendly-hours=SPEC] [ttl=S]
  tariff METER FILE [activate-at=ISO|now] [tariff-id=N] [ttl=S]
  filter METER|all      help      quit

Relay, read-now, time-sync and config are built here into the wire args map (the
``headend command`` builders, ``headend.commands.build``) and checked with
``protocol.commands.command_args``; top-up amounts are parsed as ``headend topup`` parses
them; a tariff file is read when the action runs (``headend.console.actions``).
Errors are ``ConsoleError`` naming the command and the bad word.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from headend.commands import build
from headend.errors import CommandError, ConsoleError, PrepaidError
from headend.prepaid.ledger import parse_amount
from protocol import commands, messages, topics
from protocol.errors import ProtocolError

HELP = (
    ("relay METER open|close [REASON] [ttl=S]", "open or close the relay; REASON operator (default),"
     " credit, load-limit or tamper"),
    ("read-now METER [ttl=S]", "ask the meter for a reading now"),
    ("time-sync METER [now|EPOCH|ISO] [ttl=S]", "set the meter's clock (default now)"),
    ("topup METER AMOUNT [ttl=S]", "credit AMOUNT currency units to the meter's prepaid account"),
    ("config METER interval=S low-balance=A emergency-credit=A friendly-hours=SPEC",
     "change settings (any of them; SPEC like 0:22:00-24:00,5:00:00-08:00 or none)"),
    ("tariff METER FILE [activate-at=ISO|now] [tariff-id=N]", "send a tariff file's calendar and prices"),
    ("filter METER|all", "show one meter's messages and alerts, or every meter's"),
    ("help", "this list"),
    ("quit", "leave the console (also Ctrl-D)"),
)  # fmt: skip
VERBS = ("relay", "read-now", "time-sync", "topup", "config", "tariff", "filter", "help", "quit")
ALIASES = {"exit": "quit", "q": "quit", "?": "help", "top-up": "topup", "readnow": "read-now"}
CONFIG_KEYS = ("interval", "low-balance", "emergency-credit", "friendly-hours")
OPTIONS = {
    "relay": ("ttl",),
    "read-now": ("ttl",),
    "time-sync": ("ttl",),
    "topup": ("ttl",),
    "config": (*CONFIG_KEYS, "ttl"),
    "tariff": ("activate-at", "tariff-id", "ttl"),
}
CMD_OF = {
    "relay": messages.CMD_RELAY,
    "read-now": messages.CMD_READ_NOW,
    "time-sync": messages.CMD_TIME_SYNC,
    "config": messages.CMD_SET_CONFIG,
}


@dataclass
class Action:
    """What one input line asks for.

    ``verb`` is one of VERBS. Queued commands: ``meter_id``, ``cmd`` and ``args`` (the
    int-keyed wire map; for tariff None until the file is converted), ``ttl`` (None: the
    type's default); ``amount`` (milli-units) for topup; ``path``, ``activate_at`` (text) and
    ``tariff_id`` for tariff. ``filter``: ``meter_id`` (None = all)."""

    verb: str
    meter_id: str | None = None
    cmd: int | None = None
    args: dict | None = None
    ttl: int | None = None
    amount: int | None = None
    path: str | None = None
    activate_at: str = "now"
    tariff_id: int | None = None
    options: dict = field(default_factory=dict)


def _fail(verb: str, msg: str) -> ConsoleError:
    return ConsoleError("%s: %s" % (verb, msg))


def _usage(verb: str) -> str:
    for syntax, _ in HELP:
        if syntax.split()[0] == verb:
            return syntax
    return verb


def _meter(verb: str, word: str | None) -> str:
    if word is None:
        raise _fail(verb, "missing METER (usage: %s)" % _usage(verb))
    if not topics.meter_id_valid(word):
        raise _fail(verb, "bad meter id %r: 1-32 characters of A-Z a-z 0-9 _ -" % word)
    return word


def _int(verb: str, name: str, text: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _fail(verb, "%s=%s: %s must be a whole number" % (name, text, name))
    if not lo <= value <= hi:
        raise _fail(verb, "%s=%s: %s must be %d..%d" % (name, text, name, lo, hi))
    return value


def _split(verb: str, words: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional words and key=value options (checked against OPTIONS[verb])."""
    allowed = OPTIONS.get(verb, ())
    plain, opts = [], {}
    for w in words:
        if "=" not in w:
            plain.append(w)
            continue
        key, value = w.split("=", 1)
        key = key.strip().lower().replace("_", "-")
        if key not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise _fail(verb, "unknown option %r (options: %s)" % (w, known))
        if key in opts:
            raise _fail(verb, "option %r given twice" % key)
        opts[key] = value
    return plain, opts


def _extra(verb: str, words: list[str]) -> None:
    if words:
        raise _fail(verb, "unexpected word %r (usage: %s)" % (words[0], _usage(verb)))


def _checked(verb: str, action: Action) -> Action:
    """The wire args checked as the queue will check them; errors name the console word."""
    try:
        commands.command_args(action.cmd, action.args)
    except ProtocolError as e:
        raise _fail(verb, str(e))
    return action


def _relay(words: list[str], opts: dict, now: float) -> Action:
    meter = _meter("relay", words[0] if words else None)
    if len(words) < 2:
        raise _fail("relay", "missing open or close (usage: %s)" % _usage("relay"))
    state = words[1].lower()
    if state not in ("open", "close"):
        raise _fail("relay", "%r: the relay state must be open or close" % words[1])
    reason = words[2].lower() if len(words) > 2 else "operator"
    if reason not in build.RELAY_REASONS:
        raise _fail("relay", "%r: the reason must be one of %s" % (words[2], ", ".join(build.RELAY_REASONS)))
    _extra("relay", words[3:])
    return Action("relay", meter, messages.CMD_RELAY, build.relay(state == "open", reason))


def _read_now(words: list[str], opts: dict, now: float) -> Action:
    meter = _meter("read-now", words[0] if words else None)
    _extra("read-now", words[1:])
    return Action("read-now", meter, messages.CMD_READ_NOW, build.read_now())


def _time_sync(words: list[str], opts: dict, now: float) -> Action:
    meter = _meter("time-sync", words[0] if words else None)
    text = words[1] if len(words) > 1 else "now"
    _extra("time-sync", words[2:])
    try:
        ts = build.parse_time(text, now, "time")
    except CommandError:
        raise _fail("time-sync", "%r: the time must be now, epoch seconds or ISO 8601" % text)
    return Action("time-sync", meter, messages.CMD_TIME_SYNC, build.time_sync(ts))


def _topup(words: list[str], opts: dict, now: float) -> Action:
    meter = _meter("topup", words[0] if words else None)
    if len(words) < 2:
        raise _fail("topup", "missing AMOUNT (usage: %s)" % _usage("topup"))
    _extra("topup", words[2:])
    try:
        amount = parse_amount(words[1], "AMOUNT")
    except PrepaidError as e:
        raise _fail("topup", "%r: %s" % (words[1], e))
    return Action("topup", meter, messages.CMD_TOPUP, amount=amount)


def _config(words: list[str], opts: dict, now: float) -> Action:
    meter = _meter("config", words[0] if words else None)
    _extra("config", words[1:])
    given = [k for k in CONFIG_KEYS if k in opts]
    if not given:
        raise _fail(
            "config", "give at least one of %s, e.g. interval=900" % ", ".join(k + "=" for k in CONFIG_KEYS)
        )
    values: dict = {}
    for key in given:
        text = opts[key]
        try:
            if key == "interval":
                values[key] = _int("config", key, text, 1, 86400)
            elif key == "friendly-hours":
                values[key] = build.parse_friendly_hours(text)
            else:
                values[key] = build.parse_money(text, "--" + key)
        except CommandError as e:
            raise _fail("config", "%s=%s: %s" % (key, text, str(e).replace("--", "")))
    args = build.config(
        values.get("interval"), values.get("low-balance"), values.get("emergency-credit"),
        values.get("friendly-hours"),
    )  # fmt: skip
    return Action("config", meter, messages.CMD_SET_CONFIG, args)


def _tariff(words: list[str], opts: dict, now: float) -> Action:
    meter = _meter("tariff", words[0] if words else None)
    if len(words) < 2:
        raise _fail("tariff", "missing FILE (usage: %s)" % _usage("tariff"))
    _extra("tariff", words[2:])
    activate_at = opts.get("activate-at", "now")
    if activate_at != "now":
        try:
            build.parse_time(activate_at, now, "activate-at")
        except CommandError:
            raise _fail("tariff", "activate-at=%s: must be now, epoch seconds or ISO 8601" % activate_at)
    tariff_id = None
    if "tariff-id" in opts:
        tariff_id = _int("tariff", "tariff-id", opts["tariff-id"], 1, 0xFFFFFFFF)
    return Action("tariff", meter, messages.CMD_SET_TARIFF, path=words[1], activate_at=activate_at,
                  tariff_id=tariff_id)  # fmt: skip


def _filter(words: list[str], opts: dict, now: float) -> Action:
    if not words:
        raise _fail("filter", "missing METER or all (usage: %s)" % _usage("filter"))
    _extra("filter", words[1:])
    if words[0].lower() in ("all", "*", "none", "off"):
        return Action("filter")
    return Action("filter", _meter("filter", words[0]))


def _bare(verb: str):
    def parse(words: list[str], opts: dict, now: float) -> Action:
        _extra(verb, words)
        return Action(verb)

    return parse


PARSERS = {
    "relay": _relay,
    "read-now": _read_now,
    "time-sync": _time_sync,
    "topup": _topup,
    "config": _config,
    "tariff": _tariff,
    "filter": _filter,
    "help": _bare("help"),
    "quit": _bare("quit"),
}


def parse_line(line: str, now: float) -> Action | None:
    """The action of one input line; None if it is blank; ConsoleError naming the bad word."""
    try:
        words = shlex.split(line, comments=False)
    except ValueError as e:
        raise ConsoleError("cannot split the line into words: %s" % e)
    if not words:
        return None
    verb = words[0].lower()
    verb = ALIASES.get(verb, verb)
    if verb not in PARSERS:
        raise ConsoleError("unknown command %r (commands: %s; try help)" % (words[0], ", ".join(VERBS)))
    plain, opts = _split(verb, words[1:])
    action = PARSERS[verb](plain, opts, now)
    if "ttl" in opts:
        action.ttl = _int(verb, "ttl", opts["ttl"], 1, 10 * 365 * 86400)
    action.options = opts
    if action.cmd in CMD_OF.values():
        _checked(verb, action)
    return action
