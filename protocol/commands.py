"""Command arguments (docs/protocol.md, command table): checks and builders.

Command codes are ``CMD_*`` in ``protocol.messages`` (imported here too);
``ARGS`` holds the checks per code.

Contract:
  ``command_args(cmd, args, validate_tariff=None) -> dict``  the args map of command ``cmd``
      checked and returned keyed by name (below). Bad arguments raise
      ``ProtocolError`` whose field starts with ``"args"`` (the meter acks
      result 4); an unknown ``cmd`` raises ``UnsupportedCommand`` (field
      ``"cmd"``; the meter acks result 5). Unknown arg keys are ignored.
  Builders of the int-keyed args maps: ``topup_args``, ``relay_args``,
      ``time_sync_args``, ``config_args`` (set-tariff args are the tariff map
      itself, see ``protocol.tariff_calendar``; read-now takes ``{}``).

Returned names per command:
  1 top-up      ``topup_id``, ``amount``
  2 relay       ``state`` (RELAY_OPEN / RELAY_CLOSE), ``reason`` (REASON_*)
  3 set tariff  ``tariff`` (the normalized int-keyed map from
                ``validate_tariff``), ``id``, ``activate_at``
  4 time sync   ``ts``
  5 read now    nothing: ``{}``
  6 set config  any of ``interval``, ``low_balance``, ``emergency_limit``,
                ``friendly_hours`` (list of [weekday, start_minute, end_minute])
"""

from protocol.errors import ProtocolError
from protocol.messages import (
    CMD_READ_NOW,
    CMD_RELAY,
    CMD_SET_CONFIG,
    CMD_SET_TARIFF,
    CMD_TIME_SYNC,
    CMD_TOPUP,
    check_int,
    check_rows,
    fail,
    is_list,
)

RELAY_OPEN = 0
RELAY_CLOSE = 1
REASON_OPERATOR = 0
REASON_CREDIT = 1
REASON_LOAD_LIMIT = 2
REASON_TAMPER = 3

MAX_FRIENDLY_HOURS = 32  # entries
KEY_SIZE = 32  # set config key 4: a meter's new key
MINUTES_PER_DAY = 1440

# Per command: "args", then (key, name, check) triples as in protocol.messages.SCHEMA;
# the set-tariff map and friendly hours (set config key 3) are checked in code.
# fmt: off
ARGS = {
    CMD_TOPUP: ("args", 0, "topup_id", "U", 1, "amount", "U"),
    CMD_RELAY: ("args", 0, "state", "B", 1, "reason", "O"),
    CMD_SET_TARIFF: ("args",),
    CMD_TIME_SYNC: ("args", 0, "ts", "U"),
    CMD_READ_NOW: ("args",),
    CMD_SET_CONFIG: ("args", 0, "interval", "d", 1, "low_balance", "s", 2, "emergency_limit", "u"),
}
# fmt: on


class UnsupportedCommand(ProtocolError):
    """A command code this implementation does not know (ack result 5)."""


def topup_args(topup_id, amount):
    return {0: topup_id, 1: amount}


def relay_args(state, reason=REASON_OPERATOR):
    return {0: state, 1: reason}


def time_sync_args(ts):
    return {0: ts}


def config_args(interval=None, low_balance=None, emergency_limit=None, friendly_hours=None, key=None):
    """Set config args; ``key`` (32 bytes, extension key 4) rotates the meter's key and may only
    travel inside COSE_Encrypt0 (docs/protocol-extensions.md)."""
    out = {}
    for k, v in ((0, interval), (1, low_balance), (2, emergency_limit), (3, friendly_hours), (4, key)):
        if v is not None:
            out[k] = [list(e) for e in v] if k == 3 else v
    return out


def _set_tariff(args, out, validate_tariff):
    if validate_tariff is None:
        from protocol.tariff_calendar import validate_tariff  # on first use: it is a big module
    try:
        tariff = validate_tariff(args)
    except ProtocolError as e:
        old = e.field or "tariff"
        field = "args" + old[6:] if old.startswith("tariff") else "args." + old
        msg = str(e)
        if msg.startswith(old + ": "):
            msg = msg[len(old) + 2 :]
        raise ProtocolError("%s: %s" % (field, msg), field)
    out["tariff"] = tariff
    out["id"] = tariff[0]
    out["activate_at"] = tariff[1]


def _friendly_hours(x):
    field = "args.friendly_hours"
    if not is_list(x) or len(x) > MAX_FRIENDLY_HOURS:
        fail(field, "must be a list of at most %d [weekday, start_minute, end_minute]" % MAX_FRIENDLY_HOURS)
    out = []
    for i in range(len(x)):
        e = x[i]
        f = "%s[%d]" % (field, i)
        if not is_list(e) or len(e) != 3:
            fail(f, "must be [weekday, start_minute, end_minute]")
        check_int(e[0], f + "[0]", 0, 6)
        check_int(e[1], f + "[1]", 0, MINUTES_PER_DAY - 1)
        check_int(e[2], f + "[2]", e[1] + 1, MINUTES_PER_DAY)
        out.append([e[0], e[1], e[2]])
    return out


def command_args(cmd, args, validate_tariff=None):
    """Check the args map of command cmd; return it keyed by name.

    validate_tariff checks set-tariff args (default: protocol.tariff_calendar's).
    """
    if type(cmd) is not int or cmd not in ARGS:
        raise UnsupportedCommand("cmd: unsupported command %r" % (cmd,), "cmd")
    if type(args) is not dict:
        fail("args", "must be a map")
    out = {}
    check_rows(args, out, ARGS[cmd])
    if cmd == CMD_SET_TARIFF:
        _set_tariff(args, out, validate_tariff)
    elif cmd == CMD_SET_CONFIG:
        if 3 in args:
            out["friendly_hours"] = _friendly_hours(args[3])
        if 4 in args:
            k = args[4]
            if type(k) is not bytes or len(k) != KEY_SIZE:
                fail("args.key", "must be a %d-byte string" % KEY_SIZE)
            out["key"] = k
    return out
