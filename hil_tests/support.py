"""Small helpers the HIL tests share: skipping by target, calling an operation a target may lack."""

import pytest

from hil_tests.targets.base import Unsupported


def only_on(target, name, why):
    """Skip unless the session's target is ``name`` ("emulator" or "board"); the reason names it."""
    if target.name != name:
        pytest.skip("%s target only (this run: %s): %s" % (name, target.name, why))


def call(fn, *args, **kw):
    """Run a target operation; skip the test (with the target's reason) if the target cannot."""
    try:
        return fn(*args, **kw)
    except Unsupported as e:
        pytest.skip(str(e))


def events_with_detail(messages):
    """[(code, detail map or None)] of the event messages, oldest first."""
    return [(m[10], m.get(11)) for _s, k, m in messages if k == 2]


def acks(messages):
    """[(command seq, result)] of the ack messages, oldest first."""
    return [(m[30], m[31]) for _s, k, m in messages if k == 3]
