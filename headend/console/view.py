"""Rich renderables and plain lines from a ``ConsoleState`` (pure: nothing is printed here).

Full screen (``screen(state, height)``): a header line (broker, connection, filter,
counts), the live stream table (newest last, as many rows as fit), the open alerts table and
the notes panel with the input line; ``help`` replaces the alerts with the command list.
Colours: stream rows by their ``level`` (``LEVEL_STYLES``: green ok, cyan info, yellow warn,
red alert, white on red for frames that did not verify), alerts by severity.

Line mode (stdout not a terminal): ``plain_row(row)``, ``plain_alert(change, alert)``,
``plain_note(level, text)`` and ``help_lines()`` are single lines of text without markup.
"""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from headend.console.commands import HELP
from headend.console.decode import utc
from headend.console.state import ConsoleState

LEVEL_STYLES = {
    "ok": "green",
    "info": "cyan",
    "warn": "yellow",
    "alert": "bold red",
    "bad": "bold white on red",
}
KIND_STYLES = {
    "reading": "green",
    "event": "magenta",
    "ack": "blue",
    "status": "cyan",
    "rejected": "bold red",
}
SEVERITY_STYLES = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
NOTE_STYLES = {"ok": "green", "info": "default", "warn": "yellow", "error": "bold red"}
NOTE_LINES = 5  # notes shown above the input line
MAX_ALERT_ROWS = 8
COMPACT_BELOW = 120  # columns: narrower terminals get the stream without receive time and seq


def kind_label(row: dict) -> str:
    if row["kind"] == "rejected":
        return "UNVERIFIED"
    if row["auth"] == "will":
        return "status (will)"
    return row["kind"]


def details(row: dict) -> Text:
    """The row's fields, labels dim and values in the row's colour."""
    style = LEVEL_STYLES.get(row["level"], "")
    if row["kind"] == "rejected":
        return Text(
            "%s frame refused (%s): %s, %s" % (row["fields"][0][1], row["reason"], row["detail"] or "",
                                               row["fields"][-1][1]),
            style="red",
        )  # fmt: skip
    text = Text()
    for i, (label, value) in enumerate(row["fields"]):
        if i:
            text.append("  ")
        text.append(label + " ", style="dim")
        text.append(value, style=style)
    return text


def stream_table(rows: list[dict], compact: bool = False) -> Table:
    """The stream, newest last; ``compact`` (narrow terminals) leaves out receive time and seq."""
    t = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, pad_edge=False)
    if not compact:
        t.add_column("time", no_wrap=True, style="dim")
    t.add_column("meter", no_wrap=True, style="bold")
    t.add_column("kind", no_wrap=True)
    if not compact:
        t.add_column("seq", justify="right", no_wrap=True)
    t.add_column("meter time (UTC)", no_wrap=True)
    t.add_column("details", ratio=1, no_wrap=True, overflow="ellipsis")
    for r in rows:
        kind_style = LEVEL_STYLES["bad"] if r["kind"] == "rejected" else KIND_STYLES.get(r["kind"], "")
        cells = [
            Text(r["received"]),
            Text(r["meter_id"] or "?"),
            Text(kind_label(r), style=kind_style),
            Text("" if r["seq"] is None else str(r["seq"])),
            Text(r["ts"] or ""),
            details(r),
        ]
        t.add_row(*([cells[1], cells[2], cells[4], cells[5]] if compact else cells))
    return t


