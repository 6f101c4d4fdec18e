"""Prepaid accounts: the ledger, payments and the top-up commands they queue.

Pure logic here (``ledger``: debit reconstruction and reconciliation; ``payments``: the
signed notification) takes plain data and ``now``; ``service`` joins it to the storage layer
(``headend.prepaid.store``); ``payserver`` is the HTTP edge; ``cli`` the commands (topup, pay,
prepaid). Top-up commands are delivered by ``headend.commands.dispatch``.
Errors are ``PrepaidError`` (a ``ValueError``) whose message names what was wrong; the CLI
turns them into ``error: ...`` text.
"""

from __future__ import annotations

from headend.errors import PrepaidError  # noqa: F401
