"""The signed payment notification of an online payment platform, checked.

A platform POSTs JSON ``{"payment_id", "account_id", "amount", "paid_at", "sign"}``: every
value a string, ``amount`` a decimal of currency units, ``paid_at`` an RFC 3339 date-time
with its offset (``2024-03-01T09:00:00+08:00``, ``2024-03-01T01:00:00Z``). ``sign`` is the
lower-case hex HMAC-SHA256, under the merchant secret, of the canonical string: every other
field with a non-empty value, sorted by name, as ``name=value`` joined by ``&`` (the WeChat
Pay v2 / Alipay shape). Unknown fields are signed too, so nothing unsigned rides along.

That string has no escaping: the convention holds only because names and values never
contain ``&`` or ``=``. A value that did could be re-split into other fields under the same
``sign`` (``{"pay": "x&payment_id=P2&q=1", "payment_id": "P1"}`` and ``{"pay": "x",
"payment_id": "P1", "q": "1&payment_id=P2"}`` sign the same bytes), so every name and value
holding ``&``, ``=`` or a control character (Unicode category Cc) is refused before the
signature is checked (400 naming the field). With them gone the canonical string is
injective: split on ``&``, then each part on its one ``=``, gives the fields back.

``check_notification(body, secret) -> Notification`` raises ``BadNotification`` (HTTP 400)
or ``BadSignature`` (HTTP 401). Pure: no clock, no storage.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import unicodedata
from dataclasses import dataclass

from headend.errors import BadNotification, BadSignature, PrepaidError  # noqa: F401
from headend.prepaid.ledger import parse_amount

REQUIRED = ("payment_id", "account_id", "amount", "paid_at", "sign")
MAX_BODY = 16 * 1024
MAX_FIELD = 128
SUCCESS = {"code": "SUCCESS", "message": "OK"}
SEPARATORS = "&="  # of the canonical string: in no name or value
# RFC 3339 section 5.6 date-time: full-date "T" full-time, the offset required ("Z" or +-hh:mm)
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))", re.ASCII
)


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


def _clean(text: str) -> bool:
    """No canonical-string separator and no control character in ``text``."""
    return not any(c in SEPARATORS or unicodedata.category(c) == "Cc" for c in text)


def is_date_time(text: str) -> bool:
    """True for an RFC 3339 date-time with an offset, its fields in range (second 60: a leap second)."""
    m = _DATE_TIME.fullmatch(text)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    if not 1 <= month <= 12:
        return False
    if not 1 <= day <= calendar.mdays[month] + (month == 2 and calendar.isleap(year)):
        return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    return m.group(9) is None or (int(m.group(9)) <= 23 and int(m.group(10)) <= 59)


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
        if not _clean(name) or not _clean(value):
            shown = name if _clean(name) else ascii(name[:MAX_FIELD])
            raise BadNotification(
                "%s: names and values must not contain '&', '=' or control characters" % shown, name
            )
    if not hmac.compare_digest(sign(fields, secret).encode(), fields["sign"].lower().encode("utf-8")):
        raise BadSignature("sign: signature does not match", "sign")
    try:
        amount = parse_amount(fields["amount"])
    except PrepaidError as e:
        raise BadNotification(str(e), "amount")
    if not is_date_time(fields["paid_at"]):
        raise BadNotification(
            "paid_at: must be an RFC 3339 date-time with an offset (2024-03-01T09:00:00+08:00), got %r"
            % fields["paid_at"],
            "paid_at",
        )
    return Notification(
        fields["payment_id"], fields["account_id"], amount, fields["paid_at"], canonical(fields)
    )
