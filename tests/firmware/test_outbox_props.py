"""Property and kill tests for firmware.outbox (CPython only).

- A hypothesis state machine drives one Outbox through appends (seqs with
  gaps), acks, syncs, reboots, torn appends (a prefix of a record left by a
  power cut, in the current or a new segment) and a damaged newest record,
  and compares every observable (peek, tail, pending, stats, recovered) with
  a plain model of the documented rules: segments of at most seg_bytes,
  oldest segments dropped over max_bytes with exact drop counts, meta saved
  on every deletion, every ACK_PERSIST_EVERY acks and on sync.
- A power-cut test runs random calls with ``open``/``os`` of firmware.outbox
  and firmware.persist replaced by a stand-in that stops at one chosen
  filesystem operation (open for writing, write, leaving a prefix of its
  bytes, remove, rename): after reopening, the state must be exactly that
  before the interrupted call, or after it (an append possibly without its
  capacity drop), never a mix (e.g. a segment deleted but its drop uncounted).
- A kill test runs the outbox under the real ``micropython`` (the default runtime: unix32,
  with the outbox frozen in, as on a board) in a child that
  appends (and acks some) in a loop, SIGKILLs it ~50 times at random moments
  and checks after each kill that the flash holds a gap-free, uncorrupted
  run of the appended sequence: every seq the child reported durable is
  there unless acked or counted as dropped; the next child's open() agrees.
"""

import copy
import os
import random
import shutil
import subprocess
import tempfile
import time

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from firmware.outbox import ACK_PERSIST_EVERY, HEADER, Outbox, encode_record, seg_name
from tests.firmware import emulate_support

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEG = 200
MAX = 800


