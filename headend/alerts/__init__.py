"""Alerts: rules over meter data, their lifecycle, notifications and field work orders.

Pure parts take plain rows and ``now``: ``config`` (thresholds), ``usage`` (energy
arithmetic), ``rules`` and ``rules_events`` (one function per rule, returning
``model.Candidate`` alerts), ``notify`` (the text of a notification). ``gather`` reads the
inputs through the storage layer (``headend.alerts.store``); ``engine.run_alerts`` runs the
rules and reconciles their candidates with the stored alerts in one transaction;
``workorders`` is what field staff do (their manual readings: ``headend.vee.manual``).

Lifecycle: ``open`` -> ``acknowledged`` -> ``resolved``, or ``open`` -> ``resolved``. Every
change is a row of ``alert_audit``. Errors are ``AlertError`` (a ``ValueError``) naming what
was wrong; the CLI turns them into ``error: ...`` text.
"""

from __future__ import annotations

from headend.errors import AlertError  # noqa: F401

SEVERITIES = ("info", "warning", "critical")
STATES = ("open", "acknowledged", "resolved")
ACTIVE = ("open", "acknowledged")
ENGINE_USER = "alerts"  # the ``user`` of changes the engine makes (opening, auto-resolving)


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)
