"""The one exception family of the wire protocol.

Every failure to decode, authenticate or validate a frame raises
``ProtocolError`` (a ``ValueError``) or one of its subclasses, on CPython and
on MicroPython alike. ``field`` names what was wrong (a message key such as
``"reading.imp[2]"``, a COSE check such as ``"tag"``), so a receiver can count
and quarantine by reason without parsing the text.
"""


class ProtocolError(ValueError):
    """Base class: anything wrong with a frame, a message or a tariff."""

    def __init__(self, msg, field=None):
        super().__init__(msg)
        self.field = field


class CBORError(ProtocolError):
    """Malformed CBOR, or a value this runtime cannot represent or encode."""


class COSEError(ProtocolError):
    """A COSE_Mac0 envelope failed a check; ``field`` is the check:
    ``structure``, ``alg``, ``kid`` or ``tag``."""
