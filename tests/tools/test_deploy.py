"""tools/deploy.py: the dry run names every mpy-cross and mpremote command; the compile step really builds
firmware/manifest.py's modules for the ESP32 (xtensawin) and the RP2040 (armv6m); --frozen copies only
main.py and config.json."""

from __future__ import annotations

import argparse
import ast
import io
import os
import pathlib
import shlex
import subprocess
import types

import pytest

from headend.meters import fleet as provision_fleet
from tools import build_micropython, deploy, mpy_build

ROOT = pathlib.Path(__file__).resolve().parents[2]

# sys.implementation._mpy arch field (bits 2..7 of the .mpy header's third byte)
ARCH_INDEX = {name: i for i, name in enumerate(mpy_build.ARCHS) if name}


@pytest.fixture
def board_config(tmp_path, broker_tmp):
    s = provision_fleet.provision_fleet(
        str(tmp_path / "h.db"), 1, str(tmp_path / "fleet"), wifi={"ssid": "lab", "password": "pw"},
        broker_dir=str(broker_tmp / "broker"),
    )  # fmt: skip
    return s["meters"][0]["config"]


def _mpremote_accepts(argv: list[str]) -> list[str]:
    """Walk argv (after the executable) the way mpremote's main() does, with its own argument parsers;
    the command names in order. Fails if mpremote would refuse any of them."""
    from mpremote import main as mm

    mm.prepare_command_expansions(types.SimpleNamespace(commands={}))
    args, names = list(argv), []
    while args:
        if args[0] == "+":
            args.pop(0)
            continue
        name = args[0]
        mm.do_command_expansion(args)  # shortcuts such as "reset" become base commands
        cmd = args.pop(0)
        _handler, parser_func = mm._COMMANDS[cmd]
        cut = args.index("+") if "+" in args else len(args)
        mine, rest = args[:cut], args[cut:]
        parser = parser_func()
        parser.add_argument("next_command", nargs=argparse.REMAINDER)
        parsed = parser.parse_args(mine)
        names.append(name)
        args = parsed.next_command + rest
    return names


@pytest.mark.parametrize("board,arch", [("esp32", "xtensawin"), ("rp2040", "armv6m")])
def test_dry_run_prints_the_exact_commands_and_touches_no_port(board, arch, board_config, tmp_path):
    out = io.StringIO()
    port = str(tmp_path / "no-such-tty")
    stage = str(tmp_path / "stage")
    r = deploy.deploy(port, board, board_config, build=stage, dry_run=True, out=out)
    lines = out.getvalue().splitlines()
    compiles = [shlex.split(x) for x in lines if "mpy-cross" in x.split(" ", 1)[0]]
    sources = deploy.sources()
    assert len(compiles) == len(sources) and "firmware/app.py" in sources and "protocol/cose.py" in sources
    assert all(c[1] == "-march=" + arch for c in compiles)
    assert {c[3] for c in compiles} == set(sources), "each source compiled once, its name embedded relative"
    assert sources == deploy.manifest_modules(deploy.MANIFEST), "firmware/manifest.py's allow-list"
    assert not any(s.startswith("emulator/") or "vectors" in s for s in sources)
    assert not os.path.exists(stage) and not os.path.exists(port), "a dry run creates and opens nothing"
    stop, copy = r["commands"]
    assert stop[1:4] == ["connect", port, "exec"] and stop[-2:] == ["+", "reset"]
    assert 'os.remove("main.py")' in stop[4]
    tail = copy[5:]
    assert tail[:4] == ["+", "fs", "cp", "-r"]
    assert tail[4:7] == [os.path.join(stage, "firmware"), os.path.join(stage, "protocol"), ":"]
    assert ["fs", "cp", os.path.abspath(board_config), ":/flash/config.json"] == tail[8:12]
    assert tail[12:] == ["+", "fs", "cp", os.path.join(stage, "main.py"), ":main.py", "+", "reset"]
    assert 'os.mkdir("/flash")' in copy[4]
    assert _mpremote_accepts(stop[1:]) == ["connect", "exec", "reset"]
    assert _mpremote_accepts(copy[1:]) == ["connect", "exec", "fs", "fs", "fs", "reset"]
    assert out.getvalue().endswith(shlex.join(stop) + "\n" + shlex.join(copy) + "\n"), "printed as run"
    assert "from firmware.boards import %s; %s.main()" % (board, board) in out.getvalue()


def _imports(path):
    """The firmware/protocol/emulator modules a source file imports (at any depth of its code)."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text(), path)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(node.module + "." + a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in ("firmware", "protocol", "emulator")}


def test_the_manifest_is_an_allow_list_closed_under_imports():
    """Everything a board's code imports from the project is on the board, and nothing host-only is:
    no module of emulator/ (the emulator's firmware process, its link and bench setup, the chip
    models), and every listed module's imports (lazy ones too) resolve to listed modules."""
    listed = set(deploy.sources())
    assert {"firmware/boards/esp32.py", "firmware/boards/rp2040.py", "firmware/runner.py"} <= listed
    modules = {p[:-3].replace("/", ".").removesuffix(".__init__") for p in listed}
    for path in sorted(listed):
        for name in _imports(path):
            is_module = (ROOT / (name.replace(".", "/") + ".py")).exists()
            is_package = (ROOT / name.replace(".", "/") / "__init__.py").exists()
            if not (is_module or is_package):
                continue  # a name imported from a module (from firmware.x import CONST)
            assert name in modules, "%s imports %s, which is not in firmware/manifest.py" % (path, name)
    on_disk = {
        str(p.relative_to(ROOT)) for pkg in ("firmware", "protocol") for p in (ROOT / pkg).rglob("*.py")
    }
    assert on_disk - listed == {"firmware/manifest.py"}, "a new module must be listed (or moved to emulator/)"


