"""The SQL of ``headend.billing.store`` that is long enough to deserve a name.

Statements with ``%s`` take ``marks(ids)`` (one ``?`` per account id) for an IN list
(``BillingStorageMixin._in_ids``: on PostgreSQL ``PG_IN_IDS`` with one array instead).
A meter's data counts for an account only inside the link window [from_ts, to_ts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def marks(ids: Sequence) -> str:
    return ", ".join("?" * len(ids))


# PostgreSQL's IN list of a batch: the array's elements as a subquery. With ``= ANY(array)`` the
# planner scanned all of account_meters (and readings' partitions in a hash join) for each batch:
# 140 -> 30 ms for the boundary reads of 1,000 accounts among 100,000, and the scans grow with the
# fleet; as a subquery it probes the indexes with each id.
PG_IN_IDS = " IN (SELECT unnest(CAST(? AS text[])))"
_ARRAY_SPECIAL = re.compile(r'["\\]')


def pg_text_array(ids: Sequence[str]) -> str:
    """``ids`` as one PostgreSQL array literal, ``PG_IN_IDS``'s parameter: each element quoted
    (only ``"`` and ``\\`` escaped). psycopg adapts a Python list element by element in Python:
    1.3 ms for a batch's 1,000 ids, against 0.17 ms for this, and a bill-run batch sends its ids
    to eight statements."""
    text = '","'.join(ids)
    if _ARRAY_SPECIAL.search(text):
        text = '","'.join(i.replace("\\", "\\\\").replace('"', '\\"') for i in ids)
    return '{"' + text + '"}' if ids else "{}"


# The batch's live bills of the cycle. PostgreSQL: ``cycle || ''`` keeps the planner on the
# (account_id, cycle) index: the statistics, taken before the run, count none of the cycle's bills,
# so it took idx_bills_cycle_state, which reads every bill of the cycle stored so far for each batch
# (90 -> 20 ms a batch by the end of a 100,000-account run, and growing with the run).
BILL_STATES = {
    d: "SELECT account_id, id, state FROM bills WHERE %s = ? AND state != 'void' AND account_id IN (%%s)"
    % cycle
    for d, cycle in (("sqlite", "cycle"), ("postgresql", "cycle || ''"))
}


# the end of an open meter link (to_ts NULL) in a link span: after any ts
OPEN_LINK = 2**62

POSTPAID = (
    "SELECT a.account_id, a.zone_kind, a.tariff_id,"
    " (SELECT min(from_ts) FROM account_meters m WHERE m.account_id = a.account_id),"
    " (SELECT max(coalesce(to_ts, %d)) FROM account_meters m"
    " WHERE m.account_id = a.account_id)"
    " FROM accounts a WHERE a.billing = 'postpaid' AND a.account_id > ? ORDER BY a.account_id LIMIT ?"
) % OPEN_LINK

# PostgreSQL (shared runs): the accounts in (after_id, last_id], their link span by one LATERAL
# aggregate instead of two correlated subqueries (8.0 -> 4.3 ms of server CPU a batch of 1,000),
# their e-mail and webhook (the notices of their new bills: BillingStorageMixin._store_bills), then
# the meter of an account with one link (the common case: that link is (meter, lo, hi), hi NULL
# when open), which the batch's reads of the load profile and the readings take instead of probing
# account_meters again (accounts with several links have theirs read: ACCOUNT_LINKS)
POSTPAID_RANGE = (
    "SELECT a.account_id, a.zone_kind, a.tariff_id, l.lo, l.hi, a.email, a.webhook, l.meter FROM accounts a"
    " LEFT JOIN LATERAL"
    " (SELECT min(m.from_ts) AS lo, max(coalesce(m.to_ts, %d)) AS hi,"
    " CASE WHEN count(*) = 1 THEN min(m.meter_id) END AS meter FROM account_meters m"
    " WHERE m.account_id = a.account_id) l ON true"
    " WHERE a.billing = 'postpaid' AND a.account_id > ? AND a.account_id <= ? ORDER BY a.account_id"
) % OPEN_LINK

# PostgreSQL: a batch's meter links given as four parallel arrays (account ids, meter ids, from_ts,
# to_ts; headend.billing.store ``_links_args``), read in the order given, by PROFILE_FAST_ALL and
# CYCLE_READS_PG. Each of them probed account_meters with the batch's hashed account ids before:
# 53.5 -> 37.3 ms of server CPU for the usage of 1,000 accounts among a million, 14.4 -> 10.9 ms for
# their cycle's readings (and 42.0 -> 37.6, 12.8 -> 10.6 with the links in random order).
PG_LINKS = (
    "unnest(CAST(? AS text[]), CAST(? AS text[]), CAST(? AS bigint[]), CAST(? AS bigint[]))"
    " AS am(account_id, meter_id, from_ts, to_ts)"
)

# The meter links of some accounts (for accounts of several links, and callers without POSTPAID_RANGE's)
ACCOUNT_LINKS = "SELECT account_id, meter_id, from_ts, to_ts FROM account_meters WHERE account_id IN (%s)"

# Shared runs (PostgreSQL): the postpaid accounts after the run's cursor in batches of N (the
# ``%d``), each (after_id, last_id]; the first batch starts after the cursor.
PLAN_BATCHES = (
    "INSERT INTO bill_run_batches (run_id, batch, after_id, last_id, state)"
    " SELECT ?, b, coalesce(lag(last_id) OVER (ORDER BY b), ?), last_id, 'todo' FROM"
    " (SELECT i / %d AS b, max(account_id) AS last_id FROM"
    " (SELECT account_id, row_number() OVER (ORDER BY account_id) - 1 AS i FROM accounts"
    " WHERE billing = 'postpaid' AND account_id > ?) ids GROUP BY 1) ends"
)

# the lowest batch still to do, locked by this transaction; SKIP LOCKED passes over batches
# another process holds (without it: wait for the holder to commit or die)
CLAIM_BATCH = (
    "SELECT batch, after_id, last_id FROM bill_run_batches WHERE run_id = ? AND state = 'todo'"
    " ORDER BY batch LIMIT 1 FOR UPDATE"
)

POSTPAID_COUNT = "SELECT count(*) FROM accounts WHERE billing = 'postpaid' AND account_id > ?"

POSTPAID_TARIFFS = "SELECT DISTINCT tariff_id FROM accounts WHERE billing = 'postpaid' ORDER BY tariff_id"

# The dialects' variants side by side (a dict by ``headend.db.engine.dialect``): SQLite's
# two-argument max()/min() are PostgreSQL's greatest()/least(), and PostgreSQL's sum() of a
# BIGINT is a numeric (a Decimal in Python): cast back to BIGINT as SQLite gives it.
_LINKED = {
    d: " FROM account_meters am JOIN load_profile lp"
    " ON lp.meter_id = am.meter_id AND lp.interval_s = ?"
    " AND lp.interval_start >= %s(am.from_ts, ?) AND lp.interval_start < %s(coalesce(am.to_ts, ?), ?)"
    % pair
    + extra
    for d, pair, extra in (
        ("sqlite", ("max", "min"), ""),
        # [start, end) again, on the partition key itself: only the cycle's partitions are read
        ("postgresql", ("greatest", "least"), " AND lp.interval_start >= ? AND lp.interval_start < ?"),
    )
}

PROFILE_SUMS = {
    d: "SELECT am.account_id, lp.rate, lp.source, count(*), %s, min(lp.wh_imp),"
    " min(lp.interval_start), max(lp.interval_start)" % total + _LINKED[d] + " WHERE am.account_id IN (%s)"
    " GROUP BY am.account_id, lp.rate, lp.source"
    for d, total in (("sqlite", "sum(lp.wh_imp)"), ("postgresql", "CAST(sum(lp.wh_imp) AS BIGINT)"))
}

# One row per account (no GROUP BY over rate and source, which made SQLite sort every profile row:
# a third of the query): its rows' count, how many are not 'real', the smallest Wh, the first and
# last interval, and the sum and count of each of rates 1..FAST_RATES. ``headend.billing.usage``
# takes it when every row is real and within those rates, else reads PROFILE_SUMS for the account.
FAST_RATES = 4
PROFILE_FAST = {
    d: "SELECT am.account_id, count(*), count(*) FILTER (WHERE lp.source != 'real'), min(lp.wh_imp),"
    " min(lp.interval_start), max(lp.interval_start), "
    + ", ".join(
        (total % ("lp.wh_imp) FILTER (WHERE lp.rate = %d" % r)) + ", count(*) FILTER (WHERE lp.rate = %d)" % r
        for r in range(1, FAST_RATES + 1)
    )
    + _LINKED[d]
    + " WHERE am.account_id IN (%s) GROUP BY am.account_id"
    for d, total in (("sqlite", "sum(%s)"), ("postgresql", "CAST(sum(%s) AS BIGINT)"))
}

# PostgreSQL: PROFILE_FAST over several resolutions at once (an array), for each meter link given
# (PG_LINKS), each row ending with its interval_s (headend.billing.usage._fast_rows). Each meter's
# rows are folded where the index scan gives them, in meter and interval order (a LATERAL aggregate
# per link: no hashing of every row by account): a third less server CPU for a batch than one hash
# aggregate over all rows (60 -> 40 ms for 1,000 accounts of 29 daily rows per rate). An account of
# several links gets a row for each, which _fast_rows folds (an outer GROUP BY account did it for
# every account, most of which have one link: 32.2 -> 30.7 ms a batch without it).
_RATES = range(1, FAST_RATES + 1)
_FAST_LINK = (
    "count(*) AS n, count(*) FILTER (WHERE lp.source != 'real') AS not_real, min(lp.wh_imp) AS lo,"
    " min(lp.interval_start) AS first, max(lp.interval_start) AS last, "
    + ", ".join(
        "CAST(sum(lp.wh_imp) FILTER (WHERE lp.rate = %d) AS BIGINT) AS s%d,"
        " count(*) FILTER (WHERE lp.rate = %d) AS c%d" % (r, r, r, r)
        for r in _RATES
    )
)
PROFILE_FAST_ALL = (
    "SELECT am.account_id, x.n, x.not_real, x.lo, x.first, x.last, "
    + ", ".join("x.s%d, x.c%d" % (r, r) for r in _RATES)
    + ", x.interval_s FROM "
    + PG_LINKS
    + " CROSS JOIN LATERAL (SELECT lp.interval_s, "
    + _FAST_LINK
    + " FROM load_profile lp WHERE lp.meter_id = am.meter_id AND lp.interval_s = ANY(?)"
    " AND lp.interval_start >= greatest(am.from_ts, ?)"
    " AND lp.interval_start < least(coalesce(am.to_ts, ?), ?)"
    " AND lp.interval_start >= ? AND lp.interval_start < ? GROUP BY lp.interval_s) x"
)

PROFILE_POINTS = {
    d: "SELECT lp.interval_start, lp.rate, lp.wh_imp, lp.source" + _LINKED[d] + " WHERE am.account_id = ?"
    " ORDER BY lp.interval_start, lp.rate"
    for d in _LINKED
}

# every meter of each account, comma-separated
ACCOUNTS = {
    d: "SELECT a.*, %s AS meter_ids FROM accounts a"
    " LEFT JOIN account_meters m USING (account_id) GROUP BY a.account_id ORDER BY a.account_id" % agg
    for d, agg in (("sqlite", "group_concat(m.meter_id)"), ("postgresql", "string_agg(m.meter_id, ',')"))
}

BOUNDARY_READS = (
    "SELECT am.account_id, r.meter_id, r.ts, r.imp, r.vee_state FROM account_meters am"
    " JOIN readings r ON r.meter_id = am.meter_id AND r.ts IN (?, ?)"
    " AND r.ts >= am.from_ts AND r.ts <= coalesce(am.to_ts, r.ts)"
    " WHERE am.account_id IN (%s) ORDER BY am.account_id, r.ts, r.seq"
)

VEE_PROBLEMS = (
    "SELECT am.account_id, r.vee_state, count(*) FROM account_meters am"
    " JOIN readings r ON r.meter_id = am.meter_id AND r.ts > ? AND r.ts <= ?"
    " AND r.ts > am.from_ts AND r.ts <= coalesce(am.to_ts, ?)"
    " WHERE r.vee_state IN ('failed', 'pending') AND am.account_id IN (%s)"
    " GROUP BY am.account_id, r.vee_state"
)

# PostgreSQL: BOUNDARY_READS and VEE_PROBLEMS in one pass over each meter link's readings of the
# cycle (start <= ts <= end): a boundary read comes as its own row (account_id, meter_id, ts, seq,
# imp, vee_state, problem), the failed and pending readings between as one row per state with ts,
# seq and imp NULL and their count; a boundary read VEE has not accepted counts as a problem in its
# row too (VEE_PROBLEMS' window: start < ts <= end). One index descent per partition and meter
# instead of three, and the links given (PG_LINKS) rather than probed twice: 14.8 -> 10.8 ms of
# server CPU a batch of 1,000 accounts with the links probed once (the bench's two readings a meter).
CYCLE_READS_PG = (
    "SELECT am.account_id, am.meter_id, x.ts, x.seq, x.imp, x.vee_state, x.problems FROM "
    + PG_LINKS
    + " CROSS JOIN LATERAL (SELECT CASE WHEN f.b THEN r.ts END AS ts, CASE WHEN f.b THEN r.seq END AS seq,"
    " CASE WHEN f.b THEN r.imp END AS imp, r.vee_state, count(*) FILTER (WHERE f.p) AS problems"
    " FROM readings r CROSS JOIN LATERAL"
    " (SELECT r.ts IN (?, ?) AND r.ts >= am.from_ts AND r.ts <= coalesce(am.to_ts, r.ts) AS b,"
    " r.vee_state IN ('failed', 'pending') AND r.ts > ? AND r.ts > am.from_ts"
    " AND r.ts <= coalesce(am.to_ts, ?) AS p) f"
    " WHERE r.meter_id = am.meter_id AND r.ts >= ? AND r.ts <= ? AND (f.b OR f.p) GROUP BY 1, 2, 3, 4) x"
    " ORDER BY am.account_id, x.ts, x.seq"
)

# state != 'void' (implied by the IN list) lets SQLite use the partial unique index on
# (account_id, cycle): without it, it took idx_bills_cycle_state and read every earlier bill
# of the whole fleet for each batch (0.4 s of a batch's 0.6 s at a million accounts)
HISTORY = (
    "SELECT account_id, energy_kwh FROM bills WHERE cycle < ? AND state IN ('issued', 'approved')"
    " AND state != 'void' AND account_id IN (%s) ORDER BY account_id, cycle DESC"
)

# PostgreSQL: an account's last ``n`` released bills only (a backward scan of the (account_id, cycle)
# index, stopped at n), not its every earlier bill: a fleet billed for years has dozens each
HISTORY_PG = (
    "SELECT i.account_id, h.energy_kwh FROM unnest(CAST(? AS text[])) AS i(account_id) CROSS JOIN LATERAL"
    " (SELECT b.energy_kwh, b.cycle FROM bills b WHERE b.account_id = i.account_id AND b.cycle < ?"
    " AND b.state IN ('issued', 'approved') AND b.state != 'void' ORDER BY b.cycle DESC LIMIT ?) h"
    " ORDER BY i.account_id, h.cycle DESC"
)

BILL_COLUMNS = (
    "account_id",
    "cycle",
    "run_id",
    "state",
    "reasons",
    "tariff_id",
    "currency",
    "period_start",
    "period_end",
    "energy_kwh",
    "kwh_by_rate",
    "sources",
    "lines",
    "total",
    "rule",
    "created_at",
    "updated_at",
    "issued_at",
)

UPSERT_BILL = (
    "INSERT INTO bills (%s) VALUES (%s)"
    " ON CONFLICT (account_id, cycle) WHERE state != 'void' DO UPDATE SET %s"
    " WHERE bills.state = 'held'"
) % (
    ", ".join(BILL_COLUMNS),
    marks(BILL_COLUMNS),
    ", ".join(
        "%s = excluded.%s" % (c, c) for c in BILL_COLUMNS if c not in ("account_id", "cycle", "created_at")
    ),
)

# PostgreSQL: the batch's bills as one statement, its rows one JSON array parameter (json.dumps
# is C; psycopg dumps list parameters in Python) read back as bills rows; the same upsert
UPSERT_BILLS_PG = UPSERT_BILL.replace(
    "VALUES (%s)" % marks(BILL_COLUMNS),
    "SELECT %s FROM json_populate_recordset(NULL::bills, CAST(? AS json))" % ", ".join(BILL_COLUMNS),
)

# PostgreSQL: a batch's new bills (no live bill of the cycle for their accounts), in COPY's text
# format (headend.db.engine.copy_text_data), with ids taken before (BILL_IDS_PG) so that their
# notices can be made by the head-end; server CPU for 1,000 bills: 12 ms against 32 ms for
# UPSERT_BILLS_PG, and 3 ms of the client's against 11 ms for the JSON
COPY_BILLS_PG = "COPY bills (id, %s) FROM STDIN" % ", ".join(BILL_COLUMNS)
# (the sequence looked up once: pg_get_serial_sequence called for each id was 2.3 of its 2.8 ms)
BILL_IDS_PG = (
    "WITH s AS MATERIALIZED (SELECT CAST(pg_get_serial_sequence('bills', 'id') AS regclass) AS seq)"
    " SELECT nextval(s.seq) FROM s, generate_series(1, ?)"
)
