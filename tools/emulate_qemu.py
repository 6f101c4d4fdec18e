"""The qemu-arm runtime of tools/emulate.py (``--runtime qemu-arm``): the firmware on an emulated Cortex-M3.

``qemu-system-arm -machine mps2-an385 -semihosting -kernel build/micropython-qemu-arm/firmware.elf``
(``make firmware-arm``, tools/build_qemu_arm.py; the full command line: ``command``) runs
MicroPython's qemu port with the firmware frozen in and a 64 KiB heap. The board's UART is
qemu's stdin/stdout, which carry, as the unix port's pipes do, first the REPL and then the
binary bench link (emulator/bench_link.py) served by the same CPython bench
(tools/emulate_bench.py). ``start(proc)`` drives the REPL: after its prompt, Ctrl-A enters
the raw REPL, ``from emulator import qemu_main; qemu_main.main()`` and Ctrl-D run the
firmware's entry, and after the REPL's ``OK`` the next byte is the firmware's HELLO request.

Flash: ``--flash DIR/flash.img``, a littlefs2 image of FLASH_BLOCKS x 4 KiB that the
firmware mounts through semihosting (emulator/qemu_main.py: each block read or write
is one host read/write of the file, done before the firmware goes on, so a SIGKILL of
qemu is a power cut that loses only what was not yet written). The bench creates it
empty (the firmware formats it on first boot) and hands the firmware DIR/config.json
(written by the factory step, tools/emulate_bench.ensure_config), which the firmware
copies into its filesystem when that has none. The firmware's text output (the boot
line, a traceback) reaches qemu's stderr through semihosting; qemu exits when the
firmware has sent its report (status 0) or failed (status 1).

Speed: qemu hands the UART one byte at a time; the firmware waits for each asleep
(qemuhost.uart_readinto) and qemu's multiplexer refills the UART as soon as a byte is
read (``command``): ~15-25 us per byte from the bench, ~5 ms per 60 s ATM90E26 step
(13 round trips), ~35 ms per ADC window (2560 bytes) on the 2-core machine.
"""

import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import build_qemu_arm  # noqa: E402
import emulate_bench  # noqa: E402

NAME = "qemu-arm"
IMAGE = "flash.img"
FLASH_BLOCKS = (
    256  # 1 MiB of 4 KiB blocks: state slots, config and the 256 KiB outbox with room to level wear
)
BLOCK = 4096
MACHINE = "mps2-an385"
RAW_REPL = b"raw REPL; CTRL-B to exit\r\n>"
ENTRY = b"from emulator import qemu_main\nqemu_main.main()\n"
HEAP = "64K"  # the port's MICROPY_HEAP_SIZE (tools/build_qemu_arm.py); --heap does not apply


class QemuError(Exception):
    """qemu-system-arm is missing or the firmware image did not come up."""


def qemu_exe():
    exe = shutil.which("qemu-system-arm")
    if exe is None:
        raise QemuError("qemu-system-arm not found: `make firmware-arm` installs Debian's qemu-system-arm")
    return exe


def ensure_built():
    """build/micropython-qemu-arm/firmware.elf, (re)built when a frozen or C module file changed."""
    try:
        return build_qemu_arm.ensure()
    except build_qemu_arm.BuildError as e:
        raise QemuError(str(e)) from None


def command(heap=None):
    """qemu's command line (``heap`` is fixed in the image: 64 KiB).

    The UART is qemu's stdio through a multiplexer (mux=on): qemu feeds the board's one-byte
    UART receiver from the mux's 32-byte buffer as soon as the firmware has read a byte,
    instead of one byte per turn of its I/O loop (about 3x faster, measured). ``-echr 256``
    gives the mux an escape character no byte can equal, so the binary link passes unchanged
    (the default, Ctrl-A, would be taken as a command to qemu).
    """
    return [
        qemu_exe(),
        "-machine", MACHINE,
        "-nographic",
        "-monitor", "none",
        "-echr", "256",
        "-chardev", "stdio,id=uart,mux=on",
        "-serial", "chardev:uart",
        "-semihosting",
        "-kernel", build_qemu_arm.ELF,
    ]  # fmt: skip


