"""Ingest: one MQTT message (topic, payload) -> a verdict -> rows of an IngestBatch.

Pure apart from appending to the batch: no broker, no SQL, no clock (the caller
passes ``received_at``). Checks in the order docs/protocol.md gives:

  topic       ``ami/v1/<meter_id>/up/<kind>`` (protocol.topics.parse)   -> "topic"
  meter       the topic's meter is provisioned                           -> "unknown_meter"
  size        at most ``MAX_FRAME`` bytes, before any decoding           -> "structure"
              (a meter's frames are < 2 KiB; decoding a huge frame of colliding
              bignum map keys would take time quadratic in its size)
  will        on a status topic, exactly the unauthenticated ``{0: 4, 40: 0}``
              marks the meter offline (nothing else is accepted unsigned)
  envelope    COSE_Mac0 structure, alg, kid == topic meter id, tag
              (protocol.messages.open_frame)            -> "structure" | "alg" | "kid" | "tag"
              or, for a frame with CBOR tag 16, COSE_Encrypt0 (protocol.cose_enc, the key derived
              from the meter's, cached per meter): structure, alg 10, kid, IV (direction 0)
              and the AES-CCM tag   -> "structure" | "alg" | "kid" | "iv" | "tag"
              A COSE_Mac0 frame from a meter that requires privacy (its key a
              headend.meters.privacy.PrivacyKey) -> "not_encrypted": counted, never
              stored, and not even kept in quarantine (it may carry a reading in clear)
  message     the payload is a valid message map        -> "message"
              (COSE_Encrypt0: its seq must be the IV's   -> "iv_seq")
  kind        its type matches the topic's kind (a reading on .../up/reading) -> "wrong_type"

Then de-duplication on ``(meter_id, seq)`` happens in storage (an identical
re-send counts as a duplicate; another frame under a stored seq is refused as
"seq_reused"). Refused frames go to quarantine (storage keeps a bounded sample per
meter per hour, headend.ingest.store_quarantine) and all of them to ``rejected:<reason>``.

  ``verify(topic, payload, keys) -> Verdict``      keys: meter_id -> 32-byte key
  ``add(batch, topic, payload, received_at, keys) -> Verdict``  verify and append rows
  ``take(batch, topic, payload, received_at, keys)``  add's rows without the verdict
      (what `headend serve` calls; topic str or bytes): our meters' readings go
      straight to their row (headend.ingest.fast.row), the rest through add
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import NamedTuple

from headend.ingest import fast as ingest_fast
from headend.ingest.store import IngestBatch
from headend.meters import privacy
from headend.meters.privacy import PrivacyKey
from protocol import cbor, cose, cose_enc, messages, topics
from protocol.errors import CBORError, COSEError, ProtocolError

KIND_TYPES = {
    "reading": messages.TYPE_READING,
    "event": messages.TYPE_EVENT,
    "ack": messages.TYPE_ACK,
    "status": messages.TYPE_STATUS,
}
STATUS_FIELDS = {
    "fw": "fw",
    "board": "board",
    "metering": "metering",
    "rates": "status_rates",
    "tariff": "tariff",
    "boot_count": "boot_count",
}
MAX_QUARANTINED_PAYLOAD = 4096  # bytes kept of a refused frame
MAX_FRAME = 16384  # bytes; larger payloads are refused undecoded (the meter's own max_packet)
NOT_ENCRYPTED = "not_encrypted"  # COSE_Mac0 from a meter that must encrypt


class Verdict(NamedTuple):
    kind: str  # reading | event | ack | status | will | rejected
    meter_id: str | None
    msg: dict | None = None
    reason: str | None = None
    detail: str | None = None


def _rejected(meter_id, reason, detail):
    return Verdict("rejected", meter_id, None, reason, detail)


_topics: dict = {}  # topic (str, or bytes as serve reads it) -> topics.parse(topic), for topics that parsed
MAX_CACHED_TOPICS = 100_000


def _parse_topic(topic):
    parsed = _topics.get(topic)
    if parsed is None:
        parsed = topics.parse(topic)  # ProtocolError: not cached
        if len(_topics) >= MAX_CACHED_TOPICS:
            _topics.clear()
        _topics[topic] = parsed
    return parsed


def verify(topic: str, payload: bytes, keys: Mapping[str, bytes]) -> Verdict:
    try:
        meter_id, direction, kind = (
            _parse_topic(topic) if type(topic) is str or type(topic) is bytes else topics.parse(topic)
        )
    except ProtocolError as e:
        return _rejected(None, "topic", str(e))
    if direction != "up":
        return _rejected(meter_id, "topic", "not an up topic")
    key = keys.get(meter_id)
    if key is None:
        return _rejected(meter_id, "unknown_meter", "meter %r is not provisioned" % meter_id)
    if len(payload) > MAX_FRAME:
        return _rejected(meter_id, "structure", "frame of %d bytes is over %d" % (len(payload), MAX_FRAME))
    if kind == "status" and len(payload) < 8:  # the will is 6 bytes; a COSE_Mac0 is > 40
        try:
            messages.parse_will(payload)
            return Verdict("will", meter_id, {"online": 0})
        except ProtocolError:
            pass
    if payload[:1] == b"\xd0":  # CBOR tag 16: COSE_Encrypt0
        v = _verify_encrypt0(key, meter_id, kind, payload)
        nxt = getattr(key, "next", None)
        if v.reason == "tag" and nxt is not None:  # a key rotation in progress: the new key
            again = _verify_encrypt0(nxt, meter_id, kind, payload)
            if again.kind != "rejected":
                return again
        return v
    if type(key) is PrivacyKey:
        return _rejected(
            meter_id,
            NOT_ENCRYPTED,
            "meter %r must encrypt (COSE_Encrypt0): a plain frame is refused" % meter_id,
        )
    try:
        try:
            msg = _open_mac0(key, meter_id, payload)
        except COSEError as e:
            nxt = getattr(key, "next", None)
            if e.field != "tag" or nxt is None:
                raise
            try:  # a key rotation in progress: the new key
                msg = _open_mac0(nxt, meter_id, payload)
            except ProtocolError:
                raise e from None
    except COSEError as e:
        return _rejected(meter_id, e.field or "structure", str(e))
    except ProtocolError as e:
        return _rejected(meter_id, "message", str(e))
    if msg["type"] != KIND_TYPES[kind]:
        return _rejected(meter_id, "wrong_type", "message type %d on a %s topic" % (msg["type"], kind))
    return Verdict(kind, meter_id, msg)


def _open_mac0(key, meter_id, payload) -> dict:
    body = _fast_envelope(key, meter_id, payload)
    if body is None:  # anything unusual, or refused: the reference decoder names the reason
        return messages.open_frame(key if type(key) is bytes else bytes(key), meter_id, payload)
    return _message(body)


def _verify_encrypt0(key, meter_id, kind, payload) -> Verdict:
    try:
        body, seq = privacy.encrypt0(meter_id, key).open(cose_enc.UP, payload)
        msg = _message(body)
    except COSEError as e:
        return _rejected(meter_id, e.field or "structure", str(e))
    except ProtocolError as e:
        return _rejected(meter_id, "message", str(e))
    if msg["seq"] != seq:
        return _rejected(meter_id, "iv_seq", "message seq %d is not the IV's %d" % (msg["seq"], seq))
    if msg["type"] != KIND_TYPES[kind]:
        return _rejected(meter_id, "wrong_type", "message type %d on a %s topic" % (msg["type"], kind))
    return Verdict(kind, meter_id, msg)


# ---------------------------------------------------------------- envelope fast path
#
# protocol.cose is pure Python (it runs on the meters too); this is its C-speed
# twin for the common case only. It accepts a frame only if its bytes are exactly
# the preferred encoding 17([h'a10105', {4: kid}, payload, tag]) with kid == the
# topic's meter and tag == HMAC-SHA256 over the preferred encoding of
# ["MAC0", h'a10105', h'', payload]: then protocol.cose.mac0_decode would return
# that same payload. Anything else (other headers, longer encodings, bad tag)
# returns None and goes through messages.open_frame, which names the reason.
# The payload then goes through headend.ingest.fast.reading (cbor2 under a
# strictness guard), falling back to protocol.cbor + messages.parse.
# tests/headend/test_ingest.py checks both agree on valid and mutated frames.

_HEAD = b"\xd1\x84\x43" + cose.PROTECTED + b"\xa1\x04"  # 17([bstr .cbor {1: 5}, {4: ...
_MAC0_HEAD = b"\x84\x64MAC0\x43" + cose.PROTECTED + b"\x40"  # ["MAC0", h'a10105', h'', ...
_kid_parts: dict[str, bytes] = {}
_macs: dict = {}  # key -> HMAC-SHA256 state after _MAC0_HEAD (copied per frame)
try:  # OpenSSL's HMAC object, copied in C (hmac.HMAC.copy is Python and as slow as hmac.digest)
    from _hashlib import hmac_new as _hmac_state
except ImportError:  # pragma: no cover (a Python without OpenSSL)
    _hmac_state = hmac.new
MAX_CACHED_MACS = 100_000


def _bstr_head(n: int) -> bytes:
    if n < 24:
        return bytes((0x40 + n,))
    if n < 0x100:
        return bytes((0x58, n))
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    return b"\x5a" + n.to_bytes(4, "big")


def _fast_envelope(key: bytes, meter_id: str, frame: bytes) -> bytes | None:
    kid_part = _kid_parts.get(meter_id)
    if kid_part is None:
        kid = meter_id.encode()
        kid_part = _kid_parts[meter_id] = _HEAD + _bstr_head(len(kid)) + kid
    if not frame.startswith(kid_part):
        return None
    i, size = len(kid_part), len(frame)
    if size < i + 1 + 34:
        return None
    b = frame[i]
    if 0x40 <= b < 0x58:
        n, j = b - 0x40, i + 1
    elif b == 0x58:  # the preferred length encoding: a one-byte length only from 24
        n, j = frame[i + 1], i + 2
        if n < 24:
            return None
    elif b == 0x59:  # a two-byte length only from 256
        n, j = frame[i + 1] << 8 | frame[i + 2], i + 3
        if n < 0x100:
            return None
    else:
        return None
    end = j + n
    if size != end + 34 or frame[end] != 0x58 or frame[end + 1] != 0x20:
        return None  # not exactly one 32-byte tag after the payload
    mac = _macs.get(key)
    if mac is None:
        if len(_macs) >= MAX_CACHED_MACS:
            _macs.clear()
        mac = _macs[key] = _hmac_state(key, _MAC0_HEAD, "sha256")
    mac = mac.copy()  # the key's inner and outer pads and the fixed head, hashed once per meter
    mac.update(frame[i:end])  # the payload's bstr head and the payload
    return frame[j:end] if hmac.compare_digest(mac.digest(), frame[end + 2 :]) else None


_enc_heads: dict[str, bytes] = {}
_ccms: dict[str, tuple] = {}  # meter_id -> (key, AES-CCM state of its derived key)


def _fast_encrypt0(key: bytes, meter_id: str, frame: bytes):
    """(payload, IV seq) of a COSE_Encrypt0 frame in exactly our encoding that opens, else None
    (then ``verify`` names the reason): 16([h'a1010a', {4: kid, 5: h'00 00000000' || seq}, ct])."""
    head = _enc_heads.get(meter_id)
    if head is None:
        if len(_enc_heads) >= MAX_CACHED_MACS:
            _enc_heads.clear()
        kid = meter_id.encode()
        head = _enc_heads[meter_id] = (
            b"\xd0\x83\x43"
            + cose_enc.PROTECTED
            + b"\xa2\x04"
            + _bstr_head(len(kid))
            + kid
            + b"\x05\x4d\x00\x00\x00\x00\x00"
        )
    if not frame.startswith(head):
        return None
    i = len(head)
    j = i + 8
    if len(frame) < j + 1 + cose_enc.TAG_SIZE:
        return None
    b = frame[j]
    if 0x40 <= b < 0x58:
        n, k = b - 0x40, j + 1
    elif b == 0x58:
        n, k = frame[j + 1], j + 2
    elif b == 0x59:
        n, k = int.from_bytes(frame[j + 1 : j + 3], "big"), j + 3
    else:
        return None
    if len(frame) != k + n or n < cose_enc.TAG_SIZE or frame[j:k] != _bstr_head(n):
        return None
    c = _ccms.get(meter_id)
    if c is None or c[0] != key:
        if len(_ccms) >= MAX_CACHED_MACS:
            _ccms.clear()
        ccm = privacy.encrypt0(meter_id, key).ccm
        raw = getattr(ccm, "_c", None)  # the cryptography package's AESCCM itself: no copies
        c = _ccms[meter_id] = (key, raw.decrypt if raw is not None else lambda n, d, a: ccm.open(n, a, d))
    try:
        body = c[1](frame[i - 5 : j], frame[k:], cose_enc.AAD)
    except Exception:  # cryptography.exceptions.InvalidTag: verify names the reason
        return None
    return body, int.from_bytes(frame[i:j], "big")


def _message(body: bytes) -> dict:
    """What messages.open_frame does after the envelope verified (readings via ingest_fast)."""
    msg = ingest_fast.reading(body)
    if msg is not None:
        return msg
    return _reference_message(body)


def _reference_message(body: bytes) -> dict:
    try:
        msg = cbor.loads(body)
    except CBORError:
        msg = None
    if type(msg) is not dict:
        messages.fail("payload", "must be a CBOR map")
    return messages.parse(msg)


def _ints(values) -> str:
    return str(values).replace(" ", "")  # == json.dumps of a list of ints (never bools), faster


def _json(value):
    if value is None:
        return None
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError):  # bytes, tags, bignums... in a meter's detail map: store them as text
        return json.dumps(_plain(value), separators=(",", ":"))


def _plain(x):
    """x with what JSON cannot hold as text: bytes as ``h'hex'``, big ints as hex, the rest by repr."""
    t = type(x)
    if t is dict:
        return {_key(k): _plain(v) for k, v in x.items()}
    if t is list:
        return [_plain(v) for v in x]
    if t is bytes:
        return "h'%s'" % x.hex()
    if t is int and not messages.INT_MIN <= x <= messages.UINT_MAX:
        return hex(x)
    if x is None or t in (str, int, float, bool):
        return x
    try:
        return repr(x)
    except ValueError:  # a tag around an int too long for str()
        return "<%s>" % t.__name__


def _key(k):
    v = _plain(k)
    return v if v is None or type(v) in (str, int, float, bool) else str(v)


def _inst_json(inst):
    """== _json(inst) for messages.parse's inst: names of INST_NAMES to ints (never bools)."""
    if inst is None:
        return None
    return "{%s}" % ",".join(['"%s":%d' % kv for kv in inst.items()])


