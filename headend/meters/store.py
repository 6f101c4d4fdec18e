"""Meters' SQL (``MeterStoreMixin``, part of ``headend.db.storage.Storage``): registering a
meter, reading meters and their keys, and the head-end's settings.

``add_meter``, ``meter``, ``meters``, ``meter_keys`` (the key comes back in clear as before:
sealed in ``add_meter`` with the master key of ``self.secrets``, ``headend.db.keystore``,
opened as it is read, each once), ``setting``/``set_setting`` (``keystore.SECRET_SETTINGS``
sealed likewise), ``rotate_master_key`` (``headend keys rotate-master``). ``add_meter`` raises
``MeterExists`` when the id is taken.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping

from headend.db import keystore
from headend.errors import MeterExists


class MeterStoreMixin:
    db: object
    conn: sqlite3.Connection
    secrets: keystore.Vault

    def add_meter(
        self,
        meter_id: str,
        key_hex: str,
        mqtt_password_hash: str,
        account: str | None = None,
        rating: Mapping[str, int] | None = None,
        now: float | None = None,
        privacy: bool = False,
    ) -> dict:
        """Register a meter; MeterExists if the id is taken. rating: ib_ma, imax_ma, un_mv, rates.
        privacy: the meter must encrypt (headend/meters/privacy.py)."""
        row = {
            "meter_id": meter_id,
            "key": self.secrets.seal(keystore.meter_key_id(meter_id), key_hex),
            "mqtt_password_hash": mqtt_password_hash,
            "account": account,
            "created_at": time.time() if now is None else now,
            "online": 0,
            "privacy": 1 if privacy else 0,
        }
        for name in ("ib_ma", "imax_ma", "un_mv", "rates"):
            row[name] = (rating or {}).get(name)
        try:
            with self.db.atomic():
                self.db["meters"].insert(row)
        except sqlite3.IntegrityError:
            raise MeterExists("meter %r is already registered" % meter_id)
        return self.meter(meter_id)

    def set_meter_password_hash(self, meter_id: str, mqtt_password_hash: str) -> None:
        """A new broker password's hash (``headend meter config --new-password``)."""
        with self.db.atomic():
            self.conn.execute(
                "UPDATE meters SET mqtt_password_hash = ? WHERE meter_id = ?", [mqtt_password_hash, meter_id]
            )

    def set_meter_privacy(self, meter_id: str, on: bool) -> None:
        """Require COSE_Encrypt0 of the meter or not (``headend meter set --privacy on|off``)."""
        with self.db.atomic():
            self.conn.execute("UPDATE meters SET privacy = ? WHERE meter_id = ?", [1 if on else 0, meter_id])

    def set_meter_next_key(self, meter_id: str, key_hex: str | None, seq: int | None) -> None:
        """A key rotation started (the new key, sealed, and its command's seq) or, with None, ended."""
        sealed = None if key_hex is None else self.secrets.seal(keystore.meter_key_id(meter_id), key_hex)
        with self.db.atomic():
            self.conn.execute(
                "UPDATE meters SET next_key = ?, next_key_seq = ? WHERE meter_id = ?", [sealed, seq, meter_id]
            )

    def finish_meter_key_rotation(self, meter_id: str) -> None:
        """The new key becomes the meter's key (it stays sealed as it was), no rotation pending."""
        with self.db.atomic():
            self.conn.execute(
                "UPDATE meters SET key = next_key, next_key = NULL, next_key_seq = NULL"
                " WHERE meter_id = ? AND next_key IS NOT NULL",
                [meter_id],
            )

    def meter(self, meter_id: str) -> dict | None:
        """The meter's row, its key opened (64 hex digits), or None."""
        rows = list(self.db.query("SELECT * FROM meters WHERE meter_id = ?", [meter_id]))
        return self._opened(rows[0]) if rows else None

    def meters(self) -> list[dict]:
        return [self._opened(r) for r in self.db.query("SELECT * FROM meters ORDER BY meter_id")]

    def _opened(self, row: dict) -> dict:
        row["key"] = self._meter_key(row["meter_id"], row["key"])
        if row.get("next_key"):
            row["next_key"] = self._meter_key(row["meter_id"], row["next_key"])
        return row

    def _meter_key(self, meter_id: str, stored: str) -> str:
        return self.secrets.open(keystore.meter_key_id(meter_id), stored, "meter %r's key" % meter_id)

    def meter_keys(self) -> dict[str, bytes]:
        """meter_id -> 32-byte key, for verifying frames (each opened once per Storage: cached); a
        meter that requires privacy gets its key as a ``headend.meters.privacy.PrivacyKey``."""
        from headend.meters.privacy import MeterKey, PrivacyKey

        out = {}
        rows = self.conn.execute("SELECT meter_id, key, privacy, next_key FROM meters").fetchall()
        for m, k, p, nk in rows:
            key = (PrivacyKey if p else MeterKey if nk else bytes).fromhex(self._meter_key(m, k))
            if nk:  # a rotation in progress: frames under the new key verify too
                key.next = bytes.fromhex(self._meter_key(m, nk))
            out[m] = key
        return out

    def setting(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE name = ?", [name]).fetchone()
        if row is None or row[0] is None or name not in keystore.SECRET_SETTINGS:
            return row[0] if row else None
        return self.secrets.open(keystore.setting_id(name), row[0], "setting %r" % name)

    def set_setting(self, name: str, value: str) -> None:
        if name in keystore.SECRET_SETTINGS and value is not None:
            value = self.secrets.seal(keystore.setting_id(name), value)
        with self.db.atomic():
            self.conn.execute(  # an upsert both engines speak (SQLite >= 3.24)
                "INSERT INTO settings (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [name, value],
            )

    def rotate_master_key(self, new_key: keystore.MasterKey) -> dict:
        """Re-seal every secret under ``new_key`` in one transaction (opened with the current
        master key, which is checked first); values already under it are left alone, so a
        rotation cut short is finished by running it again. Afterwards this Storage uses
        ``new_key``; other processes need it as their master key (``headend keys rotate-master``).
        {"old_key_id", "new_key_id", "resealed", "secrets"}."""
        pending = [r[0] for r in self.conn.execute("SELECT meter_id FROM meters WHERE next_key IS NOT NULL")]
        if pending:  # next_key is sealed like key but not re-sealed here: finish those rotations first
            raise keystore.MasterKeyError(
                "a meter key rotation is in progress for %s: finish it first (`headend meter rotate-key"
                " ID --finish` once the meter acked it)" % ", ".join(pending[:5])
            )
        ids, clear = keystore.key_ids(self.conn)
        old_ids = sorted(set(ids) - {new_key.id})
        old = self.secrets.key() if old_ids else None  # MasterKeyError if it is not this database's
        with self.db.atomic():
            n = keystore.reseal(self.conn, self.secrets, new_key)
        self.secrets.use(new_key)
        self.secrets.scrub = n
        self._scrub()
        return {
            "old_key_id": old.id if old is not None else None,
            "new_key_id": new_key.id,
            "resealed": n,
            "secrets": sum(ids.values()) + clear,
        }
