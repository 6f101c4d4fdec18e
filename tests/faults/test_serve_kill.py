"""`headend serve` SIGKILLed three times while four meters stream 2400 readings and events: every message
is stored exactly once per (meter, seq), and the counters agree with the rows.

Why nothing is lost (headend/ingest/service.py): serve keeps a persistent session (stable client id,
clean_session 0) and acknowledges a batch's QoS 1 messages only after the batch's transaction has
committed. A kill before the commit leaves them unacknowledged: the broker redelivers them to the
restarted serve. A kill between the commit and the PUBACKs makes the redelivery a duplicate, which
(meter_id, seq) turns into a no-op counted under `duplicates`. Each kill here lands while messages
the broker has acknowledged to the meters are not yet committed (asserted), one of them while the
broker is still redelivering the backlog of the previous kill.

That is so by construction, not by timing: the meters stop at known points (800, then 1600 messages
in all) and wait for the test, and until the last kill serve commits only whole batches of 500 (its
time limit is out of reach). A serve life commits whole batches of what it received, in order: the
redelivered backlog first (what the previous life left uncommitted), then the new messages; so
when the kill comes, the newest messages are committed only if backlog + new is a multiple of 500,
and 800 - 0 or - 500, then 1600 - 0, 500, 1000 or 1500, never are (a duplicate redelivery, from a
kill between a commit and its PUBACKs, is a whole batch). The first kill leaves 300 or 800
uncommitted, the second and third at least 100.
"""

from __future__ import annotations

import pytest

from protocol import topics
from tests.faults.support import Fleet, Stream, count, rows, wait_for
from tests.headend.broker_support import cwt_frame, reading_map

METERS, MESSAGES = 4, 600  # per meter; every 25th message an event
BATCH = 500  # serve's batch: until the last kill it commits only whole batches
STOPS = (200, 400)  # per meter: 800 and 1600 messages in all, each 100 short of a whole batch
T0 = 1_700_000_100


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path, METERS)
    yield f
    f.close()


def message(seq: int) -> tuple[str, dict]:
    if seq % 25 == 0:
        return "event", {0: 2, 1: seq, 2: T0 + 900 * seq, 10: 3, 11: {0: seq}}
    return "reading", reading_map(seq, T0 + 900 * seq, 500 + seq)


def stored(db: str) -> int:
    return count(db, "readings") + count(db, "events")


def test_serve_sigkilled_three_times_during_ingest_then_exactly_once(fleet):
    total = METERS * MESSAGES
    sent: dict[str, dict[str, list]] = {"reading": {}, "event": {}}
    items = {}
    for m in fleet.ids:
        out = []
        for seq in range(1, MESSAGES + 1):
            kind, msg = message(seq)
            frame = cwt_frame(fleet.key(m), m, msg)
            sent[kind].setdefault(m, []).append((m, seq, frame))
            out.append((topics.up(m, kind), frame))
        items[m] = out
    # Gated, not timed: the meters stop at STOPS until released, and until the last kill serve commits
    # whole batches of BATCH only (its time limit is out of reach), so a kill leaves messages the
    # broker acknowledged uncommitted whatever the machine's speed (module docstring): the stops put
    # the newest message 100 short of a whole batch, and the broker acknowledged all by then.
    hold = ("--batch", str(BATCH), "--batch-ms", "600000")
    serve = fleet.serve(*hold)
    clients = {m: fleet.meter(m) for m in fleet.ids}
    stream = Stream({clients[m]: items[m] for m in fleet.ids}, pace_s=0.004, stops=STOPS)
    in_flight = []

    def kill_serve() -> None:
        acked_by_broker = sum(len(c.acked) for c in clients.values())
        assert acked_by_broker == stream.handed()
        serve.kill()
        in_flight.append(acked_by_broker - stored(fleet.db))

    for k in (1, 2):  # the meters at a stop, everything they sent acknowledged by the broker
        stream.wait_stopped(k)
        wait_for(lambda: sum(len(c.acked) for c in clients.values()) == stream.handed(), 30, "PUBACKs")
        kill_serve()
        if k == 1:
            stream.release()  # the meters go on while serve is down: the broker queues for it
            stream.wait_stopped(2)
        serve = fleet.serve(*hold)
    # the third kill comes right after the restart, while the broker redelivers the second one's backlog
    kill_serve()
    serve = fleet.serve("--batch", str(BATCH), "--batch-ms", "200")
    stream.release()
    stream.join()
    for c in clients.values():
        c.wait_acked(30)
    wait_for(lambda: stored(fleet.db) >= total, 30, "every message stored")
    assert serve.terminate() == 0
    assert all(n > 0 for n in in_flight), in_flight  # each kill left acknowledged messages uncommitted

    got = rows(fleet.db, "SELECT meter_id, seq, raw FROM readings ORDER BY meter_id, seq")
    assert got == [row for m in fleet.ids for row in sent["reading"][m]]
    got = rows(fleet.db, "SELECT meter_id, seq, detail FROM events ORDER BY meter_id, seq")
    assert got == [(m, seq, '{"0":%d}' % seq) for m in fleet.ids for _, seq, _ in sent["event"][m]]
    c = dict(rows(fleet.db, "SELECT name, value FROM counters"))
    n_events = METERS * (MESSAGES // 25)
    assert (c["accepted:reading"], c["accepted:event"]) == (total - n_events, n_events)
    assert c["accepted"] == total and not [k for k in c if k.startswith("rejected")]
    assert rows(fleet.db, "SELECT count(*) FROM quarantine") == [(0,)]
