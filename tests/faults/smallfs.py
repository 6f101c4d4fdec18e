"""A small file system for the disk-full and read-only tests: a tmpfs of a few MiB mounted under
the test's tmp_path (needs root, as the sessions and CI here are; skipped otherwise), filled up to
the last block, emptied, remounted read-only, unmounted at teardown."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


class SmallFS:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write until the file system says ENOSPC."""
        fd = os.open(str(self.filler), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            block = b"\0" * 4096
            while True:
                os.write(fd, block)
        except OSError as e:
            assert e.errno == 28, e  # ENOSPC
        finally:
            os.close(fd)
        assert os.statvfs(str(self.path)).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()

    def read_only(self, on: bool = True) -> None:
        subprocess.run(
            ["mount", "-o", "remount,%s" % ("ro" if on else "rw"), str(self.path)],
            check=True,
            capture_output=True,
        )


def mount_small_fs(tmp_path: Path, size: str = "4m"):
    """Generator for a fixture: yields a SmallFS, unmounts afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path = tmp_path / "smallfs"
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(path)], capture_output=True
    )
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())
    try:
        yield SmallFS(path)
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(
                ["umount", "-l", str(path)], capture_output=True
            )  # a process still had a file open
