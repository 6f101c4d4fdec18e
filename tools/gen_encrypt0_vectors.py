"""Write protocol/vectors/cose_encrypt0.json: HKDF, AES-CCM and COSE_Encrypt0 vectors for both runtimes.

- ``hkdf_sha256``: RFC 5869 test cases 1-3 (the SHA-256 ones), checked here against the
  ``cryptography`` package's HKDF.
- ``ccm``: RFC 3610 packet vectors #1-#6 (AES-128 key C0..CF, M = 8, L = 2, 13-byte nonce: the
  parameters of AES-CCM-16-64-128), checked against the ``cryptography`` package's AESCCM.
- ``frames``: COSE_Encrypt0 frames made by the independent ``cwt`` package with the key derived
  from a meter's key (docs/protocol.md "Confidential envelope"), each checked to be the frame
  protocol.cose_enc makes from the same key, kid, direction, seq and message.
- ``broken``: frames failing one check each, with the check that must report it.

One entry a line (tests/dual/support.iter_vectors reads them on a 64 KiB heap).
tests/protocol/test_encrypt0_cwt.py checks the file is current.

Run: python tools/gen_encrypt0_vectors.py
"""

import json
import pathlib
import sys

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cwt import COSE, COSEKey

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from gen_protocol_vectors import K1, K2, TS, _cwt_version, dump, enc  # noqa: E402

from protocol import cbor, cose_enc  # noqa: E402
from protocol import messages as M  # noqa: E402
from protocol.errors import ProtocolError  # noqa: E402

