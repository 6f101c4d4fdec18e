"""Property tests (hypothesis) for firmware.persist: crashes never lose or tear state.

A "crash" during a save leaves the slot being written in one of the states a
power cut can produce: a prefix of the new frame (torn), the new frame with a
damaged byte, or untouched old content (littlefs commits a file only on close).
After any sequence of saves and crashes, load() must return exactly the last
save that completed, and never a torn or mixed payload.
"""

import os
import shutil
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.persist import SlotStore, encode_slot

PAYLOAD = st.binary(min_size=0, max_size=64)
OP = st.one_of(
    st.tuples(st.just("save"), PAYLOAD),
    st.tuples(st.just("torn"), PAYLOAD, st.integers(0, 10**6)),
    st.tuples(st.just("flip"), PAYLOAD, st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("lost"), PAYLOAD),  # power cut before close: old content stays
)


def _crash_write(store, payload, kind, pos=0, xor=0):
    """What a power cut in the middle of store.save(payload) leaves behind."""
    seq = store.seq + 1
    target = store.paths[1 if store.current == 0 else 0]
    frame = bytearray(encode_slot(seq, payload))
    if kind == "torn":
        frame = frame[: pos % len(frame)]
    elif kind == "flip":
        frame[pos % len(frame)] ^= xor
    else:
        return
    with open(target, "wb") as f:
        f.write(frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(OP, max_size=25))
def test_crashes_never_lose_the_last_complete_state(ops):
    d = tempfile.mkdtemp(prefix="fw_persist_props_")
    try:
        last = (0, None)
        store = SlotStore(d, "s")
        store.load()
        for op in ops:
            if op[0] == "save":
                seq = store.save(op[1])
                assert seq == last[0] + 1
                last = (seq, op[1])
            else:
                _crash_write(store, *op[1:2], op[0], *op[2:])
                store = SlotStore(d, "s")  # reboot
                assert store.load() == last
                if op[0] != "lost":
                    assert store.recovered and len(store.corrupt_slots) == 1
            assert SlotStore(d, "s").load() == last
    finally:
        shutil.rmtree(d)


@settings(max_examples=100, deadline=None)
@given(st.lists(PAYLOAD, min_size=1, max_size=10), st.binary(max_size=40), st.binary(max_size=40))
def test_garbage_in_both_slots_then_saves(payloads, junk_a, junk_b):
    d = tempfile.mkdtemp(prefix="fw_persist_props_")
    try:
        for name, junk in (("s.a", junk_a), ("s.b", junk_b)):
            with open(os.path.join(d, name), "wb") as f:
                f.write(junk)
        store = SlotStore(d, "s")
        assert store.load() == (0, None)  # random junk never decodes (no magic + CRC)
        assert store.corrupt_slots == ["a", "b"]
        for i, p in enumerate(payloads):
            assert store.save(p) == i + 1
            assert SlotStore(d, "s").load() == (i + 1, p)
    finally:
        shutil.rmtree(d)
