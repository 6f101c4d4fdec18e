"""Prepaid ledger: debits reconstructed exactly from readings, reconciliation alerts."""

import pytest

from headend.billing import parse_tariff
from headend.errors import PrepaidError
from headend.prepaid.ledger import Cursor, advance, parse_amount, price_schedule, units
from headend.prepaid.service import credit, sync
from tests.headend.prepaid_support import MAR1, MAR2, TARIFF, add_readings, prepaid_store

H = 3600
# (ts, [peak Wh, valley Wh]) cumulative; the TOU calendar switches at 08:00 and 20:00, the
# prices at 2024-03-02 00:00
READS = [
    (MAR1, [1000, 2000]),  # baseline
    (MAR1 + 8 * H, [1000, 2777]),  # valley +777 Wh x 300 = 233100
    (MAR1 + 20 * H, [5333, 2777]),  # peak +4333 Wh x 500 = 2166500
    (MAR2, [5333, 3001]),  # valley +224 Wh x 300 = 67200 (interval starts 03-01 20:00)
    (MAR2 + 8 * H, [5333, 3500]),  # valley +499 Wh x 333 = 166167 (new prices)
    (MAR2 + 12 * H, [6000, 3500]),  # peak +667 Wh x 800 = 533600
]
TOTAL_ACC = 233100 + 2166500 + 67200 + 166167 + 533600  # 3166567: debit floor(/1000) = 3166
# (the per-interval floors would give 233 + 2166 + 67 + 166 + 533 = 3165: the carry matters)


def test_price_schedule_from_the_tariff_versions():
    steps = price_schedule(parse_tariff(TARIFF))
    assert [(s.start, s.prices) for s in steps] == [(None, (500, 300)), (MAR2, (800, 333))]


def test_tiered_or_sub_milli_prices_are_refused():
    head = 'format = "open-ami-tariff"\nperiods = ["all"]\n'
    ladder = head + "[tiers]\nmax_kwh = [200]\n[energy]\nall = [0.4, 0.5]\n"
    with pytest.raises(PrepaidError, match="tiered"):
        price_schedule(parse_tariff(ladder))
    fine = head + '[energy]\nall = "0.4883"\n'
    with pytest.raises(PrepaidError, match="whole milli-units"):
        price_schedule(parse_tariff(fine))


def test_advance_is_exact_and_split_independent():
    schedule = price_schedule(parse_tariff(TARIFF))
    rows = [{"seq": i + 1, "ts": ts, "imp": imp} for i, (ts, imp) in enumerate(READS)]
    whole, steps, notes = advance(None, rows, schedule)
    assert whole.acc == TOTAL_ACC and whole.debited == 3166 and notes == []
    assert [s.acc for s in steps] == [0, 233100, 2399600, 2466800, 2632967, TOTAL_ACC]
    first, _, _ = advance(None, rows[:3], schedule)
    second, _, _ = advance(first, rows, schedule)  # the already-priced readings add nothing
    assert second == whole and first.debited + (second.debited - first.debited) == 3166


def test_decreasing_registers_rebaseline_and_mid_interval_change_is_noted():
    schedule = price_schedule(parse_tariff(TARIFF))
    c = Cursor(1, MAR2 - H, (0, 0), 0)
    rows = [{"seq": 2, "ts": MAR2 + H, "imp": [0, 1000]}, {"seq": 3, "ts": MAR2 + 2 * H, "imp": [0, 10]}]
    new, _, notes = advance(c, rows, schedule)
    assert new.acc == 1000 * 300 and new.imp == (0, 10)  # priced at the interval start's prices
    assert "inside the interval" in notes[0] and "new baseline" in notes[1]


