# ruff: noqa: F821  (include/package/module are the manifest API: MicroPython's tools/manifestfile.py)
"""MicroPython manifest of the meter firmware: exactly what goes on a board (an allow-list).

Build an image with it: ``make BOARD=... FROZEN_MANIFEST=/abs/path/firmware/manifest.py``
(docs/boards.md); tools/deploy.py reads the same lists (``--frozen`` copies only
config.json and main.py to a board running such an image). The emulator's runtime
(``make firmware``: build/micropython-unix32/micropython) freezes emulator/manifest.py,
which includes this file and adds the host-only modules of the emulator.

Nothing host-only is listed here: the emulator's firmware process and its link
(emulator/), the chip models, tests, protocol/vectors.

FROZEN_MANIFEST replaces the port's own manifest. On a board port (esp32, rp2)
that manifest freezes the port's modules (``_boot.py`` mounts the filesystem
holding config.json and main.py; networking), so it is included again here:
the board's ``manifest.py`` if it has one (RPI_PICO_W), else the port's
``boards/manifest.py`` (ESP32_GENERIC). The unix and qemu ports get only the
firmware and asyncio.
"""

import os

FIRMWARE = (
    "__init__.py",
    "adc_frontend.py",
    "adc_viper.py",
    "app.py",
    "atm90e26.py",
    "atm90e26_cal.py",
    "atm90e26_reg.py",
    "calib.py",
    "commands_exec.py",
    "comms.py",
    "compat.py",
    "energy.py",
    "fixedpoint.py",
    "hal.py",
    "meter.py",
    "meter_events.py",
    "meter_state.py",
    "mqtt_client.py",
    "mqtt_packets.py",
    "outbox.py",
    "persist.py",
    "prepaid.py",
    "report.py",
    "runner.py",
    "selftest.py",
    "tls.py",
    "boards/__init__.py",
    "boards/mcu.py",
    "boards/esp32.py",
    "boards/rp2040.py",
)
PROTOCOL = (
    "__init__.py",
    "board_config.py",
    "cbor.py",
    "commands.py",
    "cose.py",
    "cose_enc.py",
    "errors.py",
    "messages.py",
    "tariff_calendar.py",
    "topics.py",
)
BOARD_PORTS = ("esp32", "rp2")


def _path_var(name):
    # the manifest tool's path variables ($(PORT_DIR), $(BOARD_DIR)); None outside a build
    try:
        return include.__self__._path_vars.get(name)
    except (NameError, AttributeError):
        return None


def _port_manifest():
    port = _path_var("PORT_DIR")
    if not port or os.path.basename(os.path.normpath(port)) not in BOARD_PORTS:
        return None
    board = _path_var("BOARD_DIR")
    if board and os.path.isfile(os.path.join(board, "manifest.py")):
        return "$(BOARD_DIR)/manifest.py"
    return "$(PORT_DIR)/boards/manifest.py"


_port = _port_manifest()
if _port:
    include(_port)
include("$(MPY_DIR)/extmod/asyncio")
package("firmware", files=FIRMWARE, base_path="..")
package("protocol", files=PROTOCOL, base_path="..")
