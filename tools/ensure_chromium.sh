#!/bin/sh
# Make sure a `chromium` browser is available for the web dashboard's browser
# tests (Playwright drives it through executable_path; nothing is downloaded by
# Playwright itself). Installs Debian's package when it is missing and we can.
set -e
for d in "" /usr/bin/ /usr/local/bin/ /snap/bin/; do
    if [ -n "$d" ] && [ -x "${d}chromium" ]; then echo "chromium: ${d}chromium"; exit 0; fi
    if [ -z "$d" ] && command -v chromium >/dev/null 2>&1; then echo "chromium: $(command -v chromium)"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
    fi
    if [ "$(id -u)" = "0" ] || [ -n "$SUDO" ]; then
        echo "chromium: not found; installing Debian's chromium package"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
        command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] && { echo "chromium: installed"; exit 0; }
    fi
fi
cat >&2 <<'MSG'
ERROR: the Chromium browser (`chromium`) is not installed and could not be
installed automatically (that needs Debian/Ubuntu apt-get and root or sudo).
Install it yourself, then run the command again:
  Debian:         sudo apt-get install chromium
  Ubuntu:         sudo snap install chromium
  Fedora:         sudo dnf install chromium
  macOS:          brew install --cask chromium
The browser is only run headless by the web dashboard's tests (tests/headend/test_web_*.py).
MSG
exit 1
