"""Ingest's reading batches on PostgreSQL, the database's side alone (no broker, no frames):
``Storage.commit_batch`` of batches of readings, by the store's way and by the ways it replaced,
each in a schema of its own, taking turns batch by batch (so a load change on a shared machine
falls on all of them alike), measuring the CPU a reading of the server's backend and of this
client. CPU time is the figure to compare on a busy machine; the wall rate is printed too.

Ways (headend/ingest/store.py, ``_insert_readings_pg``):
  copy          the store's: binary COPY into the staging table, m015's claim with a plain
                insert of the keys first (``_CLAIM_NEW``, ``_CLAIM_FREE`` when one is taken)
  on-conflict   the same, the keys always claimed with ON CONFLICT DO NOTHING (``_CLAIM_FREE``)
  text-copy     the store's claim after a text COPY
  trigger       text COPY and ``INSERT INTO readings ... SELECT`` through m001's per-row trigger
                (the setting not set: what ingest did before m015)
  executemany   ``PG_READINGS_BY = "executemany"``: a row at a time, through the trigger

Usage: python tools/bench_pg_ingest.py URL [batches] [batch size] [meters] [--seen] [--ways a,b]
(defaults 60 150 1000, every way). ``--seen``: each batch also updates its meters'
``last_seen``, as serve does once a second for every meter it heard from; in a large fleet (a
reading every 15 minutes a meter) that is one meter a reading, which the end-to-end bench
(1000 meters sending 100 readings each) does not show. URL: a PostgreSQL database (its server
on this host for the server's CPU: /proc/<pid>/schedstat); the schemas are dropped at the end.
Needs $HEADEND_MASTER_KEY (or _FILE); a scratch key is used when neither is set.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from headend.db.storage import Storage  # noqa: E402
from headend.ingest import store as S  # noqa: E402
from headend.ingest.store import READING_COLUMNS, IngestBatch  # noqa: E402

T0 = 1_800_000_000
_COLS = ", ".join('"%s"' % c for c in READING_COLUMNS)
_TEXT_COPY = S._COPY_STAGE.replace(" (FORMAT BINARY)", "")
_THROUGH_TRIGGER = "INSERT INTO readings (%s) SELECT %s FROM reading_stage ORDER BY ord" % (_COLS, _COLS)


def _stage_text(conn, rows):
    conn.copy_rows(_TEXT_COPY, ((i, *r) for i, r in enumerate(rows)))


def _on_conflict(self, rows):
    self.conn.execute(S._BEFORE_CLAIM)
    S._copy_stage(self.conn, rows)
    self.conn.execute("SAVEPOINT " + S._SAVEPOINT)
    n = self.conn.execute(S._CLAIM_FREE).rowcount
    self.conn.execute(S._AFTER_CLAIM)
    return n


def _text_copy(self, rows):
    self.conn.execute(S._BEFORE_CLAIM)
    _stage_text(self.conn, rows)
    self.conn.execute("SAVEPOINT " + S._SAVEPOINT)
    try:
        n = self.conn.execute(S._CLAIM_NEW).rowcount
    except sqlite3.IntegrityError:
        self.conn.execute("ROLLBACK TO SAVEPOINT " + S._SAVEPOINT)
        n = self.conn.execute(S._CLAIM_FREE).rowcount
    self.conn.execute(S._AFTER_CLAIM)
    return n


def _trigger(self, rows):
    self.conn.execute(S._STAGE)
    _stage_text(self.conn, rows)
    n = self.conn.execute(_THROUGH_TRIGGER).rowcount
    self.conn.execute("DELETE FROM reading_stage")
    return n


def _executemany(self, rows):
    return self.conn.executemany(S._INSERT_READING_PG, rows).rowcount


WAYS = {
    "copy": S.IngestStoreMixin._insert_readings_pg,
    "on-conflict": _on_conflict,
    "text-copy": _text_copy,
    "trigger": _trigger,
    "executemany": _executemany,
}


def backend_cpu(store) -> float | None:
    """Seconds on a CPU of the connection's server process (/proc/<pid>/schedstat, in ns: the
    clock ticks of /proc/<pid>/stat are 10 ms, too coarse for one batch), None if it is not on
    this host."""
    pid = store.conn.raw.info.backend_pid
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except OSError:
        return None


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


def main(url: str, batches: int, size: int, meters: int, seen: bool, ways: list[str]) -> None:
    if not (os.environ.get("HEADEND_MASTER_KEY") or os.environ.get("HEADEND_MASTER_KEY_FILE")):
        os.environ["HEADEND_MASTER_KEY"] = secrets.token_hex(32)
    import psycopg

    tag = secrets.token_hex(3)
    sep = "&" if "?" in url else "?"
    stores, totals = {}, {w: [0.0, 0.0, 0.0] for w in ways}  # server s, client s, wall s
    store_way = S.IngestStoreMixin._insert_readings_pg
    try:
        for w in ways:
            schema = "bench_pg_ingest_%s_%s" % (tag, w.replace("-", "_"))
            with psycopg.connect(url, autocommit=True) as c:
                c.execute('CREATE SCHEMA "%s"' % schema)
            s = stores[w] = Storage(url + sep + "options=" + urllib.parse.quote("-csearch_path=%s" % schema))
            s.bench_schema = schema
            for i in range(meters):
                s.add_meter("b%05d" % i, "00" * 32, "$7$x")
            S.IngestStoreMixin._insert_readings_pg = WAYS[w]
            commit(s, readings(10**9, 10, meters), seen)  # the partition, the stage table
        load = [os.getloadavg()[0]]
        for b in range(batches):
            rows = readings(b * size, size, meters)
            for w, s in stores.items():
                S.IngestStoreMixin._insert_readings_pg = WAYS[w]
                b0, c0, t0 = backend_cpu(s), time.process_time(), time.perf_counter()
                assert commit(s, rows, seen)["accepted"] == size
                t = totals[w]
                t[2] += time.perf_counter() - t0
                t[1] += time.process_time() - c0
                t[0] += (backend_cpu(s) - b0) if b0 is not None else float("nan")
        load.append(os.getloadavg()[0])
    finally:
        S.IngestStoreMixin._insert_readings_pg = store_way
        for s in stores.values():
            s.close()
            with psycopg.connect(url, autocommit=True) as c:
                c.execute('DROP SCHEMA "%s" CASCADE' % s.bench_schema)
    n = batches * size
    print(
        "%d batches of %d readings from %d meters a way, the ways in turn%s; load %.1f-%.1f"
        % (batches, size, meters, ", last_seen of each batch's meters" if seen else "", min(load), max(load))
    )
    for w, (server, client, wall) in totals.items():
        print(
            "%-12s server CPU %5.1f us a reading, client %5.1f us; %6.0f readings/s"
            % (w, server / n * 1e6, client / n * 1e6, n / wall)
        )


if __name__ == "__main__":
    argv = sys.argv[1:]
    ways = list(WAYS)
    if "--ways" in argv:
        i = argv.index("--ways")
        ways = argv[i + 1].split(",")
        del argv[i : i + 2]
    seen = "--seen" in argv
    argv = [a for a in argv if a != "--seen"]
    nums = [int(a) for a in argv[1:]] + [60, 150, 1000][len(argv) - 1 :]
    main(argv[0], *nums[:3], seen=seen, ways=ways)
