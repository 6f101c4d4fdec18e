"""Write protocol/vectors/cose_mac0.json and protocol/vectors/messages.json.

Frames are made by protocol.messages.seal and confirmed, byte for byte, with
the independent ``cwt`` package (cwt makes the same frame from the same key,
kid and payload, and verifies ours); message maps are cross-encoded with
``cbor2`` and their parsed form is written out by hand here and checked
against protocol.messages.parse before anything is written.

JSON cannot carry int map keys: an int-keyed map inside a parsed result is
written as {"$map": [[key, value], ...]} (tests/dual/test_messages.py reads it).
Each list entry is written on one line, so the MicroPython tests can read the
files line by line instead of holding a whole table in a 64 KiB heap; keep it
so. tests/protocol/test_cose_cwt_interop.py checks the files are current.

Run: python tools/gen_protocol_vectors.py
"""

import json
import pathlib
import sys

import cbor2
from cwt import COSE, COSEKey

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocol import cbor, commands, cose, messages  # noqa: E402
from protocol.errors import ProtocolError  # noqa: E402

M = messages
TS = 1767225600  # 2026-01-01T00:00:00Z
K1 = bytes(range(32))
K2 = bytes.fromhex("8f" * 16 + "01" * 16)
UMAX = 2**64 - 1


def jmap(d):
    """An int-keyed map as JSON."""
    return {"$map": [[k, jmap(v) if isinstance(v, dict) else v] for k, v in sorted(d.items())]}


def enc(m):
    """Our encoding of m, checked against cbor2's canonical encoding."""
    ours = cbor.dumps(m)
    assert ours == cbor2.dumps(m, canonical=True), m
    return ours.hex()


FULL_READING = M.reading(
    7, TS, 900, [1000, 2000, 3000, 4000], [0, 5, 0, UMAX], [10, 0, 3, 4],
    inst={0: 230123, 1: 5210, 2: -1180, 3: -250, 4: -978, 5: 49980, 6: 5190},
    balance=-1500, flags=M.FLAG_RELAY_OPEN | M.FLAG_EMERGENCY_CREDIT, tariff=3,
)  # fmt: skip
FULL_PARSED = {
    "type": 1, "seq": 7, "ts": TS, "interval": 900, "imp": [1000, 2000, 3000, 4000],
    "exp": [0, 5, 0, UMAX], "q": [10, 0, 3, 4],
    "inst": {"urms_mv": 230123, "irms_ma": 5210, "p_w": -1180, "q_var": -250, "pf_milli": -978,
             "freq_mhz": 49980, "irms_n_ma": 5190},
    "balance": -1500, "flags": 9, "tariff": 3,
}  # fmt: skip

# (name, wire map, expected parse result)
VALID = [
    ("reading full", FULL_READING, FULL_PARSED),
    ("reading minimal", {0: 1, 1: 1, 2: 0, 3: 0, 4: [0], 5: [0], 6: [0, 0, 0, 0]},
     {"type": 1, "seq": 1, "ts": 0, "interval": 0, "imp": [0], "exp": [0], "q": [0, 0, 0, 0]}),
    ("reading unknown keys ignored",
     {0: 1, 1: 2, 2: TS, 3: 900, 4: [1] * 8, 5: [2] * 8, 6: [1, 2, 3, 4], 7: {9: "x", 2: 5}, 99: [1], "x": 1},
     {"type": 1, "seq": 2, "ts": TS, "interval": 900, "imp": [1] * 8, "exp": [2] * 8, "q": [1, 2, 3, 4],
      "inst": {"p_w": 5}}),
    ("event power up", M.event(UMAX, TS, M.EVT_POWER_UP), {"type": 2, "seq": UMAX, "ts": TS, "code": 2}),
    ("event top-up applied", M.event(3, TS, M.EVT_TOPUP_APPLIED, {0: 77, 1: 50000}),
     {"type": 2, "seq": 3, "ts": TS, "code": 10, "detail": jmap({0: 77, 1: 50000})}),
    ("event unknown code", M.event(4, TS, 99, {0: "free", 5: [1]}),
     {"type": 2, "seq": 4, "ts": TS, "code": 99, "detail": jmap({0: "free", 5: [1]})}),
    ("ack done", M.ack(5, TS, 12, M.ACK_DONE), {"type": 3, "seq": 5, "ts": TS, "cmd_seq": 12, "result": 0}),
    ("ack failed with detail", M.ack(6, TS, 13, M.ACK_FAILED, {0: 2}),
     {"type": 3, "seq": 6, "ts": TS, "cmd_seq": 13, "result": 6, "detail": jmap({0: 2})}),
    ("status", M.status(8, TS, "0.1.0", "esp32", "atm90e26", 4, 3, 17),
     {"type": 4, "seq": 8, "ts": TS, "online": 1, "fw": "0.1.0", "board": "esp32", "metering": "atm90e26",
      "rates": 4, "tariff": 3, "boot_count": 17}),
    ("command top-up", M.command(9, TS, M.CMD_TOPUP, commands.topup_args(1, 20000), TS + 3600),
     {"type": 10, "seq": 9, "ts": TS, "cmd": 1, "args": jmap({0: 1, 1: 20000}), "expires": TS + 3600}),
    ("command read now", M.command(10, TS, M.CMD_READ_NOW, {}),
     {"type": 10, "seq": 10, "ts": TS, "cmd": 5, "args": jmap({})}),
]  # fmt: skip


