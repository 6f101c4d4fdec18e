"""headend.console.view and state: what the screen and the plain lines show, rendered by rich."""

from __future__ import annotations

from rich.console import Console

from headend.console import view
from headend.console.decode import decode
from headend.console.state import ConsoleState
from protocol import topics
from tests.headend.broker_support import cwt_frame, reading_map

KEY = bytes(range(32))
KEYS = {"m1": KEY, "m2": KEY}
TS = 1714521600


def render(renderable, width: int = 160, height: int | None = None) -> str:
    console = Console(record=True, width=width, height=height, color_system="truecolor", force_terminal=True)
    console.print(renderable)
    return console.export_text()


def rows() -> list[dict]:
    reading = decode(
        topics.up("m1", "reading"), cwt_frame(KEY, "m1", reading_map(5, TS, 12345)), KEYS, TS + 1
    )
    event = decode(topics.up("m2", "event"), cwt_frame(KEY, "m2", {0: 2, 1: 6, 2: TS, 10: 4}), KEYS, TS + 2)
    forged = decode(
        topics.up("m1", "event"), cwt_frame(bytes(32), "m1", {0: 2, 1: 7, 2: TS, 10: 3}), KEYS, TS + 3
    )
    will = decode(topics.up("m2", "status"), topics.will_payload(), KEYS, TS + 4)
    return [reading, event, forged, will]


def alert(id_: int, meter: str, severity: str = "critical", state: str = "open") -> dict:
    return {"id": id_, "meter_id": meter, "severity": severity, "state": state, "rule": "tamper",
            "summary": "terminal cover opened on %s" % meter, "first_seen": TS}  # fmt: skip


def test_the_stream_table_shows_each_row_decoded():
    text = render(view.stream_table(rows()))
    cells = ("meter time (UTC)", "details", "00:00:01", "m1", "reading", "2024-05-01 00:00:00Z")
    cells += ("imp 12.345 kWh", "P 230 W", "flags none", "magnetic tamper", "status (will)", "offline")
    for cell in cells:
        assert cell in text, cell
    line = next(x for x in text.splitlines() if "UNVERIFIED" in x)
    assert "refused (tag)" in line and "terminal cover" not in line


def test_unverified_rows_are_red_and_the_rest_by_level():
    table = view.stream_table(rows())
    kinds = table.columns[2]._cells
    assert kinds[2].plain == "UNVERIFIED" and kinds[2].style == view.LEVEL_STYLES["bad"]
    assert kinds[0].style == view.KIND_STYLES["reading"]
    details = table.columns[5]._cells
    assert details[2].style == "red"
    assert any(span.style == view.LEVEL_STYLES["alert"] for span in details[1].spans)  # a tamper event


def test_the_alerts_panel_lists_open_alerts_of_the_filtered_meter():
    state = ConsoleState()
    assert "no open alerts" in render(view.alerts_panel(state))
    state.alerts = [alert(1, "m1"), alert(2, "m2", "warning", "acknowledged")]
    text = render(view.alerts_panel(state))
    assert "open alerts (2)" in text
    for cell in (
        "critical",
        "warning",
        "acknowledged",
        "tamper",
        "terminal cover opened on m2",
        "2024-05-01",
    ):
        assert cell in text, cell
    state.meter_filter = "m2"
    text = render(view.alerts_panel(state))
    assert "open alerts (1) of m2" in text and "on m1" not in text
    state.alerts = [alert(i, "m2") for i in range(1, 12)]
    assert "and 3 more" in render(view.alerts_panel(state))


def test_the_screen_has_header_stream_alerts_and_input_and_follows_the_filter():
    state = ConsoleState(broker="127.0.0.1:1883", connected=True)
    for r in rows():
        state.add_row(r)
    state.alerts = [alert(1, "m1")]
    state.note("ok", "queued command 1 to m1")
    state.note("error", "relay: 'opn': the relay state must be open or close")
    state.input_buffer = "read-now m"
    text = render(view.screen(state, 40), height=40)
    cells = ("headend console", "connected", "all meters", "frames 4", "unverified 1", "live stream")
    cells += (
        "12.345 kWh",
        "open alerts (1)",
        "queued command 1 to m1",
        "error: relay: 'opn'",
        "> read-now m",
    )
    for cell in cells:
        assert cell in text, cell
    state.meter_filter = "m2"
    text = render(view.screen(state, 40), height=40)
    assert "filter m2" in text and "magnetic tamper" in text and "12.345 kWh" not in text
    assert "no open alerts" in text
    state.show_help = True
    text = render(view.screen(state, 40), height=40)
    assert "relay METER open|close [REASON] [ttl=S]" in text and "filter METER|all" in text


def test_a_short_screen_shows_the_newest_rows():
    state = ConsoleState()
    for seq in range(1, 60):
        state.add_row(
            decode(topics.up("m1", "reading"), cwt_frame(KEY, "m1", reading_map(seq, TS, seq)), KEYS, TS)
        )
    text = render(view.screen(state, 30), height=30)
    assert "0.059 kWh" in text and "0.001 kWh" not in text


def test_plain_lines():
    reading, event, forged, will = rows()
    assert view.plain_row(reading) == (
        "00:00:01 m1 reading seq 5 at 2024-05-01 00:00:00Z  imp 12.345 kWh  exp 0.000 kWh  P 230 W"
        "  flags none"
    )
    assert view.plain_row(event).startswith(
        "00:00:02 m2 event seq 6 at 2024-05-01 00:00:00Z  event magnetic tamper"
    )
    assert view.plain_row(forged) == "00:00:03 m1 UNVERIFIED event refused (tag): tag does not verify"
    assert view.plain_row(will) == "00:00:04 m2 status offline (unsigned will)"
    assert (
        view.plain_alert("open", alert(3, "m1"))
        == "alert #3 open critical tamper m1: terminal cover opened on m1"
    )
    assert view.plain_note("error", "bad") == "error: bad" and view.plain_note("ok", "fine") == "fine"
    assert any("topup METER AMOUNT" in line for line in view.help_lines())


def test_state_filters_and_reports_alert_changes():
    state = ConsoleState(meter_filter="m1")
    shown = [state.add_row(r) for r in rows()]
    assert shown == [True, False, True, False]
    assert state.counts == {"frames": 4, "unverified": 1}
    assert [r["meter_id"] for r in state.visible_rows()] == ["m1", "m1"]
    assert state.alert_changes([alert(1, "m1"), alert(2, "m2")]) == [
        ("open", alert(1, "m1")),
        ("open", alert(2, "m2")),
    ]
    changes = state.alert_changes([alert(1, "m1", state="acknowledged")])
    assert changes == [("acknowledged", alert(1, "m1", state="acknowledged")), ("cleared", alert(2, "m2"))]
    assert state.alert_changes([alert(1, "m1", state="acknowledged")]) == []
    assert [a["id"] for a in state.visible_alerts()] == [1]


def test_a_narrow_terminal_gets_a_compact_stream():
    state = ConsoleState()
    for r in rows():
        state.add_row(r)
    text = render(view.screen(state, 24, 80), width=80, height=24)
    assert "meter time (UTC)" in text and "imp 12.345 kWh" in text
    assert " seq " not in text and "00:00:01" not in text  # receive time and seq left out
    assert " seq " in render(view.screen(state, 24, 160), width=160, height=24)
