"""Load profiles of many accounts at once, for ``headend tariff compare``.

``read_profiles(store, account_ids, start, end, batch=200)`` yields ``(account_id, interval_s,
ts, wh)`` for each account in order: its load profile in [start, end) at the first resolution
it has rows for (hourly, 15-minute, daily, as ``headend.billing.usage``), each interval's Wh
summed over its rates and its meters (each meter within its link window, as the bill run reads
them), ``ts`` and ``wh`` numpy int64 arrays in interval order; an account without rows as
``(account_id, 0, empty, empty)``.

One query per batch of accounts and resolution, not one per account (the 15-minute query only
for the accounts without hourly rows, and so on): per account the row count
and the interval starts and Wh of its rows as comma-separated text (``group_concat`` /
``string_agg``), which numpy parses in C (``np.fromstring``) into the arrays the engine's
fleet path sums by slices (``headend.billing.plan``) with no per-interval Python object. The
rows come in the scan's order (SQLite's ``group_concat`` has no ORDER BY before 3.44;
PostgreSQL's ``string_agg(... ORDER BY ...)`` sorted each account's rows and took 14-24 ms per
hourly account-year against 8-9 without): the two texts are of the same rows in the same
order (the aggregates of a group step through its rows together), and the reader sorts by
interval start when they are not already in order, then sums the rows of one interval
(several rates or meters).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from headend.billing.store_sql import PG_IN_IDS, pg_text_array
from headend.db.engine import dialect

RESOLUTIONS = (3600, 900, 86400)  # as headend.billing.usage: hourly first

# The dialects side by side (``headend.db.engine.dialect``), as headend/billing/store_sql.py's:
# SQLite's two-argument max()/min() are PostgreSQL's greatest()/least(); PostgreSQL's takes
# the ids as one array (``PG_IN_IDS``: the same statement text for every batch; with ``= ANY(?)``
# the planner scanned all of account_meters for each batch) and [start, end)
# again on the partition key itself, so that only the year's partitions are read.
PROFILE_TEXT = {
    "sqlite": "SELECT am.account_id, count(*),"
    " group_concat(lp.interval_start), group_concat(lp.wh_imp)"
    " FROM account_meters am JOIN load_profile lp ON lp.meter_id = am.meter_id"
    " AND lp.interval_s = ?"
    " AND lp.interval_start >= max(am.from_ts, ?) AND lp.interval_start < min(coalesce(am.to_ts, ?), ?)"
    " WHERE am.account_id IN (%s) GROUP BY am.account_id",
    "postgresql": "SELECT am.account_id, count(*),"
    " string_agg(CAST(lp.interval_start AS text), ','), string_agg(CAST(lp.wh_imp AS text), ',')"
    " FROM account_meters am JOIN load_profile lp ON lp.meter_id = am.meter_id"
    " AND lp.interval_s = ?"
    " AND lp.interval_start >= greatest(am.from_ts, ?)"
    " AND lp.interval_start < least(coalesce(am.to_ts, ?), ?)"
    " AND lp.interval_start >= ? AND lp.interval_start < ?"
    " WHERE am.account_id" + PG_IN_IDS + " GROUP BY am.account_id",
}

EMPTY = np.zeros(0, dtype=np.int64)
MMAP_SIZE = 1 << 40  # SQLite caps it at its build's maximum (2 GiB by default)


def _query(conn, ids: Sequence[str], interval_s: int, start: int, end: int) -> list[tuple]:
    if dialect(conn) == "postgresql":
        args = (interval_s, start, end, end, start, end, pg_text_array(ids))
        return conn.execute(PROFILE_TEXT["postgresql"], args).fetchall()
    sql = PROFILE_TEXT["sqlite"] % ", ".join("?" * len(ids))
    return conn.execute(sql, (interval_s, start, end, end, *ids)).fetchall()


def parse_ints(text: str | None, count: int) -> np.ndarray:
    """``count`` comma-separated integers as an int64 array (ValueError if they are not)."""
    if not count:
        return EMPTY
    got = np.fromstring(text, dtype=np.int64, sep=",")
    if len(got) != count:
        raise ValueError("expected %d integers, parsed %d" % (count, len(got)))
    return got


def intervals(ts: np.ndarray, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (interval start, Wh) as one total per interval, in interval order."""
    if len(ts) > 1:
        step = np.diff(ts)
        if not (step > 0).all():
            if (step < 0).any():
                order = np.argsort(ts, kind="stable")
                ts, wh = ts[order], wh[order]
            first = np.flatnonzero(np.concatenate(([True], ts[1:] != ts[:-1])))
            ts, wh = ts[first], np.add.reduceat(wh, first)
    return ts, wh


def read_profiles(store, account_ids: Sequence[str], start: int, end: int, batch: int = 200) -> Iterator:
    """See the module doc."""
    conn = store.conn
    if dialect(conn) == "postgresql":
        yield from _read(conn, account_ids, start, end, batch)
        return
    # SQLite: the file memory-mapped while it reads (the connection's own setting restored after).
    # The ingest writes an hour of every meter at a time, so one meter's rows lie on pages of
    # their own hour; mapped, the pages are read without a system call and a copy each:
    # 22 -> 10-14 ms CPU per hourly account-year written so (tools/bench_compare.py).
    before = conn.execute("PRAGMA mmap_size").fetchone()[0]
    conn.execute("PRAGMA mmap_size = %d" % MMAP_SIZE)
    try:
        yield from _read(conn, account_ids, start, end, batch)
    finally:
        conn.execute("PRAGMA mmap_size = %d" % before)


def _read(conn, account_ids: Sequence[str], start: int, end: int, batch: int) -> Iterator:
    for k in range(0, len(account_ids), batch):
        ids = list(account_ids[k : k + batch])
        found: dict[str, tuple] = {}
        todo = list(dict.fromkeys(ids))
        for iv in RESOLUTIONS:  # the next resolution only for the accounts without rows yet
            if not todo:
                break
            for account_id, count, ts_text, wh_text in _query(conn, todo, iv, start, end):
                found[account_id] = (iv, count, ts_text, wh_text)
            todo = [a for a in todo if a not in found]
        for a in ids:
            got = found.get(a)
            if got is None:
                yield a, 0, EMPTY, EMPTY
                continue
            iv, count, ts_text, wh_text = got
            ts, wh = intervals(parse_ints(ts_text, count), parse_ints(wh_text, count))
            yield a, iv, ts, wh
