"""The head-end's one error family: every error a command can report is a ``HeadendError``.

Each feature raises its own subclass, whose message names what was wrong (and ``field``, when
given, the bad part); ``headend.cli.main`` is the one place they become ``error: ...`` text,
catching ``HeadendError``, ``protocol.errors.ProtocolError``, ``sqlite3.Error`` and
``OSError``. The ones that were ``ValueError``s stay ``ValueError``s (callers that validate
input catch them as such), as cbor2's ``CBORDecodeError`` also subclasses ``ValueError``.

Feature packages re-export their errors (``from headend.billing import BillingError``).
"""

from __future__ import annotations


class HeadendError(Exception):
    """Base class of every error the head-end reports to a user."""

    def __init__(self, msg: str = "", field: str | None = None) -> None:
        super().__init__(msg)
        self.field = field


class CLIError(HeadendError):
    """A bad command-line request (an option value, an unknown meter)."""


# -- db: the database, its migrations, backup and restore


class StorageError(HeadendError):
    """Base of the storage layer's errors."""


class MeterExists(StorageError):
    pass


class UnknownMeter(StorageError):
    pass


class KeystoreError(HeadendError):
    """A secret could not be sealed or opened; the message names the value and the problem."""


class MasterKeyError(KeystoreError):
    """No master key, an unreadable one, or not the one the database was sealed with."""


class BackupError(StorageError):
    """A backup or restore that cannot be made; the message says why."""


# -- meters


class ProvisionError(HeadendError, ValueError):
    """Bad provisioning input; the message names what was wrong."""


class FleetError(HeadendError, ValueError):
    """Bad fleet provisioning input or a conflict; the message names what was wrong."""


# -- ingest (and every MQTT edge: dispatch, console)


class ServiceError(HeadendError):
    """The broker refused the head-end, or its URL is not valid."""


# -- vee


class VeeError(HeadendError, ValueError):
    """Bad input to the VEE (unknown meter, bad edit, ...); ``field`` names what was wrong."""


class VeeConfigError(VeeError):
    """A VEE configuration value is missing, unknown, of the wrong type or out of range."""


# -- billing


class BillingError(HeadendError, ValueError):
    """Base class: a tariff, a load profile or a bill that cannot be computed."""


class TariffError(BillingError):
    """A tariff file that is not valid; ``field`` names the bad part, e.g. ``versions[0].energy``."""


class ProfileError(BillingError):
    """A load-profile CSV that is not valid; the message names the line."""


class PolicyError(BillingError):
    """A bill-run policy file that is not valid; the message names the field."""


class ReviewError(BillingError):
    """A bill review (approve, correct) that cannot be carried out."""


class AccountError(HeadendError, ValueError):
    """An account that cannot be added or linked."""


# -- prepaid


class PrepaidError(HeadendError, ValueError):
    """A payment, top-up, tariff or ledger request that cannot be carried out."""


class BadNotification(PrepaidError):
    """A payment notification that is not well formed."""

    status = 400


class BadSignature(PrepaidError):
    """A payment notification whose signature does not verify."""

    status = 401


class PrepaidStorageError(PrepaidError):
    """A prepaid account or meter that the database does not have as asked."""


# -- commands


class CommandError(HeadendError, ValueError):
    """A command that cannot be built or queued; ``field`` names the bad part."""


# -- notify


class DeliveryError(HeadendError):
    """A notification that could not be delivered this time (the outbox retries it)."""


# -- alerts


class AlertError(HeadendError, ValueError):
    """A bad alert, work order or manual-reading request, or a bad alert setting."""


# -- console and web


class ConsoleError(HeadendError):
    """A bad console option or input line; the message names the bad word."""


class WebUserError(HeadendError, ValueError):
    """A dashboard user that cannot be added."""


class AuthError(HeadendError, ValueError):
    """A user name, role or password that is not acceptable."""
