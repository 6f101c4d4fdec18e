"""CPython only: COSE_Mac0 interop with the independent ``cwt`` package, property
tests (hypothesis) of sealing and opening, and the checks that need more memory
than a MicroPython test run has (real set-tariff args, vector files current)."""

import hmac as std_hmac
import importlib.util
import json
import pathlib

import cbor2
import pytest
from cwt import COSE, COSEKey, VerifyError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import cbor, cose, topics
from protocol import messages as M
from protocol.commands import command_args
from protocol.errors import COSEError, ProtocolError

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "protocol" / "vectors"
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UMAX = 2**64 - 1

keys = st.binary(min_size=32, max_size=32)
meter_ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
uints = st.integers(0, UMAX)


def cwt_key(key, kid):
    return COSEKey.from_symmetric_key(key, alg="HS256", kid=kid)


def cwt_mac(key, kid, payload, protected=None, unprotected=None):
    return COSE.new().encode_and_mac(
        payload, cwt_key(key, kid), protected=protected or {1: 5}, unprotected=unprotected or {4: kid}
    )


def load(name):
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- cwt interop


def test_vector_frames_verify_with_cwt():
    for v in load("cose_mac0.json")["frames"]:
        key, kid = bytes.fromhex(v["key"]), v["meter_id"].encode()
        frame = bytes.fromhex(v["frame"])
        assert COSE.new().decode(frame, cwt_key(key, kid)) == bytes.fromhex(v["message"])
        assert cwt_mac(key, kid, bytes.fromhex(v["message"])) == frame


@settings(SETTINGS, max_examples=30)  # cwt is slow: 30 examples keep this file under 3 s
@given(keys, meter_ids, st.binary(max_size=300))
def test_our_frames_verify_with_cwt_and_theirs_with_ours(key, meter_id, payload):
    kid = meter_id.encode()
    ours = cose.mac0_encode(key, kid, payload)
    assert COSE.new().decode(ours, cwt_key(key, kid)) == payload
    theirs = cwt_mac(key, kid, payload)
    assert theirs == ours  # same preferred serialization, byte for byte
    assert cose.mac0_decode(key, kid, theirs) == payload
    assert cose.mac0_kid(theirs) == kid


def test_cwt_frames_with_extra_headers_verify_with_ours():
    key, kid = bytes(range(32)), b"m-1"
    frame = cwt_mac(key, kid, b"\xa0", protected={1: 5, 3: 60}, unprotected={4: kid, 5: b"\x00" * 12})
    assert cose.mac0_decode(key, kid, frame) == b"\xa0"


def test_cwt_refuses_what_we_refuse():
    key, kid = bytes(range(32)), b"m1"
    frame = bytearray(cose.mac0_encode(key, kid, b"\xa0"))
    frame[-1] ^= 1
    with pytest.raises(VerifyError):
        COSE.new().decode(bytes(frame), cwt_key(key, kid))
    assert _field(cose.mac0_decode, key, kid, bytes(frame)) == "tag"


def _field(fn, *args):
    try:
        fn(*args)
    except ProtocolError as e:
        return e.field
    raise AssertionError("no ProtocolError")


@SETTINGS
@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_matches_the_standard_library(key, data):
    assert cose.hmac_sha256(key, data) == std_hmac.new(key, data, "sha256").digest()


@SETTINGS
@given(st.binary(max_size=40), st.binary(max_size=40))
def test_ct_equal_is_equality(a, b):
    assert cose.ct_equal(a, b) == (a == b)
    assert cose.ct_equal(a, a)


# ---------------------------------------------------------------- messages


@st.composite
def readings(draw):
    n = draw(st.integers(1, M.MAX_RATES))
    regs = st.lists(uints, min_size=n, max_size=n)
    inst = {}
    for k, c in enumerate(M.INST_CHECKS):
        if draw(st.booleans()):
            lo, hi = M.RANGES[c]
            inst[k] = draw(st.integers(lo, hi))
    return M.reading(
        draw(st.integers(1, UMAX)), draw(uints), draw(uints), draw(regs), draw(regs),
        draw(st.lists(uints, min_size=4, max_size=4)),
        inst=draw(st.none() | st.just(inst)), balance=draw(st.none() | st.integers(-(2**64), UMAX)),
        flags=draw(st.none() | st.integers(0, 31)), tariff=draw(st.none() | uints),
    )  # fmt: skip


seqs = st.integers(1, UMAX)
args_maps = st.dictionaries(st.integers(0, 9), uints, max_size=4)
details = st.none() | st.dictionaries(st.integers(0, 30), uints, max_size=4)
texts = st.text(min_size=1, max_size=M.MAX_TEXT)
any_messages = st.one_of(
    readings(),
    st.builds(M.event, seqs, uints, st.integers(1, UMAX), details),
    st.builds(M.ack, seqs, uints, uints, st.integers(0, 6), details),
    st.builds(M.status, seqs, uints, texts, texts, texts, st.integers(1, 8), uints, uints),
    st.builds(M.command, seqs, uints, uints, args_maps, st.none() | uints),
)  # fmt: skip


