"""Meter firmware. Pure core modules over ints; hardware behind firmware.hal."""

FW_VERSION = "0.1.0"
selftest_args = None  # firmware.selftest at import: (board, flash dir) from tools/deploy.py; False: not run
