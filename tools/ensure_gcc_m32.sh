#!/bin/sh
# Make sure the C compiler can build 32-bit x86 programs (`gcc -m32`), which the
# emulator's runtime needs (make firmware: MicroPython's unix port compiled 32-bit,
# tools/build_micropython.sh). Installs Debian's gcc-multilib when it is missing and
# we can (root, or password-less sudo); stops with a clear message otherwise.
set -e
CC=${CC:-gcc}
probe() {
    dir=$(mktemp -d)
    printf '#include <stdio.h>\nint main(void) { printf("%%d\\n", (int)sizeof(void *)); return 0; }\n' > "$dir/t.c"
    ok=1
    if $CC -m32 "$dir/t.c" -o "$dir/t" >/dev/null 2>&1 && [ "$("$dir/t")" = 4 ]; then ok=0; fi
    rm -rf "$dir"
    return $ok
}
if probe; then echo "gcc -m32: ok"; exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
    if [ "$(id -u)" = "0" ] || [ -n "$SUDO" ]; then
        echo "gcc -m32: cannot link a 32-bit program; installing Debian's gcc-multilib package"
        $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            --no-install-recommends gcc-multilib >/dev/null
        if probe; then echo "gcc -m32: installed"; exit 0; fi
    fi
fi
cat >&2 <<'MSG'
ERROR: `gcc -m32` cannot build a 32-bit program here, and gcc-multilib could not be
installed automatically (that needs Debian/Ubuntu apt-get and root or sudo).
The emulator runs the firmware on MicroPython's unix port compiled 32-bit, like the
boards' 32-bit CPUs. Install the 32-bit C libraries yourself, then run make again:
  Debian/Ubuntu:  sudo apt-get install gcc-multilib
  Fedora:         sudo dnf install glibc-devel.i686 libgcc.i686
MSG
exit 1
