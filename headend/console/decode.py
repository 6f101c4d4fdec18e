"""One MQTT message of the live stream -> a display row (pure: no broker, no SQL, no clock).

``decode(topic, payload, keys, received_at) -> dict`` verifies the frame exactly as ingest
does (``headend.ingest.verify.verify``: the topic, a provisioned meter, the unsigned will, the
COSE_Mac0 envelope under the meter's key from ``keys``, the message map, its type against
the topic) and describes it. The row:

  ``kind``      reading | event | ack | status | rejected
  ``auth``      ``signed`` (COSE_Mac0 verified with the meter's key), ``encrypted`` (COSE_Encrypt0
                opened with the key derived from it), ``will`` (the unauthenticated
                ``{0: 4, 40: 0}`` docs/protocol.md allows on the status topic) or ``unverified``
  ``trusted``   True only when ``auth`` is ``signed`` or ``encrypted``; an unverified frame's
                content is never decoded into the row, only why it was refused (a COSE_Encrypt0
                frame the console cannot open, or a plain frame from a meter that must encrypt,
                is shown unverified)
  ``meter_id``  the topic's meter (None if the topic is not a protocol topic)
  ``topic``, ``received`` (UTC ``HH:MM:SS``), ``received_at`` (epoch s)
  ``seq``, ``ts``  the message's seq and its time as UTC text (None when absent)
  ``fields``    ordered ``(label, text)`` pairs of the key values, ``summary`` them on one line
  ``level``     ok | info | warn | alert | bad: how loudly to show it
  ``reason``, ``detail``  for ``rejected``: ingest's reason (``tag``, ``kid``, ``structure``,
                ``unknown_meter``, ``message``, ``wrong_type``, ``topic``, ...) and its text

Names follow docs/protocol.md: ``EVENT_NAMES`` (event codes), ``EVENT_DETAILS`` (each event's
detail keys, named by ``event_details``, which the web dashboard shares), ``FLAG_NAMES`` (reading
flags bits), ack results as ``headend.commands.RESULT_NAMES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from headend.commands import RESULT_NAMES
from headend.commands.build import RELAY_REASONS
from headend.ingest import verify as ingest
from headend.prepaid.ledger import units
from protocol import messages, topics
from protocol.errors import ProtocolError

EVENT_NAMES = {
    1: "power down",
    2: "power up / reboot",
    3: "terminal cover opened",
    4: "magnetic tamper",
    5: "reverse energy flow",
    6: "relay opened",
    7: "relay closed",
    8: "low balance",
    9: "credit exhausted",
    10: "top-up applied",
    11: "clock adjusted",
    12: "tariff activated",
    13: "watchdog / abnormal reset",
    14: "voltage sag",
    15: "voltage swell",
    16: "overload",
    17: "line/neutral current mismatch (possible bypass)",
    18: "metering IC fault",
    19: "command rejected",
    20: "storage fault or recovery",
}
ALERT_EVENTS = (3, 4, 5, 9, 17, 18)  # tamper, reverse flow, no credit, bypass, metering fault
WARN_EVENTS = (1, 8, 13, 14, 15, 16, 19, 20)
FLAG_NAMES = (
    (messages.FLAG_RELAY_OPEN, "relay open"),
    (messages.FLAG_CLOCK_UNSYNCED, "clock unsynced"),
    (messages.FLAG_TAMPER_LATCHED, "tamper latched"),
    (messages.FLAG_EMERGENCY_CREDIT, "emergency credit"),
    (messages.FLAG_BACKLOG, "backlog"),
)
REASON_NAMES = {v: k for k, v in RELAY_REASONS.items()}  # relay opened detail 0
# command rejected (event 19) detail 1: the ack results 2..6 and protocol-extensions.md's 7, 8
REJECT_NAMES = {**RESULT_NAMES, 7: "authentication failed", 8: "not a command frame"}
# Each event's detail keys, as docs/protocol.md (events table) and docs/protocol-extensions.md
# (event 19 key 2) define them: code -> ((key, label, kind), ...). ``kind`` says how a value
# reads: ``ts`` epoch seconds, ``money`` milli-units, ``relay`` / ``reject`` a reason code
# (REASON_NAMES / REJECT_NAMES), ``int`` a number. The console and the web dashboard both
# name details from here (``event_details``).
EVENT_DETAILS = {
    6: ((0, "reason", "relay"),),
    10: ((0, "topup id", "int"), (1, "amount", "money")),
    11: ((0, "old", "ts"), (1, "new", "ts")),
    12: ((0, "tariff", "int"),),
    19: ((0, "cmd seq", "int"), (1, "reason", "reject"), (2, "count", "int")),
}


def utc(ts: float | None) -> str | None:
    """``2024-05-01 12:15:00Z`` for epoch seconds (None stays None)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "ts %d (out of range)" % int(ts)


def kwh(wh: int) -> str:
    """Wh as kWh with 3 decimals, exactly: 12345 -> ``12.345 kWh``."""
    return "%d.%03d kWh" % divmod(wh, 1000)


def flag_words(flags: int) -> str:
    """The reading's flags as words (``none`` for 0); unknown bits as ``bit N``."""
    words = [name for bit, name in FLAG_NAMES if flags & bit]
    known = sum(bit for bit, _ in FLAG_NAMES)
    words += ["bit %d" % i for i in range(flags.bit_length()) if flags & ~known & (1 << i)]
    return ", ".join(words) or "none"


def _detail_pairs(detail: Mapping) -> list[tuple[str, str]]:
    return [("detail %s" % k, str(v)) for k, v in sorted(detail.items(), key=lambda kv: str(kv[0]))]


