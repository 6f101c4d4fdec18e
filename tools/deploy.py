"""Deploy the meter firmware to a MicroPython board over USB serial (mpy-cross + mpremote).

Usage:
    python tools/deploy.py --port /dev/ttyUSB0 --board esp32|rp2040 --config DIR/<id>/config.json
        [--frozen | --no-compile] [--build DIR] [--dry-run] [--selftest]
    python tools/deploy.py --port PORT --board esp32|rp2040 --selftest
    python tools/deploy.py --selftest --flash DIR

What goes on a board is firmware/manifest.py's allow-list (``sources()``): the
firmware/ and protocol/ modules it names, nothing else (not emulator/, the host-only
side of the emulator, nor protocol/vectors). Steps (MicroPython itself must already
be on the board: docs/boards.md):

1. compile: every listed ``.py`` with ``mpy-cross -march=<arch>`` (xtensawin for
   ESP32, armv6m for RP2040: the native and viper functions are machine code for
   that CPU) into ``--build`` (default build/deploy-<board>), plus ``main.py``:
   ``from firmware.boards import <board>; <board>.main()``.
   ``--no-compile`` stages the .py sources instead (the board compiles them
   at import: slower boot and more RAM). ``--frozen``: the board runs an image
   with firmware/manifest.py frozen in (docs/boards.md, FROZEN_MANIFEST): nothing
   is compiled and only ``main.py`` and config.json are copied.
2. stop: ``mpremote connect PORT exec <remove main.py> + reset``. The
   running firmware has armed the watchdog (8 s), which nothing can disarm,
   so the copy happens after a reset into a board without main.py.
3. copy: one ``mpremote connect PORT exec <remove /firmware and /protocol,
   make the flash dir> + fs cp -r firmware protocol : + fs cp CONFIG
   :<flash>/config.json + fs cp main.py :main.py + reset``. The flash dir is
   the default of ``main()`` in firmware/boards/<board>.py (``/flash``). The
   meter's state and outbox there are kept: a redeploy does not reset the
   registers. With ``--frozen`` the exec also checks that the image has the
   firmware frozen in (it stops before copying anything if not), and there is no
   ``fs cp -r``: the old /firmware and /protocol trees are removed all the same,
   since a directory on the filesystem would hide the frozen package of that name.

A config with ``broker.tls`` names its CA file in ``broker.cafile``, relative to the flash
directory: the file of that name beside ``--config`` (``headend broker-config --tls`` writes
``ca.pem``) is copied there too, after config.json (an absolute cafile must already be on the board).

``--selftest``: then (or alone, without --config) ``firmware/selftest.py`` runs on the board
over its raw REPL (main.py set aside and the board reset, then put back) and its table of checks
is printed (docs/boards.md "Self-test"); exit 1 if a check failed. ``--selftest --flash DIR``
runs it in the emulator on the meter in DIR.

``--config`` is validated with protocol.board_config before anything touches the
board. ``--dry-run`` prints the exact commands (mpy-cross per file, then
mpremote) and runs none of them.
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import mpy_build  # noqa: E402

BOARDS = {"esp32": "xtensawin", "rp2040": "armv6m"}  # board -> mpy-cross -march
PACKAGES = ("firmware", "protocol")  # the top-level directories the manifest's modules live in
MANIFEST = os.path.join(ROOT, "firmware", "manifest.py")
PORT_WAIT_S = 15.0

STOP_SNIPPET = 'import os\ntry:\n    os.remove("main.py")\nexcept OSError:\n    pass\n'
# --frozen: the image must have the firmware frozen in, else the board would boot into nothing
FROZEN_CHECK_SNIPPET = """
try:
    import firmware
    from firmware.boards import %s
except ImportError as e:
    raise SystemExit("this MicroPython image has no frozen firmware (%%s): build one with FROZEN_MANIFEST="
                     "firmware/manifest.py (docs/boards.md) or deploy without --frozen" %% e)
