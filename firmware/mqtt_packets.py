"""MQTT 3.1.1 control packets: encode to bytes and decode from bytes, no I/O.

The transport (firmware/mqtt_client.py) reads a packet as its first byte, the
remaining length and the body; this module checks and turns each part into
values, and builds whole packets to write. Runs unchanged on CPython and
MicroPython.

Contract:
- Fixed header: byte 1 = type << 4 | flags; then the remaining length as a
  1..4 byte varint (7 bits a byte, low group first, top bit = more), at most
  268435455. ``check_header(first)`` refuses unknown types and reserved flags
  that are not the ones 3.1.1 requires (SUBSCRIBE 0b0010, PUBLISH QoS 3).
- Strings: 2-byte big-endian length + UTF-8, no U+0000; PUBLISH topic names
  carry no wildcards (+, #).
- ``encode_*(...) -> bytes`` is a whole packet; ``decode_*(body)`` (and
  ``decode_publish(flags, body)``) take the body after the remaining length
  and return plain values (tuples; ``decode_connect`` a dict).
- ``split(packet, max_packet)`` parses one whole packet held in memory:
  ``(type, flags, body)``.
- Errors: ``MQTTError`` (an OSError: the connection is unusable and is closed
  by the caller) for what came off the wire: malformed, too large
  (``max_packet``), refused by the broker (``code`` = CONNACK return code).
  ValueError, naming the argument, for bad arguments given to an encoder.
"""

import struct

from micropython import const

CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

MAX_REMAINING = const(268435455)  # 4 varint bytes
SUBACK_FAILURE = const(0x80)

PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

NAMES = (
    "reserved-0",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "reserved-15",
)

CONNACK_NAMES = (
    "accepted",
    "unacceptable protocol version",
    "identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorized",
)


class MQTTError(OSError):
    """A packet from the wire was malformed or too large, or the broker refused us.

    ``code`` is the CONNACK return code for a refused connection, else None.
    """

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def connack_name(rc):
    """'not authorized (5)' for CONNACK return code 5; unknown codes by number."""
    name = CONNACK_NAMES[rc] if 0 <= rc < len(CONNACK_NAMES) else "unknown return code"
    return "%s (%d)" % (name, rc)


def connack_error(rc):
    return MQTTError("CONNACK refused: " + connack_name(rc), rc)


# ---------------------------------------------------------------- fixed header, varint, strings


def varint_into(buf, off, n):
    """Write remaining length ``n`` at buf[off:]; returns the offset after it."""
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError("remaining length %d outside 0..%d" % (n, MAX_REMAINING))
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            buf[off] = b | 0x80
            off += 1
        else:
            buf[off] = b
            return off + 1


def encode_varint(n):
    buf = bytearray(4)
    return bytes(buf[: varint_into(buf, 0, n)])


def decode_varint(data, off=0, end=None):
    """(remaining length, offset after it) from data[off:end]; MQTTError if truncated or > 4 bytes."""
    if end is None:
        end = len(data)
    n = 0
    shift = 0
    while True:
        if shift == 28:
            raise MQTTError("malformed remaining length: more than 4 bytes")
        if off >= end:
            raise MQTTError("malformed remaining length: truncated")
        b = data[off]
        off += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, off
        shift += 7


def check_header(first):
    """(type, flags) of a fixed header's first byte; MQTTError for a type or flags 3.1.1 forbids."""
    ptype = first >> 4
    flags = first & 0x0F
    if ptype == PUBLISH:
        if flags & 0x06 == 0x06:
            raise MQTTError("malformed PUBLISH: QoS 3")
        if flags & 0x08 and not flags & 0x06:
            raise MQTTError("malformed PUBLISH: DUP set on QoS 0")
    elif ptype == 0 or ptype == 15:
        raise MQTTError("malformed fixed header: reserved packet type %d" % ptype)
    elif ptype in (PUBREL, SUBSCRIBE, UNSUBSCRIBE):
        if flags != 2:
            raise MQTTError("malformed %s: fixed header flags %d, must be 2" % (NAMES[ptype], flags))
    elif flags:
        raise MQTTError("malformed %s: fixed header flags %d, must be 0" % (NAMES[ptype], flags))
    return ptype, flags


def check_length(n, max_packet):
    """MQTTError unless remaining length n fits max_packet (None: no limit but the protocol's)."""
    if max_packet is not None and n > max_packet:
        raise MQTTError("packet too large: remaining length %d > max_packet %d" % (n, max_packet))


def _packet(first, body):
    head = bytearray(5)
    head[0] = first
    n = varint_into(head, 1, len(body))
    return bytes(head[:n]) + body


def _utf8(s, what):
    """A str (or bytes) as UTF-8 bytes for a 2-byte length prefixed field; ValueError naming it."""
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if len(b) > 65535:
        raise ValueError("%s longer than 65535 bytes" % what)
    if b"\x00" in b:
        raise ValueError("%s contains U+0000" % what)
    return b


def encode_str(s, what="string"):
    b = _utf8(s, what)
    return struct.pack(">H", len(b)) + b