@SETTINGS
@given(keys, meter_ids, any_messages)
def test_random_messages_round_trip_through_seal_and_open(key, meter_id, msg):
    parsed = M.parse(msg)
    frame = M.seal(key, meter_id, msg)
    assert M.open_frame(key, meter_id, frame) == parsed
    assert cbor.loads(cose.mac0_decode(key, meter_id, frame)) == msg
    assert cbor2.loads(cose.mac0_decode(key, meter_id, frame)) == msg  # an independent decoder agrees
    schema = M.SCHEMA[msg[0]]
    for i in range(1, len(schema), 3):
        key_, name = schema[i], schema[i + 1]
        assert (key_ in msg) == (name in parsed)


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data):
    for fn in (
        lambda: M.open_frame(bytes(32), "m1", data),
        lambda: cose.mac0_kid(data),
        lambda: M.parse_will(data),
    ):
        try:
            fn()
        except ProtocolError:
            pass


@st.composite
def mutations(draw):
    msg = draw(any_messages)
    frame = bytearray(M.seal(bytes(32), "m1", msg))
    kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
    i = draw(st.integers(0, len(frame) - 1))
    if kind == "flip":
        frame[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "set":
        b = draw(st.integers(0, 255).filter(lambda b: b != frame[i]))
        frame[i] = b
    elif kind == "insert":
        frame.insert(i, draw(st.integers(0, 255)))
    elif kind == "delete":
        del frame[i]
    else:
        del frame[i:]
    return bytes(frame)


@SETTINGS
@given(mutations())
def test_mutated_frames_never_verify(frame):
    try:
        M.open_frame(bytes(32), "m1", frame)
    except ProtocolError as e:
        assert isinstance(e, COSEError) and e.field in ("structure", "alg", "kid", "tag"), e.field
    else:
        raise AssertionError("a changed frame verified")


def test_constants_match_protocol():
    assert (M.TYPE_READING, M.TYPE_EVENT, M.TYPE_ACK, M.TYPE_STATUS, M.TYPE_COMMAND) == (1, 2, 3, 4, 10)
    evts = [getattr(M, n) for n in dir(M) if n.startswith("EVT_")]
    assert sorted(evts) == list(range(1, 21))
    assert (M.EVT_TAMPER_COVER, M.EVT_TOPUP_APPLIED, M.EVT_CMD_REJECTED, M.EVT_STORAGE_FAULT) == (
        3,
        10,
        19,
        20,
    )
    acks = (M.ACK_DONE, M.ACK_DUPLICATE, M.ACK_STALE, M.ACK_EXPIRED, M.ACK_BAD_ARGS, M.ACK_UNSUPPORTED)
    assert acks + (M.ACK_FAILED,) == tuple(range(7))
    cmds = (M.CMD_TOPUP, M.CMD_RELAY, M.CMD_SET_TARIFF, M.CMD_TIME_SYNC, M.CMD_READ_NOW, M.CMD_SET_CONFIG)
    assert cmds == (1, 2, 3, 4, 5, 6)
    flags = (M.FLAG_RELAY_OPEN, M.FLAG_CLOCK_UNSYNCED, M.FLAG_TAMPER_LATCHED, M.FLAG_EMERGENCY_CREDIT)
    assert flags + (M.FLAG_BACKLOG,) == (1, 2, 4, 8, 16)
    assert M.INST_NAMES == ("urms_mv", "irms_ma", "p_w", "q_var", "pf_milli", "freq_mhz", "irms_n_ma")
    assert topics.will_payload() == cbor2.dumps({0: 4, 40: 0})


def _value(v):
    if isinstance(v, dict):
        if "$map" in v:
            return {k: _value(x) for k, x in v["$map"]}
        return {k: _value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def test_set_tariff_args_with_the_real_calendar():
    vectors = load("messages.json")
    for v in vectors["args_valid"]:
        if v["cmd"] == M.CMD_SET_TARIFF:
            assert command_args(3, cbor.loads(bytes.fromhex(v["hex"]))) == _value(v["parsed"])
    for v in vectors["args_invalid"]:
        if v["cmd"] == M.CMD_SET_TARIFF:
            assert _field(command_args, 3, cbor.loads(bytes.fromhex(v["hex"]))) == v["field"]
    tariff = {0: 3, 1: 0, 2: [1200, 800], 3: [[[0, 3]]], 4: [[0] * 7]}  # rate 3 of 2
    field = _field(command_args, 3, tariff)
    assert field.startswith("args.day_profiles[0]"), field


def test_vector_files_are_current():
    spec = importlib.util.spec_from_file_location(
        "gen_protocol_vectors", ROOT / "tools" / "gen_protocol_vectors.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.dump(gen.cose_json()) == (VECTORS / "cose_mac0.json").read_text(encoding="utf-8")
    assert gen.dump(gen.messages_json()) == (VECTORS / "messages.json").read_text(encoding="utf-8")