class Model:
    """The outbox's documented behaviour as lists: segments of (seq, kind, ts, payload)."""

    def __init__(self, seg_bytes=SEG, max_bytes=MAX):
        self.seg_bytes = seg_bytes
        self.max_bytes = max_bytes
        self.segs = []
        self.acked = 0
        self.saved_acked = 0
        self.dropped = 0
        self.through = 0
        self.acks = 0
        self.last_seq = 0

    @staticmethod
    def seg_size(seg):
        return sum(HEADER + len(r[3]) for r in seg)

    def seg_size_upto(self, k):
        return sum(self.seg_size(s) for s in self.segs[:k])

    def total(self):
        return sum(self.seg_size(s) for s in self.segs)

    def where(self, size):
        """(new segment?, first seq of the segment) the next record of ``size`` bytes goes to."""
        if not self.segs or self.seg_size(self.segs[-1]) + size > self.seg_bytes:
            return True, self.last_seq + 1
        return False, self.segs[-1][0][0]

    def persist(self):
        self.saved_acked = self.acked
        self.acks = 0

    def append(self, seq, kind, ts, payload, drop=True):
        if not self.segs or self.seg_size(self.segs[-1]) + HEADER + len(payload) > self.seg_bytes:
            self.segs.append([])
        self.segs[-1].append((seq, kind, ts, payload))
        self.last_seq = seq
        k = 0
        while drop and k < len(self.segs) - 1 and self.total() - self.seg_size_upto(k) > self.max_bytes:
            k += 1
        if k:
            for seg in self.segs[:k]:
                self.dropped += sum(1 for r in seg if r[0] > self.acked)
                self.through = max(self.through, seg[-1][0])
            self.persist()
            del self.segs[:k]

    def ack(self, seq):
        if seq <= self.acked:
            return
        self.acked = seq
        self.acks += 1
        k = 0
        while k < len(self.segs) and self.segs[k][-1][0] <= seq:
            k += 1
        if k:
            self.persist()
            del self.segs[:k]
        elif self.acks >= ACK_PERSIST_EVERY:
            self.persist()

    def sync(self):
        if self.acked != self.saved_acked:
            self.persist()

    def reboot(self):
        self.acked = self.saved_acked
        self.acks = 0
        present = [r[0] for s in self.segs for r in s]
        self.last_seq = max(present + [self.acked, self.through])
        # segments holding only delivered (or dropped) records are deleted; after a damaged newest
        # record is cut off, the rest of its segment may be all delivered
        while self.segs and self.segs[0][-1][0] <= max(self.acked, self.through):
            self.segs.pop(0)

    def drop_newest_record(self):
        self.segs[-1].pop()
        if not self.segs[-1]:
            self.segs.pop()

    def records(self):
        return [r for s in self.segs for r in s]


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="fw_outbox_props_")
        self.dir = self.tmp + "/ob"
        self.ob = Outbox(self.dir, MAX, SEG).open()
        self.m = Model()

    def teardown(self):
        shutil.rmtree(self.tmp)

    def _reopen(self):
        self.ob = Outbox(self.dir, MAX, SEG).open()
        self.m.reboot()

    @rule(
        gap=st.integers(1, 3),
        kind=st.integers(0, 255),
        ts=st.integers(0, 2**32 - 1),
        payload=st.binary(min_size=1, max_size=120),
    )
    def append(self, gap, kind, ts, payload):
        seq = self.m.last_seq + gap
        self.ob.append(seq, kind, ts, payload)
        self.m.append(seq, kind, ts, payload)

    @rule(pick=st.integers(0, 10**6))
    def ack(self, pick):
        seq = pick % (self.m.last_seq + 1)
        self.ob.ack(seq)
        self.m.ack(seq)

    @rule(n=st.integers(1, 40))
    def ack_oldest_pending(self, n):
        got = self.ob.peek(0, n)
        if got:
            self.ob.ack(got[-1][0])
            self.m.ack(got[-1][0])

    @rule()
    def sync(self):
        self.ob.sync()
        self.m.sync()

    @rule()
    def reboot(self):
        self._reopen()
        assert not self.ob.recovered

    @rule(payload=st.binary(min_size=1, max_size=120), cut=st.integers(0, 10**6))
    def torn_append(self, payload, cut):
        rec = encode_record(self.m.last_seq + 1, 1, 0, payload)
        cut %= len(rec)
        new, first = self.m.where(len(rec))
        with open(self.dir + "/" + seg_name(first), "ab") as f:
            f.write(rec[:cut])
        self._reopen()
        assert self.ob.recovered == (new or cut > 0)

    @rule(pos=st.integers(0, 10**6), xor=st.integers(1, 255))
    def damage_newest_record(self, pos, xor):
        if not self.m.segs:
            return
        seg = self.m.segs[-1]
        path = self.dir + "/" + seg_name(seg[0][0])
        with open(path, "rb") as f:
            data = bytearray(f.read())
        size = HEADER + len(seg[-1][3])
        data[len(data) - size + pos % size] ^= xor
        with open(path, "wb") as f:
            f.write(data)
        self.m.drop_newest_record()
        self._reopen()
        assert self.ob.recovered

    @invariant()
    def matches_model(self):
        m = self.m
        recs = m.records()
        pend = [r for r in recs if r[0] > m.acked]
        assert self.ob.acked == m.acked and self.ob.dropped == m.dropped
        assert self.ob.last_seq == m.last_seq
        assert self.ob.pending() == len(pend)
        assert self.ob.peek(0, 10**6) == [(r[0], r[1], r[3]) for r in pend]
        if len(pend) > 2:
            assert self.ob.peek(pend[0][0], 2) == [(r[0], r[1], r[3]) for r in pend[1:3]]
        assert self.ob.tail(0) == [(r[0], r[1], r[2]) for r in recs]
        st_ = self.ob.stats()
        assert st_["segments"] == len(m.segs) and st_["bytes"] == m.total()
        names = sorted(n for n in os.listdir(self.dir) if n.startswith("s"))
        assert names == [seg_name(s[0][0]) for s in m.segs]


OutboxMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_outbox_matches_model = OutboxMachine.TestCase


# ---- a power cut at any filesystem operation, injected in-process ----


class PowerCut(BaseException):
    """Raised at the chosen filesystem operation; not an OSError, so nothing in the firmware catches it."""


class CutFlash:
    """Stands in for ``open`` and ``os`` in firmware.outbox and firmware.persist.

    Counts the operations that change the flash (open for writing, each write, remove, rename)
    and raises PowerCut at number ``at``; a cut write leaves a prefix (``frac``) of its bytes.
    """

    def __init__(self, at, frac):
        self.at = at
        self.frac = frac
        self.cut = False
        self.listdir = os.listdir
        self.stat = os.stat
        self.mkdir = os.mkdir

    def _op(self):
        if self.at == 0:
            self.cut = True
            raise PowerCut()
        self.at -= 1

    def open(self, path, mode="r"):
        if "w" in mode or "a" in mode:
            self._op()  # "wb" empties the file, "ab" may create it: a cut right after leaves that
            return _CutFile(self, open(path, mode))
        return open(path, mode)

    def remove(self, path):
        self._op()
        os.remove(path)

    def rename(self, src, dst):
        self._op()
        os.rename(src, dst)


