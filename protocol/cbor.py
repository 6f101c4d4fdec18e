"""A small, strict CBOR codec (RFC 8949) for CPython and MicroPython.

Contract:
  ``dumps(obj) -> bytes``  preferred (shortest) serialization, definite
      lengths, map keys in bytewise order of their encodings (RFC 8949
      §4.2.1), so both runtimes emit the same bytes for the same value.
  ``loads(data) -> obj``   decodes every well-formed data item of RFC 8949,
      including indefinite lengths, half/single/double floats, tags and
      simple values.
  ``Tag(tag, value)``      a tagged item other than the bignums 2 and 3,
      which decode to ``int``.

Every malformed input (truncated, reserved additional information, a break
outside an indefinite item, trailing bytes, nesting deeper than
``MAX_DEPTH``, a length beyond the input, invalid UTF-8, a duplicate or
unhashable map key) and every value this codec cannot represent raises
``CBORError`` (a ``ProtocolError``, hence a ``ValueError``) and nothing else
(``MemoryError`` passes through: a device out of heap has not seen bad input).

Types: unsigned/negative ints <-> int; byte strings -> bytes; text -> str;
arrays -> list (tuples encode as arrays); maps -> dict; false/true/null ->
False/True/None; undefined -> ``UNDEFINED``; other simple values ->
``Simple(n)``.
"""

import struct

from protocol.errors import CBORError

TYPE_CHECKING = False  # True only for the type checker (tools/typecheck.py); never imported on a board
if TYPE_CHECKING:
    from typing import Any

MAX_DEPTH = 16  # containers and tags nested deeper than this are refused

_MAX_U64 = 0xFFFFFFFFFFFFFFFF
_INF = float("inf")


class Tag:
    """A CBOR tag: ``Tag(17, [...])`` is COSE_Mac0."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self.tag, repr(self.value)))

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


class Simple:
    """A simple value other than false, true, null and undefined."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Simple) and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(("simple", self.value))

    def __repr__(self):
        return "Simple(%d)" % self.value


class _Undefined:
    def __repr__(self):
        return "UNDEFINED"


UNDEFINED = _Undefined()


# ---------------------------------------------------------------- encoding


def _head(out, major, n):
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.extend(struct.pack(">BH", mt | 25, n))
    elif n < 0x100000000:
        out.extend(struct.pack(">BI", mt | 26, n))
    else:
        out.extend(struct.pack(">BQ", mt | 27, n))


def _int_to_bytes(n):
    size = 0
    m = n
    while m:
        m >>= 8
        size += 1
    return n.to_bytes(size, "big")


def _encode_float(out, x):
    if x != x:  # NaN: the canonical quiet NaN in half precision
        out.extend(b"\xf9\x7e\x00")
        return
    if x == _INF or x == -_INF:
        out.extend(b"\xf9\x7c\x00" if x > 0 else b"\xf9\xfc\x00")
        return
    for fmt, ib in ((">e", 0xF9), (">f", 0xFA)):
        try:
            packed = struct.pack(fmt, x)
        except (OverflowError, ValueError):
            continue
        if struct.unpack(fmt, packed)[0] == x:
            out.append(ib)
            out.extend(packed)
            return
    out.append(0xFB)
    out.extend(struct.pack(">d", x))


def _encode(out, obj, depth):
    if depth > MAX_DEPTH:
        raise CBORError("nesting deeper than %d" % MAX_DEPTH, "depth")
    t = type(obj)
    if obj is None:
        out.append(0xF6)
    elif t is bool:
        out.append(0xF5 if obj else 0xF4)
    elif t is int:
        if obj >= 0:
            if obj <= _MAX_U64:
                _head(out, 0, obj)
            else:
                _encode(out, Tag(2, _int_to_bytes(obj)), depth)
        else:
            n = -1 - obj
            if n <= _MAX_U64:
                _head(out, 1, n)
            else:
                _encode(out, Tag(3, _int_to_bytes(n)), depth)
    elif t is str:
        b = obj.encode("utf-8")
        _head(out, 3, len(b))
        out.extend(b)
    elif t is bytes or t is bytearray or t is memoryview:
        _head(out, 2, len(obj))
        out.extend(obj)
    elif t is float:
        _encode_float(out, obj)
    elif t is list or t is tuple:
        _head(out, 4, len(obj))
        for item in obj:
            _encode(out, item, depth + 1)
    elif t is dict:
        pairs = []
        for k in obj:
            kb = bytearray()
            _encode(kb, k, depth + 1)
            pairs.append((bytes(kb), k))
        pairs.sort(key=lambda p: p[0])
        _head(out, 5, len(pairs))
        for kb, k in pairs:
            out.extend(kb)
            _encode(out, obj[k], depth + 1)
    elif isinstance(obj, Tag):
        if type(obj.tag) is not int or obj.tag < 0 or obj.tag > _MAX_U64:
            raise CBORError("tag number out of range: %r" % (obj.tag,), "tag")
        _head(out, 6, obj.tag)
        _encode(out, obj.value, depth + 1)
    elif obj is UNDEFINED:
        out.append(0xF7)
    elif isinstance(obj, Simple):
        v = obj.value
        if type(v) is not int or not (0 <= v < 24 or 32 <= v < 256):
            raise CBORError("invalid simple value: %r" % (v,), "simple")
        _head(out, 7, v)
    else:
        raise CBORError("cannot encode %s" % type(obj).__name__, "type")


def dumps(obj):
    """Encode obj as CBOR with preferred serialization; raises CBORError."""
    out = bytearray()
    try:
        _encode(out, obj, 0)
    except (CBORError, MemoryError):
        raise
    except Exception as e:  # e.g. RecursionError on a cyclic list
        raise CBORError("cannot encode: %s" % type(e).__name__, "type")
    return bytes(out)


