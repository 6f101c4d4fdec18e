"""Helpers of the security tests: ingest counters read from the database, and a client of
the broker that records what it is allowed to see."""

from __future__ import annotations

from headend.db.storage import Storage
from tests.headend.broker_support import MeterClient


def counters(db: str) -> dict:
    with Storage(db) as s:
        return s.counters()


def total(c: dict) -> int:
    """Every message serve has judged: accepted, duplicates and rejected by any reason."""
    return (
        c.get("accepted", 0)
        + c.get("duplicates", 0)
        + sum(v for k, v in c.items() if k.startswith("rejected:"))
    )


def listener(
    user: str, password: str, port: int, topic_filter: str, client_id: str | None = None
) -> MeterClient:
    """A broker client (any user) subscribed to ``topic_filter``; ``.received`` fills up. A
    head-end-user listener needs a ``client_id`` of its own (not serve's ``headend.ingest``)."""
    c = MeterClient(user, password, port, client_id=client_id)
    c.client.subscribe(topic_filter, qos=1)
    return c
