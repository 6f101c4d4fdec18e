"""An in-memory stand-in for the storage interface the VEE engine needs
(``headend.vee.engine.VeeStore``), plus builders for readings.

Same method names, arguments and return shapes as the interface; rows are
deep-copied in and out so the engine cannot alias stored data, and
``transaction()`` restores everything when its block raises.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

DAY = 86400


def reading(seq, ts, imp, exp=None, *, interval=900, q=None, flags=0, received_at=None, **extra):
    """A stored reading dict; imp/exp are cumulative Wh (an int means one rate)."""
    imp = [imp] if isinstance(imp, int) else list(imp)
    exp = [0] * len(imp) if exp is None else ([exp] if isinstance(exp, int) else list(exp))
    return {
        "seq": seq, "ts": ts, "interval": interval, "imp": imp, "exp": exp, "q": q or [0, 0, 0, 0],
        "balance": None, "flags": flags, "received_at": ts + 5 if received_at is None else received_at,
        **extra,
    }  # fmt: skip


def series(start_ts, values, *, seq0=1, interval=900, **kw):
    """Readings every interval from start_ts with the given imp register values."""
    return [
        reading(seq0 + i, start_ts + i * interval, v, interval=interval, **kw) for i, v in enumerate(values)
    ]


class FakeVeeStore:
    def __init__(self, meters=None):
        self.meters = copy.deepcopy(meters or {})
        self._readings: dict[str, dict[int, dict]] = {}
        self._events: dict[str, list[dict]] = {}
        self._results: dict[tuple, dict] = {}
        self._estimates: dict[tuple, dict] = {}
        self._audit: list[dict] = []
        self._profile: dict[tuple, list[dict]] = {}
        self.depth = 0
        self.writes_outside_transaction = 0

    # ---- test helpers
    def add_meter(self, meter_id, **fields):
        self.meters[meter_id] = dict(fields)

    def add_readings(self, meter_id, rows):
        for r in rows:
            self._readings.setdefault(meter_id, {}).setdefault(
                r["seq"], {**copy.deepcopy(r), "vee_state": "pending"}
            )

    def add_event(self, meter_id, seq, ts, code, detail=None):
        self._events.setdefault(meter_id, []).append({"seq": seq, "ts": ts, "code": code, "detail": detail})

    def state(self, meter_id, seq):
        return self._readings[meter_id][seq]["vee_state"]

    def profile(self, meter_id, interval_s):
        return copy.deepcopy(self._profile.get((meter_id, interval_s), []))

    def snapshot(self):
        keep = ("_readings", "_results", "_estimates", "_audit", "_profile")
        return copy.deepcopy({k: getattr(self, k) for k in keep})

    def _write(self):
        if not self.depth:
            self.writes_outside_transaction += 1

    # ---- reads
    def meter(self, meter_id):
        m = self.meters.get(meter_id)
        return None if m is None else {"meter_id": meter_id, **copy.deepcopy(m)}

    def readings_for_vee(self, meter_id):
        rows = self._readings.get(meter_id, {}).values()
        return copy.deepcopy(sorted(rows, key=lambda r: (r["ts"], r["seq"])))

    def events(self, meter_id):
        return copy.deepcopy(sorted(self._events.get(meter_id, []), key=lambda e: e["seq"]))

    def vee_results(self, meter_id):
        rows = [r for (m, _, _), r in self._results.items() if m == meter_id]
        return copy.deepcopy(sorted(rows, key=lambda r: (r["ts"], r["rule"])))

    def estimates(self, meter_id, include_replaced=True):
        rows = [e for (m, _, _), e in self._estimates.items() if m == meter_id]
        rows = [e for e in rows if include_replaced or not e["replaced_by_real"]]
        return copy.deepcopy(sorted(rows, key=lambda e: e["interval_start"]))

    def audit(self, meter_id=None):
        return copy.deepcopy([a for a in self._audit if meter_id is None or a["meter_id"] == meter_id])

    # ---- writes
    @contextmanager
    def transaction(self):
        saved = self.snapshot() if self.depth == 0 else None
        self.depth += 1
        try:
            yield self
        except BaseException:
            if saved is not None:
                for k, v in saved.items():
                    setattr(self, k, v)
            raise
        finally:
            self.depth -= 1

    def set_vee_state(self, meter_id, seqs, state):
        self._write()
        n = 0
        for s in seqs:
            if s in self._readings.get(meter_id, {}):
                self._readings[meter_id][s]["vee_state"] = state
                n += 1
        return n

    def add_vee_result(self, meter_id, ts, rule, outcome, detail=None, seq=None, run_at=None):
        self._write()
        self._results[(meter_id, ts, rule)] = {
            "meter_id": meter_id, "ts": ts, "rule": rule, "seq": seq, "outcome": outcome,
            "detail": copy.deepcopy(detail), "run_at": run_at,
        }  # fmt: skip

    def upsert_estimate(self, meter_id, interval_start, interval_end, method, values, created_at=None):
        self._write()
        self._estimates[(meter_id, interval_start, interval_end)] = {
            "meter_id": meter_id, "interval_start": interval_start, "interval_end": interval_end,
            "method": method, "values": copy.deepcopy(values), "replaced_by_real": 0,
            "created_at": created_at,
        }  # fmt: skip

    def mark_estimates_replaced(self, meter_id, from_ts, to_ts):
        self._write()
        n = 0
        for (m, s, e), row in self._estimates.items():
            if m == meter_id and not row["replaced_by_real"] and s < to_ts and e > from_ts:
                row["replaced_by_real"] = 1
                n += 1
        return n

    def add_audit(self, meter_id, target, old, new, reason, user, at=None):
        self._write()
        row = {"id": len(self._audit) + 1, "meter_id": meter_id, "target": target, "old": copy.deepcopy(old),
               "new": copy.deepcopy(new), "reason": reason, "user": user, "at": at}  # fmt: skip
        self._audit.append(row)
        return row["id"]

    def replace_load_profile(self, meter_id, interval_s, from_ts, to_ts, rows):
        self._write()
        keep = [
            r
            for r in self._profile.get((meter_id, interval_s), [])
            if not from_ts <= r["interval_start"] < to_ts
        ]
        self._profile[(meter_id, interval_s)] = sorted(
            keep + copy.deepcopy(list(rows)), key=lambda r: (r["interval_start"], r["rate"])
        )
        return len(rows)
