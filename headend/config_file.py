"""``settings(source, table, error)``: the overrides a head-end config loader validates.

``source`` is a dict or the path of a ``.toml``/``.json`` file; when it holds a ``table``
key that is a table (``[vee]``, ``[alerts]``) that table is used, else the top level.
An unreadable, misnamed or malformed file raises ``error(message, "path")``. The result is
not checked further: the caller's ``from_dict`` names every bad field.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path


def settings(source: dict | str | Path, table: str, error):
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if path.suffix not in (".toml", ".json"):
            raise error("config file %s: must end in .toml or .json" % path, "path")
        try:
            text = path.read_bytes()
        except OSError as e:
            raise error("config file %s: %s" % (path, e.strerror or e), "path")
        try:
            data = tomllib.loads(text.decode("utf-8")) if path.suffix == ".toml" else json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise error("config file %s: not valid %s: %s" % (path, path.suffix[1:].upper(), e), "path")
    if isinstance(data, dict) and isinstance(data.get(table), dict):
        data = data[table]
    return data
