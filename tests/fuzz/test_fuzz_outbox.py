"""Fuzzing the meter's flash outbox record decoding (firmware.outbox.Outbox.open and the reads
after it) with damaged files: what a bad flash block, a torn write or a stray file leaves.

Each example writes a real outbox (appends, some acks, a sync) in a temporary directory,
then edits one or two of its files byte-wise (segments and both meta slots), deletes one,
or adds stray files (``.tmp`` leftovers, names that look like segments), and reopens it.

Documented errors (firmware/outbox.py): ``OutboxError`` for bad arguments or an unusable
directory; damage is not an error, it is repaired and sets ``recovered``. Properties: open()
raises nothing, time-bounded; every record read back is one that was appended, byte for
byte, in increasing seq order and above ``acked``; ``pending()`` counts exactly those; the
repaired outbox takes a new append and reads it back after another reopen.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from firmware.outbox import Outbox
from tests.fuzz.support import bounded, fuzz, mutated

SEG, MAX = 200, 2000


def build(path: str, records, acked: int) -> None:
    ob = Outbox(path, max_bytes=MAX, seg_bytes=SEG).open()
    for seq, kind, ts, payload in records:
        ob.append(seq, kind, ts, payload)
    if acked:
        ob.ack(min(acked, ob.last_seq))
    ob.sync()


@st.composite
def cases(draw):
    n = draw(st.integers(1, 30))
    seqs = sorted(draw(st.sets(st.integers(1, 2**32 - 2), min_size=n, max_size=n)))
    records = [
        (
            s,
            draw(st.integers(0, 255)),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.binary(min_size=1, max_size=60)),
        )
        for s in seqs
    ]
    acked = draw(st.sampled_from([0, 0] + seqs))
    ops = st.sampled_from(["mutate", "mutate", "delete", "stray"])
    edits = draw(st.lists(st.tuples(st.integers(0, 1000), ops), min_size=1, max_size=2))
    return records, acked, edits, draw(st.data())


@fuzz(250)
@given(cases())
def test_damaged_outbox_files_are_repaired_never_misread(case):
    records, acked, edits, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "outbox")
        build(path, records, acked)
        for pick, op in edits:
            names = sorted(os.listdir(path))
            if not names:
                break
            name = names[pick % len(names)]
            file = os.path.join(path, name)
            if op == "delete":
                os.remove(file)
            elif op == "stray":
                stray = data.draw(
                    st.sampled_from([name + ".tmp", "s%08x" % (records[-1][0] + 1), "sZZZZZZZZ", "x"])
                )
                with open(os.path.join(path, stray), "wb") as f:
                    f.write(data.draw(st.binary(max_size=40)))
            else:
                with open(file, "rb") as f:
                    raw = f.read()
                with open(file, "wb") as f:
                    f.write(data.draw(mutated(raw)))
        ob = bounded(Outbox(path, max_bytes=MAX, seg_bytes=SEG).open)
        appended = {r[0]: (r[0], r[1], r[3]) for r in records}
        got = bounded(ob.peek, 0, 10**6)
        for rec in got:
            assert appended.get(rec[0]) == (rec[0], rec[1], bytes(rec[2])), "a record was misread"
        seqs = [r[0] for r in got]
        assert seqs == sorted(set(seqs)) and all(s > ob.acked for s in seqs)
        assert ob.pending() == len(got)
        assert {t[0] for t in ob.tail(0)} <= set(appended)
        nxt = ob.last_seq + 1
        ob.append(nxt, 1, 0, b"after repair")
        ob.sync()
        again = bounded(Outbox(path, max_bytes=MAX, seg_bytes=SEG).open)
        now = [(seq, kind, bytes(p)) for seq, kind, p in again.peek(0, 10**6)]
        before = [(seq, kind, bytes(p)) for seq, kind, p in got] + [(nxt, 1, b"after repair")]
        assert now and now == before[len(before) - len(now) :], "the repair did not hold across a reopen"
