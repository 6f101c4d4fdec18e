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
