"""The dashboard's formatting helpers (headend/web/fmt.py, evidence.py, tariffs.py) and the
defaults they feed: values as a person reads them, not as the storage layer holds them."""

import re

import pytest

from headend.console import decode
from headend.web import data, evidence, fmt, tariffs
from headend.web.pages_bills import energy_text, rate_rows
from protocol import messages
from tests.headend import billrun_support as billrun
from tests.headend.alerts_support import DAY, NOW
from tests.headend.web_support import TODAY, build_fleet, new_store, readings

TS = 1710648000  # 2024-03-17T04:00:00Z


@pytest.fixture
def store(tmp_path):
    with new_store(tmp_path / "web.db") as s:
        yield s


def test_times_are_iso_utc_and_absent_values_a_dash():
    assert fmt.iso(TS) == "2024-03-17T04:00:00Z" and fmt.iso(TS + 0.9) == "2024-03-17T04:00:00Z"
    assert fmt.iso(None) == fmt.NONE == "\u2014" and fmt.iso_day(TS) == "2024-03-17"
    assert fmt.iso(10**20).endswith("(not a valid time)")
    assert fmt.missing() == "\u2014" and fmt.missing("no readings") == "\u2014 (no readings)"


@pytest.mark.parametrize(
    "seconds, text",
    [
        (540000, "6 d 6 h"),
        (1382400, "16 d"),
        (86460, "1 d"),  # the unit below days is hours: a minute is left out
        (90061, "1 d 1 h"),
        (7260, "2 h 1 min"),
        (900, "15 min"),
        (61, "1 min 1 s"),
        (45, "45 s"),
        (0, "0 s"),
        (-5400, "-1 h 30 min"),
        (None, "\u2014"),
    ],
)
def test_durations_read_in_days_hours_and_minutes(seconds, text):
    assert fmt.duration(seconds) == text


def test_money_energy_and_amounts_carry_their_units():
    assert fmt.money(12345, "CNY") == "12.345 CNY" and fmt.money(-2500, "USD") == "-2.500 USD"
    assert fmt.money(30000) == "30.000" and fmt.money(None, "CNY") == fmt.NONE
    assert fmt.amount("78.08", "CNY") == "78.08 CNY" and fmt.amount(None, "CNY") == fmt.NONE
    assert fmt.kwh("174.000") == "174.000 kWh" and fmt.kwh("104.4") == "104.400 kWh"
    assert fmt.kwh(None) == fmt.NONE and fmt.wh(1500) == "1.500 kWh"


def test_event_details_are_named_from_the_protocols_table():
    # stored details come back from JSON with string keys; frames have int keys: both read alike
    for detail in ({"0": TS - 7200, "1": TS}, {0: TS - 7200, 1: TS}):
        assert fmt.event_fields(messages.EVT_CLOCK_ADJUSTED, detail) == [
            ("old", "2024-03-17T02:00:00Z"),
            ("new", "2024-03-17T04:00:00Z"),
        ]
    assert fmt.event_fields(messages.EVT_TOPUP_APPLIED, {"0": 2, "1": 120000}, "CNY") == [
        ("topup id", "2"),
        ("amount", "120.000 CNY"),
    ]
    assert fmt.event_fields(messages.EVT_RELAY_OPENED, {"0": 1}) == [("reason", "credit")]
    assert fmt.event_fields(messages.EVT_TARIFF_ACTIVATED, {"0": 1290689797}) == [("tariff", "1290689797")]
    assert fmt.event_fields(messages.EVT_CMD_REJECTED, {"0": 9, "1": 3, "2": 1}) == [
        ("cmd seq", "9"),
        ("reason", "expired"),
        ("count", "1"),
    ]
    assert dict(fmt.event_fields(messages.EVT_CMD_REJECTED, {"1": 8}))["reason"] == "not a command frame"
    # keys the protocol does not define: a named key keeps its name, a number says it is a detail
    assert fmt.event_fields(17, {"in_ma": 5000, "5": 1}) == [("detail 5", "1"), ("in_ma", "5000")]
    assert fmt.event_fields(3, None) == [] and fmt.pairs_text([("a", "1"), ("b", "2")]) == "a: 1, b: 2"
    # one table for the console and the dashboard
    assert decode.event_details(messages.EVT_TOPUP_APPLIED, {0: 7, 1: 12500}) == [
        ("topup id", "7"),
        ("amount", "12.500"),
    ]
    assert set(decode.EVENT_DETAILS) == {6, 10, 11, 12, 19}


