"""``headend console``: the operator's live terminal view of the meters, and a command line.

Pure parts, each tested on its own: ``decode`` (one MQTT message -> a display row, verified
exactly as ingest verifies), ``commands`` (one input line -> an ``Action``, or an error that
names the bad word), ``state`` (what the screen shows: rows, alerts, filter, notes) and
``view`` (rich renderables and plain lines from that state). ``actions`` queues an action's
command through ``headend.commands`` / ``headend.prepaid.service``; ``app`` is the I/O loop
(paho client thread, stdin reader, ``rich.live.Live`` on a terminal, one line per message
otherwise).

Errors are ``ConsoleError`` (a ``HeadendError``, so ``headend.cli``'s one handler prints a
bad ``--meter`` as ``error: ...``); a bad input line is shown in the console and never ends it.
"""

from __future__ import annotations

from headend.errors import ConsoleError  # noqa: F401
