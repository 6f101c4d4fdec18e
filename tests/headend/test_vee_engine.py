"""The VEE engine over the storage interface: states, results, estimates, edits, audit,
idempotency (also as hypothesis properties), and one run against the real SQLite storage."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headend.errors import VeeError
from headend.vee.config import VeeConfig
from headend.vee.edit import edit_interval
from headend.vee.engine import run_vee
from tests.headend.vee_fakes import FakeVeeStore, reading, series

T0 = 1704067200  # 2024-01-01 00:00 UTC
M = "m1"


def store_with(rows, **meter):
    s = FakeVeeStore()
    s.add_meter(M, **meter)
    s.add_readings(M, rows)
    return s


def profile(s, res=900):
    return [(r["interval_start"] - T0, r["wh_imp"], r["source"]) for r in s.profile(M, res) if r["rate"] == 1]


def test_states_results_and_summary():
    # 00:00 1000, 00:15 1010, 00:30 1005 (decrease: fail), 00:45 1020, 01:00 1030
    s = store_with(series(T0, [1000, 1010, 1005, 1020, 1030]))
    out = run_vee(s, M, T0 + 3600)
    assert [s.state(M, q) for q in range(1, 6)] == ["valid", "valid", "estimated", "valid", "valid"]
    assert out["states"] == {"valid": 4, "suspect": 0, "failed": 0, "estimated": 1, "edited": 0}
    assert out["rules"]["registers_monotonic"] == {"warn": 0, "fail": 1}
    # seq 3 out of the series: 00:15 1010 -> 00:45 1020 is a 30-minute gap, 10 Wh linear -> 5 + 5
    assert profile(s) == [(0, 10, "real"), (900, 5, "estimated"), (1800, 5, "estimated"), (2700, 10, "real")]
    assert profile(s, 3600) == [(0, 30, "estimated")]
    [res] = s.vee_results(M)
    assert (res["ts"], res["rule"], res["seq"], res["outcome"]) == (
        T0 + 1800,
        "registers_monotonic",
        3,
        "fail",
    )
    assert out["estimates"] == {"total": 2, "created": 2, "updated": 0, "replaced": 0}
    assert s.writes_outside_transaction == 0


def test_second_run_writes_nothing_new():
    s = store_with(series(T0, [1000, 1010, 1005, 1020, 1030]) + [reading(9, T0 + 9000, 1100)])
    run_vee(s, M, T0 + 9000)
    before = s.snapshot()
    again = run_vee(s, M, T0 + 9000)
    assert s.snapshot() == before
    assert again["audit_entries"] == 0 and again["results_written"] == 0
    # estimates: 2 slots around the failed seq 3, and 01:00 -> 02:30 = 5400 s = 6 slots: 8
    assert again["estimates"] == {"total": 8, "created": 0, "updated": 0, "replaced": 0}


def test_late_data_replaces_estimates():
    # 00:00 1000 ... 01:00 1040 with 00:15-00:45 missing: 40 Wh linear -> 10 each
    s = store_with([reading(1, T0, 1000), reading(5, T0 + 3600, 1040)])
    run_vee(s, M, T0 + 3600)
    assert profile(s) == [(k, 10, "estimated") for k in (0, 900, 1800, 2700)]
    assert s.state(M, 5) == "suspect"  # the gap warning
    # the backlog arrives: 1005, 1020, 1030 -> real 5, 15, 10, 10
    s.add_readings(M, [reading(2, T0 + 900, 1005), reading(3, T0 + 1800, 1020), reading(4, T0 + 2700, 1030)])
    out = run_vee(s, M, T0 + 3600)
    assert profile(s) == [(0, 5, "real"), (900, 15, "real"), (1800, 10, "real"), (2700, 10, "real")]
    assert out["estimates"]["replaced"] == 4 and s.estimates(M, include_replaced=False) == []
    assert all(e["replaced_by_real"] for e in s.estimates(M))  # kept, flagged
    replaced = [a for a in s.audit(M) if a["reason"] == "replaced by real data"]
    assert [(a["target"], a["old"]["imp"], a["new"]["imp"]) for a in replaced][0] == (
        "estimate/%d-%d" % (T0, T0 + 900), [10], [5])  # fmt: skip
    # the gap result of seq 5 now passes, recorded as such; seq 5 is valid again (audited)
    assert [r["outcome"] for r in s.vee_results(M) if r["rule"] == "gap"] == ["pass"]
    assert s.state(M, 5) == "valid"
    assert [(a["old"], a["new"]) for a in s.audit(M) if a["target"] == "reading/5"] == [
        ("pending", "suspect"), ("suspect", "valid")]  # fmt: skip


def test_operator_edit_with_audit_trail():
    s = store_with(series(T0, [1000, 1010, 1025, 1045, 1070]))
    run_vee(s, M, T0 + 3600)
    out = edit_interval(s, M, T0 + 1800, [5], reason="meter test current", user="alice", now=T0 + 7200)
    assert out["old"] == {"imp": [15], "exp": [0], "source": "real"} and out["new"] == {
        "imp": [5],
        "exp": [0],
    }
    [edit] = [a for a in s.audit(M) if a["target"].startswith("interval/")]
    assert edit["target"] == "interval/%d-%d" % (T0 + 900, T0 + 1800)
    assert (edit["old"]["imp"], edit["new"]["imp"], edit["reason"], edit["user"], edit["at"]) == (
        [15], [5], "meter test current", "alice", T0 + 7200)  # fmt: skip
    assert profile(s)[1] == (900, 5, "edited") and profile(s, 3600) == [(0, 60, "edited")]
    assert s.state(M, 3) == "edited"
    # a later run keeps the edit and adds nothing
    before = s.snapshot()
    run_vee(s, M, T0 + 7200)
    assert s.snapshot() == before
    # a second edit of the same slot: old is the first edit's value
    out = edit_interval(s, M, T0 + 1800, [7], reason="recheck", user="bob", now=T0 + 7300)
    assert (
        out["old"]["imp"] == [5] and out["old"]["source"] == "edited" and profile(s)[1] == (900, 7, "edited")
    )


@pytest.mark.parametrize(
    "args, field",
    [
        ((T0 + 1800, [5]), "reason"),  # reason "" below
        ((T0 + 1800, [5, 1]), "imp"),  # 2 values for 1 rate
        ((T0 + 1800, [-1]), "imp"),
        ((T0 + 1700, [5]), "ts"),  # not an interval end
        ((T0 + 90000, [5]), "ts"),  # no such interval
    ],
)
def test_edit_errors_name_the_field(args, field):
    s = store_with(series(T0, [1000, 1010, 1025]))
    reason = "" if field == "reason" else "why"
    with pytest.raises(VeeError) as e:
        edit_interval(s, M, *args, reason=reason, user="alice", now=T0 + 3600)
    assert e.value.field == field
    assert s.audit(M) == []


def test_unknown_meter_and_rollback():
    with pytest.raises(VeeError, match="unknown meter"):
        run_vee(FakeVeeStore(), "nope", T0)

    class Failing(FakeVeeStore):
        def replace_load_profile(self, *a):
            raise OSError("disk full")

    s = Failing()
    s.add_meter(M)
    s.add_readings(M, [reading(1, T0, 0), reading(2, T0 + 3600, 40)])
    before = s.snapshot()
    with pytest.raises(OSError):
        run_vee(s, M, T0 + 3600)
    assert s.snapshot() == before  # nothing half-written


# ---------------------------------------------------------------- real SQLite storage


def test_against_the_real_sqlite_storage(tmp_path):
    from headend.db.storage import Storage
    from headend.ingest.store import READING_COLUMNS

    db = Storage(str(tmp_path / "headend.db"))
    db.add_meter(M, "00" * 32, "$7$hash", rating={"imax_ma": 60_000, "un_mv": 230_000})

    def row(r):
        r = {**r, "meter_id": M, "imp": json.dumps(r["imp"]), "exp": json.dumps(r["exp"]),
             "q": json.dumps(r["q"]), "inst": None, "tariff": None, "raw": b"frame%d" % r["seq"]}  # fmt: skip
        return tuple(r[c] for c in READING_COLUMNS)

    # 00:00 0, 00:15 10, gap, 01:00 40 (30 Wh over 3 slots -> 10 each), 01:15 5000: 4960 Wh in 900 s
    # = 19840 W > 60 A x 230 V x 120 % = 16560 W: impossible power, failed (no like day to estimate
    # its slot from, so it stays "failed" and the 01:00-01:15 slot is absent)
    rows = [
        reading(1, T0, 0),
        reading(2, T0 + 900, 10),
        reading(3, T0 + 3600, 40),
        reading(4, T0 + 4500, 5000),
    ]
    db.insert_readings_batch([row(r) for r in rows])
    out = run_vee(db, M, T0 + 4500)
    assert out["states"] == {"valid": 2, "suspect": 1, "failed": 1, "estimated": 0, "edited": 0}
    states = {r["seq"]: r["vee_state"] for r in db.readings(M)}
    assert states == {1: "valid", 2: "valid", 3: "suspect", 4: "failed"}
    lp = [(r["interval_start"] - T0, r["wh_imp"], r["source"]) for r in db.load_profile(M, 900)]
    assert lp == [(0, 10, "real"), (900, 10, "estimated"), (1800, 10, "estimated"), (2700, 10, "estimated")]
    n_audit = len(db.audit(M))
    again = run_vee(db, M, T0 + 4500)
    assert again["audit_entries"] == 0 and len(db.audit(M)) == n_audit
    assert [r["outcome"] for r in db.vee_results(M)] == ["warn", "fail"]
    db.close()


# ---------------------------------------------------------------- properties


@st.composite
def meter_data(draw):
    n = draw(st.integers(4, 120))
    start = draw(st.sampled_from([0, 10**9 - 3000]))  # sometimes roll over
    uses = draw(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 9)), min_size=n, max_size=n))
    keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    keep[0] = keep[-1] = True
    rows, regs = [], [start, 5]
    for i, (a, b) in enumerate(uses):
        rows.append(reading(i + 1, T0 + i * 900, [regs[0] % 10**9, regs[1]]))
        regs = [regs[0] + a, regs[1] + b]
    return [r for r, k in zip(rows, keep, strict=True) if k], [
        r for r, k in zip(rows, keep, strict=True) if not k
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meter_data())
def test_properties_idempotent_no_overwrite_sums_match(data):
    present, missing = data
    cfg = VeeConfig(linear_max_span_s=3600)
    s = store_with(present)
    now = present[-1]["ts"]
    run_vee(s, M, now, cfg)
    snap = s.snapshot()
    assert run_vee(s, M, now, cfg)["audit_entries"] == 0
    assert s.snapshot() == snap  # idempotent

    # estimates never overwrite real data: no estimate slot ends where two readings 15 min apart measure it
    ts = {r["ts"] for r in present}
    measured_ends = {t for t in ts if t - 900 in ts}
    assert not measured_ends & {e["interval_end"] for e in s.estimates(M, include_replaced=False)}

    # profile sums equal register deltas (mod the 10**9 Wh modulus), per rate, 15-minute and hourly alike
    first, last = present[0], present[-1]
    for rate in (1, 2):
        quarter = sum(r["wh_imp"] for r in s.profile(M, 900) if r["rate"] == rate)
        assert quarter == (last["imp"][rate - 1] - first["imp"][rate - 1]) % 10**9
        hours = {r["interval_start"] for r in s.profile(M, 3600)}
        in_hours = sum(r["wh_imp"] for r in s.profile(M, 900) if r["rate"] == rate
                       and r["interval_start"] - (r["interval_start"] - T0) % 3600 in hours)  # fmt: skip
        assert in_hours == sum(r["wh_imp"] for r in s.profile(M, 3600) if r["rate"] == rate)

    # the missing readings arrive: every estimate is replaced, the profile is all real
    s.add_readings(M, missing)
    run_vee(s, M, now, cfg)
    assert s.estimates(M, include_replaced=False) == []
    assert {r["source"] for r in s.profile(M, 900)} <= {"real"}
