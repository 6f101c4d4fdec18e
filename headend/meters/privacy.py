"""A meter's privacy policy on the head-end (docs/protocol.md "Confidential envelope", docs/security.md).

A meter whose record has ``privacy`` set must encrypt: ingest refuses its COSE_Mac0 frames
(reason ``not_encrypted``, never stored, the frame not kept in quarantine) and opens its
COSE_Encrypt0 ones; its commands are sealed with COSE_Encrypt0 (direction 1, IV = the
command's seq). Any meter's COSE_Encrypt0 frames are opened (encrypting is never refused).

  ``PrivacyKey(bytes)``     the 32-byte key of a meter that requires privacy: what
      ``Storage.meter_keys()`` gives for such a meter, so ingest and the console see the
      policy with the key (a plain ``bytes`` key: COSE_Mac0 accepted).
  ``encrypt0(meter_id, key) -> protocol.cose_enc.Encrypt0``  cached per (meter, key): the
      derived key and AES-CCM state made once, like ingest's per-meter MAC state.
  ``seal_command(meter, msg) -> bytes``   a command frame for the meter row ``meter``
      (``Storage.meter``): COSE_Encrypt0 when it requires privacy, else COSE_Mac0.
  ``open_command(meter, frame) -> dict``  a stored command frame of either envelope, parsed.
"""

from __future__ import annotations

from protocol import cbor, cose_enc, messages

MAX_CACHED = 100_000
_sealers: dict = {}


class PrivacyKey(bytes):
    """A meter key whose meter requires COSE_Encrypt0 (compares and hashes as the bytes)."""

    __slots__ = ()


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
