"""Type-check the firmware per board against that port's MicroPython stubs (pyright; `make lint`).

Usage: python tools/typecheck.py [--target esp32|rp2|unix ...] [--root DIR] [--stubs DIR] [--install]

Targets (TARGETS): what goes on the board, firmware/manifest.py's modules, with that board's
own file and without the other board's:

- ``esp32``: the firmware core + firmware/boards/esp32.py against
  ``micropython-esp32-esp32-generic-stubs`` (ESP32_GENERIC);
- ``rp2``: the firmware core + firmware/boards/rp2040.py against
  ``micropython-rp2-rpi-pico-w-stubs`` (RPI_PICO_W);
- ``unix``: the firmware core + the emulator's board (emulator/unix_board.py, main.py,
  bench_link.py, bench_setup.py) against ``micropython-unix-stubs``.

Each stub package is installed with ``pip install --target build/stubs/<target>`` (``--install``,
or `make lint`, does it when the folder is missing): the stubs shadow stdlib names (time, os,
sys, asyncio, array...), so each port gets a folder of its own, passed to pyright as both its
typeshed (the stubs' ``stdlib/``: MicroPython's reduced builtins and stdlib) and its stub path
(machine, network, esp32, rp2, micropython...). The stubs are pinned to MicroPython 1.28 (STUB_VERSION),
the release the firmware image is built from (docs/boards.md).

Why pyright and not mypy: the stub packages are written and tested for pyright/Pylance (their
``stdlib/`` is a typeshed replacement, which pyright takes as ``typeshedPath``; mypy reports
every stub module that shadows a stdlib one), and pyright checks the bodies of unannotated
functions (this firmware has no annotations; mypy skips those bodies unless told otherwise and
then types every call of an unannotated function as Any, so a wrong keyword to a project
function would pass).

Rules: pyright's "standard" mode, less the reportOptional* family (the firmware's objects
start as None and are set at boot: every use would need a check the firmware does not want
in its loop). A known gap of the stubs is declared once, in the generated ``__builtins__.pyi``
(viper's ptr8/ptr16/ptr32 casts, which no stub declares), or by an ignore comment at the line
that names the gap. Configs go to build/typecheck/<target>/pyrightconfig.json.

``--root DIR`` checks another tree with the same layout. ``--selfcheck`` proves the check is
live: it copies firmware/ and protocol/ to a temporary tree, misspells machine.SPI's
``baudrate`` keyword in firmware/boards/mcu.py, checks that tree's ESP32 board files and exits 0
only when pyright reports the misspelled keyword (`make lint` runs it after the real check;
tests/tools/test_typecheck.py too). Exit status: 0 clean, 1 errors (pyright's report is printed),
2 setup.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

STUB_VERSION = "1.28.*"
STUBS = {
    "esp32": "micropython-esp32-esp32-generic-stubs",
    "rp2": "micropython-rp2-rpi-pico-w-stubs",
    "unix": "micropython-unix-stubs",
}
# target -> (board files it leaves out of the manifest's list, extra files)
TARGETS = {
    "esp32": (("firmware/boards/rp2040.py",), ()),
    "rp2": (("firmware/boards/esp32.py",), ()),
    "unix": (
        ("firmware/boards/esp32.py", "firmware/boards/rp2040.py", "firmware/boards/mcu.py"),
        ("emulator/__init__.py", "emulator/unix_board.py", "emulator/main.py", "emulator/bench_link.py")
        + ("emulator/bench_setup.py",),
    ),
}
OFF = (
    "reportOptionalMemberAccess",
    "reportOptionalSubscript",
    "reportOptionalOperand",
    "reportOptionalIterable",
    "reportOptionalCall",
    "reportOptionalContextManager",
)
# Known gaps of the stubs, declared once here and appended to the installed stub files
# (pyright reads the builtins module, like every other, from the stub path):
# - viper's pointer casts ptr8/ptr16/ptr32 (builtins inside @micropython.viper functions) are
#   declared by no stub package;
# - MicroPython's asyncio exports ticks/ticks_diff/ticks_add (extmod/asyncio/core.py imports them
#   from time and __init__.py star-imports core; firmware/comms.py uses them), which its stub omits.
GAP_MARK = "# --- tools/typecheck.py: known stub gaps ---"
GAPS = (
    (
        "__builtins__.pyi",
        "from typing import Any as _Any\n\nptr8 = _Any\nptr16 = _Any\nptr32 = _Any\n",
    ),
    (
        "stdlib/asyncio/__init__.pyi",
        "def ticks() -> int: ...\n"
        "def ticks_diff(a: int, b: int) -> int: ...\n"
        "def ticks_add(a: int, b: int) -> int: ...\n",
    ),
)


class TypecheckError(Exception):
    """The check could not run (no stubs, no pyright)."""


def stubs_dir(target, stubs=None):
    return os.path.join(stubs or os.path.join(ROOT, "build", "stubs"), target)


def install_stubs(target, stubs=None, force=False):
    """pip install --target build/stubs/<target> the port's stub package (when missing); the folder."""
    d = stubs_dir(target, stubs)
    if os.path.exists(os.path.join(d, ".installed")) and not force:
        return d
    shutil.rmtree(d, ignore_errors=True)
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    argv += ["--no-compile", "--target", d, "%s==%s" % (STUBS[target], STUB_VERSION)]
    if subprocess.run(argv).returncode != 0:
        raise TypecheckError("pip could not install %s into %s" % (STUBS[target], d))
    with open(os.path.join(d, ".installed"), "w") as f:
        f.write("%s==%s\n" % (STUBS[target], STUB_VERSION))
    return d


