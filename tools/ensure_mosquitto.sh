#!/bin/sh
# Make sure the `mosquitto` broker binary is available; install Debian's
# package when it is missing and we can. Tests start their own broker on a
# free loopback port; they never use a system broker.
set -e
. "$(dirname "$0")/ensure_binary.sh"
# the package may start a system broker on 1883; the tests do not need it
ensure_binary mosquitto mosquitto /usr/sbin/ /usr/local/sbin/ /opt/homebrew/sbin/ /usr/local/opt/mosquitto/sbin/ && exit 0
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
