"""COSE_Encrypt0 (RFC 9052) with AES-CCM-16-64-128, exactly as docs/protocol.md "Confidential envelope".

A frame is ``16([h'a1010a', {4: kid, 5: IV}, ciphertext])``: the protected
header ``{1: 10}`` (alg AES-CCM-16-64-128) as a byte string, the unprotected
header with the kid (meter id as UTF-8 bytes) and the 13-byte IV, and the
AES-CCM output (encrypted payload || 8-byte tag) under the 16-byte

    enc_key = HKDF-SHA256(IKM = the meter's 32-byte key, salt = h'', info = "ami/v1 enc", L = 16)
    IV      = direction || h'00000000' || seq (8 bytes, big-endian)   (UP 0 meter->head-end, DOWN 1)
    AAD     = CBOR(["Encrypt0", protected, h''])

Contract:
  ``hkdf_sha256(ikm, salt, info, length) -> bytes``   RFC 5869.
  ``enc_key(key) -> bytes``                           the 16-byte derived key.
  ``CCM(enc_key)``  AES-CCM with M = 8, L = 2 (13-byte nonce; RFC 3610) built on one AES-128
      block encryption: ``seal(nonce, aad, plaintext) -> ciphertext || tag`` and
      ``open(nonce, aad, data) -> plaintext`` (``COSEError`` field ``tag``; the tags are compared
      in constant time). On MicroPython the block cipher is ``cryptolib.aes(key, 1)`` (ECB),
      on CPython the ``cryptography`` package's AES.
  ``Encrypt0(key, kid)``  one meter's frames: the derived key and the cipher state made once.
      ``seal(direction, seq, payload) -> frame``; ``open(direction, frame) -> (payload, seq)``
      (every check up to and including the tag; the CALLER then checks that the decrypted
      message's seq equals the returned one, field ``seq``); ``decode(direction, frame) ->
      payload`` does that check too (decodes the payload's CBOR map).
  ``encrypt0_kid(data) -> bytes``  the kid of a structurally valid frame, NOT verified.
  ``is_encrypt0(data) -> bool``    the frame starts as a tagged COSE_Encrypt0 (tag 16).

``open`` checks in the order docs/protocol.md fixes and raises ``COSEError`` whose ``field``
is the first check that failed: ``"structure"`` (not CBOR, not tag 16, not an array of 3,
protected not a byte string holding a map, unprotected not a map with a byte-string kid,
ciphertext not a byte string of at least the tag's 8 bytes), ``"alg"`` (protected key 1 is
not 10), ``"kid"`` (not the expected one), ``"iv"`` (key 5 absent, not 13 bytes, another
direction byte, or bytes 1-4 not zero), ``"tag"`` (decryption with tag verification fails),
``"seq"`` (``decode`` only: the message's seq is not the IV's).
A key that is not 32 bytes is a caller error: ``ProtocolError`` field ``key``.

Sealing allocates the frame and its parts only: the CBC-MAC and counter blocks are three
16-byte buffers made with the ``CCM`` object, and a reading's plaintext is a few AES blocks.
"""

from protocol import cbor
from protocol.cose import _check_key, _kid_bytes, ct_equal, hmac_sha256
from protocol.errors import CBORError, COSEError, ProtocolError

try:
    import cryptolib  # MicroPython: AES in the firmware image (ECB mode 1)

    AESCCM = None
except ImportError:  # CPython
    cryptolib = None
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM


class _ECB:
    """CPython: cryptolib.aes(key, 1)'s encrypt(in, out) over the cryptography package's AES."""

    def __init__(self, key):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()

    def encrypt(self, src, dst):
        dst[:] = self._enc.update(bytes(src))


def _block_cipher(key):
    """One AES-128 block encryptor with ``encrypt(in, out)`` (16 bytes each, in == out allowed)."""
    if cryptolib is not None:
        return cryptolib.aes(key, 1)
    return _ECB(key)


