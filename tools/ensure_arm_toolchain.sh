#!/bin/sh
# Make sure the tools `make firmware-arm` needs are there: Debian's
# gcc-arm-none-eabi (arm-none-eabi-gcc), libnewlib-arm-none-eabi (the C
# library the qemu port links) and qemu-system-arm (runs the MPS2-AN385
# Cortex-M3 board). Installs the missing packages when apt-get is there and
# we are root or have password-less sudo; otherwise stops and says how.
set -e
. "$(dirname "$0")/ensure_binary.sh"
ok=0
ensure_binary arm-none-eabi-gcc gcc-arm-none-eabi || ok=1
ensure_binary qemu-system-arm qemu-system-arm || ok=1
# newlib is a library, not a binary: look for its libc.a, install the package when it is missing
newlib() {
    for f in /usr/lib/arm-none-eabi/newlib/libc.a /usr/lib/arm-none-eabi/lib/libc.a; do
        [ -f "$f" ] && return 0
    done
    return 1
}
if newlib; then
    echo "newlib: /usr/lib/arm-none-eabi"
elif command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = "0" ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; }; then
    SUDO=""
    [ "$(id -u)" = "0" ] || SUDO="sudo -n"
    echo "newlib: not found; installing Debian's libnewlib-arm-none-eabi package"
    $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends libnewlib-arm-none-eabi >/dev/null
    newlib && echo "newlib: installed" || ok=1
else
    ok=1
fi
[ "$ok" = 0 ] && exit 0
cat >&2 <<'MSG'
ERROR: the Arm cross toolchain or QEMU is not installed and could not be
installed automatically (that needs Debian/Ubuntu apt-get and root or sudo).
Install them yourself, then run the command again:
  Debian/Ubuntu:  sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
  Fedora:         sudo dnf install arm-none-eabi-gcc-cs arm-none-eabi-newlib qemu-system-arm
  macOS:          brew install --cask gcc-arm-embedded && brew install qemu
They build MicroPython's qemu port with the firmware frozen (make firmware-arm)
and run it on an emulated Cortex-M3 (tools/emulate.py --runtime qemu-arm).
MSG
exit 1