def bad(base, key, value):
    m = dict(base)
    if value is DROP:
        del m[key]
    else:
        m[key] = value
    return m


DROP = object()
R = FULL_READING
E = M.event(3, TS, M.EVT_TOPUP_APPLIED, {0: 77, 1: 50000})
A = M.ack(5, TS, 12, 0)
S = M.status(8, TS, "0.1.0", "esp32", "atm90e26", 4, 3, 17)
C = M.command(9, TS, 1, {0: 1, 1: 2})

# (name, wire value, expected error field)
INVALID = [
    ("not a map", [1, 1, 0], "message"),
    ("type missing", bad(R, 0, DROP), "type"),
    ("type unknown", bad(R, 0, 5), "type"),
    ("type bool", bad(R, 0, True), "type"),
    ("bool key for type", {False: 1, 1: 1, 2: 0, 3: 0, 4: [0], 5: [0], 6: [0, 0, 0, 0]}, "message"),
    ("bool key in inst", bad(R, 7, {False: 230000}), "reading.inst"),
    ("seq missing", bad(R, 1, DROP), "seq"),
    ("seq zero", bad(R, 1, 0), "seq"),
    ("seq negative", bad(R, 1, -1), "seq"),
    ("seq bool", bad(R, 1, True), "seq"),
    ("seq text", bad(R, 1, "7"), "seq"),
    ("seq beyond uint64", bad(R, 1, UMAX + 1), "seq"),
    ("ts float", bad(R, 2, 1.5), "ts"),
    ("interval missing", bad(R, 3, DROP), "reading.interval"),
    ("imp empty", bad(R, 4, []), "reading.imp"),
    ("imp nine rates", bad(R, 4, [0] * 9), "reading.imp"),
    ("imp not a list", bad(R, 4, {0: 1}), "reading.imp"),
    ("imp negative", bad(R, 4, [1, 2, -1, 4]), "reading.imp[2]"),
    ("imp bool", bad(R, 4, [1, 2, False, 4]), "reading.imp[2]"),
    ("exp length", bad(R, 5, [0, 0, 0]), "reading.exp"),
    ("q three", bad(R, 6, [1, 2, 3]), "reading.q"),
    ("q text", bad(R, 6, [1, 2, 3, "4"]), "reading.q[3]"),
    ("inst not a map", bad(R, 7, [1]), "reading.inst"),
    ("inst p float", bad(R, 7, {2: 1.0}), "reading.inst.p_w"),
    ("inst urms negative", bad(R, 7, {0: -1}), "reading.inst.urms_mv"),
    ("inst pf beyond 1000", bad(R, 7, {4: 1001}), "reading.inst.pf_milli"),
    ("balance text", bad(R, 8, "-1"), "reading.balance"),
    ("flags negative", bad(R, 9, -1), "reading.flags"),
    ("tariff bool", bad(R, 11, True), "reading.tariff"),
    ("event code zero", bad(E, 10, 0), "event.code"),
    ("event detail list", bad(E, 11, [77]), "event.detail"),
    ("event top-up amount negative", bad(E, 11, {0: 77, 1: -5}), "event.detail[1]"),
    ("ack result unknown", bad(A, 31, 7), "ack.result"),
    ("ack cmd_seq missing", bad(A, 30, DROP), "ack.cmd_seq"),
    ("status fw missing", bad(S, 41, DROP), "status.fw"),
    ("status board bytes", bad(S, 42, b"esp32"), "status.board"),
    ("status rates zero", bad(S, 44, 0), "status.rates"),
    ("status online two", bad(S, 40, 2), "status.online"),
    ("command cmd text", bad(C, 20, "1"), "command.cmd"),
    ("command args list", bad(C, 21, [1, 2]), "command.args"),
    ("command args missing", bad(C, 21, DROP), "command.args"),
    ("command expires negative", bad(C, 22, -1), "command.expires"),
]

