#!/bin/sh
# PostgreSQL for the tests (tests/pg_support.py): nothing to do when a server answers at
# 127.0.0.1:5432 or initdb/pg_ctl are there (the tests then run a private cluster on a free
# port); otherwise install Debian's postgresql package when we can. The package may start a
# system cluster on 5432; the tests make and drop their own database in it.
set -e
. "$(dirname "$0")/ensure_binary.sh"
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "postgresql: answering at 127.0.0.1:5432"; exit 0
fi
for d in /usr/lib/postgresql/*/bin/; do
    if [ -x "${d}initdb" ] && [ -x "${d}pg_ctl" ]; then echo "postgresql: ${d}initdb"; exit 0; fi
done
ensure_binary initdb postgresql /usr/lib/postgresql/*/bin/ && exit 0
cat >&2 <<'MSG'
ERROR: PostgreSQL is neither answering at 127.0.0.1:5432 nor installed (initdb, pg_ctl), and
Debian's postgresql package could not be installed automatically (apt-get with root or sudo).
Install it (Debian/Ubuntu: sudo apt-get install postgresql), or start a server at
127.0.0.1:5432 with trust auth for user postgres, or name one in $OPENAMI_TEST_PG.
MSG
exit 1
