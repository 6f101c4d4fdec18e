"""What rules read (``MeterInput``, one per meter) and what they return (``Candidate``).

Rows are plain dicts as the storage layer gives them, JSON columns decoded:
  ``meter``     meters row (``meter_id``, ``online``, ``last_seen``, ``status_seq``, ...)
  ``account``   the open account link's account (``account_id``, ``billing``, ``tariff_id``,
                ``zone``, ``address``) or None
  ``readings``  ``seq, ts, received_at, interval, imp, exp, balance, flags, vee_state`` received
                at or before ``now`` with ts in the lookback window, by ts; ``usable`` the same
                without VEE-failed ones
  ``last``      the reading received last at or before ``now`` by the head-end's clock
                (``received_at``), whatever its ts, or None: what comm_loss and clock_drift judge
  ``events``    ``seq, ts, code, detail, received_at`` received in the event window, by seq
  ``seen``      (rule, key) -> highest event seq of a resolved alert: event rules consider
                only later events, so a resolved incident is never raised again
  ``relay``     the last acked relay command (``seq``, ``args``, ``ack_ts``) or None
  ``vee_failed`` ``seq, ts, rule, detail`` of readings VEE left ``failed``
  ``balance``   the prepaid reconciliation of the latest reading with a balance or None:
                ``seq, ts, meter_balance, expected, in_flight``
  ``daily``     local day number -> import Wh (days with a reading near both midnights)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

# every rule, by the name of its function in ``rules`` (which checks this list at import): the
# names ``disabled_rules`` may give and alerts carry
RULE_NAMES = (
    "comm_loss", "tamper", "reverse_energy", "line_neutral_mismatch", "fluctuation_history",
    "zero_consumption", "clock_drift", "clock_step", "relay_mismatch", "balance_mismatch",
    "low_balance", "vee_failures", "metering_ic_fault", "fluctuation_peers",
)  # fmt: skip


@dataclass
class Candidate:
    """One alert a rule would raise now. ``key`` separates incidents of one rule on one meter
    (e.g. tamper ``cover`` / ``magnet``); ``ref_seq`` is the highest event seq it covers (event
    rules); ``theft`` asks for a field work order."""

    rule: str
    meter_id: str
    severity: str
    summary: str
    action: str
    evidence: dict
    key: str = ""
    ref_seq: int | None = None
    theft: bool = False


@dataclass
class MeterInput:
    meter_id: str
    meter: dict
    account: dict | None = None
    readings: list[dict] = field(default_factory=list)
    last: dict | None = None
    events: list[dict] = field(default_factory=list)
    seen: dict[tuple[str, str], int] = field(default_factory=dict)
    relay: dict | None = None
    vee_failed: list[dict] = field(default_factory=list)
    balance: dict | None = None
    daily: dict[int, int] = field(default_factory=dict)

    @property
    def usable(self) -> list[dict]:
        return [r for r in self.readings if r.get("vee_state") != "failed"]

    def new_events(self, rule: str, codes: tuple[int, ...], key: str = "") -> list[dict]:
        """Events of ``codes`` later than the last resolved alert of (rule, key)."""
        after = self.seen.get((rule, key), 0)
        return [e for e in self.events if e["code"] in codes and e["seq"] > after]


def iso(ts: float | None) -> str | None:
    """UTC ISO 8601 text of epoch seconds (for summaries and evidence)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")
