"""Secrets at rest: the meter keys and the head-end's broker password, sealed with a master key.

What is secret in the database (``secret_rows``): ``meters.key`` (a meter's 32-byte key as 64
hex digits: with it anyone can forge that meter's readings and the commands it obeys) and the
``settings`` named in ``SECRET_SETTINGS`` (the head-end's clear broker password). The rest is
not: meter broker passwords are kept as Mosquitto hashes, web passwords as scrypt keys.

Stored form, version 1::

    v1:<key id>:<base64(nonce || ciphertext || tag)>

AES-256-GCM (``cryptography``), a random 96-bit nonce per value; the associated data is the
``v1:<key id>:`` header followed by the row's identity (``meter-key:<meter_id>``,
``setting:<name>``), so a value copied to another row, or relabelled, does not decrypt. The key
id is the first 8 hex digits of HMAC-SHA256(master key, "open-ami master key id"): it names the
key a database needs (errors, ``headend keys status``, backup summaries) and reveals nothing
about it. A later format takes the prefix ``v2:``; ``headend keys rotate-master`` re-seals.

The master key: 32 random bytes, kept as 64 hex digits. Where it comes from, first match
(``KeySource.resolve``):

1. ``master_key_file`` (``headend --master-key-file PATH``), else ``$HEADEND_MASTER_KEY_FILE``;
2. ``$HEADEND_MASTER_KEY``: the 64 hex digits themselves;
3. the default file beside the database: its name without the extension plus
   ``.master-key`` (``/var/lib/headend/headend.db`` -> ``/var/lib/headend/headend.master-key``).

A key file (1 or 3) that does not exist is created, mode 0600, the first time a secret is
sealed, and only while the database holds no sealed secret: a database that does needs the key
it was sealed with, never a new one. It is created atomically (written to a temporary 0600 file,
synced, then hard-linked to its name, which fails if the name exists: O_EXCL semantics), so two
processes never make two keys and an existing key file is never overwritten.

``Vault``: one database's master key and its sealed values. The key is loaded the first time a
secret is sealed or opened, and checked then against a sealed value of that database: a wrong
key is a ``MasterKeyError`` naming both key ids and where the key came from (never garbage
keys). Opened values are cached by their stored form, so ingest decrypts each meter's key once.
``Storage`` owns one (``store.secrets``) and opens values as it reads them: its callers get the
clear key as before. Migration ``m009_sealed_secrets`` seals the clear values of an older
database through ``migrating(vault)``; ``headend backup``/``restore`` seal any clear value in
the copy, so no backup holds a clear key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import hmac
import os
import re
import secrets as _random
import threading
from collections.abc import Iterator
from pathlib import Path

from headend.db.engine import dialect, is_postgres
from headend.errors import KeystoreError, MasterKeyError  # noqa: F401

ENV_FILE = "HEADEND_MASTER_KEY_FILE"
ENV_HEX = "HEADEND_MASTER_KEY"
DEFAULT_SUFFIX = ".master-key"
KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1"
# the settings that hold a secret in clear; "broker.headend_password" is
# headend.meters.provision.HEADEND_PASSWORD_SETTING (tests/headend/test_keystore.py checks they agree)
SECRET_SETTINGS = ("broker.headend_password",)
_SEALED = re.compile(r"v([0-9]+):([0-9a-f]{8}):([A-Za-z0-9+/]+={0,2})")
_SEALED_RE = "^v[0-9].*:"  # the same on PostgreSQL
_SEALED_GLOB = "v[0-9]*:*"  # the SQL pre-filter of _SEALED (a clear key is hex, a password has no ':')
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def meter_key_id(meter_id: str) -> bytes:
    """The associated-data identity of a meter's key."""
    return b"meter-key:" + meter_id.encode("utf-8")


def setting_id(name: str) -> bytes:
    return b"setting:" + name.encode("utf-8")


def key_id(key: bytes) -> str:
    return hmac.new(key, b"open-ami master key id", "sha256").hexdigest()[:8]


def stored_key_id(stored) -> str | None:
    """The key id a stored value is sealed under; None when it is not sealed (clear)."""
    m = _SEALED.fullmatch(stored) if isinstance(stored, str) else None
    return m.group(2) if m else None


def is_sealed(stored) -> bool:
    return stored_key_id(stored) is not None


