"""Message maps, command args and sealed frames: runs under pytest and micropython.

Vector files are read one entry (line) at a time: a 64 KiB heap never holds a
whole table. Set-tariff args against the real protocol.tariff_calendar, and the
code constants, are tested on CPython (tests/protocol/test_cose_cwt_interop.py):
beside these modules the calendar would not leave room in a 64 KiB heap.
"""

try:
    from tests.dual.support import iter_vectors, raises
except ImportError:
    from support import iter_vectors, raises

from protocol import cbor, commands, cose
from protocol import messages as M
from protocol.commands import UnsupportedCommand, command_args
from protocol.errors import COSEError, ProtocolError

KEY = bytes(range(32))
TS = 1767225600
PREFIX = {1: "reading.", 2: "event.", 3: "ack.", 4: "status.", 10: "command."}


def _value(v):
    """A vector's JSON value, with {"$map": [[k, v], ...]} back to an int-keyed dict."""
    if isinstance(v, dict):
        if "$map" in v:
            return {k: _value(x) for k, x in v["$map"]}
        return {k: _value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def _field(fn, *args):
    return raises(ProtocolError, fn, *args).field


def _msgs():
    """The wire maps of the valid vectors, one at a time."""
    for v in iter_vectors("messages.json", "valid"):
        yield cbor.loads(bytes.fromhex(v["hex"]))


def test_valid_vectors():
    n = 0
    for v in iter_vectors("messages.json", "valid"):
        assert M.parse(cbor.loads(bytes.fromhex(v["hex"]))) == _value(v["parsed"]), v["name"]
        n += 1
    assert n >= 10


def test_invalid_vectors_name_the_field():
    n = 0
    for v in iter_vectors("messages.json", "invalid"):
        assert _field(M.parse, cbor.loads(bytes.fromhex(v["hex"]))) == v["field"], v["name"]
        n += 1
    assert n > 30


def test_args_vectors():
    for v in iter_vectors("messages.json", "args_valid"):
        if v["cmd"] != M.CMD_SET_TARIFF:
            assert command_args(v["cmd"], cbor.loads(bytes.fromhex(v["hex"]))) == _value(v["parsed"]), v
    for v in iter_vectors("messages.json", "args_invalid"):
        if v["cmd"] != M.CMD_SET_TARIFF:
            exc = UnsupportedCommand if v["field"] == "cmd" else ProtocolError
            e = raises(exc, command_args, v["cmd"], cbor.loads(bytes.fromhex(v["hex"])))
            assert e.field == v["field"], v
            assert v["field"] == "cmd" or not isinstance(e, UnsupportedCommand), v


def test_sealed_frame_vectors():
    for v in iter_vectors("cose_mac0.json", "frames"):
        key = bytes.fromhex(v["key"])
        msg = cbor.loads(bytes.fromhex(v["message"]))
        frame = bytes.fromhex(v["frame"])
        assert M.seal(key, v["meter_id"], msg) == frame
        assert M.open_frame(key, v["meter_id"], frame) == M.parse(msg)


def test_builders_parse_back_through_seal_and_open():
    cfg = commands.config_args(interval=60, friendly_hours=[(5, 0, 1440)])
    for msg in (
        M.reading(1, TS, 900, [1, 2], [0, 9], [1, 2, 3, 4], {"p_w": -5, 4: 1000}, -1, 31, 2),
        M.reading(2, TS, 0, (5,), (6,), (0, 0, 0, 0), flags=None),
        M.event(3, TS, M.EVT_CMD_REJECTED, {0: 9, 1: M.ACK_STALE}),
        M.ack(4, TS, 9, M.ACK_BAD_ARGS, {0: "args.amount"}),
        M.status(5, TS, "1.2.3", "unix", "adc", 1, 0, 1),
        M.command(6, TS, M.CMD_RELAY, commands.relay_args(commands.RELAY_CLOSE), TS + 60),
        M.command(7, TS, M.CMD_SET_CONFIG, cfg),
    ):
        parsed = M.parse(msg)
        assert parsed["type"] == msg[0] and parsed["seq"] == msg[1] and parsed["ts"] == TS
        frame = M.seal(KEY, "meter-7", msg)
        assert M.open_frame(KEY, "meter-7", frame) == parsed
        assert cose.mac0_kid(frame) == b"meter-7"
        if msg[1] == 1:
            assert parsed["inst"] == {"p_w": -5, "pf_milli": 1000} and parsed["balance"] == -1
        if msg[1] == 2:
            assert "flags" not in parsed and "inst" not in parsed and parsed["imp"] == [5]
    assert M.reading(1, TS, 900, [1], [1], [0, 0, 0, 0])[9] == 0  # flags default to 0
    assert _field(M.reading, 1, TS, 900, [1], [1], [0, 0, 0, 0], {"volts": 1}) == "reading.inst"


def test_common_keys_reject_wrong_types():
    for msg in _msgs():
        for key, name in ((0, "type"), (1, "seq"), (2, "ts")):
            for bad in (True, False, -1, "1", b"\x01", 1.0, None, [1], 2**64):
                m = dict(msg)
                m[key] = bad
                assert _field(M.parse, m) == name, (msg[0], key, bad)
        msg[1] = 0
        assert _field(M.parse, msg) == "seq"


def test_type_keys_reject_bools_negatives_and_text():
    for msg in _msgs():
        schema = M.SCHEMA[msg[0]]
        for i in range(1, len(schema), 3):
            key = schema[i]
            for bad in (True, -1, b"x" if type(msg.get(key)) is str else "x", 1.5):
                if msg[0] == 1 and key == 8 and bad == -1:
                    continue  # balance is signed
                m = dict(msg)
                m[key] = bad
                e = raises(ProtocolError, M.parse, m)
                assert e.field.startswith(PREFIX[msg[0]]), (key, bad, e.field)


def test_parse_rejects_non_maps_and_seal_refuses_bad_messages():
    for bad in (None, [], 1, "map", b"\xa0"):
        assert _field(M.parse, bad) == "message"
    assert _field(M.seal, KEY, "m1", M.event(0, TS, 2)) == "seq"
    assert _field(M.seal, KEY, "m1", M.reading(1, TS, 9, [1, 2], [1], [0, 0, 0, 0])) == "reading.exp"
    assert _field(M.seal, KEY, "", M.event(1, TS, 2)) == "meter_id"
    assert _field(M.seal, KEY, None, M.event(1, TS, 2)) == "meter_id"


def test_open_frame_checks_envelope_then_payload():
    frame = M.seal(KEY, "m1", M.event(1, TS, 2))
    assert raises(COSEError, M.open_frame, KEY, "m2", frame).field == "kid"
    assert raises(COSEError, M.open_frame, b"\x01" * 32, "m1", frame).field == "tag"
    assert raises(COSEError, M.open_frame, KEY, "m1", frame[:-1]).field == "structure"
    assert _field(M.open_frame, KEY, b"m1", frame) == "meter_id"
    for n in range(len(frame)):
        raises(ProtocolError, M.open_frame, KEY, "m1", frame[:n])
    for payload in (b"\x82\x01\x02", b"\xff", b"", b"\x01"):
        assert _field(M.open_frame, KEY, "m1", cose.mac0_encode(KEY, b"m1", payload)) == "payload"
    frame = cose.mac0_encode(KEY, b"m1", cbor.dumps({0: 1, 1: 1, 2: 0}))
    assert _field(M.open_frame, KEY, "m1", frame) == "reading.interval"


def test_parse_will():
    assert M.parse_will(b"\xa2\x00\x04\x18\x28\x00") == {"type": 4, "online": 0}
    for m in ({0: 4, 40: 1}, {0: 1, 40: 0}, {0: 4}, {0: 4, 40: 0, 1: 1}, {0: 4, 40: False}, [4, 0]):
        assert _field(M.parse_will, cbor.dumps(m)) == "will", m
    for raw in (b"", b"\xa2\x00\x04\x18\x28", b"\xff", None):
        assert _field(M.parse_will, raw) == "will"


def test_command_args_builders():
    assert command_args(1, commands.topup_args(5, 100)) == {"topup_id": 5, "amount": 100}
    assert command_args(2, commands.relay_args(0, commands.REASON_CREDIT)) == {"state": 0, "reason": 1}
    assert command_args(4, commands.time_sync_args(TS)) == {"ts": TS}
    assert command_args(5, {9: 9}) == {}
    cfg = commands.config_args(low_balance=0, friendly_hours=[])
    assert command_args(6, cfg) == {"low_balance": 0, "friendly_hours": []}
    assert raises(UnsupportedCommand, command_args, 99, {}).field == "cmd"
    raises(UnsupportedCommand, command_args, True, {})


def _fake_tariff_check(args):
    if 2 not in args:
        raise ProtocolError("tariff.day_profiles[0][1][1]: rate must be 1..2", "tariff.day_profiles[0][1][1]")
    if args[2] == "no field":
        raise ProtocolError("tariff: must be a map")
    return {0: args[0], 1: args[1], 2: args[2], 5: []}


def test_set_tariff_args_wrap_calendar_errors():
    # the wrapping, with a stand-in for protocol.tariff_calendar.validate_tariff
    got = command_args(3, {0: 7, 1: TS, 2: [100]}, _fake_tariff_check)
    assert got == {"tariff": {0: 7, 1: TS, 2: [100], 5: []}, "id": 7, "activate_at": TS}
    e = raises(ProtocolError, command_args, 3, {0: 7, 1: 0}, _fake_tariff_check)
    assert (
        e.field == "args.day_profiles[0][1][1]" and str(e) == "args.day_profiles[0][1][1]: rate must be 1..2"
    )
    assert _field(command_args, 3, {0: 7, 1: 0, 2: "no field"}, _fake_tariff_check) == "args"


def test_set_config_new_key_arg():
    key = bytes(range(32))
    cfg = commands.config_args(interval=900, key=key)
    assert cfg == {0: 900, 4: key}
    assert command_args(6, cfg) == {"interval": 900, "key": key}
    for bad in (key[:31], key.hex(), key + b"\x00", 5):
        assert raises(ProtocolError, command_args, 6, {4: bad}).field == "args.key"