TARIFF = {0: 3, 1: 0, 2: [1200, 800], 3: [[[0, 2], [480, 1], [1320, 2]]], 4: [[0] * 7]}
# (cmd, args, expected named result)
ARGS_VALID = [
    (1, {0: 1, 1: 20000}, {"topup_id": 1, "amount": 20000}),
    (2, {0: 0, 1: 1}, {"state": 0, "reason": 1}),
    (3, TARIFF, {"tariff": jmap({**TARIFF, 5: [], 6: [], 7: 0}), "id": 3, "activate_at": 0}),
    (4, {0: TS}, {"ts": TS}),
    (5, {}, {}),
    (6, {}, {}),
    (6, {0: 900, 1: -500, 2: 10000, 3: [[5, 0, 1440], [6, 480, 1200]], 9: "ignored"},
     {"interval": 900, "low_balance": -500, "emergency_limit": 10000,
      "friendly_hours": [[5, 0, 1440], [6, 480, 1200]]}),
]  # fmt: skip
# (cmd, args, expected error field); "cmd" means UnsupportedCommand
ARGS_INVALID = [
    (7, {}, "cmd"),
    (0, {}, "cmd"),
    (1, [1, 2], "args"),
    (1, {0: 1}, "args.amount"),
    (1, {0: 1, 1: -1}, "args.amount"),
    (1, {0: True, 1: 1}, "args.topup_id"),
    (1, {False: 1, 1: 1}, "args"),
    (2, {0: 2, 1: 0}, "args.state"),
    (2, {0: 1, 1: 4}, "args.reason"),
    (2, {0: 1}, "args.reason"),
    (3, {1: 0}, "args.id"),
    (4, {0: "now"}, "args.ts"),
    (6, {0: 0}, "args.interval"),
    (6, {2: -1}, "args.emergency_limit"),
    (6, {3: [5, 0, 60]}, "args.friendly_hours[0]"),
    (6, {3: [[7, 0, 60]]}, "args.friendly_hours[0][0]"),
    (6, {3: [[1, 600, 600]]}, "args.friendly_hours[0][2]"),
    (6, {3: [[1, 0, 1441]]}, "args.friendly_hours[0][2]"),
]


