"""Boot and config validation: the default config boots clean; a bad config.json is refused at boot with the
field named, and the meter then writes nothing (no state slot), whatever else the file says."""

import pytest

from hil_tests.support import call

BAD = [
    ("broker.port", {"broker": {"port": "x"}}),
    ("intervall", {"intervall": 900}),  # a typo must not leave the default in force silently
    ("poll_ms", {"poll_ms": 5}),
    ("interval", {"interval": 7}),  # not a divisor of a day
    ("prepaid.friendly_hours[0][2]", {"prepaid": {"friendly_hours": [[0, 600, 500]]}}),
    ("key", {"key": "zz"}),
    ("meter_id", {"meter_id": "a b"}),
    ("mains_hz", {"mains_hz": 55}),
    ("thresholds.sag_pct", {"thresholds": {"sag_pct": 0}}),
]


def test_default_config_boots_metering_with_power_up_event_only(target):
    r = call(target.boot)
    assert r["ok"], r["error"]
    assert r["metering"] is True
    assert r["events"] == [2], "a fresh meter raises power up (2) and nothing else"
    assert r["boot_count"] == 1
    assert r["state_saved"], "the boot save happened"


@pytest.mark.parametrize("field,patch", BAD, ids=[b[0] for b in BAD])
def test_bad_config_refused_at_boot_naming_the_field(target, field, patch):
    r = call(target.boot, patch=patch)
    assert not r["ok"], "booted with %r" % (patch,)
    assert r["field"] == field, r["error"]
    assert ("config." + field) in r["error"]
    assert not r["state_saved"], "a refused config must not leave a state slot behind"


def test_config_that_is_not_json_refused_at_boot(target):
    r = call(target.boot, text='{"meter_id": "emu-0001", "key": ')
    assert not r["ok"]
    assert r["field"] == "" and "not valid JSON" in r["error"], r["error"]
    assert not r["state_saved"]