def alerts_table(alerts: list[dict]) -> Table:
    t = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, pad_edge=False)
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("severity", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("rule", no_wrap=True)
    t.add_column("meter", no_wrap=True, style="bold")
    t.add_column("since (UTC)", no_wrap=True)
    t.add_column("summary", ratio=1, no_wrap=True, overflow="ellipsis")
    for a in alerts:
        t.add_row(
            Text(str(a["id"])),
            Text(a["severity"], style=SEVERITY_STYLES.get(a["severity"], "")),
            Text(a["state"]),
            Text(a["rule"]),
            Text(a["meter_id"]),
            Text(utc(a.get("first_seen")) or ""),
            Text(a["summary"]),
        )
    return t


def alerts_panel(state: ConsoleState, max_rows: int = MAX_ALERT_ROWS) -> Panel:
    alerts = state.visible_alerts()
    title = "open alerts (%d)%s" % (
        len(alerts),
        "" if state.meter_filter is None else " of " + state.meter_filter,
    )
    if state.alerts_error:
        body = Text("cannot read alerts: " + state.alerts_error, style="bold red")
    elif not alerts:
        body = Text("no open alerts", style="green")
    else:
        shown = alerts[-max_rows:]
        more = len(alerts) - len(shown)
        body = alerts_table(shown)
        if more:
            body = Group(body, Text("... and %d more (headend alerts list)" % more, style="dim"))
    return Panel(body, title=title, title_align="left", border_style="red" if alerts else "green")


def help_table() -> Table:
    t = Table(box=None, show_header=False, expand=True, pad_edge=False)
    t.add_column("command", style="bold cyan", no_wrap=True)
    t.add_column("what it does", ratio=1, no_wrap=True, overflow="ellipsis")
    for syntax, what in HELP:
        t.add_row(Text(syntax), Text(what))
    return t


def header(state: ConsoleState) -> Text:
    text = Text()
    text.append(" headend console ", style="bold white on blue")
    text.append("  broker %s " % state.broker)
    if state.connected:
        text.append("connected", style="bold green")
    else:
        text.append("disconnected", style="bold red")
    text.append("  filter ")
    text.append(state.meter_filter or "all meters", style="bold")
    text.append("  frames %d" % state.counts["frames"])
    if state.counts["unverified"]:
        text.append("  unverified %d" % state.counts["unverified"], style="bold red")
    return text


def notes_panel(state: ConsoleState, lines: int = NOTE_LINES) -> Panel:
    body = Text()
    for level, note in list(state.notes)[-lines:]:
        body.append(("error: " if level == "error" else "") + note + "\n", style=NOTE_STYLES.get(level, ""))
    body.append("> ", style="bold cyan")
    body.append(state.input_buffer)
    body.append("_", style="blink")
    if state.input_hint:
        body.append("   " + state.input_hint, style="dim")
    return Panel(body, title="commands (help, quit)", title_align="left", border_style="cyan")


def screen(state: ConsoleState, height: int, width: int = 160) -> Layout:
    """The whole screen for a terminal ``height`` lines tall and ``width`` wide."""
    alerts = state.visible_alerts()
    notes_size = min(len(state.notes), NOTE_LINES) + 3
    if state.show_help:
        side: Panel = Panel(help_table(), title="help", title_align="left", border_style="cyan")
        side_size = len(HELP) + 2
    else:
        side = alerts_panel(state)
        side_size = (min(len(alerts), MAX_ALERT_ROWS) + 4 + (len(alerts) > MAX_ALERT_ROWS)) if alerts else 3
    stream_size = max(5, height - 1 - side_size - notes_size)
    rows = state.visible_rows(max(1, stream_size - 4))
    layout = Layout()
    layout.split_column(
        Layout(header(state), name="header", size=1),
        Layout(
            Panel(
                stream_table(rows, width < COMPACT_BELOW),
                title="live stream",
                title_align="left",
                border_style="blue",
            ),  # fmt: skip
            name="stream",
            ratio=1,
        ),
        Layout(side, name="side", size=side_size),
        Layout(notes_panel(state), name="notes", size=notes_size),
    )
    return layout


# ---------------------------------------------------------------- line mode


def plain_row(row: dict) -> str:
    meter = row["meter_id"] or "?"
    if row["kind"] == "rejected":
        return "%s %s UNVERIFIED %s refused (%s): %s" % (
            row["received"], meter, row["fields"][0][1], row["reason"], row["detail"] or "")  # fmt: skip
    if row["auth"] == "will":
        return "%s %s status offline (unsigned will)" % (row["received"], meter)
    return "%s %s %s seq %s at %s  %s" % (
        row["received"],
        meter,
        row["kind"],
        row["seq"],
        row["ts"],
        row["summary"],
    )


def plain_alert(change: str, alert: dict) -> str:
    a = alert
    what = (a["id"], change, a["severity"], a["rule"], a["meter_id"], a["summary"])
    return "alert #%d %s %s %s %s: %s" % what


def plain_note(level: str, text: str) -> str:
    return ("error: " if level == "error" else "") + text


def help_lines() -> list[str]:
    width = max(len(s) for s, _ in HELP)
    return ["  %-*s  %s" % (width, syntax, what) for syntax, what in HELP]
