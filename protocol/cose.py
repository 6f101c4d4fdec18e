"""COSE_Mac0 (RFC 9052) with HMAC 256/256, exactly as docs/protocol.md "Envelope".

A frame is ``17([h'a10105', {4: kid}, payload, tag])``: the protected header
``{1: 5}`` (alg HMAC 256/256) as a byte string, the unprotected header with
the kid (the meter id as UTF-8 bytes), the payload byte string and the 32-byte
``tag = HMAC-SHA256(key, CBOR(["MAC0", protected, h'', payload]))``.

Contract:
  ``hmac_sha256(key, data) -> bytes``       RFC 2104 over ``hashlib.sha256``.
  ``ct_equal(a, b) -> bool``                 compare in time independent of
      where the inputs differ (only their lengths may leak).
  ``mac0_encode(key, kid, payload) -> bytes`` the tagged COSE_Mac0 frame.
  ``mac0_decode(key, expected_kid, data) -> bytes`` the verified payload.
  ``mac0_kid(data) -> bytes``                the kid of a structurally valid
      frame, NOT verified: only for looking up the key to verify with.

``mac0_decode`` checks in the order docs/protocol.md fixes and raises
``COSEError`` whose ``field`` is the first check that failed:
``"structure"`` (not CBOR, not Tag 17, not an array of 4, protected not a
byte string holding a map (``h''`` is the empty map), unprotected not a map
with a byte-string kid at key 4, payload not a byte string, tag not 32
bytes), ``"alg"`` (protected key 1 is not 5), ``"kid"`` (not ``expected_kid``), ``"tag"`` (HMAC mismatch).
A key that is not 32 bytes is a caller error: ``ProtocolError`` field ``key``.
kids may be given as ``bytes`` or as ``str`` (encoded as UTF-8).
"""

import hashlib

from protocol import cbor
from protocol.errors import CBORError, COSEError, ProtocolError

COSE_MAC0_TAG = 17
HDR_ALG = 1
HDR_KID = 4
ALG_HMAC_256_256 = 5
KEY_SIZE = 32
TAG_SIZE = 32
PROTECTED = b"\xa1\x01\x05"  # CBOR {1: 5}, the only protected header we emit

_BLOCK = 64  # SHA-256 block size, bytes


def hmac_sha256(key, data):
    """HMAC-SHA256 (RFC 2104) of data under key; both bytes-like."""
    key = bytes(key)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(bytes(data))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def ct_equal(a, b):
    """True if a == b; the time taken depends only on the lengths."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def _kid_bytes(kid):
    if type(kid) is str:
        return kid.encode("utf-8")
    if type(kid) is bytes or type(kid) is bytearray:
        return bytes(kid)
    raise ProtocolError("kid must be bytes or str", "kid")


def _check_key(key):
    if (type(key) is not bytes and type(key) is not bytearray) or len(key) != KEY_SIZE:
        raise ProtocolError("key must be %d bytes" % KEY_SIZE, "key")


def _mac(key, protected, payload):
    return hmac_sha256(key, cbor.dumps(["MAC0", protected, b"", payload]))


def mac0_encode(key, kid, payload):
    """The COSE_Mac0 frame (bytes) carrying payload (bytes) under key."""
    _check_key(key)
    payload = bytes(payload)
    tag = _mac(key, PROTECTED, payload)
    return cbor.dumps(cbor.Tag(COSE_MAC0_TAG, [PROTECTED, {HDR_KID: _kid_bytes(kid)}, payload, tag]))


def _bad(msg):
    raise COSEError(msg, "structure")


def _parts(data):
    """(protected bytes, protected map, kid, payload, tag) or COSEError."""
    if type(data) is not bytes and type(data) is not bytearray and type(data) is not memoryview:
        _bad("frame must be bytes")
    try:
        item = cbor.loads(data)
    except CBORError as e:
        raise COSEError("frame is not CBOR: %s" % e, "structure")
    if not isinstance(item, cbor.Tag) or item.tag != COSE_MAC0_TAG:
        _bad("not a COSE_Mac0 (tag 17)")
    arr = item.value
    if type(arr) is not list or len(arr) != 4:
        _bad("COSE_Mac0 must be an array of 4")
    protected, unprotected, payload, tag = arr
    if type(protected) is not bytes:
        _bad("protected header must be a byte string")
    try:
        pmap = cbor.loads(protected) if protected else {}  # h'' is the empty map (RFC 9052 3)
    except CBORError as e:
        raise COSEError("protected header is not CBOR: %s" % e, "structure")
    if type(pmap) is not dict:
        _bad("protected header must be a map")
    if type(unprotected) is not dict:
        _bad("unprotected header must be a map")
    kid = unprotected.get(HDR_KID)
    if type(kid) is not bytes:
        _bad("unprotected header must hold the kid (key 4) as a byte string")
    if type(payload) is not bytes:
        _bad("payload must be a byte string")
    if type(tag) is not bytes or len(tag) != TAG_SIZE:
        _bad("tag must be a %d-byte string" % TAG_SIZE)
    return protected, pmap, kid, payload, tag


def mac0_kid(data):
    """The kid (bytes) of a structurally valid frame, without verifying it."""
    return _parts(data)[2]


def mac0_decode(key, expected_kid, data):
    """Verify the frame data and return its payload bytes; COSEError if not."""
    _check_key(key)
    expected_kid = _kid_bytes(expected_kid)
    protected, pmap, kid, payload, tag = _parts(data)
    alg = pmap.get(HDR_ALG)
    if type(alg) is not int or alg != ALG_HMAC_256_256:
        raise COSEError("alg must be %d (HMAC 256/256), got %r" % (ALG_HMAC_256_256, alg), "alg")
    if kid != expected_kid:
        raise COSEError("kid %r is not the expected %r" % (kid[:40], expected_kid), "kid")
    if not ct_equal(_mac(key, protected, payload), tag):
        raise COSEError("tag does not verify", "tag")
    return payload
