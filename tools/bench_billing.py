"""Benchmark: the rate engine against NREL PySAM Utilityrate5 on the same year of 15-minute data.

    .venv/bin/python tools/bench_billing.py [--runs 15]

Three cases, each a URDB record billed by both engines from the same 35,040 quarter-hour kW:
``case3`` is the PySAM differential test's case 3 (tests/headend/test_billing_pysam.py: TOU
energy with tiers, flat and TOU demand), ``tou`` the same record with one price per period and
no demand, ``tiered`` one period with its tiers and no demand. Per account-year, the median of
``--runs`` runs, interleaved (ours, PySAM, ours, ...) so both see the same load:

- ``ms``: our engine, ``headend.billing.engine.bill_intervals`` on the year in integer units
  (the form the bill run and ``headend tariff compare`` give it; the tariff parsed once and its
  calendar layouts cached, as for every account after a fleet's first);
- ``first_ms``: the first account of a tariff (the calendar walked, layouts made);
- ``decimal_ms``: ``bill_profile`` from Decimal kWh points (the CSV path: the conversion to
  integer units included);
- ``pysam_ms``: ``run_sam`` of the differential test (a new Utilityrate5 model, its inputs
  set, executed).

Times are CPU seconds of this process (``time.process_time``): the machine is shared, and CPU
time moves less with other load than wall time; the wall medians are recorded beside them.
Merges ``billing`` into bench/results.json: ``profile_ms``, ``pysam_ms`` and
``ratio_vs_pysam`` (PySAM / ours) are case 3's, each case's figures under ``cases``.
Target: ratio >= 10.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import statistics
import sys
import time
from decimal import Decimal

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headend.billing.engine import bill_intervals, bill_profile, profile_units  # noqa: E402
from headend.billing.profile_csv import Profile  # noqa: E402
from headend.billing.tariff import parse_tariff  # noqa: E402
from tests.headend.test_billing_pysam import generate, run_sam  # noqa: E402

TARGET_RATIO = 10
SEED = 3  # the differential test's quarter-hour case with TOU tiers and demand


def cases() -> dict[str, dict]:
    base = generate(SEED)
    assert base["quarter"], "case 3 is the 15-minute year"
    out = {"case3": base}
    rec = copy.deepcopy(base["rec"])
    for k in list(rec):
        if "demand" in k or k.startswith("min"):
            del rec[k]
    tou = copy.deepcopy(rec)
    tou["energyratestructure"] = [[{"rate": p[0]["rate"]}] for p in rec["energyratestructure"]]
    out["tou"] = {**base, "rec": tou}
    tiered = copy.deepcopy(rec)
    tiered["energyratestructure"] = rec["energyratestructure"][:1]
    tiered["energyweekdayschedule"] = tiered["energyweekendschedule"] = [[0] * 24 for _ in range(12)]
    out["tiered"] = {**base, "rec": tiered}
    return out


def inputs(case: dict):
    """(tariff, interval starts, units, decimals, Decimal points) of one case; 2018-01-01 local."""
    tariff = parse_tariff(json.dumps(case["rec"]), name=case["rec"]["name"], utc_offset=case["offset"])
    t0 = 1514764800 - case["offset"] * 60
    profile = Profile(900, tuple((t0 + i * 900, Decimal(str(kw)) / 4) for i, kw in enumerate(case["kw"])))
    ts, units, d = profile_units(profile.points)
    return tariff, ts, units, d, profile


def clock(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000


def measure(name: str, case: dict, runs: int) -> dict:
    tariff, ts, units, d, profile = inputs(case)
    first = clock(lambda: bill_intervals(tariff, 900, ts, units, d))
    ours, sam, dec = [], [], []
    for _ in range(runs):
        ours.append(clock(lambda: bill_intervals(tariff, 900, ts, units, d)))
        sam.append(clock(lambda: run_sam(case)))
    for _ in range(max(3, runs // 5)):
        dec.append(clock(lambda: bill_profile(tariff, profile)))
    med = {k: statistics.median(x[1] for x in v) for k, v in (("ours", ours), ("sam", sam), ("dec", dec))}
    wall = {k: statistics.median(x[0] for x in v) for k, v in (("ours", ours), ("sam", sam))}
    return {
        "intervals": len(ts),
        "ms": round(med["ours"], 3),
        "first_ms": round(first[1], 2),
        "decimal_ms": round(med["dec"], 2),
        "pysam_ms": round(med["sam"], 2),
        "ratio_vs_pysam": round(med["sam"] / med["ours"], 1),
        "wall_ms": round(wall["ours"], 3),
        "pysam_wall_ms": round(wall["sam"], 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    load = os.getloadavg()[0]
    got = {name: measure(name, case, args.runs) for name, case in cases().items()}
    head = got["case3"]
    result = {
        "profile_ms": head["ms"],
        "pysam_ms": head["pysam_ms"],
        "ratio_vs_pysam": head["ratio_vs_pysam"],
        "target_ratio": TARGET_RATIO,
        "met": head["ratio_vs_pysam"] >= TARGET_RATIO,
        "clock": "process CPU time, median per account-year of %d interleaved runs" % args.runs,
        "cases": got,
        "cpus": os.cpu_count(),
        "loadavg_before": round(load, 2),
    }
    print("%-8s %10s %10s %10s %10s %8s" % ("case", "ours ms", "first ms", "decimal ms", "PySAM ms", "ratio"))
    for name, r in got.items():
        print(
            "%-8s %10.2f %10.1f %10.1f %10.1f %8.1f"
            % (name, r["ms"], r["first_ms"], r["decimal_ms"], r["pysam_ms"], r["ratio_vs_pysam"])
        )
    print(
        "ratio vs PySAM (case 3): %.1f, target >= %d: %s (load average %.1f on %d CPUs)"
        % (head["ratio_vs_pysam"], TARGET_RATIO, "met" if result["met"] else "BELOW", load, os.cpu_count())
    )
    results = ROOT / "bench" / "results.json"
    results.parent.mkdir(exist_ok=True)
    data = json.loads(results.read_text()) if results.exists() else {}
    data["billing"] = result
    results.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
