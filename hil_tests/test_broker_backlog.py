"""Broker outage and backlog delivery over a real Mosquitto (one broker for the session).

The meter reports while its broker is unreachable (the readings pile up in its flash
outbox), then runs against the broker: every message arrives, first arrivals in seq
order, none missing, repeats only as QoS 1 resends of the very same bytes; one reading
per interval, the outage ones flagged "sent late" (bit 4). Emulator: a 6-hour outage at
15-minute readings. Board (needs --broker-host): 3 minutes at 60-s readings."""

from hil_tests.support import call
from hil_tests.targets.base import verify_frame
from protocol import topics

START = 1710115200


def test_outage_backlog_delivered_once_in_order_after_broker_returns(target, hil_broker):
    rt = target.realtime
    interval = 60 if rt else 900
    outage_s = 180 if rt else 6 * 3600
    after_s = 60 if rt else 3600
    seg = {"urms": 230, "irms": 4, "phase_deg": 10}
    outage = {"start": START, "segments": [dict(seg, seconds=outage_s)]}
    after = {"start": START, "segments": [dict(seg, seconds=outage_s + after_s)]}
    r = call(target.backlog, hil_broker, outage, after, patch={"interval": interval})
    pending = r["outage_state"]["comms"]["pending"]
    assert pending >= outage_s // interval, "the outage's readings wait in the outbox: %d" % pending
    st = r["state"]
    assert st["comms"]["pending"] == 0 and st["comms"]["dropped"] == 0
    will = topics.will_payload()  # the broker's last will is the one unsigned message
    signed = [(verify_frame(p, r["key"], r["meter_id"]), p) for _t, p in r["frames"] if p != will]
    by_seq, firsts = {}, []
    for msg, raw in signed:
        if msg[1] in by_seq:
            assert by_seq[msg[1]] == raw, "a repeat is a resend of the same frame"
        else:
            by_seq[msg[1]] = raw
            firsts.append(msg[1])
    assert sorted(by_seq) == list(range(1, st["seq"] + 1)), "no seq missing, none invented"
    assert firsts == sorted(firsts), "first arrivals in seq order"
    readings = sorted((m for m, _p in signed if m[0] == 1 and m[3] == interval), key=lambda m: m[2])
    ts = [m[2] for m in readings]
    want = list(range(START + interval, START + outage_s + after_s + 1, interval))
    assert ts == want, "one reading per interval, each once"
    late = [m for m in readings if m[2] <= START + outage_s]
    assert len(late) == outage_s // interval
    assert all(m[9] & 16 for m in late), "readings made during the outage say 'sent late'"