def files(target):
    """Tree-relative paths checked for ``target``: firmware/manifest.py's modules, adjusted (TARGETS)."""
    from tools import deploy

    leave, extra = TARGETS[target]
    return [p for p in deploy.manifest_modules() if p not in leave] + list(extra)


def write_config(target, root=ROOT, stubs=None, out=None, only=None):
    """build/typecheck/<target>/pyrightconfig.json (+ __builtins__.pyi) for ``root``; its path."""
    root = os.path.abspath(root)
    out = out or os.path.join(root, "build", "typecheck", target)
    os.makedirs(out, exist_ok=True)
    st = os.path.abspath(stubs_dir(target, stubs))

    def rel(p):
        return os.path.relpath(p, out)

    cfg = {
        "include": [rel(os.path.join(root, p)) for p in (only or files(target))],
        "typeshedPath": rel(st),
        "stubPath": rel(st),
        "extraPaths": [rel(root)],
        "pythonVersion": "3.11",
        "pythonPlatform": "Linux",
        "typeCheckingMode": "standard",
        "reportMissingModuleSource": False,
        "enableTypeIgnoreComments": False,  # only `# pyright: ignore[rule]` comments, each naming a gap
    }
    for r in OFF:
        cfg[r] = False
    path = os.path.join(out, "pyrightconfig.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    for rel_path, text in GAPS:
        stub = os.path.join(st, rel_path)
        with open(stub) as f:
            have = f.read()
        if GAP_MARK not in have:
            with open(stub, "a") as f:
                f.write("\n%s\n%s" % (GAP_MARK, text))
    return path


def pyright_exe():
    exe = shutil.which("pyright") or os.path.join(os.path.dirname(sys.executable), "pyright")
    if not os.path.exists(exe):
        raise TypecheckError("pyright not found: `make venv` installs it (pyproject.toml dev extras)")
    return exe


def check(target, root=ROOT, stubs=None, install=False, out=None, only=None):
    """Run pyright for ``target``; (errors, report text)."""
    if install:
        install_stubs(target, stubs)
    elif not os.path.isdir(stubs_dir(target, stubs)):
        raise TypecheckError("no stubs in %s: run with --install (make lint does)" % stubs_dir(target, stubs))
    cfg = write_config(target, root, stubs, out, only)
    proc = subprocess.run([pyright_exe(), "--outputjson", "-p", cfg], capture_output=True, text=True)
    try:
        rep = json.loads(proc.stdout)
    except ValueError:
        raise TypecheckError("pyright gave no report (exit %d): %s" % (proc.returncode, proc.stderr[-2000:]))
    lines = []
    errors = 0
    for d in rep.get("generalDiagnostics", []):
        if d["severity"] != "error":
            continue
        errors += 1
        r = d["range"]["start"]
        where = os.path.relpath(d["file"], os.path.abspath(root))
        lines.append(
            "%s:%d:%d: %s (%s)" % (where, r["line"] + 1, r["character"] + 1, d["message"], d.get("rule", ""))
        )
    summ = rep.get("summary", {})
    lines.append(
        "%s: %d error(s) in %d files against %s"
        % (target, errors, summ.get("filesAnalyzed", 0), STUBS[target])
    )
    return errors, "\n".join(lines)


BAD_CALL = ("baudrate=SPI_BAUD,", "baudrat=SPI_BAUD,")  # a misspelled machine.SPI keyword


def selfcheck(stubs=None):
    """The check must catch a wrong call: copy firmware/ and protocol/ to a temporary tree, misspell
    machine.SPI's ``baudrate`` keyword in firmware/boards/mcu.py and check the ESP32 board files
    there. (True, report) when pyright reports that call, else (False, report)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="typecheck-") as tmp:
        for pkg in ("firmware", "protocol"):
            shutil.copytree(os.path.join(ROOT, pkg), os.path.join(tmp, pkg))
        mcu = os.path.join(tmp, "firmware", "boards", "mcu.py")
        with open(mcu) as f:
            text = f.read()
        if BAD_CALL[0] not in text:
            raise TypecheckError("selfcheck: firmware/boards/mcu.py has no %r to misspell" % BAD_CALL[0])
        with open(mcu, "w") as f:
            f.write(text.replace(BAD_CALL[0], BAD_CALL[1]))
        only = ["firmware/boards/mcu.py", "firmware/boards/esp32.py"]
        errors, text = check("esp32", tmp, stubs, out=os.path.join(tmp, "build", "typecheck"), only=only)
    # pyright names the call ("No overloads for __init__": machine.SPI's constructor is overloaded)
    where = [line.split(":", 1)[0] for line in text.splitlines() if line.startswith("firmware/")]
    caught = errors > 0 and where == ["firmware/boards/mcu.py"] * errors and "(reportCallIssue)" in text
    return caught, text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", action="append", choices=sorted(TARGETS), help="default: all")
    p.add_argument("--root", default=ROOT, help="tree to check (default: this checkout)")
    p.add_argument("--stubs", help="folder holding the per-target stub folders (default build/stubs)")
    p.add_argument("--install", action="store_true", help="pip install the stubs when missing")
    p.add_argument(
        "--selfcheck",
        action="store_true",
        help="check a temporary copy with a misspelled machine.SPI keyword: exit 0 only if it is caught",
    )
    args = p.parse_args(argv)
    bad = 0
    try:
        if args.selfcheck:
            caught, text = selfcheck(args.stubs)
            print(text)
            print("selfcheck: the misspelled SPI keyword was %s" % ("caught" if caught else "NOT caught"))
            return 0 if caught else 1
        for t in args.target or sorted(TARGETS):
            errors, text = check(t, args.root, args.stubs, args.install)
            print(text, flush=True)
            bad += errors
    except TypecheckError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
