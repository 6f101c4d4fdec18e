"""Build MicroPython 1.28.0's unix port, 32-bit, with a manifest's modules frozen in (``make firmware``).

Usage:
    python tools/build_micropython.py [--manifest emulator/manifest.py] [--out build/micropython-unix32]
        [--bare | --board] [--jobs 2] [--check]

The emulator's runtime: MicroPython's unix port compiled with ``CC="gcc -m32"`` (a 32-bit
VM like the boards': 4-byte objects and small ints, so heap figures are a board's), with
the firmware frozen into the binary as on a production board (bytecode and qstrs in the
image, not in the heap). Writes ``OUT/micropython`` and ``OUT/frozen.json`` (the frozen
source files and their sha256: ``--check`` and tools/emulate.py compare it with the tree).
``--bare`` builds the same port with an empty manifest (nothing frozen) into
build/micropython-unix32-bare, ``--board`` with only firmware/manifest.py (what a board image
freezes) into build/micropython-unix32-board: their text sizes give the frozen image size
(tools/bench_firmware.py). Both are kept and rebuilt only when stale.

MicroPython's source: ``$MICROPY_SRC`` (a tarball or a checkout) when set; else
../shared/vendor/micropython-1.28.0.tar.gz beside the project when present; else a shallow
clone of tag v1.28.0 of https://github.com/micropython/micropython (needs the network).
It is unpacked once into build/micropython-src (again when MICROPY_SRC changes). No git
submodule is needed: the build leaves out ffi, btree, ssl and readline
(MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 MICROPY_USE_READLINE=0), and the
frozen-manifest build only looks for lib/micropython-lib/README.md (a placeholder is written).
``cryptolib`` (AES, ECB and CBC, as stock ESP32 and RP2040 images have it) is enabled with its
mbedtls backend: the source tarball has no mbedtls, so the AES comes from Debian's
libmbedtls-dev:i386, linked statically (tools/ensure_mbedtls_m32.sh). Changed make variables
rebuild from scratch.
Needs ``gcc -m32`` (Debian's gcc-multilib: tools/ensure_gcc_m32.sh), make and python3.
MicroPython's own make is incremental: after a change to a frozen file only the frozen
content is recompiled and the binary relinked (seconds). Concurrent builds wait on a lock.
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
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = "1.28.0"
TAG = "v" + VERSION
REPO_URL = "https://github.com/micropython/micropython"
VENDOR_TARBALL = os.path.join(os.path.dirname(ROOT), "shared", "vendor", "micropython-%s.tar.gz" % VERSION)
BUILD = os.path.join(ROOT, "build")
SRC = os.path.join(BUILD, "micropython-src")
MANIFEST = os.path.join(ROOT, "emulator", "manifest.py")
OUT = os.path.join(BUILD, "micropython-unix32")
OUT_BARE = os.path.join(BUILD, "micropython-unix32-bare")
LOCK = os.path.join(BUILD, ".micropython-build.lock")
ORIGIN_STAMP = ".open-ami-origin"
MAKE_VARS = [
    "VARIANT=standard",
    "CC=gcc -m32",
    "LD=gcc -m32",
    "MICROPY_PY_FFI=0",
    "MICROPY_PY_BTREE=0",
    "MICROPY_PY_SSL=0",
    "MICROPY_USE_READLINE=0",
    "MPY_CROSS_FLAGS=-march=x86",  # native and viper functions as 32-bit x86 code
    # cryptolib (AES for COSE_Encrypt0, protocol/cose_enc.py) as on the ESP32 and RP2040 ports: its
    # mbedtls backend, the AES of Debian's libmbedtls-dev:i386 linked statically (the ssl module
    # stays out; tools/ensure_mbedtls_m32.sh installs the package)
    "CFLAGS_EXTRA=-DMICROPY_PY_CRYPTOLIB=1 -DMICROPY_SSL_MBEDTLS=1",
    "LDFLAGS_EXTRA=-l:libmbedcrypto.a",
]


class BuildError(Exception):
    """The runtime cannot be built; the message says why."""


def log(msg: str) -> None:
    print("build_micropython: " + msg, file=sys.stderr, flush=True)


# -- source -------------------------------------------------------------------------------------


def source_origin() -> str:
    src = os.environ.get("MICROPY_SRC")
    if src:
        return os.path.abspath(os.path.expanduser(src))
    if os.path.isfile(VENDOR_TARBALL):
        return VENDOR_TARBALL
    return REPO_URL + "@" + TAG


def _origin_id(origin: str) -> str:
    if os.path.isfile(origin):
        st = os.stat(origin)
        return "%s size=%d mtime=%d" % (origin, st.st_size, int(st.st_mtime))
    return origin


def _untar(tarball: str, dest: str) -> None:
    tmp = tempfile.mkdtemp(prefix="micropython-src.", dir=BUILD)
    try:
        with tarfile.open(tarball) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(tmp, filter="data")
            else:  # Python < 3.11.4
                tf.extractall(tmp)
        entries = os.listdir(tmp)
        top = os.path.join(tmp, entries[0]) if len(entries) == 1 else tmp
        if not os.path.isdir(os.path.join(top, "py")):
            raise BuildError("%s does not hold a MicroPython source tree (no py/)" % tarball)
        os.replace(top, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_checkout(src: str, dest: str) -> None:
    if not os.path.isdir(os.path.join(src, "py")):
        raise BuildError("MICROPY_SRC=%s is not a MicroPython checkout (no py/)" % src)
    ignore = shutil.ignore_patterns(".git", "build", "build-*")
    shutil.copytree(src, dest, symlinks=True, ignore=ignore)


def _clone(dest: str) -> None:
    if shutil.which("git") is None:
        raise BuildError("no MicroPython source: set MICROPY_SRC, or install git to clone %s" % REPO_URL)
    log("cloning %s (tag %s; network needed)" % (REPO_URL, TAG))
    proc = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", TAG, REPO_URL, dest])
    if proc.returncode != 0:
        raise BuildError("git clone of %s failed; set MICROPY_SRC to a tarball or checkout" % REPO_URL)


def source_version(src: str) -> str:
    parts = {}
    with open(os.path.join(src, "py", "mpconfig.h")) as f:
        for line in f:
            for key in ("MAJOR", "MINOR", "MICRO"):
                if line.startswith("#define MICROPY_VERSION_%s " % key):
                    parts[key] = line.split()[2]
    return "%s.%s.%s" % (parts.get("MAJOR"), parts.get("MINOR"), parts.get("MICRO"))


def prepare_source() -> str:
    """build/micropython-src, unpacked from the origin (again when the origin changed)."""
    origin = source_origin()
    ident = _origin_id(origin)
    stamp = os.path.join(SRC, ORIGIN_STAMP)
    if os.path.isfile(stamp) and open(stamp).read() == ident:
        return SRC
    shutil.rmtree(SRC, ignore_errors=True)
    shutil.rmtree(OUT, ignore_errors=True)  # objects of another source
    shutil.rmtree(OUT_BARE, ignore_errors=True)
    shutil.rmtree(OUT_BOARD, ignore_errors=True)
    os.makedirs(BUILD, exist_ok=True)
    t0 = time.monotonic()
    tmp = SRC + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if origin.startswith(REPO_URL):
        _clone(tmp)
    elif os.path.isdir(origin):
        log("copying the MicroPython checkout %s" % origin)
        _copy_checkout(origin, tmp)
    elif os.path.isfile(origin):
        log("unpacking %s" % origin)
        _untar(origin, tmp)
    else:
        raise BuildError("MICROPY_SRC=%s does not exist" % origin)
    version = source_version(tmp)
    if version != VERSION:
        log("warning: %s is MicroPython %s, not %s" % (origin, version, VERSION))
    # a frozen-manifest build looks for micropython-lib (a git submodule, not needed here)
    readme = os.path.join(tmp, "lib", "micropython-lib", "README.md")
    if not os.path.exists(readme):
        os.makedirs(os.path.dirname(readme), exist_ok=True)
        with open(readme, "w") as f:
            f.write("placeholder: micropython-lib is not used by open-ami's build\n")
    with open(os.path.join(tmp, ORIGIN_STAMP), "w") as f:
        f.write(ident)
    os.replace(tmp, SRC)
    log("MicroPython %s source ready in %s (%.0f s)" % (version, SRC, time.monotonic() - t0))
    return SRC


# The one change made to MicroPython's source: tools/mpy-tool.py writes a frozen float constant
# with "%.16g", which loses the last bit of some doubles (2.0**-24 froze as 5.960464477539062e-08,
# not 5.9604644775390625e-08: protocol/cbor.py's half-float decoding, caught by tests/dual/test_cbor
# on this runtime). 17 significant digits round-trip every double. Boards are unaffected: ESP32 and
# RP2040 builds use single-precision floats.
FLOAT_FMT_OLD = "(mp_float_t)%.16g"
FLOAT_FMT_NEW = "(mp_float_t)%.17g"


def patch_source(src: str) -> bool:
    """Apply the float-constant fix to ``src`` (idempotent); True when it changed something."""
    path = os.path.join(src, "tools", "mpy-tool.py")
    with open(path) as f:
        text = f.read()
    if FLOAT_FMT_OLD not in text:
        return False
    with open(path, "w") as f:
        f.write(text.replace(FLOAT_FMT_OLD, FLOAT_FMT_NEW))
    return True


# -- frozen files -------------------------------------------------------------------------------


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def manifest_files(manifest: str, src: str = SRC) -> list[str]:
    """Absolute paths of the files ``manifest`` freezes (MicroPython's tools/manifestfile.py), then the
    manifests themselves."""
    sys.path.insert(0, os.path.join(src, "tools"))
    try:
        import manifestfile
    finally:
        sys.path.pop(0)
    path_vars = {
        "MPY_DIR": src,
        "MPY_LIB_DIR": os.path.join(src, "lib", "micropython-lib"),
        "PORT_DIR": os.path.join(src, "ports", "unix"),
        "BOARD_DIR": "",
    }
    m = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, path_vars)
    m.execute(os.path.abspath(manifest))
    return [r.full_path for r in m.files()] + sorted(m._visited)


def fingerprint(manifest: str, src: str = SRC) -> dict:
    """{path relative to ROOT (or to the MicroPython source): sha256} of what ``manifest`` freezes."""
    out = {}
    for path in manifest_files(manifest, src):
        key = (
            os.path.relpath(path, ROOT)
            if path.startswith(ROOT + os.sep)
            else "$(MPY_DIR)/" + os.path.relpath(path, src)
        )
        out[key] = _sha256(path)
    return out


def stale(out: str = OUT) -> str | None:
    """Why ``out`` must be (re)built, or None when its binary has every frozen file as the tree has it."""
    exe = os.path.join(out, "micropython")
    info_path = os.path.join(out, "frozen.json")
    if not (os.path.isfile(exe) and os.path.isfile(info_path)):
        return "%s is not built" % exe
    with open(info_path) as f:
        info = json.load(f)
    if info.get("make", MAKE_VARS) != MAKE_VARS:
        return "%s was built with other make variables" % exe
    for key, digest in sorted(info["files"].items()):
        if key.startswith("$(MPY_DIR)/"):
            continue  # MicroPython's own files change only with the source (a new source rebuilds)
        path = os.path.join(ROOT, key)
        if not os.path.isfile(path):
            return "%s (frozen) is gone" % key
        if _sha256(path) != digest:
            return "%s changed since the build" % key
    return None


# -- build --------------------------------------------------------------------------------------


def _run(argv: list[str], cwd: str, quiet: bool) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=quiet, text=True)
    if proc.returncode != 0:
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-4000:] if quiet else ""
        raise BuildError("%s failed (exit %d)\n%s" % (" ".join(argv[:3]), proc.returncode, tail))


def build(manifest: str = MANIFEST, out: str = OUT, jobs: int = 2, quiet: bool = False) -> dict:
    """Build (or bring up to date) OUT/micropython with ``manifest`` frozen; {seconds, text, ...}."""
    os.makedirs(BUILD, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build (pytest, make) in progress: wait for it
        t0 = time.monotonic()
        src = prepare_source()
        if patch_source(src):
            log("patched %s/tools/mpy-tool.py: frozen float constants with 17 digits" % src)
            for d in (OUT, OUT_BARE, OUT_BOARD):  # frozen content written by the unpatched tool
                for name in ("frozen_content.c", "frozen_mpy"):
                    p = os.path.join(d, "obj", name)
                    if os.path.isdir(p):
                        shutil.rmtree(p)
                    elif os.path.isfile(p):
                        os.remove(p)
        mpy_cross = os.path.join(src, "mpy-cross", "build", "mpy-cross")
        if not os.path.isfile(mpy_cross):
            log("building mpy-cross")
            _run(["make", "-C", "mpy-cross", "-j%d" % jobs], src, quiet)
        obj = os.path.join(out, "obj")
        info_path = os.path.join(out, "frozen.json")
        if os.path.isfile(info_path):
            with open(info_path) as f:
                made = json.load(f).get("make")
            if made is not None and made != MAKE_VARS and os.path.isdir(obj):
                log("make variables changed since the last build: building %s from scratch" % out)
                shutil.rmtree(obj)  # make does not rebuild objects when only flags changed
        argv = ["make", "-C", "ports/unix", "-j%d" % jobs, "BUILD=" + obj]
        argv += MAKE_VARS + ["FROZEN_MANIFEST=" + os.path.abspath(manifest)]
        log("building %s (unix port, gcc -m32, frozen: %s)" % (out, os.path.relpath(manifest, ROOT)))
        _run(argv, src, quiet)
        exe = os.path.join(out, "micropython")
        tmp = exe + ".tmp"
        shutil.copy(os.path.join(obj, "micropython"), tmp)  # a new mtime: make sees it up to date
        os.replace(tmp, exe)
        info = {
            "micropython": source_version(src),
            "origin": source_origin(),
            "manifest": os.path.relpath(os.path.abspath(manifest), ROOT),
            "make": MAKE_VARS,
            "files": fingerprint(manifest, src),
        }
        with open(os.path.join(out, "frozen.json"), "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        info["seconds"] = round(time.monotonic() - t0, 1)
        info["text"] = text_size(exe)
        info["image"] = image_size(exe)
        log("%s ready: text %d bytes (%.1f s)" % (exe, info["text"], info["seconds"]))
        return info


BOARD_MANIFEST = os.path.join(ROOT, "firmware", "manifest.py")
OUT_BOARD = os.path.join(BUILD, "micropython-unix32-board")


def build_bare(jobs: int = 2, quiet: bool = False) -> dict:
    """The same port with nothing frozen (an empty manifest): the frozen image size's baseline."""
    os.makedirs(OUT_BARE, exist_ok=True)
    manifest = os.path.join(OUT_BARE, "manifest.py")
    if not os.path.exists(manifest):
        with open(manifest, "w") as f:
            f.write("# nothing frozen: the baseline of the frozen image size (tools/bench_firmware.py)\n")
    return _cached(manifest, OUT_BARE, jobs, quiet)


def build_board(jobs: int = 2, quiet: bool = False) -> dict:
    """The same port with only firmware/manifest.py frozen (what a board image gets, without the
    emulator's host modules): its text growth over build_bare is the board's frozen image size."""
    return _cached(BOARD_MANIFEST, OUT_BOARD, jobs, quiet)


def _cached(manifest: str, out: str, jobs: int, quiet: bool) -> dict:
    exe = os.path.join(out, "micropython")
    if stale(out) is None:
        return {"seconds": 0.0, "text": text_size(exe), "image": image_size(exe), "cached": True}
    return build(manifest, out, jobs, quiet)


def _size(exe: str) -> list[int]:
    out = subprocess.run(["size", exe], capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.splitlines()[1].split()[:3]]


def text_size(exe: str) -> int:
    """The text segment of an ELF binary (``size``, Berkeley format), bytes."""
    return _size(exe)[0]


def image_size(exe: str) -> int:
    """text + data (``size``): on this position-independent executable the frozen modules' constant
    objects holding pointers land in .data.rel.ro (counted in data); on a board all of it is flash."""
    text, data, _bss = _size(exe)
    return text + data


def ensure(quiet: bool = True) -> str:
    """OUT/micropython, built or rebuilt first when missing or stale (tools/emulate.py, tests)."""
    if stale() is not None:
        build(quiet=quiet)
    return os.path.join(OUT, "micropython")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", default=MANIFEST, help="frozen manifest (default emulator/manifest.py)")
    p.add_argument("--out", default=None, help="output directory (default build/micropython-unix32)")
    p.add_argument("--bare", action="store_true", help="build the baseline with nothing frozen")
    p.add_argument("--board", action="store_true", help="build with only firmware/manifest.py frozen")
    p.add_argument("--jobs", "-j", type=int, default=2)
    p.add_argument("--check", action="store_true", help="exit 1 when the runtime is missing or stale")
    p.add_argument("--quiet", action="store_true", help="show MicroPython's build output only on failure")
    args = p.parse_args(argv)
    try:
        if args.check:
            why = stale(args.out or OUT)
            print(why or "up to date")
            return 1 if why else 0
        if args.bare:
            build_bare(args.jobs, args.quiet)
        elif args.board:
            build_board(args.jobs, args.quiet)
        else:
            build(args.manifest, args.out or OUT, args.jobs, args.quiet)
    except BuildError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
