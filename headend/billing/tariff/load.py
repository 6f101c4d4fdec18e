"""Loading a tariff file: TOML or JSON, native (``native``) or an OpenEI URDB record (``urdb``).

``parse_tariff(text)`` tells which a document is and hands it to its reader; ``load_tariff(path)``
reads the file first. Both return a ``headend.billing.tariff.model.Tariff``.
"""

from __future__ import annotations

import json
import pathlib
import tomllib
from decimal import Decimal, InvalidOperation

from headend.billing.tariff import native, urdb
from headend.billing.tariff.model import NATIVE_FORMAT, Tariff
from headend.errors import TariffError


def parse_tariff(text: str, *, name: str = "tariff", **overrides) -> Tariff:
    """A tariff from the text of a file: TOML, or JSON (detected by a leading ``{``).

    Native or URDB is told by content: a native document has ``format = "open-ami-tariff"``;
    a URDB record has ``energyratestructure`` (or another URDB rate key), alone or as the
    single element of ``items`` (the URDB API answer). ``overrides`` (``tier_mode``,
    ``utc_offset``) replace the document's or the URDB defaults.
    """
    stripped = text.lstrip("\ufeff \t\r\n")
    try:
        if stripped.startswith(("{", "[")):
            doc = json.loads(stripped, parse_float=Decimal)
            _check_text(doc)
        else:
            doc = tomllib.loads(stripped, parse_float=Decimal)
    except (ValueError, tomllib.TOMLDecodeError, RecursionError, InvalidOperation) as e:
        # RecursionError: nested too deep; InvalidOperation: a number like 1e99999999999999999999
        raise TariffError("%s: not valid JSON or TOML: %s" % (name, e))
    if isinstance(doc, dict) and doc.get("format") == NATIVE_FORMAT:
        return native.tariff_from_native(doc, name=name, **overrides)
    record = urdb.find_record(doc)
    if record is not None:
        return urdb.tariff_from_urdb(record, name=name, **overrides)
    raise TariffError(
        '%s: neither a native tariff (format = "%s") nor an OpenEI URDB record '
        "(energyratestructure, ...)" % (name, NATIVE_FORMAT)
    )


def _check_text(doc) -> None:
    """ValueError if a string of a JSON document holds a lone surrogate (``"\\ud800"``): it has no
    UTF-8 form, so it could be neither stored nor printed. (TOML refuses such escapes itself.)"""
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            x.encode("utf-8")  # UnicodeEncodeError is a ValueError
        elif isinstance(x, dict):
            stack.extend(x)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)


def load_tariff(path: str | pathlib.Path, **overrides) -> Tariff:
    """``parse_tariff`` of a file (UTF-8)."""
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TariffError("%s: not UTF-8 text: %s" % (p, e))
    return parse_tariff(text, name=str(p), **overrides)
