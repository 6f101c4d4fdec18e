"""Gather a batch of accounts' usage for a cycle from storage: a few grouped queries per batch.

``gather(store, accounts, (start, end), policy) -> {account_id: Usage | [reasons]}``. Each
account's data is its meters' data within their link windows. The load profile is read at
the first resolution the account has rows for (hourly, 15-minute, daily); without a load
profile, consumption per rate is the register delta between the readings at the cycle's
boundaries (``ts == start`` and ``ts == end``: a reading's ts is its interval's end), which
must both be readings VEE accepted. With a profile, those boundary reads (when one meter has
both, accepted) cross-check it: per rate and in total.

The profile is read as one row per account (``profile_fast``: counts and sums per rate, no sort
of the rows) when all its rows are real and of rates 1..4, the common case; an account with
estimated or edited rows, or other rates, is read again by rate and source (``profile_sums``).
"""

from __future__ import annotations

import functools
import json
import re
from operator import itemgetter, sub

from headend.billing.checks import REAL_STATES, Usage
from headend.billing.policy import Policy
from headend.billing.store_sql import FAST_RATES, OPEN_LINK

RESOLUTIONS = (3600, 900, 86400)
_INT = r"-?(?:0|[1-9][0-9]*)"  # a JSON integer
_INT_LIST = re.compile(r"\[%s(?:, ?%s)*\]" % (_INT, _INT))  # a list of them (int() takes the space)


def _registers(text: str) -> list:
    """A register list's JSON: split and int() when it is a plain list of integers (a third
    of json.loads' time), else json.loads (the same values either way)."""
    if _INT_LIST.fullmatch(text):
        return list(map(int, text[1:-1].split(",")))
    return json.loads(text)


