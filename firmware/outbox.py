"""Store-and-forward outbox in flash: every message the meter publishes, kept until PUBACK.

Each message (reading, event, ack, status: already COSE-signed bytes) is
appended here first; the sender publishes in seq order (``peek``) and the
records are removed only after the broker's PUBACK (``ack``). Records live in
segment files ``<directory>/s%08x`` (the first record's seq, lowercase hex),
appended to until the next record would take a segment over ``seg_bytes``.

Record format (little-endian), records back to back in a segment:

    magic 0xA7 (1) | kind u8 | length u16 | seq u32 | ts u32 | crc32 u32 | payload (length bytes)
    crc32 = binascii.crc32 over header bytes 0..11 followed by the payload.

kind: 1 reading, 2 event, 3 ack, 4 status (any 0..255 is stored); length
1..2048; seq strictly increasing over the whole outbox (across segments).

API: ``Outbox(directory, max_bytes=262144, seg_bytes=4096)`` (makes the
directory; no scan), ``open()`` (recover, returns self; the other methods
call it first if it was not called), ``append(seq, kind, ts, payload)``,
``peek(after_seq, n)`` -> [(seq, kind, payload)] of records above
max(after_seq, acked), ``ack(seq)`` (acked never decreases; a seq above
last_seq is refused), ``sync()``, ``pending()``, ``tail(after_seq)`` ->
[(seq, kind, ts)] of every record still stored above after_seq, delivered or
not (a delivered record whose whole segment was deleted is gone: ``last_seq``
still covers its seq), ``stats()``. Attributes: ``recovered``, ``last_seq``,
``acked``, ``dropped``; ``errors``/``last_error`` count meta saves or
deletions that failed in ack/append (postponed, retried later); bad
arguments raise ``OutboxError`` naming the field. A record bigger than
seg_bytes gets a segment of its own.

Meta: ``firmware.persist.SlotStore(directory, "meta")`` (two alternating slot
files ``meta.a``/``meta.b``) holding ``struct "<IIII"``: version (1), acked
(highest delivered seq), dropped (records lost to the capacity limit before
delivery), dropped_through (the last seq of the newest segment deleted for
capacity; segments at or below it are finished deleting at ``open``).

Power-loss argument (a cut at any instruction):

- ``append`` writes the whole record with one ``f.write`` to the segment
  opened "ab", closes it (littlefs commits the new file size atomically at
  close) and calls ``os.sync()`` where the port has it. Records are never
  changed in place. On a filesystem without atomic commit (unix emulator,
  FAT) a cut can leave a prefix of the record, or an empty/partial new
  segment file: ``open`` finds it by magic, length bounds, seq order and CRC,
  and rewrites the segment to its valid prefix (or removes a segment with
  nothing valid). That record was never reported durable (``append`` had not
  returned), so losing it loses nothing promised.
- A repair writes ``<seg>.tmp`` and renames it over the segment (atomic on
  littlefs and POSIX). If rename cannot replace a file (FAT) the segment is
  removed first and then the complete .tmp is renamed. A leftover .tmp at
  ``open`` is therefore deleted when its segment exists (the repair had not
  finished; the segment is repaired again) and renamed into place when it
  does not (it was complete).
- A segment is deleted only after the meta recording why (acked, or dropped
  with its count) has been saved by the power-safe two-slot store; a cut
  between the save and the deletion leaves a segment whose records are all
  <= acked or <= dropped_through, which ``open`` deletes. So the dropped count
  never misses a deleted record, and an ack is never lost with its segment.
- ``ack`` saves meta only every ACK_PERSIST_EVERY acks (or when it deletes a
  segment, or on ``sync``): after a cut the unsaved acks are undone and those
  records are sent again under the same seq; the head-end stores each
  ``(meter_id, seq)`` once (docs/protocol.md), so a duplicate costs only airtime.
- CRC-32 catches every error burst up to 32 bits, so any single damaged byte
  in a record is found; a bad record ends its segment (what follows it there
  cannot be trusted to start at a record boundary).

Flash wear (96 readings/day of ~170 B + ~10 events, acks and statuses of
~60 B): ~116 records/day, ~19 KB/day appended (~7 MB/year). On littlefs an
append to a file whose last block is partly full copies that block to a
freshly erased one, so count one 4 KiB erase per append plus a metadata
commit: ~120 erases/day, ~230 KB/day programmed (the copied segment prefix,
~2 KiB on average), ~44 000 erases/year. Meta saves (~5 segment deletions
plus ~7 periodic ack saves a day, 32-byte slots) stay inline in littlefs
metadata. The allocator spreads erases over all free blocks: with ~500 free
4 KiB blocks each sees ~90 erases/year, far inside a 100k-cycle endurance.
A fixed-sector filesystem without wear levelling would wear out the sector
holding the segment in a few years: littlefs is required on boards.

Capacity: default 256 KiB holds 7 days of 15-minute readings (672 x 186 B)
plus 200 events (200 x 76 B), ~140 KB, with room to spare. When the total
size of the segment files exceeds ``max_bytes`` after an append, the oldest
segments (never the one just written) are deleted and their undelivered
records added to ``dropped``.

Memory: RAM holds an index of 4 u32 per segment (first seq, last seq,
record count, bytes: 16 bytes, 1 KiB at the default 64 segments; the index
grows with max_bytes / seg_bytes, so raise seg_bytes for a much bigger
outbox) and counters, never payloads. Scans read 16-byte headers
into a preallocated buffer and seek past payloads; ``open`` checks CRCs in
128-byte chunks. ``pending()`` is a counter; acking a range counts records
from the index (no flash read when a segment's seqs are contiguous).
"""