class _CutFile:
    def __init__(self, flash, f):
        self.flash = flash
        self.f = f

    def write(self, data):
        if self.flash.at == 0:
            self.f.write(bytes(data)[: int(len(data) * self.flash.frac)])
        self.flash._op()
        return self.f.write(data)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _observe_outbox(ob):
    return (
        ob.acked,
        ob.dropped,
        ob.last_seq,
        ob.pending(),
        ob.tail(0),
        ob.peek(0, 10**6),
        ob.stats()["segments"],
        ob.stats()["bytes"],
    )


def _observe_model(m):
    recs = m.records()
    pend = [(r[0], r[1], r[3]) for r in recs if r[0] > m.acked]
    tail = [(r[0], r[1], r[2]) for r in recs]
    return (m.acked, m.dropped, m.last_seq, len(pend), tail, pend, len(m.segs), m.total())


def _apply(m, op, drop=True):
    if op[0] == "append":
        m.append(*op[1:], drop=drop)
    elif op[0] == "ack":
        m.ack(op[1])
    else:
        m.sync()


CUT_SEG = 128
CUT_MAX = 320
# (selector, seq gap, kind, payload size, ack step): selector 0..6 append, 7..8 ack, 9 sync
OPS = st.lists(
    st.tuples(
        st.integers(0, 9),
        st.integers(1, 2),
        st.integers(0, 255),
        st.integers(1, 90),
        st.integers(0, 5),
    ),
    min_size=5,
    max_size=50,
)


def _run_ops(d, ops, flash):
    """Run ``ops`` on a fresh outbox in ``d`` with ``flash`` standing in for the filesystem.

    Returns (model after the last completed call, the interrupted call or None, model before it).
    """
    import firmware.outbox as ob_mod
    import firmware.persist as persist_mod

    m = Model(CUT_SEG, CUT_MAX)
    ob = Outbox(d, CUT_MAX, CUT_SEG).open()
    try:
        for mod in (ob_mod, persist_mod):
            mod.open = flash.open
            mod.os = flash
        for sel, gap, kind, size, step in ops:
            if sel <= 6:
                seq = m.last_seq + gap
                op = ("append", seq, kind, 7, bytes((seq + i) & 255 for i in range(size)))
            elif sel <= 8:
                op = ("ack", min(m.last_seq, m.acked + step))
            else:
                op = ("sync",)
            before = copy.deepcopy(m)
            try:
                getattr(ob, op[0])(*op[1:])
            except PowerCut:
                return m, op, before
            _apply(m, op)
    finally:
        for mod in (ob_mod, persist_mod):
            del mod.open
            mod.os = os
    return m, None, None


@settings(max_examples=400, deadline=None)
@given(OPS, st.floats(0, 1), st.floats(0, 1))
def test_power_cut_at_any_fs_operation_leaves_state_before_or_after_the_call(ops, where, frac):
    tmp = tempfile.mkdtemp(prefix="fw_outbox_cut_")
    try:
        dry = CutFlash(-1, 0)  # count the filesystem operations of an uninterrupted run
        _run_ops(tmp + "/dry", ops, dry)
        flash = CutFlash(int(where * -(dry.at + 1)), frac)
        m, op, before = _run_ops(tmp + "/ob", ops, flash)
        got = _observe_outbox(Outbox(tmp + "/ob", CUT_MAX, CUT_SEG).open())
        if op is None:  # the run did no filesystem operation at all
            m.reboot()
            assert got == _observe_model(m)
            return
        event("cut in %s" % op[0])
        event("dropped" if before.dropped else "nothing dropped yet")
        # the interrupted call either did not happen or completed (an append possibly without its drop)
        candidates = [before]
        for drop in (True, False) if op[0] == "append" else (True,):
            c = copy.deepcopy(before)
            _apply(c, op, drop)
            candidates.append(c)
        for c in candidates:
            c.reboot()
        assert got in [_observe_model(c) for c in candidates], (op, got)
    finally:
        shutil.rmtree(tmp)


# ---- SIGKILL of the real micropython while it appends ----

KILLS = 50
KILL_MAX = 6000
KILL_SEG = 600

