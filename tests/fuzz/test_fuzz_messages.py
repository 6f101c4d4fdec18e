"""Fuzzing the message parsers: protocol.messages.parse / open_frame / parse_will and
protocol.commands.command_args (with the set-tariff validator, protocol.tariff_calendar).

Seeds are the golden vectors (protocol/vectors/messages.json, tariff_calendar.json); the
fuzzer edits their maps (hostile values, deleted and added keys, bool keys) and their bytes.

Documented errors: ``ProtocolError`` (messages: field ``type``/``seq``/``ts``/``<type>.<name>``,
``payload``, ``will``, ``message``; ``COSEError`` only from the envelope), and from
command_args ``ProtocolError`` whose field starts with ``args`` or ``UnsupportedCommand``
(field ``cmd``). Properties: nothing else is raised, each call time-bounded; an accepted map
round-trips through seal/open_frame to the same parse; unknown int keys change nothing; a
payload under a valid MAC never fails as COSEError; the will is exactly {0: 4, 40: 0}.
"""

from __future__ import annotations

import json
import pathlib

from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor, cose
from protocol import messages as M
from protocol import tariff_calendar as tc
from protocol.commands import UnsupportedCommand, command_args
from protocol.errors import COSEError, ProtocolError
from tests.fuzz.support import bounded, fuzz, mutated

VECTORS = pathlib.Path(M.__file__).parent / "vectors"
_msgs = json.loads((VECTORS / "messages.json").read_text())
_cal = json.loads((VECTORS / "tariff_calendar.json").read_text())
SEED_MSGS = tuple(cbor.loads(bytes.fromhex(v["hex"])) for v in _msgs["valid"])
SEED_ARGS = tuple((v["cmd"], cbor.loads(bytes.fromhex(v["hex"]))) for v in _msgs["args_valid"])
SEED_TARIFFS = tuple({int(k): v for k, v in t["tariff"].items()} for t in _cal["tariffs"].values()) + (
    {int(k): v for k, v in _cal["invalid"]["base"].items()},
)
KEY = bytes(range(32))

HOSTILE = [
    None, True, False, 0, 1, -1, 2, 7, 24, 1439, 1440, 2**64 - 1, 2**64, -(2**64) - 1, 1.5, float("nan"),
    "", "x", "x" * 65, b"", b"\x00", [], [0], [0] * 9, [[0, 1]], [[[0, 1]]], {}, {0: 0}, {True: 1},
    cbor.Tag(2, b"\x01"), cbor.UNDEFINED, cbor.Simple(0),
]  # fmt: skip


def _paths(x, prefix=()):
    yield prefix
    if type(x) is dict:
        for k, v in x.items():
            yield from _paths(v, prefix + (k,))
    elif type(x) is list:
        for i, v in enumerate(x):
            yield from _paths(v, prefix + (i,))


def _copy(x):
    if type(x) is dict:
        return {k: _copy(v) for k, v in x.items()}
    if type(x) is list:
        return [_copy(v) for v in x]
    return x


@st.composite
def edited(draw, seed):
    """1..3 edits of a (copied) int-keyed map: a value replaced anywhere, a key deleted or added."""
    m = _copy(seed)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(m))))
        if not path:
            continue
        parent = m
        for p in path[:-1]:
            parent = parent[p]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "boolkey"]))
        if op == "replace":
            parent[path[-1]] = _copy(draw(st.sampled_from(HOSTILE) | st.integers()))
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add" and type(parent) is dict:
            parent[draw(st.integers(0, 50) | st.text(max_size=2))] = _copy(draw(st.sampled_from(HOSTILE)))
        elif op == "add":
            parent.insert(path[-1], _copy(draw(st.sampled_from(HOSTILE))))
        elif op == "boolkey" and type(parent) is dict:
            parent[draw(st.booleans())] = parent.pop(path[-1])
    return m


