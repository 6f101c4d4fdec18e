"""What a validation rule returns, and the reading facts every rule shares."""

from __future__ import annotations

from typing import NamedTuple

from headend.vee.config import VeeConfig

FLAG_RELAY_OPEN = 1  # docs/protocol.md reading flags
FLAG_CLOCK_UNSYNCED = 2
FLAG_BACKLOG = 16


class Result(NamedTuple):
    ts: int
    rule: str
    outcome: str  # "warn" | "fail" (a pass is the absence of a result)
    detail: str
    seqs: tuple[int, ...]  # readings the verdict applies to


def expected_interval(meter: dict, cfg: VeeConfig) -> int:
    """The meter's reading interval: its own row's ``interval`` or the configured one."""
    return meter.get("interval") or cfg.interval_s
