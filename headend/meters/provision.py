"""Provisioning: meter ids, keys, broker passwords and the Mosquitto configuration.

  ``add_meter(store, meter_id, key_hex=None, account=None) -> {"meter_id", "key", "mqtt_password"}``
      validates, generates what is missing (``secrets``), stores the key and the
      mosquitto hash of the password; the clear password is returned once, never kept.
  ``mosquitto_hash(password, salt=None, iterations=101) -> str``  the ``$7$`` PBKDF2-SHA512
      string Mosquitto 2 writes (``mosquitto_passwd``): ``$7$<iter>$<b64 salt>$<b64 hash>``.
  ``write_broker_config(store, out_dir, port, persistence=False) -> {"conf", "headend_url"}``
      password file (every meter + the head-end user), ACL (PROTOCOL.md) and
      ``mosquitto.conf`` in out_dir.

The head-end's broker user is ``HEADEND_USER`` ("headend.ingest": the dot keeps it
out of the meter id alphabet, so no meter can be provisioned under that name).
Its clear password lives in the database settings, like the meter keys, because
``headend_url`` must carry it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets

from headend.errors import ProvisionError  # noqa: F401
from protocol import topics

HEADEND_USER = "headend.ingest"
HEADEND_PASSWORD_SETTING = "broker.headend_password"
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12
KEY_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")
MAX_INFLIGHT = 1000  # QoS 1 messages in flight per client (default 20 throttles batched acks)
MAX_QUEUED = 1_000_000  # per persistent session while the head-end is away (default 1000 drops)
MAX_PACKET = 32768  # bytes of one MQTT packet: a 16 KiB payload plus topic and header fit
ACL = """\
# PROTOCOL.md "Transport": a meter writes only its up topics and reads only its down topics.
pattern write ami/v1/%u/up/#
pattern read ami/v1/%u/down/#

# the head-end reads every meter's up topics and writes every meter's down topics
user {user}
topic read ami/v1/+/up/#
topic write ami/v1/+/down/#
"""


def check_meter_id(meter_id: str) -> str:
    if not topics.meter_id_valid(meter_id):
        raise ProvisionError("meter id %r is invalid: use 1-32 characters of [A-Za-z0-9_-]" % (meter_id,))
    return meter_id


def check_key(key_hex: str) -> str:
    """The key as 64 lower-case hex digits (32 bytes), or ProvisionError naming it."""
    if not isinstance(key_hex, str) or not KEY_HEX_RE.fullmatch(key_hex):
        raise ProvisionError("key must be 64 hex digits (32 bytes), got %r" % (str(key_hex)[:80],))
    return key_hex.lower()


def new_key() -> str:
    return secrets.token_hex(32)


def new_password() -> str:
    return secrets.token_urlsafe(24)  # 32 chars of [A-Za-z0-9_-]: safe in a URL and a passwd file


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    dk = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return "$7$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(dk).decode())


def check_mosquitto_hash(password: str, hashed: str) -> bool:
    """True if password matches a ``$7$`` hash (for tests and diagnostics)."""
    try:
        _, seven, iterations, salt, dk = hashed.split("$")
        if seven != "7":
            return False
        return mosquitto_hash(password, base64.b64decode(salt), int(iterations)) == hashed
    except ValueError:
        return False


def add_meter(store, meter_id: str, key_hex: str | None = None, account: str | None = None) -> dict:
    check_meter_id(meter_id)
    key_hex = new_key() if key_hex is None else check_key(key_hex)
    if account is not None and not account.strip():
        raise ProvisionError("account must not be empty")
    password = new_password()
    store.add_meter(meter_id, key_hex, mosquitto_hash(password), account)
    return {"meter_id": meter_id, "key": key_hex, "mqtt_password": password}


def headend_password(store) -> str:
    """The head-end's broker password, made on first use and kept in the database."""
    password = store.setting(HEADEND_PASSWORD_SETTING)
    if password is None:
        password = new_password()
        store.set_setting(HEADEND_PASSWORD_SETTING, password)
    return password


def _write_private(path: str, text: str) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_broker_config(store, out_dir: str, port: int, persistence: bool = False) -> dict:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ProvisionError("port must be 1..65535, got %r" % (port,))
    out_dir = os.path.abspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise ProvisionError("cannot create output directory %s: %s" % (out_dir, e.strerror))
    password = headend_password(store)
    lines = ["%s:%s" % (HEADEND_USER, mosquitto_hash(password))]
    lines += ["%s:%s" % (m["meter_id"], m["mqtt_password_hash"]) for m in store.meters()]
    passwd, acl, conf = (os.path.join(out_dir, n) for n in ("passwd", "acl", "mosquitto.conf"))
    _write_private(passwd, "\n".join(lines) + "\n")
    _write_private(acl, ACL.format(user=HEADEND_USER))
    conf_lines = [
        "# written by `headend broker-config`; run: mosquitto -c %s" % conf,
        "listener %d 127.0.0.1" % port,
        "allow_anonymous false",
        "password_file %s" % passwd,
        "acl_file %s" % acl,
        "max_inflight_messages %d" % MAX_INFLIGHT,
        "max_queued_messages %d" % MAX_QUEUED,
        "set_tcp_nodelay true",
        # a meter's frames are < 2 KiB; ingest refuses payloads over ingest.verify.MAX_FRAME undecoded,
        # and the broker drops anything bigger than this before it reaches anyone (and disconnects the sender)
        "max_packet_size %d" % MAX_PACKET,
    ]
    if persistence:
        conf_lines += ["persistence true", "persistence_location %s/" % out_dir, "autosave_interval 60"]
    else:
        conf_lines += ["persistence false"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # started as root, mosquitto drops to user "mosquitto", which cannot read these 0600 files
        conf_lines += ["user root"]
    _write_private(conf, "\n".join(conf_lines) + "\n")
    return {"conf": conf, "headend_url": "mqtt://%s:%s@127.0.0.1:%d" % (HEADEND_USER, password, port)}
