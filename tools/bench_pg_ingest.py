"""COPY + one INSERT ... SELECT vs executemany for ingest's reading batches on PostgreSQL
(headend/ingest/store.py PG_READINGS_BY). Usage: python tools/bench_pg_ingest.py URL_OF_AN_EMPTY_DB
[batches] [batch size]. Needs $HEADEND_MASTER_KEY (or _FILE)."""

import sys
import time

from headend.db.storage import Storage
from headend.ingest import store as ingest_store


def main(url, batches=40, size=500):
    out = {}
    with Storage(url) as s:
        for i in range(20):
            s.add_meter("b%02d" % i, "00" * 32, "$7$x")
        base = 0
        for how in ("executemany", "copy", "executemany", "copy"):
            ingest_store.PG_READINGS_BY = how
            t0 = time.perf_counter()
            for b in range(batches):
                rows = [
                    (
                        "b%02d" % (k % 20),
                        base + k,
                        1_800_000_000 + base + k,
                        time.time(),
                        900,
                        "[1,2]",
                        "[0,0]",
                        "[0,0,0,0]",
                        None,
                        None,
                        0,
                        1,
                        b"x" * 60,
                    )
                    for k in range(b * size, (b + 1) * size)
                ]
                s.insert_readings_batch(rows)
            dt = time.perf_counter() - t0
            base += batches * size
            out.setdefault(how, []).append(batches * size / dt)
    for how, rates in out.items():
        print("%-12s %s readings/s" % (how, " ".join("%.0f" % r for r in rates)))


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