COSE_ENCRYPT0_TAG = 16
HDR_ALG = 1
HDR_KID = 4
HDR_IV = 5
ALG_AES_CCM_16_64_128 = 10
PROTECTED = b"\xa1\x01\x0a"  # CBOR {1: 10}, the only protected header we emit
ENC_KEY_SIZE = 16
IV_SIZE = 13
TAG_SIZE = 8
INFO = b"ami/v1 enc"
UP = 0  # meter -> head-end
DOWN = 1  # head-end -> meter
MAX_PLAINTEXT = 0xFF00  # L = 2 counts up to 65535 bytes; keep clear of it
AAD = b"\x83\x68Encrypt0\x43\xa1\x01\x0a\x40"  # CBOR(["Encrypt0", h'a1010a', h'']) for our header


def hkdf_sha256(ikm, salt, info, length):
    """RFC 5869 HKDF with HMAC-SHA256: extract then expand to ``length`` bytes (<= 8160)."""
    if length > 255 * 32:
        raise ProtocolError("HKDF length too large", "length")
    prk = hmac_sha256(bytes(salt) if salt else b"\x00" * 32, bytes(ikm))
    out = b""
    t = b""
    i = 1
    while len(out) < length:
        t = hmac_sha256(prk, t + bytes(info) + bytes((i,)))
        out += t
        i += 1
    return out[:length]


def enc_key(key):
    """The 16-byte COSE_Encrypt0 key derived from a meter's 32-byte key."""
    _check_key(key)
    return hkdf_sha256(key, b"", INFO, ENC_KEY_SIZE)


def _aad(protected):
    if protected == PROTECTED:
        return AAD
    return cbor.dumps(["Encrypt0", protected, b""])


class CCM:
    """AES-CCM, M = 8 (tag bytes), L = 2 (13-byte nonce), RFC 3610, over AES-128 block encryption."""

    def __init__(self, key, block_cipher=None):
        if len(key) != ENC_KEY_SIZE:
            raise ProtocolError("AES-CCM-16-64-128 key must be 16 bytes", "key")
        self._aes = (block_cipher or _block_cipher)(bytes(key))
        self._x = bytearray(16)  # CBC-MAC state
        self._a = bytearray(16)  # counter block
        self._s = bytearray(16)  # key stream block

    def _absorb(self, data, i):
        """XOR data into the CBC-MAC state from byte i on, encrypting each full block; returns i."""
        x = self._x
        aes = self._aes
        for b in data:
            if i == 16:
                aes.encrypt(x, x)
                i = 0
            x[i] ^= b
            i += 1
        return i

    def _tag(self, nonce, aad, text):
        """The CBC-MAC T (first 8 bytes of self._x) of aad and the plaintext."""
        x = self._x
        aes = self._aes
        n = len(text)
        x[0] = (0x40 if aad else 0) | 0x18 | 0x01  # Adata, (M-2)/2 = 3, L-1 = 1
        for i in range(13):
            x[i + 1] = nonce[i]
        x[14] = n >> 8
        x[15] = n & 0xFF
        aes.encrypt(x, x)
        if aad:
            la = len(aad)
            x[0] ^= la >> 8
            x[1] ^= la & 0xFF
            self._absorb(aad, 2)
            aes.encrypt(x, x)  # the last, zero-padded block
        if n:
            self._absorb(text, 0)
            aes.encrypt(x, x)
        return x

    def _ctr(self, nonce, src, dst):
        """dst[:len(src)] = src XOR S_1 S_2 ...; leaves S_0 in self._s."""
        a = self._a
        s = self._s
        aes = self._aes
        a[0] = 0x01  # L - 1
        for i in range(13):
            a[i + 1] = nonce[i]
        n = len(src)
        ctr = 1
        j = 16
        for k in range(n):
            if j == 16:
                a[14] = ctr >> 8
                a[15] = ctr & 0xFF
                aes.encrypt(a, s)
                ctr += 1
                j = 0
            dst[k] = src[k] ^ s[j]
            j += 1
        a[14] = 0
        a[15] = 0
        aes.encrypt(a, s)

    def _check(self, nonce, n):
        if len(nonce) != IV_SIZE:
            raise ProtocolError("AES-CCM nonce must be 13 bytes", "iv")
        if n > MAX_PLAINTEXT:
            raise ProtocolError("plaintext too long for AES-CCM with L = 2", "payload")

    def seal(self, nonce, aad, text):
        """ciphertext || 8-byte tag of text (bytes-like) under nonce, authenticating aad."""
        n = len(text)
        self._check(nonce, n)
        out = bytearray(n + TAG_SIZE)
        t = self._tag(nonce, aad, text)
        self._ctr(nonce, text, out)
        s = self._s
        for i in range(TAG_SIZE):
            out[n + i] = t[i] ^ s[i]
        return bytes(out)

    def open(self, nonce, aad, data):
        """The plaintext of data (ciphertext || tag); COSEError field ``tag`` when it does not verify."""
        n = len(data) - TAG_SIZE
        if n < 0:
            raise COSEError("ciphertext shorter than the tag", "tag")
        self._check(nonce, n)
        out = bytearray(n)
        self._ctr(nonce, memoryview(data)[:n], out)
        s = self._s
        got = bytearray(TAG_SIZE)
        for i in range(TAG_SIZE):
            got[i] = data[n + i] ^ s[i]
        t = self._tag(nonce, aad, out)
        if not ct_equal(memoryview(t)[:TAG_SIZE], got):
            raise COSEError("AES-CCM tag does not verify", "tag")
        return bytes(out)


