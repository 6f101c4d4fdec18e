"""`make bench`: every benchmark, one after the other; figures beside their targets.

Runs tools/bench_firmware.py, tools/bench_ingest.py, tools/bench_billrun.py (SQLite, and PostgreSQL
with 2 processes sharing the run) and
tools/bench_billing.py (those present), each of which prints its own table and merges its figures
into bench/results.json; then prints the summary table from that file.
Benchmarks never run inside the test suite: timing on a shared machine is
noisy, so figures are reported here with the machine noted, not asserted.

    .venv/bin/python tools/bench.py [--only firmware,ingest,billrun] [--quick]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
PG_SERVER = os.environ.get("OPENAMI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SUITES = {
    "firmware": ["tools/bench_firmware.py"],
    "ingest": ["tools/bench_ingest.py"],
    "ingest_privacy": ["tools/bench_ingest.py"],  # every meter COSE_Encrypt0, beside the plain figure
    "ingest_postgresql": ["tools/bench_ingest.py"],
    "billrun": ["tools/bench_billrun.py"],
    "billrun_postgresql": ["tools/bench_billrun.py"],  # 2 bill-run processes sharing a run
    "billing": ["tools/bench_billing.py"],
    "compare": ["tools/bench_compare.py"],
}
# suites run more than once, with these arguments each time (ingest into PostgreSQL: 1 and 2 serve
# processes, a database of their own on PG_SERVER for each run)
PASSES = {
    "ingest_privacy": [["--privacy"]],
    "ingest_postgresql": [["--postgresql", PG_SERVER, "--workers", str(n)] for n in (1, 2)],
    "billrun_postgresql": [["--postgresql", PG_SERVER, "--processes", "2"]],
}
QUICK = {  # smaller runs for a first look (make bench uses the full sizes)
    "ingest": ["--meters", "200", "--per-meter", "50", "--runs", "1"],
    "ingest_privacy": ["--meters", "200", "--per-meter", "50", "--runs", "1"],
    "ingest_postgresql": ["--meters", "200", "--per-meter", "50", "--runs", "1"],
    "billrun": ["--accounts", "100000", "--repeat", "1"],
    "billrun_postgresql": ["--quick"],
    "billing": ["--runs", "5"],
    "compare": ["--accounts", "10000", "--db-accounts", "50"],
}


def summary_rows(results):
    """(suite, figure, value, target, verdict) for the headline figures of each suite."""
    rows = []
    ing = results.get("ingest")
    if ing:
        rows.append(("ingest", "authenticated readings/s end to end", ing["readings_per_s"],
                     ">= %d" % ing["target_readings_per_s"], "met" if ing["met"] else "BELOW"))  # fmt: skip
        if ing.get("ratio_to_broker") is not None:
            rows.append(("ingest", "broker ceiling, msgs/s (mosquitto_sub -q 1)", ing["broker_ceiling_per_s"],
                         "", ""))  # fmt: skip
            rows.append(("ingest", "ratio to the broker's ceiling", ing["ratio_to_broker"],
                         ">= %s (goal %s)" % (ing["target_ratio_to_broker"], ing["goal_ratio_to_broker"]),
                         "met" if ing["ratio_met"] else "BELOW"))  # fmt: skip
        rows.append(("ingest", "readings lost", ing["lost"], "0", "met" if ing["lost"] == 0 else "LOST"))
        rows.append(("ingest", "head-end peak RSS, MiB", ing["headend_peak_rss_mib"], "", ""))
    priv = results.get("ingest_privacy")
    if priv:
        ratio = priv.get("ratio_to_plain")
        rows.append(
            ("ingest", "readings/s, every meter COSE_Encrypt0 (--privacy)", priv["readings_per_s"], "", "")
        )
        rows.append(("ingest", "  privacy / plain readings/s", ratio, ">= 0.8",
                     "" if ratio is None else "met" if ratio >= 0.8 else "BELOW"))  # fmt: skip
    for key, pg in sorted(results.get("ingest_postgresql", {}).items()):
        n = key.split("_")[-1]
        target = pg["target_readings_per_s"]
        rows.append(("ingest", "readings/s into PostgreSQL, %s serve process(es)" % n, pg["readings_per_s"],
                     ">= %d" % target if target else "",
                     "" if target is None else "met" if pg["met"] else "BELOW"))  # fmt: skip
        if pg.get("ratio_to_broker") is not None:
            rows.append(("ingest", "  ratio to the broker's ceiling (%s msgs/s)" % pg["broker_ceiling_per_s"],
                         pg["ratio_to_broker"], "", ""))  # fmt: skip
        rows.append(("ingest", "  readings lost", pg["lost"], "0", "met" if pg["lost"] == 0 else "LOST"))
    bill = results.get("billrun")
    if bill:
        verdict = {True: "met", False: "ABOVE", None: "n/a (smaller run)"}[bill["meets_target"]]
        name = "bill run, %d accounts, s" % bill["accounts"]
        rows.append(("billrun", name, bill["seconds_median"], "< %d" % bill["target_s"], verdict))
        rows.append(("billrun", "peak RSS, MiB", bill["peak_rss_mib"], "", ""))
    pgb = results.get("billrun_postgresql")
    if pgb:
        verdict = {True: "met", False: "ABOVE", None: "n/a (smaller run)"}[pgb["meets_target"]]
        name = "bill run on PostgreSQL, %d accounts, %d processes, s" % (pgb["accounts"], pgb["processes"])
        rows.append(("billrun", name, pgb["seconds_median"], "<= %d" % pgb["target_s"], verdict))
        rows.append(("billrun", "  every bill once", pgb["exactly_once"], "True",
                     "met" if pgb["exactly_once"] else "DOUBLED/LOST"))  # fmt: skip
        for side, who in (("client", "bill-run processes"), ("server", "PostgreSQL")):
            us = pgb.get(side + "_cpu_us_per_account")
            if us is not None:
                rows.append(("billrun", "  CPU us an account, " + who, us, "", ""))
    eng = results.get("billing")
    if eng:
        rows.append(("billing", "rate engine, ms per account-year (case 3)", eng["profile_ms"], "", ""))
        rows.append(("billing", "PySAM Utilityrate5, ms (same inputs)", eng["pysam_ms"], "", ""))
        rows.append(("billing", "ratio vs PySAM", eng["ratio_vs_pysam"], ">= %d" % eng["target_ratio"],
                     "met" if eng["met"] else "BELOW"))  # fmt: skip
    cmp_ = results.get("tariff_compare")
    if cmp_:
        verdict = {True: "met", False: "ABOVE", None: "n/a (smaller run)"}[cmp_["met"]]
        name = "tariff compare, %d account-years x 2 tariffs, s" % cmp_["accounts"]
        rows.append(("compare", name, cmp_["seconds"], "<= %d" % cmp_["target_s"], verdict))
    for fig in results.get("firmware", {}).get("figures", []):
        rows.append(("firmware", fig["name"], fig["value"], fig.get("target", ""), fig.get("verdict", "")))
    return rows


def _pg_answers(url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
        return True
    except Exception:
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated suites: " + ", ".join(SUITES))
    parser.add_argument("--quick", action="store_true", help="smaller workloads (not the targets' sizes)")
    args = parser.parse_args(argv)
    wanted = args.only.split(",") if args.only else list(SUITES)
    failed = []
    for name in wanted:
        script = ROOT / SUITES[name][0]
        if not script.exists():
            print("== %s: %s not present, skipped" % (name, script.name))
            continue
        if name in ("ingest_postgresql", "billrun_postgresql") and not _pg_answers(PG_SERVER):
            print("== %s: no PostgreSQL at %s ($OPENAMI_BENCH_PG), skipped" % (name, PG_SERVER))
            continue
        for extra in PASSES.get(name, [[]]):
            cmd = [sys.executable, str(script)] + extra + (QUICK.get(name, []) if args.quick else [])
            shown = [os.path.relpath(c, ROOT) if c.startswith("/") else c for c in cmd]
            print("== %s: %s" % (name, " ".join(shown)))
            sys.stdout.flush()
            t0 = time.monotonic()
            rc = subprocess.call(cmd, cwd=ROOT)
            print("== %s finished in %.0f s (exit %d)\n" % (name, time.monotonic() - t0, rc))
            if rc != 0 and name not in failed:
                failed.append(name)
    if RESULTS.exists():
        results = json.loads(RESULTS.read_text())
        rows = summary_rows(results)
        if rows:
            print("%-9s %-52s %14s %22s  %s" % ("suite", "figure", "value", "target", ""))
            for suite, name, value, target, verdict in rows:
                print("%-9s %-52s %14s %22s  %s" % (suite, name, value, target, verdict))
        print("\nfigures written to %s" % os.path.relpath(RESULTS, ROOT))
    if failed:
        print("benchmark(s) failed to run: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
