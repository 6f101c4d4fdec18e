"""Who may use the dashboard: password keys, sessions, CSRF tokens, login rate limiting.

Passwords: ``hashlib.scrypt`` (n=2**14, r=8, p=1, 32 bytes) over a random 16-byte salt per
user; only the salt and the key are stored (``web_users``). ``verify_password`` compares
keys with ``hmac.compare_digest``; an unknown user is checked against a dummy key so a
wrong name costs as long as a wrong password.

Sessions: the cookie holds 32 random bytes (``secrets.token_urlsafe``); the table keeps
only its SHA-256, the user, an absolute expiry and the session's CSRF (synchronizer) token,
which every POST form carries back (``csrf_ok``).

``RateLimiter``: a password check is counted before it runs. ``begin(user, ip, now)``, under
one lock, either answers how long to wait (nothing checked, nothing counted) or reserves the
check, counting it as a failure of the user name and of the address; ``succeeded`` takes it
back once the password was right. So parallel attempts cannot slip past the count while
scrypt runs (~50 ms each).

- Per user name (case-folded): the first ``MAX_USER_FAILURES`` (5) checks run at once; after
  the 5th failure in a row each further check waits ``USER_DELAY`` (30 s) after the last
  failure, doubling with each further failure: 30 s, 1, 2, 4, 8 min. A sign-in, or
  ``WINDOW`` (15 min) without a failure, forgets them (16 min, the next step, is never
  reached). At most ``MAX_USER_CHECKS`` (9) password checks per user name in any 15 minutes
  (5 + 4 delayed) unless the real user signs in meanwhile. The real user signs in once the
  current delay has passed (no fixed lockout), though an attacker who takes every slot as it
  opens can keep them waiting.
- Per address: ``MAX_IP_FAILURES`` (20) failures within ``WINDOW`` refuse further attempts
  from it until the oldest leaves the window.

A refused attempt is answered 429 with ``Retry-After`` and does not count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque

from headend.errors import AuthError  # noqa: F401

ROLES = ("operator", "viewer")
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
KDF = "scrypt:n=%(n)d,r=%(r)d,p=%(p)d" % SCRYPT
KEY_LEN = 32
MIN_PASSWORD = 8
SESSION_TTL = 8 * 3600  # s; absolute, from login
WINDOW = 900.0  # s: failures older than this are forgotten
MAX_USER_FAILURES = 5  # password checks for one user name before the delays start
USER_DELAY = 30.0  # s after the 5th failure in a row; doubles with each further failure
MAX_USER_CHECKS = 9  # password checks per user name in any WINDOW: what the two above allow
MAX_IP_FAILURES = 20  # failures from one address within WINDOW
SWEEP = 10_000  # names and addresses kept before stale ones are swept out
_DUMMY_SALT = bytes(16)


def _kdf_params(kdf: str) -> dict[str, int]:
    name, _, params = kdf.partition(":")
    if name != "scrypt":
        raise AuthError("unknown password key function %r" % kdf)
    return {k: int(v) for k, v in (p.split("=") for p in params.split(","))}


def derive(password: str, salt: bytes, kdf: str = KDF) -> bytes:
    p = _kdf_params(kdf)
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=p["n"], r=p["r"], p=p["p"], maxmem=2**26, dklen=KEY_LEN
    )


def check_new_user(name: str, role: str, password: str) -> None:
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
        raise AuthError("user name must be 1..64 letters, digits or . _ - @, got %r" % name)
    if role not in ROLES:
        raise AuthError("role must be one of %s, got %r" % (", ".join(ROLES), role))
    if len(password) < MIN_PASSWORD:
        raise AuthError("the password must be at least %d characters" % MIN_PASSWORD)


def hash_password(password: str) -> dict[str, str]:
    """{"kdf", "salt", "password_hash"} (hex) for ``add_web_user``."""
    salt = secrets.token_bytes(16)
    return {"kdf": KDF, "salt": salt.hex(), "password_hash": derive(password, salt).hex()}


def verify_password(user: dict | None, password: str) -> bool:
    """True when ``password`` is the user's; None (unknown user) costs the same and fails."""
    if user is None:
        hmac.compare_digest(derive(password, _DUMMY_SALT), bytes(KEY_LEN))
        return False
    key = derive(password, bytes.fromhex(user["salt"]), user["kdf"])
    return hmac.compare_digest(key, bytes.fromhex(user["password_hash"]))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def csrf_ok(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8", "replace"), given.encode("utf-8", "replace"))


def start_session(store, user: str, ip: str | None, now: float, ttl: float = SESSION_TTL) -> str:
    """Store a new session for ``user`` (expired ones are purged); the cookie token."""
    token = new_token()
    store.purge_web_sessions(now)
    store.add_web_session(token_hash(token), user, new_token(), ip, now, now + ttl)
    return token


def session_of(store, token: str | None, now: float) -> dict | None:
    if not token:
        return None
    return store.web_session(token_hash(token), now)


class RateLimiter:
    """Password checks per user name (progressive delay) and per client address (sliding
    window), each counted before the check runs."""

    def __init__(
        self,
        window: float = WINDOW,
        per_user: int = MAX_USER_FAILURES,
        per_ip: int = MAX_IP_FAILURES,
        delay: float = USER_DELAY,
    ) -> None:
        self.window, self.per_user, self.per_ip, self.delay = window, per_user, per_ip, delay
        self._users: dict[str, list[float]] = {}  # name -> [failures in a row, time of the last]
        self._ips: dict[str, deque] = {}  # address -> times of its failures within the window
        self._lock = threading.Lock()
        self._sweep_at = SWEEP

    @staticmethod
    def _name(user: str) -> str:
        return user.lower()[:128]

    def user_delay(self, failures: int) -> float:
        """Seconds after the last of ``failures`` failures in a row before the next check."""
        if failures < self.per_user:
            return 0.0
        return min(self.delay * 2 ** min(failures - self.per_user, 32), self.window)

    def _user_wait(self, name: str, now: float) -> float:
        state = self._users.get(name)
        if state is None:
            return 0.0
        failures, last = state
        if now - last >= self.window:
            del self._users[name]
            return 0.0
        # a request that began before the last failure was counted waits as if it began then
        return last + self.user_delay(int(failures)) - max(now, last)

    def _ip_wait(self, ip: str, now: float) -> float:
        q = self._ips.get(ip)
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            self._ips.pop(ip, None)
            return 0.0
        return q[0] + self.window - now if len(q) >= self.per_ip else 0.0

    def _sweep(self, now: float) -> None:
        if len(self._users) + len(self._ips) < self._sweep_at:
            return
        old = now - self.window
        self._users = {k: v for k, v in self._users.items() if v[1] > old}
        self._ips = {k: q for k, q in self._ips.items() if q and q[-1] > old}
        self._sweep_at = max(SWEEP, 2 * (len(self._users) + len(self._ips)))

    def begin(self, user: str, ip: str, now: float) -> float:
        """0: a password check may run now, and is counted as a failure of ``user`` and ``ip``
        until ``succeeded``; else the seconds to wait (nothing counted)."""
        name = self._name(user)
        with self._lock:
            self._sweep(now)
            wait = max(self._user_wait(name, now), self._ip_wait(ip, now))
            if wait > 0:
                return wait
            state = self._users.setdefault(name, [0, now])
            state[0] += 1
            state[1] = max(state[1], now)  # concurrent requests' clocks may arrive out of order
            self._ips.setdefault(ip, deque()).append(now)
            return 0.0

    def retry_after(self, user: str, ip: str, now: float) -> float:
        """What ``begin`` would answer, without reserving anything."""
        with self._lock:
            return max(self._user_wait(self._name(user), now), self._ip_wait(ip, now))

    def succeeded(self, user: str, ip: str, now: float) -> None:
        """The check ``begin`` reserved at ``now`` found the right password: forget the user's
        failures, and take the attempt off the address's count."""
        with self._lock:
            self._users.pop(self._name(user), None)
            q = self._ips.get(ip)
            if q and now in q:
                q.remove(now)
