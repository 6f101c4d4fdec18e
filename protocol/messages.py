"""The message maps of docs/protocol.md "Messages": codes, builders, parser, sealing.

Contract:
  Builders return the INT-keyed wire map, unvalidated (``seal`` validates):
    ``reading(seq, ts, interval, imp, exp, q, inst=None, balance=None,
    flags=0, tariff=None)``, ``event(seq, ts, code, detail=None)``,
    ``ack(seq, ts, cmd_seq, result, detail=None)``, ``status(seq, ts, fw,
    board, metering, rates, tariff, boot_count)``, ``command(seq, ts, cmd,
    args, expires=None)``. ``inst`` may be keyed by int or by INST_NAMES;
    an argument left None is left out of the map.
  ``parse(msg) -> dict`` validates a decoded map and returns it keyed by the
    docs/protocol.md names (``SCHEMA`` lists the keys, names and checks per type);
    ``"type"`` stays the int code. Optional keys absent on the wire are
    ABSENT from the result (no None, no defaults). ``inst`` is renamed by
    INST_NAMES; ``detail`` and ``args`` keep their int keys. Unknown keys
    (also in ``inst`` and ``detail``) are ignored. Command args are checked
    separately, by ``protocol.commands.command_args``.
  ``seal(key, meter_id, msg) -> bytes``  parse (refuse what a receiver would
    refuse), CBOR-encode, COSE_Mac0 with kid = meter_id as UTF-8.
  ``open_frame(key, meter_id, frame) -> dict``  verify, decode, parse.
  ``parse_will(payload) -> dict``  the unauthenticated will, exactly {0: 4, 40: 0}.

Errors are ``ProtocolError`` (``COSEError`` from the envelope) whose field is
``type``/``seq``/``ts`` for common keys, ``<type>.<name>[i]`` for the rest
(``reading.imp[2]``, ``reading.inst.p_w``, ``event.detail[1]``), ``payload``,
``will``, ``message`` (not a map) or ``meter_id``. Wire keys appear as
literals here and in ``SCHEMA`` (3 interval, 4 imp, ...), as in docs/protocol.md.
"""

from protocol import cbor, cose
from protocol.errors import CBORError, ProtocolError

TYPE_CHECKING = False  # True only for the type checker (tools/typecheck.py)
if TYPE_CHECKING:
    from typing import NoReturn

TYPE_READING = 1
TYPE_EVENT = 2
TYPE_ACK = 3
TYPE_STATUS = 4
TYPE_COMMAND = 10

FLAG_RELAY_OPEN = 1
FLAG_CLOCK_UNSYNCED = 2
FLAG_TAMPER_LATCHED = 4
FLAG_EMERGENCY_CREDIT = 8
FLAG_BACKLOG = 16

EVT_POWER_DOWN = 1
EVT_POWER_UP = 2
EVT_TAMPER_COVER = 3
EVT_TAMPER_MAGNETIC = 4
EVT_REVERSE_FLOW = 5
EVT_RELAY_OPENED = 6
EVT_RELAY_CLOSED = 7
EVT_LOW_BALANCE = 8
EVT_CREDIT_EXHAUSTED = 9
EVT_TOPUP_APPLIED = 10
EVT_CLOCK_ADJUSTED = 11
EVT_TARIFF_ACTIVATED = 12
EVT_WATCHDOG_RESET = 13
EVT_VOLTAGE_SAG = 14
EVT_VOLTAGE_SWELL = 15
EVT_OVERLOAD = 16
EVT_CURRENT_MISMATCH = 17
EVT_METERING_FAULT = 18
EVT_CMD_REJECTED = 19
EVT_STORAGE_FAULT = 20

ACK_DONE = 0
ACK_DUPLICATE = 1
ACK_STALE = 2
ACK_EXPIRED = 3
ACK_BAD_ARGS = 4
ACK_UNSUPPORTED = 5
ACK_FAILED = 6

CMD_TOPUP = 1
CMD_RELAY = 2
CMD_SET_TARIFF = 3
CMD_TIME_SYNC = 4
CMD_READ_NOW = 5
CMD_SET_CONFIG = 6