print("frozen firmware", firmware.FW_VERSION)
"""
PREP_SNIPPET = """import os
def _rm(p):
    try:
        st = os.stat(p)
    except OSError:
        return
    if st[0] & 0x4000:
        for n in os.listdir(p):
            _rm(p + "/" + n)
        os.rmdir(p)
    else:
        os.remove(p)
for p in ("/firmware", "/protocol"):
    _rm(p)
try:
    os.mkdir("%s")
except OSError:
    pass
"""


class DeployError(Exception):
    """The deployment cannot go ahead; the message says what to fix."""


def flash_dir(board: str) -> str:
    """The default ``flash_dir`` of ``main()`` in firmware/boards/<board>.py."""
    path = os.path.join(ROOT, "firmware", "boards", board + ".py")
    tree = ast.parse(open(path).read(), path)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            args = node.args
            for arg, default in zip(
                args.args[len(args.args) - len(args.defaults) :], args.defaults, strict=True
            ):
                if arg.arg == "flash_dir" and isinstance(default, ast.Constant):
                    return default.value
    raise DeployError("%s: no main(flash_dir=...) default found" % path)


def main_py(board: str) -> str:
    return "from firmware.boards import %s\n%s.main()\n" % (board, board)


def mpy_cross_archs(exe: str) -> list[str]:
    """The -march values the installed mpy-cross lists in its --help."""
    out = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    text = out.split("-march=", 1)[1] if "-march=" in out else ""
    text = text.split("-march-flags", 1)[0].split("\n", 1)[-1]  # the list follows the option's line
    words = text.replace(",", " ").replace(";", " ").split()
    return [w for w in words if w.isidentifier() or w.isalnum()]


def manifest_modules(path: str = MANIFEST) -> list[str]:
    """The .py files a MicroPython manifest freezes from this project, as ROOT-relative '/' paths.

    Runs the manifest with the manifest API (package, module, include) recording what it names;
    includes of MicroPython's own manifests (``$(MPY_DIR)/...``, e.g. asyncio, which every board
    image has) are not followed."""
    out: list[str] = []

    def add(full: str) -> None:
        rel = os.path.relpath(full, ROOT).replace(os.sep, "/")
        if rel.startswith("../") or not rel.endswith(".py"):
            raise DeployError("%s: %s is not a .py file of the project" % (path, full))
        if rel not in out:
            out.append(rel)

    def run(manifest: str) -> None:
        here = os.path.dirname(os.path.abspath(manifest))

        def package(package_path, files=None, base_path=".", opt=None):
            top = os.path.join(here, base_path, package_path)
            if files is None:
                files = []
                for dirpath, dirs, names in os.walk(top):
                    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                    rel_dir = os.path.relpath(dirpath, top)
                    files += [
                        os.path.normpath(os.path.join(rel_dir, n)) for n in sorted(names) if n.endswith(".py")
                    ]
            for f in files:
                add(os.path.normpath(os.path.join(top, f)))

        def module(module_path, base_path=".", opt=None):
            add(os.path.normpath(os.path.join(here, base_path, module_path)))

        def include(manifest_path, **kwargs):
            if manifest_path.startswith("$("):
                return
            target = os.path.join(here, manifest_path)
            run(os.path.join(target, "manifest.py") if os.path.isdir(target) else target)

        api = {"package": package, "module": module, "include": include, "require": lambda *a, **k: None}
        api["metadata"] = lambda **k: None
        api["options"] = argparse.Namespace()
        with open(manifest) as f:
            exec(compile(f.read(), manifest, "exec"), api)  # the project's own manifest

    run(path)
    return out


def sources() -> list[str]:
    """Paths (relative to ROOT, '/'-separated) of the .py files that go to a board: firmware/manifest.py."""
    return manifest_modules()


def compile_commands(stage: str, arch: str, exe: str | None = None) -> list[tuple[list[str], str]]:
    """(mpy-cross argv, output path) per source file; the embedded source name stays relative."""
    exe = exe or mpy_build.mpy_cross()
    cmds = []
    for rel in sources():
        target = os.path.join(stage, rel[:-3] + ".mpy")
        cmds.append(([exe, "-march=" + arch, "-s", rel, "-o", target, os.path.join(ROOT, rel)], target))
    return cmds


def compile_tree(stage: str, arch: str) -> dict:
    """Compile firmware/ and protocol/ for ``arch`` into ``stage`` (emptied first); {files, bytes}."""
    exe = mpy_build.mpy_cross()
    archs = mpy_cross_archs(exe)
    if arch not in archs:
        raise DeployError("mpy-cross at %s does not support -march=%s (it lists: %s)" % (exe, arch, archs))
    shutil.rmtree(stage, ignore_errors=True)
    total = 0
    cmds = compile_commands(stage, arch, exe)
    for argv, target in cmds:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise DeployError("mpy-cross failed on %s: %s" % (argv[3], proc.stderr.strip()))
        total += os.path.getsize(target)
    return {"files": len(cmds), "bytes": total}


def stage_sources(stage: str) -> dict:
    """--no-compile: copy the .py sources into ``stage`` (emptied first); {files, bytes}."""
    shutil.rmtree(stage, ignore_errors=True)
    total = 0
    files = sources()
    for rel in files:
        target = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(ROOT, rel), target)
        total += os.path.getsize(target)
    return {"files": len(files), "bytes": total}


def mpremote_exe() -> list[str]:
    exe = shutil.which("mpremote") or os.path.join(os.path.dirname(sys.executable), "mpremote")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "mpremote"]


def mpremote_commands(
    port: str,
    board: str,
    config_path: str,
    stage: str,
    frozen: bool = False,
    cafile: tuple[str, str] | None = None,
) -> list[list[str]]:
    """The two mpremote invocations: stop (remove main.py, reset), then clean + copy + reset.
    ``frozen``: the clean-up also checks the image's frozen firmware, and no code is copied.
    ``cafile``: (host path, name in the flash dir) of a TLS meter's CA file, copied too."""
    mp = mpremote_exe() + ["connect", port]
    flash = flash_dir(board)
    stop = mp + ["exec", STOP_SNIPPET, "+", "reset"]
    if frozen:
        copy = mp + ["exec", PREP_SNIPPET % flash + FROZEN_CHECK_SNIPPET % board]
    else:
        copy = mp + ["exec", PREP_SNIPPET % flash, "+", "fs", "cp", "-r"]
        copy += [os.path.join(stage, p) for p in PACKAGES] + [":"]
    copy += ["+", "fs", "cp", os.path.abspath(config_path), ":%s/config.json" % flash.rstrip("/")]
    if cafile is not None:
        copy += ["+", "fs", "cp", os.path.abspath(cafile[0]), ":%s/%s" % (flash.rstrip("/"), cafile[1])]
    copy += ["+", "fs", "cp", os.path.join(stage, "main.py"), ":main.py", "+", "reset"]
    return [stop, copy]


