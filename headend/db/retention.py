"""``headend db retention --months N``: retire the readings and load profile of months older than
N months, once every meter's data in them is billed.

The months kept: the current UTC month (of ``now``) and the N before it; every older month that
holds readings or load-profile rows is a candidate. A candidate month is retired only when each
meter with data in it is billed for that data: its first and last timestamp there each lie in the
period of a released bill (``issued`` or ``approved``) of an account the meter was linked to then
(a UTC month meets at most two adjacent local-month cycles, so these two points cover it), or, on
a prepaid account, the prepaid sync has debited past its last timestamp. If any meter is not, the
command refuses and names the meters and months (nothing changes): bill them first, or keep more
months. ``dry_run`` checks and reports without changing anything.

PostgreSQL: the months' partitions of ``readings`` and ``load_profile`` (headend/db/partitions.py)
are detached (``ALTER TABLE ... DETACH PARTITION``: they stay as plain tables renamed
``<partition>_retired``, for pg_dump or an archive, so a late row of such a month would get a new,
empty partition rather than fail ingest), or dropped with ``drop``; and ``reading_keys`` (the
(meter_id, seq) idempotency keys, headend/db/migrations.py) loses the keys of the retired months'
readings, so the keys of every reading kept stay (a repeat of a kept reading is still refused)
while the table stops growing.
A reading of a retired month sent again after that is no longer known: retire only months no
meter will send again (their seq long acknowledged). Ingest waits while the command runs (it locks
the two tables, as DETACH does).

SQLite: the same check, then the retired months' readings and load-profile rows are deleted in one
transaction (the file keeps its size until ``VACUUM``; ``headend backup`` writes a compact copy).
Their (meter_id, seq) keys go with the rows, as above.

The horizon (the first second kept) is recorded in ``settings`` as ``retention.kept_from``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from headend.db import partitions
from headend.db.engine import dialect
from headend.errors import StorageError

TABLES = {"readings": "ts", "load_profile": "interval_start"}  # the column each is partitioned on
RELEASED = "('issued', 'approved')"
MAX_NAMED = 20
RETIRED = "_retired"  # a detached partition's name: readings_p202402_retired

# each meter's first and last timestamp in a month, and whether each is covered by a released bill
# of an account the meter was linked to then, or debited by the prepaid sync (one statement per
# table and month; both engines)
_COVERED = (
    "EXISTS (SELECT 1 FROM account_meters am JOIN bills b ON b.account_id = am.account_id"
    " WHERE am.meter_id = s.meter_id AND am.from_ts <= s.{p} AND (am.to_ts IS NULL OR s.{p} <= am.to_ts)"
    " AND b.state IN " + RELEASED + " AND b.period_start <= s.{p} AND s.{p} <= b.period_end)"
)
_DEBITED = (
    "EXISTS (SELECT 1 FROM account_meters am JOIN prepaid_state ps ON ps.account_id = am.account_id"
    " AND ps.meter_id = am.meter_id WHERE am.meter_id = s.meter_id AND ps.ts >= s.hi)"
)
_UNBILLED = (
    "SELECT s.meter_id, s.lo, s.hi, s.n FROM"
    " (SELECT meter_id, min({col}) AS lo, max({col}) AS hi, count(*) AS n FROM {table}"
    " WHERE {col} >= ? AND {col} < ? GROUP BY meter_id) s"
    " WHERE NOT ((" + _COVERED.format(p="lo") + " AND " + _COVERED.format(p="hi") + ") OR " + _DEBITED + ")"
    " ORDER BY s.meter_id"
)


def _month_name(ym: tuple[int, int]) -> str:
    return "%04d-%02d" % ym


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def kept_from(months: int, now: float) -> int:
    """The first second kept: the start of the UTC month ``months`` before ``now``'s."""
    y, m = partitions.month_of(now)
    m -= months
    while m < 1:
        y, m = y - 1, m + 12
    return partitions.bounds((y, m))[0]


def _candidates(store, horizon: int) -> list[tuple[int, int]]:
    """The months before ``horizon`` holding data: PostgreSQL's attached partitions (even
    empty ones), SQLite's months of the rows."""
    conn = store.conn
    found: set[tuple[int, int]] = set()
    if dialect(conn) == "postgresql":
        for table in TABLES:
            for part in partitions.existing(conn, table):
                ym = (int(part[-6:-2]), int(part[-2:]))
                if partitions.bounds(ym)[1] <= horizon:
                    found.add(ym)
        return sorted(found)
    for table, col in TABLES.items():
        lo = conn.execute("SELECT min(%s) FROM %s WHERE %s < ?" % (col, table, col), [horizon]).fetchone()[0]
        if lo is None:
            continue
        ym = partitions.month_of(lo)
        while partitions.bounds(ym)[0] < horizon:
            if conn.execute(
                "SELECT 1 FROM %s WHERE %s >= ? AND %s < ? LIMIT 1" % (table, col, col), partitions.bounds(ym)
            ).fetchone():
                found.add(ym)
            ym = partitions.next_month(ym)
    return sorted(found)