def ensure_image(flash):
    """DIR/flash.img (FLASH_BLOCKS x BLOCK bytes; a new one is zeros, which the firmware formats)."""
    path = os.path.join(os.path.abspath(flash), IMAGE)
    if not os.path.exists(path):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.truncate(FLASH_BLOCKS * BLOCK)
        os.replace(tmp, path)
    return path


class QemuBench(emulate_bench.Bench):
    """The bench of the qemu runtime: its HELLO setup also names the flash image and carries config.json."""

    def __init__(self, scenario, flash):
        super().__init__(scenario, flash)
        self.image = ensure_image(self.flash)

    def setup(self):
        d = super().setup()
        with open(os.path.join(self.flash, emulate_bench.CONFIG_NAME)) as f:
            d["config"] = f.read()
        d["flash_image"] = self.image
        d["flash_blocks"] = FLASH_BLOCKS
        return d


def _read_until(fd, token, limit=4096):
    got = b""
    while not got.endswith(token):
        b = os.read(fd, 1)  # byte by byte: what follows the token is the bench link's
        if not b or len(got) > limit:
            return None
        got += b
    return got


def start(proc):
    """Bring the firmware up on qemu's UART: the REPL's prompt (input sent before it may be lost),
    raw REPL, the entry, its OK. False if qemu died first."""
    rfd = proc.stdout.fileno()
    try:
        if _read_until(rfd, b">>> ") is None:
            return False
        os.write(proc.stdin.fileno(), b"\r\x01")
        if _read_until(rfd, RAW_REPL) is None:
            return False
        os.write(proc.stdin.fileno(), ENTRY + b"\x04")
        return _read_until(rfd, b"OK", 64) is not None
    except BrokenPipeError:
        return False


def stop(proc, grace=5.0):
    """After the bench is done: qemu exits by itself after the report; kill it if it has not."""
    import subprocess

    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def exec_script(code, timeout=120):
    """Run MicroPython ``code`` on the board (raw REPL) and return its output; QemuError on an
    exception (tools/bench_firmware.py times Meter.step this way)."""
    import subprocess
    import threading

    ensure_built()
    proc = subprocess.Popen(command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        rfd = proc.stdout.fileno()
        if _read_until(rfd, b">>> ") is None:
            raise QemuError("qemu ended before its REPL prompt")
        os.write(proc.stdin.fileno(), b"\r\x01")
        if _read_until(rfd, RAW_REPL) is None:
            raise QemuError("no raw REPL")
        os.write(proc.stdin.fileno(), code.encode() + b"\x04")
        out = _read_until(rfd, b"\x04", 1 << 20)  # OK, the output, then the error text
        err = _read_until(rfd, b"\x04", 1 << 20)
        if out is None or err is None or not out.startswith(b"OK"):
            raise QemuError("the script did not run (timeout or crash)")
        if err != b"\x04":
            raise QemuError(err[:-1].decode(errors="replace"))
        return out[2:-1].decode(errors="replace")
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()


class QemuRuntime:
    """tools/emulate.py's runtime table entry ``qemu-arm`` (the interface of its Runtime class)."""

    name = NAME
    about = (
        "MicroPython 1.28.0 qemu port, Cortex-M3 (MPS2-AN385) in qemu, firmware frozen (make firmware-arm)"
    )
    heap = HEAP
    cwd = ROOT
    network = False  # the emulated board has no network: the metering firmware only
    bench_class = QemuBench

    def exe(self):
        return build_qemu_arm.ELF

    def ensure(self):
        before = build_qemu_arm.stale()
        ensure_built()
        qemu_exe()
        return before is not None

    def command(self, heap=None):
        return command(heap)

    def start(self, proc):
        return start(proc)

    def finish(self, proc):
        return stop(proc)


RUNTIME = QemuRuntime()