# ---------------------------------------------------------------- decoding


def _half(h):
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        val = mant * 2.0**-24
    elif exp != 31:
        val = (mant + 1024) * 2.0 ** (exp - 25)
    elif mant == 0:
        val = _INF
    else:
        val = float("nan")
    return -val if h & 0x8000 else val


class _Decoder:
    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.end = len(data)

    def take(self, n):
        p = self.pos
        if n > self.end - p:
            raise CBORError("truncated: need %d bytes at offset %d" % (n, p), "truncated")
        self.pos = p + n
        return self.data[p : p + n]

    def byte(self):
        p = self.pos
        if p >= self.end:
            raise CBORError("truncated at offset %d" % p, "truncated")
        self.pos = p + 1
        return self.data[p]

    def argument(self, ai):
        if ai < 24:
            return ai
        if ai == 24:
            return self.byte()
        if ai == 25:
            return struct.unpack(">H", self.take(2))[0]
        if ai == 26:
            return struct.unpack(">I", self.take(4))[0]
        if ai == 27:
            return struct.unpack(">Q", self.take(8))[0]
        raise CBORError("reserved additional information %d at offset %d" % (ai, self.pos - 1), "ai")

    def chunks(self, major):
        """Concatenate the definite-length chunks of an indefinite string."""
        parts = []
        while True:
            ib = self.byte()
            if ib == 0xFF:
                break
            if ib >> 5 != major or ib & 31 == 31:
                raise CBORError("bad chunk in indefinite string at offset %d" % (self.pos - 1), "chunk")
            chunk = bytes(self.take(self.argument(ib & 31)))
            if major == 3:
                chunk = _utf8(chunk)
            parts.append(chunk)
        return ("" if major == 3 else b"").join(parts)

    def item(self, depth):
        ib = self.byte()
        major = ib >> 5
        ai = ib & 31
        if major == 7:
            return self.simple(ai)
        if ai == 31:
            if major == 2 or major == 3:
                return self.chunks(major)
            if major == 4 or major == 5:
                return self.container(major, None, depth)
            raise CBORError("indefinite length not allowed for major type %d" % major, "ai")
        n = self.argument(ai)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            return _utf8(self.take(n))
        if major == 4 or major == 5:
            return self.container(major, n, depth)
        # major 6: tag
        if depth >= MAX_DEPTH:
            raise CBORError("nesting deeper than %d" % MAX_DEPTH, "depth")
        value = self.item(depth + 1)
        if n == 2 or n == 3:
            if type(value) is not bytes:
                raise CBORError("bignum tag %d must wrap a byte string" % n, "tag")
            big = int.from_bytes(value, "big") if value else 0
            return big if n == 2 else -1 - big
        return Tag(n, value)

    def container(self, major, count, depth):
        if depth >= MAX_DEPTH:
            raise CBORError("nesting deeper than %d" % MAX_DEPTH, "depth")
        if count is not None and count * (major - 3) > self.end - self.pos:
            # every element takes at least one byte: refuse before allocating
            raise CBORError("length %d beyond the input" % count, "truncated")
        if major == 4:
            out = []
            while count is None or len(out) < count:
                if count is None and self.peek_break():
                    break
                out.append(self.item(depth + 1))
            return out
        out = {}
        i = 0
        while count is None or i < count:
            if count is None and self.peek_break():
                break
            key = self.item(depth + 1)
            value = self.item(depth + 1)
            try:
                if key in out:
                    raise CBORError("duplicate map key %r" % (key,), "key")
                out[key] = value
            except TypeError:
                raise CBORError("unhashable map key of type %s" % type(key).__name__, "key")
            i += 1
        return out

    def peek_break(self):
        if self.pos >= self.end:
            raise CBORError("truncated: missing break", "truncated")
        if self.data[self.pos] == 0xFF:
            self.pos += 1
            return True
        return False

    def simple(self, ai):
        if ai < 20:
            return Simple(ai)
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        if ai == 23:
            return UNDEFINED
        if ai == 24:
            v = self.byte()
            if v < 32:
                raise CBORError("simple value %d in two-byte form" % v, "simple")
            return Simple(v)
        if ai == 25:
            return _half(struct.unpack(">H", self.take(2))[0])
        if ai == 26:
            return struct.unpack(">f", self.take(4))[0]
        if ai == 27:
            return struct.unpack(">d", self.take(8))[0]
        if ai == 31:
            raise CBORError("break outside an indefinite-length item at offset %d" % (self.pos - 1), "break")
        raise CBORError("reserved additional information %d at offset %d" % (ai, self.pos - 1), "ai")


def _utf8(b):
    try:
        return str(bytes(b), "utf-8")
    except Exception:
        raise CBORError("invalid UTF-8 in text string", "utf8")


def loads(data) -> "Any":  # any CBOR item (for the type checker, tools/typecheck.py)
    """Decode exactly one CBOR data item from data; raises CBORError."""
    t = type(data)
    if t is not bytes and t is not bytearray and t is not memoryview:
        raise CBORError("expected bytes, got %s" % t.__name__, "type")
    dec = _Decoder(data)
    try:
        value = dec.item(0)
    except (CBORError, MemoryError):  # running out of heap is not a verdict on the input
        raise
    except Exception as e:  # defence in depth: nothing else may escape
        raise CBORError("malformed CBOR: %s" % type(e).__name__, "malformed")
    if dec.pos != dec.end:
        raise CBORError("%d trailing bytes after the data item" % (dec.end - dec.pos), "trailing")
    return value
