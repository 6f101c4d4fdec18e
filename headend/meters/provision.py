"""Provisioning: meter ids, keys, broker passwords and the Mosquitto configuration.

  ``add_meter(store, meter_id, key_hex=None, account=None) -> {"meter_id", "key", "mqtt_password"}``
      validates, generates what is missing (``secrets``), stores the key and the
      mosquitto hash of the password; the clear password is returned once, never kept.
      Ids beginning with ``headend`` (any case) are reserved for the head-end's services.
  ``mosquitto_hash(password, salt=None, iterations=101) -> str``  the ``$7$`` PBKDF2-SHA512
      string Mosquitto 2 writes (``mosquitto_passwd``): ``$7$<iter>$<b64 salt>$<b64 hash>``.
  ``write_broker_config(store, out_dir, port, persistence=False, headend_port=None)
      -> {"conf", "headend_url", "meter_port", "headend_port"}``
      ``mosquitto.conf`` with two listeners (``per_listener_settings true``), each with its
      own password file and ACL in out_dir:
        - the meters' listener on ``port``: every registered meter, the docs/protocol.md ACL
          patterns and ``use_username_as_clientid``: the broker replaces whatever client id a
          meter sends with its username, so a meter's login can only ever open (and take
          over) its own session, never the head-end's nor another meter's;
        - the head-end's listener on ``headend_port`` (default ``port + 1``): only the
          head-end user, which keeps the client ids it chooses (``headend serve`` workers,
          ``dispatch``, ``console``); ``headend_url`` points here.

The head-end's broker user is ``HEADEND_USER`` ("headend.ingest": the dot keeps it
out of the meter id alphabet, so no meter can be provisioned under that name).
Its password is kept in the database settings, sealed with the master key like the
meter keys (headend/db/keystore.py), because ``headend_url`` must carry it.

The head-end's client ids contain a dot too (``headend.ingest``, ``headend.dispatch``,
``headend.console.<hex>``) and ``headend.mqtt.check_service_client_id``
refuses one that is a valid meter id: the broker's client id namespace is shared by
both listeners, so a head-end session named like a meter would be taken over when
that meter logs in.

Run as root, Mosquitto 2 drops privileges to user ``mosquitto`` as soon as it has
read its config file, and reads the password and ACL files and the persistence
file after that (also on SIGHUP, when it reads the config file again). So as root
the config says ``user mosquitto`` (never ``user root``), the password and ACL
files belong to that user (mode 0600), ``mosquitto.conf`` stays root's (mode 0640,
group mosquitto: readable for a reload, not writable), and out_dir is root's with
group mosquitto, mode 1770: the broker can write its persistence file there but,
the sticky bit set, cannot replace the config root reads at the next start. Every
directory above out_dir must be traversable by that user: ``write_broker_config``
checks it (as that user) and names the directory that is not.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import subprocess

from headend.errors import ProvisionError  # noqa: F401
from protocol import topics

HEADEND_USER = "headend.ingest"
HEADEND_PASSWORD_SETTING = "broker.headend_password"
RESERVED_PREFIX = "headend"  # meter ids beginning with it (any case) are the head-end's
BROKER_USER = "mosquitto"  # the user Mosquitto drops to when started as root
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12
KEY_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")
# Per-client limits. Mosquitto 2.0 applies max_inflight_messages, max_queued_messages,
# max_queued_bytes, max_packet_size and max_keepalive globally, to every client on every
# listener alike (per_listener_settings covers only authentication and ACLs): they are
# sized for the one client that needs most, the head-end's persistent ingest session.
# A meter cannot use that size for itself: its own session only ever queues commands,
# which only the head-end publishes. What a meter can do is publish towards the head-end:
# while serve is away its session queues every meter's messages up to MAX_QUEUED messages
# or MAX_QUEUED_BYTES of payload, whichever comes first. That bounds the broker's memory
# (a flood of 30 KiB frames stops at the byte limit), and leaves the trade-off that a
# meter flooding during a head-end outage can fill the queue: the broker then drops
# what arrives (acknowledged, so the meters drop it too) until serve drains it. A
# reading frame is about 200 bytes: the defaults hold a million readings (some 200 MB),
# 10 days of 1000 meters at 15-minute intervals. docs/security.md "Known limits".
MAX_INFLIGHT = 1000  # QoS 1 messages in flight per client (default 20 throttles batched acks)
MAX_QUEUED = 1_000_000  # messages per session beyond those in flight (Mosquitto's default 1000 drops)
MAX_QUEUED_BYTES = 256 * 1024 * 1024  # payload bytes per session queue (Mosquitto's default: no limit)
MAX_PACKET = 32768  # bytes of one MQTT packet: a 16 KiB payload plus topic and header fit
MAX_KEEPALIVE = 120  # s; 2 x docs/protocol.md's 60 s (Mosquitto 2.0 enforces it on MQTT 5 clients only)
METER_ACL = """\
# docs/protocol.md "Transport": a meter writes only its up topics and reads only its down topics.
pattern write ami/v1/%u/up/#
pattern read ami/v1/%u/down/#
"""
HEADEND_ACL = """\
# the head-end reads every meter's up topics and writes every meter's down topics
user {user}
topic read ami/v1/+/up/#
topic write ami/v1/+/down/#
"""
# both in one file, for a broker with a single listener (tests of one layer, e.g. the firmware's client)
ACL = METER_ACL + "\n" + HEADEND_ACL


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


def check_not_reserved(meter_id: str) -> str:
    """ProvisionError for an id kept for the head-end's services: ``headend...`` in any case (the
    client ids its services used to have, ``headend-ingest`` and ``headend-dispatch``, and any
    a future service may take)."""
    if meter_id.lower().startswith(RESERVED_PREFIX):
        raise ProvisionError(
            "meter id %r is reserved: ids beginning with %r are kept for the head-end's own broker"
            " sessions" % (meter_id, RESERVED_PREFIX)
        )
    return meter_id


def add_meter(
    store, meter_id: str, key_hex: str | None = None, account: str | None = None, privacy: bool = False
) -> dict:
    check_not_reserved(check_meter_id(meter_id))
    key_hex = new_key() if key_hex is None else check_key(key_hex)
    if account is not None and not account.strip():
        raise ProvisionError("account must not be empty")
    if account is not None and store.account(account) is None:
        raise ProvisionError(
            "no account %r: add it first (`headend account add %s --zone Z --tariff FILE`), or add the"
            " meter without --account and link it with `headend account add ... --meter %s`"
            " (`headend account list` shows the accounts)" % (account, account, meter_id)
        )
    password = new_password()
    with store.transaction():  # the meter and its account link (the one the web and bills read), or neither
        store.add_meter(meter_id, key_hex, mosquitto_hash(password), account, privacy=privacy)
        if account is not None:
            store.link_meter(account, meter_id, 0)
    return {"meter_id": meter_id, "key": key_hex, "mqtt_password": password, "privacy": bool(privacy)}


def headend_password(store) -> str:
    """The head-end's broker password, made on first use and kept in the database."""
    password = store.setting(HEADEND_PASSWORD_SETTING)
    if password is None:
        password = new_password()
        store.set_setting(HEADEND_PASSWORD_SETTING, password)
    return password


