"""Queue a command for ``headend dispatch`` and describe queued commands.

``queue(store, meter_id, cmd, args, now, ttl=None, ref=None) -> dict`` checks ``args`` with
``protocol.commands.command_args`` (a ``ProtocolError`` names the bad arg, as the meter's
ack 4 would), seals the command (COSE_Mac0 under the meter's key; COSE_Encrypt0 for a meter
that requires privacy, headend/meters/privacy.py) with the meter's next
command ``seq`` and stores it, state ``queued``, in one transaction. The frame is sealed
once: the dispatcher resends the very same bytes, so a repeat is a duplicate to the meter.

``expires`` is ``now + ttl`` (default per type, ``DEFAULT_TTL``); the dispatcher stops
resending then. It is also the frame's key 22, so the meter refuses a late command
(ack 3), except for time sync: the meter judges expiry by its own clock, the very thing
a time sync corrects, so a meter running ahead would refuse every sync. Its frame has no
key 22 and only the head-end's ``expires`` bounds it (default 30 s: one send at the
default back-off, since a resend carries the queued time, late by the back-off).

``describe(store, command_id, history=False) -> dict`` the command as stored, its args
decoded from the sealed frame (verified with the meter's key) and named; with ``history``
its log (queued, each send, the outcome) and every ack the meter sent for it, results named
as in docs/protocol.md (``RESULT_NAMES``).
"""

from __future__ import annotations

from headend.commands import CMD_NAMES, RESULT_NAMES
from headend.commands.build import describe_args
from headend.errors import CommandError
from headend.meters import privacy
from protocol import commands, messages

DAY = 86400
DEFAULT_TTL = {
    messages.CMD_RELAY: DAY,
    messages.CMD_SET_TARIFF: 7 * DAY,
    messages.CMD_TIME_SYNC: 30,
    messages.CMD_READ_NOW: 600,
    messages.CMD_SET_CONFIG: 7 * DAY,
}
NO_WIRE_EXPIRY = (messages.CMD_TIME_SYNC,)
FIELDS = ("id", "meter_id", "seq", "cmd", "name", "args", "state", "expires", "attempts", "result",
          "result_name", "reason", "ref", "created_at", "sent_at", "done_at", "ack_ts")  # fmt: skip


def queue(store, meter_id: str, cmd: int, args: dict, now: float, ttl: int | None = None, ref=None) -> dict:
    meter = store.meter(meter_id)
    if meter is None:
        raise CommandError("unknown meter %r" % meter_id, "meter_id")
    ttl = DEFAULT_TTL.get(cmd, 7 * DAY) if ttl is None else ttl
    if ttl < 1:
        raise CommandError("--ttl must be at least 1 s, got %d" % ttl, "ttl")
    commands.command_args(cmd, args)
    ts = int(now)
    expires = ts + ttl
    wire_expires = None if cmd in NO_WIRE_EXPIRY else expires

    def make_command(seq: int):
        msg = messages.command(seq, ts, cmd, args, expires=wire_expires)
        return cmd, args, privacy.seal_command(meter, msg), expires

    row = store.enqueue_command(meter_id, make_command, now, ref)
    return describe(store, row["id"])


def describe(store, command_id: int, history: bool = False) -> dict:
    c = store.command(command_id)
    if c is None:
        raise CommandError("unknown command id %d" % command_id, "id")
    msg = privacy.open_command(store.meter(c["meter_id"]), c["frame"])
    out = {k: c.get(k) for k in FIELDS}
    out.update(
        name=CMD_NAMES.get(c["cmd"], "cmd %d" % c["cmd"]),
        args=describe_args(msg["cmd"], commands.command_args(msg["cmd"], msg["args"])),
        result_name=RESULT_NAMES.get(c["result"]),
        ts=msg["ts"],
        wire_expires=msg.get("expires"),
    )
    if history:
        out["history"] = [
            {**e, "result_name": RESULT_NAMES.get(e["result"])} for e in store.command_log(c["id"])
        ]
        out["acks"] = [
            {**a, "result_name": RESULT_NAMES.get(a["result"])}
            for a in store.command_acks(c["meter_id"], c["seq"])
        ]
    return out
