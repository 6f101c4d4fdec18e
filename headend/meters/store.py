"""Meters' SQL (``MeterStoreMixin``, part of ``headend.db.storage.Storage``): registering a
meter, reading meters and their keys, and the head-end's settings.

``add_meter`` raises ``MeterExists`` when the id is taken.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping

from headend.errors import MeterExists


class MeterStoreMixin:
    db: object
    conn: sqlite3.Connection

    def add_meter(
        self,
        meter_id: str,
        key_hex: str,
        mqtt_password_hash: str,
        account: str | None = None,
        rating: Mapping[str, int] | None = None,
        now: float | None = None,
    ) -> dict:
        """Register a meter; MeterExists if the id is taken. rating: ib_ma, imax_ma, un_mv, rates."""
        row = {
            "meter_id": meter_id,
            "key": key_hex,
            "mqtt_password_hash": mqtt_password_hash,
            "account": account,
            "created_at": time.time() if now is None else now,
            "online": 0,
        }
        for name in ("ib_ma", "imax_ma", "un_mv", "rates"):
            row[name] = (rating or {}).get(name)
        try:
            with self.db.atomic():
                self.db["meters"].insert(row)
        except sqlite3.IntegrityError:
            raise MeterExists("meter %r is already registered" % meter_id)
        return self.meter(meter_id)

    def meter(self, meter_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM meters WHERE meter_id = ?", [meter_id]))
        return rows[0] if rows else None

    def meters(self) -> list[dict]:
        return list(self.db.query("SELECT * FROM meters ORDER BY meter_id"))

    def meter_keys(self) -> dict[str, bytes]:
        """meter_id -> 32-byte key, for verifying frames."""
        return {r[0]: bytes.fromhex(r[1]) for r in self.conn.execute("SELECT meter_id, key FROM meters")}

    def setting(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    def set_setting(self, name: str, value: str) -> None:
        with self.db.atomic():
            self.conn.execute("INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", [name, value])
