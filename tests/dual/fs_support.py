"""Scratch directories for the dual-runtime tests that touch the filesystem (CPython and MicroPython)."""

import os


def tmpdir(prefix):
    """A new empty directory: tempfile's on CPython, /tmp/<prefix>N on MicroPython."""
    try:
        import tempfile
    except ImportError:  # MicroPython: make our own under /tmp
        for n in range(1000):
            path = "/tmp/%s%d" % (prefix, n)
            try:
                os.mkdir(path)
                return path
            except OSError:  # taken by another run
                pass
        raise OSError("no free /tmp/%sN directory" % prefix)
    return tempfile.mkdtemp(prefix=prefix)


def rmtree(path):
    for name in os.listdir(path):
        p = path + "/" + name
        if os.stat(p)[0] & 0x4000:
            rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)