CHILD = """
import sys
from firmware.outbox import Outbox

def payload(seq):
    return bytes([(seq * 13 + i) & 255 for i in range(1 + (seq * 37) %% 150)])

ob = Outbox(%r, %d, %d).open()
st = (ob.last_seq, ob.acked, ob.dropped, ob.pending(), ob.recovered)
sys.stdout.write("open %%d %%d %%d %%d %%d\\n" %% st)
seq = ob.last_seq
n = 0
while n < 200000:
    seq += 1
    n += 1
    ob.append(seq, 1 + seq %% 4, seq * 3, payload(seq))
    sys.stdout.write("a %%d\\n" %% seq)
    if n %% 5 == 0:
        got = ob.peek(0, 3)
        if got:
            ob.ack(got[-1][0])
            sys.stdout.write("k %%d\\n" %% got[-1][0])
    if n %% 97 == 0:
        ob.sync()
"""


def _payload(seq):
    return bytes([(seq * 13 + i) & 255 for i in range(1 + (seq * 37) % 150)])


def _micropython():
    return emulate_support.micropython_exe()  # unix32: the outbox as frozen into the runtime


def _run_killed(flash, delay):
    """One child killed after ``delay`` s; the complete lines it wrote."""
    code = emulate_support.FROZEN_FIRST + CHILD % (flash, KILL_MAX, KILL_SEG)
    proc = subprocess.Popen(
        [_micropython(), "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    time.sleep(delay)
    proc.kill()
    out, err = proc.communicate()
    assert proc.returncode == -9, err.decode()
    text = out.decode()
    lines = text.split("\n")[:-1]  # the last piece has no newline: cut mid-write, ignored
    return lines, err.decode()


def _check_flash(flash, printed, prev):
    """Open a copy (CPython) and check it against what the children reported; its stats."""
    copy = flash + ".check"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(flash, copy)
    r = Outbox(copy, KILL_MAX, KILL_SEG).open()
    tail = r.tail(0)
    seqs = [t[0] for t in tail]
    first = seqs[0] if seqs else 0
    assert seqs == list(range(first, first + len(seqs))), "gap in %r" % seqs
    for seq, kind, ts in tail:
        assert kind == 1 + seq % 4 and ts == seq * 3, seq
    pend = r.peek(0, 10**6)
    assert [p[0] for p in pend] == [s for s in seqs if s > r.acked]
    for seq, kind, payload in pend:
        assert kind == 1 + seq % 4 and payload == _payload(seq), seq
    assert r.pending() == len(pend)
    have = set(seqs)
    missing = [s for s in printed if s > r.acked and s not in have]
    assert all(not seqs or s < seqs[0] for s in missing), "lost durable records %r" % missing[-5:]
    assert len(missing) <= r.dropped
    # every child prints a seq after its append returns, so at most one durable append per child is
    # unprinted: the one its kill cut off; the one an earlier child left is in prev["last_seq"]
    top = max(max(printed) if printed else 0, prev.get("last_seq", 0))
    assert top <= r.last_seq <= top + 1
    assert r.acked >= prev["acked"] and r.dropped >= prev["dropped"] and r.acked <= r.last_seq
    shutil.rmtree(copy)
    return {
        "last_seq": r.last_seq,
        "acked": r.acked,
        "dropped": r.dropped,
        "pending": r.pending(),
        "recovered": r.recovered,
    }


def test_sigkill_micropython_while_appending_keeps_a_gapless_prefix(tmp_path):
    flash = str(tmp_path / "outbox")
    rng = random.Random(20240917)
    printed = []
    prev = {"acked": 0, "dropped": 0}
    expect = None
    appended_runs = 0
    for _ in range(KILLS):
        lines, err = _run_killed(flash, rng.uniform(0.02, 0.25))
        if lines:
            head = lines[0].split()
            assert head[0] == "open", lines[0] + err
        if lines and expect is not None:  # the child's open (MicroPython) agrees with CPython's
            got = [int(x) for x in head[1:5]]
            assert got == [expect["last_seq"], expect["acked"], expect["dropped"], expect["pending"]]
            assert int(head[5]) == int(expect["recovered"])
        new = [int(ln.split()[1]) for ln in lines[1:] if ln.startswith("a ")]  # [] if killed in open()
        if new:
            appended_runs += 1
            assert not printed or new[0] > printed[-1]
        printed.extend(new)
        if not os.path.isdir(flash):  # killed before the outbox made its directory
            assert not new
            continue
        expect = _check_flash(flash, printed, prev)
        prev = expect
    assert appended_runs >= KILLS // 2 and len(printed) > 500
    assert prev["dropped"] > 0  # the capacity limit was exercised (acks lag behind appends)
