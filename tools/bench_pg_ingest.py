"""Ingest's reading batches on PostgreSQL, the database's side alone (no broker, no frames):
``Storage.commit_batch`` of batches of readings, by each way headend/ingest/store.py can write
them (``PG_READINGS_BY``): ``copy`` (COPY into the staging table, one statement claiming the
keys and storing the rows: m015) and ``executemany`` (a row at a time through m001's trigger).

Usage: python tools/bench_pg_ingest.py URL [batches] [batch size] [meters] [rounds] [--seen]
(defaults 40 500 1000 2). ``--seen``: each batch also updates its meters' ``last_seen``, as serve
does once a second for every meter it heard from; in a large fleet (a reading every 15 minutes
a meter) that is one meter a reading, which the end-to-end bench (1000 meters sending 100
readings each) does not show. URL: a PostgreSQL database; the run works in a schema of its own,
dropped at the end. Needs $HEADEND_MASTER_KEY (or _FILE); a scratch key is used when neither
is set. The ways alternate, ``rounds`` times each, so a load change on a shared machine falls
on both. Per way: readings/s (wall) and the CPU a reading of the server's backend (from
/proc/<pid>/stat: a server on this host only) and of this client, user + system, and the
1-minute load average. CPU time is the figure to compare on a busy machine.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from headend.db.storage import Storage  # noqa: E402
from headend.ingest import store as ingest_store  # noqa: E402
from headend.ingest.store import IngestBatch  # noqa: E402

WAYS = ("copy", "executemany")
T0 = 1_800_000_000


def backend_cpu(store) -> float | None:
    """User + system seconds of the connection's server process, None if not on this host."""
    pid = store.conn.raw.info.backend_pid
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def readings(first: int, n: int, meters: int) -> list[tuple]:
    """n readings: meter k % meters, its seq and ts rising, a 113-byte frame (the bench's size)."""
    now = time.time()
    return [
        (
            "b%05d" % (k % meters),
            k // meters + 1,
            T0 + 900 * (k // meters),
            now,
            900,
            "[%d,0]" % k,
            "[0,0]",
            "[0,0,0,0]",
            '{"0":230000,"1":5000,"2":1150}',
            None,
            0,
            1,
            b"x" * 113,
        )
        for k in range(first, first + n)
    ]


def commit(store, rows: list[tuple], seen: bool) -> dict:
    batch = IngestBatch()
    batch.readings = rows
    if seen:
        batch.seen = {r[0]: r[3] for r in rows}
    return store.commit_batch(batch)


def main(
    url: str, batches: int = 40, size: int = 500, meters: int = 1000, rounds: int = 2, seen: bool = False
) -> None:
    if not (os.environ.get("HEADEND_MASTER_KEY") or os.environ.get("HEADEND_MASTER_KEY_FILE")):
        os.environ["HEADEND_MASTER_KEY"] = secrets.token_hex(32)
    import psycopg

    schema = "bench_pg_ingest_%s" % secrets.token_hex(4)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute('CREATE SCHEMA "%s"' % schema)
    sep = "&" if "?" in url else "?"
    try:
        with Storage(url + sep + "options=" + urllib.parse.quote("-csearch_path=%s" % schema)) as s:
            for i in range(meters):
                s.add_meter("b%05d" % i, "00" * 32, "$7$x")
            s.insert_readings_batch(readings(10**9, 10, meters))  # the partition, the stage table
            first, out = 0, {}
            for _ in range(rounds):
                for way in WAYS:
                    ingest_store.PG_READINGS_BY = way
                    data = [readings(first + b * size, size, meters) for b in range(batches)]
                    first += batches * size
                    b0, c0, t0 = backend_cpu(s), time.process_time(), time.perf_counter()
                    for rows in data:
                        assert commit(s, rows, seen)["accepted"] == size
                    dt, n = time.perf_counter() - t0, batches * size
                    b1 = backend_cpu(s)
                    out.setdefault(way, []).append(
                        (
                            n / dt,
                            None if b0 is None else (b1 - b0) / n * 1e6,
                            (time.process_time() - c0) / n * 1e6,
                            os.getloadavg()[0],
                        )
                    )
    finally:
        ingest_store.PG_READINGS_BY = "copy"
        with psycopg.connect(url, autocommit=True) as c:
            c.execute('DROP SCHEMA "%s" CASCADE' % schema)
    print(
        "%d batches of %d readings (%d meters) a round, %d rounds%s"
        % (batches, size, meters, rounds, ", last_seen of each batch's meters" if seen else "")
    )
    for way, runs in out.items():
        print(
            "%-12s readings/s %s; server CPU us a reading %s; client %s; load %s"
            % (
                way,
                " ".join("%.0f" % r[0] for r in runs),
                " ".join("-" if r[1] is None else "%.1f" % r[1] for r in runs),
                " ".join("%.1f" % r[2] for r in runs),
                " ".join("%.1f" % r[3] for r in runs),
            )
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--seen"]
    main(args[0], *(int(a) for a in args[1:]), seen="--seen" in sys.argv[1:])
