"""Command authentication on the meter (docs/protocol.md command rules; firmware/commands_exec.py).

Forged frames (another key, another meter's kid) and malformed ones are dropped unacked and
counted, reported by one event 19 (reason 7); a replayed frame is answered "duplicate" and
changes nothing; a lower seq is "stale", an expired command "expired"; a top-up replayed
after a reboot credits nothing. Everything the meter reported is verified with ``cwt``."""

from hil_tests.support import acks, call, events_with_detail

START = 1710115200
OTHER_KEY = "11" * 32


def _spec(target, seconds, commands):
    return {
        "start": START,
        "segments": [{"seconds": seconds, "urms": 230, "irms": 2}],
        "tariff": {"0": 5, "1": 0, "2": [1000], "3": [[[0, 1]]], "4": [[0, 0, 0, 0, 0, 0, 0]]},
        "prepaid": {"balance": 100000},
        "commands": commands,
    }


def test_forged_and_replayed_commands_rejected_and_run_at_most_once(target):
    k = 2 if target.realtime else 60  # seconds between commands
    topup = {"0": 7, "1": 50000}
    cmds = [
        {"at": 1 * k, "seq": 1, "cmd": 1, "args": topup},
        {"at": 2 * k, "seq": 1, "cmd": 1, "args": topup},  # the same frame replayed
        {"at": 3 * k, "seq": 2, "cmd": 2, "args": {"0": 0, "1": 0}, "key_hex": OTHER_KEY},  # forged MAC
        {"at": 4 * k, "seq": 2, "cmd": 2, "args": {"0": 0, "1": 0}, "kid": "hil-other"},  # not this meter
        {"at": 5 * k, "frame_hex": "d1840102"},  # malformed
        {"at": 6 * k, "seq": 3, "cmd": 2, "args": {"0": 0, "1": 0}},  # genuine: relay opens
        {"at": 7 * k, "seq": 2, "cmd": 2, "args": {"0": 1, "1": 0}},  # genuine but stale: stays open
        {"at": 8 * k, "seq": 4, "cmd": 2, "args": {"0": 1, "1": 0}, "expires": START + 5 * k},  # expired
    ]
    r = call(target.run, _spec(target, 10 * k, cmds))
    st = r["state"]
    assert acks(r["messages"]) == [(1, 0), (1, 1), (3, 0), (2, 2), (4, 3)], "forged/malformed get no ack"
    assert st["relay"] == "open", "only the genuine, fresh relay command ran"
    assert st["comms"]["forged"] == 2 and st["comms"]["malformed"] == 1
    rejected = [d for c, d in events_with_detail(r["messages"]) if c == 19]
    assert len(rejected) == 1 and rejected[0][1] == 7, "one event 19, reason 7 (bad MAC/kid): %r" % rejected
    credited = [d for c, d in events_with_detail(r["messages"]) if c == 10]
    assert credited == [{0: 7, 1: 50000}], "credited exactly once"
    assert st["balance"] == 100000 + 50000 - st["imp"][0] * 1000 // 1000
    seqs = [s for s, _k, _m in r["messages"]]
    assert seqs == list(range(1, len(seqs) + 1)), "the meter's own seq has no gap"

    # after a reboot: the old top-up replayed under its seq is stale, under a new seq a duplicate top-up
    again = [
        {"at": 11 * k, "seq": 1, "cmd": 1, "args": topup},
        {"at": 12 * k, "seq": 5, "cmd": 1, "args": topup},
    ]
    r2 = call(target.run, _spec(target, 14 * k, again), flash=r["flash"])
    new_acks = acks(r2["messages"])[len(acks(r["messages"])) :]
    assert new_acks == [(1, 2), (5, 1)], new_acks
    assert [d for c, d in events_with_detail(r2["messages"]) if c == 10] == [{0: 7, 1: 50000}]
    assert r2["state"]["balance"] == 100000 + 50000 - r2["state"]["imp"][0] * 1000 // 1000
