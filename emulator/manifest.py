# ruff: noqa: F821  (include/package are the manifest API: MicroPython's tools/manifestfile.py)
"""MicroPython manifest of the emulator's runtime (make firmware: build/micropython-unix32/micropython).

Everything a board gets (firmware/manifest.py), plus the host-only emulator package:
the firmware process's main, its unix board and bench link, the bench setup, and the
chip models (the dual tests run them under MicroPython; the firmware process never
imports them). tools/deploy.py never reads this file.
"""

EMULATOR = (
    "__init__.py",
    "main.py",
    "unix_board.py",
    "bench_link.py",
    "bench_setup.py",
    "atm90e26_model.py",
    "adc_model.py",
)

include("../firmware/manifest.py")
package("emulator", files=EMULATOR, base_path="..")
