"""Write protocol/vectors/cbor_rfc8949.json from RFC 8949 Appendices A and F.

The values are transcribed from the RFC; values JSON cannot carry are written
with markers that tests/dual/test_cbor.py turns back into Python objects:
{"$bytes": hex}, {"$tag": [n, value]}, {"$float": "inf"|"-inf"|"nan"|"-0.0"},
{"$undefined": 0}, {"$simple": n}, {"$map": [[key, value], ...]}.

Run: python tools/gen_cbor_vectors.py
"""

import json
import pathlib

B = lambda h: {"$bytes": h}  # noqa: E731
T = lambda n, v: {"$tag": [n, v]}  # noqa: E731
F = lambda s: {"$float": s}  # noqa: E731
L125 = [1, [2, 3], [4, 5]]
L25 = list(range(1, 26))

# fmt: off
# (hex, value, roundtrip) -- RFC 8949 Appendix A, in the RFC's order
APPENDIX_A = [
    ("00", 0, True), ("01", 1, True), ("0a", 10, True), ("17", 23, True), ("1818", 24, True),
    ("1819", 25, True), ("1864", 100, True), ("1903e8", 1000, True), ("1a000f4240", 1000000, True),
    ("1b000000e8d4a51000", 1000000000000, True), ("1bffffffffffffffff", 18446744073709551615, True),
    ("c249010000000000000000", 18446744073709551616, True),
    ("3bffffffffffffffff", -18446744073709551616, True),
    ("c349010000000000000000", -18446744073709551617, True),
    ("20", -1, True), ("29", -10, True), ("3863", -100, True), ("3903e7", -1000, True),
    ("f90000", 0.0, True), ("f98000", F("-0.0"), True), ("f93c00", 1.0, True),
    ("fb3ff199999999999a", 1.1, True), ("f93e00", 1.5, True), ("f97bff", 65504.0, True),
    ("fa47c35000", 100000.0, True), ("fa7f7fffff", 3.4028234663852886e38, True),
    ("fb7e37e43c8800759c", 1.0e300, True), ("f90001", 5.960464477539063e-08, True),
    ("f90400", 6.103515625e-05, True), ("f9c400", -4.0, True), ("fbc010666666666666", -4.1, True),
    ("f97c00", F("inf"), True), ("f97e00", F("nan"), True), ("f9fc00", F("-inf"), True),
    ("fa7f800000", F("inf"), False), ("fa7fc00000", F("nan"), False), ("faff800000", F("-inf"), False),
    ("fb7ff0000000000000", F("inf"), False), ("fb7ff8000000000000", F("nan"), False),
    ("fbfff0000000000000", F("-inf"), False),
    ("f4", False, True), ("f5", True, True), ("f6", None, True), ("f7", {"$undefined": 0}, True),
    ("f0", {"$simple": 16}, True), ("f8ff", {"$simple": 255}, True),
    ("c074323031332d30332d32315432303a30343a30305a", T(0, "2013-03-21T20:04:00Z"), True),
    ("c11a514b67b0", T(1, 1363896240), True), ("c1fb41d452d9ec200000", T(1, 1363896240.5), True),
    ("d74401020304", T(23, B("01020304")), True), ("d818456449455446", T(24, B("6449455446")), True),
    ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", T(32, "http://www.example.com"), True),
    ("40", B(""), True), ("4401020304", B("01020304"), True),
    ("60", "", True), ("6161", "a", True), ("6449455446", "IETF", True), ("62225c", '"\\', True),
    ("62c3bc", "\u00fc", True), ("63e6b0b4", "\u6c34", True), ("64f0908591", "\U00010151", True),
    ("80", [], True), ("83010203", [1, 2, 3], True), ("8301820203820405", L125, True),
    ("98190102030405060708090a0b0c0d0e0f101112131415161718181819", L25, True),
    ("a0", {}, True), ("a201020304", {"$map": [[1, 2], [3, 4]]}, True),
    ("a26161016162820203", {"a": 1, "b": [2, 3]}, True), ("826161a161626163", ["a", {"b": "c"}], True),
    ("a56161614161626142616361436164614461656145", {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, True),
    ("5f42010243030405ff", B("0102030405"), False), ("7f657374726561646d696e67ff", "streaming", False),
    ("9fff", [], False), ("9f018202039f0405ffff", L125, False), ("9f01820203820405ff", L125, False),
    ("83018202039f0405ff", L125, False), ("83019f0203ff820405", L125, False),
    ("9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", L25, False),
    ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}, False),
    ("826161bf61626163ff", ["a", {"b": "c"}], False),
    ("bf6346756ef563416d7421ff", {"Fun": True, "Amt": -2}, False),
]
# RFC 7049 listed simple(24) as "f818"; RFC 8949 §3.3 makes 0xf8 followed by
# a value below 32 not well-formed, so it is among the malformed items below.

