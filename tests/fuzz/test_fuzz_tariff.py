"""Fuzzing the tariff loader (headend.billing.parse_tariff: native TOML/JSON and OpenEI URDB
JSON), the head-end's set-tariff builder (headend.commands.tariff.set_tariff) against the
meter's validator (protocol.commands.command_args), and protocol.tariff_calendar's JSON
entry point.

Seeds: the full native example of docs/tariff-format.md (TOML and the same document as
JSON) and a URDB record using every imported field. The fuzzer edits their text
(tokens, truncation, duplication) and their document trees (hostile values anywhere,
deleted and unknown keys, deep nesting).

Documented errors: ``TariffError`` (a ``BillingError``) from the loader, ``CommandError``
from set_tariff, ``ProtocolError`` (field ``tariff...``) from tariff_from_json. Properties:
nothing else is raised, every call time-bounded; every str of a loaded tariff has a UTF-8
form (it is stored and printed); whatever set-tariff args the head-end builds from a loaded
tariff, the meter's validator accepts.
"""

from __future__ import annotations

import json
import re

from hypothesis import given

from headend.billing import parse_tariff
from headend.billing.tariff.model import Tariff
from headend.commands.tariff import set_tariff
from headend.errors import CommandError, TariffError
from protocol import tariff_calendar as tc
from protocol.commands import command_args
from protocol.errors import ProtocolError
from tests.fuzz.support import bounded, fuzz, mutated_text, mutated_tree

NATIVE_TOML = """
format = "open-ami-tariff"
name = "Example residential TOU with ladder"
currency = "CNY"
minor_unit = "0.01"
utc_offset = 480
tier_mode = "time_order"
tier_basis = "monthly"

[[versions]]
periods = ["peak", "flat", "valley"]

[versions.calendar]
day_profiles = [
  [["00:00", "valley"], ["08:00", "flat"], ["18:00", "peak"], ["22:00", "valley"]],
  [["00:00", "valley"], ["08:00", "flat"], ["22:00", "valley"]],
  [["00:00", "valley"]],
]
week_profiles = [[0, 0, 0, 0, 0, 1, 1]]
seasons = [[1, 1, 0]]
special_days = [[0, 10, 1, 2]]

[versions.tiers]
max_kwh = [240, 400]
surcharge = [0, 0.05, 0.30]

[versions.energy]
peak = 0.568
flat = 0.488
valley = [0.288, 0.288, 0.318]

[versions.fixed]
monthly = 5.00
daily = 0.10

[versions.demand]
monthly = [{ max_kw = 10, rate = 20.0 }, { rate = 25.0 }]
months = [6, 7, 8, 9]

[versions.demand.periods]
peak = 8.0

[versions.minimum]
monthly = 10.00
annual = 0

[[versions]]
effective_from = 2024-07-01
periods = ["all"]

[versions.energy]
all = 0.52
"""
NATIVE_DOC = {
    "format": "open-ami-tariff",
    "name": "Example",
    "currency": "CNY",
    "minor_unit": "0.01",
    "utc_offset": 480,
    "tier_mode": "time_order",
    "versions": [
        {
            "periods": ["peak", "valley"],
            "calendar": {
                "day_profiles": [[["00:00", "valley"], ["08:00", "peak"], [1320, 2]], [[0, 2]]],
                "week_profiles": [[0, 0, 0, 0, 0, 1, 1]],
                "seasons": [[1, 1, 0], [6, 1, 0]],
                "special_days": [[0, 10, 1, 1], [2025, 1, 1, 1]],
            },
            "tiers": {"max_kwh": [240, "400"], "surcharge": [0, "0.05", "0.3"]},
            "energy": {"peak": "0.568", "valley": ["0.288", "0.288", "0.318"]},
            "fixed": {"monthly": "5", "daily": "0.1"},
            "demand": {"monthly": [{"max_kw": 10, "rate": "20"}, {"rate": 25}], "periods": {"peak": "8"}},
            "minimum": {"monthly": "10", "annual": 0},
        },
        {"effective_from": "2024-07-01", "periods": ["all"], "energy": {"all": "0.52"}},
    ],
}
NATIVE_KEYS = ("periods", "calendar", "energy", "tiers", "effective_from", "seasons", "max_kw", "rate")
WD = [[0] * 12 + [1] * 8 + [0] * 4 for _ in range(12)]
URDB_DOC = {
    "items": [
        {
            "label": "5a0b",
            "name": "E-TOU",
            "energyratestructure": [
                [{"rate": 0.1, "adj": 0.01, "max": 300, "unit": "kWh"}, {"rate": 0.2, "unit": "kWh"}],
                [{"rate": 0.3, "max": 10, "unit": "kWh daily"}, {"rate": 0.4}],
            ],
            "energyweekdayschedule": WD,
            "energyweekendschedule": [[0] * 24 for _ in range(12)],
            "fixedchargefirstmeter": 10,
            "fixedchargeunits": "$/day",
            "flatdemandstructure": [[{"rate": 5, "max": 20}, {"rate": 7}]],
            "flatdemandmonths": [0] * 12,
            "flatdemandunit": "kW",
            "demandratestructure": [[{"rate": 1}], [{"rate": 2}]],
            "demandweekdayschedule": WD,
            "demandweekendschedule": [[0] * 24 for _ in range(12)],
            "mincharge": 3,
            "minchargeunits": "$/year",
        }
    ]
}
URDB_KEYS = ("rate", "adj", "max", "unit", "mincharge", "coincidentratestructure", "lookbackmonths")
NOW = 1_719_792_000  # 2024-07-01