class _FastCCM:
    """CPython: the same CCM by the cryptography package's AESCCM (OpenSSL; constant-time tag check)."""

    def __init__(self, key):
        self._c = AESCCM(bytes(key), TAG_SIZE)

    def seal(self, nonce, aad, text):
        return self._c.encrypt(bytes(nonce), bytes(text), aad)

    def open(self, nonce, aad, data):
        if len(data) < TAG_SIZE:
            raise COSEError("ciphertext shorter than the tag", "tag")
        try:
            return self._c.decrypt(bytes(nonce), bytes(data), aad)
        except Exception:  # cryptography.exceptions.InvalidTag
            raise COSEError("AES-CCM tag does not verify", "tag")


def new_ccm(key):
    """The fastest CCM this runtime has for a 16-byte key (both give the same bytes)."""
    if AESCCM is not None:
        return _FastCCM(key)
    return CCM(key)


def iv(direction, seq):
    """The 13-byte IV: direction || h'00000000' || seq as 8 bytes big-endian."""
    if seq < 0 or seq >> 64:
        raise ProtocolError("seq out of range", "seq")
    out = bytearray(IV_SIZE)
    out[0] = direction
    for i in range(8):
        out[12 - i] = (seq >> (8 * i)) & 0xFF
    return bytes(out)


def _bstr_head(n):
    if n < 24:
        return bytes((0x40 | n,))
    if n < 256:
        return bytes((0x58, n))
    return bytes((0x59, n >> 8, n & 0xFF))


def _bad(msg):
    raise COSEError(msg, "structure")


def _parts(data):
    """(protected bytes, protected map, unprotected map, kid, ciphertext) or COSEError."""
    if type(data) is not bytes and type(data) is not bytearray and type(data) is not memoryview:
        _bad("frame must be bytes")
    try:
        item = cbor.loads(data)
    except CBORError as e:
        raise COSEError("frame is not CBOR: %s" % e, "structure")
    if not isinstance(item, cbor.Tag) or item.tag != COSE_ENCRYPT0_TAG:
        _bad("not a COSE_Encrypt0 (tag 16)")
    arr = item.value
    if type(arr) is not list or len(arr) != 3:
        _bad("COSE_Encrypt0 must be an array of 3")
    protected, unprotected, ct = arr
    if type(protected) is not bytes:
        _bad("protected header must be a byte string")
    try:
        pmap = cbor.loads(protected) if protected else {}
    except CBORError as e:
        raise COSEError("protected header is not CBOR: %s" % e, "structure")
    if type(pmap) is not dict:
        _bad("protected header must be a map")
    if type(unprotected) is not dict:
        _bad("unprotected header must be a map")
    kid = unprotected.get(HDR_KID)
    if type(kid) is not bytes:
        _bad("unprotected header must hold the kid (key 4) as a byte string")
    if type(ct) is not bytes or len(ct) < TAG_SIZE:
        _bad("ciphertext must be a byte string of at least %d bytes" % TAG_SIZE)
    return protected, pmap, unprotected, kid, ct