def check_config(path: str) -> dict:
    from protocol import board_config as config

    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        raise DeployError("--config %s: %s" % (path, e)) from None
    return cfg


def _wait_for_port(port: str, timeout: float = PORT_WAIT_S) -> None:
    """After a reset a USB CDC port (RP2040) goes away and comes back; wait for it."""
    time.sleep(1.0)
    deadline = time.monotonic() + timeout
    while not os.path.exists(port):
        if time.monotonic() > deadline:
            raise DeployError("%s did not come back within %d s after the reset" % (port, timeout))
        time.sleep(0.2)
    time.sleep(0.5)


def _show(argv: list[str]) -> str:
    return shlex.join(argv)


def deploy(
    port: str,
    board: str,
    config_path: str,
    compile_: bool = True,
    build: str | None = None,
    dry_run: bool = False,
    out=None,
    frozen: bool = False,
) -> dict:
    out = out or sys.stdout
    if board not in BOARDS:
        raise DeployError("--board must be one of %s, got %r" % (", ".join(BOARDS), board))
    arch = BOARDS[board]
    cfg = check_config(config_path)
    if board == "esp32" and cfg["wifi"] is None:
        print("warning: %s has no wifi section: the ESP32 will not reach its broker" % config_path, file=out)
    stage = os.path.abspath(build or os.path.join(ROOT, "build", "deploy-" + board))
    cafile = None
    name = cfg["broker"].get("cafile")
    if name is not None and not name.startswith("/"):
        cafile = (os.path.join(os.path.dirname(os.path.abspath(config_path)), name), name)
        if not os.path.isfile(cafile[0]):
            raise DeployError(
                "--config %s: broker.cafile %s is not beside it (%s): copy the broker's CA there"
                " (headend broker-config --tls writes DIR/ca.pem)" % (config_path, name, cafile[0])
            )
    remote = mpremote_commands(port, board, config_path, stage, frozen, cafile)
    result = {"meter_id": cfg["meter_id"], "board": board, "arch": arch, "stage": stage, "port": port}
    result["frozen"] = frozen
    if dry_run:
        print(
            "# deploy %s to %s (%s, -march=%s); dry run: nothing is executed"
            % (cfg["meter_id"], port, board, arch),
            file=out,
        )
        if frozen:
            print(
                "# --frozen: the image holds firmware/manifest.py; only main.py and config.json go", file=out
            )
        elif compile_:
            for argv, _target in compile_commands(stage, arch):
                print(_show(argv), file=out)
        else:
            print("# --no-compile: copy %d .py files into %s" % (len(sources()), stage), file=out)
        main_line = main_py(board).replace("\n", "; ")
        print("# write %s: %s" % (os.path.join(stage, "main.py"), main_line), file=out)
        for argv in remote:
            print(_show(argv), file=out)
        result["commands"] = remote
        return result
    if not os.path.exists(port):
        raise DeployError("serial port %s does not exist (is the board plugged in?)" % port)
    t0 = time.monotonic()
    if frozen:
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(stage)
        staged = {"files": 0, "bytes": 0}
    else:
        staged = compile_tree(stage, arch) if compile_ else stage_sources(stage)
    with open(os.path.join(stage, "main.py"), "w") as f:
        f.write(main_py(board))
    print("staged %d files (%d bytes) in %s" % (staged["files"], staged["bytes"], stage), file=out)
    for i, argv in enumerate(remote):
        print("$ " + _show(argv), file=out, flush=True)
        proc = subprocess.run(argv)
        if proc.returncode != 0:
            raise DeployError("mpremote exited %d" % proc.returncode)
        if i == 0:
            _wait_for_port(port)
    result.update(staged)
    result["seconds"] = round(time.monotonic() - t0, 1)
    print(
        "deployed %s to %s in %.1f s; the board restarted into main.py"
        % (cfg["meter_id"], port, result["seconds"]),
        file=out,
    )
    return result