UINT_MAX = 0xFFFFFFFFFFFFFFFF  # CBOR major type 0
INT_MIN = -0x10000000000000000  # CBOR major type 1
MAX_RATES = 8
MAX_TEXT = 64  # status strings, characters
INST_NAMES = ("urms_mv", "irms_ma", "p_w", "q_var", "pf_milli", "freq_mhz", "irms_n_ma")  # inst keys 0..6
INST_CHECKS = "uussfuu"  # their checks (letters below): P, Q and PF are signed

# Value checks by letter; upper case = required, lower case = optional:
#   u uint, p uint >= 1, s signed int, b 0..1, a ack result 0..6, n rates
#   1..MAX_RATES, f -1000..1000 (PF x 1000), o 0..3 and d 1..86400 (command
#   args), t text of 1..MAX_TEXT chars, m map, i inst map (INST_CHECKS),
#   r list of uints (imp 1..MAX_RATES long, exp as long as imp, q exactly 4).
RANGES = {
    "u": (0, UINT_MAX), "p": (1, UINT_MAX), "s": (INT_MIN, UINT_MAX), "b": (0, 1),
    "a": (ACK_DONE, ACK_FAILED), "n": (1, MAX_RATES), "f": (-1000, 1000), "o": (0, 3), "d": (1, 86400),
}  # fmt: skip
# Per type: its name, then (key, name, check) triples, flattened: RAM is short on a meter.
# fmt: off
SCHEMA = {
    TYPE_READING: ("reading", 3, "interval", "U", 4, "imp", "R", 5, "exp", "R", 6, "q", "R",
                   7, "inst", "i", 8, "balance", "s", 9, "flags", "u", 11, "tariff", "u"),
    TYPE_EVENT: ("event", 10, "code", "P", 11, "detail", "m"),
    TYPE_ACK: ("ack", 30, "cmd_seq", "U", 31, "result", "A", 32, "detail", "m"),
    TYPE_STATUS: ("status", 40, "online", "B", 41, "fw", "T", 42, "board", "T", 43, "metering", "T",
                  44, "rates", "N", 45, "tariff", "U", 46, "boot_count", "U"),
    TYPE_COMMAND: ("command", 20, "cmd", "U", 21, "args", "M", 22, "expires", "u"),
}
# fmt: on
# documented detail keys (all uint) per event code; others pass unchecked
_DETAIL_UINTS = {6: (0,), 10: (0, 1), 11: (0, 1), 12: (0,), 19: (0, 1)}


# ---------------------------------------------------------------- builders


def _build(t, seq, ts, values):
    m = {0: t, 1: seq, 2: ts}
    schema = SCHEMA[t]
    for i in range(len(values)):
        if values[i] is not None:
            m[schema[1 + 3 * i]] = values[i]
    return m


def _inst_map(inst):
    out = {}
    for k in inst:
        if type(k) is str:
            if k not in INST_NAMES:
                fail("reading.inst", "unknown name %r" % (k,))
            out[INST_NAMES.index(k)] = inst[k]
        else:
            out[k] = inst[k]
    return out


def reading(seq, ts, interval, imp, exp, q, inst=None, balance=None, flags=0, tariff=None):
    inst = None if inst is None else _inst_map(inst)
    return _build(
        TYPE_READING, seq, ts, (interval, list(imp), list(exp), list(q), inst, balance, flags, tariff)
    )


def event(seq, ts, code, detail=None):
    return _build(TYPE_EVENT, seq, ts, (code, detail))


def ack(seq, ts, cmd_seq, result, detail=None):
    return _build(TYPE_ACK, seq, ts, (cmd_seq, result, detail))


def status(seq, ts, fw, board, metering, rates, tariff, boot_count):
    return _build(TYPE_STATUS, seq, ts, (1, fw, board, metering, rates, tariff, boot_count))


def command(seq, ts, cmd, args, expires=None):
    return _build(TYPE_COMMAND, seq, ts, (cmd, args, expires))


# ---------------------------------------------------------------- parsing


def fail(field, msg) -> "NoReturn":
    raise ProtocolError("%s: %s" % (field, msg), field)


def check_int(x, field, lo=0, hi=UINT_MAX):
    """x if it is an int (never a bool) in lo..hi, else ProtocolError(field)."""
    if type(x) is not int or x < lo or x > hi:
        fail(field, "must be an integer %d..%d" % (lo, hi))
    return x


