"""Read models shared by the pages and the JSON API: the fleet summary and a meter's load
profile. Days are UTC days (meters' ``ts`` are epoch seconds; a reading's ``ts`` ends its
interval, so a reading at 00:00 belongs to the day before)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from headend.web import loadprofile
from headend.web.request import HTTPError

DAY = 86400
MAX_DAYS = 31
DEFAULT_DAYS = 7  # a meter's page opens on a week


def day_start(ts: float) -> int:
    return int(ts) - int(ts) % DAY


def iso_day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def parse_day(text: str | None) -> int | None:
    """Epoch seconds of a YYYY-MM-DD day's start, None when not given; 400 when malformed."""
    if not text:
        return None
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise HTTPError(400, "day must be YYYY-MM-DD, got %r" % text)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def parse_days(text: str | None) -> int:
    if not text:
        return 1
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise HTTPError(400, "days must be a whole number from 1 to %d, got %r" % (MAX_DAYS, text))
    return int(text)


def fleet_summary(store, now: float) -> dict:
    today = day_start(now)
    ds = loadprofile.deltas(store.readings_window(today, int(now)))
    alerts = store.active_alert_counts()
    return {
        **store.fleet_counts(),
        "alerts": {
            "active": sum(sum(s.values()) for s in alerts.values()),
            "open": sum(alerts.get("open", {}).values()),
            "acknowledged": sum(alerts.get("acknowledged", {}).values()),
            "by_state": alerts,
        },
        "today": iso_day(today),
        "energy_today_wh": round(loadprofile.energy_between(ds, today, int(now) + 1), 3),
        "now": now,
    }


def default_view(store, meter_id: str, now: float) -> tuple[int, int]:
    """(day, days) a meter's page opens on: the 7 whole UTC days ending with the last whole
    day of its readings (the day before the latest reading's, unless that reading closes its
    day at midnight), so a day with an hour of data is never the first thing shown; a meter
    whose readings all fall in one partial day opens on the 7 days ending with it; a meter
    without readings on the 7 days before today."""
    first, latest = store.reading_span(meter_id)
    if latest is None:
        return day_start(now) - DAY, DEFAULT_DAYS
    last_whole = day_start(latest) - DAY
    if first is not None and first >= day_start(latest):
        return day_start(latest - 1), DEFAULT_DAYS
    return last_whole, DEFAULT_DAYS


def meter_profile(store, meter_id: str, day: int | None, days: int, now: float) -> dict:
    """Interval import Wh per rate over ``days`` UTC days ending with ``day`` (default: the
    day of the meter's latest reading, else today)."""
    if day is None:
        latest = store.latest_reading_ts(meter_id)
        day = day_start((latest - 1) if latest else now)
    start, end = day - (days - 1) * DAY, day + DAY
    ds = loadprofile.deltas(store.readings_window(start, end, meter_id))
    step = loadprofile.pick_step(ds, 900 if days == 1 else 3600)
    rates = loadprofile.rate_count(ds)
    buckets = loadprofile.bucket(ds, start, end, step, rates)
    totals = [round(sum(b[r] for b in buckets), 3) for r in range(rates)]
    return {
        "meter_id": meter_id,
        "day": iso_day(day),
        "days": days,
        "from": start,
        "to": end,
        "step": step,
        "rates": rates,
        "totals_wh": totals,
        "buckets": [
            {"start": start + i * step, "wh": [round(w, 3) for w in b]} for i, b in enumerate(buckets)
        ],
    }