SELFTEST_SNIPPET = "import firmware\nfirmware.selftest_args = (%r, %r)\nimport firmware.selftest\n"


def selftest_rows(text: str) -> list:
    """The checks from firmware/selftest.py's ``SELFTEST:`` line: [[name, ok, figures], ...]."""
    import json

    for line in reversed(text.splitlines()):
        if line.startswith("SELFTEST:"):
            return json.loads(line[len("SELFTEST:") :])
    raise DeployError("no self-test result; the board printed:\n%s" % text[-2000:])


def selftest_board(port: str, board: str, flash: str | None = None, out=None) -> list:
    """firmware/selftest.py on a board over its raw REPL: main.py is set aside and the board reset
    (the meter's watchdog cannot be stopped), the checks run, main.py goes back and the board resets
    into the meter. Prints the table; returns the rows."""
    from tools.calibrate import BoardTarget, CalibrationFailed

    out = out or sys.stdout
    flash = flash or flash_dir(board)
    try:
        t = BoardTarget(port, board, flash)
        try:
            text = t._exec(SELFTEST_SNIPPET % (board, flash), timeout=120)
        finally:
            t.close()
    except CalibrationFailed as e:
        raise DeployError(str(e)) from None
    print("\n".join(line for line in text.splitlines() if not line.startswith("SELFTEST:")), file=out)
    return selftest_rows(text)


