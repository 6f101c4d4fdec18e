"""``headend tariff compare``: a fleet's stored load profiles for a year under several tariffs."""

import json
from decimal import Decimal

import pytest

from headend import cli as headend_cli
from headend.billing import parse_tariff
from headend.billing.compare import compare, quantiles
from headend.billing.engine import bill_intervals
from headend.db.storage import Storage
from tests.headend.billrun_support import FEB, LADDER, MAR, TOU, add_account, hourly, tariff_id, tou_rates


@pytest.fixture
def fleet(tmp_path):
    """Three accounts with February 2024 hourly profiles on the TOU tariff, one without data."""
    db = str(tmp_path / "h.db")
    with Storage(db) as s:
        add_account(s, "a-day", tariff=TOU)
        hourly(s, "m-a-day", lambda ts: [900, 0] if 8 <= ts % 86400 // 3600 < 20 else [0, 100])
        add_account(s, "b-night", tariff=TOU)
        hourly(s, "m-b-night", lambda ts: [100, 0] if 8 <= ts % 86400 // 3600 < 20 else [0, 900])
        add_account(s, "c-flat", tariff=TOU)
        hourly(s, "m-c-flat", tou_rates)
        add_account(s, "d-none", tariff=TOU)
    (tmp_path / "ladder.toml").write_text(LADDER)
    return db, tmp_path


def run(capsys, *argv):
    code = headend_cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def expected_total(text: str, wh_of) -> Decimal:
    ts = list(range(FEB, MAR, 3600))
    wh = [sum(wh_of(t)) for t in ts]
    bill = bill_intervals(parse_tariff(text), 3600, ts, wh, 3)
    return sum((m.total for m in bill.months), Decimal(0))


def test_compare_json_per_account_and_fleet(fleet, capsys):
    db, tmp = fleet
    code, out, _ = run(
        capsys,
        *("--db", db, "tariff", "compare", "--tariff", tariff_id(TOU), "--tariff", str(tmp / "ladder.toml")),
        *("--year", "2024", "--json", "--plot", str(tmp / "changes.svg")),
    )
    assert code == 0
    got = json.loads(out)
    by = {a["account_id"]: [Decimal(x) for x in a["totals"]] for a in got["accounts"]}
    assert set(by) == {"a-day", "b-night", "c-flat"}
    assert got["skipped"] == [{"account_id": "d-none", "reason": "no load profile in the year"}]
    # the same engine on the same intervals: day-heavy pays the TOU peak price (0.5) or the ladder's
    day = lambda ts: [900, 0] if 8 <= ts % 86400 // 3600 < 20 else [0, 100]  # noqa: E731
    assert by["a-day"] == [expected_total(TOU, day), expected_total(LADDER, day)]
    assert by["c-flat"] == [expected_total(TOU, tou_rates), expected_total(LADDER, tou_rates)]
    fleet_ = got["fleet"]
    revenue = [sum(v[i] for v in by.values()) for i in (0, 1)]
    assert fleet_["revenue"] == [str(r) for r in revenue]
    assert Decimal(fleet_["revenue_neutral_factor"][1]) == (revenue[0] / revenue[1]).quantize(
        Decimal("0.000001")
    )
    (vs,) = fleet_["versus_first"]
    change = {a: v[1] - v[0] for a, v in by.items()}
    assert (vs["less"], vs["more"]) == (
        sum(d < 0 for d in change.values()),
        sum(d > 0 for d in change.values()),
    )
    assert vs["change"]["p0"] == str(min(change.values())) and vs["change"]["p100"] == str(
        max(change.values())
    )
    svg = (tmp / "changes.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == 1 + 24 and "Ladder against TOU" in svg


def test_compare_text_and_refusals(fleet, capsys, tmp_path):
    db, tmp = fleet
    (tmp / "ids.txt").write_text("a-day\n# a comment\nc-flat\n")
    code, out, _ = run(
        capsys,
        *("--db", db, "tariff", "compare", "--tariff", tariff_id(TOU), "--tariff", str(tmp / "ladder.toml")),
        *("--year", "2024", "--accounts", str(tmp / "ids.txt")),
    )
    assert code == 0
    assert out.splitlines()[0] == "year 2024: 2 accounts billed under every tariff, 0 skipped"
    assert "Ladder against TOU:" in out
    code, _, err = run(
        capsys, "--db", db, "tariff", "compare", "--tariff", "nope", "--tariff", "x", "--year", "2024"
    )
    assert code == 1 and "'nope' is neither a file nor a stored tariff id" in err
    code, _, err = run(
        capsys,
        *("--db", db, "tariff", "compare", "--tariff", tariff_id(TOU), "--tariff", tariff_id(TOU)),
        *("--year", "2024", "--plot", "out.png"),
    )
    assert code == 1 and "--plot writes SVG" in err


def test_same_tariff_twice_changes_nothing_and_quantiles_are_nearest_rank():
    t = parse_tariff(TOU)
    ts = list(range(FEB, MAR, 3600))
    profiles = [("x%d" % k, 3600, ts, [k * 10 + (i % 7) for i in range(len(ts))]) for k in range(5)]
    got = compare([t, t], profiles, 2024)
    vs = got["fleet"]["versus_first"][0]
    assert (vs["less"], vs["more"], vs["same"]) == (0, 0, 5)
    assert got["fleet"]["revenue_neutral_factor"] == ["1.000000", "1.000000"]
    assert quantiles([5, 1, 3, 2, 4]) == {
        "p0": 1,
        "p10": 1,
        "p25": 2,
        "p50": 3,
        "p75": 4,
        "p90": 5,
        "p100": 5,
    }


def test_many_accounts_are_read_and_billed_in_worker_processes(fleet, capsys, monkeypatch):
    """From PARALLEL_MIN accounts on, chunks of accounts go to one process per CPU, each on its
    own connection: the same JSON as in one process, accounts in their order."""
    from headend.billing import cli_compare

    db, tmp = fleet
    argv = ("--db", db, "tariff", "compare", "--tariff", tariff_id(TOU), "--tariff", str(tmp / "ladder.toml"))
    code, alone, _ = run(capsys, *argv, "--year", "2024", "--json")
    assert code == 0
    calls = []
    real = cli_compare.bill_stored

    def spy(*a, **k):
        calls.append(k.get("workers"))
        return real(*a, **{**k, "workers": 2})

    monkeypatch.setattr(cli_compare, "CHUNK", 1)
    monkeypatch.setattr(cli_compare, "bill_stored", spy)
    code, parallel, _ = run(capsys, *argv, "--year", "2024", "--json")
    assert code == 0 and calls == [None]
    assert json.loads(parallel) == json.loads(alone)
    assert [a["account_id"] for a in json.loads(parallel)["accounts"]] == ["a-day", "b-night", "c-flat"]
