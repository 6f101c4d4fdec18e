"""headend.ingest.fast.row: a body read by a known layout gives reading_row's row or None.

The sweep: every byte of real bodies set to every value, each result read by the layouts learnt
so far (and then learnt from, when reading_row accepts it): the layout path's row is exactly
reading_row's, or None. The same sweep with one of the layout's value checks removed finds a
body it reads wrongly, so each check is needed and the sweep would see it missing."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headend.ingest import fast
from protocol import cbor
from protocol import messages as M

T0 = 1_700_000_100


def bench_reading(seq):  # tools/bench_ingest.py's reading
    return M.reading(
        seq, T0 + 900 * seq, 900, [seq * 100, seq * 10, seq, 0], [0, 0, 0, 0], [seq, 0, 0, 0],
        inst={"urms_mv": 230000, "irms_ma": 1500, "p_w": 340}, flags=0, tariff=1,
    )  # fmt: skip


BODIES = {
    "bench seq 1": cbor.dumps(bench_reading(1)),
    "bench seq 300": cbor.dumps(bench_reading(300)),
    "signed values": cbor.dumps(
        M.reading(
            70000,
            T0,
            900,
            [2**32, 2**16 - 1],
            [5, 2**40],
            [0, 23, 24, 255],
            inst={"urms_mv": 0, "p_w": -25, "q_var": -1, "pf_milli": -999, "freq_mhz": 50000},
            balance=-(2**33),
            flags=31,
            tariff=7,
        )
    ),
    "pf 1000, balance -24, empty-ish": cbor.dumps(
        M.reading(2**40, 2**33, 1, [1], [0], [0, 0, 0, 0], inst={"pf_milli": 1000}, balance=-24)
    ),
    "no inst, no tariff": cbor.dumps(M.reading(23, 0, 24, [256], [65536], [1, 2, 3, 4], flags=24)),
    "empty inst": cbor.dumps({**M.reading(5, 900, 900, [1], [1], [1, 1, 1, 1]), 7: {}}),
}


def expected(body, meter_id="m", received_at=1.5, frame=b"frame"):
    r = fast.reading_row(body)
    return None if r is None else (meter_id, r[0], r[1], received_at, *r[2:], frame)


def sweep(body) -> tuple[int, list]:
    """Every single-byte change of ``body``: (how many the layouts read, the ones read wrongly)."""
    fast.clear_layouts()
    assert fast.row(body, "m", 1.5, b"frame") == expected(body)  # learnt
    assert fast.by_layout(body, "m", 1.5, b"frame") == expected(body) is not None
    read, wrong = 0, []
    for pos in range(len(body)):
        for value in range(256):
            b = body[:pos] + bytes((value,)) + body[pos + 1 :]
            got, want = fast.by_layout(b, "m", 1.5, b"frame"), expected(b)
            if got is not None:
                read += 1
                if got != want:
                    wrong.append((pos, value, got, want))
            fast.row(b, "m", 1.5, b"frame")  # learn its layout too, if it is a reading
    return read, wrong


@pytest.mark.parametrize("name", sorted(BODIES))
def test_every_single_byte_change_is_read_as_reading_row_reads_it_or_declined(name):
    read, wrong = sweep(BODIES[name])
    assert wrong == []
    assert read > 256  # the layouts read many of the changed bodies (the values' bytes)
    assert len(fast._lru) <= fast.MAX_LAYOUTS
    assert all(len(same) <= fast.MAX_LAYOUTS_PER_LENGTH for same in fast._layouts.values())


def _learn_without(monkeypatch, **cleared):
    learn = fast._learn

    def learn_without(b):
        lay = learn(b)
        for name, value in cleared.items():
            setattr(lay, name, value)
        return lay

    monkeypatch.setattr(fast, "_learn", learn_without)


def _no_head_byte_checks(monkeypatch):  # values in head bytes, 1- and 2-byte arguments, seq 0
    _learn_without(monkeypatch, bmask=0, bits=0)


def _no_wide_argument_checks(monkeypatch):  # 4- and 8-byte arguments still the shortest
    _learn_without(monkeypatch, lows=[])


def _no_range_checks(monkeypatch):  # inst values in messages.RANGES
    _learn_without(monkeypatch, ranges=[])


def _no_seq_check(monkeypatch):  # seq >= 1 when it is in its head byte
    monkeypatch.setitem(fast._BIT, "seq in head", fast._BIT["uint in head"])


@pytest.mark.parametrize(
    "remove, name",
    [
        (_no_head_byte_checks, "bench seq 1"),
        (_no_wide_argument_checks, "bench seq 1"),  # ts: 4 bytes
        (_no_range_checks, "signed values"),  # pf_milli -999
        (_no_seq_check, "bench seq 1"),
    ],
)
def test_the_sweep_finds_a_wrong_read_when_a_check_is_removed(monkeypatch, remove, name):
    remove(monkeypatch)
    try:
        _read, wrong = sweep(BODIES[name])
    finally:
        fast.clear_layouts()
    assert wrong  # without the check the layout reads some body reading_row refuses
    assert all(w[3] is None for w in wrong)


def test_layouts_are_shared_bounded_and_the_most_recently_used_kept(monkeypatch):
    fast.clear_layouts()
    monkeypatch.setattr(fast, "MAX_LAYOUTS", 4)
    monkeypatch.setattr(fast, "MAX_LAYOUTS_PER_LENGTH", 2)
    # meters of one firmware: one layout for all of them
    for seq in range(3, 24):
        for meter in ("a", "b", "c"):
            assert fast.row(cbor.dumps(bench_reading(seq)), meter, 1.0, b"f") == expected(
                cbor.dumps(bench_reading(seq)), meter, 1.0, b"f"
            )
    assert len(fast._lru) == 1
    # bodies of one length, three shapes: the per-length bound keeps the two used last
    same_length = [
        cbor.dumps(M.reading(1, T0, 900, [300], [0], [0, 0, 0, 0])),  # imp 2-byte, exp in its head
        cbor.dumps(M.reading(1, T0, 900, [0], [300], [0, 0, 0, 0])),
        cbor.dumps(M.reading(1, T0, 900, [30], [30], [0, 0, 0, 0])),
    ]
    assert len({len(b) for b in same_length}) == 1
    for b in same_length:
        assert fast.row(b, "m", 1.0, b"f") == expected(b, "m", 1.0, b"f")
    assert len(fast._layouts[len(same_length[0])]) == 2
    assert fast.by_layout(same_length[0], "m", 1.0, b"f") is None  # the least recently used went
    assert fast.by_layout(same_length[2], "m", 1.0, b"f") == expected(same_length[2], "m", 1.0, b"f")
    # the overall bound: the least recently used layout of any length goes first
    others = [cbor.dumps(M.reading(1, T0, 900, [0] * n, [0] * n, [0, 0, 0, 0])) for n in (2, 3, 4)]
    fast.row(cbor.dumps(bench_reading(5)), "a", 1.0, b"f")  # the bench's layout used again
    for b in others:
        fast.row(b, "m", 1.0, b"f")
    assert len(fast._lru) == 4
    assert fast.by_layout(cbor.dumps(bench_reading(6)), "a", 1.0, b"f") is not None
    assert fast.by_layout(same_length[1], "m", 1.0, b"f") is None
    fast.clear_layouts()


def test_a_value_of_the_other_sign_in_the_same_place_is_a_layout_of_its_own():
    # balance 0 (0x00) and -1 (0x20): the same length, the same fixed bytes, another check of
    # the value's head byte; each is read by its own layout once learnt, in either order
    for order in ((0, -1), (-1, 0)):
        fast.clear_layouts()
        bodies = [cbor.dumps(M.reading(3, T0, 900, [1], [0], [0, 0, 0, 0], balance=v)) for v in order]
        assert len({len(b) for b in bodies}) == 1
        for b in bodies + bodies:
            assert fast.row(b, "m", 1.0, b"f") == expected(b, "m", 1.0, b"f") is not None
        for b in bodies:
            assert fast.by_layout(b, "m", 1.0, b"f") == expected(b, "m", 1.0, b"f")
    fast.clear_layouts()


_uint = st.one_of(
    st.integers(0, 30), st.integers(250, 260), st.integers(65530, 65540), st.integers(2**32 - 3, 2**32 + 3),
    st.integers(2**64 - 2, 2**64 - 1), st.integers(0, 2**64 - 1),
)  # fmt: skip
_int = st.one_of(_uint, _uint.map(lambda v: -1 - v))


@st.composite
def readings(draw):
    rates = draw(st.integers(1, M.MAX_RATES))
    inst = draw(
        st.none()
        | st.dictionaries(
            st.sampled_from(M.INST_NAMES),
            st.one_of(_int, st.integers(-1001, 1001)),
            max_size=len(M.INST_NAMES),
        )
    )
    return {
        0: 1,
        1: draw(_uint),
        2: draw(_uint),
        3: draw(_uint),
        4: draw(st.lists(_uint, min_size=rates, max_size=rates)),
        5: draw(st.lists(_uint, min_size=rates, max_size=rates)),
        6: draw(st.lists(_uint, min_size=4, max_size=4)),
        **({} if inst is None else {7: {M.INST_NAMES.index(k): v for k, v in inst.items()}}),
        **{k: draw(_int if k == 8 else _uint) for k in draw(st.sets(st.sampled_from([8, 9, 11])))},
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(readings(), min_size=1, max_size=6))
def test_generated_readings_are_read_as_reading_row_reads_them(maps):
    """Readings of every width and sign of value, every optional field, some refused (seq 0,
    pf out of range, negative registers): each, read twice (learnt, then by its layout), and
    read after the others' layouts were learnt, gives reading_row's row or the same None."""
    bodies = [cbor.dumps(m) for m in maps]
    for b in bodies + bodies:
        assert fast.row(b, "m", 2.5, b"x") == expected(b, "m", 2.5, b"x")
    for b in bodies:
        got = fast.by_layout(b, "m", 2.5, b"x")
        assert got == expected(b, "m", 2.5, b"x") or (got is None and expected(b) is None)
        if expected(b) is not None:
            assert got is not None  # learnt: read by its layout from now on
