"""Helpers for tests that run unchanged under pytest and under ``micropython``.

MicroPython has no pytest, so dual-runtime tests are plain ``test_*``
functions using ``assert`` and the helpers here; ``tests/dual/mp_runner.py``
runs them on the unix port and pytest collects them on CPython.
"""

import json


def _root():
    # .../tests/dual/support.py (source) or build/mpy/tests/dual/support.mpy
    # (bytecode tree, which carries its own copy of the vectors) -> its root
    parts = __file__.replace("\\", "/").split("/")
    return "/".join(parts[:-3]) or "."


ROOT = _root()


def vector_path(name):
    return ROOT + "/protocol/vectors/" + name


def load_vectors(name):
    with open(vector_path(name)) as f:
        return json.load(f)


def iter_vectors(name, section):
    """The entries of one list of a vector file written one entry a line, one at a time:
    a 64 KiB heap never holds the whole table."""
    with open(vector_path(name)) as f:
        inside = False
        for line in f:
            line = line.strip()
            if not inside:
                inside = line.startswith('"%s"' % section)
            elif line.startswith("]"):
                return
            else:
                yield json.loads(line[:-1] if line.endswith(",") else line)


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raised; fail unless it is exc_type.

    Any other exception propagates, so a wrong exception type fails the test.
    """
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("expected %s from %r" % (exc_type.__name__, fn))