class MasterKey:
    """A loaded master key: its AEAD, its id and where it came from (never its bytes in repr)."""

    __slots__ = ("_aead", "id", "source")

    def __init__(self, key: bytes, source: str = "the key given to Storage") -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise MasterKeyError("a master key is %d bytes (from %s)" % (KEY_BYTES, source))
        # imported here: commands that never touch a secret start without it
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(bytes(key))
        self.id = key_id(bytes(key))
        self.source = source

    def __repr__(self) -> str:
        return "MasterKey(id=%s, source=%s)" % (self.id, self.source)

    def _header(self) -> str:
        return "%s:%s:" % (VERSION, self.id)

    def seal(self, identity: bytes, clear: str) -> str:
        header = self._header()
        nonce = _random.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, clear.encode("utf-8"), header.encode() + identity)
        return header + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, identity: bytes, stored: str, label: str) -> str:
        m = _SEALED.fullmatch(stored) if isinstance(stored, str) else None
        if m is None:
            raise KeystoreError("%s is not sealed (stored in clear or damaged)" % label)
        if "v" + m.group(1) != VERSION:
            raise KeystoreError("%s is sealed in format v%s, unknown to this head-end" % (label, m.group(1)))
        if m.group(2) != self.id:
            raise MasterKeyError(
                "%s is sealed under master key id %s, not under the master key from %s (id %s)"
                % (label, m.group(2), self.source, self.id)
            )
        from cryptography.exceptions import InvalidTag

        try:
            blob = base64.b64decode(m.group(3), validate=True)
            header = ("v%s:%s:" % (m.group(1), m.group(2))).encode()
            clear = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], header + identity)
        except (binascii.Error, ValueError, InvalidTag):
            raise KeystoreError(
                "%s does not decrypt under master key id %s: the stored value was altered or copied"
                " from another row" % (label, self.id)
            )
        return clear.decode("utf-8")


def parse_key(text: str, where: str) -> MasterKey:
    text = text.strip()
    if not _HEX.fullmatch(text):
        raise MasterKeyError("%s does not hold a master key: 64 hex digits (32 bytes) expected" % where)
    return MasterKey(bytes.fromhex(text), where)