def _expected(start: int, end: int, linked_from: int, linked_to: int, iv: int) -> int:
    ws, we = max(start, linked_from), min(end, linked_to)
    first = start + -(-(ws - start) // iv) * iv
    return max(0, -(-(we - first) // iv))


def _ends(start: int, end: int, linked: tuple, iv: int) -> tuple[int, int]:
    """The first and the last interval start of the cycle within the link window."""
    return max(start, linked[0]), start + ((min(end, linked[1]) - start - 1) // iv) * iv


@functools.lru_cache(maxsize=4096)
def _window(start: int, end: int, linked: tuple, iv: int) -> tuple[int, int, int]:
    """``_ends`` and ``_expected`` of a link span: the same for most accounts of a batch."""
    return (*_ends(start, end, linked, iv), _expected(start, end, linked[0], linked[1], iv))


def _from_profile(rows: list[tuple], iv: int, start: int, end: int, linked: tuple) -> Usage:
    wh_by_rate: dict[int, int] = {}
    counts: dict[int, dict[str, int]] = {}
    first_ts, last_ts = _ends(start, end, linked, iv)
    min_wh = first_source = last_source = None
    for _a, rate, source, n, wh, lo, first, last in rows:
        c = counts.get(rate)
        if c is None:
            counts[rate] = {source: n}
            wh_by_rate[rate] = wh
        else:
            c[source] = c.get(source, 0) + n
            wh_by_rate[rate] += wh
        if min_wh is None or lo < min_wh:
            min_wh = lo
        if first == first_ts:
            first_source = source
        if last == last_ts:
            last_source = source
    if len(counts) == 1:  # one rate: no maximum over rates to take
        (c,) = counts.values()
        intervals = sum(c.values())
        seconds = {s: c.get(s, 0) * iv for s in ("real", "estimated", "edited")}
    else:
        intervals = max(sum(c.values()) for c in counts.values())
        seconds = {s: max(c.get(s, 0) for c in counts.values()) * iv for s in ("real", "estimated", "edited")}
    return Usage(
        wh_by_rate=wh_by_rate,
        min_wh=min_wh or 0,
        interval_s=iv,
        intervals=intervals,
        expected=_expected(start, end, linked[0], linked[1], iv),
        seconds=seconds,
        first_source=first_source,
        last_source=last_source,
    )


def _from_fast(row: tuple, iv: int, start: int, end: int, linked: tuple) -> Usage | None:
    """``_from_profile`` of an account whose rows are all 'real' and of rates 1..FAST_RATES, from its
    ``profile_fast`` row (None otherwise: its rows are read by rate and source). With one source per
    rate, a rate's count is its intervals and its real seconds; the first and last sources are
    'real' or missing (only 'estimated' there can hold a bill, checks.estimated_within_policy)."""
    _a, n, not_real, lo, first, last = row[:6]
    if not_real:
        return None
    wh_by_rate: dict[int, int] = {}
    intervals = counted = 0
    for i in range(FAST_RATES):
        c = row[7 + 2 * i]
        if c:
            wh_by_rate[i + 1] = row[6 + 2 * i]
            counted += c
            if c > intervals:
                intervals = c
    if counted != n:  # a rate beyond FAST_RATES (or below 1)
        return None
    first_ts, last_ts, expected = _window(start, end, linked, iv)
    return Usage(
        wh_by_rate=wh_by_rate,
        min_wh=lo or 0,
        interval_s=iv,
        intervals=intervals,
        expected=expected,
        seconds={"real": intervals * iv, "estimated": 0, "edited": 0},
        first_source="real" if first == first_ts else None,
        last_source="real" if last == last_ts else None,
    )


def _reads_by_meter(reads: list[tuple]) -> dict[str, dict[int, tuple]]:
    out: dict[str, dict[int, tuple]] = {}
    for _a, meter_id, ts, imp, state in reads:
        out.setdefault(meter_id, {}).setdefault(ts, (imp, state))  # the first reading at ts (lowest seq)
    return out


def _register_delta(reads: list[tuple], start: int, end: int) -> tuple[dict | None, list[str]]:
    """Per-rate Wh between the boundary reads of one meter, and the problems found."""
    if len(reads) == 2:  # the common case: one meter, one reading at each boundary, accepted
        (_a, m1, t1, a, sa), (_b, m2, t2, b, sb) = reads
        if m1 == m2 and t1 == start and t2 == end and sa in REAL_STATES and sb in REAL_STATES:
            a, b = _registers(a), _registers(b)
            if len(a) == len(b):
                return dict(zip(range(1, len(a) + 1), map(sub, b, a), strict=True)), []
    problems = []
    for meter_id, at in sorted(_reads_by_meter(reads).items()):
        if start in at and end in at:
            (a, sa), (b, sb) = at[start], at[end]
            bad = [(ts, s) for ts, s in ((start, sa), (end, sb)) if s not in REAL_STATES]
            if bad:
                problems += ["boundary read of meter %s at %d is %s" % (meter_id, ts, s) for ts, s in bad]
                continue
            a, b = json.loads(a), json.loads(b)
            if len(a) != len(b):
                problems.append(
                    "boundary reads of meter %s have %d and %d rates" % (meter_id, len(a), len(b))
                )
                continue
            return {i + 1: y - x for i, (x, y) in enumerate(zip(a, b, strict=True))}, []
    return None, problems


def _fast_rows(store, ids: list[str], start: int, end: int, links: list[tuple]):
    """(interval_s, its ``profile_fast`` rows) for each resolution in RESOLUTIONS order, each account
    at the first resolution it has rows for. SQLite: a query per resolution for the accounts not
    found yet (grouping by resolution too would sort every row). PostgreSQL: one query over all
    three (``PROFILE_FAST_ALL``: folded per meter link, then by account and resolution), which
    spares a batch the two empty hourly and 15-minute queries of daily data (8 ms each a batch)."""
    if getattr(store, "dialect", "sqlite") != "postgresql":
        for iv in RESOLUTIONS:
            if not ids:
                return
            rows = store.profile_fast(ids, iv, start, end)
            yield iv, rows
            found = {r[0] for r in rows}
            ids = [a for a in ids if a not in found]
        return
    by_account: dict[str, dict[int, tuple]] = {}
    for row in store.profile_fast_all(links, RESOLUTIONS, start, end) if links else ():
        got = by_account.setdefault(row[0], {})
        other = got.get(row[-1])
        got[row[-1]] = row[:-1] if other is None else _fold_links(other, row[:-1])
    by_iv: dict[int, list] = {iv: [] for iv in RESOLUTIONS}
    for rows in by_account.values():
        first = next(r for r in RESOLUTIONS if r in rows)
        by_iv[first].append(rows[first])
    for iv in RESOLUTIONS:
        if by_iv[iv]:
            yield iv, by_iv[iv]


def _fold_links(a: tuple, b: tuple) -> tuple:
    """Two meter links' ``profile_fast`` rows of one account and resolution as one: counts and sums
    added (a rate's sum None where the link has none of it), the least Wh and first interval, the
    last interval."""
    sums = [x if y is None else y if x is None else x + y for x, y in zip(a[6::2], b[6::2], strict=True)]
    counts = [x + y for x, y in zip(a[7::2], b[7::2], strict=True)]
    head = (a[0], a[1] + b[1], a[2] + b[2], min(a[3], b[3]), min(a[4], b[4]), max(a[5], b[5]))
    return head + tuple(v for pair in zip(sums, counts, strict=True) for v in pair)


def _links(store, accounts: list[tuple], ids: list[str]) -> list[tuple]:
    """PostgreSQL: (account_id, meter_id, from_ts, to_ts) of the meter links of ``ids``, in meter
    order (the order their load profile and readings are read in): an account of one link has it in
    its row (``postpaid_between``'s last column, the link's from and to its span), the others' are
    read (``account_links``)."""
    links, several = [], []
    if accounts and len(accounts[0]) > 7:
        row = {a[0]: a for a in accounts}
        for a in ids:
            _a, _z, _t, lo, hi, _e, _w, meter = row[a][:8]
            if meter is None:
                several.append(a)
            else:
                links.append((a, meter, lo, None if hi == OPEN_LINK else hi))
    else:
        several = ids
    if several:
        links += [tuple(r) for r in store.account_links(several)]
    links.sort(key=itemgetter(1, 2))
    return links


def _cycle_reads(store, ids: list[str], start: int, end: int, links: list[tuple]) -> tuple[dict, dict]:
    """account_id -> its boundary reads (``boundary_reads``' rows), and account_id -> {vee_state:
    readings of the cycle failed or pending}. PostgreSQL: both from one statement (``cycle_reads``)."""
    reads: dict[str, list] = {}
    vee: dict[str, dict] = {}
    if getattr(store, "dialect", "sqlite") != "postgresql":
        for row in store.boundary_reads(ids, start, end):
            reads.setdefault(row[0], []).append(row)
        for account_id, state, n in store.vee_problems(ids, start, end):
            vee.setdefault(account_id, {})[state] = n
        return reads, vee
    for account_id, meter_id, ts, _seq, imp, state, problems in store.cycle_reads(links, start, end):
        if ts is not None:
            reads.setdefault(account_id, []).append((account_id, meter_id, ts, imp, state))
        if problems:
            got = vee.setdefault(account_id, {})
            got[state] = got.get(state, 0) + problems
    return reads, vee


def gather(store, accounts: list[tuple], window: tuple[int, int], policy: Policy) -> dict:
    start, end = window
    linked = {a[0]: (a[3], a[4]) for a in accounts}
    out: dict = {a: ["no meter linked to the account"] for a, (f, _t) in linked.items() if f is None}
    todo = [a for a in linked if a not in out]
    links = _links(store, accounts, todo) if getattr(store, "dialect", "sqlite") == "postgresql" else []
    profiles: dict[str, tuple[int, list]] = {}
    fast: dict[str, Usage] = {}
    for iv, rows in _fast_rows(store, todo, start, end, links):
        mixed = []  # accounts with rows not 'real' or of other rates: read by rate and source
        for row in rows:
            u = _from_fast(row, iv, start, end, linked[row[0]])
            if u is None:
                mixed.append(row[0])
            else:
                fast[row[0]] = u
        for row in store.profile_sums(mixed, iv, start, end):
            profiles.setdefault(row[0], (iv, []))[1].append(row)
    ids = [a for a in linked if a not in out]
    reads, vee = _cycle_reads(store, ids, start, end, links) if ids else ({}, {})
    for a in ids:
        deltas, problems = _register_delta(reads.get(a, []), start, end)
        u = fast.get(a)
        if u is not None:
            u.register_wh = deltas
        elif a in profiles:
            iv, rows = profiles[a]
            u = _from_profile(rows, iv, start, end, linked[a])
            u.register_wh = deltas
        elif deltas is None:
            out[a] = problems or ["no load profile and no boundary reads at both ends of the cycle"]
            continue
        else:
            u = Usage(wh_by_rate=deltas, min_wh=min(deltas.values(), default=0))
            u.seconds["real"] = end - start
        u.vee = vee.get(a, {})
        out[a] = u
    return out