import binascii
import os
import struct
from array import array

from micropython import const

from firmware.persist import PersistError, SlotStore, exists

MAGIC = const(0xA7)
HEADER = const(16)
MAX_PAYLOAD = const(2048)
MAX_U32 = 0xFFFFFFFF
ACK_PERSIST_EVERY = const(16)
META_VERSION = const(1)
MIN_SEG_BYTES = const(64)
KIND_READING = const(1)
KIND_EVENT = const(2)
KIND_ACK = const(3)
KIND_STATUS = const(4)

_HDR = "<BBHIII"
_META = "<IIII"
_CHUNK = const(128)
# the index: 4 u32 per segment, oldest first, at offset i = 4 * segment number
_FIRST = const(0)  # seq of the first record (the file name)
_LAST = const(1)  # seq of the last record
_COUNT = const(2)  # records
_SIZE = const(3)  # bytes


class OutboxError(OSError):
    """A bad argument, or a directory/segment the outbox cannot use; the message names it."""


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def seg_name(first):
    """The file name of the segment whose first record has seq ``first``."""
    return "s%08x" % first


def parse_seg_name(name):
    """The first seq encoded in a segment file name, or None if it is not one."""
    if len(name) != 9 or name[0] != "s":
        return None
    try:
        first = int(name[1:], 16)
    except ValueError:
        return None
    return first if seg_name(first) == name else None


def encode_record(seq, kind, ts, payload):
    """The bytes of one record (header + payload); arguments are not checked here."""
    n = len(payload)
    rec = bytearray(HEADER + n)
    struct.pack_into("<BBHII", rec, 0, MAGIC, kind, n, seq, ts)
    rec[HEADER:] = payload
    crc = binascii.crc32(payload, binascii.crc32(memoryview(rec)[:12])) & MAX_U32
    struct.pack_into("<I", rec, 12, crc)
    return rec


def _sync():
    if hasattr(os, "sync"):
        os.sync()