def test_edited_messages_parse_or_raise_protocol_error_and_round_trip():
    seen: set = set()

    @fuzz(500)
    @given(st.sampled_from(SEED_MSGS).flatmap(edited))
    def run(msg):
        msg = cbor.loads(cbor.dumps(msg))  # as a receiver sees it (a Tag(2) value arrives as an int)
        try:
            parsed = bounded(M.parse, msg)
        except COSEError:
            raise AssertionError("parse raised an envelope error")
        except ProtocolError as e:
            assert e.field, "a ProtocolError names its field"
            seen.add(e.field.split("[")[0])
            return
        seen.add("ok")
        frame = M.seal(KEY, "m1", msg)
        same = cbor.dumps(parsed)  # compared as CBOR: NaN != NaN, but it encodes alike
        assert cbor.dumps(bounded(M.open_frame, KEY, "m1", frame)) == same
        extra = dict(msg)
        extra[99] = [b"ignored", {"x": None}]
        assert cbor.dumps(M.parse(extra)) == same, "an unknown key changed the parse"

    run()
    assert "ok" in seen and len(seen) >= 18, seen


def test_signed_payloads_fail_only_as_messages_never_as_envelopes():
    seeds = tuple(cbor.dumps(m) for m in SEED_MSGS)
    seen: set = set()

    @fuzz(400)
    @given(st.sampled_from(seeds).flatmap(lambda b: mutated(b, seeds)))
    def run(payload):
        frame = cose.mac0_encode(KEY, "m1", payload)
        try:
            bounded(M.open_frame, KEY, "m1", frame)
        except COSEError as e:
            raise AssertionError("a correctly signed frame failed the envelope check %r" % e.field)
        except ProtocolError as e:
            seen.add(e.field.split("[")[0].split(".")[0])
            return
        seen.add("ok")

    run()
    assert {"ok", "payload"} <= seen and len(seen) >= 4, seen


@fuzz(300)
@given(st.sampled_from([cbor.dumps({0: 4, 40: 0})]).flatmap(mutated))
def test_the_will_is_exactly_type_4_online_0(payload):
    try:
        will = bounded(M.parse_will, payload)
    except ProtocolError as e:
        assert e.field == "will"
        return
    assert will == {"type": 4, "online": 0}
    assert cbor.loads(payload) == {0: 4, 40: 0}


def args_seeds():
    out = list(SEED_ARGS)
    out += [(M.CMD_SET_TARIFF, t) for t in SEED_TARIFFS]
    out += [(M.CMD_SET_CONFIG, {0: 900, 1: 500, 2: 1000, 3: [[0, 0, 120], [5, 480, 1440]]})]
    return tuple(out)


def test_command_args_raise_only_documented_errors_naming_args():
    seen: set = set()

    @fuzz(500)
    @given(st.sampled_from(args_seeds()).flatmap(lambda ca: st.tuples(st.just(ca[0]), edited(ca[1]))),
           st.sampled_from([None, None, None, 0, 7, 99, True, "1"]))  # fmt: skip
    def run(case, other_cmd):
        cmd, args = case
        if other_cmd is not None:
            cmd = other_cmd
        try:
            named = bounded(command_args, cmd, args)
        except UnsupportedCommand as e:
            assert e.field == "cmd" and not (type(cmd) is int and 1 <= cmd <= 6)
            seen.add("cmd")
            return
        except ProtocolError as e:
            assert e.field.startswith("args"), e.field
            seen.add(e.field.split("[")[0])
            return
        seen.add("ok")
        if cmd == M.CMD_SET_TARIFF:
            t = named["tariff"]
            assert tc.validate_tariff(t) == t, "the validated tariff is a fixed point"
            assert (named["id"], named["activate_at"]) == (t[0], t[1])
            for ts in (0, t[1], 1_767_225_600):
                assert 1 <= tc.rate_at(t, ts) <= len(t[2]), "a valid tariff has a rate at every moment"

    run()
    assert {"ok", "cmd"} <= seen and len(seen) >= 12, seen
