"""Differential tests: ``headend bill-profile`` against NREL PySAM ``Utilityrate5``.

Generated (seeded) tariffs and load profiles where the two semantics coincide
(../shared/REFERENCES.md): SAM's year is 8760 h (or 35040 quarter hours) starting on a
Monday with no holidays, here 2018; its TOU + tier rule tiers the month's total and
prorates each period's tier kWh by its share, so our tariffs say ``tier_mode = "prorate"``;
its tiers share their bounds across periods; no generation, so no net metering.

Each case is written both ways: the URDB JSON record goes through the URDB importer, and
(every other case) an equivalent native TOML tariff (month seasons, weekday/weekend day
profiles from the 12x24 tables, a non-zero utc_offset) goes through the meter's calendar.

Compared per month, to the cent: energy, fixed and demand line items against SAM's own
lines rounded half-up; the total against the sum of SAM's lines so rounded (our bill's
total is the sum of its rounded lines). Where a minimum charge applies SAM's bill is the
minimum itself, so there the total is compared with SAM's total rounded.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal

import PySAM.Utilityrate5 as ur  # a dev dependency: the differential tests must run, never skip
import pytest

from headend.billing import cli_profile as cli_billing

CENT = Decimal("0.01")
YEAR_DAYS = 365
INF = 1e38
SEEDS = range(14)


def _dec(rng: random.Random, lo: float, hi: float, places: int) -> Decimal:
    return Decimal(str(round(rng.uniform(lo, hi), places)))


def _schedule(rng: random.Random, nper: int) -> list[list[int]]:
    """12x24 0-based periods in runs of a few hours, as real TOU tables are."""
    rows = []
    for _ in range(12):
        row, p = [], rng.randrange(nper)
        for _h in range(24):
            if rng.random() < 0.25:
                p = rng.randrange(nper)
            row.append(p)
        rows.append(row)
    return rows


def _demand_tiers(rng: random.Random, bounds: list[Decimal]) -> list[dict]:
    n = len(bounds) + 1
    return [
        {"rate": str(_dec(rng, 1, 15, 4)), **({"max": str(bounds[k])} if k < n - 1 else {})} for k in range(n)
    ]


def _bounds(rng: random.Random) -> list[Decimal]:
    """Demand tier bounds, kW; SAM wants the same bounds in every period of a month."""
    return sorted({_dec(rng, 1, 4, 2) for _ in range(rng.randint(0, 1))})


def generate(seed: int) -> dict:
    """A URDB record plus the flags and load of one case."""
    rng = random.Random(seed)
    nper, ntier = rng.randint(1, 4), rng.randint(1, 3)
    bounds = sorted(rng.sample(range(150, 900), ntier - 1))
    rec = {
        "name": "generated %d" % seed,
        "energyratestructure": [
            [
                {"rate": str(_dec(rng, 0.05, 0.4, 5)), **({"max": bounds[k]} if k < ntier - 1 else {})}
                for k in range(ntier)
            ]
            for _ in range(nper)
        ],
        "energyweekdayschedule": _schedule(rng, nper),
        "energyweekendschedule": _schedule(rng, nper),
    }
    native = seed % 2 == 0
    if rng.random() < 0.7:
        rec["fixedchargefirstmeter"] = str(_dec(rng, 0, 20, 2))
        rec["fixedchargeunits"] = "$/month" if native else rng.choice(["$/month", "$/day", "$/year"])
    if rng.random() < 0.6:  # flat demand, the same tiers in every month in the native form
        rec["flatdemandstructure"] = [_demand_tiers(rng, _bounds(rng)) for _ in range(1 if native else 2)]
        rec["flatdemandmonths"] = [rng.randrange(len(rec["flatdemandstructure"])) for _ in range(12)]
    if rng.random() < 0.6:  # TOU demand; the native form has it on the energy periods
        dper = nper if native else rng.randint(1, 3)
        bounds = _bounds(rng)
        rec["demandratestructure"] = [_demand_tiers(rng, bounds) for _ in range(dper)]
        rec["demandweekdayschedule"] = rec["energyweekdayschedule"] if native else _schedule(rng, dper)
        rec["demandweekendschedule"] = rec["energyweekendschedule"] if native else _schedule(rng, dper)
    quarter = seed % 5 == 3
    steps = YEAR_DAYS * 24 * (4 if quarter else 1)
    kw = []
    for i in range(steps):
        hour = (i // 4 if quarter else i) % 24
        base = 0.3 + (0.9 if 17 <= hour <= 21 else 0.0) + (0.4 if 7 <= hour <= 9 else 0.0)
        kw.append(round(base * rng.uniform(0.3, 1.7) * (1 + (i // (steps // 12)) % 3 * 0.2), 3))
    mins = rng.random()
    if mins < 0.3:
        rec["mincharge"], rec["minchargeunits"] = str(_dec(rng, 60, 140, 2)), "$/month"
    elif mins < 0.45:
        rec["mincharge"], rec["minchargeunits"] = str(_dec(rng, 900, 2000, 2)), "$/year"
    return {"rec": rec, "kw": kw, "quarter": quarter, "native": native, "offset": rng.choice([0, 480, -300])}


def native_toml(case: dict) -> str:
    """The case's tariff in the native format (prorate tiers, seasons per month)."""
    rec = case["rec"]
    ers = rec["energyratestructure"]
    names = ["p%d" % p for p in range(len(ers))]
    days: list[list] = []
    weeks: list[list[int]] = []
    seasons = []

    def day_index(row):
        prof = [[h * 60, names[p]] for h, p in enumerate(row) if h == 0 or row[h - 1] != p]
        if prof not in days:
            days.append(prof)
        return days.index(prof)

    for m in range(12):
        wd, we = day_index(rec["energyweekdayschedule"][m]), day_index(rec["energyweekendschedule"][m])
        week = [wd] * 5 + [we] * 2
        if week not in weeks:
            weeks.append(week)
        seasons.append([m + 1, 1, weeks.index(week)])
    bounds = [t["max"] for t in ers[0] if "max" in t]
    out = [
        'format = "open-ami-tariff"',
        'name = "native %s"' % rec["name"],
        "utc_offset = %d" % case["offset"],
        'tier_mode = "prorate"',
        "periods = %s" % json.dumps(names),
        "[calendar]",
        "day_profiles = %s" % json.dumps(days),
        "week_profiles = %s" % json.dumps(weeks),
        "seasons = %s" % json.dumps(seasons),
        "[tiers]",
        "max_kwh = %s" % json.dumps(bounds),
        "[energy]",
    ]
    out += ["%s = [%s]" % (n, ", ".join(t["rate"] for t in ers[p])) for p, n in enumerate(names)]
    if "fixedchargefirstmeter" in rec:
        out += ["[fixed]", "monthly = %s" % rec["fixedchargefirstmeter"]]
    if "mincharge" in rec:
        key = "annual" if rec["minchargeunits"] == "$/year" else "monthly"
        out += ["[minimum]", "%s = %s" % (key, rec["mincharge"])]

    def tiers(ts):
        return "[%s]" % ", ".join(
            "{rate = %s%s}" % (t["rate"], (", max_kw = %s" % t["max"]) if "max" in t else "") for t in ts
        )

    if "flatdemandstructure" in rec or "demandratestructure" in rec:
        out.append("[demand]")
    if "flatdemandstructure" in rec:
        out.append("monthly = %s" % tiers(rec["flatdemandstructure"][0]))
    if "demandratestructure" in rec:
        out.append("[demand.periods]")
        out += ["%s = %s" % (n, tiers(rec["demandratestructure"][p])) for p, n in enumerate(names)]
    return "\n".join(out) + "\n"