def test_tariff_names_currency_and_period_names(store):
    build_fleet(store)
    info = tariffs.meter_tariff(store, "m1")
    assert (info.name, info.currency, info.period_names) == ("TOU", "CNY", ("peak", "valley"))
    assert [info.rate_name(r) for r in (1, 2, 3)] == ["peak", "valley", "T3"]
    assert tariffs.account_tariff(store, "P1").name == "Prepaid TOU"
    assert tariffs.meter_tariff(store, "m2") is tariffs.NO_TARIFF  # no account
    assert tariffs.TariffInfo("t", "Ladder", "CNY", ("all",)).rate_name(2) == "T2"  # one period
    store.add_tariff("t-bad", "Broken", "not a tariff")
    assert tariffs.tariff_info(store, "t-bad") == tariffs.TariffInfo("t-bad", "Broken")
    assert tariffs.tariff_info(store, "t-none").name == "t-none"


def test_kwh_by_rate_rows_and_missing_energy():
    tou = tariffs.TariffInfo("t", "TOU", "CNY", ("peak", "valley"))
    assert rate_rows({"2": "69.6", "1": "104.4", "3": "0"}, tou) == [
        ("T1", "peak", "104.400 kWh"),
        ("T2", "valley", "69.600 kWh"),
        ("T3", "\u2014 (not in the tariff)", "0.000 kWh"),
    ]
    one = tariffs.TariffInfo("t", "Ladder", "CNY", ("all",))
    assert [r[1] for r in rate_rows({"1": "1", "2": "2"}, one)] == ["all", "all"]
    held = {"state": "held", "reasons": ["no load profile"], "energy_kwh": None}
    assert energy_text(held) == "\u2014 (not measured: the bill is held: no load profile)"
    assert energy_text({**held, "energy_kwh": "12.5"}) == "12.500 kWh"


def test_evidence_reads_as_named_fields_times_durations_and_money():
    comm = {
        "interval_s": 900,
        "last_reading": {"seq": 4, "ts": TS, "received_at": TS + 5},
        "last_seen": TS,
        "missed_intervals": 1560,
        "online": 0,
        "silent_s": 540000,
    }
    html = evidence.evidence_html(comm)
    text = re.sub(r"<[^>]+>", "|", html)
    for fragment in (
        "interval||15 min",
        "silent||6 d 6 h",
        "missed intervals||1560",
        "online||no",
        "received||2024-03-17T04:00:05Z",
    ):
        assert fragment in text, fragment
    assert "1710648000" not in html and "540000" not in html
    balance = {"meter_balance": 12345, "ledger_balance": 12000, "difference": 345, "tolerance": 100}
    text = re.sub(r"<[^>]+>", "|", evidence.evidence_html(balance, "CNY"))
    assert "meter balance||12.345 CNY" in text and "difference||0.345 CNY" in text
    low = {"reading": {"seq": 1, "ts": TS, "balance": -2500}, "threshold": 10000, "events": []}
    text = re.sub(r"<[^>]+>", "|", evidence.evidence_html(low, "CNY"))
    assert "balance||-2.500 CNY" in text and "threshold||10.000 CNY" in text
    events = {"events": [{"code": 10, "detail": {"0": 2, "1": 120000}, "seq": 3, "ts": TS}]}
    html = evidence.evidence_html(events, "CNY")
    heads = re.findall(r"<th>([^<]*)</th>", html)
    assert heads[:5] == ["events", "seq", "time", "event", "detail"]
    assert "topup applied (10)" in html and "topup id: 2, amount: 120.000 CNY" in html
    peers = evidence.evidence_html(
        {"tariff_id": "t-1", "ratio_pct": 12.5, "wh": 1500}, "", {"t-1": "TOU"}.get
    )
    assert "TOU" in peers and "12.5 %" in peers and "1.500 kWh" in peers
    hostile = evidence.evidence_html({"<b>": '<script>"x"</script>'})
    assert "<script>" not in hostile and "&lt;script&gt;" in hostile and "&lt;b&gt;" in hostile


def test_the_meter_page_default_is_the_last_seven_whole_days(store):
    build_fleet(store)
    # m1's latest reading is at 06:00 on 2024-03-17: the last whole day is the 16th
    assert data.default_view(store, "m1", NOW) == (TODAY - DAY, 7)
    # a latest reading at midnight closes its day: that day is whole
    readings(store, "m9", TODAY - 3 * DAY, TODAY)
    assert data.default_view(store, "m9", NOW) == (TODAY - DAY, 7)
    # readings only within one day in progress: the week ending with that day
    readings(store, "m8", TODAY + 3600, TODAY + 3 * 3600)
    assert data.default_view(store, "m8", NOW) == (TODAY, 7)
    # no readings: the week before today
    assert data.default_view(store, "m2", NOW) == (TODAY - DAY, 7)
    assert store.reading_span("m2") == (None, None)
    assert store.reading_span("m9") == (TODAY - 3 * DAY, TODAY)


def test_account_tariff_ids_by_billing(store):
    build_fleet(store)
    prepaid = store.account_tariff_ids("prepaid")
    assert list(prepaid) == ["P1"] and prepaid["P1"].startswith("t-")
    assert store.account_tariff_ids()["b-held"] == billrun.tariff_id(billrun.TOU)
