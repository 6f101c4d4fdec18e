"""Power-fail-safe state store: two alternating slot files with seq and CRC.

``SlotStore(directory, name)`` keeps ``<dir>/<name>.a`` and ``<dir>/<name>.b``.
Each slot file is one frame (little-endian):

    MAGIC b"AMS1" (4) | seq u32 | length u32 | crc32 u32 | payload (length bytes)
    crc32 = binascii.crc32(seq + length + payload), i.e. over bytes 4..12 and 16..

``load()`` returns ``(seq, payload)`` of the valid slot with the highest seq, or
``(0, None)`` when neither is valid. A slot that exists but is torn (short,
empty, trailing bytes), has a bad magic, length or CRC is ignored, named in
``corrupt_slots`` ("a"/"b") and sets ``recovered`` so the meter raises event 20
(storage fault or recovery). A missing file is not a fault (first boot).
``save(payload)`` writes the OTHER slot (the older or the broken one) with
seq + 1, closes it and calls ``os.sync()`` where the port has it. A power cut at
any instruction therefore leaves either the previous complete state (the slot
not being written is never opened for writing) or the new one. CRC-32 detects
every error burst up to 32 bits, so any single corrupted byte is caught.

``encode_state(dict) -> bytes`` / ``decode_state(bytes) -> dict`` wrap a state
map as CBOR ``{"v": STATE_VERSION, "s": state}``; a newer version or malformed
bytes raise ``PersistError``.

Flash wear (persist interval 15 min, plus rare event-driven saves):
96 saves/day = 35_040 saves/year, alternating, so 17_520 rewrites per slot file.
A state of ~300 bytes (registers for 4 rates, balance, seqs) plus the 16-byte
header is ~11 MB/year. On littlefs (MicroPython: 32-byte prog, 128-byte cache)
a payload above the ~128-byte inline limit goes to a fresh copy-on-write data
block on every save, so count one 4 KiB erase per save, ~35_000 erases/year,
plus metadata commits, which littlefs relocates every ``block_cycles`` (100)
erases. The block allocator walks all free blocks, so on a 4 MB flash with
~2 MB (~500 blocks) free, each block sees ~70 erases/year: >1000 years to the
typical 100k-cycle endurance. Without wear levelling (a fixed sector, FAT) the
same sector would wear out in ~3 years: littlefs is required on boards.
"""

import binascii
import os
import struct

from micropython import const

from protocol import cbor
from protocol.errors import CBORError

MAGIC = b"AMS1"
HEADER = const(16)
MAX_SEQ = 0xFFFFFFFF
STATE_VERSION = const(1)
SLOTS = ("a", "b")


class PersistError(Exception):
    """Storage could not be written, or a stored state could not be decoded."""


def encode_slot(seq, payload):
    """The bytes of one slot file holding ``payload`` under ``seq``."""
    if not 0 <= seq <= MAX_SEQ:
        raise PersistError("seq %r outside u32" % (seq,))
    body = struct.pack("<II", seq, len(payload))
    crc = binascii.crc32(payload, binascii.crc32(body)) & 0xFFFFFFFF
    return MAGIC + body + struct.pack("<I", crc) + bytes(payload)


def decode_slot(data):
    """``(seq, payload)`` from a slot file's bytes, or None if torn or corrupt."""
    if data is None or len(data) < HEADER or data[:4] != MAGIC:
        return None
    seq, length, crc = struct.unpack("<III", data[4:HEADER])
    if length != len(data) - HEADER:
        return None
    payload = data[HEADER:]
    if binascii.crc32(payload, binascii.crc32(data[4:12])) & 0xFFFFFFFF != crc:
        return None
    return seq, bytes(payload)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def exists(path):
    """True when ``path`` exists (MicroPython has no os.path)."""
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class SlotStore:
    def __init__(self, directory, name):
        base = directory.rstrip("/") + "/" if directory else ""
        self.paths = (base + name + ".a", base + name + ".b")
        self.seq = 0
        self.current = -1  # index of the slot holding self.seq; -1 = none valid
        self.corrupt_slots = []
        self.recovered = False
        self._loaded = False

    def load(self):
        """``(seq, payload)`` of the newest valid slot, or ``(0, None)``."""
        best = None
        self.corrupt_slots = []
        self.current = -1
        for i in range(2):
            path = self.paths[i]
            data = _read(path)
            if data is None:
                if exists(path):  # present but unreadable
                    self.corrupt_slots.append(SLOTS[i])
                continue
            got = decode_slot(data)
            data = None
            if got is None:
                self.corrupt_slots.append(SLOTS[i])
            elif best is None or got[0] > best[0]:
                best = got
                self.current = i
        self.recovered = bool(self.corrupt_slots)
        self._loaded = True
        if best is None:
            self.seq = 0
            return 0, None
        self.seq = best[0]
        return best

    def save(self, payload):
        """Write ``payload`` to the slot not holding the newest state; return its seq."""
        if not self._loaded:
            self.load()
        seq = self.seq + 1
        target = 1 if self.current == 0 else 0
        frame = encode_slot(seq, payload)
        try:
            with open(self.paths[target], "wb") as f:
                n = f.write(frame)
                if n is not None and n != len(frame):
                    raise OSError("short write: %d of %d bytes" % (n, len(frame)))
                if hasattr(f, "flush"):
                    f.flush()
            if hasattr(os, "sync"):
                os.sync()
        except OSError as e:
            raise PersistError("cannot write %s: %s" % (self.paths[target], e))
        self.seq = seq
        self.current = target
        return seq

    def clear(self):
        """Remove both slot files (tests, factory reset)."""
        for path in self.paths:
            if exists(path):
                os.remove(path)
        self.seq = 0
        self.current = -1
        self.corrupt_slots = []
        self.recovered = False


def encode_state(state):
    """CBOR bytes of ``{"v": STATE_VERSION, "s": state}``."""
    if not isinstance(state, dict):
        raise PersistError("state must be a dict, got %s" % type(state).__name__)
    try:
        return cbor.dumps({"v": STATE_VERSION, "s": state})
    except CBORError as e:
        raise PersistError("cannot encode state: %s" % e)


def decode_state(data):
    """The state dict from ``encode_state`` bytes; PersistError if unusable."""
    try:
        obj = cbor.loads(data)
    except CBORError as e:
        raise PersistError("state is not valid CBOR: %s" % e)
    if not isinstance(obj, dict) or "v" not in obj or "s" not in obj:
        raise PersistError("state: expected a map with keys v and s")
    v = obj["v"]
    if not isinstance(v, int) or v is True or v is False or v < 1:
        raise PersistError("state: bad version %r" % (v,))
    if v > STATE_VERSION:
        raise PersistError("state version %d is newer than this firmware's %d" % (v, STATE_VERSION))
    if not isinstance(obj["s"], dict):
        raise PersistError("state: s must be a map")
    return obj["s"]
