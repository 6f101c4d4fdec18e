"""Operator edits: replace one interval's energy, with a reason, kept in the audit trail.

The audit trail IS the edit store: an edit is an audit row with target
``interval/<start>-<end>``, ``old`` = the slot's value before (imp, exp,
source), ``new`` = {"imp", "exp"}, the reason, the user and the time. The latest
edit of a slot wins; the engine lays edits over measurements and estimates
(source ``edited``) on every run, so a later VEE run never undoes one.

``check_edit`` is pure; ``edit_interval`` writes the audit row and re-runs the
VEE for the meter, in one transaction.
"""

from __future__ import annotations

from headend.errors import VeeError
from headend.vee.config import VeeConfig
from headend.vee.engine import VeeStore, apply, edit_target, plan


def _wh_list(name: str, values, n: int) -> list[int]:
    if not isinstance(values, list | tuple) or len(values) != n:
        raise VeeError("%s: must be a list of %d Wh values (one per rate)" % (name, n), name)
    for i, v in enumerate(values):
        if type(v) is not int or v < 0:
            raise VeeError("%s[%d]: must be a non-negative integer (Wh), got %r" % (name, i, v), name)
    return list(values)


def check_edit(old: tuple | None, interval_end: int, imp, exp, reason, user, iv: int) -> dict:
    """The edit's new value {"imp", "exp"} after checking every argument; ``old`` is
    the slot's current (imp, exp, source) or None if it has no value at all."""
    if type(interval_end) is not int or interval_end % iv:
        raise VeeError(
            "interval_end: must be a multiple of the %d s interval, got %r" % (iv, interval_end), "ts"
        )
    if old is None:
        raise VeeError(
            "interval_end: no interval ends at %d (neither measured nor estimated)" % interval_end, "ts"
        )
    if not isinstance(reason, str) or not reason.strip():
        raise VeeError("reason: an edit needs a reason", "reason")
    if not isinstance(user, str) or not user.strip():
        raise VeeError("user: an edit needs the operator's name", "user")
    n = len(old[0])
    new_imp = _wh_list("imp", imp, n)
    new_exp = list(old[1]) if exp is None else _wh_list("exp", exp, n)
    return {"imp": new_imp, "exp": new_exp}


def edit_interval(store: VeeStore, meter_id: str, interval_end: int, imp, exp=None, *, reason: str,
                  user: str, now: int, cfg: VeeConfig | None = None) -> dict:  # fmt: skip
    """Replace the energy of the interval ending at interval_end; returns the edit and the
    VEE summary of the re-run."""
    cfg = cfg or VeeConfig()
    p = plan(store, meter_id, now, cfg)
    old = p.slots.get(interval_end)
    new = check_edit(old, interval_end, imp, exp, reason, user, p.iv)
    before = {"imp": list(old[0]), "exp": list(old[1]), "source": old[2]}
    start = interval_end - p.iv
    with store.transaction():
        store.add_audit(
            meter_id, edit_target(start, interval_end), before, new, reason.strip(), user.strip(), at=now
        )
        summary = apply(store, plan(store, meter_id, now, cfg), now)
    return {"meter_id": meter_id, "interval_start": start, "interval_end": interval_end, "old": before,
            "new": new, "reason": reason.strip(), "user": user.strip(), "at": now,
            "vee": summary}  # fmt: skip
