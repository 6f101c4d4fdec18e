"""Benchmark: tariff comparison, 100,000 account-years under 2 tariffs (``headend tariff compare``'s
engine).

    .venv/bin/python tools/bench_compare.py [--accounts 100000] [--workers N] [--db-accounts 200]

The comparison: each account's year of hourly data (2024, 8,784 intervals) billed under the bill
run benchmark's TOU tariff (peak 08-20, fixed charge) and its 3-tier ladder with
``headend.billing.compare.bill_accounts`` (``engine.bill_intervals``: monthly bills, annual
totals), in ``--workers`` processes (default one per CPU), then ``summarize`` (revenue,
revenue-neutral factor, who pays less or more, quantiles). The profiles come from a pool of
``--pool`` generated years (a daily shape, seasons, noise; account i has profile i mod pool):
generated before the clock starts, so the time is the billing and the fleet figures. Target:
100,000 account-years in 60 s or less.

``--db-accounts M`` also times the storage path on a SQLite file of M accounts with that hourly
year in ``load_profile`` (``read_profiles``: per account its resolution and points), the part
of ``headend tariff compare`` that reads, reported per account-year. Merges ``tariff_compare``
into bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import random
import resource
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headend.billing import parse_tariff  # noqa: E402
from headend.billing.compare import bill_accounts, read_profiles, summarize  # noqa: E402
from tools.bench_billrun import LADDER, TOU  # noqa: E402

TARGET_S = 60
YEAR = 2024
START = 1704067200  # 2024-01-01 UTC
TS = list(range(START, START + 366 * 86400, 3600))
SHAPE = [3, 2, 2, 2, 2, 3, 6, 9, 8, 6, 5, 5, 5, 5, 5, 6, 7, 10, 12, 12, 10, 8, 6, 4]  # x 50 Wh
CHUNK = 500

_POOL: list[list[int]] = []
_TARIFFS: list = []


def profile(seed: int) -> list[int]:
    rng = random.Random(seed)
    scale = rng.uniform(0.3, 3.0)
    evening = rng.uniform(0.5, 2.0)  # some accounts use more at the peak, some less
    out = []
    for i in range(len(TS)):
        hour, day = i % 24, i // 24
        season = 1.3 if day < 60 or day > 330 else (1.15 if 170 < day < 240 else 1.0)
        f = evening if 8 <= hour < 20 else 1.0
        out.append(int(SHAPE[hour] * 50 * scale * season * f * rng.uniform(0.6, 1.4)))
    return out


def _chunk(bounds: tuple[int, int]):
    a, b = bounds
    n = len(_POOL)
    return bill_accounts(_TARIFFS, (("acc%06d" % i, 3600, TS, _POOL[i % n]) for i in range(a, b)), YEAR)


def run(accounts: int, workers: int, pool: int) -> dict:
    t0 = time.time()
    _POOL[:] = [profile(k) for k in range(pool)]
    _TARIFFS[:] = [parse_tariff(TOU, name="TOU"), parse_tariff(LADDER, name="Ladder")]
    bill_accounts(_TARIFFS, [("warm", 3600, TS, _POOL[0])], YEAR)  # calendar layouts, before the fork
    gen = time.time() - t0
    chunks = [(a, min(accounts, a + CHUNK)) for a in range(0, accounts, CHUNK)]
    load = os.getloadavg()[0]
    t0, c0 = time.time(), time.process_time()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    billed, skipped = [], []
    if workers <= 1:
        parts = map(_chunk, chunks)
    else:
        ctx = multiprocessing.get_context("fork")  # the pool and the warmed layouts, shared
        pool_ = ctx.Pool(workers)
        parts = pool_.imap(_chunk, chunks)
    for acc, sk in parts:
        billed += acc
        skipped += sk
    result = summarize(_TARIFFS, YEAR, billed, skipped)
    seconds = time.time() - t0
    if workers > 1:
        pool_.close()
        pool_.join()
    k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - c0 + (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)
    f = result["fleet"]
    return {
        "accounts": accounts,
        "tariffs": 2,
        "intervals_per_year": len(TS),
        "workers": workers,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "account_years_per_s": round(accounts / seconds),
        "cpu_ms_per_account_year": round(cpu * 1000 / accounts, 3),
        "generate_s": round(gen, 1),
        "loadavg_before": round(load, 2),
        "revenue": f["revenue"],
        "revenue_neutral_factor": f["revenue_neutral_factor"],
        "less_more_same": [f["versus_first"][0][k] for k in ("less", "more", "same")],
        "skipped": f["skipped"],
    }


def db_path_run(n: int) -> dict:
    """Seconds per account-year of ``read_profiles`` on a SQLite file of ``n`` hourly accounts."""
    from headend.db.storage import Storage

    tmp = tempfile.mkdtemp(prefix="bench_compare_")
    path = os.path.join(tmp, "h.db")
    try:
        with Storage(path) as s:
            s.add_tariff("t-tou", "TOU", TOU, now=0)
            for k in range(n):
                s.add_meter("m%05d" % k, "00", "$7$x", now=0)
                s.add_account(
                    {"account_id": "a%05d" % k, "zone": "Z", "zone_kind": "regular", "billing": "postpaid",
                     "tariff_id": "t-tou"}, "m%05d" % k, 0,
                )  # fmt: skip
            with s.db.atomic():
                for k in range(n):
                    wh = profile(k)
                    s.conn.executemany(
                        "INSERT INTO load_profile (meter_id, interval_start, interval_s, rate, wh_imp,"
                        " wh_exp, source) VALUES (?, ?, 3600, 1, ?, 0, 'real')",
                        [("m%05d" % k, t, w) for t, w in zip(TS, wh, strict=True)],
                    )
            ids = ["a%05d" % k for k in range(n)]
            t0 = time.time()
            got = sum(1 for _ in read_profiles(s, ids, START, START + 366 * 86400))
            seconds = time.time() - t0
        assert got == n
        return {
            "accounts": n,
            "seconds": round(seconds, 2),
            "ms_per_account_year": round(seconds * 1000 / n, 2),
        }
    finally:
        for f in os.listdir(tmp):
            os.remove(os.path.join(tmp, f))
        os.rmdir(tmp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--pool", type=int, default=500)
    ap.add_argument("--db-accounts", type=int, default=200, help="0: skip the storage path")
    args = ap.parse_args()
    r = run(args.accounts, args.workers, args.pool)
    r["target_s"] = TARGET_S
    r["met"] = r["seconds"] <= TARGET_S if args.accounts >= 100_000 else None
    if args.db_accounts:
        r["read_profiles"] = db_path_run(args.db_accounts)
    verdict = {True: "met", False: "ABOVE", None: "n/a"}[r["met"]]
    print(
        "%d account-years x 2 tariffs in %.1f s with %d worker(s) (target <= %d s: %s)"
        % (r["accounts"], r["seconds"], r["workers"], TARGET_S, verdict)
    )
    print(
        "CPU: %.3f ms per account-year under both tariffs (workers and parent)" % r["cpu_ms_per_account_year"]
    )
    print(
        "revenue %s, factor %s, less/more/same %s"
        % (r["revenue"], r["revenue_neutral_factor"], r["less_more_same"])
    )
    if "read_profiles" in r:
        rp = r["read_profiles"]
        print(
            "storage: read_profiles %.2f ms per account-year (%d accounts)"
            % (rp["ms_per_account_year"], rp["accounts"])
        )
    print("load average before: %.1f on %d CPUs" % (r["loadavg_before"], os.cpu_count()))
    results = ROOT / "bench" / "results.json"
    results.parent.mkdir(exist_ok=True)
    data = json.loads(results.read_text()) if results.exists() else {}
    data["tariff_compare"] = r
    results.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