def test_frozen_dry_run_copies_only_main_py_and_config(board_config, tmp_path):
    out = io.StringIO()
    port, stage = str(tmp_path / "tty"), str(tmp_path / "stage")
    r = deploy.deploy(port, "esp32", board_config, build=stage, dry_run=True, out=out, frozen=True)
    assert "mpy-cross" not in out.getvalue() and r["frozen"]
    stop, copy = r["commands"]
    assert stop[-2:] == ["+", "reset"]
    assert copy[3] == "exec" and "from firmware.boards import esp32" in copy[4] and '"/firmware"' in copy[4]
    assert copy[5:] == [
        "+", "fs", "cp", os.path.abspath(board_config), ":/flash/config.json",
        "+", "fs", "cp", os.path.join(stage, "main.py"), ":main.py", "+", "reset",
    ]  # fmt: skip
    assert _mpremote_accepts(copy[1:]) == ["connect", "exec", "fs", "fs", "reset"]
    assert not os.path.exists(stage)
    with pytest.raises(SystemExit):
        deploy.main(
            ["--port", port, "--board", "esp32", "--config", board_config, "--frozen", "--no-compile"]
        )


def test_frozen_check_tells_a_frozen_image_from_a_plain_one(tmp_path):
    """--frozen's check on the board: passes on an image with the firmware frozen in (the unix32
    runtime freezes firmware/manifest.py), stops the deploy on one without (pip's unix port)."""
    snippet = deploy.FROZEN_CHECK_SNIPPET % "rp2040"
    frozen = build_micropython.ensure()
    ok = subprocess.run([frozen, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout.strip() == "frozen firmware 0.1.0", ok.stdout + ok.stderr
    plain = os.path.join(os.path.dirname(mpy_build.mpy_cross()), "micropython")
    no = subprocess.run([plain, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert no.returncode != 0 and "no frozen firmware" in no.stdout + no.stderr


def test_flash_dir_and_main_py_come_from_the_board_files():
    assert deploy.flash_dir("esp32") == "/flash" and deploy.flash_dir("rp2040") == "/flash"
    assert deploy.main_py("rp2040") == "from firmware.boards import rp2040\nrp2040.main()\n"


@pytest.mark.parametrize("board", ["esp32", "rp2040"])
def test_compile_step_builds_every_module_for_the_boards_cpu(board, tmp_path):
    arch = deploy.BOARDS[board]
    assert arch in deploy.mpy_cross_archs(mpy_build.mpy_cross()), "the installed mpy-cross offers it"
    stage = tmp_path / board
    r = deploy.compile_tree(str(stage), arch)
    built = sorted(str(p.relative_to(stage)) for p in stage.rglob("*.mpy"))
    assert built == sorted(s[:-3] + ".mpy" for s in deploy.sources()) and r["files"] == len(built)
    for rel in built:
        head = (stage / rel).read_bytes()[:4]
        assert head[:2] == b"M\x06", rel + ": MicroPython .mpy v6"
    viper = (stage / "firmware" / "adc_viper.mpy").read_bytes()
    assert viper[2] >> 2 == ARCH_INDEX[arch], "native/viper code is machine code for the board's CPU"


def test_no_compile_stages_the_sources(tmp_path):
    r = deploy.stage_sources(str(tmp_path / "s"))
    assert r["files"] == len(deploy.sources())
    assert (tmp_path / "s" / "firmware" / "boards" / "esp32.py").exists()
    assert not (tmp_path / "s" / "emulator").exists()


def test_board_snippets_run_on_micropython(tmp_path):
    """The clean-up sent to the board removes the old trees and makes the flash dir (unix port's os)."""
    root = tmp_path / "board"
    (root / "firmware" / "boards").mkdir(parents=True)
    (root / "firmware" / "boards" / "x.mpy").write_bytes(b"x")
    (root / "protocol").mkdir()
    (root / "main.py").write_text("pass\n")
    (root / "flash").mkdir()
    (root / "flash" / "state.a").write_bytes(b"keep")
    snippet = deploy.STOP_SNIPPET + deploy.PREP_SNIPPET % "/flash"
    for p in ('"/firmware"', '"/protocol"', '"/flash"'):
        snippet = snippet.replace(p, '"%s%s"' % (root, p.strip('"')))
    mp = os.path.join(os.path.dirname(mpy_build.mpy_cross()), "micropython")
    subprocess.run([mp, "-c", snippet], cwd=root, check=True, timeout=30)
    assert sorted(os.listdir(root)) == ["flash"], "old code and main.py gone"
    assert (root / "flash" / "state.a").read_bytes() == b"keep", "the meter's state survives a redeploy"


def test_bad_config_or_board_is_refused_before_anything_runs(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"meter_id": "m-1", "key": "00", "intervall": 900}')
    assert deploy.main(["--port", "/dev/null", "--board", "esp32", "--config", str(bad), "--dry-run"]) == 1
    assert "config.intervall: unknown key" in capsys.readouterr().err
    with pytest.raises(deploy.DeployError, match="does not exist"):
        good = tmp_path / "good.json"
        good.write_text('{"meter_id": "m-1", "key": "%s"}' % ("ab" * 32))
        deploy.deploy(str(tmp_path / "ttyNONE"), "rp2040", str(good), build=str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
