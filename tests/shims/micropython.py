"""CPython stand-in for MicroPython's ``micropython`` module, for tests only.

On MicroPython the compiler handles ``@micropython.native``/``viper`` and
``const``; here they are no-ops so firmware core modules import unchanged
under pytest. Viper functions with pointer annotations must be defined only
when running on MicroPython (see firmware.compat.MICROPYTHON).
"""


def const(x):
    return x


def native(f):
    return f


def viper(f):
    return f


def heap_lock():
    return 0


def heap_unlock():
    return 0


def alloc_emergency_exception_buf(size):
    return None


def schedule(fn, arg):
    fn(arg)