# Not well-formed items: RFC 8949 Appendix F.1, then this codec's own limits.
MALFORMED = [
    # F.1 end of input in a head
    "18", "19", "1a", "1b", "1901", "1a0102", "1b01020304050607", "38", "58", "78", "98",
    "9a01ff00", "b8", "d8", "f8", "f900", "fa0000", "fb000000",
    # F.1 definite-length strings with short data
    "41", "61", "5affffffff00", "5bffffffffffffffff010203", "7affffffff00", "7b7fffffffffffffff010203",
    # F.1 definite-length maps and arrays not closed with enough items
    "81", "818181818181818181", "8200", "a1", "a20102", "a100", "a2000000",
    # F.1 tag number not followed by tag content
    "c0",
    # F.1 indefinite-length strings not closed by a break
    "5f4100", "7f6100",
    # F.1 indefinite-length maps and arrays not closed by a break
    "9f", "9f0102", "bf", "bf01020102", "819f", "9f8000", "9f9f9f9f9fffffffff", "9f819f819f9fffffff",
    # F.1 reserved additional information values
    "1c", "1d", "1e", "3c", "3d", "3e", "5c", "5d", "5e", "7c", "7d", "7e", "9c", "9d", "9e",
    "bc", "bd", "be", "dc", "dd", "de", "fc", "fd", "fe",
    # F.1 reserved two-byte encodings of simple values
    "f800", "f801", "f818", "f81f",
    # F.1 indefinite-length string chunks not of the correct type or definite
    "5f00ff", "5f21ff", "5f6100ff", "5f80ff", "5fa0ff", "5fc000ff", "5fe0ff", "7f4100ff",
    "5f5f4100ffff", "7f7f6100ffff",
    # F.1 break occurring on its own outside of an indefinite-length item
    "ff",
    # F.1 break occurring in a definite-length array or map or a tag
    "81ff", "8200ff", "a1ff", "a1ff00", "a100ff", "a20000ff", "9f81ff", "9f829f819f9fffffffff",
    # F.1 break in an indefinite-length map that would lead to an odd number of items
    "bf00ff", "bf000000ff",
    # F.1 major type 0, 1, 6 with additional information 31
    "1f", "3f", "df",
    # this codec: trailing bytes, invalid UTF-8, duplicate and unhashable keys,
    # 17 nested arrays (MAX_DEPTH is 16), a bignum tag around a non-byte-string, empty input
    "0000", "61ff", "62c328", "a201000100", "a18000", "81" * 17 + "00", "c200", "",
]
# fmt: on

out = {
    "source": "RFC 8949 Appendix A (examples) and Appendix F.1 (not well-formed)",
    "examples": [{"hex": h, "value": v, "roundtrip": r} for h, v, r in APPENDIX_A],
    "malformed": MALFORMED,
}
path = pathlib.Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "cbor_rfc8949.json"
path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
print("wrote", path, len(APPENDIX_A), "examples,", len(MALFORMED), "malformed")
