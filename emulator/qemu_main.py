"""The qemu-arm runtime's firmware process: the emulator's main on an emulated Cortex-M3.

``make firmware-arm`` builds MicroPython's qemu port (board MPS2_AN385, 64 KiB
heap) with the firmware and this package frozen in (emulator/qemu_manifest.py)
and the ``qemuhost`` C module (emulator/cmodules/qemuhost: Arm semihosting).
tools/emulate_qemu.py starts ``qemu-system-arm ... -semihosting -kernel
firmware.elf``, enters the raw REPL on the UART and runs
``from emulator import qemu_main; qemu_main.main()``. From then on the UART
(qemu's stdin/stdout) carries the same binary bench link as the unix port's
pipes (emulator/bench_link.py), served by the same CPython bench; the link
reads the UART itself (``UartRx``: waiting for each byte asleep, which the
port's stdin, spinning on the UART, does not).

Flash: a littlefs2 filesystem (``vfs.VfsLfs2``) mounted at /flash on
``SemihostFlash``, a block device whose blocks live in a host file,
``flash.img`` in the bench's --flash DIR (named in the HELLO setup). Each
readblocks/writeblocks is one semihosting seek + read/write of that file: a
write returns only after the host's write() did, so killing qemu (a power
cut) loses only writes not yet made; littlefs (copy-on-write) and the
firmware's two state slots (firmware/persist.py) handle a cut between them
as on a board. An image littlefs cannot mount (a new one: zeros) is
formatted; a filesystem without config.json gets the setup's ``config``
(the factory's, tools/emulate_bench.ensure_config), written to a temporary
name and renamed.

Text (the boot line, a traceback) goes to qemu's stderr through semihosting,
never onto the UART. At the end, or on an error, qemu is made to exit
(status 0, or 1 after the traceback).
"""

import sys

import qemuhost
import vfs

from firmware import persist

BLOCK = 4096  # littlefs block: a NOR flash sector
MOUNT = "/flash"
CONFIG = "config.json"
OPEN_RW = 3  # semihosting SYS_OPEN mode "r+b"


class SemihostFlash:
    """A littlefs block device over a host image file (extended protocol: offsets; erase is a no-op,
    littlefs does not rely on erased bytes reading 0xFF)."""

    def __init__(self, path, blocks):
        self.h = qemuhost.open(path, OPEN_RW)
        self.blocks = blocks

    def readblocks(self, n, buf, off=0):
        qemuhost.pread(self.h, n * BLOCK + off, buf)

    def writeblocks(self, n, buf, off=0):
        qemuhost.pwrite(self.h, n * BLOCK + off, buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return BLOCK
        return 0  # init, deinit, sync, erase


def mount(setup):
    """Mount the flash image at /flash (formatting one littlefs cannot mount), write the factory
    config when the filesystem has none; point the setup's ``flash`` at /flash."""
    dev = SemihostFlash(setup["flash_image"], setup["flash_blocks"])
    try:
        fs = vfs.VfsLfs2(dev, mtime=False)
    except OSError:
        vfs.VfsLfs2.mkfs(dev)
        fs = vfs.VfsLfs2(dev, mtime=False)
    vfs.mount(fs, MOUNT)
    path = MOUNT + "/" + CONFIG
    cfg = setup.pop("config", None)
    if cfg is not None and not persist.exists(path):
        import os

        with open(path + ".tmp", "w") as f:
            f.write(cfg)
        os.rename(path + ".tmp", path)
    setup["flash"] = MOUNT
    if persist.exists(MOUNT + "/outbox"):  # a meter that reported once keeps reporting (tools/emulate.py)
        setup["comms"] = True


class _Log:
    def write(self, s):
        qemuhost.log(s)


class UartRx:
    """The link's input: the board's UART0, each byte awaited asleep (qemuhost.uart_readinto: WFI)."""

    def readinto(self, buf):
        return qemuhost.uart_readinto(buf)


def main():
    from emulator import main as emulator_main
    from emulator.bench_link import BenchLink

    try:
        emulator_main.main(BenchLink(UartRx(), sys.stdout.buffer), mount, qemuhost.log)
    except Exception as e:  # the traceback goes to qemu's stderr, then qemu exits 1
        sys.print_exception(e, _Log())
        qemuhost.exit(1)
    qemuhost.exit(0)