def _field(body, off, what):
    """(bytes, next offset) of one 2-byte length prefixed field of body."""
    if off + 2 > len(body):
        raise MQTTError("malformed packet: %s length truncated" % what)
    n = (body[off] << 8) | body[off + 1]
    off += 2
    if off + n > len(body):
        raise MQTTError("malformed packet: %s truncated (%d bytes announced)" % (what, n))
    return bytes(body[off : off + n]), off + n


def decode_str(body, off, what="string"):
    """(str, next offset) of one UTF-8 string field; MQTTError naming ``what`` if malformed."""
    b, off = _field(body, off, what)
    try:
        s = b.decode("utf-8")
    except UnicodeError:
        raise MQTTError("malformed packet: %s is not UTF-8" % what)
    if "\x00" in s:
        raise MQTTError("malformed packet: %s contains U+0000" % what)
    return s, off


def _pid_bytes(pid):
    if not 1 <= pid <= 65535:
        raise ValueError("packet id %r outside 1..65535" % (pid,))
    return struct.pack(">H", pid)


def _decode_pid(body, off, what):
    if off + 2 > len(body):
        raise MQTTError("malformed %s: packet id truncated" % what)
    pid = (body[off] << 8) | body[off + 1]
    if pid == 0:
        raise MQTTError("malformed %s: packet id 0" % what)
    return pid


def _check_qos(qos, top):
    if qos not in (0, 1, 2) or qos > top:
        raise ValueError("qos %r outside 0..%d" % (qos, top))


def split(packet, max_packet=None):
    """(type, flags, body) of one whole packet; MQTTError if malformed, too long or with trailing bytes."""
    if not packet:
        raise MQTTError("malformed packet: empty")
    ptype, flags = check_header(packet[0])
    n, off = decode_varint(packet, 1)
    check_length(n, max_packet)
    if off + n != len(packet):
        raise MQTTError(
            "malformed %s: remaining length %d but %d bytes follow" % (NAMES[ptype], n, len(packet) - off)
        )
    return ptype, flags, packet[off:]


# ---------------------------------------------------------------- CONNECT / CONNACK


def encode_connect(
    client_id,
    username=None,
    password=None,
    clean_session=True,
    keepalive=60,
    will_topic=None,
    will_payload=b"",
    will_qos=1,
    will_retain=True,
):
    """CONNECT for protocol 'MQTT' level 4; password (str or bytes) needs a username."""
    if not 0 <= keepalive <= 65535:
        raise ValueError("keepalive %r outside 0..65535 s" % (keepalive,))
    if password is not None and username is None:
        raise ValueError("password without username (MQTT 3.1.1 forbids it)")
    flags = 0x02 if clean_session else 0
    parts = [b"\x00\x04MQTT\x04", None, struct.pack(">H", keepalive), encode_str(client_id, "client_id")]
    if will_topic is not None:
        _check_qos(will_qos, 2)
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        parts.append(encode_str(will_topic, "will_topic"))
        if len(will_payload) > 65535:
            raise ValueError("will_payload longer than 65535 bytes")
        parts.append(struct.pack(">H", len(will_payload)) + bytes(will_payload))
    if username is not None:
        flags |= 0x80
        parts.append(encode_str(username, "username"))
    if password is not None:
        flags |= 0x40
        pw = password.encode("utf-8") if isinstance(password, str) else bytes(password)
        if len(pw) > 65535:
            raise ValueError("password longer than 65535 bytes")
        parts.append(struct.pack(">H", len(pw)) + pw)
    parts[1] = bytes((flags,))
    return _packet(CONNECT << 4, b"".join(parts))


def decode_connect(body):
    """The fields of a CONNECT body as a dict (keys as encode_connect's arguments)."""
    name, off = _field(body, 0, "protocol name")
    if name != b"MQTT" or off + 4 > len(body) or body[off] != 4:
        raise MQTTError("malformed CONNECT: not protocol MQTT level 4")
    flags = body[off + 1]
    keepalive = (body[off + 2] << 8) | body[off + 3]
    if flags & 0x01:
        raise MQTTError("malformed CONNECT: reserved flag set")
    will_qos = (flags >> 3) & 3
    if (not flags & 0x04 and flags & 0x38) or will_qos == 3:
        raise MQTTError("malformed CONNECT: will QoS/retain without a valid will")
    if flags & 0x40 and not flags & 0x80:
        raise MQTTError("malformed CONNECT: password without username")
    out = {"clean_session": bool(flags & 0x02), "keepalive": keepalive}
    out["client_id"], off = decode_str(body, off + 4, "client_id")
    out["will_topic"] = None
    out["will_payload"] = b""
    out["will_qos"] = will_qos
    out["will_retain"] = bool(flags & 0x20)
    if flags & 0x04:
        out["will_topic"], off = decode_str(body, off, "will_topic")
        out["will_payload"], off = _field(body, off, "will_payload")
    out["username"] = None
    out["password"] = None
    if flags & 0x80:
        out["username"], off = decode_str(body, off, "username")
    if flags & 0x40:
        out["password"], off = _field(body, off, "password")
    if off != len(body):
        raise MQTTError("malformed CONNECT: %d trailing bytes" % (len(body) - off))
    return out


