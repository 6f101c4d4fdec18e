"""A postpaid bill run: ``run_bills(store, cycle, now, policy=None) -> summary``.

Bills every postpaid account for the cycle (a calendar month ``YYYY-MM`` of each tariff's
local time) from validated data, ``batch_size`` accounts per transaction:

1. Usage per account (``headend.billing.usage``): the load profile (hourly, else 15-min,
   else daily rows; real, estimated or edited), or the register deltas between the
   cycle's boundary reads when there is no profile; plus VEE problems and bill history.
2. Strong constraints (``headend.billing.checks``); a bill that breaks one is stored
   ``held`` with its reasons. Prices by ``headend.billing.price`` (a failure holds too).
3. A bill that passes goes to ``review`` if its zone is a key zone or the seeded sample
   picks it, else it is ``issued`` and its notifications are queued in the outbox.

A cycle is billed once it has ended: ``cycle_end`` is the latest end of its month in the local
time of the postpaid accounts' tariffs (UTC when there are none); an earlier ``now`` is
refused unless ``interim`` (a deliberate interim run, ``headend bill run --interim``).

Resumable: the run row keeps a cursor (the last account of the last committed batch),
committed with the batch. Running the same cycle again resumes an unfinished run, or
starts a new one that re-prices only ``held`` bills: a bill in review, approved or
issued is never replaced (and ``bills`` is UNIQUE on (account_id, cycle) among live bills:
a voided bill, ``headend bill void``, is kept and the account billed again).

On PostgreSQL a run is shared (``_run_shared``): several ``headend bill run`` processes, on one
host or several, claim batches of the run's accounts with SELECT ... FOR UPDATE SKIP LOCKED
(``bill_run_batches``, m012) and together bill every account once; a killed process's batch
is rolled back and billed by another, or by a rerun.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import os
import re
import secrets
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from headend.billing import parse_tariff
from headend.billing.calendar import month_start
from headend.billing.checks import constraint_reasons, fluctuation_reasons, sample_threshold, sampled
from headend.billing.policy import Policy
from headend.billing.price import RULE, CyclePricer
from headend.billing.usage import gather
from headend.errors import BillingError

KWH = Decimal("0.001")
CYCLE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
AUTO_MIN_ACCOUNTS = 20_000  # fewer: starting worker processes costs more than it saves


def parse_cycle(cycle: str) -> tuple[int, int]:
    m = CYCLE.match(cycle or "")
    if not m:
        raise BillingError("cycle must be YYYY-MM, not %r" % (cycle,), "cycle")
    return int(m.group(1)), int(m.group(2))


def cycle_end(store, year: int, month: int) -> int:
    """When the cycle has ended everywhere: the latest local midnight ending the month among
    the postpaid accounts' tariffs (each bills its own local month), UTC's without any."""
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    offsets = set()
    for tariff_id in store.postpaid_tariff_ids():
        row = store.tariff(tariff_id)
        try:
            offsets.add(parse_tariff(row["text"], name=row["name"]).utc_offset)
        except (BillingError, TypeError):
            continue  # an unusable tariff holds its accounts' bills anyway
    return max(month_start(ny, nm, off) for off in offsets or {0})


def check_cycle_ended(store, cycle: str, now: float) -> None:
    """Refuse a cycle whose month has not ended at ``now``, naming when it ends."""
    year, month = parse_cycle(cycle)
    end = cycle_end(store, year, month)
    if now < end:
        raise BillingError(
            "cycle %s has not ended: it ends at %s (%s from now); bill it after then, or pass"
            " --interim for a deliberate interim run" % (cycle, iso_utc(end), _span(end - now)),
            "cycle",
        )


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(s: float) -> str:
    s = int(s)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return " ".join(
        ["%d d" % d] * bool(d) + ["%d h" % h] * bool(h) + ["%d min" % m] * bool(m or not (d or h))
    )


class _Tariffs:
    """Tariff id -> CyclePricer (or the error that holds its accounts), parsed once per run."""

    def __init__(self, store, year: int, month: int):
        self.store, self.year, self.month, self.cache = store, year, month, {}

    def get(self, tariff_id: str):
        if tariff_id not in self.cache:
            row = self.store.tariff(tariff_id)
            try:
                if row is None:
                    raise BillingError("unknown tariff %r" % tariff_id)
                tariff = parse_tariff(row["text"], name=row["name"])
                self.cache[tariff_id] = CyclePricer(tariff, self.year, self.month)
            except BillingError as e:
                self.cache[tariff_id] = e
        return self.cache[tariff_id]


def _money_lines(lines: dict) -> str:
    return "[" + ",".join(['{"item":"%s","amount":"%s"}' % kv for kv in lines.items()]) + "]"


def _rates(wh: dict[int, int]) -> str:
    return "{" + ",".join(['"%d":"%s"' % (r, Decimal(w) / 1000) for r, w in sorted(wh.items())]) + "}"


def _bill(account_id, cycle, run_id, state, reasons, tariff_id, pricer, usage, priced, now) -> tuple:
    """The bill row, in ``BILL_COLUMNS`` order (a tuple: cheap to pass between processes)."""
    ok = isinstance(pricer, CyclePricer)
    if usage:
        s = usage.seconds
        sources = '{"real":%d,"estimated":%d,"edited":%d}' % (s["real"], s["estimated"], s["edited"])
    return (
        account_id,
        cycle,
        run_id,
        state,
        reasons,
        tariff_id,
        pricer.tariff.currency if ok else None,
        pricer.start if ok else None,
        pricer.end if ok else None,
        str(priced["kwh"].quantize(KWH)) if priced else None,
        _rates(usage.wh_by_rate) if usage else None,
        sources if usage else None,
        _money_lines(priced["lines"]) if priced else "[]",
        str(priced["total"]) if priced else "0",
        RULE,
        now,
        now,
        now if state == "issued" else None,
    )


def price(pricer: CyclePricer, usage, store, account_id: str) -> dict:
    if pricer.from_registers and usage.register_wh is not None:
        # TOU only: billed from the rate registers' deltas; the load profile was only checked
        # against them (checks.registers_add_up holds the bill when they disagree)
        usage.wh_by_rate = usage.register_wh
    kwh = {r: Decimal(w) / 1000 for r, w in usage.wh_by_rate.items()}
    covered = usage.intervals * usage.interval_s if usage.interval_s else pricer.ms
    if pricer.fast:
        return pricer.price_fast(kwh, covered)
    if usage.interval_s not in (900, 3600):
        raise BillingError(
            "this tariff (tiers in time order, demand or a change mid-cycle) needs "
            "15-minute or hourly data; the account has %s"
            % ("daily data" if usage.interval_s else "boundary reads only")
        )
    points = store.profile_points(account_id, usage.interval_s, pricer.start, pricer.end)
    totals: dict[int, int] = {}
    for ts, _rate, wh, _src in points:
        totals[ts] = totals.get(ts, 0) + wh
    return pricer.price_profile(
        usage.interval_s, [(ts, Decimal(wh) / 1000) for ts, wh in sorted(totals.items())]
    )


def bill_batch(
    store, accounts, cycle, run_id, seed, tariffs, policy, now, existing: dict | None = None
) -> tuple[list, list, dict]:
    """The batch's bills, the audit rows of the held bills they replace, and its counts.
    ``existing``: the accounts' live bills of the cycle (``bill_states``) when the caller knows
    them already (a shared run that began with none: {}), else read here."""
    counts = {"issued": 0, "held": 0, "review": 0, "skipped": 0}
    if existing is None:
        existing = store.bill_states([a[0] for a in accounts], cycle)
    todo = [a for a in accounts if existing.get(a[0], (0, "held"))[1] == "held"]
    counts["skipped"] = len(accounts) - len(todo)
    threshold = sample_threshold(policy.review_sample_pct)
    history = store.bill_history([a[0] for a in todo], cycle, policy.history_cycles)
    by_window: dict = {}
    for a in todo:
        p = tariffs.get(a[2])
        key = (p.start, p.end) if isinstance(p, CyclePricer) else None
        by_window.setdefault(key, []).append(a)
    bills, audits = [], []
    for window, group in by_window.items():
        usages = gather(store, group, window, policy) if window else {}
        for account_id, zone_kind, tariff_id, *_ in group:
            pricer, usage, priced = tariffs.get(tariff_id), usages.get(account_id), None
            if not isinstance(pricer, CyclePricer):
                reasons = ["tariff %s: %s" % (tariff_id, pricer)]
            elif isinstance(usage, list):
                reasons, usage = usage, None
            else:
                reasons = constraint_reasons(usage, pricer.end - pricer.start, policy)
                try:
                    priced = price(pricer, usage, store, account_id)
                except BillingError as e:
                    reasons.append("tariff %s: %s" % (tariff_id, e))
                if priced and not reasons:
                    reasons = fluctuation_reasons(
                        priced["kwh"].quantize(KWH), history.get(account_id, []), policy
                    )
            if reasons:
                state = "held"
            elif zone_kind == "key":
                state, reasons = "review", ["key zone"]
            elif sampled(seed, cycle, account_id, threshold):
                state, reasons = "review", ["random sample (%s %%)" % policy.review_sample_pct]
            else:
                state = "issued"
            counts[state] += 1
            bills.append(
                _bill(
                    account_id,
                    cycle,
                    run_id,
                    state,
                    _json_list(reasons),
                    tariff_id,
                    pricer,
                    usage,
                    priced,
                    now,
                )
            )
            if account_id in existing:
                audits.append(("re-run of the cycle (run %d): %s" % (run_id, state), now, account_id, cycle))
    return bills, audits, counts


def _json_list(items: list[str]) -> str:
    return json.dumps(items) if items else "[]"


def _batches(store, cursor: str, size: int):
    while True:
        accounts = store.postpaid_after(cursor, size)
        if not accounts:
            return
        cursor = accounts[-1][0]
        yield accounts


def _workers(store, policy: Policy, cursor: str) -> int:
    """Worker processes for this run: ``policy.workers``, or with 0 (auto) one per CPU (at
    most 4) when enough accounts remain to repay starting them; 1: price in this process."""
    if store.db_path() is None:
        return 1
    if policy.workers:
        return policy.workers
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cpus < 2 or store.postpaid_count_after(cursor) < max(AUTO_MIN_ACCOUNTS, 8 * policy.batch_size):
        return 1
    return min(cpus, 4)


_WORKER: dict = {}


def _worker_init(store_cls, path: str, year: int, month: int) -> None:
    _collect_rarely()  # as _run_collector: the worker lives as long as the run
    store = store_cls(path)
    _WORKER.update(store=store, tariffs=_Tariffs(store, year, month))


def _worker_batch(args: tuple) -> tuple[list, list, dict]:
    return bill_batch(_WORKER["store"], *args[:4], _WORKER["tariffs"], *args[4:])


def _results(store, run: dict, cycle: str, policy: Policy, now: float, year: int, month: int):
    """(accounts, (bills, audits, counts)) of each batch after the run's cursor, in account
    order. With workers, each batch is read and priced by a worker process (its own
    connection: reads only) while this process commits the earlier ones, so the commits,
    and the run's cursor, advance in account order just as in one process."""
    batches = _batches(store, run["cursor"], policy.batch_size)
    head = (cycle, run["run_id"], run["seed"])
    workers = _workers(store, policy, run["cursor"])
    if workers <= 1:
        tariffs = _Tariffs(store, year, month)
        for accounts in batches:
            yield accounts, bill_batch(store, accounts, *head, tariffs, policy, now)
        return
    ctx = multiprocessing.get_context("spawn")  # no inherited SQLite connection
    with ctx.Pool(workers, _worker_init, (type(store), store.db_path(), year, month)) as pool:
        pending: deque = deque()
        for accounts in batches:
            pending.append((accounts, pool.apply_async(_worker_batch, ((accounts, *head, policy, now),))))
            if len(pending) >= 2 * workers:
                accounts, result = pending.popleft()
                yield accounts, result.get()
        while pending:
            accounts, result = pending.popleft()
            yield accounts, result.get()