def test_sync_debits_the_ledger_exactly_across_two_syncs(db_target):
    with prepaid_store(db_target) as store:
        store.add_adjustment("P1", 50000, "opening balance", "op", now=1)
        add_readings(store, "m1", [(ts, imp, None) for ts, imp in READS[:3]])
        r1 = sync(store, "P1", 100, now=2)
        assert r1["debited"] == 2399 and r1["balance"] == 50000 - 2399
        add_readings(store, "m1", [(ts, imp, None) for ts, imp in READS[3:]], first_seq=4)
        r2 = sync(store, "P1", 100, now=3)
        assert r2["debited"] == 3166 - 2399 and store.ledger_balance("P1") == 50000 - 3166
        assert sync(store, "P1", 100, now=4)["debited"] == 0  # nothing new: nothing debited
        debits = [e for e in store.ledger("P1") if e["kind"] == "debit"]
        assert [(e["amount"], e["ref"]) for e in debits] == [(-2399, "seq 1..3"), (-767, "seq 3..6")]


def _sync_with_meter_balance(db_target, meter_balance, threshold=100):
    store = prepaid_store(db_target)
    store.add_adjustment("P1", 50000, "opening balance", "op", now=1)
    rows = [(ts, imp, None) for ts, imp in READS]
    rows[-1] = (*rows[-1][:2], meter_balance)
    add_readings(store, "m1", rows)
    return store, sync(store, "P1", threshold, now=5)


@pytest.mark.parametrize("off", [0, 100, -100])
def test_a_balance_within_the_threshold_raises_no_alert(db_target, off):
    store, r = _sync_with_meter_balance(db_target, 50000 - 3166 + off)
    assert r["reconciled"]["alert"] is False and r["reconciled"]["difference"] == off
    assert store.prepaid_alerts() == []
    store.close()


@pytest.mark.parametrize("off", [101, -150])
def test_a_mismatch_beyond_the_threshold_is_stored_once(db_target, off):
    store, r = _sync_with_meter_balance(db_target, 50000 - 3166 + off)
    assert r["reconciled"]["alert"] is True
    alerts = store.prepaid_alerts("P1")
    assert [
        (a["seq"], a["meter_balance"], a["ledger_balance"], a["difference"], a["threshold"]) for a in alerts
    ] == [(6, 50000 - 3166 + off, 50000 - 3166, off, 100)]
    sync(store, "P1", 100, now=6)
    assert len(store.prepaid_alerts()) == 1
    store.close()


def test_topups_count_on_the_meter_once_acked_and_reconciliation_waits_meanwhile(db_target):
    with prepaid_store(db_target) as store:
        add_readings(store, "m1", [(MAR1, [0, 0], 0)])
        assert sync(store, "P1", 0, now=1)["reconciled"]["alert"] is False
        got = credit(store, "C-1", 20000, now=MAR1 + 60, meter_id="m1")
        assert store.ledger_balance("P1") == 20000 and got["state"] == "queued"
        add_readings(store, "m1", [(MAR1 + H, [0, 1000], 20000 - 300)], first_seq=2)
        r = sync(store, "P1", 0, now=2)
        assert r["reconciled"]["deferred"] and r["debited"] == 300 and store.prepaid_alerts() == []
        from headend.ingest.store import IngestBatch

        batch = IngestBatch()
        batch.acks = [("m1", 3, got["seq"], 0, None, MAR1 + 120, 3.0)]
        store.commit_batch(batch)
        assert [c["state"] for c in store.apply_acks(now=4)] == ["acked"]
        add_readings(store, "m1", [(MAR1 + 2 * H, [0, 2000], 20000 - 600)], first_seq=4)
        r = sync(store, "P1", 0, now=5)
        assert r["reconciled"] == {
            "seq": 4, "meter_balance": 19400, "ledger_balance": 19400, "difference": 0, "alert": False
        }  # fmt: skip


def test_amounts():
    assert parse_amount("12.5") == 12500 and parse_amount("0.001") == 1 and units(-1250) == "-1.250"
    for bad in ("0", "-1", "1e3", "1.2345", " 1", "abc", "1000001"):
        with pytest.raises(PrepaidError, match="amount"):
            parse_amount(bad)
