"""C-speed decode and check of a reading's payload, for the common case only.

``reading(body) -> dict | None``: when ``body`` (the COSE payload, already
verified) is exactly the preferred CBOR encoding of a well-formed reading
map, return what ``protocol.messages.parse(protocol.cbor.loads(body))`` would
return; otherwise None, and the caller asks the reference path, which also
names the reason of a refusal. It never refuses a frame the reference accepts
nor accepts one it refuses: None only means "not sure, ask the reference".

Why its verdict is the reference's (tests/headend/test_ingest.py checks it):

- cbor2 (C extension) decodes; it is more lenient than protocol.cbor (a
  duplicate map key keeps the last value, trailing bytes are ignored), so the
  result is trusted only when ``len(body)`` equals the length of the preferred
  encoding of what came out. Every other encoding of a value is strictly
  longer: a duplicate pair, trailing bytes, a tag (bignum), a longer integer
  head or an indefinite length (containers here hold < 24 items, so a break
  byte costs one more byte than a definite head). Then body *is* the preferred
  definite encoding of ints, lists and int-keyed maps, which both decoders
  read alike.
- The map may hold only the keys a reading defines (0-9, 11; inst keys 0-6),
  each of the exact Python type and range ``messages.SCHEMA`` gives, all
  required keys present: otherwise None. ``bool`` is not ``int`` here, as in
  ``messages.check_int``.
"""

from __future__ import annotations

import cbor2

from protocol import messages

_KEYS = frozenset((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11))  # type, seq, ts and SCHEMA[TYPE_READING]
_UMAX = messages.UINT_MAX
_SMIN = messages.INT_MIN
_INST = tuple(
    (name, messages.RANGES[check][0], messages.RANGES[check][1])
    for name, check in zip(messages.INST_NAMES, messages.INST_CHECKS, strict=True)
)
_MAX_RATES = messages.MAX_RATES


def _head(v: int) -> int:
    """Bytes of the preferred CBOR head of int v (caller keeps v within 64 bits)."""
    if v < 0:
        v = -1 - v
    if v < 24:
        return 1
    if v < 0x100:
        return 2
    if v < 0x10000:
        return 3
    if v < 0x100000000:
        return 5
    return 9


def _uints(x, lo: int, hi: int) -> int:
    """Encoded size of x if it is a list of lo..hi uints, else -1."""
    if type(x) is not list or not lo <= len(x) <= hi:
        return -1
    size = 1  # the array head: fewer than 24 items
    for v in x:
        if type(v) is not int or v < 0 or v > _UMAX:
            return -1
        size += 1 if v < 24 else _head(v)
    return size


def reading(body: bytes) -> dict | None:
    try:
        m = cbor2.loads(body)
    except Exception:  # whatever cbor2 dislikes, the reference decoder judges
        return None
    if type(m) is not dict:
        return None
    for k in m:
        if type(k) is not int or k not in _KEYS:
            return None
    t, seq, ts, interval = m.get(0), m.get(1), m.get(2), m.get(3)
    if type(t) is not int or t != messages.TYPE_READING:
        return None
    if type(seq) is not int or seq < 1 or seq > _UMAX:
        return None
    if type(ts) is not int or ts < 0 or ts > _UMAX:
        return None
    if type(interval) is not int or interval < 0 or interval > _UMAX:
        return None
    imp, exp, q = m.get(4), m.get(5), m.get(6)
    n_imp = _uints(imp, 1, _MAX_RATES)
    if n_imp < 0:
        return None
    n_exp = _uints(exp, len(imp), len(imp))
    n_q = _uints(q, 4, 4)
    if n_exp < 0 or n_q < 0:
        return None
    size = 1 + len(m) + 1 + _head(seq) + _head(ts) + _head(interval) + n_imp + n_exp + n_q
    out = {"type": t, "seq": seq, "ts": ts, "interval": interval, "imp": imp, "exp": exp, "q": q}
    if 7 in m:
        inst = m[7]
        if type(inst) is not dict:
            return None
        size += 1 + len(inst)  # the map head and one-byte keys 0..6
        named = {}
        for k in inst:
            if type(k) is not int or not 0 <= k < len(_INST):
                return None
        for k in range(len(_INST)):
            if k in inst:
                name, lo, hi = _INST[k]
                v = inst[k]
                if type(v) is not int or v < lo or v > hi:
                    return None
                size += _head(v)
                named[name] = v
        out["inst"] = named
    for key, name, lo in ((8, "balance", _SMIN), (9, "flags", 0), (11, "tariff", 0)):
        if key in m:
            v = m[key]
            if type(v) is not int or v < lo or v > _UMAX:
                return None
            size += _head(v)
            out[name] = v
    return out if size == len(body) else None
