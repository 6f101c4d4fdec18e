"""Meter firmware. Pure core modules over ints; hardware behind firmware.hal."""

FW_VERSION = "0.1.0"
