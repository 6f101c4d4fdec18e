"""The few differences between MicroPython and CPython, in one place.

Firmware modules write ``from micropython import const`` and
``@micropython.native`` as on a board; under pytest a stand-in module
(tests/shims/micropython.py) makes those no-ops. The clock and heap helpers
below are the rest.
"""

import sys
import time

import micropython

MICROPYTHON = sys.implementation.name == "micropython"
HOT_INT_LIMIT = 1 << 30  # small ints on 32-bit MicroPython ports stay below this


def _ticks_ms():  # CPython (tests): a 30-bit wrapping ms counter, as MicroPython's
    return int(time.monotonic() * 1000) & 0x3FFFFFFF  # pyright: ignore[reportAttributeAccessIssue]  # CPython only


def _ticks_diff(a, b):
    d = (a - b) & 0x3FFFFFFF
    return d - 0x40000000 if d & 0x20000000 else d


def _ticks_add(a, b):
    return (a + b) & 0x3FFFFFFF


ticks_ms = time.ticks_ms if MICROPYTHON else _ticks_ms
ticks_diff = time.ticks_diff if MICROPYTHON else _ticks_diff
ticks_add = time.ticks_add if MICROPYTHON else _ticks_add


def heap_lock():
    """Forbid heap allocation until heap_unlock(): allocating raises MemoryError.

    Tests wrap the measurement loop in it to prove the loop allocates nothing.
    A no-op on CPython and on builds without the feature.
    """
    if hasattr(micropython, "heap_lock"):
        micropython.heap_lock()


def heap_unlock():
    if hasattr(micropython, "heap_unlock"):
        micropython.heap_unlock()


def unload(*names):
    """Drop modules from memory on MicroPython (boot-only code, or what a test imported).

    A no-op on CPython, whose tests need the modules' classes to stay the same.
    """
    if not MICROPYTHON:
        return
    for n in names:
        if n in sys.modules:
            del sys.modules[n]
            pkg, _, attr = n.rpartition(".")
            p = sys.modules.get(pkg)
            if p is not None and hasattr(p, attr):
                delattr(p, attr)  # the package keeps its submodules as attributes
