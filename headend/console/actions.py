"""Queue the command an input line asked for, by the same path as the command line.

``queue_action(store, action, now) -> dict`` for relay, read-now, time-sync, config and tariff
calls ``headend.commands.queue.queue`` (the path of ``headend command ...``; a tariff file is
converted by ``headend command tariff``'s own conversion for this meter's rates); a top-up is
credited like ``headend topup`` (``headend.prepaid.service.credit``, source ``counter``,
payment id ``console-<random>``), which books the payment and queues its command. It returns
``{"meter_id", "seq", "name", "text", "notes"}`` and ``command_id`` (or a top-up's
``payment_id``); ``text`` is one line for the operator.
Publishing is the caller's (``headend.console.app`` runs a dispatcher round at once).

Errors are the queue's own (``CommandError``, ``PrepaidError``, ``ProtocolError``, billing
errors of a bad tariff file), each naming what was wrong.
"""

from __future__ import annotations

import json
import secrets

from headend.commands import tariff as tariff_file
from headend.commands.queue import queue
from headend.console.commands import Action
from headend.console.decode import utc
from headend.prepaid.ledger import units
from headend.prepaid.service import DEFAULT_TTL as TOPUP_TTL
from headend.prepaid.service import credit
from protocol import messages

QUEUED = ("relay", "read-now", "time-sync", "config", "tariff", "topup")


def _topup(store, action: Action, now: float) -> dict:
    payment_id = "console-" + secrets.token_hex(8)
    got = credit(store, payment_id, action.amount, now, meter_id=action.meter_id, source="counter",
                 ttl=action.ttl or TOPUP_TTL)  # fmt: skip
    text = "queued top-up %s to %s (account %s, payment %s): command seq %d" % (
        units(got["amount"]), got["meter_id"], got["account_id"], payment_id, got["seq"])  # fmt: skip
    return {"meter_id": got["meter_id"], "seq": got["seq"], "name": "top-up", "text": text, "notes": [],
            "payment_id": payment_id}  # fmt: skip


def queue_action(store, action: Action, now: float) -> dict:
    """Queue ``action``'s command; what was queued (module docstring)."""
    if action.verb not in QUEUED:
        raise ValueError("%s queues no command" % action.verb)
    if action.verb == "topup":
        return _topup(store, action, now)
    cmd, args, ref, notes = action.cmd, action.args, None, []
    if action.verb == "tariff":
        cmd = messages.CMD_SET_TARIFF  # the conversion `command tariff` uses
        args, ref, notes = tariff_file.for_meter(store, action.meter_id, action.path, action.activate_at,
                                                 action.tariff_id, now)  # fmt: skip
    row = queue(store, action.meter_id, cmd, args, now, action.ttl, ref)
    what = (row["id"], row["meter_id"], row["seq"], row["name"], json.dumps(row["args"]), utc(row["expires"]))
    text = "queued command %d to %s: seq %d %s %s, expires %s" % what
    return {"meter_id": row["meter_id"], "seq": row["seq"], "name": row["name"], "text": text, "notes": notes,
            "command_id": row["id"]}  # fmt: skip
