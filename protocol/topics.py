"""MQTT topics of docs/protocol.md "Transport": the one place they are built and parsed.

  ``ami/v1/<meter_id>/up/<kind>``   kind in reading, event, ack, status
  ``ami/v1/<meter_id>/down/cmd``

Contract:
  ``meter_id_valid(s) -> bool``     1-32 chars of ``[A-Za-z0-9_-]``.
  ``up(meter_id, kind) -> str``     ``down_cmd(meter_id) -> str``
  ``parse(topic) -> (meter_id, direction, kind)``  direction ``"up"`` or
      ``"down"``; topic may be ``str`` or UTF-8 ``bytes`` (umqtt hands bytes).
  Subscription filters: ``HEADEND_UP_FILTER``, ``HEADEND_SHARED_FILTER``,
      ``meter_up_filter(meter_id)``, ``meter_down_filter(meter_id)``.
  The MQTT will: ``will_topic(meter_id)`` (the status topic) and
      ``will_payload()`` (unauthenticated CBOR ``{0: 4, 40: 0}``), published
      with ``QOS`` and ``retained("status")``.

Every bad topic or meter id raises ``ProtocolError`` with field ``"topic"``
(parse) or ``"meter_id"`` / ``"kind"`` (builders).
"""

from protocol import cbor
from protocol.errors import ProtocolError

PREFIX = "ami/v1"
UP_KINDS = ("reading", "event", "ack", "status")
DOWN_KINDS = ("cmd",)
QOS = 1
MAX_METER_ID = 32

HEADEND_UP_FILTER = PREFIX + "/+/up/#"
HEADEND_SHARED_FILTER = "$share/headend/" + HEADEND_UP_FILTER
HEADEND_DOWN_FILTER = PREFIX + "/+/down/#"  # what the head-end may write


def meter_id_valid(s):
    """True if s is a str of 1..32 chars from [A-Za-z0-9_-]."""
    if type(s) is not str or not 1 <= len(s) <= MAX_METER_ID:
        return False
    for c in s:
        if not ("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c == "_" or c == "-"):
            return False
    return True


def _check_id(meter_id):
    if not meter_id_valid(meter_id):
        raise ProtocolError("meter id must be 1-32 chars of [A-Za-z0-9_-]: %r" % (meter_id,), "meter_id")


def up(meter_id, kind):
    """``ami/v1/<meter_id>/up/<kind>`` for kind in UP_KINDS."""
    _check_id(meter_id)
    if kind not in UP_KINDS:
        raise ProtocolError("unknown up topic kind %r" % (kind,), "kind")
    return "%s/%s/up/%s" % (PREFIX, meter_id, kind)


def down_cmd(meter_id):
    """``ami/v1/<meter_id>/down/cmd``."""
    _check_id(meter_id)
    return "%s/%s/down/cmd" % (PREFIX, meter_id)


def meter_up_filter(meter_id):
    """``ami/v1/<meter_id>/up/#``: what the broker ACL lets the meter write."""
    _check_id(meter_id)
    return "%s/%s/up/#" % (PREFIX, meter_id)


def meter_down_filter(meter_id):
    """``ami/v1/<meter_id>/down/#``: what the meter subscribes to."""
    _check_id(meter_id)
    return "%s/%s/down/#" % (PREFIX, meter_id)


def parse(topic):
    """(meter_id, direction, kind) of a protocol topic; ProtocolError if not one."""
    if type(topic) is bytes or type(topic) is bytearray:
        try:
            topic = str(bytes(topic), "utf-8")
        except Exception:
            raise ProtocolError("topic is not UTF-8", "topic")
    if type(topic) is not str:
        raise ProtocolError("topic must be a str", "topic")
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] + "/" + parts[1] != PREFIX:
        raise ProtocolError("not an %s/<meter_id>/<up|down>/<kind> topic: %r" % (PREFIX, topic[:80]), "topic")
    meter_id, direction, kind = parts[2], parts[3], parts[4]
    if not meter_id_valid(meter_id):
        raise ProtocolError("bad meter id in topic %r" % (topic[:80],), "topic")
    if not ((direction == "up" and kind in UP_KINDS) or (direction == "down" and kind in DOWN_KINDS)):
        raise ProtocolError("unknown direction/kind %r/%r" % (direction, kind), "topic")
    return meter_id, direction, kind


def retained(kind):
    """Whether messages of this kind are published retained (status only)."""
    return kind == "status"


def will_topic(meter_id):
    """The topic of the meter's MQTT will: its status topic."""
    return up(meter_id, "status")


def will_payload():
    """The unauthenticated will message: CBOR ``{0: 4, 40: 0}`` (offline)."""
    return cbor.dumps({0: 4, 40: 0})
