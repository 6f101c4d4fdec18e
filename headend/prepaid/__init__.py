"""Prepaid accounts: the ledger, payments, top-up commands and their delivery.

Pure logic here (``ledger``: debit reconstruction and reconciliation; ``payments``: the
signed notification) takes plain data and ``now``; ``service`` joins it to the storage layer
(``headend.prepaid.store``); ``payserver`` is the HTTP edge, ``dispatch`` the MQTT edge.
Errors are ``PrepaidError`` (a ``ValueError``) whose message names what was wrong; the CLI
turns them into ``error: ...`` text.
"""

from __future__ import annotations

from headend.errors import PrepaidError  # noqa: F401
