"""Run dual-runtime test modules under MicroPython.

Usage (bytecode, as a board runs it; after ``python tools/mpy_build.py``):
    cd build/mpy && micropython -X heapsize=64K -c \
        "import sys; sys.path.insert(0, 'tests/dual'); import mp_runner; mp_runner.main()"
Usage (source): micropython -X heapsize=256K tests/dual/mp_runner.py [MODULE ...]
Usage (the firmware frozen into the runtime, ``make firmware``; the tree holds only the
tests and vectors: ``python tools/mpy_build.py --frozen --arch x86 --out build/mpy-frozen``;
'.frozen' goes first on sys.path so nothing in the tree can hide a frozen package):
    cd build/mpy-frozen && ../micropython-unix32/micropython -X heapsize=64K -c "import sys; \
        sys.path.insert(0, 'tests/dual'); import mp_runner; sys.path.insert(0, '.frozen'); mp_runner.main()"

The first form runs bytecode built by ``tools/mpy_build.py`` (what a board
runs); compiling source needs a bigger heap than running it.

Each MODULE is a name such as ``test_cbor`` in tests/dual/; without names every
``test_*.py`` there runs. Prints one line per failure and closes with
``N passed, N failed``; exits 1 when anything failed.
"""

import gc
import os
import sys


def _here():
    path = __file__.replace("\\", "/")
    return "/".join(path.split("/")[:-1]) or "."


HERE = _here()
ROOT = "/".join(HERE.split("/")[:-2]) or "."
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)


def module_names(argv):
    if argv:
        return argv
    names = []
    for n in os.listdir(HERE):
        if n.startswith("test_") and (n.endswith(".py") or n.endswith(".mpy")):
            names.append(n[: n.rindex(".")])
    names.sort()
    return names


def run(names):
    passed = 0
    failed = 0
    for name in names:
        mod = __import__(name)
        tests = [k for k in dir(mod) if k.startswith("test_")]
        tests.sort()
        for t in tests:
            fn = getattr(mod, t)
            try:
                fn()
                passed += 1
            except Exception as e:  # report every failure, keep going
                failed += 1
                sys.print_exception(e) if hasattr(sys, "print_exception") else None
                print("FAILED %s.%s: %s: %s" % (name, t, type(e).__name__, e))
            gc.collect()
        del sys.modules[name]
        del mod
        gc.collect()
    print("%d passed, %d failed" % (passed, failed))
    return failed


def main(names=None):
    sys.exit(1 if run(module_names(names if names is not None else sys.argv[1:])) else 0)


if __name__ == "__main__":
    main()