def is_encrypt0(data):
    """True when data starts as a tagged COSE_Encrypt0 (CBOR tag 16), not verified."""
    return len(data) > 0 and data[0] == 0xD0


def encrypt0_kid(data):
    """The kid (bytes) of a structurally valid frame, without opening it."""
    return _parts(data)[3]


def _msg_seq(payload):
    try:
        msg = cbor.loads(payload)
    except CBORError:
        msg = None
    if type(msg) is not dict:
        raise ProtocolError("payload must be a CBOR map", "payload")
    return msg.get(1)


class Encrypt0:
    """One meter's COSE_Encrypt0 frames: ``Encrypt0(key, kid)`` derives the key once."""

    def __init__(self, key, kid, ccm=None):
        self.kid = _kid_bytes(kid)
        self.ccm = ccm if ccm is not None else new_ccm(enc_key(key))
        kid_head = _bstr_head(len(self.kid))
        self._head = b"\xd0\x83\x43" + PROTECTED + b"\xa2\x04" + kid_head + self.kid + b"\x05\x4d"

    def seal(self, direction, seq, payload):
        """The frame carrying payload (bytes: a CBOR message map whose seq is ``seq``)."""
        nonce = iv(direction, seq)
        ct = self.ccm.seal(nonce, AAD, payload)
        return self._head + nonce + _bstr_head(len(ct)) + ct

    def open(self, direction, data):
        """(payload, seq of the IV) of a frame from the other side; COSEError on any failed check.
        The caller must still refuse a message whose seq is not this one (field ``seq``)."""
        protected, pmap, unprotected, kid, ct = _parts(data)
        alg = pmap.get(HDR_ALG)
        if type(alg) is not int or alg != ALG_AES_CCM_16_64_128:
            raise COSEError("alg must be 10 (AES-CCM-16-64-128), got %r" % (alg,), "alg")
        if kid != self.kid:
            raise COSEError("kid %r is not the expected %r" % (kid[:40], self.kid), "kid")
        nonce = unprotected.get(HDR_IV)
        if type(nonce) is not bytes or len(nonce) != IV_SIZE:
            raise COSEError("IV (key 5) must be %d bytes" % IV_SIZE, "iv")
        if nonce[0] != direction or nonce[1:5] != b"\x00\x00\x00\x00":
            raise COSEError("IV is not direction %d || h'00000000' || seq" % direction, "iv")
        seq = 0
        for i in range(5, IV_SIZE):
            seq = (seq << 8) | nonce[i]
        return self.ccm.open(nonce, _aad(protected), ct), seq

    def decode(self, direction, data):
        """The payload of a verified frame whose message seq equals its IV's; COSEError if not."""
        payload, seq = self.open(direction, data)
        if _msg_seq(payload) != seq:
            raise COSEError("message seq is not the IV's %d" % seq, "seq")
        return payload


def encrypt0_encode(key, kid, direction, seq, payload):
    """One-shot seal (derives the key each call: keep an ``Encrypt0`` for a stream of frames)."""
    return Encrypt0(key, kid).seal(direction, seq, payload)


def encrypt0_decode(key, expected_kid, direction, data):
    """One-shot ``Encrypt0(key, expected_kid).decode(direction, data)``."""
    _check_key(key)
    return Encrypt0(key, expected_kid).decode(direction, data)
