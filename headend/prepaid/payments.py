"""The signed payment notification of an online payment platform, checked.

A platform POSTs JSON ``{"payment_id", "account_id", "amount", "paid_at", "sign"}``: every
value a string, ``amount`` a decimal of currency units. ``sign`` is the lower-case hex
HMAC-SHA256, under the merchant secret, of the canonical string: every other field with a
non-empty value, sorted by name, as ``name=value`` joined by ``&`` (the WeChat Pay v2 /
Alipay shape). Unknown fields are signed too, so nothing unsigned rides along.

``check_notification(body, secret) -> Notification`` raises ``BadNotification`` (HTTP 400)
or ``BadSignature`` (HTTP 401). Pure: no clock, no storage.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from headend.errors import BadNotification, BadSignature, PrepaidError  # noqa: F401
from headend.prepaid.ledger import parse_amount

REQUIRED = ("payment_id", "account_id", "amount", "paid_at", "sign")
MAX_BODY = 16 * 1024
MAX_FIELD = 128
SUCCESS = {"code": "SUCCESS", "message": "OK"}


@dataclass(frozen=True)
class Notification:
    payment_id: str
    account_id: str
    amount: int  # milli-units
    paid_at: str
    body: str  # the canonical string, kept with the payment


def _utf8(text: str) -> bool:
    """False for a str holding a lone surrogate (JSON ``"\\ud800"``), which has no UTF-8 form."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def canonical(fields: dict) -> str:
    return "&".join("%s=%s" % (k, fields[k]) for k in sorted(fields) if k != "sign" and fields[k] != "")


def sign(fields: dict, secret: bytes) -> str:
    return hmac.new(secret, canonical(fields).encode("utf-8"), hashlib.sha256).hexdigest()


def check_notification(body: bytes, secret: bytes) -> Notification:
    if len(body) > MAX_BODY:
        raise BadNotification("body longer than %d bytes" % MAX_BODY, "body")
    try:
        fields = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep
        raise BadNotification("body is not JSON", "body")
    if not isinstance(fields, dict):
        raise BadNotification("body must be a JSON object", "body")
    for name in REQUIRED:
        value = fields.get(name)
        if not isinstance(value, str) or not value:
            raise BadNotification("%s: missing or not a non-empty string" % name, name)
    for name, value in fields.items():
        if not isinstance(value, str) or len(value) > MAX_FIELD or not _utf8(value) or not _utf8(name):
            raise BadNotification(
                "%s: must be a UTF-8 string of at most %d characters" % (name[:MAX_FIELD], MAX_FIELD), name
            )
    if not hmac.compare_digest(sign(fields, secret).encode(), fields["sign"].lower().encode("utf-8")):
        raise BadSignature("sign: signature does not match", "sign")
    try:
        amount = parse_amount(fields["amount"])
    except PrepaidError as e:
        raise BadNotification(str(e), "amount")
    return Notification(
        fields["payment_id"], fields["account_id"], amount, fields["paid_at"], canonical(fields)
    )
