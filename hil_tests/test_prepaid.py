"""Prepaid: the credit runs out, the relay opens for credit, a top-up closes it, and the balance is
exactly the credit minus the debit of the registered energy (floor(Wh x price / 1000), remainders
carried).

The price is chosen from the load so the credit lasts one span: 20 simulated minutes on
the emulator, 90 s of the bench's declared load (--ref-watts) on a board. The meter checks
its credit on its minute ticks, so the relay opens at the first whole minute after the
credit is gone; the top-up comes two spans in, the run ends one span later."""

from hil_tests.support import call, events_with_detail

START = 1710115200  # Monday 00:00 UTC


def test_exhaustion_opens_relay_and_topup_closes_it_with_exact_balance(target):
    span = 90 if target.realtime else 1200
    seg = {"seconds": 3 * span, "urms": 230, "irms": 10}
    p_w = call(target.load_w, seg)
    balance = 1000 if target.realtime else 4600
    price = int(round(balance * 3.6e6 / (p_w * span)))  # milli-units per kWh: the credit lasts one span
    topup = 2 * balance
    spec = {
        "start": START,
        "segments": [seg],
        "tariff": {"0": 5, "1": 0, "2": [price], "3": [[[0, 1]]], "4": [[0, 0, 0, 0, 0, 0, 0]]},
        "prepaid": {"balance": balance},
        "commands": [
            {"at": 0, "seq": 1, "cmd": 6, "args": {"1": balance // 4, "2": 0}},  # low 25 %, no emergency
            {"at": 2 * span, "seq": 2, "cmd": 1, "args": {"0": 31, "1": topup}},
        ],
    }
    r = call(target.run, spec)
    st = r["state"]
    ev = [c for c, _d in events_with_detail(r["messages"])]
    for code in (8, 9, 6, 10, 7):
        assert code in ev, "event %d missing: %r" % (code, ev)
    low, gone, opened, topped, closed = (ev.index(c) for c in (8, 9, 6, 10, 7))
    assert low < gone < opened < topped < closed, ev
    assert (6, {0: 1}) in events_with_detail(r["messages"]), "opened for credit (reason 1)"
    assert (10, {0: 31, 1: topup}) in events_with_detail(r["messages"])
    assert st["relay"] == "closed"
    wh = st["imp"][0]
    assert st["balance"] == balance + topup - wh * price // 1000, "balance = credit - debit of registered Wh"
    if target.relay_cuts_load:
        # energy flowed for one span (up to the next minute tick), none while open until the top-up,
        # then one more span
        poll_wh = p_w * (60 if not target.realtime else 2) / 3600.0
        lo = 2 * p_w * span / 3600.0 - poll_wh - 1
        hi = p_w * (2 * span + 60) / 3600.0 + poll_wh + 1
        assert lo <= wh <= hi, (wh, lo, hi)
