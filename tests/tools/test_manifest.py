"""firmware/manifest.py and emulator/manifest.py under MicroPython 1.28.0's own manifest tool.

The board manifest freezes exactly tools/deploy.py's list plus asyncio; on a board port (esp32,
rp2) it keeps the port's own frozen modules (the board's manifest.py when it has one, else the
port's boards/manifest.py), on the unix and qemu ports it does not. The esp32 and rp2 ports are
not in the trimmed source here: their manifests are laid out in a scratch tree as the real ports
have them (``_boot.py`` in ``modules/``, asyncio included again, which the tool freezes once).
"""

import os
import sys

import pytest

from tools import build_micropython, deploy

ROOT = build_micropython.ROOT
BOARD_MANIFEST = os.path.join(ROOT, "firmware", "manifest.py")
ASYNCIO = {"asyncio/__init__.py", "asyncio/core.py", "asyncio/event.py", "asyncio/funcs.py",
           "asyncio/lock.py", "asyncio/stream.py", "uasyncio.py"}  # fmt: skip


@pytest.fixture(scope="module")
def manifestfile():
    try:
        build_micropython.ensure()  # unpacks the MicroPython source too
    except build_micropython.BuildError as e:
        pytest.fail("cannot build the unix32 runtime (make firmware): %s" % e)
    sys.path.insert(0, os.path.join(build_micropython.SRC, "tools"))
    try:
        import manifestfile
    finally:
        sys.path.pop(0)
    return manifestfile


def _frozen(manifestfile, manifest, port_dir, board_dir=""):
    src = build_micropython.SRC
    path_vars = {"MPY_DIR": src, "MPY_LIB_DIR": None, "PORT_DIR": port_dir, "BOARD_DIR": board_dir}
    m = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, path_vars)
    m.execute(manifest)
    targets = [r.target_path for r in m.files()]
    assert len(targets) == len(set(targets)), "nothing frozen twice"
    return set(targets)


def _port(tmp_path, name, board, board_manifest=False):
    port = tmp_path / name
    (port / "modules").mkdir(parents=True)
    (port / "modules" / "_boot.py").write_text("# mounts the filesystem\n")
    (port / "boards" / board).mkdir(parents=True)
    (port / "boards" / "manifest.py").write_text(
        'freeze("$(PORT_DIR)/modules")\ninclude("$(MPY_DIR)/extmod/asyncio")\n'
    )
    if board_manifest:
        (port / "modules_w").mkdir()
        (port / "modules_w" / "network_extra.py").write_text("# the board's own networking\n")
        (port / "boards" / board / "manifest.py").write_text(
            'include("$(PORT_DIR)/boards/manifest.py")\nfreeze("$(PORT_DIR)/modules_w")\n'
        )
    return str(port), str(port / "boards" / board)


def test_unix_port_gets_the_firmware_and_asyncio_only(manifestfile):
    got = _frozen(manifestfile, BOARD_MANIFEST, os.path.join(build_micropython.SRC, "ports", "unix"))
    assert got == set(deploy.sources()) | ASYNCIO
    assert not any(t.startswith("emulator/") for t in got)


def test_esp32_generic_keeps_the_ports_boot_and_modules(manifestfile, tmp_path):
    port, board = _port(tmp_path, "esp32", "ESP32_GENERIC")
    got = _frozen(manifestfile, BOARD_MANIFEST, port, board)
    assert got == set(deploy.sources()) | ASYNCIO | {"_boot.py"}


def test_rpi_pico_w_uses_the_boards_own_manifest(manifestfile, tmp_path):
    port, board = _port(tmp_path, "rp2", "RPI_PICO_W", board_manifest=True)
    got = _frozen(manifestfile, BOARD_MANIFEST, port, board)
    assert got == set(deploy.sources()) | ASYNCIO | {"_boot.py", "network_extra.py"}


def test_emulator_runtime_adds_only_the_emulator_package(manifestfile):
    unix = os.path.join(build_micropython.SRC, "ports", "unix")
    board = _frozen(manifestfile, BOARD_MANIFEST, unix)
    emu = _frozen(manifestfile, os.path.join(ROOT, "emulator", "manifest.py"), unix)
    assert board < emu and all(t.startswith("emulator/") for t in emu - board)
    assert {"emulator/main.py", "emulator/unix_board.py", "emulator/bench_link.py"} <= emu
