"""A meter's broker password is enough to flood the head-end with refused frames (no key is
needed to be refused). Against a real Mosquitto (`headend broker-config`) and a real
`headend serve`: 5,000 random 16 KiB frames on meter A's up topic, published with A's broker
password, used to add 5,000 quarantine rows of 4 KiB each (0.33 MB -> 20.9 MB in a second).
Now every frame is counted under `rejected:<reason>` and only a sample of
`headend.ingest.store_quarantine.SAMPLE_PER_HOUR` per meter per hour is kept: the database grows
by less than 1 MB, and ingest goes on."""

from __future__ import annotations

import os
import random

from headend.db.storage import Storage
from headend.ingest import verify as ingest
from headend.ingest.store_quarantine import SAMPLE_PER_HOUR
from protocol import messages as M
from protocol import topics
from tests.headend.broker_support import MeterClient, cli_json, wait_for
from tests.security.support import counters, total

FLOOD = 5000
FRAME = 16 * 1024  # headend.ingest.verify.MAX_FRAME: the largest frame ingest decodes at all
T0 = 1_700_000_100


def on_disk(db: str) -> int:
    """Bytes of the database and its WAL once the WAL is checkpointed into the file."""
    with Storage(db) as s:
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))


def test_a_flood_of_refused_frames_is_counted_in_full_and_sampled(fleet, capsys):
    before = on_disk(fleet["db"])
    rnd = random.Random(5000)
    frames = [rnd.randbytes(FRAME) for _ in range(FLOOD)]
    serve = fleet["serve"]()
    a = MeterClient("A", fleet["password"]["A"], fleet["port"])
    up = topics.up("A", "reading")
    for i in range(0, FLOOD, 500):
        a.publish_all([(up, f) for f in frames[i : i + 500]])
    wait_for(lambda: total(counters(fleet["db"])) == FLOOD, 180, "%d flood frames judged" % FLOOD)
    # ingest goes on: A's next signed reading is stored
    a.publish_all([(up, M.seal(fleet["key"]["A"], "A", M.reading(1, T0, 900, [1], [0], [0] * 4)))])
    wait_for(lambda: counters(fleet["db"]).get("accepted:reading") == 1, 30, "the reading after the flood")
    assert serve.terminate() == 0
    a.close()

    c = counters(fleet["db"])
    rejected = {k: v for k, v in c.items() if k.startswith("rejected:")}
    assert sum(rejected.values()) == FLOOD, rejected
    with Storage(fleet["db"]) as s:
        kept = s.quarantined(limit=10 * FLOOD)
        hours = s.quarantine_hours("A")
    assert {q["meter_id"] for q in kept} == {"A"}
    # the flood may straddle an hour boundary: then each of the two hours has its own sample
    assert len(kept) == SAMPLE_PER_HOUR * len(hours) and 1 <= len(hours) <= 2
    cut = ingest.MAX_QUARANTINED_PAYLOAD
    assert {q["payload"] for q in kept} <= {f[:cut] for f in frames} and {
        len(q["payload"]) for q in kept
    } == {cut}
    assert sum(h["kept"] + h["dropped"] for h in hours) == FLOOD
    assert {"rejected:" + h["reason"] for h in hours} <= set(rejected)
    stats = cli_json(capsys, "stats", "--json", "--db", fleet["db"])
    assert stats["rejected_total"] == FLOOD and stats["accepted"] == 1
    assert stats["quarantine"]["kept"] == len(kept)
    assert stats["quarantine"]["dropped"] == FLOOD - len(kept)

    growth = on_disk(fleet["db"]) - before
    print("database growth after %d x %d-byte refused frames: %d bytes" % (FLOOD, FRAME, growth))
    assert growth < 1_000_000, growth