def _write_private(
    path: str, text: str | bytes, owner: tuple[int, int] | None = None, mode: int = 0o600
) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
        if owner is not None:
            os.fchown(f.fileno(), *owner)
        os.fchmod(f.fileno(), mode)
        f.write(text)
    os.replace(tmp, path)


def broker_account():
    """The account (``pwd.struct_passwd``) Mosquitto switches to when started by us as root, or
    None when we are not root (it keeps running as us). ProvisionError if it does not exist."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam(BROKER_USER)
    except KeyError:
        raise ProvisionError(
            "running as root, but there is no user %r for Mosquitto to drop privileges to: create it"
            " (e.g. `useradd --system --no-create-home %s`), or run broker-config and mosquitto as an"
            " unprivileged user" % (BROKER_USER, BROKER_USER)
        ) from None


def _as_broker(account, *test_args: str) -> bool | None:
    """``test ARGS`` run as the broker's account (its uid, primary group only, as Mosquitto does);
    None when there is no test(1) to ask."""
    exe = shutil.which("test") or ("/usr/bin/test" if os.path.exists("/usr/bin/test") else None)
    if exe is None:
        return None
    done = subprocess.run(
        [exe, *test_args],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",
        check=False,
    )
    return done.returncode == 0


def _check_reachable(out_dir: str, account, probe: tuple[str, ...] | None = None) -> None:
    """ProvisionError naming the directory that keeps the broker's account from out_dir (by
    default: one it cannot search and write), after ``test PROBE`` as that account failed."""
    import pwd

    if _as_broker(account, *(probe or ("-x", out_dir, "-a", "-w", out_dir))) is not False:
        return
    path = "/"
    for part in [p for p in out_dir.split(os.sep) if p]:
        if not _as_broker(account, "-x", path):
            break
        path = os.path.join(path, part)
    st = os.stat(path)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    raise ProvisionError(
        "Mosquitto started as root runs as user %r, which cannot reach %s: %s (mode %04o, owner %s)"
        " is not traversable by it; write the broker files under a directory it can traverse"
        " (e.g. /var/lib/mosquitto/ami, /srv/ami-broker), or grant it search permission there"
        % (account.pw_name, out_dir, path, st.st_mode & 0o7777, owner)
    )


def check_broker_dir(out_dir: str) -> None:
    """Before anything is written (tools/provision_fleet.py): run as root, ProvisionError if the
    broker's account cannot search the nearest existing directory of out_dir's path."""
    account = broker_account()
    if account is None:
        return
    out_dir = os.path.abspath(out_dir)
    existing = out_dir
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    _check_reachable(out_dir, account, ("-x", existing))


def prepare_broker_dir(out_dir: str):
    """Make out_dir for the broker's files; the broker's account (``broker_account()``) or None.
    Run as root: root's, group of the broker, mode 1770 (the broker may write its persistence
    file there but, the directory sticky, cannot rename or remove root's mosquitto.conf), and
    ProvisionError if that account cannot reach it."""
    account = broker_account()
    out_dir = os.path.abspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        if account is not None:
            os.chown(out_dir, 0, account.pw_gid)
            os.chmod(out_dir, 0o1770)
    except OSError as e:
        raise ProvisionError("cannot create output directory %s: %s" % (out_dir, e.strerror))
    if account is not None:
        _check_reachable(out_dir, account)
    return account


def write_broker_config(
    store,
    out_dir: str,
    port: int,
    persistence: bool = False,
    headend_port: int | None = None,
    tls: dict | None = None,
) -> dict:
    """``tls``: None (plain MQTT listeners) or {"hosts", "cert", "key", "cafile", "plain_port"}
    (``headend broker-config --tls``): both listeners speak TLS with a server certificate made
    by headend/meters/tls.py or the operator's; ``plain_port`` (None: none) adds a plaintext
    meters' listener for boards without TLS."""
    plain_port = (tls or {}).get("plain_port")
    for name, value in (("port", port), ("head-end port", headend_port), ("plain listener port", plain_port)):
        if value is not None and (not isinstance(value, int) or not 1 <= value <= 65535):
            raise ProvisionError("%s must be 1..65535, got %r" % (name, value))
    if headend_port is None:
        if port == 65535:
            raise ProvisionError("port 65535 leaves no port + 1 for the head-end: give the head-end port")
        headend_port = port + 1
    if headend_port == port:
        raise ProvisionError("the head-end port must differ from the meters' port %d" % port)
    if plain_port is not None and plain_port in (port, headend_port):
        raise ProvisionError("the plain listener port %d is already a TLS listener's" % plain_port)
    out_dir = os.path.abspath(out_dir)
    account = prepare_broker_dir(out_dir)
    broker_owner = None if account is None else (account.pw_uid, account.pw_gid)
    password = headend_password(store)
    passwd, acl, headend_passwd, headend_acl, conf = (
        os.path.join(out_dir, n) for n in ("passwd", "acl", "headend-passwd", "headend-acl", "mosquitto.conf")
    )
    meters = ["%s:%s" % (m["meter_id"], m["mqtt_password_hash"]) for m in store.meters()]
    _write_private(passwd, "".join(line + "\n" for line in meters), broker_owner)
    _write_private(acl, METER_ACL, broker_owner)
    _write_private(headend_passwd, "%s:%s\n" % (HEADEND_USER, mosquitto_hash(password)), broker_owner)
    _write_private(headend_acl, HEADEND_ACL.format(user=HEADEND_USER), broker_owner)
    tls_files = None
    if tls is not None:
        from headend.meters import tls as tls_mod

        tls_files = tls_mod.broker_tls(
            out_dir,
            tls.get("hosts"),
            tls.get("cert"),
            tls.get("key"),
            tls.get("cafile"),
            broker_owner,
            _write_private,
        )
        tls_lines = [
            "cafile %s" % tls_files["cafile"],
            "certfile %s" % tls_files["certfile"],
            "keyfile %s" % tls_files["keyfile"],
            "tls_version tlsv1.2",  # the oldest accepted (TLS 1.3 too)
        ]
    conf_lines = [
        "# written by `headend broker-config`; run: mosquitto -c %s" % conf,
        # before any password_file or acl_file: each listener below has its own
        "per_listener_settings true",
        # per client, every listener alike (see MAX_QUEUED in headend/meters/provision.py for the trade-off)
        "max_inflight_messages %d" % MAX_INFLIGHT,
        "max_queued_messages %d" % MAX_QUEUED,
        "max_queued_bytes %d" % MAX_QUEUED_BYTES,
        # a meter's frames are < 2 KiB; ingest refuses payloads over ingest.verify.MAX_FRAME undecoded,
        # and the broker drops anything bigger than this before it reaches anyone (and disconnects the sender)
        "max_packet_size %d" % MAX_PACKET,
        "max_keepalive %d" % MAX_KEEPALIVE,
        "set_tcp_nodelay true",
    ]
    if persistence:
        conf_lines += ["persistence true", "persistence_location %s/" % out_dir, "autosave_interval 60"]
        db_file = os.path.join(out_dir, "mosquitto.db")
        if broker_owner is not None and os.path.exists(db_file):
            os.chown(db_file, *broker_owner)  # saved by a broker that ran as root (`user root` before)
    else:
        conf_lines += ["persistence false"]
    if account is not None:
        # it drops privileges right after reading this file, then reads everything else as that user
        conf_lines += ["user %s" % account.pw_name]
    conf_lines += [
        "",
        "# meters: the broker takes the username as the client id, so a meter's login only ever",
        "# opens its own session (never the head-end's nor another meter's, whatever id it sends)",
        "listener %d 127.0.0.1" % port,
        "use_username_as_clientid true",
        "allow_anonymous false",
        "password_file %s" % passwd,
        "acl_file %s" % acl,
        "max_qos 1",  # docs/protocol.md: QoS 1 only; a QoS 2 publish (broker-held until PUBREL) disconnects
    ]
    if tls_files is not None:
        conf_lines += tls_lines
    conf_lines += [
        "",
        "# the head-end's services (headend_url): only the head-end user, with the client ids it chooses",
        "listener %d 127.0.0.1" % headend_port,
        "allow_anonymous false",
        "password_file %s" % headend_passwd,
        "acl_file %s" % headend_acl,
    ]
    if tls_files is not None:
        conf_lines += tls_lines
    if plain_port is not None:
        conf_lines += [
            "",
            "# meters without TLS in their firmware (--plain-listener): the meters' rules, in clear",
            "listener %d 127.0.0.1" % plain_port,
            "use_username_as_clientid true",
            "allow_anonymous false",
            "password_file %s" % passwd,
            "acl_file %s" % acl,
            "max_qos 1",
        ]
    conf_owner = None if account is None else (0, account.pw_gid)
    _write_private(conf, "\n".join(conf_lines) + "\n", conf_owner, 0o600 if account is None else 0o640)
    # the head-end's services read it with --password-file, so the password stays out of `ps`
    password_file = os.path.join(out_dir, "headend.password")
    _write_private(password_file, password + "\n")
    out = {
        "conf": conf,
        "headend_url": "%s://%s:%s@127.0.0.1:%d"
        % ("mqtt" if tls_files is None else "mqtts", HEADEND_USER, password, headend_port),
        "meter_port": port,
        "headend_port": headend_port,
        "headend_password_file": password_file,
    }
    if tls_files is not None:
        out["tls"] = tls_files
        out["plain_port"] = plain_port
    return out
