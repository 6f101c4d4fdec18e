"""Build MicroPython 1.28.0's qemu port (emulated Cortex-M3) with the firmware frozen: ``make firmware-arm``.

Usage:
    python tools/build_qemu_arm.py [--force] [--check] [--jobs 2] [--quiet]

The qemu-arm runtime of tools/emulate.py (``--runtime qemu-arm``): MicroPython's
qemu port, board MPS2_AN385 (Arm's MPS2 FPGA image AN385: a Cortex-M3, run by
``qemu-system-arm -machine mps2-an385``), with

- emulator/qemu_manifest.py frozen (the board manifest firmware/manifest.py, the
  host-only emulator package and its qemu entry), compiled by mpy-cross for
  armv7m, so viper and native functions are Thumb-2 code and bytecode and qstrs
  stay in the image;
- a 64 KiB MicroPython heap (MICROPY_HEAP_SIZE=65536: a board's budget);
- littlefs2 (MICROPY_VFS_LFS2=1) and the ``qemuhost`` user C module
  (emulator/cmodules: semihosting file access for the flash image, stderr,
  exit; and the mp_hal_time_ns() littlefs needs, which the port lacks).

Writes build/micropython-qemu-arm/firmware.elf and frozen.json (the frozen and
C module files with their sha256, the source origin and the make variables). It
is rebuilt only when one of those changed (or with --force); MicroPython's own
make is incremental. The source is the one tools/build_micropython.py prepares
(build/micropython-src, from $MICROPY_SRC, the vendored tarball or a clone of
tag v1.28.0), under the same lock. Needs Debian's gcc-arm-none-eabi and
libnewlib-arm-none-eabi (tools/ensure_arm_toolchain.sh, run by make firmware-arm).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import build_micropython as bm  # noqa: E402

OUT = os.path.join(ROOT, "build", "micropython-qemu-arm")
ELF = os.path.join(OUT, "firmware.elf")
INFO = os.path.join(OUT, "frozen.json")
MANIFEST = os.path.join(ROOT, "emulator", "qemu_manifest.py")
CMODULES = os.path.join(ROOT, "emulator", "cmodules")
BOARD = "MPS2_AN385"
HEAP = 65536
MAKE_VARS = [
    "BOARD=" + BOARD,
    "MICROPY_HEAP_SIZE=%d" % HEAP,
    "MICROPY_VFS_LFS2=1",
]


class BuildError(Exception):
    """The qemu-arm runtime cannot be built; the message says why."""


def log(msg: str) -> None:
    print("build_qemu_arm: " + msg, flush=True)


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _cmodule_files() -> dict:
    out = {}
    for dirpath, _dirs, files in os.walk(CMODULES):
        for name in sorted(files):
            if name.endswith((".c", ".h", ".mk", ".cmake")):
                path = os.path.join(dirpath, name)
                out[os.path.relpath(path, ROOT)] = _sha256(path)
    return out


def _files(src: str) -> dict:
    files = bm.fingerprint(MANIFEST, src)
    files.update(_cmodule_files())
    return files


def stale() -> str | None:
    """Why firmware.elf must be (re)built, or None when its frozen and C files are the tree's."""
    if not (os.path.isfile(ELF) and os.path.isfile(INFO)):
        return "%s is not built" % os.path.relpath(ELF, ROOT)
    with open(INFO) as f:
        info = json.load(f)
    if info.get("make") != MAKE_VARS:
        return "the make variables changed"
    if info.get("origin_id") != bm._origin_id(bm.source_origin()):
        return "the MicroPython source changed"
    for key, digest in sorted(info["files"].items()):
        if key.startswith("$(MPY_DIR)/"):
            continue  # MicroPython's own files change only with the source (checked above)
        path = os.path.join(ROOT, key)
        if not os.path.isfile(path):
            return "%s (frozen) is gone" % key
        if _sha256(path) != digest:
            return "%s changed since the build" % key
    # a file newly listed by a manifest or added to the C module
    known = set(info["files"])
    if any(k not in known for k in _cmodule_files()):
        return "a C module file was added"
    return None