class Outbox:
    def __init__(self, directory, max_bytes=262144, seg_bytes=4096):
        if not isinstance(directory, str) or not directory.rstrip("/"):
            raise OutboxError("directory %r: must be a non-empty path" % (directory,))
        if not _is_int(seg_bytes) or seg_bytes < MIN_SEG_BYTES:
            raise OutboxError("seg_bytes %r: must be an int >= %d" % (seg_bytes, MIN_SEG_BYTES))
        if not _is_int(max_bytes) or max_bytes < seg_bytes:
            raise OutboxError("max_bytes %r: must be an int >= seg_bytes %d" % (max_bytes, seg_bytes))
        self.directory = directory.rstrip("/")
        self.max_bytes = max_bytes
        self.seg_bytes = seg_bytes
        try:
            mode = os.stat(self.directory)[0]
        except OSError:
            try:
                os.mkdir(self.directory)
            except OSError as e:
                raise OutboxError("directory %s: cannot create: %s" % (self.directory, e))
            mode = 0x4000
        if not mode & 0x4000:
            raise OutboxError("directory %s: exists and is not a directory" % self.directory)
        self._meta = SlotStore(self.directory, "meta")
        self._hdr = bytearray(HEADER)
        self._hv = memoryview(self._hdr)
        self._buf = bytearray(_CHUNK)
        self._opened = False
        self._reset()

    def _reset(self):
        self.recovered = False
        self.last_seq = 0
        self.acked = 0
        self.dropped = 0
        self.bad_reads = 0  # records found damaged by peek after open (skipped)
        self.errors = 0  # meta saves that failed in ack/append (deletions postponed)
        self.last_error = None
        self._through = 0  # dropped_through
        self._saved = (0, 0, 0)
        self._acks = 0  # acks since the last meta save
        self._ix = array("I")  # see _FIRST.._SIZE
        self._bytes = 0
        self._pending = 0
        self._cursor = None  # (seq, segment first, offset after it) of the last peeked record
        self._force_new = False  # a failed write could not be undone: start a new segment

    def _path(self, first):
        return self.directory + "/" + seg_name(first)

    # ---- recovery ----

    def open(self):
        """Scan and repair the segments, load the meta; returns self."""
        self._reset()
        try:
            names = os.listdir(self.directory)
        except OSError as e:
            raise OutboxError("directory %s: cannot list: %s" % (self.directory, e))
        firsts = []
        for name in names:
            if name.endswith(".tmp") and parse_seg_name(name[:-4]) is not None:
                self.recovered = True
                tmp = self.directory + "/" + name
                if name[:-4] in names:
                    os.remove(tmp)  # an unfinished repair: the segment is repaired again below
                else:
                    os.rename(tmp, tmp[:-4])  # complete: the segment was removed just before rename
                    firsts.append(parse_seg_name(name[:-4]))
            else:
                first = parse_seg_name(name)
                if first is not None:
                    firsts.append(first)
        names = None
        firsts.sort()
        self._load_meta()
        prev = 0
        for first in firsts:
            if self._check(first, prev):
                prev = self._ix[-4 + _LAST]
        firsts = None
        self.last_seq = max(prev, self.acked, self._through)
        k = self._leading(max(self.acked, self._through))
        if k:  # their deletion was interrupted by a power cut
            self._delete_front(k)
        self._pending = self._count(self.acked, MAX_U32)
        self._opened = True
        return self

    def _load_meta(self):
        _, data = self._meta.load()
        if self._meta.recovered:
            self.recovered = True
        if data is None:
            return
        if len(data) != struct.calcsize(_META) or data[0] != META_VERSION:
            self.recovered = True  # unusable: start from zero (undelivered ones are re-sent)
            return
        _, self.acked, self.dropped, self._through = struct.unpack(_META, data)
        self._saved = (self.acked, self.dropped, self._through)

    def _check(self, first, prev):
        """Validate one segment file, repair it and add it to the index; False if nothing was valid."""
        path = self._path(first)
        hv = self._hv
        buf = self._buf
        bv = memoryview(buf)
        pos = 0
        count = 0
        last = 0
        bad = False
        with open(path, "rb") as f:
            while True:
                n = f.readinto(self._hdr)
                if not n:
                    break
                if n != HEADER:
                    bad = True
                    break
                magic, _, length, seq, _, crc = struct.unpack_from(_HDR, self._hdr)
                if magic != MAGIC or not 1 <= length <= MAX_PAYLOAD or seq <= prev:
                    bad = True
                    break
                if count == 0 and seq != first:
                    bad = True
                    break
                c = binascii.crc32(hv[:12])
                left = length
                while left:
                    k = _CHUNK if left > _CHUNK else left
                    got = f.readinto(buf if k == _CHUNK else bv[:k])
                    if got != k:
                        break
                    c = binascii.crc32(buf if k == _CHUNK else bv[:k], c)
                    left -= k
                if left or (c & MAX_U32) != crc:
                    bad = True
                    break
                prev = seq
                last = seq
                count += 1
                pos += HEADER + length
        if not count or bad:
            self.recovered = True  # a torn or damaged tail, or an empty segment (cut while creating it)
            if not count:
                os.remove(path)
                return False
            self._truncate(path, pos)
        self._ix.extend((first, last, count, pos))
        self._bytes += pos
        return True

    def _truncate(self, path, size):
        """Rewrite ``path`` to its first ``size`` bytes: write path.tmp, then rename over path."""
        tmp = path + ".tmp"
        buf = self._buf
        bv = memoryview(buf)
        with open(path, "rb") as src:
            with open(tmp, "wb") as dst:
                left = size
                while left:
                    k = _CHUNK if left > _CHUNK else left
                    got = src.readinto(buf if k == _CHUNK else bv[:k])
                    if got != k:
                        raise OutboxError("segment %s: shorter than %d bytes while repairing" % (path, size))
                    dst.write(buf if k == _CHUNK else bv[:k])
                    left -= k
        _sync()
        try:
            os.rename(tmp, path)
        except OSError:  # a filesystem whose rename does not replace (FAT): see the docstring
            os.remove(path)
            os.rename(tmp, path)
        _sync()

    def _ready(self):
        if not self._opened:
            self.open()

    # ---- counting and scanning ----

    def _next(self, f):
        """The next header tuple from ``f`` (payload not read), or None at the end or on damage."""
        if f.readinto(self._hdr) != HEADER:
            return None
        h = struct.unpack_from(_HDR, self._hdr)
        if h[0] != MAGIC or not 1 <= h[2] <= MAX_PAYLOAD:
            return None
        return h

    def _count_in(self, i, lo, hi):
        """Number of records of the segment at index offset ``i`` with lo < seq <= hi."""
        ix = self._ix
        first = ix[i + _FIRST]
        last = ix[i + _LAST]
        count = ix[i + _COUNT]
        if last <= lo or first > hi:
            return 0
        if first > lo and last <= hi:
            return count
        if last - first + 1 == count:  # contiguous seqs: count from the index
            return min(last, hi) - max(first, lo + 1) + 1
        n = 0
        with open(self._path(first), "rb") as f:
            while True:
                h = self._next(f)
                if h is None or h[3] > hi:
                    break
                if h[3] > lo:
                    n += 1
                f.seek(h[2], 1)
        return n

    def _count(self, lo, hi):
        n = 0
        for i in range(0, len(self._ix), 4):
            if self._ix[i + _FIRST] > hi:
                break
            n += self._count_in(i, lo, hi)
        return n

    def _leading(self, seq):
        """Number of oldest segments whose records are all <= seq."""
        ix = self._ix
        k = 0
        while 4 * k < len(ix) and ix[4 * k + _LAST] <= seq:
            k += 1
        return k

    # ---- meta and deletion ----

    def _persist(self):
        state = (self.acked, self.dropped, self._through)
        self._meta.save(struct.pack(_META, META_VERSION, self.acked, self.dropped, self._through))
        self._saved = state
        self._acks = 0

    def _try_persist(self):
        try:
            self._persist()
            return True
        except PersistError as e:
            self.errors += 1
            self.last_error = str(e)
            return False

    def _remove(self, first):
        try:
            os.remove(self._path(first))
        except OSError as e:  # open() finishes it: its records are <= acked or dropped_through
            self.errors += 1
            self.last_error = str(e)

    def _delete_front(self, k):
        ix = self._ix
        for i in range(0, 4 * k, 4):
            self._remove(ix[i + _FIRST])
            self._bytes -= ix[i + _SIZE]
        self._ix = ix[4 * k :]

    def _drop_oldest(self):
        ix = self._ix
        k = 0
        size = 0
        lost = 0
        through = self._through
        while self._bytes - size > self.max_bytes and 4 * k < len(ix) - 4:
            lost += self._count_in(4 * k, self.acked, MAX_U32)
            size += ix[4 * k + _SIZE]
            through = max(through, ix[4 * k + _LAST])
            k += 1
        if not k:
            return
        old = (self.dropped, self._through)
        self.dropped += lost
        self._through = through
        if not self._try_persist():  # keep them (over capacity) rather than lose an uncounted drop
            self.dropped, self._through = old
            return
        self._pending -= lost
        self._delete_front(k)

    # ---- public API ----

    def append(self, seq, kind, ts, payload):
        """Store one record durably (see the module docstring); drop the oldest if over capacity."""
        self._ready()
        if not _is_int(seq) or not self.last_seq < seq <= MAX_U32:
            raise OutboxError("seq %r: must be an int above last_seq %d, below 2**32" % (seq, self.last_seq))
        if not _is_int(kind) or not 0 <= kind <= 255:
            raise OutboxError("kind %r: must be an int 0..255" % (kind,))
        if not _is_int(ts) or not 0 <= ts <= MAX_U32:
            raise OutboxError("ts %r: must be an int 0..2**32-1" % (ts,))
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise OutboxError("payload: must be bytes, got %s" % type(payload).__name__)
        if not 1 <= len(payload) <= MAX_PAYLOAD:
            raise OutboxError("payload length %d: must be 1..%d" % (len(payload), MAX_PAYLOAD))
        rec = encode_record(seq, kind, ts, payload)
        size = len(rec)
        ix = self._ix
        new = not ix or ix[-4 + _SIZE] + size > self.seg_bytes or self._force_new
        path = self._path(seq if new else ix[-4 + _FIRST])
        try:
            with open(path, "ab") as f:
                n = f.write(rec)
                if n is not None and n != size:
                    raise OSError("short write: %d of %d bytes" % (n, size))
            _sync()
        except OSError as e:
            self._undo_write(path, new)
            raise OutboxError("append seq %d: cannot write %s: %s" % (seq, path, e))
        rec = None
        if new:
            ix.extend((seq, seq, 0, 0))
            self._force_new = False
        ix[-4 + _LAST] = seq
        ix[-4 + _COUNT] += 1
        ix[-4 + _SIZE] += size
        self._bytes += size
        self._pending += 1
        self.last_seq = seq
        if self._bytes > self.max_bytes:
            self._drop_oldest()

    def _undo_write(self, path, new):
        """After a failed write: take a partial record off the segment, so later appends stay readable."""
        try:
            if new:
                if exists(path):
                    os.remove(path)
            else:
                self._truncate(path, self._ix[-4 + _SIZE])
        except OSError as e:
            self.errors += 1
            self.last_error = str(e)
            if not new:  # could not repair: the next append starts a new segment
                self._force_new = True

    def peek(self, after_seq, n):
        """Up to ``n`` (seq, kind, payload) with seq > max(after_seq, acked), in seq order, from flash."""
        self._ready()
        if not _is_int(after_seq) or not _is_int(n):
            raise OutboxError("peek: after_seq %r and n %r must be ints" % (after_seq, n))
        lo = max(after_seq, self.acked)
        out = []
        if n <= 0:
            return out
        cursor = self._cursor
        ix = self._ix
        for i in range(0, len(ix), 4):
            if ix[i + _LAST] <= lo:
                continue
            first = ix[i + _FIRST]
            pos = 0
            with open(self._path(first), "rb") as f:
                if cursor is not None and cursor[1] == first and cursor[0] <= lo:
                    pos = cursor[2]  # resume after the last record handed out
                    f.seek(pos)
                while len(out) < n:
                    h = self._next(f)
                    if h is None:
                        break
                    length = h[2]
                    seq = h[3]
                    pos += HEADER + length
                    if seq <= lo:
                        f.seek(length, 1)
                        continue
                    payload = f.read(length)
                    if len(payload) != length:
                        break
                    if binascii.crc32(payload, binascii.crc32(self._hv[:12])) & MAX_U32 != h[5]:
                        self.bad_reads += 1  # damaged since open(): skipped, acked past later
                        continue
                    out.append((seq, h[1], payload))
                    self._cursor = (seq, first, pos)
            if len(out) >= n:
                break
        return out

    def ack(self, seq):
        """Records with seq <= ``seq`` are delivered; delete segments holding only delivered ones."""
        self._ready()
        if not _is_int(seq) or seq < 0:
            raise OutboxError("ack seq %r: must be a non-negative int" % (seq,))
        if seq > self.last_seq:
            raise OutboxError("ack seq %d: beyond last_seq %d" % (seq, self.last_seq))
        if seq <= self.acked:
            return
        self._pending -= self._count(self.acked, seq)
        self.acked = seq
        self._acks += 1
        k = self._leading(seq)
        if k:
            if self._try_persist():
                self._delete_front(k)
        elif self._acks >= ACK_PERSIST_EVERY:
            self._try_persist()

    def sync(self):
        """Persist the meta now if it changed since the last save."""
        self._ready()
        if (self.acked, self.dropped, self._through) != self._saved:
            try:
                self._persist()
            except PersistError as e:
                raise OutboxError("meta in %s: cannot save: %s" % (self.directory, e))

    def pending(self):
        """Number of stored records with seq > acked (a counter, no flash read)."""
        self._ready()
        return self._pending

    def tail(self, after_seq):
        """(seq, kind, ts) of every stored record with seq > after_seq, acked or not (boot reconciliation).

        Reads headers only: records were CRC-checked by open().
        """
        self._ready()
        if not _is_int(after_seq):
            raise OutboxError("tail: after_seq %r must be an int" % (after_seq,))
        out = []
        ix = self._ix
        for i in range(0, len(ix), 4):
            if ix[i + _LAST] <= after_seq:
                continue
            with open(self._path(ix[i + _FIRST]), "rb") as f:
                while True:
                    h = self._next(f)
                    if h is None:
                        break
                    if h[3] > after_seq:
                        out.append((h[3], h[1], h[4]))
                    f.seek(h[2], 1)
        return out

    def stats(self):
        self._ready()
        return {
            "pending": self._pending,
            "dropped": self.dropped,
            "acked": self.acked,
            "last_seq": self.last_seq,
            "segments": len(self._ix) // 4,
            "bytes": self._bytes,
        }