def _dumps(doc) -> str:
    return json.dumps(doc, default=str, allow_nan=True)


def _strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _strings(v)


def check(text: str, seen: set) -> None:
    try:
        tariff = bounded(parse_tariff, text)
    except TariffError as e:
        seen.add("error")
        seen.add(re.sub(r"\[\d+\]", "", e.field or "(syntax)").replace("versions.", "tariff."))
        return
    seen.add("ok:" + tariff.source)
    assert isinstance(tariff, Tariff) and tariff.versions
    for text_ in _strings([tariff.name, tariff.currency, [v.period_names for v in tariff.versions]]):
        text_.encode("utf-8")  # storable and printable
    try:
        st_args = bounded(set_tariff, tariff, 0, NOW, 8)
    except CommandError:
        seen.add("set_tariff:refused")
        return
    seen.add("set_tariff:ok")
    named = bounded(command_args, 3, st_args.args)  # the meter's validator accepts what we build
    assert named["tariff"][tc.PRICES] == st_args.args[tc.PRICES]


def test_native_toml_text_mutations():
    seen: set = set()

    @fuzz(400)
    @given(mutated_text(NATIVE_TOML))
    def run(text):
        check(text, seen)

    run()
    assert {"ok:native", "error", "set_tariff:ok"} <= seen and len(seen) >= 6, seen


def test_native_json_tree_mutations():
    seen: set = set()

    @fuzz(400)
    @given(mutated_tree(NATIVE_DOC, NATIVE_KEYS) | mutated_tree(NATIVE_DOC["versions"][0], NATIVE_KEYS).map(
        lambda v: {"format": "open-ami-tariff", **v} if isinstance(v, dict) else v
    ))  # fmt: skip
    def run(doc):
        check(_dumps(doc), seen)

    run()
    assert {"ok:native", "error", "set_tariff:ok"} <= seen and len(seen) >= 20, seen


def test_urdb_tree_and_text_mutations():
    seen: set = set()
    text = _dumps(URDB_DOC)

    @fuzz(400)
    @given(mutated_tree(URDB_DOC, URDB_KEYS).map(_dumps) | mutated_text(text))
    def run(doc_text):
        check(doc_text, seen)

    run()
    assert {"ok:urdb", "error", "set_tariff:ok"} <= seen and len(seen) >= 9, seen


@fuzz(300)
@given(mutated_tree({str(k): v for k, v in tc.validate_tariff(
    {0: 7, 1: 0, 2: [1200, 300], 3: [[[0, 2], [480, 1]], [[0, 2]]], 4: [[0, 0, 0, 0, 0, 1, 1]],
     5: [[1, 1, 0]], 6: [[0, 10, 1, 1]], 7: 480}).items()}))  # fmt: skip
def test_protocol_tariff_from_json_raises_only_protocol_errors(doc):
    try:
        t = bounded(tc.tariff_from_json, doc)
    except ProtocolError as e:
        assert e.field.startswith("tariff"), e.field
        return
    assert tc.validate_tariff(t) == t
    assert 1 <= tc.rate_at(t, NOW) <= len(t[tc.PRICES])


def test_hostile_numbers_are_tariff_errors():
    """Seeds of the bugs this fuzzing found: each was an undocumented exception before."""
    base = 'format = "open-ami-tariff"\nperiods = ["a"]\n'
    for text in (
        base + '[energy]\na = "9e999999"\n[tiers]\nsurcharge = ["9e999999"]\n',  # decimal.Overflow
        base + '[energy]\na = 1\n[fixed]\nmonthly = "1e999999999"\n',  # abs() overflow
        base + "[calendar]\nday_profiles = 5\nweek_profiles = [[0,0,0,0,0,0,0]]\n[energy]\na = 1\n",
        base + "[tiers]\nmax_kwh = 5\n[energy]\na = 1\n",  # TypeError: int is not iterable
        base + '[tiers]\nmax_kwh = "12"\n[energy]\na = 1\n',  # was read as bounds 1 and 2
        "[" * 100_000,  # RecursionError
        "a = " + "[" * 100_000,
        '{"format": "open-ami-tariff", "name": "\\ud800", "periods": ["a"], "energy": {"a": 1}}',
        _dumps({"energyratestructure": [[{"rate": "1e999999", "adj": "9e999999"}]]}),
        '{"energyratestructure": [[{"rate": 1e99999999999999999999}]]}',  # decimal.InvalidOperation
    ):
        try:
            bounded(parse_tariff, text)
        except TariffError:
            continue
        raise AssertionError("accepted: %r" % text[:80])