def encode_connack(session_present, rc):
    return bytes((CONNACK << 4, 2, 1 if session_present else 0, rc))


def decode_connack(body):
    """(session_present, return code)."""
    if len(body) != 2:
        raise MQTTError("malformed CONNACK: remaining length %d, must be 2" % len(body))
    if body[0] & 0xFE:
        raise MQTTError("malformed CONNACK: acknowledge flags %d" % body[0])
    return bool(body[0] & 1), body[1]


# ---------------------------------------------------------------- PUBLISH / PUBACK


def topic_name(topic):
    """A PUBLISH topic name as UTF-8 bytes; ValueError if empty, too long or with a wildcard."""
    t = _utf8(topic, "topic")
    if not t:
        raise ValueError("topic is empty")
    if b"+" in t or b"#" in t:
        raise ValueError("topic %r contains a wildcard" % (topic,))
    return t


def publish_header_into(buf, topic, payload_len, qos=0, retain=False, dup=False, pid=0):
    """Write PUBLISH's fixed header, topic and packet id into buf; returns their length.

    ``topic`` is UTF-8 bytes (already checked by ``encode_publish`` or the
    caller); the payload (``payload_len`` bytes) follows on the wire. IndexError
    if buf is too small.
    """
    _check_qos(qos, 2)
    if dup and not qos:
        raise ValueError("dup set on a QoS 0 publish")
    n = 2 + len(topic) + payload_len + (2 if qos else 0)
    buf[0] = (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    off = varint_into(buf, 1, n)
    struct.pack_into(">H", buf, off, len(topic))
    off += 2
    buf[off : off + len(topic)] = topic
    off += len(topic)
    if qos:
        if not 1 <= pid <= 65535:
            raise ValueError("packet id %r outside 1..65535" % (pid,))
        struct.pack_into(">H", buf, off, pid)
        off += 2
    return off


def encode_publish(topic, payload, qos=0, retain=False, dup=False, pid=0):
    t = topic_name(topic)
    payload = bytes(payload)
    buf = bytearray(9 + len(t))
    n = publish_header_into(buf, t, len(payload), qos, retain, dup, pid)
    return bytes(buf[:n]) + payload


def decode_publish(flags, body):
    """(topic, payload, qos, retain, dup, pid) of a PUBLISH; pid is 0 for QoS 0."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MQTTError("malformed PUBLISH: QoS 3")
    topic, off = decode_str(body, 0, "topic")
    if not topic or "+" in topic or "#" in topic:
        raise MQTTError("malformed PUBLISH: topic %r empty or with a wildcard" % topic)
    pid = 0
    if qos:
        pid = _decode_pid(body, off, "PUBLISH")
        off += 2
    return topic, bytes(body[off:]), qos, bool(flags & 1), bool(flags & 8), pid


def encode_puback(pid):
    return b"\x40\x02" + _pid_bytes(pid)


def decode_puback(body):
    """The packet id of a PUBACK."""
    if len(body) != 2:
        raise MQTTError("malformed PUBACK: remaining length %d, must be 2" % len(body))
    return _decode_pid(body, 0, "PUBACK")


# ---------------------------------------------------------------- SUBSCRIBE / SUBACK


def encode_subscribe(pid, topics):
    """SUBSCRIBE for a list of (topic filter, requested QoS)."""
    if not topics:
        raise ValueError("topics is empty")
    parts = [_pid_bytes(pid)]
    for topic, qos in topics:
        _check_qos(qos, 2)
        if not topic:
            raise ValueError("topic filter is empty")
        parts.append(encode_str(topic, "topic filter"))
        parts.append(bytes((qos,)))
    return _packet((SUBSCRIBE << 4) | 2, b"".join(parts))


def decode_subscribe(body):
    """(pid, [(topic filter, qos), ...])."""
    pid = _decode_pid(body, 0, "SUBSCRIBE")
    off = 2
    topics = []
    while off < len(body):
        topic, off = decode_str(body, off, "topic filter")
        if off >= len(body) or body[off] > 2:
            raise MQTTError("malformed SUBSCRIBE: requested QoS missing or > 2")
        topics.append((topic, body[off]))
        off += 1
    if not topics:
        raise MQTTError("malformed SUBSCRIBE: no topic filter")
    return pid, topics


def encode_suback(pid, codes):
    return _packet(SUBACK << 4, _pid_bytes(pid) + bytes(codes))


def decode_suback(body):
    """(pid, [return code, ...]): 0..2 granted QoS, 0x80 failure."""
    pid = _decode_pid(body, 0, "SUBACK")
    codes = list(body[2:])
    if not codes:
        raise MQTTError("malformed SUBACK: no return code")
    for c in codes:
        if c > 2 and c != SUBACK_FAILURE:
            raise MQTTError("malformed SUBACK: return code %d" % c)
    return pid, codes


def check_empty(ptype, body):
    """MQTTError unless a PINGREQ/PINGRESP/DISCONNECT body is empty."""
    if len(body):
        raise MQTTError("malformed %s: remaining length %d, must be 0" % (NAMES[ptype], len(body)))