def _int_key(k):
    """A detail key as an int when it is one (stored details come back from JSON with "0")."""
    if isinstance(k, str) and k.isdigit():
        return int(k)
    return k


def event_details(code: int, detail, ts=None, money=units) -> list[tuple[str, str]]:
    """An event's detail as ``(label, text)`` pairs named from ``EVENT_DETAILS``: times as
    ``ts(epoch)`` (default ``utc``), money as ``money(milli)`` (default ``units``); keys the
    protocol does not define follow as ``("detail K", value)``. Keys may be ints or digit
    strings (a detail read back from JSON)."""
    if not isinstance(detail, Mapping):
        return [] if detail is None else [("detail", str(detail))]
    rest = {_int_key(k): v for k, v in detail.items()}
    out = []
    for key, label, kind in EVENT_DETAILS.get(code, ()):
        if key not in rest:
            continue
        v = rest.pop(key)
        if not isinstance(v, int) or isinstance(v, bool):
            out.append((label, str(v)))
        elif kind == "ts":
            out.append((label, (ts or utc)(v)))
        elif kind == "money":
            out.append((label, money(v)))
        elif kind == "relay":
            out.append((label, REASON_NAMES.get(v, "reason %s" % v)))
        elif kind == "reject":
            out.append((label, REJECT_NAMES.get(v, "reason %s" % v)))
        else:
            out.append((label, str(v)))
    return out + _detail_pairs(rest)


def _reading(msg: dict) -> tuple[list[tuple[str, str]], str]:
    fields = [("imp", kwh(sum(msg["imp"]))), ("exp", kwh(sum(msg["exp"])))]
    inst = msg.get("inst", {})
    if "p_w" in inst:
        fields.append(("P", "%d W" % inst["p_w"]))
    if "balance" in msg:
        fields.append(("balance", units(msg["balance"])))
    flags = msg.get("flags", 0)
    fields.append(("flags", flag_words(flags)))
    if flags & messages.FLAG_TAMPER_LATCHED:
        level = "alert"
    elif flags & (messages.FLAG_RELAY_OPEN | messages.FLAG_EMERGENCY_CREDIT | messages.FLAG_CLOCK_UNSYNCED):
        level = "warn"
    else:
        level = "ok"
    return fields, level


def _event(msg: dict) -> tuple[list[tuple[str, str]], str]:
    code = msg["code"]
    fields = [("event", EVENT_NAMES.get(code, "unknown event")), ("code", str(code))]
    fields += event_details(code, msg.get("detail", {}))
    level = "alert" if code in ALERT_EVENTS else "warn" if code in WARN_EVENTS else "info"
    return fields, level


def _ack(msg: dict) -> tuple[list[tuple[str, str]], str]:
    result = msg["result"]
    fields = [("cmd seq", str(msg["cmd_seq"])), ("result", RESULT_NAMES.get(result, "result %d" % result))]
    fields += _detail_pairs(msg.get("detail", {}))
    level = "ok" if result == messages.ACK_DONE else "info" if result == messages.ACK_DUPLICATE else "alert"
    return fields, level


def _status(msg: dict) -> tuple[list[tuple[str, str]], str]:
    fields = [("state", "online")]
    for name in ("fw", "board", "metering", "rates", "tariff", "boot_count"):
        if name in msg:
            fields.append((name.replace("_", " "), str(msg[name])))
    return fields, "ok"


DESCRIBE = {"reading": _reading, "event": _event, "ack": _ack, "status": _status}


def summary(fields: list[tuple[str, str]]) -> str:
    return "  ".join("%s %s" % kv for kv in fields)


def decode(topic, payload: bytes, keys: Mapping[str, bytes], received_at: float) -> dict:
    """The display row of one message (module docstring)."""
    if isinstance(topic, (bytes, bytearray)):
        topic = bytes(topic).decode("utf-8", "replace")
    row = {
        "topic": topic,
        "received_at": received_at,
        "received": datetime.fromtimestamp(received_at, UTC).strftime("%H:%M:%S"),
        "seq": None,
        "ts": None,
        "reason": None,
        "detail": None,
    }
    verdict = ingest.verify(topic, bytes(payload), keys)
    meter_id = verdict.meter_id
    if meter_id is None:
        try:
            meter_id = topics.parse(topic)[0]
        except ProtocolError:
            meter_id = None
    row["meter_id"] = meter_id
    if verdict.kind == "rejected":
        kind = "rejected"
        try:
            kind_word = topics.parse(topic)[2]
        except ProtocolError:
            kind_word = "message"
        fields = [("UNVERIFIED", kind_word), ("reason", verdict.reason), ("why", verdict.detail or "")]
        fields.append(("size", "%d bytes" % len(payload)))
        row.update(kind=kind, auth="unverified", trusted=False, level="bad", fields=fields)
        row.update(reason=verdict.reason, detail=verdict.detail)
    elif verdict.kind == "will":
        fields = [("state", "offline"), ("will", "unsigned last will, set by the broker")]
        row.update(kind="status", auth="will", trusted=False, level="warn", fields=fields)
    else:
        msg = verdict.msg
        fields, level = DESCRIBE[verdict.kind](msg)
        auth = "encrypted" if payload[:1] == b"\xd0" else "signed"
        row.update(kind=verdict.kind, auth=auth, trusted=True, level=level, fields=fields)
        row.update(seq=msg["seq"], ts=utc(msg["ts"]))
    row["summary"] = summary(row["fields"])
    return row
