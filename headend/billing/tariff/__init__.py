"""Tariffs: the model (``model``), its two file formats (``native``: this project's TOML/JSON,
docs/tariff-format.md; ``urdb``: OpenEI URDB records) and loading a file (``load``).

The modules import one way only: ``load`` -> ``native``, ``urdb`` -> ``model``.
"""

from __future__ import annotations

from headend.billing.tariff.load import load_tariff, parse_tariff
from headend.billing.tariff.model import Tariff

__all__ = ["Tariff", "load_tariff", "parse_tariff"]
