"""headend.console.decode: every message type as the console shows it, verified with the meter's
key (frames built with the independent `cwt` package), and forged, garbled or misplaced frames
shown as unverified without their content."""

from __future__ import annotations

import cbor2

from headend.console.decode import decode, flag_words, kwh, utc
from protocol import messages, topics
from tests.headend.broker_support import cwt_frame, reading_map

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
KEYS = {"m1": KEY, "m2": OTHER}
TS = 1714521600  # 2024-05-01T00:00:00Z
NOW = 1714521605.0


def frame(msg: dict, key: bytes = KEY, kid: str = "m1") -> bytes:
    return cwt_frame(key, kid, msg)


def show(kind: str, payload: bytes, meter: str = "m1") -> dict:
    return decode(topics.up(meter, kind), payload, KEYS, NOW)


def test_a_signed_reading_shows_its_key_values():
    msg = reading_map(7, TS, 12345)
    msg.update({4: [12000, 345, 0, 0], 5: [1500, 0, 0, 0], 8: 12500, 9: 0})
    row = show("reading", frame(msg))
    assert (row["kind"], row["auth"], row["trusted"], row["meter_id"]) == ("reading", "signed", True, "m1")
    assert (row["seq"], row["ts"], row["received"]) == (7, "2024-05-01 00:00:00Z", "00:00:05")
    assert row["fields"] == [
        ("imp", "12.345 kWh"),
        ("exp", "1.500 kWh"),
        ("P", "230 W"),
        ("balance", "12.500"),
        ("flags", "none"),
    ]
    assert row["level"] == "ok"
    assert row["summary"] == "imp 12.345 kWh  exp 1.500 kWh  P 230 W  balance 12.500  flags none"


def test_reading_flags_are_words_and_raise_the_level():
    msg = reading_map(1, TS, 10)
    msg[9] = messages.FLAG_RELAY_OPEN | messages.FLAG_TAMPER_LATCHED
    row = show("reading", frame(msg))
    assert dict(row["fields"])["flags"] == "relay open, tamper latched"
    assert row["level"] == "alert"
    msg[9] = messages.FLAG_EMERGENCY_CREDIT
    msg[8] = -2500
    row = show("reading", frame(msg))
    assert dict(row["fields"])["flags"] == "emergency credit" and row["level"] == "warn"
    assert dict(row["fields"])["balance"] == "-2.500"
    assert flag_words(0) == "none"
    assert flag_words(messages.FLAG_BACKLOG | 32) == "backlog, bit 5"
    assert flag_words(messages.FLAG_CLOCK_UNSYNCED) == "clock unsynced"


def test_events_are_named_as_in_the_protocol_with_their_details():
    row = show("event", frame({0: 2, 1: 3, 2: TS, 10: messages.EVT_TAMPER_COVER}))
    assert (row["kind"], row["seq"], row["level"]) == ("event", 3, "alert")
    assert row["fields"] == [("event", "terminal cover opened"), ("code", "3")]
    row = show("event", frame({0: 2, 1: 4, 2: TS, 10: messages.EVT_TOPUP_APPLIED, 11: {0: 7, 1: 12500}}))
    assert row["fields"][2:] == [("topup id", "7"), ("amount", "12.500")]
    assert row["level"] == "info"
    row = show("event", frame({0: 2, 1: 5, 2: TS, 10: messages.EVT_RELAY_OPENED, 11: {0: 1}}))
    assert dict(row["fields"]) == {"event": "relay opened", "code": "6", "reason": "credit"}
    row = show("event", frame({0: 2, 1: 6, 2: TS, 10: messages.EVT_CLOCK_ADJUSTED, 11: {0: TS, 1: TS + 60}}))
    assert dict(row["fields"])["new"] == "2024-05-01 00:01:00Z"
    row = show("event", frame({0: 2, 1: 7, 2: TS, 10: 17}))
    assert dict(row["fields"])["event"] == "line/neutral current mismatch (possible bypass)"
    row = show("event", frame({0: 2, 1: 8, 2: TS, 10: 99, 11: {5: 1}}))
    assert row["fields"] == [("event", "unknown event"), ("code", "99"), ("detail 5", "1")]


