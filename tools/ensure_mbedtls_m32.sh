#!/bin/sh
# Make sure `gcc -m32` can link mbedtls's AES statically (libmbedcrypto.a for i386): the emulator's
# runtime (make firmware, tools/build_micropython.py) enables MicroPython's cryptolib with its
# mbedtls backend, as the ESP32 and RP2040 ports have it, and the vendored MicroPython source has
# no mbedtls. Installs Debian's libmbedtls-dev:i386 (adding the i386 architecture) when it is
# missing and we can (root, or password-less sudo); stops with a clear message otherwise.
set -e
CC=${CC:-gcc}
probe() {
    dir=$(mktemp -d)
    printf '#include <mbedtls/aes.h>\nint main(void) { mbedtls_aes_context c; mbedtls_aes_init(&c); return 0; }\n' > "$dir/t.c"
    ok=1
    if $CC -m32 "$dir/t.c" -o "$dir/t" -l:libmbedcrypto.a >/dev/null 2>&1 && "$dir/t"; then ok=0; fi
    rm -rf "$dir"
    return $ok
}
if probe; then echo "mbedtls (i386, static): ok"; exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
    if [ "$(id -u)" = "0" ] || [ -n "$SUDO" ]; then
        echo "mbedtls (i386): missing; installing Debian's libmbedtls-dev:i386"
        $SUDO dpkg --add-architecture i386
        $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            --no-install-recommends libmbedtls-dev:i386 >/dev/null
        if probe; then echo "mbedtls (i386, static): installed"; exit 0; fi
    fi
fi
cat >&2 <<'MSG'
ERROR: `gcc -m32` cannot link mbedtls's libmbedcrypto.a for i386, and Debian's libmbedtls-dev:i386
could not be installed automatically (that needs apt-get and root or sudo). The emulator's
runtime enables MicroPython's cryptolib (AES for the COSE_Encrypt0 envelope) with mbedtls.
  Debian/Ubuntu:  sudo dpkg --add-architecture i386 && sudo apt-get update &&
                  sudo apt-get install libmbedtls-dev:i386
MSG
exit 1
