"""Read a load profile: CSV ``timestamp,kwh``, hourly or 15-minute, validated.

- The header is ``timestamp,kwh``. Each row is the energy (kWh, >= 0) used in the interval
  that *starts* at ``timestamp`` (ISO 8601).
- A timestamp without an offset is local time of the tariff (its fixed ``utc_offset``); one
  with an offset (``Z``, ``+08:00``) is converted to it. Billing time has no daylight
  saving: give offsets across a DST change, or the repeated/missing hour is refused.
- Timestamps strictly increase by one interval, 3600 s or 900 s, told by the first two
  rows; any other step (a gap, a duplicate, a mixed interval) is refused, naming the line.
- Timestamps sit on interval boundaries of local time (``:00`` for hourly data).
- kWh is a decimal >= 0 and below ``MAX_KWH``.
"""

from __future__ import annotations

import csv
import io
import pathlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from headend.errors import ProfileError

INTERVALS = (3600, 900)
MAX_KWH = Decimal(10) ** 9  # per interval: far above any meter; keeps a bill's sums finite


@dataclass(frozen=True)
class Profile:
    """Interval energy: ``points`` are (unix time of the interval start, kWh), in order."""

    interval_s: int
    points: tuple[tuple[int, Decimal], ...]


def _timestamp(text: str, utc_offset: int, where: str) -> int:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ProfileError("%s: timestamp %r is not ISO 8601" % (where, text))
    if dt.tzinfo is None:  # local time of the tariff
        return int(dt.replace(tzinfo=UTC).timestamp()) - utc_offset * 60
    return int(dt.timestamp())


def _kwh(text: str, where: str) -> Decimal:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ProfileError("%s: kwh %r is not a number" % (where, text))
    if not d.is_finite() or d < 0 or d >= MAX_KWH:
        raise ProfileError("%s: kwh %r must be a number >= 0 and below %s" % (where, text, MAX_KWH))
    return d


def parse_profile_csv(text: str, utc_offset: int = 0, *, name: str = "profile") -> Profile:
    """``Profile`` from CSV text; ``utc_offset`` is the tariff's (minutes east of UTC)."""
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = None
    points: list[tuple[int, Decimal]] = []
    interval = None
    first_line = 0
    for row in _rows(rows, name):
        line = rows.line_num
        where = "%s line %d" % (name, line)
        if not row or all(not c.strip() for c in row):
            continue
        cells = [c.strip() for c in row]
        if header is None:
            if [c.lower() for c in cells] != ["timestamp", "kwh"]:
                raise ProfileError("%s: the header must be 'timestamp,kwh', not %r" % (where, ",".join(row)))
            header = cells
            continue
        if len(cells) != 2:
            raise ProfileError("%s: expected 2 fields (timestamp,kwh), got %d" % (where, len(cells)))
        ts = _timestamp(cells[0], utc_offset, where)
        kwh = _kwh(cells[1], where)
        if points:
            step = ts - points[-1][0]
            if interval is None:
                if step not in INTERVALS:
                    raise ProfileError(
                        "%s: %s is %s after the previous row; intervals must be 60 or 15 minutes"
                        % (where, cells[0], _span(step))
                    )
                interval = step
                _aligned(points[0][0], interval, utc_offset, "%s line %d" % (name, first_line))
            elif step != interval:
                raise ProfileError(
                    "%s: %s is %s after the previous row, expected %s (gap, duplicate or mixed intervals)"
                    % (where, cells[0], _span(step), _span(interval))
                )
            _aligned(ts, interval, utc_offset, where)
        else:
            first_line = line
        points.append((ts, kwh))
    if header is None:
        raise ProfileError("%s: empty; expected a 'timestamp,kwh' header and rows" % name)
    if len(points) < 2:
        raise ProfileError("%s: needs at least two rows to tell the interval (60 or 15 minutes)" % name)
    return Profile(interval, tuple(points))


def _rows(reader, name: str):
    """The reader's rows; csv.Error (a field over the csv module's size limit) as ProfileError."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise ProfileError("%s line %d: %s" % (name, reader.line_num, e))
        yield row


def _span(seconds: int) -> str:
    if seconds <= 0:
        return "%d s (not after it)" % seconds
    return "%g minutes" % (seconds / 60)


def _aligned(ts: int, interval: int, utc_offset: int, where: str) -> None:
    if (ts + utc_offset * 60) % interval:
        raise ProfileError(
            "%s: timestamp is not on a %d-minute boundary of local time" % (where, interval // 60)
        )


def read_profile_csv(path: str | pathlib.Path, utc_offset: int = 0) -> Profile:
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError("%s: not UTF-8 text: %s" % (p, e))
    return parse_profile_csv(text, utc_offset, name=str(p))
