#!/bin/sh
# Make sure the `mosquitto` broker binary is available; install Debian's
# package when it is missing and we can. Tests start their own broker on a
# free loopback port; they never use a system broker.
set -e
for d in "" /usr/sbin/ /usr/local/sbin/ /opt/homebrew/sbin/ /usr/local/opt/mosquitto/sbin/; do
    if [ -n "$d" ] && [ -x "${d}mosquitto" ]; then echo "mosquitto: ${d}mosquitto"; exit 0; fi
    if [ -z "$d" ] && command -v mosquitto >/dev/null 2>&1; then echo "mosquitto: $(command -v mosquitto)"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
    fi
    if [ "$(id -u)" = "0" ] || [ -n "$SUDO" ]; then
        echo "mosquitto: not found; installing Debian's mosquitto package"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
        # the package may start a system broker on 1883; the tests do not need it
        command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] && { echo "mosquitto: installed"; exit 0; }
    fi
fi
cat >&2 <<'MSG'
ERROR: the Mosquitto MQTT broker (`mosquitto`) is not installed and could not be
installed automatically (that needs Debian/Ubuntu apt-get and root or sudo).
Install it yourself, then run the command again:
  Debian/Ubuntu:  sudo apt-get install mosquitto
  Fedora:         sudo dnf install mosquitto
  macOS:          brew install mosquitto
  other:          https://mosquitto.org/download/
The broker is only run by the tests and the demo, on a free port on 127.0.0.1.
MSG
exit 1