def _run(argv: list[str], cwd: str, quiet: bool) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=quiet, text=True)
    if proc.returncode != 0:
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-4000:] if quiet else ""
        raise BuildError("%s failed (exit %d)\n%s" % (" ".join(argv[:3]), proc.returncode, tail))


def build(jobs: int = 2, quiet: bool = False, force: bool = False) -> dict:
    """Bring build/micropython-qemu-arm/firmware.elf up to date; {seconds, text, built, ...}."""
    if shutil.which("arm-none-eabi-gcc") is None:
        raise BuildError(
            "arm-none-eabi-gcc not found: `make firmware-arm` installs Debian's gcc-arm-none-eabi"
        )
    os.makedirs(OUT, exist_ok=True)
    with open(bm.LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build (pytest, make, the unix32 runtime) in progress
        why = stale()
        if why is None and not force:
            return {"seconds": 0.0, "text": text_size(ELF), "built": False}
        t0 = time.monotonic()
        src = bm.prepare_source()
        origin_id = bm._origin_id(bm.source_origin())
        obj = os.path.join(OUT, "obj")
        if os.path.isfile(INFO):
            with open(INFO) as f:
                if json.load(f).get("origin_id") != origin_id:
                    shutil.rmtree(obj, ignore_errors=True)  # objects of another source
        mpy_cross = os.path.join(src, "mpy-cross", "build", "mpy-cross")
        if not os.path.isfile(mpy_cross):
            log("building mpy-cross")
            _run(["make", "-C", "mpy-cross", "-j%d" % jobs], src, quiet)
        argv = ["make", "-C", "ports/qemu", "-j%d" % jobs, "BUILD=" + obj] + MAKE_VARS
        argv += ["FROZEN_MANIFEST=" + MANIFEST, "USER_C_MODULES=" + CMODULES]
        what = (os.path.relpath(ELF, ROOT), BOARD, os.path.relpath(MANIFEST, ROOT))
        log("building %s (qemu port, %s, frozen: %s)" % what + ("" if why is None else ": " + why))
        _run(argv, src, quiet)
        tmp = ELF + ".tmp"
        shutil.copy2(os.path.join(obj, "firmware.elf"), tmp)
        os.replace(tmp, ELF)
        info = {
            "micropython": bm.source_version(src),
            "origin": bm.source_origin(),
            "origin_id": origin_id,
            "manifest": os.path.relpath(MANIFEST, ROOT),
            "make": MAKE_VARS,
            "files": _files(src),
        }
        with open(INFO, "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        info["seconds"] = round(time.monotonic() - t0, 1)
        info["text"] = text_size(ELF)
        info["built"] = True
        log("%s ready: text %d bytes (%.1f s)" % (os.path.relpath(ELF, ROOT), info["text"], info["seconds"]))
        return info


def text_size(elf: str) -> int:
    """The text segment of the ELF image (arm-none-eabi-size, Berkeley format), bytes."""
    size = shutil.which("arm-none-eabi-size") or "size"
    out = subprocess.run([size, elf], capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[1].split()[0])


def ensure(quiet: bool = True) -> str:
    """firmware.elf, built or rebuilt first when missing or stale (tools/emulate.py, tests)."""
    if stale() is not None:
        build(quiet=quiet)
    return ELF


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="run MicroPython's make even when up to date")
    p.add_argument("--check", action="store_true", help="exit 1 when the image is missing or stale")
    p.add_argument("--jobs", "-j", type=int, default=2)
    p.add_argument("--quiet", action="store_true", help="show MicroPython's build output only on failure")
    args = p.parse_args(argv)
    try:
        if args.check:
            why = stale()
            print(why or "up to date")
            return 1 if why else 0
        info = build(args.jobs, args.quiet, args.force)
        if not info["built"]:
            os.utime(ELF)  # make's view: newer than the sources it was checked against
            log("%s up to date (text %d bytes)" % (os.path.relpath(ELF, ROOT), info["text"]))
    except (BuildError, bm.BuildError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
