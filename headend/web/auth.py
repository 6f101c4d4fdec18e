"""Who may use the dashboard: password keys, sessions, CSRF tokens, login rate limiting.

Passwords: ``hashlib.scrypt`` (n=2**14, r=8, p=1, 32 bytes) over a random 16-byte salt per
user; only the salt and the key are stored (``web_users``). ``verify_password`` compares
keys with ``hmac.compare_digest``; an unknown user is checked against a dummy key so a
wrong name costs as long as a wrong password.

Sessions: the cookie holds 32 random bytes (``secrets.token_urlsafe``); the table keeps
only its SHA-256, the user, an absolute expiry and the session's CSRF (synchronizer) token,
which every POST form carries back (``csrf_ok``).

``RateLimiter``: after ``MAX_USER_FAILURES`` failed logins for one user name, or
``MAX_IP_FAILURES`` from one address, within ``WINDOW`` seconds, further attempts are
refused (without checking the password) until the oldest failure leaves the window.
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
WINDOW = 900.0
MAX_USER_FAILURES = 5
MAX_IP_FAILURES = 20
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
    """Failed logins per user name and per client address within a sliding window."""

    def __init__(
        self, window: float = WINDOW, per_user: int = MAX_USER_FAILURES, per_ip: int = MAX_IP_FAILURES
    ) -> None:
        self.window, self.limits = window, {"user": per_user, "ip": per_ip}
        self._failures: dict[tuple[str, str], deque] = {}
        self._lock = threading.Lock()

    def _keys(self, user: str, ip: str) -> list[tuple[str, str]]:
        return [("user", user.lower()), ("ip", ip)]

    def retry_after(self, user: str, ip: str, now: float) -> float:
        """0 if a login may be tried now, else the seconds until one may."""
        wait = 0.0
        with self._lock:
            for key in self._keys(user, ip):
                q = self._failures.get(key)
                if not q:
                    continue
                while q and q[0] <= now - self.window:
                    q.popleft()
                if not q:
                    del self._failures[key]
                elif len(q) >= self.limits[key[0]]:
                    wait = max(wait, q[0] + self.window - now)
        return wait

    def failed(self, user: str, ip: str, now: float) -> None:
        with self._lock:
            for key in self._keys(user, ip):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(("user", user.lower()), None)
