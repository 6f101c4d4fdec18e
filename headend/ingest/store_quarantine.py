"""Quarantine with a bounded sample: what a hostile meter can make the head-end keep.

Every refused frame is counted exactly (``rejected:<reason>`` in ``counters``), but only
the first ``SAMPLE_PER_HOUR`` refused frames of each (owner, hour) are kept as rows of
``quarantine`` (their payload already cut to ``headend.ingest.verify.MAX_QUARANTINED_PAYLOAD``
bytes by ingest); the rest are only counted, per (owner, hour, reason), in
``quarantine_hours.dropped``. ``quarantine_hours.kept`` counts the rows kept. So a meter
that floods its own topic with refused frames (it needs only its broker password, not its
key) adds at most ``SAMPLE_PER_HOUR`` rows an hour, however fast it publishes.

- owner: the frame's meter id (its topic's meter); for a frame whose topic did not
  parse, the meter id segment of the topic (``ami/v1/<owner>/...``: under the broker
  ACL the authenticated meter that published it), else "" (one bucket for all the rest).
- hour: ``received_at`` (head-end clock) rounded down to the hour, epoch seconds.

The check is part of ``Storage.commit_batch``'s transaction: the first statement on
``quarantine_hours`` is a write (the write lock is held before the kept count is read, so
``--workers`` sharing the database never both take the last sample slot), and a batch
without refused frames runs no statement here at all. It costs one SELECT per (owner, hour)
per batch that holds refused frames.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol import topics

SAMPLE_PER_HOUR = 20  # refused frames kept per (owner, hour); the rest are only counted
HOUR = 3600
_INSERT = (
    "INSERT INTO quarantine (received_at, topic, meter_id, reason, detail, payload) VALUES (?, ?, ?, ?, ?, ?)"
)
_OPEN_BUCKET = (
    "INSERT INTO quarantine_hours (owner, hour, reason, kept, dropped) VALUES (?, ?, ?, 0, 0)"
    " ON CONFLICT (owner, hour, reason) DO NOTHING"
)
_KEPT = "SELECT coalesce(sum(kept), 0) FROM quarantine_hours WHERE owner = ? AND hour = ?"
_ADD = (
    "UPDATE quarantine_hours SET kept = kept + ?, dropped = dropped + ?"
    " WHERE owner = ? AND hour = ? AND reason = ?"
)


def owner(meter_id: str | None, topic: str) -> str:
    """Whose sample a refused frame takes a place in (see the module doc)."""
    if meter_id:
        return meter_id
    parts = str(topic).split("/", 3)
    if len(parts) > 2 and parts[0] + "/" + parts[1] == topics.PREFIX and topics.meter_id_valid(parts[2]):
        return parts[2]
    return ""


def hour_of(received_at: float) -> int:
    return int(received_at // HOUR) * HOUR


class QuarantineStorageMixin:
    """Mixed into ``Storage``: ``self.conn``, ``self.db``."""

    def _store_quarantine(self, rows: Sequence[tuple]) -> int:
        """Keep the sample of ``rows`` (``quarantine`` column order: received_at, topic,
        meter_id, reason, detail, payload), count the rest; the number kept. Call inside the
        batch's transaction."""
        if not rows:
            return 0
        groups: dict[tuple[str, int], list[tuple]] = {}
        for r in rows:
            groups.setdefault((owner(r[2], r[1]), hour_of(r[0])), []).append(r)
        buckets = {(o, h, r[3]) for (o, h), rs in groups.items() for r in rs}
        self.conn.executemany(_OPEN_BUCKET, sorted(buckets))  # a write first: holds the lock
        kept_rows: list[tuple] = []
        adds: dict[tuple[str, int, str], list[int]] = {b: [0, 0] for b in buckets}
        for (o, h), rs in groups.items():
            room = SAMPLE_PER_HOUR - int(self.conn.execute(_KEPT, (o, h)).fetchone()[0])  # numeric on PG
            for r in rs:
                if room > 0:
                    kept_rows.append(r)
                    adds[o, h, r[3]][0] += 1
                    room -= 1
                else:
                    adds[o, h, r[3]][1] += 1
        if kept_rows:
            self.conn.executemany(_INSERT, kept_rows)
        self.conn.executemany(_ADD, [(k, d, o, h, reason) for (o, h, reason), (k, d) in adds.items()])
        return len(kept_rows)

    def quarantine_hours(self, owner: str | None = None) -> list[dict]:
        """(owner, hour, reason, kept, dropped) rows, newest hour first."""
        sql, args = "SELECT * FROM quarantine_hours", []
        if owner is not None:
            sql, args = sql + " WHERE owner = ?", [owner]
        return list(self.db.query(sql + " ORDER BY hour DESC, owner, reason", args))

    def quarantine_summary(self) -> dict:
        """What ``headend stats`` shows of the quarantine: frames kept (rows of ``quarantine``),
        refused frames not kept as a sample (in total and by reason), and the sample size."""
        kept = self.conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        by_reason = {
            reason: int(n)  # PostgreSQL's sum of a bigint is a numeric
            for reason, n in self.conn.execute(
                "SELECT reason, sum(dropped) FROM quarantine_hours GROUP BY reason HAVING sum(dropped) > 0"
                " ORDER BY reason"
            )
        }
        return {
            "kept": kept,
            "dropped": sum(by_reason.values()),
            "dropped_by_reason": by_reason,
            "sample_per_hour": SAMPLE_PER_HOUR,
        }
