"""C-speed-ish decode and check of a reading's payload, for the common case only.

``reading(body) -> dict | None``: when ``body`` (the COSE payload, already
verified) is exactly the preferred CBOR encoding of a well-formed reading
map, return what ``protocol.messages.parse(protocol.cbor.loads(body))`` would
return; otherwise None, and the caller asks the reference path, which also
names the reason of a refusal. It never refuses a frame the reference accepts
nor accepts one it refuses: None only means "not sure, ask the reference".

``reading_row(body) -> tuple | None``: the same verdict, as the columns
``headend serve`` stores (``headend.ingest.verify.take``): (seq, ts, interval,
imp, exp, q as JSON text, inst as JSON text or None, balance, flags, tariff),
without the dict in between.

``row(body, meter_id, received_at, frame) -> tuple | None``: reading_row's verdict as the
whole readings row, read with one ``struct.unpack_from`` when a body of the same shape was
seen before (the layouts below; tests/headend/test_ingest_layout.py), else by reading_row.

Why its verdict is the reference's (tests/headend/test_ingest.py checks it):

- One pass over the bytes, by hand, accepting only what the preferred
  definite encoding of a reading can hold: a map of fewer than 24 pairs, keys
  the one-byte uints a reading defines (0-9, 11; inst keys 0-6), each once;
  values ints (major types 0 and 1) with the shortest head for their value
  (``_arg``), arrays of uints and the inst map with one-byte heads (fewer
  than 24 items); and the map must end exactly at the end of ``body``. Any
  other byte (a tag such as a bignum, a float, a longer head, an indefinite
  length, a duplicate or unknown key, trailing bytes, a cut) gives None.
  What is accepted is thus preferred definite CBOR of ints, int lists and
  int-keyed maps, which both decoders read alike.
- Each value is in the range ``messages.SCHEMA`` gives and every required key
  is present, or None. CBOR has no bool among these major types, so a
  ``true`` (0xf5) is refused here as ``messages.check_int`` refuses it.
- ``bytes`` indexing and ``int.from_bytes`` do the work; cbor2 (a C extension)
  needed an encoder-side check after it that cost more than this whole pass.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from operator import itemgetter

from protocol import messages

_UMAX = messages.UINT_MAX
_INST = tuple(
    (name, messages.RANGES[check][0], messages.RANGES[check][1])
    for name, check in zip(messages.INST_NAMES, messages.INST_CHECKS, strict=True)
)
_N_INST = len(_INST)
_MAX_RATES = messages.MAX_RATES
_TYPE = messages.TYPE_READING
_OPTIONAL = {7: "inst", 8: "balance", 9: "flags", 11: "tariff"}
_FAIL = (-1, 0)


def _arg(b: bytes, i: int, ai: int) -> tuple[int, int]:
    """(argument, next index) of the head at b[i] with additional info ai in 24..27, if it
    is the shortest head for its value; (-1, 0) otherwise (IndexError if cut short)."""
    if ai == 24:
        v = b[i + 1]
        return (v, i + 2) if v >= 24 else _FAIL
    if ai == 25:
        v = b[i + 1] << 8 | b[i + 2]
        return (v, i + 3) if v >= 0x100 else _FAIL
    if ai == 26:
        v = int.from_bytes(b[i + 1 : i + 5], "big")
        return (v, i + 5) if v >= 0x10000 else _FAIL
    if ai == 27:
        v = int.from_bytes(b[i + 1 : i + 9], "big")
        return (v, i + 9) if v >= 0x100000000 else _FAIL
    return _FAIL


def _uint(b: bytes, i: int) -> tuple[int, int]:
    h = b[i]
    if h < 24:
        return h, i + 1
    return _arg(b, i, h)  # (-1, 0) for any other major type


def _int(b: bytes, i: int) -> tuple[int | None, int]:
    """An int of either sign; (None, 0) if not one."""
    h = b[i]
    if h < 24:
        return h, i + 1
    if h < 0x20:
        v, i = _arg(b, i, h)
        return (v, i) if i else (None, 0)
    if h < 0x38:
        return 0x1F - h, i + 1
    if h < 0x3C:
        v, i = _arg(b, i, h - 0x20)
        return (-1 - v, i) if i else (None, 0)
    return None, 0


def _uints(b: bytes, i: int, lo: int, hi: int) -> tuple[list | None, int]:
    """A definite array of lo..hi uints at b[i] (one-byte head); (None, 0) otherwise."""
    n = b[i] - 0x80
    if n < lo or n > hi:
        return None, 0
    i += 1
    out = []
    for _ in range(n):
        v = b[i]
        if v < 24:
            i += 1
        else:
            v, i = _arg(b, i, v)
            if not i:
                return None, 0
        out.append(v)
    return out, i


def _decode(b: bytes):
    """(seq, ts, interval, imp, exp, q, inst, balance, flags, tariff) with inst a list of
    (name, value) and the absent optional ones None; None if not sure."""
    n = b[0] - 0xA0
    if n < 7 or n > 11:  # 0-6 required, 7, 8, 9, 11 optional
        return None
    i = 1
    t = seq = ts = interval = imp = exp = q = inst = balance = flags = tariff = None
    for _ in range(n):
        k = b[i]
        i += 1
        if k == 0 and t is None:
            t, i = _uint(b, i)
            if t != _TYPE:
                return None
        elif k == 1 and seq is None:
            seq, i = _uint(b, i)
            if seq < 1:
                return None
        elif k == 2 and ts is None:
            ts, i = _uint(b, i)
            if not i:
                return None
        elif k == 3 and interval is None:
            interval, i = _uint(b, i)
            if not i:
                return None
        elif k == 4 and imp is None:
            imp, i = _uints(b, i, 1, _MAX_RATES)
            if imp is None:
                return None
        elif k == 5 and exp is None:
            exp, i = _uints(b, i, 1, _MAX_RATES)
            if exp is None:
                return None
        elif k == 6 and q is None:
            q, i = _uints(b, i, 4, 4)
            if q is None:
                return None
        elif k == 7 and inst is None:
            m = b[i] - 0xA0
            if m < 0 or m > _N_INST:
                return None
            i += 1
            values = [None] * _N_INST
            for _ in range(m):
                j = b[i]
                if j >= _N_INST or values[j] is not None:
                    return None
                v, i = _int(b, i + 1)
                _, lo, hi = _INST[j]
                if v is None or v < lo or v > hi:
                    return None
                values[j] = v
            inst = [(_INST[j][0], v) for j, v in enumerate(values) if v is not None]
        elif k == 8 and balance is None:
            balance, i = _int(b, i)
            if balance is None:
                return None
        elif k == 9 and flags is None:
            flags, i = _uint(b, i)
            if not i:
                return None
        elif k == 11 and tariff is None:
            tariff, i = _uint(b, i)
            if not i:
                return None
        else:  # another key, a longer key head, a duplicate: the reference decides
            return None
    if i != len(b) or q is None or imp is None or exp is None or len(exp) != len(imp):
        return None
    if t is None or seq is None or ts is None or interval is None:
        return None
    return seq, ts, interval, imp, exp, q, inst, balance, flags, tariff


def reading(body: bytes) -> dict | None:
    try:
        d = _decode(body)
    except IndexError:  # cut short
        return None
    if d is None:
        return None
    seq, ts, interval, imp, exp, q, inst, balance, flags, tariff = d
    out = {"type": _TYPE, "seq": seq, "ts": ts, "interval": interval, "imp": imp, "exp": exp, "q": q}
    if inst is not None:
        out["inst"] = dict(inst)
    if balance is not None:
        out["balance"] = balance
    if flags is not None:
        out["flags"] = flags
    if tariff is not None:
        out["tariff"] = tariff
    return out


def _ints(values: list) -> str:
    return str(values).replace(" ", "")  # == json.dumps of a list of ints (never bools), faster


def reading_row(body: bytes) -> tuple | None:
    try:
        d = _decode(body)
    except IndexError:
        return None
    if d is None:
        return None
    seq, ts, interval, imp, exp, q, inst, balance, flags, tariff = d
    return (
        seq,
        ts,
        interval,
        _ints(imp),
        _ints(exp),
        _ints(q),
        None if inst is None else "{%s}" % ",".join(['"%s":%d' % kv for kv in inst]),
        balance,
        0 if flags is None else flags,
        tariff,
    )


# ---------------------------------------------------------------- layouts
#
# A fleet's readings differ in their values, not in their shape: meters of one firmware send
# the same keys in the same order, and a value keeps its head's width until it crosses 24,
# 256, 65536 or 2**32. ``row`` reads a body of a shape seen before with one struct.unpack_from.
#
# A layout is learnt from a body ``reading_row`` accepted: which of its bytes are fixed (the map
# and array heads, the keys, the heads of values of 24 and more, the type) and where each value
# lies (in its head byte when it is below 24 (or -24..-1), else in the 1, 2, 4 or 8 bytes after
# its head). A later body of the same length with the same fixed bytes is, read from its first
# byte as the decoder reads it, the same items at the same places: the decoder's walk is decided
# by the heads alone. Only what depends on the values is checked again, each value:
#   - in its head byte: still below 24 (a uint) or in 0x20..0x37 (a negative int), else that
#     byte is the head of a longer value and the walk would go another way;
#   - after its head: at least 24, 256, 65536 or 2**32 (the head is still the shortest for it);
#   - in its field's range: seq >= 1, the inst values in messages.RANGES.
# A failed check gives None, and reading_row decides (the reference path names a refusal).
#
# The layouts are one cache shared by every meter (meters of one firmware share their shapes: a
# million meters do not mean a million layouts): at most MAX_LAYOUTS, the least recently used
# dropped first, and at most MAX_LAYOUTS_PER_LENGTH of one body length (each is tried in turn).
# tests/headend/test_ingest_layout.py sweeps every byte of real bodies through both paths.

MAX_LAYOUTS = 1024
MAX_LAYOUTS_PER_LENGTH = 8
_ARG = {24: (1, "B", 24), 25: (2, "H", 0x100), 26: (4, "I", 0x10000), 27: (8, "Q", 0x100000000)}
_FIELDS = {1: "seq", 2: "ts", 3: "interval", 8: "balance", 9: "flags", 11: "tariff"}
_RANGE = {"seq": (1, _UMAX), "balance": (messages.INT_MIN, _UMAX)}  # the other fields: any uint
# what a value's bytes must be, checked for every byte at once: body.translate(_BITS) gives each
# byte's bits, a layout says which bits of which bytes must be set (_BIT[...][1]) or clear
_BITS = bytes((x >= 24) | (x != 0) << 1 | (0x20 <= x < 0x38) << 2 for x in range(256))
_BIT = {
    "uint in head": (1, 0),  # < 24
    "seq in head": (3, 2),  # < 24 and not 0
    "negative in head": (4, 4),  # 0x20..0x37
    "arg 24": (1, 1),  # its one byte >= 24
    "arg 25": (2, 2),  # its first byte not 0: >= 256
}
_layouts: dict = {}  # len(body) -> [layout, ...], the most recently used first
_lru: OrderedDict = OrderedDict()  # layout -> None, the least recently used first
counts = [0, 0]  # [bodies read by a layout, bodies decoded by reading_row]


class _Layout:
    __slots__ = (
        "n", "key", "mask", "fixed", "bmask", "bits", "unpack", "lows", "negs", "ranges", "texts", "row",
    )  # fmt: skip


def _value_range(neg: bool, ai: int) -> tuple[int, int]:
    """The values a head of additional info ``ai`` (0: the value in the head byte) can hold."""
    if not ai:
        return (-24, -1) if neg else (0, 23)
    w, _f, least = _ARG[ai]
    return (-(1 << 8 * w), -1 - least) if neg else (least, (1 << 8 * w) - 1)


def _learn(b: bytes) -> _Layout:
    """The layout of ``b``, a body reading_row accepted (so well formed: nothing checked here)."""
    fmt, fixed, slots = [">"], set(), []  # slots, in the order unpack gives them: (field, negative, ai)
    bits: dict[int, tuple[int, int]] = {}  # byte -> (bits checked, their values)

    def head(i: int) -> int:  # a fixed byte: a map or array head, a key
        fixed.add(i)
        fmt.append("x")
        return i + 1

    def value(i: int, field) -> int:
        h = b[i]
        if h < 24 or 0x20 <= h < 0x38:  # in the head byte
            fmt.append("B")
            slots.append((field, h >= 0x20, 0))
            kind = "negative" if h >= 0x20 else "seq" if field == "seq" else "uint"
            bits[i] = _BIT[kind + " in head"]
            return i + 1
        ai = h & 0x1F
        w, f, _least = _ARG[ai]
        fixed.add(i)
        fmt.append("x" + f)
        slots.append((field, h >= 0x20, ai))
        if ai < 26:
            bits[i + 1] = _BIT["arg %d" % ai]
        return i + 1 + w

    i, inst = head(0), None
    for _ in range(b[0] - 0xA0):
        k = b[i]
        i = head(i)
        if k == 0:  # the type: all fixed (another value is not a reading)
            j = value(i, "type")
            slots.pop()
            bits.pop(i, None)
            bits.pop(i + 1, None)
            fmt[-1] = "x" * (j - i)
            fixed.update(range(i, j))
            i = j
        elif k in (4, 5, 6):
            field = ("imp", "exp", "q")[k - 4]
            n, i = b[i] - 0x80, head(i)
            for r in range(n):
                i = value(i, (field, r))
        elif k == 7:
            n, i, inst = b[i] - 0xA0, head(i), []
            for _ in range(n):
                inst.append(b[i])
                i = value(head(i), ("inst", b[i]))
        else:
            i = value(i, _FIELDS[k])
    n = len(b)
    lay = _Layout()
    lay.n = n
    lay.unpack = struct.Struct("".join(fmt)).unpack_from
    lay.mask = int.from_bytes(bytes(0xFF if p in fixed else 0 for p in range(n)), "big")
    lay.fixed = int.from_bytes(b, "big") & lay.mask
    lay.bmask = int.from_bytes(bytes(bits.get(p, (0, 0))[0] for p in range(n)), "big")
    lay.bits = int.from_bytes(bytes(bits.get(p, (0, 0))[1] for p in range(n)), "big")
    # the same fixed bytes with a value in the head byte of another sign (0x00.. against 0x20..)
    # is another layout: its bits differ, so they are part of the key
    lay.key = "".join(fmt), lay.mask, lay.fixed, lay.bmask, lay.bits
    lay.lows = []  # (values, least) of 4- and 8-byte arguments: the head still the shortest
    for ai in (26, 27):
        ks = [k for k, (_f, _n, a) in enumerate(slots) if a == ai]
        if ks:
            lay.lows.append((itemgetter(*ks, ks[0]), _ARG[ai][2]))  # a tuple, even of one value
    # a negative int's value is c - its byte(s): 0x1F - head byte, or -1 - argument
    lay.negs = [(k, -1 if ai else 0x1F) for k, (_f, neg, ai) in enumerate(slots) if neg]
    lay.ranges = []  # (index, lo, hi): values whose head can hold values outside their field's range
    for k, (field, neg, ai) in enumerate(slots):
        if type(field) is tuple:
            lo, hi = _INST[field[1]][1:] if field[0] == "inst" else (0, _UMAX)
        else:
            lo, hi = _RANGE.get(field, (0, _UMAX))
        vlo, vhi = _value_range(neg, ai)
        if field != "seq" and (vlo < lo or vhi > hi):  # seq: its bits (not 0) or its head (>= 24)
            lay.ranges.append((k, lo, hi))
    at = {field: k for k, (field, _n, _a) in enumerate(slots)}
    # imp, exp, q and inst as JSON text: one format of their values, split at its NULs
    lists = [[k for k, s in enumerate(slots) if s[0][:1] == (name,)] for name in ("imp", "exp", "q")]
    texts = ["[%s]" % ",".join(["%d"] * len(ks)) for ks in lists]
    order = sorted(inst or ())  # as reading_row writes them: by key
    if inst is not None:
        texts.append("{%s}" % ",".join('"%s":%%d' % _INST[j][0] for j in order))
    ks = [k for ks in lists for k in ks] + [at[("inst", j)] for j in order]
    lay.texts = "\0".join(texts), itemgetter(*ks)
    # the row from the values, then (meter_id, received_at, frame, None, 0, imp, exp, q[, inst])
    m = len(slots)
    inst_at = m + 8 if inst is not None else m + 3
    lay.row = itemgetter(
        m, at["seq"], at["ts"], m + 1, at["interval"], m + 5, m + 6, m + 7, inst_at,
        at.get("balance", m + 3), at.get("flags", m + 4), at.get("tariff", m + 3), m + 2,
    )  # fmt: skip
    return lay


def _remember(lay: _Layout) -> None:
    same = _layouts.setdefault(lay.n, [])
    if any(other.key == lay.key for other in same):
        return
    if len(same) >= MAX_LAYOUTS_PER_LENGTH:
        del _lru[same.pop()]
    elif len(_lru) >= MAX_LAYOUTS:
        old = _lru.popitem(last=False)[0]
        _layouts[old.n].remove(old)
    same.insert(0, lay)
    _lru[lay] = None


def clear_layouts() -> None:
    _layouts.clear()
    _lru.clear()


def by_layout(body: bytes, meter_id: str, received_at: float, frame: bytes) -> tuple | None:
    """``row`` by the known layouts alone: None if none of them reads ``body``."""
    same = _layouts.get(len(body))
    if same is None:
        return None
    x = int.from_bytes(body, "big")
    for lay in same:
        if x & lay.mask != lay.fixed or int.from_bytes(body.translate(_BITS), "big") & lay.bmask != lay.bits:
            continue
        v = lay.unpack(body)
        for get, least in lay.lows:
            if min(get(v)) < least:
                break
        else:
            if lay.negs:
                v = list(v)
                for k, c in lay.negs:
                    v[k] = c - v[k]
            for k, lo, hi in lay.ranges:
                if v[k] < lo or v[k] > hi:
                    break
            else:
                if same[0] is not lay:
                    same.remove(lay)
                    same.insert(0, lay)
                _lru.move_to_end(lay)
                text, get = lay.texts
                return lay.row((*v, meter_id, received_at, frame, None, 0, *(text % get(v)).split("\0")))
    return None


def row(body: bytes, meter_id: str, received_at: float, frame: bytes) -> tuple | None:
    """The readings row ``headend serve`` stores for ``body`` (READING_COLUMNS order: meter_id,
    seq, ts, received_at, interval, imp, exp, q, inst, balance, flags, tariff, raw ``frame``):
    reading_row's verdict and values, read by a known layout when there is one (``by_layout``),
    else by reading_row, whose body's layout is then learnt; None: not sure, ask the reference."""
    r = by_layout(body, meter_id, received_at, frame)
    if r is not None:
        counts[0] += 1
        return r
    counts[1] += 1
    r = reading_row(body)
    if r is None:
        return None
    _remember(_learn(body))
    return (meter_id, r[0], r[1], received_at, *r[2:], frame)
