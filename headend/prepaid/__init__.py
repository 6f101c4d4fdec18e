"""Prepaid accounts: the ledger, payments, top-up commands and their delivery.

Pure logic here (``ledger``: debit reconstruction and reconciliation; ``payments``: the
signed notification) takes plain data and ``now``; ``service`` joins it to the storage layer
(``headend.prepaid.store``); ``payserver`` is the HTTP edge, ``dispatch`` the MQTT edge.
Errors are ``PrepaidError`` (a ``ValueError``) whose message names what was wrong; the CLI
turns them into ``error: ...`` text.
"""

from __future__ import annotations


class PrepaidError(ValueError):
    """A payment, top-up, tariff or ledger request that cannot be carried out."""

    def __init__(self, msg: str, field: str | None = None):
        super().__init__(msg)
        self.field = field
