"""What the console shows, as plain data (pure): stream rows, open alerts, filter, notes.

``ConsoleState`` keeps the last ``MAX_ROWS`` decoded rows (``headend.console.decode``), the
active alerts (``Storage.active_alerts`` rows), the meter filter, the operator's notes
(command results and errors, newest last), the input being typed and the connection state.
``visible_rows()`` / ``visible_alerts()`` apply the filter; ``alert_changes(alerts)`` stores
a fresh alert list and says what changed (for the line-per-message mode).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MAX_ROWS = 500
MAX_NOTES = 50


@dataclass
class ConsoleState:
    broker: str = ""
    client_id: str = ""
    meter_filter: str | None = None
    connected: bool = False
    rows: deque = field(default_factory=lambda: deque(maxlen=MAX_ROWS))
    alerts: list[dict] = field(default_factory=list)
    alerts_error: str | None = None
    notes: deque = field(default_factory=lambda: deque(maxlen=MAX_NOTES))  # (level, text)
    input_buffer: str = ""
    input_hint: str = ""
    show_help: bool = False
    counts: dict = field(default_factory=lambda: {"frames": 0, "unverified": 0})

    def add_row(self, row: dict) -> bool:
        """Keep a decoded row; True if the filter shows it."""
        self.rows.append(row)
        self.counts["frames"] += 1
        if not row["trusted"] and row["auth"] == "unverified":
            self.counts["unverified"] += 1
        return self.shows(row.get("meter_id"))

    def shows(self, meter_id: str | None) -> bool:
        return self.meter_filter is None or meter_id == self.meter_filter

    def visible_rows(self, limit: int | None = None) -> list[dict]:
        rows = [r for r in self.rows if self.shows(r.get("meter_id"))]
        return rows[-limit:] if limit else rows

    def visible_alerts(self) -> list[dict]:
        return [a for a in self.alerts if self.shows(a.get("meter_id"))]

    def note(self, level: str, text: str) -> None:
        self.notes.append((level, text))

    def alert_changes(self, alerts: list[dict]) -> list[tuple[str, dict]]:
        """Replace the alert list; ``(change, alert)`` for each alert that is new (``open``,
        ``acknowledged``), changed state or severity, or is no longer active (``cleared``)."""
        old = {a["id"]: a for a in self.alerts}
        new = {a["id"]: a for a in alerts}
        changes: list[tuple[str, dict]] = []
        for a in alerts:
            before = old.get(a["id"])
            if before is None or (before["state"], before["severity"]) != (a["state"], a["severity"]):
                changes.append((a["state"], a))
        changes += [("cleared", a) for i, a in old.items() if i not in new]
        self.alerts = list(alerts)
        return changes
