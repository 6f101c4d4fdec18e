"""Two-slot state store with fault injection, on CPython and MicroPython alike."""

import os

try:
    from tests.dual.fs_support import rmtree, tmpdir
    from tests.dual.support import raises
except ImportError:
    from fs_support import rmtree, tmpdir
    from support import raises

from firmware.persist import (
    HEADER,
    MAGIC,
    PersistError,
    SlotStore,
    decode_slot,
    decode_state,
    encode_slot,
    encode_state,
)
from protocol import cbor


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_frame_layout():
    frame = encode_slot(7, b"hi")
    assert frame[:4] == MAGIC and len(frame) == HEADER + 2
    assert frame[4:12] == b"\x07\x00\x00\x00\x02\x00\x00\x00"
    assert decode_slot(frame) == (7, b"hi")
    assert decode_slot(frame + b"\x00") is None
    assert decode_slot(frame[:-1]) is None
    assert decode_slot(b"") is None
    raises(PersistError, encode_slot, -1, b"")


def test_empty_store_then_alternating_slots():
    d = tmpdir("fw_persist_")
    try:
        s = SlotStore(d, "state")
        assert s.load() == (0, None) and not s.recovered
        assert s.save(b"one") == 1
        assert _read(d + "/state.a") == encode_slot(1, b"one")
        assert s.save(b"two") == 2
        assert _read(d + "/state.b") == encode_slot(2, b"two")
        assert s.save(b"three") == 3
        assert _read(d + "/state.a") == encode_slot(3, b"three")
        assert _read(d + "/state.b") == encode_slot(2, b"two")  # older slot untouched
        s2 = SlotStore(d, "state")
        assert s2.load() == (3, b"three") and s2.corrupt_slots == []
        assert s2.save(b"four") == 4
        assert _read(d + "/state.b") == encode_slot(4, b"four")
        s.clear()
        assert os.listdir(d) == []
    finally:
        rmtree(d)


def test_crash_at_every_byte_of_a_save():
    d = tmpdir("fw_persist_")
    try:
        s = SlotStore(d, "st")
        s.save(b"old state 1")
        s.save(b"last complete")  # slot b, seq 2; the next save goes to slot a
        frame = encode_slot(3, b"new state three")
        for cut in range(len(frame)):  # torn write: only the first `cut` bytes landed
            _write(d + "/st.a", frame[:cut])
            r = SlotStore(d, "st")
            assert r.load() == (2, b"last complete"), cut
            assert r.recovered and r.corrupt_slots == ["a"], cut
        for i in range(len(frame)):  # a complete write with one damaged byte
            bad = bytearray(frame)
            bad[i] ^= 0x5A
            _write(d + "/st.a", bad)
            r = SlotStore(d, "st")
            assert r.load() == (2, b"last complete"), i
            assert r.corrupt_slots == ["a"], i
        # recovery: the next save overwrites the broken slot and is found
        r = SlotStore(d, "st")
        r.load()
        assert r.save(b"after") == 3
        assert SlotStore(d, "st").load() == (3, b"after")
        assert _read(d + "/st.b") == encode_slot(2, b"last complete")
    finally:
        rmtree(d)


def test_both_slots_corrupt_and_save_without_load():
    d = tmpdir("fw_persist_")
    try:
        _write(d + "/x.a", b"AMS1garbage")
        _write(d + "/x.b", b"")
        s = SlotStore(d, "x")
        assert s.load() == (0, None)
        assert s.recovered and s.corrupt_slots == ["a", "b"]
        s3 = SlotStore(d, "x")
        assert s3.save(b"fresh") == 1  # save loads first
        assert SlotStore(d, "x").load() == (1, b"fresh")
        raises(PersistError, SlotStore(d + "/missing", "x").save, b"z")
    finally:
        rmtree(d)


def test_state_codec():
    state = {"regs": [1, 4, 3200, 3200, 5, 6], "balance": -1500, "seq": 12}
    data = encode_state(state)
    assert decode_state(data) == state
    assert cbor.loads(data)["v"] == 1
    raises(PersistError, decode_state, data[:-1])
    raises(PersistError, decode_state, cbor.dumps({"v": 2, "s": {}}))
    raises(PersistError, decode_state, cbor.dumps({"s": {}}))
    raises(PersistError, decode_state, cbor.dumps([1, 2]))
    raises(PersistError, encode_state, [1])
    e = raises(PersistError, encode_state, {"x": object()})
    assert "encode" in str(e)