def take(batch: IngestBatch, topic, payload: bytes, received_at: float, keys: Mapping[str, bytes]) -> None:
    """``add`` without the verdict, what `headend serve` calls: a reading from a known meter
    in our own encoding (a parsed topic, the envelope and payload fast paths) becomes its row
    straight away; anything else goes through ``add``. The rows, counters and quarantine are
    ``add``'s (tests/fuzz/test_fuzz_ingest.py compares them)."""
    parsed = _topics.get(topic)
    if parsed is not None and parsed[2] == "reading" and parsed[1] == "up" and len(payload) <= MAX_FRAME:
        meter_id = parsed[0]
        key = keys.get(meter_id)
        if key is not None:
            seq = None
            if payload[:1] == b"\xd0":  # COSE_Encrypt0
                opened = _fast_encrypt0(key, meter_id, payload)
                body = None if opened is None else opened[0]
                if opened is not None:
                    seq = opened[1]
            elif type(key) is PrivacyKey:
                body = None  # refused by add
            else:
                body = _fast_envelope(key, meter_id, payload)
            if body is not None:
                r = ingest_fast.row(body, meter_id, received_at, payload)
                if r is not None and (seq is None or r[1] == seq):
                    batch.readings.append(r)
                    batch.seen[meter_id] = received_at
                    return
    add(batch, topic, payload, received_at, keys)