def read_key_file(path: str | os.PathLike, where: str | None = None) -> MasterKey:
    """The key in ``path``; FileNotFoundError when there is none, MasterKeyError when unreadable."""
    where = where or "master key file %s" % path
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(4096)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise MasterKeyError("cannot read %s: %s" % (where, e.strerror or e))
    return parse_key(text, where)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_key_file(path: str | os.PathLike, where: str | None = None) -> MasterKey:
    """A new random key in a new 0600 file at ``path``. Never overwrites: if ``path`` exists (made
    meanwhile by another process) its key is returned. The file appears complete or not at all."""
    path = Path(path)
    where = where or "master key file %s" % path
    key = _random.token_bytes(KEY_BYTES)
    tmp = path.with_name(".%s.tmp-%d-%s" % (path.name, os.getpid(), _random.token_hex(4)))
    try:
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise MasterKeyError("cannot create %s: %s" % (where, e.strerror or e))
    try:
        try:
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
            os.write(fd, (key.hex() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(str(tmp), str(path))  # fails if path exists: never overwritten, never half-written
        except FileExistsError:
            return read_key_file(path, where)
        except OSError:  # a file system without hard links: exclusive create, written in place
            try:
                fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return read_key_file(path, where)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, (key.hex() + "\n").encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as e:
        raise MasterKeyError("cannot create %s: %s" % (where, e.strerror or e))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(str(tmp))
    _fsync_dir(path.parent)
    return MasterKey(key, where)


def default_key_file(db_path: str | os.PathLike) -> Path:
    """``<dir>/<db name without extension>.master-key``: headend.db -> headend.master-key."""
    p = Path(os.path.abspath(str(db_path)))
    candidate = p.with_name((p.stem if p.suffix else p.name) + DEFAULT_SUFFIX)
    return candidate if candidate != p else p.with_name(p.name + DEFAULT_SUFFIX)


class KeySource:
    """Where a database's master key comes from (see the module docstring for the order)."""

    def __init__(self, path: Path | None, how: str, hex_text: str | None = None) -> None:
        self.path, self.how, self._hex = path, how, hex_text

    @classmethod
    def resolve(cls, db_path, master_key_file=None, environ=None) -> KeySource:
        environ = os.environ if environ is None else environ
        if master_key_file:
            return cls(Path(os.path.abspath(str(master_key_file))), "--master-key-file")
        if environ.get(ENV_FILE):
            return cls(Path(os.path.abspath(environ[ENV_FILE])), "$" + ENV_FILE)
        if environ.get(ENV_HEX):
            return cls(None, "$" + ENV_HEX, environ[ENV_HEX])
        if is_postgres(db_path):  # no file beside a URL: the key must be named
            return cls(None, "none")
        return cls(default_key_file(db_path), "the default, beside the database")

    def describe(self) -> str:
        if self.how == "none":
            return "no master key source"
        if self.path is None:
            return "$" + ENV_HEX
        return "master key file %s (%s)" % (self.path, self.how)

    def load(self, create: bool = False) -> MasterKey:
        """The key; a missing file is created when ``create``, else MasterKeyError names it."""
        if self.how == "none":
            raise MasterKeyError(
                "no master key: a PostgreSQL database has no default master key file; name one with"
                " --master-key-file or $%s (or give the key in $%s)" % (ENV_FILE, ENV_HEX)
            )
        if self.path is None:
            return parse_key(self._hex or "", self.describe())
        try:
            return read_key_file(self.path, self.describe())
        except FileNotFoundError:
            if create:
                return create_key_file(self.path, self.describe())
            raise MasterKeyError("no master key: %s does not exist" % self.describe())

    def peek(self) -> MasterKey | None:
        """The key if there is one, never creating it."""
        try:
            return self.load()
        except MasterKeyError:
            return None


# ------------------------------------------------------------------ the secrets of a database


def _setting_filter() -> str:
    return "name IN (%s)" % ", ".join("?" * len(SECRET_SETTINGS))


def secret_rows(conn) -> Iterator[tuple[str, str, str]]:
    """(table, name, stored) of every secret: ("meters", meter_id, key), ("settings", name, value)."""
    yield from (("meters", m, k) for m, k in conn.execute("SELECT meter_id, key FROM meters").fetchall())
    sql = "SELECT name, value FROM settings WHERE %s AND value IS NOT NULL" % _setting_filter()
    yield from (("settings", n, v) for n, v in conn.execute(sql, SECRET_SETTINGS).fetchall())


def identity(table: str, name: str) -> bytes:
    return meter_key_id(name) if table == "meters" else setting_id(name)


def label(table: str, name: str) -> str:
    return ("meter %r's key" if table == "meters" else "setting %r") % name


def _write(conn, table: str, name: str, stored: str) -> None:
    if table == "meters":
        conn.execute("UPDATE meters SET key = ? WHERE meter_id = ?", (stored, name))
    else:
        conn.execute("UPDATE settings SET value = ? WHERE name = ?", (stored, name))


def sealed_sample(conn) -> tuple[str, str, str] | None:
    """One sealed secret of the database (table, name, stored), or None if it holds none."""
    if dialect(conn) == "postgresql":
        row = conn.execute("SELECT meter_id, key FROM meters WHERE key ~ ? LIMIT 1", (_SEALED_RE,)).fetchone()
    else:
        row = conn.execute(
            "SELECT meter_id, key FROM meters WHERE key GLOB ? LIMIT 1", (_SEALED_GLOB,)
        ).fetchone()
    if row is not None and is_sealed(row[1]):
        return ("meters", row[0], row[1])
    return next(((t, n, s) for t, n, s in secret_rows(conn) if is_sealed(s)), None)


def has_clear(conn) -> bool:
    """Whether any secret is stored in clear (or in no form this head-end knows)."""
    return any(not is_sealed(stored) for _t, _n, stored in secret_rows(conn))


def key_ids(conn) -> tuple[dict[str, int], int]:
    """{key id: sealed secrets under it}, and the number of secrets in clear."""
    ids: dict[str, int] = {}
    clear = 0
    for _t, _n, stored in secret_rows(conn):
        kid = stored_key_id(stored)
        if kid is None:
            clear += 1
        else:
            ids[kid] = ids.get(kid, 0) + 1
    return ids, clear


@contextlib.contextmanager
def _scrubbing(conn):
    """``secure_delete`` while secrets are rewritten: SQLite zeroes the old values' bytes (the
    cells it moves, the pages it frees) instead of leaving them in the file's free space."""
    if dialect(conn) == "postgresql":  # no such setting: old row versions go at VACUUM
        yield
        return
    before = conn.execute("PRAGMA secure_delete").fetchone()[0]
    conn.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        conn.execute("PRAGMA secure_delete = %d" % int(before))


def seal_clear(conn, vault: Vault | None) -> int:
    """Seal every secret stored in clear; how many (also added to ``vault.scrub``). The caller
    holds the transaction, and checkpoints the WAL afterwards (``Storage`` does)."""
    clear = [(t, n, s) for t, n, s in secret_rows(conn) if not is_sealed(s)]
    if not clear:
        return 0
    if vault is None:
        raise MasterKeyError(
            "the database holds secrets in clear and no master key was given to seal them:"
            " open it with headend.db.storage.Storage (or any headend command)"
        )
    with _scrubbing(conn):
        for table, name, stored in clear:
            _write(conn, table, name, vault.seal(identity(table, name), stored))
    vault.scrub += len(clear)
    return len(clear)


def reseal(conn, vault: Vault, new: MasterKey) -> int:
    """Seal every secret under ``new`` (opened with the vault's key); how many changed. Values
    already under ``new`` are left as they are (a rotation resumed after a crash). The caller
    holds the transaction."""
    n = 0
    with _scrubbing(conn):
        for table, name, stored in secret_rows(conn):
            if stored_key_id(stored) == new.id:
                continue
            ident = identity(table, name)
            clear = vault.open(ident, stored, label(table, name)) if is_sealed(stored) else stored
            _write(conn, table, name, new.seal(ident, clear))
            n += 1
    return n


_MIGRATING: contextvars.ContextVar[Vault | None] = contextvars.ContextVar("headend_vault", default=None)


@contextlib.contextmanager
def migrating(vault: Vault):
    """The vault ``m009_sealed_secrets`` seals with while ``Storage`` applies the migrations."""
    token = _MIGRATING.set(vault)
    try:
        yield
    finally:
        _MIGRATING.reset(token)


def migrating_vault() -> Vault | None:
    return _MIGRATING.get()


class Vault:
    """One database's master key (loaded and checked at first use) and its opened secrets.

    ``conn`` is the database connection the key is checked against (a sealed value of it);
    ``master_key`` (a MasterKey or 32 bytes) overrides every source (tests, tools); ``name``:
    what errors call the database (default its path)."""

    def __init__(
        self, db_path, conn=None, *, master_key_file=None, master_key=None, environ=None, name=None
    ) -> None:
        self.db_path = str(db_path)
        self.name = name or self.db_path
        self.conn = conn
        self.source = KeySource.resolve(db_path, master_key_file, environ)
        if isinstance(master_key, bytes | bytearray):
            master_key = MasterKey(bytes(master_key))
        self._given: MasterKey | None = master_key
        self._key: MasterKey | None = None
        self._lock = threading.RLock()
        self._opened: dict[tuple[bytes, str], str] = {}
        self.scrub = 0  # values sealed in place: the WAL is to be checkpointed (old bytes out)

    def describe(self) -> str:
        return self._given.source if self._given is not None else self.source.describe()

    def key(self, create: bool = False) -> MasterKey:
        """The master key, checked against the database. ``create``: a missing key file may be
        made (sealing), as long as the database holds no sealed secret."""
        with self._lock:
            if self._key is None:
                sample = sealed_sample(self.conn) if self.conn is not None else None
                try:
                    key = self._given or self.source.load(create=create and sample is None)
                except MasterKeyError as e:
                    if sample is None:
                        raise
                    raise MasterKeyError(
                        "%s; the secrets in %s are sealed under master key id %s: put that key there"
                        " (docs/disaster-recovery.md) or name it with --master-key-file or $%s"
                        % (e, self.name, stored_key_id(sample[2]), ENV_FILE)
                    )
                if sample is not None:
                    self._check(key, sample)
                self._key = key
            return self._key

    def _check(self, key: MasterKey, sample: tuple[str, str, str]) -> None:
        table, name, stored = sample
        kid = stored_key_id(stored)
        if kid != key.id:
            raise MasterKeyError(
                "wrong master key for %s: its secrets are sealed under master key id %s, but the master"
                " key from %s has id %s. Use the key this database was sealed with (after `headend keys"
                " rotate-master`: the new key file)" % (self.name, kid, self.describe(), key.id)
            )
        try:
            key.open(identity(table, name), stored, label(table, name))
        except KeystoreError as e:
            raise MasterKeyError("master key id %s matches %s, but %s" % (key.id, self.name, e))

    def use(self, key: MasterKey) -> None:
        """Switch to ``key`` (after this process re-sealed the database under it)."""
        with self._lock:
            self._given, self._key = key, key
            self._opened.clear()

    def seal(self, ident: bytes, clear: str) -> str:
        stored = self.key(create=True).seal(ident, clear)
        self._opened[(ident, stored)] = clear
        return stored

    def open(self, ident: bytes, stored: str, what: str) -> str:
        clear = self._opened.get((ident, stored))
        if clear is not None:
            return clear
        if not is_sealed(stored):
            raise KeystoreError(
                "%s in %s is stored in clear, not sealed with the master key: it was written by"
                " something other than the head-end's storage" % (what, self.name)
            )
        key = self.key()
        if stored_key_id(stored) != key.id:
            key = self._reload(stored_key_id(stored), what)
        clear = key.open(ident, stored, what)
        self._opened[(ident, stored)] = clear
        return clear

    def _reload(self, kid: str, what: str) -> MasterKey:
        """The database was re-sealed under another key (``keys rotate-master`` by another process)
        and the key file swapped: read the source again, once."""
        with self._lock:
            fresh = None if self._given is not None else self.source.peek()
            if fresh is None or fresh.id != kid:
                raise MasterKeyError(
                    "wrong master key for %s: %s is sealed under master key id %s, but the master key"
                    " from %s has id %s"
                    % (self.name, what, kid, self.describe(), self._key.id if self._key else "?")
                )
            self._key = fresh
            return fresh