def selftest_emulator(flash: str, runtime_name: str | None = None, out=None) -> list:
    """firmware/selftest.py in the emulator's firmware process on the meter in ``flash`` (its
    config.json), the emulated load at 230 V, 5 A, PF 1. Prints the table; returns the rows."""
    import json
    import tempfile

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import emulate
    import emulate_bench as eb

    out = out or sys.stdout
    with open(os.path.join(flash, "config.json")) as f:
        raw = json.load(f)
    rt = emulate.runtime(runtime_name)
    rt.ensure()
    seg = {"seconds": 3600, "urms": 230, "irms": 5, "phase_deg": 0}
    sc = eb.Scenario(
        {"frontend": raw.get("frontend", "atm90e26"), "mains_hz": raw.get("mains_hz", 50), "segments": [seg]}
    )
    bench = eb.Bench(sc, flash)
    bench.selftest = True
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            rt.command(), cwd=rt.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
        try:
            r = bench.serve(proc)
        except eb.FirmwareDied:
            err.seek(0)
            raise DeployError("the firmware died in its self-test: %s" % err.read().decode(errors="replace"))
        finally:
            proc.stdin.close()
            proc.stdout.close()
            proc.wait()
    rows = r["rows"]
    for name, ok, fig in rows:
        print("%-9s %-4s %s" % (name, "SKIP" if ok is None else ("PASS" if ok else "FAIL"), fig), file=out)
    bad = [n for n, ok, _f in rows if ok is False]
    print("selftest: %s" % ("all checks passed" if not bad else "FAILED: " + ", ".join(bad)), file=out)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", help="serial port, e.g. /dev/ttyUSB0 or /dev/ttyACM0 (or socket://host:port)")
    p.add_argument("--board", choices=sorted(BOARDS))
    p.add_argument("--config", help="the board's config.json (tools/provision_fleet.py)")
    p.add_argument(
        "--selftest",
        action="store_true",
        help="run firmware/selftest.py on the board (after the deploy, when --config is given) and print "
        "its table; exit 1 if a check fails",
    )
    p.add_argument("--flash", help="with --selftest: the emulated meter's flash directory instead of a board")
    p.add_argument(
        "--board-flash", help="with --selftest: the board's flash dir (default: its main()'s, /flash)"
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--no-compile", action="store_true", help="copy .py sources instead of .mpy")
    how.add_argument(
        "--frozen",
        action="store_true",
        help="the board's MicroPython image has firmware/manifest.py frozen in (docs/boards.md): "
        "copy only main.py and config.json",
    )
    p.add_argument("--build", metavar="DIR", help="staging directory (default build/deploy-<board>)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    if args.selftest and args.flash:
        try:
            rows = selftest_emulator(args.flash)
        except (DeployError, OSError, ValueError) as e:
            print("error: %s" % e, file=sys.stderr)
            return 1
        return 1 if any(ok is False for _n, ok, _f in rows) else 0
    if not args.port or not args.board:
        p.error("--port and --board are needed (or --selftest --flash DIR)")
    if not args.config and not args.selftest:
        p.error("--config is needed to deploy")
    try:
        if args.selftest and not args.config:
            rows = selftest_board(args.port, args.board, args.board_flash)
            return 1 if any(ok is False for _n, ok, _f in rows) else 0
        deploy(
            args.port,
            args.board,
            args.config,
            not args.no_compile,
            args.build,
            args.dry_run,
            frozen=args.frozen,
        )
        if args.selftest and not args.dry_run:
            if not args.port.startswith("socket://"):
                _wait_for_port(args.port)
            rows = selftest_board(args.port, args.board, args.board_flash)
            return 1 if any(ok is False for _n, ok, _f in rows) else 0
    except (DeployError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
