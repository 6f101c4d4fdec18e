"""``headend tariff compare``: what every account would pay for a year under each of several tariffs.

    headend tariff compare --tariff A --tariff B [...] --year Y [--accounts all|FILE] [--json]
                           [--plot FILE.svg]

A tariff is a file (native TOML/JSON or URDB JSON) or the id of a stored tariff (``headend
account add`` stores each account's). Each selected account's stored load profile for the year
is billed under every tariff with the same engine (``headend.billing.compare``). Prints the
fleet figures (revenue per tariff, revenue-neutral factors, accounts paying less/more and the
change's quantiles) and, with ``--json``, every account's totals too. A progress bar goes to
stderr when it is a terminal. ``--plot`` writes the distribution of bill changes (second
tariff against the first) as SVG.

From ``PARALLEL_MIN`` accounts on (and a database another connection can open), the accounts
are read and billed in one process per CPU, ``CHUNK`` accounts at a time, each process with its
own connection (``compare_store.read_profiles``: reading is most of the time); the parent
summarizes the accounts in their order.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

from headend.billing.calendar import month_start
from headend.billing.compare import bill_accounts, changes, read_profiles, summarize
from headend.billing.compare_svg import histogram_svg
from headend.billing.tariff import load_tariff, parse_tariff
from headend.errors import BillingError

PARALLEL_MIN = 2000  # accounts; fewer are read and billed in this process
CHUNK = 500

_JOB: dict = {}  # the forked workers' job: database, tariffs, year, window


def add_tariff_commands(subparsers, db_parent) -> None:
    tar = subparsers.add_parser(
        "tariff", help="tariff design: compare tariffs over the fleet", parents=[db_parent]
    )
    tsub = tar.add_subparsers(dest="tariff_command", metavar="SUBCOMMAND", required=True)
    cmp_ = tsub.add_parser(
        "compare",
        help="bill every account's load profile for a year under each tariff; who gains, who loses",
        parents=[db_parent],
    )
    cmp_.add_argument(
        "--tariff",
        action="append",
        required=True,
        metavar="FILE|ID",
        help="a tariff file or a stored tariff id; give two or more (the first is the baseline)",
    )
    cmp_.add_argument("--year", type=int, required=True, help="the calendar year (each tariff's local time)")
    cmp_.add_argument(
        "--accounts",
        default="all",
        metavar="all|FILE",
        help="every account (default) or a file of account ids, one a line",
    )
    cmp_.add_argument("--json", action="store_true", help="the whole comparison as JSON, per account too")
    cmp_.add_argument("--plot", metavar="FILE.svg", help="write the distribution of bill changes as SVG")


def _tariff(store, ref: str):
    if os.path.exists(ref):
        return load_tariff(ref)
    row = store.tariff(ref)
    if row is None:
        raise BillingError("tariff %r is neither a file nor a stored tariff id" % ref)
    return parse_tariff(row["text"], name=row["name"])


def _accounts(store, spec: str) -> list[str]:
    if spec == "all":
        return [a["account_id"] for a in store.accounts()]
    try:
        lines = Path(spec).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise BillingError("--accounts %s: %s" % (spec, e.strerror or e))
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


class Bar:
    """A one-line progress bar on stderr (only when it is a terminal)."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream, self.shown = total, stream or sys.stderr, -1
        self.on = bool(total) and self.stream.isatty()

    def __call__(self, n: int) -> None:
        pct = n * 100 // self.total if self.total else 100
        if self.on and pct != self.shown:
            self.shown = pct
            full = pct * 30 // 100
            self.stream.write("\rcompare [%-30s] %3d %% %d/%d accounts" % ("#" * full, pct, n, self.total))
            if n >= self.total:
                self.stream.write("\n")
            self.stream.flush()


