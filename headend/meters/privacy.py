"""A meter's privacy policy on the head-end (docs/protocol.md "Confidential envelope", docs/security.md).

A meter whose record has ``privacy`` set must encrypt: ingest refuses its COSE_Mac0 frames
(reason ``not_encrypted``, never stored, the frame not kept in quarantine) and opens its
COSE_Encrypt0 ones; its commands are sealed with COSE_Encrypt0 (direction 1, IV = the
command's seq). Any meter's COSE_Encrypt0 frames are opened (encrypting is never refused).

  ``PrivacyKey(MeterKey)``  the 32-byte key of a meter that requires privacy: what
      ``Storage.meter_keys()`` gives for such a meter, so ingest and the console see the
      policy with the key (a plain ``bytes`` key: COSE_Mac0 accepted). ``MeterKey.next`` is the
      new key while a rotation is in progress (ingest verifies with it when the key fails).
  ``rotate_key(store, meter_id, now, key_hex=None) -> dict``  start a key rotation: the new key
      (generated unless given) sealed at rest as the meter's ``next_key`` and a set-config
      command (cmd 6, arg 4 the key) queued inside COSE_Encrypt0 under the current key, whatever
      the meter's privacy policy; the command's args are stored as ``{"4": "(new key)"}``.
  ``finish_rotation(store, meter_id) -> dict``  once the meter acked that command (result 0 or 1),
      the new key becomes the meter's key; CommandError before that.
  ``encrypt0(meter_id, key) -> protocol.cose_enc.Encrypt0``  cached per (meter, key): the
      derived key and AES-CCM state made once, like ingest's per-meter MAC state.
  ``seal_command(meter, msg) -> bytes``   a command frame for the meter row ``meter``
      (``Storage.meter``): COSE_Encrypt0 when it requires privacy, else COSE_Mac0.
  ``open_command(meter, frame) -> dict``  a stored command frame of either envelope, parsed.
"""

from __future__ import annotations

from headend.errors import CommandError
from protocol import cbor, commands, cose_enc, messages

MAX_CACHED = 100_000
ROTATION_TTL = 7 * 86400  # s the rotation command stays valid
_sealers: dict = {}


class MeterKey(bytes):
    """A meter key with a rotation in progress: ``next`` is the new key (compares as the bytes)."""

    next: bytes | None = None


class PrivacyKey(MeterKey):
    """A meter key whose meter requires COSE_Encrypt0 (compares and hashes as the bytes)."""


def encrypt0(meter_id: str, key: bytes) -> cose_enc.Encrypt0:
    k = (meter_id, bytes(key))
    e = _sealers.get(k)
    if e is None:
        if len(_sealers) >= MAX_CACHED:
            _sealers.clear()
        e = _sealers[k] = cose_enc.Encrypt0(bytes(key), meter_id)
    return e


def required(meter: dict) -> bool:
    return bool(meter.get("privacy"))


def seal_command(meter: dict, msg: dict) -> bytes:
    meter_id = meter["meter_id"]
    key = bytes.fromhex(meter["key"])
    if not required(meter):
        return messages.seal(key, meter_id, msg)
    messages.parse(msg)
    return encrypt0(meter_id, key).seal(cose_enc.DOWN, msg[1], cbor.dumps(msg))


def open_command(meter: dict, frame: bytes) -> dict:
    meter_id = meter["meter_id"]
    key = bytes.fromhex(meter["key"])
    if not cose_enc.is_encrypt0(frame):
        return messages.open_frame(key, meter_id, frame)
    payload = encrypt0(meter_id, key).decode(cose_enc.DOWN, frame)
    return messages.parse(cbor.loads(payload))


def rotate_key(store, meter_id: str, now: float, key_hex: str | None = None) -> dict:
    from headend.meters import provision

    meter = store.meter(meter_id)
    if meter is None:
        raise CommandError("unknown meter %r" % meter_id, "meter_id")
    if meter.get("next_key"):
        raise CommandError(
            "meter %r has a key rotation in progress (command seq %s): finish it first (rotate-key --finish)"
            % (meter_id, meter.get("next_key_seq")),
            "meter_id",
        )
    new = provision.new_key() if key_hex is None else provision.check_key(key_hex)
    args = commands.config_args(key=bytes.fromhex(new))
    ts = int(now)
    enc = encrypt0(meter_id, bytes.fromhex(meter["key"]))

    def make_command(seq: int):
        msg = messages.command(seq, ts, messages.CMD_SET_CONFIG, args, expires=ts + ROTATION_TTL)
        messages.parse(msg)
        frame = enc.seal(cose_enc.DOWN, seq, cbor.dumps(msg))
        return messages.CMD_SET_CONFIG, {4: "(new key)"}, frame, ts + ROTATION_TTL

    with store.transaction():
        row = store.enqueue_command(meter_id, make_command, now, "key-rotation")
        store.set_meter_next_key(meter_id, new, row["seq"])
    return {"meter_id": meter_id, "command_id": row["id"], "seq": row["seq"], "next_key": new}


def finish_rotation(store, meter_id: str) -> dict:
    meter = store.meter(meter_id)
    if meter is None:
        raise CommandError("unknown meter %r" % meter_id, "meter_id")
    seq = meter.get("next_key_seq")
    if not meter.get("next_key") or seq is None:
        raise CommandError("meter %r has no key rotation in progress" % meter_id, "meter_id")
    acks = store.command_acks(meter_id, seq)
    if not any(a["result"] in (0, 1) for a in acks):
        raise CommandError(
            "meter %r has not acked its key rotation (command seq %d) yet: frames under both keys are"
            " still accepted; try again once `headend commands` shows it acked" % (meter_id, seq),
            "meter_id",
        )
    store.finish_meter_key_rotation(meter_id)
    return {"meter_id": meter_id, "seq": seq, "rotated": True}