def _unbilled(store, months) -> list[dict]:
    out = []
    for ym in months:
        lo, hi = partitions.bounds(ym)
        for table, col in TABLES.items():
            for meter_id, first, last, n in store.conn.execute(
                _UNBILLED.format(table=table, col=col), [lo, hi]
            ):
                out.append(
                    {
                        "meter_id": meter_id,
                        "month": _month_name(ym),
                        "table": table,
                        "rows": int(n),
                        "from": _iso(first),
                        "to": _iso(last),
                    }
                )
    return out


def _refusal(unbilled: list[dict], months: int) -> str:
    meters = sorted({u["meter_id"] for u in unbilled})
    named = "; ".join(
        "%s %s (%s %d rows, %s .. %s)"
        % (u["meter_id"], u["month"], u["table"], u["rows"], u["from"], u["to"])
        for u in unbilled[:MAX_NAMED]
    )
    more = " and %d more" % (len(unbilled) - MAX_NAMED) if len(unbilled) > MAX_NAMED else ""
    return (
        "headend db retention: %d meter(s) have data older than %d months that no released bill covers"
        " (nothing was retired): %s%s. Bill those months first (headend bill run --cycle YYYY-MM, then"
        " approve what is in review), or keep more months (--months)" % (len(meters), months, named, more)
    )


def retire(store, months: int, now: float | None = None, dry_run: bool = False, drop: bool = False) -> dict:
    """Check and retire the months older than ``months`` (see the module doc); a summary.
    StorageError naming the unbilled meters and months, with nothing changed, when some are."""
    if not isinstance(months, int) or months < 1:
        raise StorageError("--months must be a whole number of months, at least 1, not %r" % (months,))
    pg = dialect(store.conn) == "postgresql"
    if drop and not pg:
        raise StorageError("--drop applies to PostgreSQL's partitions; on SQLite the rows are deleted")
    now = time.time() if now is None else now
    horizon = kept_from(months, now)
    summary = {
        "engine": "postgresql" if pg else "sqlite",
        "months": months,
        "kept_from": _iso(horizon),
        "dry_run": dry_run,
        "retired": [],
        "keys_trimmed": 0,
    }
    with store.db.atomic():
        candidates = _candidates(store, horizon)
        if pg and candidates:  # no row arrives and no bill is voided while the months are checked
            mode = "SHARE" if dry_run else "ACCESS EXCLUSIVE"  # DETACH takes the parent's anyway
            store.conn.execute('LOCK TABLE "readings", "load_profile" IN %s MODE' % mode)
            store.conn.execute("LOCK TABLE bills, account_meters, prepaid_state IN SHARE MODE")
        unbilled = _unbilled(store, candidates)
        if unbilled:
            raise StorageError(_refusal(unbilled, months))
        for ym in candidates:
            lo, hi = partitions.bounds(ym)
            entry = {"month": _month_name(ym)}
            for table, col in TABLES.items():
                entry[table] = int(
                    store.conn.execute(
                        "SELECT count(*) FROM %s WHERE %s >= ? AND %s < ?" % (table, col, col), [lo, hi]
                    ).fetchone()[0]
                )
            entry["action"] = ("would " if dry_run else "") + (
                "drop" if drop else "detach" if pg else "delete"
            )
            summary["retired"].append(entry)
            if dry_run:
                continue
            for table, col in TABLES.items():
                if pg:
                    part = partitions.name(table, ym)
                    if part in partitions.existing(store.conn, table):
                        store.conn.execute('ALTER TABLE "%s" DETACH PARTITION "%s"' % (table, part))
                        if drop:
                            store.conn.execute('DROP TABLE "%s"' % part)
                        else:  # its name free again: a late row of the month gets a new partition
                            store.conn.execute('ALTER TABLE "%s" RENAME TO "%s%s"' % (part, part, RETIRED))
                else:
                    store.conn.execute(
                        "DELETE FROM %s WHERE %s >= ? AND %s < ?" % (table, col, col), [lo, hi]
                    )
        if pg and candidates:
            sql = "SELECT count(*) FROM reading_keys WHERE ts < ?"
            if not dry_run:
                sql = "DELETE FROM reading_keys WHERE ts < ?"
            cur = store.conn.execute(sql, [partitions.bounds(candidates[-1])[1]])
            summary["keys_trimmed"] = int(cur.fetchone()[0]) if dry_run else cur.rowcount
        if candidates and not dry_run:
            store.conn.execute(
                "INSERT INTO settings (name, value) VALUES ('retention.kept_from', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [str(horizon)],
            )
    return summary