def from_json(v):
    if isinstance(v, dict):
        if "$map" in v:
            return {k: from_json(x) for k, x in v["$map"]}
        return {k: from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


def error_field(fn, *args):
    try:
        fn(*args)
    except ProtocolError as e:
        return e.field
    raise AssertionError("no error from %r%r" % (fn, args))


def messages_json():
    out = {"valid": [], "invalid": [], "args_valid": [], "args_invalid": []}
    for name, m, parsed in VALID:
        got = M.parse(cbor.loads(bytes.fromhex(enc(m))))
        assert got == from_json(parsed), (name, got)
        out["valid"].append({"name": name, "hex": enc(m), "parsed": parsed})
    for name, m, field in INVALID:
        assert error_field(M.parse, cbor.loads(bytes.fromhex(enc(m)))) == field, name
        out["invalid"].append({"name": name, "hex": enc(m), "field": field})
    for cmd, args, parsed in ARGS_VALID:
        assert commands.command_args(cmd, args) == from_json(parsed), (cmd, args)
        out["args_valid"].append({"cmd": cmd, "hex": enc(args), "parsed": parsed})
    for cmd, args, field in ARGS_INVALID:
        assert error_field(commands.command_args, cmd, args) == field, (cmd, args)
        out["args_invalid"].append({"cmd": cmd, "hex": enc(args), "field": field})
    return out


def cwt_frame(key, kid, payload):
    k = COSEKey.from_symmetric_key(key, alg="HS256", kid=kid)
    return COSE.new().encode_and_mac(payload, k, protected={1: 5}, unprotected={4: kid})


def cwt_verify(key, kid, frame):
    return COSE.new().decode(frame, COSEKey.from_symmetric_key(key, alg="HS256", kid=kid))


def frame_of(protected, unprotected, payload, tag, tagnum=17):
    return cbor2.dumps(cbor2.CBORTag(tagnum, [protected, unprotected, payload, tag])).hex()


def cose_json():
    frames = []
    for key, meter_id, msg in (
        (K1, "m1", M.event(1, TS, M.EVT_POWER_UP)),
        (K1, "MTR-0000000001", FULL_READING),
        (K2, "a" * 32, M.command(2, TS, M.CMD_TOPUP, {0: 9, 1: 1000})),
        (K2, "Z_9-x", M.status(1, TS, "1.0", "rp2040", "adc", 1, 0, 1)),
    ):
        frame = M.seal(key, meter_id, msg)
        kid = meter_id.encode()
        assert frame == cwt_frame(key, kid, cbor.dumps(msg)), meter_id
        assert cwt_verify(key, kid, frame) == cbor.dumps(msg)
        assert M.open_frame(key, meter_id, frame) == M.parse(msg)
        frames.append({"key": key.hex(), "meter_id": meter_id, "message": enc(msg), "frame": frame.hex()})
    # envelopes failing one check each: (name, frame hex, expected field), key K1, kid "m1"
    p, payload = b"\xa1\x01\x05", cbor.dumps(M.event(1, TS, 2))
    good_tag = cose.hmac_sha256(K1, cbor.dumps(["MAC0", p, b"", payload]))
    bad_tag = bytes([good_tag[0] ^ 1]) + good_tag[1:]
    p6 = b"\xa1\x01\x06"
    tag6 = cose.hmac_sha256(K1, cbor.dumps(["MAC0", p6, b"", payload]))
    kid = {4: b"m1"}
    broken = [
        ("good", frame_of(p, kid, payload, good_tag), None),
        ("untagged", cbor2.dumps([p, kid, payload, good_tag]).hex(), "structure"),
        ("tag 18", frame_of(p, kid, payload, good_tag, 18), "structure"),
        ("three items", cbor2.dumps(cbor2.CBORTag(17, [p, kid, payload])).hex(), "structure"),
        ("protected a map", frame_of({1: 5}, kid, payload, good_tag), "structure"),
        ("protected not a map", frame_of(b"\x81\x05", kid, payload, good_tag), "structure"),
        ("protected not CBOR", frame_of(b"\xa1\x01", kid, payload, good_tag), "structure"),
        ("no kid", frame_of(p, {}, payload, good_tag), "structure"),
        ("kid text", frame_of(p, {4: "m1"}, payload, good_tag), "structure"),
        ("payload nil", frame_of(p, kid, None, good_tag), "structure"),
        ("tag 31 bytes", frame_of(p, kid, payload, good_tag[:31]), "structure"),
        ("trailing byte", frame_of(p, kid, payload, good_tag) + "00", "structure"),
        ("alg 6, tag right", frame_of(p6, kid, payload, tag6), "alg"),
        ("alg missing", frame_of(b"\xa0", kid, payload, good_tag), "alg"),
        ("alg 6 and bad tag", frame_of(p6, kid, payload, bad_tag), "alg"),
        ("kid other", frame_of(p, {4: b"m2"}, payload, good_tag), "kid"),
        ("kid other and bad tag", frame_of(p, {4: b"m2"}, payload, bad_tag), "kid"),
        ("bad tag", frame_of(p, kid, payload, bad_tag), "tag"),
        ("payload changed", frame_of(p, kid, cbor.dumps(M.event(2, TS, 2)), good_tag), "tag"),
    ]
    for name, h, field in broken:
        try:
            cose.mac0_decode(K1, b"m1", bytes.fromhex(h))
            got = None
        except ProtocolError as e:
            got = e.field
        assert got == field, (name, got)
    # RFC 4231 test cases 1 and 6 (a key longer than the block is hashed first)
    hmac_vectors = [
        {"key": "0b" * 20, "data": b"Hi There".hex(),
         "mac": "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"key": "aa" * 131, "data": b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
         "mac": "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    ]  # fmt: skip
    for v in hmac_vectors:
        assert cose.hmac_sha256(bytes.fromhex(v["key"]), bytes.fromhex(v["data"])).hex() == v["mac"]
    return {
        "source": "protocol.messages.seal, confirmed byte for byte with cwt %s" % _cwt_version(),
        "hmac_sha256": hmac_vectors,
        "frames": frames,
        "broken": [{"name": n, "key": K1.hex(), "kid": "m1", "frame": h, "field": f} for n, h, f in broken],
    }


def _cwt_version():
    import importlib.metadata

    return importlib.metadata.version("cwt")


def dump(obj):
    """JSON with one list entry per line: small enough for a 64 KiB heap, easy to diff."""
    parts = []
    for k, v in obj.items():
        if isinstance(v, list):
            rows = ",\n  ".join(json.dumps(x, separators=(",", ":")) for x in v)
            parts.append("%s: [\n  %s\n ]" % (json.dumps(k), rows))
        else:
            parts.append("%s: %s" % (json.dumps(k), json.dumps(v)))
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def main():
    for name, obj in (("cose_mac0.json", cose_json()), ("messages.json", messages_json())):
        path = ROOT / "protocol" / "vectors" / name
        assert json.loads(dump(obj)) == obj
        path.write_text(dump(obj), encoding="utf-8")
        print("wrote", path, ", ".join("%d %s" % (len(v), k) for k, v in obj.items() if isinstance(v, list)))


if __name__ == "__main__":
    main()