def test_acks_show_the_result_name():
    row = show("ack", frame({0: 3, 1: 9, 2: TS, 30: 4, 31: messages.ACK_DONE}))
    assert (row["kind"], row["fields"], row["level"]) == ("ack", [("cmd seq", "4"), ("result", "done")], "ok")
    row = show("ack", frame({0: 3, 1: 10, 2: TS, 30: 5, 31: messages.ACK_BAD_ARGS}))
    assert dict(row["fields"])["result"] == "bad arguments" and row["level"] == "alert"
    row = show("ack", frame({0: 3, 1: 11, 2: TS, 30: 5, 31: messages.ACK_DUPLICATE}))
    assert dict(row["fields"])["result"] == "duplicate" and row["level"] == "info"


def test_a_signed_status_is_online_and_the_will_is_offline_and_unsigned():
    status = {0: 4, 1: 1, 2: TS, 40: 1, 41: "1.2.0", 42: "esp32", 43: "atm90e26", 44: 4, 45: 7, 46: 3}
    row = show("status", frame(status))
    assert (row["kind"], row["auth"], row["trusted"]) == ("status", "signed", True)
    assert dict(row["fields"]) == {"state": "online", "fw": "1.2.0", "board": "esp32", "metering": "atm90e26",
                                   "rates": "4", "tariff": "7", "boot count": "3"}  # fmt: skip
    row = show("status", topics.will_payload())
    assert (row["kind"], row["auth"], row["trusted"], row["level"]) == ("status", "will", False, "warn")
    assert row["fields"][0] == ("state", "offline") and row["seq"] is None


def test_a_forged_frame_is_unverified_and_its_content_not_shown():
    row = show("reading", frame(reading_map(1, TS, 99999), key=OTHER))  # signed with another key
    assert (row["kind"], row["auth"], row["trusted"], row["level"]) == (
        "rejected",
        "unverified",
        False,
        "bad",
    )
    assert row["reason"] == "tag" and row["meter_id"] == "m1"
    assert row["seq"] is None and row["ts"] is None
    assert "99" not in row["summary"] and "kWh" not in row["summary"]
    assert dict(row["fields"])["UNVERIFIED"] == "reading"


def test_garbled_misplaced_and_unknown_frames_are_unverified_with_the_reason():
    assert show("event", b"\x00 not cbor at all")["reason"] == "structure"
    assert show("reading", frame(reading_map(1, TS, 1), key=OTHER, kid="m2"))["reason"] == "kid"
    assert show("reading", frame(reading_map(1, TS, 1)), meter="m9")["reason"] == "unknown_meter"
    assert show("reading", frame({0: 2, 1: 1, 2: TS, 10: 3}))["reason"] == "wrong_type"
    assert show("reading", frame({0: 1, 1: 1, 2: TS, 3: 900}))["reason"] == "message"  # imp missing
    assert show("reading", topics.will_payload())["reason"] == "structure"  # a will only on status
    forged_will = cbor2.dumps({0: 4, 40: 1})  # "online", unsigned: not the will
    assert show("status", forged_will)["auth"] == "unverified"
    row = decode("ami/v1/m1/up/bogus", b"x", KEYS, NOW)
    assert (row["reason"], row["meter_id"], row["trusted"]) == ("topic", None, False)
    row = decode(b"ami/v1/m1/up/reading", frame(reading_map(2, TS, 5)), KEYS, NOW)  # bytes topic
    assert row["trusted"] and row["seq"] == 2


def test_units():
    assert kwh(12345) == "12.345 kWh" and kwh(5) == "0.005 kWh" and kwh(0) == "0.000 kWh"
    assert utc(TS) == "2024-05-01 00:00:00Z" and utc(None) is None