def _text(result: dict) -> list[str]:
    f, ts = result["fleet"], result["tariffs"]
    cur = ts[0]["currency"]
    out = [
        "year %d: %d accounts billed under every tariff, %d skipped"
        % (result["year"], f["accounts"], f["skipped"])
    ]
    out.append("%-32s %16s %14s" % ("tariff", "revenue", "neutral factor"))
    for t, rev, fac in zip(ts, f["revenue"], f["revenue_neutral_factor"], strict=True):
        out.append("%-32s %16s %14s" % (t["name"][:32], "%s %s" % (rev, t["currency"] or cur), fac))
    for v in f["versus_first"]:
        out.append(
            "%s against %s: %d pay less, %d more, %d the same"
            % (v["tariff"], ts[0]["name"], v["less"], v["more"], v["same"])
        )
        if v["change"]:
            out.append("  change    " + "  ".join("%s %s" % kv for kv in v["change"].items()))
            out.append("  change %  " + "  ".join("%s %s" % kv for kv in v["change_pct"].items()))
    for s in result["skipped"][:10]:
        out.append("skipped %s: %s" % (s["account_id"], s["reason"]))
    if len(result["skipped"]) > 10:
        out.append("... and %d more skipped" % (len(result["skipped"]) - 10))
    return out


def _chunk(ids: list[str]) -> tuple[list[dict], list[dict]]:
    """A worker: read and bill ``ids`` on its own connection (opened on its first chunk)."""
    from headend.db.storage import Storage

    j = _JOB
    if "store" not in j:
        j["store"] = Storage(j["db"], master_key_file=j["key_file"])
    profiles = read_profiles(j["store"], ids, j["start"], j["end"])
    return bill_accounts(j["tariffs"], profiles, j["year"])


def bill_stored(db, key_file, tariffs, ids, year, start, end, progress=None, workers=None):
    """(accounts, skipped) of ``ids`` read from database ``db`` (a SQLite path or a PostgreSQL URL)
    and billed, in ``workers`` processes (default: one per CPU from ``PARALLEL_MIN`` accounts)."""
    from headend.db.storage import Storage

    if workers is None:
        workers = (os.cpu_count() or 1) if len(ids) >= PARALLEL_MIN else 1
    workers = min(workers, -(-len(ids) // CHUNK))
    if workers <= 1 or db in (None, "", ":memory:"):
        with Storage(db, master_key_file=key_file) as store:
            return bill_accounts(tariffs, read_profiles(store, ids, start, end), year, progress)
    _JOB.clear()
    _JOB.update(db=db, key_file=key_file, tariffs=tariffs, year=year, start=start, end=end)
    accounts, skipped, done = [], [], 0
    chunks = [ids[k : k + CHUNK] for k in range(0, len(ids), CHUNK)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:  # no connection open in the parent
        for chunk, (acc, sk) in zip(chunks, pool.imap(_chunk, chunks), strict=True):
            accounts += acc
            skipped += sk
            done += len(chunk)
            if progress:
                progress(done)
        pool.close()
        pool.join()
    _JOB.clear()
    return accounts, skipped


def cmd_tariff(args) -> int:
    from headend.db.storage import Storage

    if len(args.tariff) < 2:
        raise BillingError("compare needs two or more --tariff")
    if args.plot and not args.plot.endswith(".svg"):
        raise BillingError("--plot writes SVG: name the file .svg (%s)" % args.plot)
    key_file = getattr(args, "master_key_file", None)
    with Storage(args.db, master_key_file=key_file) as store:
        tariffs = [_tariff(store, ref) for ref in args.tariff]
        ids = _accounts(store, args.accounts)
        db = store.db_path()
    offsets = [t.utc_offset for t in tariffs]
    start = min(month_start(args.year, 1, o) for o in offsets)
    end = max(month_start(args.year + 1, 1, o) for o in offsets)
    billed = bill_stored(db or args.db, key_file, tariffs, ids, args.year, start, end, Bar(len(ids)))
    result = summarize(tariffs, args.year, *billed)
    if args.plot:
        title = "%s against %s, %d accounts, %d" % (
            tariffs[1].name,
            tariffs[0].name,
            result["fleet"]["accounts"],
            args.year,
        )
        Path(args.plot).write_text(
            histogram_svg(changes(result), tariffs[0].currency, title), encoding="utf-8"
        )
    if args.json:
        print(json.dumps(result, separators=(", ", ": ")))
    else:
        print("\n".join(_text(result)))
    return 0