def is_list(x):
    return type(x) is list or type(x) is tuple


def _int_keys(m, field):
    # false/true would stand in for the keys 0/1 (False == 0): refuse them
    for k in m:
        if type(k) is bool:
            fail(field, "map keys must not be booleans")


def check_rows(m, out, schema, t=0):
    """Check map m against schema (name, then key, name, check triples as in
    SCHEMA) into out; error fields are "<schema name>.<name>"."""
    prefix = schema[0] + "." if schema[0] else ""
    _int_keys(m, schema[0] or "message")
    for i in range(1, len(schema), 3):
        key, name, c = schema[i], schema[i + 1], schema[i + 2]
        if key not in m:
            if c < "a":
                fail(prefix + name, "missing")
            continue
        c = c.lower()
        x = m[key]
        if c in RANGES:
            r = RANGES[c]
            x = check_int(x, prefix + name, r[0], r[1])
        elif c == "t":
            if type(x) is not str or not 1 <= len(x) <= MAX_TEXT:
                fail(prefix + name, "must be text of 1..%d characters" % MAX_TEXT)
        elif c == "r":
            lo, hi = (1, MAX_RATES) if name == "imp" else (4, 4)
            if name == "exp":
                lo = hi = len(out["imp"])
            if not is_list(x) or not lo <= len(x) <= hi:
                fail(prefix + name, "must be a list of %d..%d unsigned integers" % (lo, hi))
            for j in range(len(x)):
                check_int(x[j], "%s%s[%d]" % (prefix, name, j))
            x = list(x)
        elif type(x) is not dict:
            fail(prefix + name, "must be a map")
        elif c == "i":
            _int_keys(x, prefix + name)
            named = {}
            for k in range(len(INST_NAMES)):
                if k in x:
                    r = RANGES[INST_CHECKS[k]]
                    named[INST_NAMES[k]] = check_int(x[k], prefix + "inst." + INST_NAMES[k], r[0], r[1])
            x = named
        elif t == TYPE_EVENT:
            for k in _DETAIL_UINTS.get(out["code"], ()):
                if k in x:
                    check_int(x[k], "%s%s[%d]" % (prefix, name, k))
        out[name] = x


def parse(msg):
    """Validate a decoded message map; return it keyed by docs/protocol.md names."""
    if type(msg) is not dict:
        fail("message", "must be a map")
    t = msg.get(0)
    if type(t) is not int or t not in SCHEMA:
        fail("type", "unknown message type")
    out = {"type": t}
    check_rows(msg, out, ("", 1, "seq", "P", 2, "ts", "U"))  # the common keys
    check_rows(msg, out, SCHEMA[t], t)
    return out


# ---------------------------------------------------------------- frames


def _kid(meter_id):
    # the topic layer validates ids (protocol.topics.meter_id_valid); a kid must be non-empty text
    if type(meter_id) is not str or not meter_id:
        fail("meter_id", "must be a non-empty str")
    return meter_id.encode("utf-8")


def seal(key, meter_id, msg):
    """The COSE_Mac0 frame carrying msg (an int-keyed map parse accepts)."""
    kid = _kid(meter_id)
    parse(msg)
    return cose.mac0_encode(key, kid, cbor.dumps(msg))


def open_frame(key, meter_id, frame):
    """Verify frame as meter_id's under key; return the parsed message."""
    payload = cose.mac0_decode(key, _kid(meter_id), frame)
    try:
        msg = cbor.loads(payload)
    except CBORError:
        msg = None
    if type(msg) is not dict:
        fail("payload", "must be a CBOR map")
    return parse(msg)


def parse_will(payload):
    """The will message (unauthenticated CBOR {0: 4, 40: 0}) as a dict."""
    try:
        msg = cbor.loads(payload)
    except CBORError:
        msg = None
    if type(msg) is not dict or len(msg) != 2 or type(msg.get(0)) is not int or type(msg.get(40)) is not int:
        fail("will", "must be exactly {0: 4, 40: 0}")
    if msg[0] != TYPE_STATUS or msg[40] != 0:
        fail("will", "must be exactly {0: 4, 40: 0}")
    return {"type": TYPE_STATUS, "online": 0}
