#!/bin/sh
# Make sure a `chromium` browser is available for the web dashboard's browser
# tests (Playwright drives it through executable_path; nothing is downloaded by
# Playwright itself). Installs Debian's package when it is missing and we can.
set -e
. "$(dirname "$0")/ensure_binary.sh"
ensure_binary chromium chromium /usr/bin/ /usr/local/bin/ /snap/bin/ && exit 0
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