def profile_csv(case: dict) -> str:
    step = 15 if case["quarter"] else 60
    hours = Decimal(step) / 60
    lines = ["timestamp,kwh"]
    for i, kw in enumerate(case["kw"]):
        minute = i * step
        day, minute = divmod(minute, 1440)
        y, m, d = _civil(day)
        lines.append(
            "%04d-%02d-%02dT%02d:%02d,%s" % (y, m, d, minute // 60, minute % 60, Decimal(str(kw)) * hours)
        )
    return "\n".join(lines) + "\n"


def _civil(day: int) -> tuple[int, int, int]:
    from datetime import date, timedelta

    t = date(2018, 1, 1) + timedelta(days=day)
    return t.year, t.month, t.day


def _mat_rows(structure, first):
    return [
        [first(p), k + 1, float(t.get("max", INF)) if k < len(ts) - 1 else INF, float(Decimal(t["rate"]))]
        for p, ts in enumerate(structure)
        for k, t in enumerate(ts)
    ]


def run_sam(case: dict) -> dict:
    rec = case["rec"]
    m = ur.new()
    m.Lifetime.analysis_period = 1
    m.Lifetime.system_use_lifetime_output = 0
    m.Lifetime.inflation_rate = 0
    m.SystemOutput.gen = [0.0] * len(case["kw"])  # no system: every kWh is bought
    m.SystemOutput.degradation = [0]
    m.Load.load = case["kw"]
    m.Load.load_escalation = [0]
    e = m.ElectricityRates
    e.rate_escalation = [0]
    e.en_electricity_rates = 1
    e.ur_metering_option = 0
    e.ur_sell_eq_buy = 0
    e.ur_nm_yearend_sell_rate = 0
    e.ur_nm_credit_month = 0
    e.ur_nm_credit_rollover = 0
    e.ur_en_ts_buy_rate = 0
    e.ur_en_ts_sell_rate = 0
    e.ur_enable_billing_demand = 0
    e.TOU_demand_single_peak = 0
    e.ur_ec_tou_mat = [r[:3] + [0, r[3], 0] for r in _mat_rows(rec["energyratestructure"], lambda p: p + 1)]
    e.ur_ec_sched_weekday = [[p + 1 for p in row] for row in rec["energyweekdayschedule"]]
    e.ur_ec_sched_weekend = [[p + 1 for p in row] for row in rec["energyweekendschedule"]]
    fixed = float(Decimal(rec.get("fixedchargefirstmeter", "0")))
    unit = rec.get("fixedchargeunits", "$/month")
    e.ur_monthly_fixed_charge = (
        fixed * 365 / 12 if unit == "$/day" else fixed / 12 if unit == "$/year" else fixed
    )
    minimum = float(Decimal(rec.get("mincharge", "0")))
    annual = rec.get("minchargeunits") == "$/year"
    e.ur_monthly_min_charge = 0 if annual else minimum
    e.ur_annual_min_charge = minimum if annual else 0
    has_flat, has_tou = "flatdemandstructure" in rec, "demandratestructure" in rec
    e.ur_dc_enable = 1 if has_flat or has_tou else 0
    if has_flat or has_tou:
        flat = [[mo, 1, INF, 0.0] for mo in range(12)]
        if has_flat:
            fds = rec["flatdemandstructure"]
            flat = [
                [mo] + r[1:]
                for mo in range(12)
                for r in _mat_rows([fds[rec["flatdemandmonths"][mo]]], lambda p: 0)
            ]
        e.ur_dc_flat_mat = flat
        if has_tou:
            e.ur_dc_tou_mat = _mat_rows(rec["demandratestructure"], lambda p: p + 1)
            e.ur_dc_sched_weekday = [[p + 1 for p in row] for row in rec["demandweekdayschedule"]]
            e.ur_dc_sched_weekend = [[p + 1 for p in row] for row in rec["demandweekendschedule"]]
        else:
            e.ur_dc_tou_mat = [[1, 1, INF, 0.0]]
            e.ur_dc_sched_weekday = e.ur_dc_sched_weekend = [[1] * 24] * 12
    m.execute(0)
    return m.Outputs.export()  # read while the model is alive


def _cents(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(CENT, ROUND_HALF_UP)


def _near_tie(x: float) -> bool:
    """True when a float is within 1e-6 of a half cent, where float noise can flip rounding."""
    frac = abs(Decimal(repr(x)) * 100) % 1
    return abs(frac - Decimal("0.5")) < Decimal("1e-4")


def bill_with_cli(tmp_path, case: dict, capsys) -> dict:
    if case["native"]:
        tariff = tmp_path / "tariff.toml"
        tariff.write_text(native_toml(case))
    else:
        tariff = tmp_path / "tariff.json"
        tariff.write_text(json.dumps(case["rec"]))
    profile = tmp_path / "load.csv"
    profile.write_text(profile_csv(case))
    argv = ["bill-profile", "--tariff", str(tariff), "--profile", str(profile), "--json"]
    if not case["native"] and case["offset"]:
        argv += ["--utc-offset", str(case["offset"])]
    assert cli_billing.main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("seed", SEEDS)
def test_bill_profile_matches_pysam_to_the_cent(tmp_path, capsys, seed):
    case = generate(seed)
    sam = run_sam(case)
    ours = bill_with_cli(tmp_path, case, capsys)["months"]
    assert [m["month"] for m in ours] == ["2018-%02d" % k for k in range(1, 13)]
    lines = {
        "energy_charge": sam["year1_monthly_ec_charge_without_system"],
        "fixed_charge": sam["year1_monthly_fixed_without_system"],
        "demand_charge": [
            a + b
            for a, b in zip(
                sam["year1_monthly_dc_fixed_without_system"],
                sam["year1_monthly_dc_tou_without_system"],
                strict=True,
            )
        ],
    }
    for k, month in enumerate(ours):
        # energy_kwh is printed to 3 decimals; quarter-hour kWh have 5, so compare within 0.0005
        assert abs(Decimal(month["energy_kwh"]) - Decimal(repr(sam["year1_monthly_load"][k]))) <= Decimal(
            "0.0005000001"
        ), month["month"]
        for name, values in lines.items():
            if not _near_tie(values[k]):
                assert Decimal(month[name]) == _cents(values[k]), (month["month"], name, values[k])
        sam_total = sam["year1_monthly_utility_bill_wo_sys"][k]
        if sam["year1_monthly_minimum_without_system"][k] > 1e-9:
            assert Decimal(month["total"]) == _cents(sam_total), (
                month["month"],
                "total (minimum)",
                sam_total,
            )
        else:
            assert Decimal(month["total"]) == sum(_cents(v[k]) for v in lines.values()), month["month"]
            assert abs(Decimal(month["total"]) - Decimal(repr(sam_total))) <= Decimal("0.015")
    assert sum(Decimal(m["total"]) for m in ours) > 0


def test_generated_cases_cover_every_feature():
    cases = [generate(s) for s in SEEDS]
    recs = [c["rec"] for c in cases]
    assert any(len(r["energyratestructure"]) > 1 and len(r["energyratestructure"][0]) > 1 for r in recs)
    assert any("flatdemandstructure" in r for r in recs) and any("demandratestructure" in r for r in recs)
    assert {r.get("minchargeunits") for r in recs} >= {"$/month", "$/year"}
    assert {r.get("fixedchargeunits") for r in recs} >= {"$/month", "$/day", "$/year"}
    assert any(c["quarter"] for c in cases) and any(c["native"] for c in cases)
    assert any(c["native"] and c["offset"] for c in cases)


def test_bill_profile_subprocess_matches_pysam(tmp_path):
    """The contract through a real process: ``python -m headend.billing.cli_profile bill-profile``."""
    case = generate(1)
    (tmp_path / "t.json").write_text(json.dumps(case["rec"]))
    (tmp_path / "p.csv").write_text(profile_csv(case))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "headend.billing.cli_profile",
            "bill-profile",
            "--tariff",
            str(tmp_path / "t.json"),
            "--profile",
            str(tmp_path / "p.csv"),
            "--json",
            "--utc-offset",
            str(case["offset"]),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    months = json.loads(out.stdout)["months"]
    sam = run_sam(case)["year1_monthly_ec_charge_without_system"]
    assert [Decimal(m["energy_charge"]) for m in months] == [_cents(x) for x in sam]
    assert all(isinstance(m[k], str) for m in months for k in ("energy_kwh", "energy_charge", "total"))
