"""Operator commands to meters (docs/protocol.md, Command type 10) of every type.

``build`` makes the int-keyed args map of each command from operator input (relay, time
sync, read now, set config) and names a command's args for display; ``tariff`` turns a
tariff file into set-tariff args the meter can run; ``queue`` checks the args with
``protocol.commands.command_args``, seals the command with the meter's key under its next
command ``seq`` and stores it in the ``commands`` table that ``headend dispatch`` delivers.
Top-ups are queued by ``headend.prepaid.service.credit``, which also books the payment.

``dispatch`` is the MQTT edge that delivers the queue (``headend dispatch``), ``store`` its SQL,
``cli`` the commands (command ..., commands list, dispatch). Errors are ``CommandError`` (a
``HeadendError``) whose message names the bad field or option.
"""

from __future__ import annotations

from headend.errors import CommandError  # noqa: F401
from protocol import messages

CMD_NAMES = {
    messages.CMD_TOPUP: "top-up",
    messages.CMD_RELAY: "relay",
    messages.CMD_SET_TARIFF: "set-tariff",
    messages.CMD_TIME_SYNC: "time-sync",
    messages.CMD_READ_NOW: "read-now",
    messages.CMD_SET_CONFIG: "set-config",
}
# ack results by their docs/protocol.md names (Ack, key 31)
RESULT_NAMES = {
    messages.ACK_DONE: "done",
    messages.ACK_DUPLICATE: "duplicate",
    messages.ACK_STALE: "stale",
    messages.ACK_EXPIRED: "expired",
    messages.ACK_BAD_ARGS: "bad arguments",
    messages.ACK_UNSUPPORTED: "not supported",
    messages.ACK_FAILED: "failed",
}
