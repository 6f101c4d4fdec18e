"""Shared pieces of the fuzz tests: example budgets, the per-call time bound, and mutators
that turn valid encodings into near-valid ones.

- ``fuzz(n)``: hypothesis settings for ``n`` examples times ``FUZZ_EXAMPLES`` (a float
  multiplier from the environment, default 1: ``FUZZ_EXAMPLES=50 pytest tests/fuzz`` for a
  long run), no deadline (the bound is ``bounded``'s), no health checks that would stop
  slow or large inputs. At the default budget the examples are derandomized (the same ones
  every run: `make test` stays deterministic, and the coverage checks that every refusal
  reason was reached cannot fail by chance); a scaled-up run draws fresh random examples.
- ``bounded(fn, *args)``: call fn, re-raise what it raises, and fail if the call took longer
  than ``LIMIT_S`` (time.monotonic around the call): the "no hang" property.
- ``mutated(data)``, ``mutated_text(text)``: strategies of 1..4 byte/character edits of a
  valid input: bit flips, "interesting" bytes (CBOR heads of every major type, huge lengths,
  break and indefinite markers), inserts, deletes, duplicated slices, truncation, splices
  with other valid inputs and deep nesting.
- ``colliding_map(n)``: a CBOR map of n bignum keys with one CPython hash (hash flooding).
- ``mutated_tree(doc)``: a strategy of structural edits of a JSON-like document: replace a
  value anywhere with a hostile one (wrong type, huge, negative, deep, empty, long), delete
  or add keys, wrap values in lists.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from protocol import cbor

LIMIT_S = 1.0
SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1") or 1)


def fuzz(n: int):
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=SCALE <= 1,
    )


def bounded(fn, *args, **kwargs):
    # the calling thread's CPU time, not the wall clock: what the input cost the parser, not how
    # busy the machine was (a loaded machine stretches wall time, not this)
    t0 = time.thread_time()
    try:
        return fn(*args, **kwargs)
    finally:
        elapsed = time.thread_time() - t0
        assert elapsed < LIMIT_S, "%s took %.2f s (limit %.1f s)" % (
            getattr(fn, "__name__", fn),
            elapsed,
            LIMIT_S,
        )


# ---------------------------------------------------------------- bytes

# CBOR initial bytes worth trying: every major type's 1/2/4/8-byte heads, indefinite
# starts, break, tags 2/3/17, simple values, floats
INTERESTING = [
    0x00, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1F, 0x20, 0x38, 0x3B, 0x40, 0x58, 0x5B, 0x5F,
    0x60, 0x78, 0x7B, 0x7F, 0x80, 0x84, 0x98, 0x9B, 0x9F, 0xA0, 0xA1, 0xB8, 0xBB, 0xBF, 0xC2,
    0xC3, 0xD1, 0xD8, 0xDB, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFF, 0x7E, 0x81,
]  # fmt: skip
HUGE_HEADS = [
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # bstr of 2**64-1 bytes
    b"\x7a\x7f\xff\xff\xff",  # tstr of 2**31-1 bytes
    b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00",  # array of 2**32 items
    b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff",  # map of 2**64-1 pairs
    b"\xc2\x59\xff\xff",  # bignum of 65535 bytes
    b"\x9f" * 40,  # indefinite arrays nested 40 deep
    b"\xd8\x2a" * 40,  # tags nested 40 deep
    b"\x81" * 40 + b"\x00",  # arrays nested 40 deep
    b"\xa1\x00" * 40 + b"\x00",  # maps nested 40 deep
    b"\x5f" + b"\x41\x00" * 20 + b"\xff",  # an indefinite byte string of 20 chunks
]


@st.composite
def mutated(draw, data: bytes, others: tuple[bytes, ...] = ()) -> bytes:
    """1..4 edits of ``data`` (``others``: valid inputs to splice from)."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        n = len(buf)
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup", "truncate", "huge", "splice"]))
        i = draw(st.integers(0, n)) if n else 0
        if op == "flip" and n:
            buf[min(i, n - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            buf[min(i, n - 1)] = draw(st.sampled_from(INTERESTING) | st.integers(0, 255))
        elif op == "insert":
            buf[i:i] = draw(
                st.binary(min_size=1, max_size=4) | st.sampled_from(INTERESTING).map(lambda b: bytes([b]))
            )
        elif op == "delete" and n:
            j = draw(st.integers(i, min(n, i + 8)))
            del buf[i:j]
        elif op == "dup" and n:
            j = draw(st.integers(i, min(n, i + 16)))
            buf[j:j] = buf[i:j]
        elif op == "truncate":
            del buf[i:]
        elif op == "huge":
            buf[i:i] = draw(st.sampled_from(HUGE_HEADS))
        elif op == "splice" and others:
            other = draw(st.sampled_from(others))
            j = draw(st.integers(0, len(other)))
            buf[i:] = other[j:]
    return bytes(buf)


def colliding_map(n: int) -> bytes:
    """A CBOR map of n bignum keys that all hash alike in CPython (k = 5 + (8 + i) * (2**61 - 1))."""
    mod = (1 << 61) - 1
    out = bytearray()
    cbor._head(out, 5, n)
    for i in range(n):
        k = 5 + (8 + i) * mod  # above 2**64: a bignum of 9 or 10 bytes
        b = k.to_bytes((k.bit_length() + 7) // 8, "big")
        out += b"\xc2"
        cbor._head(out, 2, len(b))
        out += b + b"\x00"
    return bytes(out)


# ---------------------------------------------------------------- text

TOKENS = [
    '"', "'", "[", "]", "{", "}", ",", "=", ":", "\n", "\x00", "\\", "\\u0000", "\\ud800", "#",
    "1e999999999", "-1", "0", "-0", "NaN", "inf", "nan", "1e-999999", "99999999999999999999", "true",
    "null", "[[", "]]", "[[versions]]", "\ufeff", "\r", "T", "Z", "+08:00", "24:00", "9999-12-31",
    "0000-00-00", "2024-02-30", "\u2028", "x" * 300,
]  # fmt: skip


@st.composite
def mutated_text(draw, text: str) -> str:
    """1..4 character-level edits of ``text``: tokens of JSON/TOML/CSV inserted or put in place
    of a span, spans deleted or duplicated, truncation."""
    s = text
    for _ in range(draw(st.integers(1, 4))):
        n = len(s)
        i = draw(st.integers(0, n))
        op = draw(st.sampled_from(["insert", "replace", "delete", "dup", "truncate", "char"]))
        tok = draw(st.sampled_from(TOKENS))
        j = draw(st.integers(i, min(n, i + 12)))
        if op == "insert":
            s = s[:i] + tok + s[i:]
        elif op == "replace":
            s = s[:i] + tok + s[j:]
        elif op == "delete":
            s = s[:i] + s[j:]
        elif op == "dup":
            s = s[:j] + s[i:j] + s[j:]
        elif op == "truncate":
            s = s[:i]
        else:
            s = s[:i] + draw(st.characters()) + s[i:]
    return s


# ---------------------------------------------------------------- documents

HOSTILE = [
    None, True, False, 0, -1, 1, 7, 24, 1439, 1440, 2**31, 2**64, -(2**64), 10**30,
    Decimal("1e999999"), Decimal("-1e-999999"), Decimal("0.0001"), Decimal("NaN"), "", "x", "0", "-5",
    "1e999999999", "00:00", "24:00", "25:61", "2024-02-30", "2024-03-01", "kWh daily", "$/day", "\x00",
    "\ud800", "x" * 1000, [], {}, [[]], [0] * 24, [[0] * 24] * 12, {"rate": 1}, [[[0, 1]]], [[[]]],
]  # fmt: skip


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _copy(doc):
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_copy(v) for v in doc]
    return doc


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated_tree(draw, doc, extra_keys: tuple[str, ...] = ()):
    """1..3 structural edits of a JSON-like ``doc`` (a copy); ``extra_keys``: key names to add."""
    doc = _copy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "wrap", "deep", "grow"]))
        if not path:
            if op == "wrap":
                doc = [doc]
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = _copy(draw(st.sampled_from(HOSTILE)))
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(extra_keys + ("zz", "")))] = _copy(draw(st.sampled_from(HOSTILE)))
        elif op == "add" and isinstance(parent, list):
            parent.insert(key, _copy(draw(st.sampled_from(HOSTILE))))
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "deep":
            v = parent[key]
            for _ in range(draw(st.integers(10, 120))):
                v = [v]
            parent[key] = v
        elif op == "grow" and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key] * draw(st.integers(2, 50))
    return doc
