"""The wire contract shared by meter firmware and head-end (docs/protocol.md).

Pure Python that runs unchanged on CPython and on MicroPython: it imports
only what both runtimes have (``hashlib``, ``struct``).
"""

PROTOCOL_VERSION = 1