def _collect_rarely() -> tuple[int, int, int]:
    """Freeze what the process holds and collect every 10,000 net allocations; the thresholds
    before."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, *thresholds[1:])
    return thresholds


@contextlib.contextmanager
def _run_collector():
    """Python's cyclic garbage collector, tuned for the length of a run: a run makes millions of
    short-lived objects (rows, Decimals, bill tuples) and almost no cycles, and the collector's
    default (a pass every 700 net allocations, a full pass now and then over everything the
    process holds: its modules, psycopg's, their caches) took 7-9 of the 55-60 us of client CPU an
    account of a million-account run, 0.1 with what the process held at the start frozen
    (``gc.freeze``: left out of collections) and a pass every 10,000. Both are undone at the end."""
    thresholds = _collect_rarely()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def run_bills(
    store,
    cycle: str,
    now: float,
    policy: Policy | None = None,
    on_batch: Callable[[dict], None] | None = None,
    progress: Callable[[dict], None] | None = None,
    interim: bool = False,
) -> dict:
    """Bill the cycle; returns the run row (``counts``: issued, held, review, skipped).
    ``on_batch(run)`` is called after each committed batch (tests inject a crash there).
    A cycle not ended at ``now`` is refused unless ``interim``."""
    policy = policy or Policy()
    year, month = parse_cycle(cycle)
    if not interim:
        check_cycle_ended(store, cycle, now)
    with _run_collector():
        if getattr(store, "dialect", "sqlite") == "postgresql":
            return _run_shared(store, cycle, now, policy, year, month, on_batch, progress)
        return _run_local(store, cycle, now, policy, year, month, on_batch, progress)


def _run_local(
    store, cycle: str, now: float, policy: Policy, year: int, month: int, on_batch, progress
) -> dict:
    """SQLite: the run in this process (its batches priced by worker processes when there are many:
    ``_results``), committed in account order with the run's cursor."""
    run = store.running_run(cycle)
    if run is None:
        seed = policy.review_seed if policy.review_seed is not None else secrets.randbits(63)
        run = store.open_run(cycle, seed, policy.as_json(), now)
    counts = {"issued": 0, "held": 0, "review": 0, "skipped": 0, **run["counts"]}
    results = _results(store, run, cycle, policy, now, year, month)
    try:
        for accounts, (bills, audits, got) in results:
            for k, v in got.items():
                counts[k] += v
            cursor = accounts[-1][0]
            store.commit_bill_batch(run["run_id"], cycle, bills, audits, cursor, counts, now)
            run = {**run, "cursor": cursor, "counts": dict(counts), "batches": run["batches"] + 1}
            if progress:
                progress(run)
            if on_batch:
                on_batch(run)
    finally:
        results.close()  # stops the workers when a batch fails
    return store.finish_run(run["run_id"], now)


def _run_shared(
    store, cycle: str, now: float, policy: Policy, year: int, month: int, on_batch, progress
) -> dict:
    """PostgreSQL: this process's share of the cycle's run, which any number of ``headend bill
    run`` processes (on any hosts) work on together. The first to come opens the run and splits
    its accounts into batches of ``policy.batch_size``; each process then claims the lowest batch
    no other process holds (SELECT ... FOR UPDATE SKIP LOCKED), bills it and stores its bills
    and the batch ``done`` in that one transaction. When none is free it waits on those still
    held: a process killed mid-batch has its transaction rolled back by the server, its batch
    goes to the next claimant, so every bill is stored once. The last process out finishes the
    run. ``progress``/``on_batch`` get this process's batches and counts; the returned run row
    has the whole run's (``policy.workers`` does not apply: run more processes instead)."""
    seed = policy.review_seed if policy.review_seed is not None else secrets.randbits(63)
    run = store.join_shared_run(cycle, seed, policy.as_json(), now, policy.batch_size)
    head = (cycle, run["run_id"], run["seed"])
    tariffs = _Tariffs(store, year, month)
    # a cycle no other run has billed: the accounts of a batch still to do have no bill of it (a
    # batch's bills and its ``done`` commit together), so their states need no reading
    existing = None if store.cycle_billed_by_others(cycle, run["run_id"]) else {}
    mine = {**run, "batches": 0, "counts": {"issued": 0, "held": 0, "review": 0, "skipped": 0}}
    wait = False
    while True:
        with store.claim_bill_batch(run["run_id"], wait=wait) as claimed:
            if claimed is not None:
                batch, after_id, last_id = claimed
                accounts = store.postpaid_between(after_id, last_id)
                bills, audits, got = bill_batch(store, accounts, *head, tariffs, policy, now, existing)
                contacts = {a[0]: a[5:7] for a in accounts}  # e-mail, webhook: new bills' notices
                store.commit_claimed_batch(
                    run["run_id"], batch, cycle, bills, audits, got, last_id, now, contacts
                )
        if claimed is None:
            if wait:
                break  # no batch left to do
            wait = True  # every batch left is held by another process: wait for them
            continue
        wait = False
        counts = {k: mine["counts"][k] + got.get(k, 0) for k in mine["counts"]}
        mine = {**mine, "cursor": last_id, "counts": counts, "batches": mine["batches"] + 1}
        if progress:
            progress(mine)
        if on_batch:
            on_batch(mine)
    return store.finish_shared_run(run["run_id"], now)
