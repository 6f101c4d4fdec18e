"""HKDF, AES-CCM and COSE_Encrypt0 against RFC and cwt-made vectors: runs under pytest and micropython."""

try:
    from tests.dual.support import iter_vectors, raises
except ImportError:
    from support import iter_vectors, raises

from protocol import cbor, cose_enc
from protocol.errors import COSEError, ProtocolError

KEY = bytes(range(32))
MSG = b"\xa3\x00\x02\x01\x05\x02\x00"  # {0: 2, 1: 5, 2: 0}: seq 5


def _h(s):
    return bytes.fromhex(s)


def test_hkdf_rfc5869():
    n = 0
    for v in iter_vectors("cose_encrypt0.json", "hkdf_sha256"):
        n += 1
        got = cose_enc.hkdf_sha256(_h(v["ikm"]), _h(v["salt"]), _h(v["info"]), v["length"])
        assert got.hex() == v["okm"], v["okm"]
    assert n == 3
    assert raises(ProtocolError, cose_enc.hkdf_sha256, b"k", b"", b"", 255 * 32 + 1).field == "length"


def test_ccm_rfc3610_both_ways():
    n = 0
    for v in iter_vectors("cose_encrypt0.json", "ccm"):
        n += 1
        ccm = cose_enc.CCM(_h(v["key"]))
        nonce, aad, text, ct = _h(v["nonce"]), _h(v["aad"]), _h(v["plaintext"]), _h(v["ciphertext"])
        assert ccm.seal(nonce, aad, text) == ct, v["name"]
        assert ccm.open(nonce, aad, ct) == text, v["name"]
        assert cose_enc.new_ccm(_h(v["key"])).open(nonce, aad, ct) == text
        bad = bytearray(ct)
        bad[len(bad) - 1] ^= 0x80
        assert raises(COSEError, ccm.open, nonce, aad, bytes(bad)).field == "tag"
        bad = bytearray(ct)
        bad[0] ^= 1
        assert raises(COSEError, ccm.open, nonce, aad, bytes(bad)).field == "tag"
        assert raises(COSEError, ccm.open, nonce, aad + b"x", ct).field == "tag"
    assert n == 6


def test_ccm_edges():
    key = bytes(16)
    ccm = cose_enc.CCM(key)
    fast = cose_enc.new_ccm(key)
    nonce = bytes(13)
    for n in (0, 1, 15, 16, 17, 32, 200):
        text = bytes(range(n % 256)) if n < 256 else b""
        text = (text * 2)[:n]
        for aad in (b"", b"a", b"x" * 14, b"y" * 30):
            ct = ccm.seal(nonce, aad, text)
            assert len(ct) == n + 8
            assert fast.seal(nonce, aad, text) == ct
            assert ccm.open(nonce, aad, ct) == text
            assert fast.open(nonce, aad, ct) == text
    assert raises(COSEError, ccm.open, nonce, b"", b"1234567").field == "tag"
    assert raises(ProtocolError, ccm.seal, bytes(12), b"", b"").field == "iv"
    assert raises(ProtocolError, cose_enc.CCM, bytes(32)).field == "key"


def test_enc_key_and_iv():
    for v in iter_vectors("cose_encrypt0.json", "frames"):
        assert cose_enc.enc_key(_h(v["key"])).hex() == v["enc_key"]
    assert cose_enc.iv(0, 1) == b"\x00" * 12 + b"\x01"
    assert cose_enc.iv(1, 2**40 + 2).hex() == "01000000000000010000000002"
    assert raises(ProtocolError, cose_enc.enc_key, bytes(16)).field == "key"
    assert raises(ProtocolError, cose_enc.iv, 0, -1).field == "seq"


def test_cwt_frames_open_and_ours_are_identical():
    n = 0
    for v in iter_vectors("cose_encrypt0.json", "frames"):
        n += 1
        key, kid, frame, payload = _h(v["key"]), v["meter_id"].encode(), _h(v["frame"]), _h(v["message"])
        e = cose_enc.Encrypt0(key, kid)
        assert e.seal(v["direction"], v["seq"], payload) == frame, v["meter_id"]
        assert e.open(v["direction"], frame) == (payload, v["seq"])
        assert e.decode(v["direction"], bytearray(frame)) == payload
        assert cose_enc.encrypt0_decode(key, v["meter_id"], v["direction"], frame) == payload
        assert cose_enc.encrypt0_kid(frame) == kid
        assert cose_enc.is_encrypt0(frame)
        # the other direction's IV never opens
        assert raises(COSEError, e.open, 1 - v["direction"], frame).field == "iv"
    assert n >= 4


def test_broken_vectors_report_the_first_failed_check():
    n = 0
    for v in iter_vectors("cose_encrypt0.json", "broken"):
        n += 1
        frame = _h(v["frame"])
        if v["field"] is None:
            cose_enc.encrypt0_decode(_h(v["key"]), v["kid"], v["direction"], frame)
        else:
            e = raises(COSEError, cose_enc.encrypt0_decode, _h(v["key"]), v["kid"], v["direction"], frame)
            assert e.field == v["field"], v["name"]
    assert n > 15


def test_frame_layout_is_the_protocol_one():
    frame = cose_enc.Encrypt0(KEY, b"m1").seal(0, 5, MSG)
    # 16([h'a1010a', {4: h'6d31', 5: h'00..05'}, h'<7 + 8 bytes>'])
    assert frame[:11].hex() == "d08343a1010aa204426d31"
    assert frame[11:13] == b"\x05\x4d" and frame[13:26] == cose_enc.iv(0, 5)
    assert frame[26] == 0x40 | 15 and len(frame) == 27 + 15
    assert cbor.dumps(["Encrypt0", cose_enc.PROTECTED, b""]) == cose_enc.AAD
    assert not cose_enc.is_encrypt0(b"\xd1\x84") and not cose_enc.is_encrypt0(b"")


def test_flipped_bit_anywhere_never_opens():
    e = cose_enc.Encrypt0(KEY, b"m1")
    frame = e.seal(0, 5, MSG)
    buf = bytearray(frame)
    for i in range(len(buf)):
        for bit in range(8):
            buf[i] ^= 1 << bit
            err = raises(ProtocolError, e.decode, 0, buf)
            assert err.field in ("structure", "alg", "kid", "iv", "tag"), (i, bit, err.field)
            buf[i] ^= 1 << bit
    assert e.decode(0, buf) == MSG


def test_truncations_raise_only_protocol_errors():
    e = cose_enc.Encrypt0(KEY, b"meter-42")
    frame = e.seal(1, 9, b"\xa2\x00\x0a\x01\x09")
    for n in range(len(frame)):
        raises(ProtocolError, e.decode, 1, frame[:n])
    assert e.decode(1, frame) == b"\xa2\x00\x0a\x01\x09"


def test_key_must_be_32_bytes():
    for key in (b"", b"k" * 31, b"k" * 33, None):
        assert raises(ProtocolError, cose_enc.Encrypt0, key, b"m1").field == "key"
    assert raises(ProtocolError, cose_enc.Encrypt0, KEY, 1).field == "kid"