RFC5869 = [
    {"ikm": "0b" * 22, "salt": "000102030405060708090a0b0c", "info": "f0f1f2f3f4f5f6f7f8f9", "length": 42,
     "okm": "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
    {"ikm": bytes(range(0x00, 0x50)).hex(), "salt": bytes(range(0x60, 0xB0)).hex(),
     "info": bytes(range(0xB0, 0x100)).hex(), "length": 82,
     "okm": "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
            "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"},
    {"ikm": "0b" * 22, "salt": "", "info": "", "length": 42,
     "okm": "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
]  # fmt: skip

# RFC 3610 section 8, packet vectors #1-#6: (packet length, cleartext header length, expected output)
RFC3610 = [
    (31, 8, "0001020304050607588C979A61C663D2F066D0C2C0F989806D5F6B61DAC38417E8D12CFDF926E0"),
    (32, 8, "000102030405060772C91A36E135F8CF291CA894085C87E3CC15C439C9E43A3BA091D56E10400916"),
    (33, 8, "000102030405060751B1E5F44A197D1DA46B0F8E2D282AE871E838BB64DA8596574ADAA76FBD9FB0C5"),
    (31, 12, "000102030405060708090A0BA28C6865939A9A79FAAA5C4C2A9D4A91CDAC8C96C861B9C9E61EF1"),
    (32, 12, "000102030405060708090A0BDCF1FB7B5D9E23FB9D4E131253658AD86EBDCA3E51E83F077D9C2D93"),
    (33, 12, "000102030405060708090A0B6FC1B011F006568B5171A42D953D469B2570A4BD87405A0443AC91CB94"),
]


def hkdf_vectors():
    for v in RFC5869:
        ikm, salt, info = bytes.fromhex(v["ikm"]), bytes.fromhex(v["salt"]), bytes.fromhex(v["info"])
        ours = cose_enc.hkdf_sha256(ikm, salt, info, v["length"])
        theirs = HKDF(hashes.SHA256(), v["length"], salt or None, info)
        assert ours.hex() == v["okm"] == theirs.derive(ikm).hex()
    return RFC5869


def ccm_vectors():
    key = bytes(range(0xC0, 0xD0))
    out = []
    for n, (length, hdr, expect) in enumerate(RFC3610, 1):
        nonce = bytes((0, 0, 0, n + 2, n + 1, n, n - 1)) + bytes(range(0xA0, 0xA6))
        packet = bytes(range(length))
        aad, text = packet[:hdr], packet[hdr:]
        ct = bytes.fromhex(expect)[hdr:]
        assert AESCCM(key, 8).encrypt(nonce, text, aad) == ct
        assert cose_enc.CCM(key).seal(nonce, aad, text) == ct
        out.append({"name": "RFC 3610 packet vector #%d" % n, "key": key.hex(), "nonce": nonce.hex(),
                    "aad": aad.hex(), "plaintext": text.hex(), "ciphertext": ct.hex()})  # fmt: skip
    return out


def cwt_seal(key, kid, direction, seq, payload):
    k = COSEKey.from_symmetric_key(cose_enc.enc_key(key), alg="AES-CCM-16-64-128", kid=kid)
    iv = cose_enc.iv(direction, seq)
    return COSE.new().encode_and_encrypt(payload, k, protected={1: 10}, unprotected={4: kid, 5: iv})


def cwt_open(key, kid, frame):
    k = COSEKey.from_symmetric_key(cose_enc.enc_key(key), alg="AES-CCM-16-64-128", kid=kid)
    return COSE.new().decode(frame, k)


def frame_vectors():
    out = []
    for key, meter_id, direction, msg in (
        (K1, "m1", cose_enc.UP, M.event(1, TS, M.EVT_POWER_UP)),
        (K1, "MTR-0000000001", cose_enc.UP,
         M.reading(7, TS, 900, [1000, 2000, 3000, 4000], [0, 5, 0, 2**64 - 1], [10, 0, 3, 4], balance=-1500,
                   flags=9, tariff=3)),
        (K2, "a" * 32, cose_enc.DOWN, M.command(2, TS, M.CMD_TOPUP, {0: 9, 1: 1000})),
        (K2, "Z_9-x", cose_enc.UP, M.status(2**40 + 3, TS, "1.0", "rp2040", "adc", 1, 0, 1)),
    ):  # fmt: skip
        payload = cbor.dumps(msg)
        kid = meter_id.encode()
        frame = cwt_seal(key, kid, direction, msg[1], payload)
        assert cose_enc.Encrypt0(key, kid).seal(direction, msg[1], payload) == frame, meter_id
        assert cose_enc.encrypt0_decode(key, kid, direction, frame) == payload
        assert cwt_open(key, kid, frame) == payload
        row = {"key": key.hex(), "meter_id": meter_id, "direction": direction, "seq": msg[1]}
        row.update({"enc_key": cose_enc.enc_key(key).hex(), "message": enc(msg), "frame": frame.hex()})
        out.append(row)
    return out


def broken_vectors():
    """Frames under K1, kid "m1", direction UP, each failing the check named."""
    payload = cbor.dumps(M.event(5, TS, 2))
    iv5 = cose_enc.iv(0, 5)
    ccm = cose_enc.CCM(cose_enc.enc_key(K1))
    good_ct = ccm.seal(iv5, cose_enc.AAD, payload)
    p = cose_enc.PROTECTED
    u = {4: b"m1", 5: iv5}

    def f(protected, unprotected, ct, tag=16):
        return cbor2.dumps(cbor2.CBORTag(tag, [protected, unprotected, ct])).hex()

    p11 = b"\xa1\x01\x0b"
    aad11 = cbor.dumps(["Encrypt0", p11, b""])
    bad_ct = good_ct[:-1] + bytes((good_ct[-1] ^ 1,))
    iv6 = cose_enc.iv(0, 6)
    broken = [
        ("good", f(p, u, good_ct), None),
        ("untagged", cbor2.dumps([p, u, good_ct]).hex(), "structure"),
        ("tag 17", f(p, u, good_ct, 17), "structure"),
        ("four items", cbor2.dumps(cbor2.CBORTag(16, [p, u, good_ct, b""])).hex(), "structure"),
        ("protected a map", f({1: 10}, u, good_ct), "structure"),
        ("no kid", f(p, {5: iv5}, good_ct), "structure"),
        ("ciphertext 7 bytes", f(p, u, good_ct[:7]), "structure"),
        ("ciphertext text", f(p, u, "x" * 20), "structure"),
        ("trailing byte", f(p, u, good_ct) + "00", "structure"),
        ("alg 11, tag right", f(p11, u, ccm.seal(iv5, aad11, payload)), "alg"),
        ("alg missing", f(b"\xa0", u, good_ct), "alg"),
        ("kid other", f(p, {4: b"m2", 5: iv5}, good_ct), "kid"),
        ("no IV", f(p, {4: b"m1"}, good_ct), "iv"),
        ("IV 12 bytes", f(p, {4: b"m1", 5: iv5[:12]}, good_ct), "iv"),
        ("IV down", f(p, {4: b"m1", 5: cose_enc.iv(1, 5)}, good_ct), "iv"),
        ("IV padding not zero", f(p, {4: b"m1", 5: iv5[:1] + b"\x01" + iv5[2:]}, good_ct), "iv"),
        ("bad tag", f(p, u, bad_ct), "tag"),
        ("other IV seq", f(p, {4: b"m1", 5: iv6}, good_ct), "tag"),
        ("message seq not the IV's", f(p, {4: b"m1", 5: iv6}, ccm.seal(iv6, cose_enc.AAD, payload)), "seq"),
    ]
    for name, h, field in broken:
        try:
            cose_enc.encrypt0_decode(K1, b"m1", 0, bytes.fromhex(h))
            got = None
        except ProtocolError as e:
            got = e.field
        assert got == field, (name, got)
    return [
        {"name": n, "key": K1.hex(), "kid": "m1", "direction": 0, "frame": h, "field": fl}
        for n, h, fl in broken
    ]


def encrypt0_json():
    return {
        "source": "RFC 5869, RFC 3610 and frames made by cwt %s" % _cwt_version(),
        "hkdf_sha256": hkdf_vectors(),
        "ccm": ccm_vectors(),
        "frames": frame_vectors(),
        "broken": broken_vectors(),
    }


def main():
    obj = encrypt0_json()
    path = ROOT / "protocol" / "vectors" / "cose_encrypt0.json"
    assert json.loads(dump(obj)) == obj
    path.write_text(dump(obj), encoding="utf-8")
    print("wrote", path, ", ".join("%d %s" % (len(v), k) for k, v in obj.items() if isinstance(v, list)))


if __name__ == "__main__":
    main()