def add(
    batch: IngestBatch, topic: str, payload: bytes, received_at: float, keys: Mapping[str, bytes]
) -> Verdict:
    v = verify(topic, payload, keys)
    m = v.msg
    if v.kind == "reading":
        batch.readings.append(
            (
                v.meter_id,
                m["seq"],
                m["ts"],
                received_at,
                m["interval"],
                _ints(m["imp"]),
                _ints(m["exp"]),
                _ints(m["q"]),
                _inst_json(m.get("inst")),
                m.get("balance"),
                m.get("flags", 0),
                m.get("tariff"),
                payload,
            )
        )
    elif v.kind == "event":
        batch.events.append((v.meter_id, m["seq"], m["ts"], m["code"], _json(m.get("detail")), received_at))
    elif v.kind == "ack":
        batch.acks.append(
            (v.meter_id, m["seq"], m["cmd_seq"], m["result"], _json(m.get("detail")), m["ts"], received_at)
        )
    elif v.kind == "status":
        fields = {col: m[name] for name, col in STATUS_FIELDS.items() if name in m}
        batch.statuses.append((v.meter_id, m["online"], received_at, m["seq"], fields))
    elif v.kind == "will":
        batch.statuses.append((v.meter_id, 0, received_at, None, {}))
    else:
        kept = bytes(payload[:MAX_QUARANTINED_PAYLOAD])
        detail = (
            v.detail
            if len(payload) <= MAX_QUARANTINED_PAYLOAD
            else "%s (payload truncated from %d bytes)" % (v.detail, len(payload))
        )
        if v.reason == NOT_ENCRYPTED:  # the frame may hold a reading in clear: never kept
            kept = b""
            detail = "%s (%d-byte frame not kept)" % (v.detail, len(payload))
        text = str(topic, "utf-8", "replace") if type(topic) is bytes else str(topic)
        batch.quarantine.append((received_at, text[:256], v.meter_id, v.reason, detail, kept))
        batch.count("rejected:" + v.reason)
        return v
    if v.kind != "will":
        batch.seen[v.meter_id] = received_at
    return v
