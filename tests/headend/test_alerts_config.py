"""Alert thresholds: defaults, overrides from a dict, a TOML or a JSON file, and a bad value
rejected with its field named."""

import json

import pytest

from headend.alerts.config import AlertConfig, load_config
from headend.alerts.rules import RULE_NAMES
from headend.errors import AlertError


def test_defaults_and_dict_overrides():
    assert load_config(None) == AlertConfig()
    cfg = load_config({"alerts": {"zero_hours": 12, "disabled_rules": ["comm_loss"]}})
    assert (cfg.zero_hours, cfg.disabled_rules, cfg.comm_loss_intervals) == (12, ("comm_loss",), 4)


def test_toml_and_json_files(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text('[alerts]\nfluct_low_pct = 20\nnotify_webhook = "https://ops.example/hook"\n')
    assert (load_config(toml).fluct_low_pct, load_config(toml).notify_webhook) == (
        20,
        "https://ops.example/hook",
    )
    js = tmp_path / "a.json"
    js.write_text(json.dumps({"low_balance": 2000}))
    assert load_config(str(js)).low_balance == 2000


@pytest.mark.parametrize(
    "values, field",
    [
        ({"comm_loss_intervalz": 3}, "comm_loss_intervalz"),
        ({"comm_loss_intervals": 0}, "comm_loss_intervals"),
        ({"zero_hours": True}, "zero_hours"),
        ({"fluct_low_pct": "30"}, "fluct_low_pct"),
        ({"disabled_rules": ["no_such_rule"]}, "disabled_rules"),
        ({"notify_webhook": "ftp://x"}, "notify_webhook"),
        ({"fluct_min_history_days": 20}, "fluct_min_history_days"),
        ({"peer_theft_pct": 50}, "peer_theft_pct"),
        ({"lookback_days": 3}, "lookback_days"),
    ],
)
def test_bad_values_name_the_field(values, field):
    with pytest.raises(AlertError) as e:
        load_config(values)
    assert e.value.field == field and str(e.value).startswith(field)


def test_bad_files(tmp_path):
    with pytest.raises(AlertError, match="must end in .toml or .json"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(AlertError, match="No such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[alerts\n")
    with pytest.raises(AlertError, match="not valid TOML"):
        load_config(bad)


def test_every_rule_can_be_disabled():
    assert load_config({"disabled_rules": list(RULE_NAMES)}).disabled_rules == RULE_NAMES
    assert len(RULE_NAMES) == 14
