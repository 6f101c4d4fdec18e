"""CPython only: COSE_Encrypt0 (AES-CCM-16-64-128) interop with the independent ``cwt`` package, both
ways, property tests (hypothesis) of mutated frames, and the vector file being current."""

import importlib.util
import json
import pathlib

from cwt import COSE, COSEKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import cbor, cose_enc
from protocol.errors import ProtocolError

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.binary(min_size=32, max_size=32)
meter_ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
seqs = st.integers(1, 2**64 - 1)
directions = st.sampled_from((cose_enc.UP, cose_enc.DOWN))


def cwt_key(key, kid):
    return COSEKey.from_symmetric_key(cose_enc.enc_key(key), alg="AES-CCM-16-64-128", kid=kid)


def message(seq, extra):
    return cbor.dumps({0: 2, 1: seq, 2: 1767225600, 10: 2, 11: {0: extra}})


@SETTINGS
@given(keys, meter_ids, directions, seqs, st.binary(max_size=300))
def test_cwt_opens_ours_and_we_open_cwts(key, meter_id, direction, seq, extra):
    kid = meter_id.encode()
    payload = message(seq, extra)
    ours = cose_enc.Encrypt0(key, kid).seal(direction, seq, payload)
    assert COSE.new().decode(ours, cwt_key(key, kid)) == payload
    theirs = COSE.new().encode_and_encrypt(
        payload, cwt_key(key, kid), protected={1: 10}, unprotected={4: kid, 5: cose_enc.iv(direction, seq)}
    )
    assert theirs == ours
    assert cose_enc.encrypt0_decode(key, meter_id, direction, theirs) == payload
    # the generic CCM over single AES blocks (the MicroPython path) opens it too
    slow = cose_enc.Encrypt0(key, kid, ccm=cose_enc.CCM(cose_enc.enc_key(key)))
    assert slow.decode(direction, theirs) == payload and slow.seal(direction, seq, payload) == ours


@settings(SETTINGS, max_examples=200)
@given(keys, st.integers(1, 2**40), st.binary(max_size=64), st.data())
def test_any_mutation_is_refused(key, seq, extra, data):
    e = cose_enc.Encrypt0(key, b"m-1")
    frame = bytearray(e.seal(cose_enc.UP, seq, message(seq, extra)))
    kind = data.draw(st.sampled_from(("flip", "cut", "insert", "replace")))
    i = data.draw(st.integers(0, len(frame) - 1))
    if kind == "flip":
        frame[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "cut":
        del frame[i:]
    elif kind == "insert":
        frame[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    else:
        new = data.draw(st.integers(0, 255).filter(lambda b: b != frame[i]))
        frame[i] = new
    try:
        got = e.decode(cose_enc.UP, bytes(frame))
    except ProtocolError as err:
        assert err.field in ("structure", "alg", "kid", "iv", "tag", "seq", "payload")
    else:  # only a change CBOR itself does not see (e.g. a longer length encoding) may decode the same
        assert got == message(seq, extra)


def test_vector_file_is_current():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "tools" / "gen_encrypt0_vectors.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    on_disk = json.loads((ROOT / "protocol" / "vectors" / "cose_encrypt0.json").read_text(encoding="utf-8"))
    assert gen.encrypt0_json() == on_disk
