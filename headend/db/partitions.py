"""Monthly range partitions of the big tables on PostgreSQL (docs/scaling.md).

``PARTITIONED``: table -> the integer epoch-seconds column it is partitioned on (UTC months).
A partition is ``<table>_pYYYYMM`` holding ``[first second of the month, first of the next)``.
``ensure(conn, table, months)`` creates the partitions of those months that are missing
(under an advisory lock, so several processes do not race), ``ensure_ahead`` the current
month and the next ``AHEAD`` (``headend db migrate`` calls it; ingest creates a batch's
months on demand), ``listing`` says what there is (``headend db partitions``).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable

PARTITIONED = {"readings": "ts", "load_profile": "interval_start"}
AHEAD = 3  # months created beyond the current one
_LOCK = 0x0A1115  # pg_advisory_xact_lock key while partitions are created


def month_of(ts: int) -> tuple[int, int]:
    t = time.gmtime(int(ts))
    return t.tm_year, t.tm_mon


def next_month(ym: tuple[int, int]) -> tuple[int, int]:
    y, m = ym
    return (y + 1, 1) if m == 12 else (y, m + 1)


def bounds(ym: tuple[int, int]) -> tuple[int, int]:
    y, m = ym
    return calendar.timegm((y, m, 1, 0, 0, 0)), calendar.timegm(next_month(ym) + (1, 0, 0, 0))


def name(table: str, ym: tuple[int, int]) -> str:
    return "%s_p%04d%02d" % (table, ym[0], ym[1])


def existing(conn, table: str) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent"
            " WHERE p.relname = ? AND p.relnamespace = current_schema()::regnamespace",
            [table],
        )
    }


def ensure(conn, table: str, months: Iterable[tuple[int, int]], known: set | None = None) -> list[str]:
    """Create the missing partitions of ``months``; their names. In a transaction of its own,
    committed, or in the caller's when one is open (then they go if it rolls back, and ``known``
    is not told of them). ``known``: names already seen (a cache the caller keeps), skipped
    without asking the database."""
    wanted = {name(table, ym): ym for ym in months}
    if known is not None and set(wanted) <= known:
        return []
    have = existing(conn, table)
    missing = sorted(set(wanted) - have)
    made = []
    outer = conn.in_transaction  # then the partitions are the caller's transaction's, not committed here
    if missing:
        if not outer:
            conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", [_LOCK])
            have = existing(conn, table)
            for part in missing:
                if part in have:
                    continue
                lo, hi = bounds(wanted[part])
                conn.execute(
                    'CREATE TABLE "%s" PARTITION OF "%s" FOR VALUES FROM (%d) TO (%d)' % (part, table, lo, hi)
                )
                made.append(part)
        except BaseException:
            if not outer:
                conn.rollback()
            raise
        if not outer:
            conn.commit()
    if known is not None:  # a partition made in the caller's transaction is gone if it rolls back
        known |= have if outer else have | set(made)
    return made


def ensure_ahead(conn, now: float | None = None, ahead: int = AHEAD) -> list[str]:
    ym = month_of(time.time() if now is None else now)
    months = [ym]
    for _ in range(ahead):
        months.append(next_month(months[-1]))
    made = []
    for table in PARTITIONED:
        made += ensure(conn, table, months)
    return made


def listing(conn) -> list[dict]:
    """Every partition: table, name, from/to (epoch seconds and the month), rows."""
    out = []
    for table in PARTITIONED:
        for part in sorted(existing(conn, table)):
            ym = (int(part[-6:-2]), int(part[-2:]))
            lo, hi = bounds(ym)
            rows = conn.execute('SELECT count(*) FROM "%s"' % part).fetchone()[0]
            out.append(
                {
                    "table": table,
                    "partition": part,
                    "month": "%04d-%02d" % ym,
                    "from": lo,
                    "to": hi,
                    "rows": rows,
                }
            )
    return out
