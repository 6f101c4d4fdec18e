# Sourced by tools/ensure_mosquitto.sh and tools/ensure_chromium.sh:
#   ensure_binary NAME PACKAGE [DIR/ ...]
# prints "NAME: PATH" and returns 0 when NAME is on PATH or executable in one of the DIRs;
# otherwise installs Debian's PACKAGE when apt-get is there and we are root or have
# password-less sudo, and returns 0 once NAME is there; returns 1 when it could not.
ensure_binary() {
    name=$1
    package=$2
    shift 2
    if command -v "$name" >/dev/null 2>&1; then echo "$name: $(command -v "$name")"; return 0; fi
    for d in "$@"; do
        if [ -x "${d}${name}" ]; then echo "$name: ${d}${name}"; return 0; fi
    done
    command -v apt-get >/dev/null 2>&1 || return 1
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
        SUDO="sudo -n"
    fi
    echo "$name: not found; installing Debian's $package package"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    if command -v "$name" >/dev/null 2>&1; then echo "$name: installed"; return 0; fi
    for d in "$@"; do
        if [ -x "${d}${name}" ]; then echo "$name: installed"; return 0; fi
    done
    return 1
}
