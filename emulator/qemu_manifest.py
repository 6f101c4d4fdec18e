# ruff: noqa: F821  (include/package are the manifest API: MicroPython's tools/manifestfile.py)
"""MicroPython manifest of the qemu-arm runtime (make firmware-arm: build/micropython-qemu-arm/firmware.elf).

The emulator's runtime manifest (emulator/manifest.py: everything a board gets, from
firmware/manifest.py, plus the host-only emulator package) and the qemu entry,
emulator/qemu_main.py. Frozen for the Cortex-M3 (mpy-cross -march=armv7m: viper and
native functions as Thumb-2 code), so bytecode and qstrs stay in the image, not in the
64 KiB heap. tools/deploy.py never reads this file.
"""

include("manifest.py")
package("emulator", files=("qemu_main.py",), base_path="..")
