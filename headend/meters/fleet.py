"""``headend meter provision``: a fleet of meters in one go: head-end records, each board's
config.json, broker files; and ``headend meter config``: one registered meter's config.json
(``meter_config``, the same ``board_config``; docs/cli.md says how its broker password is had).

Usage (``python tools/provision_fleet.py`` takes the same arguments):
    headend meter provision --db headend.db --count N --out DIR [--prefix m-] [--first 1]
        [--frontend atm90e26|adc|mixed] [--prepaid-share 0.5]
        [--broker-host 127.0.0.1 --broker-port 1883] [--broker-headend-port PORT+1]
        [--broker-dir DIR/broker] [--broker-persistence]
        [--wifi-ssid S --wifi-password P] [--json]

What it does, in this order (nothing half-written):

1. Meter ids ``<prefix><number>`` (numbers from ``--first``, zero-padded to at
   least 4 digits) are checked (docs/protocol.md: 1..32 of ``[A-Za-z0-9_-]``); ids
   already in the database, or whose ``DIR/<id>/config.json`` exists, are
   refused with one error listing them.
2. In ONE database transaction every meter is added through
   ``headend.meters.provision.add_meter`` (the code path of ``headend meter add``: a
   32-byte key and a broker password from ``secrets``; the database keeps the
   key and the password's Mosquitto hash). Each board's config is built and
   checked with ``protocol.board_config.validate`` and written (mode 0600: it holds
   the key) to ``DIR/<id>/config.json`` before the transaction commits; any
   failure rolls the database back and removes the files written.
3. The broker's password files, ACLs and mosquitto.conf are rewritten for every
   registered meter by ``headend.meters.provision.write_broker_config`` (the code of
   ``headend broker-config``) into ``--broker-dir`` (default ``DIR/broker``): the
   meters' listener on ``--broker-port`` (the boards' port), the head-end's on
   ``--broker-headend-port`` (default the boards' port + 1). Run as root, that
   directory must be reachable by user mosquitto (the broker runs as it).

config.json contract (protocol/board_config.py; only these keys are written, the
firmware fills in its defaults):

    {"meter_id": "m-0001", "key": "<64 hex>",
     "broker": {"host": H, "port": P, "user": "m-0001", "password": "<clear>"},
     "wifi": {"ssid": S, "password": P},          # only with --wifi-ssid
     "frontend": "atm90e26" | "adc",
     "prepaid": {"enabled": true | false}}

``--frontend mixed`` alternates the front ends (atm90e26 first). Prepaid
meters are spread evenly: meter i (0-based) is prepaid when
floor((i + 1) * share) > floor(i * share), so a share of 0.5 makes every
second meter prepaid. A prepaid meter boots with balance 0 until a top-up
(``headend topup`` + ``headend dispatch``).

The summary (text, or one JSON object with --json) names the meters, the
config files and the broker files; it never prints keys or passwords (they
are in the config files and, hashed, in the database). Progress goes to
stderr every 500 meters when N > 500.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from headend.errors import FleetError, HeadendError
from headend.meters import provision
from protocol import board_config as fw_config

FRONTENDS = ("atm90e26", "adc", "mixed")
CONFIG_NAME = "config.json"
PROGRESS_EVERY = 500
MAX_COUNT = 100000


def meter_ids(prefix: str, count: int, first: int = 1) -> list[str]:
    """The ids ``prefix + number``, numbers first..first+count-1 zero-padded to >= 4 digits."""
    if count < 1 or count > MAX_COUNT:
        raise FleetError("--count must be 1..%d, got %d" % (MAX_COUNT, count))
    if first < 0:
        raise FleetError("--first must be >= 0, got %d" % first)
    ids = ["%s%04d" % (prefix, n) for n in range(first, first + count)]  # m-0007 whatever the batch
    for meter_id in (ids[0], ids[-1]):
        try:
            provision.check_not_reserved(provision.check_meter_id(meter_id))
        except provision.ProvisionError as e:
            raise FleetError("--prefix %r: %s" % (prefix, e)) from None
    return ids


def is_prepaid(index: int, share: float) -> bool:
    """Meter ``index`` (0-based) is prepaid: an even spread of ``share`` of the fleet."""
    return int((index + 1) * share) > int(index * share)


def frontend_of(index: int, frontend: str) -> str:
    if frontend == "mixed":
        return ("atm90e26", "adc")[index % 2]
    return frontend


CAFILE_NAME = "ca.pem"  # a TLS meter's CA file, beside config.json (its broker.cafile)


def board_config(
    meter: dict,
    frontend: str,
    prepaid: bool,
    broker_host: str,
    broker_port: int,
    wifi: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """The config.json dict for one provisioned meter, checked by protocol.board_config.validate;
    ``extra``: more config keys (interval, rating, calibration: ``headend meter config``)."""
    cfg = {
        "meter_id": meter["meter_id"],
        "key": meter["key"],
        "broker": {
            "host": broker_host,
            "port": broker_port,
            "user": meter["meter_id"],
            "password": meter["mqtt_password"],
        },
        "frontend": frontend,
        "prepaid": {"enabled": prepaid},
    }
    if wifi is not None:
        cfg["wifi"] = dict(wifi)
    cfg.update(extra or {})
    try:
        fw_config.validate(cfg)
    except fw_config.ConfigError as e:
        raise FleetError("meter %s: %s" % (meter["meter_id"], e)) from None
    return cfg


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _progress(done: int, total: int, what: str, quiet: bool) -> None:
    if not quiet and total > PROGRESS_EVERY and (done % PROGRESS_EVERY == 0 or done == total):
        print("%s %d/%d" % (what, done, total), file=sys.stderr, flush=True)


def provision_fleet(
    db: str,
    count: int,
    out: str,
    prefix: str = "m-",
    first: int = 1,
    frontend: str = "atm90e26",
    prepaid_share: float = 0.0,
    broker_host: str = "127.0.0.1",
    broker_port: int = 1883,
    broker_dir: str | None = None,
    broker_persistence: bool = False,
    wifi: dict | None = None,
    quiet: bool = False,
    broker_headend_port: int | None = None,
) -> dict:
    """Provision ``count`` meters; the summary dict (see the module docstring). FleetError on bad input."""
    if frontend not in FRONTENDS:
        raise FleetError("--frontend must be one of %s, got %r" % ("|".join(FRONTENDS), frontend))
    if not 0.0 <= prepaid_share <= 1.0:
        raise FleetError("--prepaid-share must be 0..1, got %r" % (prepaid_share,))
    if not 1 <= broker_port <= 65535:
        raise FleetError("--broker-port must be 1..65535, got %d" % broker_port)
    if not broker_host or len(broker_host) > 253:
        raise FleetError("--broker-host must be 1..253 characters")
    if wifi is not None and not 1 <= len(wifi.get("ssid", "")) <= 32:
        raise FleetError("--wifi-ssid must be 1..32 characters")
    if wifi is not None and len(wifi.get("password", "")) > 63:
        raise FleetError("--wifi-password must be at most 63 characters")
    ids = meter_ids(prefix, count, first)
    out = os.path.abspath(out)
    broker_dir = os.path.abspath(broker_dir or os.path.join(out, "broker"))
    clash = [i for i in ids if os.path.exists(os.path.join(out, i, CONFIG_NAME))]
    if clash:
        raise FleetError(
            "%d config file(s) already exist in %s (%s%s): remove them or choose another --prefix/--first"
            % (len(clash), out, ", ".join(clash[:5]), ", ..." if len(clash) > 5 else "")
        )
    try:
        provision.check_broker_dir(broker_dir)  # run as root: one the broker can reach, or say so now
    except provision.ProvisionError as e:
        raise FleetError("--broker-dir: %s" % e) from None
    t0 = time.monotonic()
    meters = []
    from headend.db.storage import Storage

    with Storage(db) as store:
        taken = {m["meter_id"] for m in store.meters()} & set(ids)
        if taken:
            taken = sorted(taken)
            raise FleetError(
                "%d meter id(s) already registered in %s (%s%s): choose another --prefix or --first"
                % (len(taken), db, ", ".join(taken[:5]), ", ..." if len(taken) > 5 else "")
            )
        os.makedirs(out, exist_ok=True)
        stage = tempfile.mkdtemp(prefix=".provision-", dir=out)
        placed: list[str] = []
        try:
            with store.transaction():
                for i, meter_id in enumerate(ids):
                    meter = provision.add_meter(store, meter_id)
                    fe, pp = frontend_of(i, frontend), is_prepaid(i, prepaid_share)
                    cfg = board_config(meter, fe, pp, broker_host, broker_port, wifi)
                    os.mkdir(os.path.join(stage, meter_id))
                    _write_private(
                        os.path.join(stage, meter_id, CONFIG_NAME), json.dumps(cfg, indent=2) + "\n"
                    )
                    meters.append(
                        {
                            "meter_id": meter_id,
                            "frontend": fe,
                            "prepaid": pp,
                            "config": os.path.join(out, meter_id, CONFIG_NAME),
                        }
                    )
                    _progress(i + 1, count, "provisioned", quiet)
                # all built: move them into place, still inside the transaction
                for m in meters:
                    dest = os.path.join(out, m["meter_id"])
                    os.makedirs(dest, exist_ok=True)
                    os.replace(os.path.join(stage, m["meter_id"], CONFIG_NAME), m["config"])
                    placed.append(m["config"])
        except BaseException:
            for path in placed:
                try:
                    os.remove(path)
                    os.rmdir(os.path.dirname(path))
                except OSError:
                    pass
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        try:
            broker = provision.write_broker_config(
                store, broker_dir, broker_port, broker_persistence, broker_headend_port
            )
        except (provision.ProvisionError, OSError) as e:
            raise FleetError(
                "%d meters provisioned and their configs written, but the broker files were not: %s"
                " (rerun `headend broker-config --out %s --port %d`)"
                % (len(meters), e, broker_dir, broker_port)
            ) from None
        registered = len(store.meters())
    conf = broker["conf"]
    return {
        "db": os.path.abspath(db),
        "count": len(meters),
        "first": ids[0],
        "last": ids[-1],
        "frontends": {fe: sum(m["frontend"] == fe for m in meters) for fe in ("atm90e26", "adc")},
        "prepaid": sum(m["prepaid"] for m in meters),
        "out": out,
        "broker": {
            "dir": broker_dir,
            "conf": conf,
            "passwd": os.path.join(broker_dir, "passwd"),
            "acl": os.path.join(broker_dir, "acl"),
            "headend_passwd": os.path.join(broker_dir, "headend-passwd"),
            "headend_acl": os.path.join(broker_dir, "headend-acl"),
            "port": broker_port,
            "headend_port": broker["headend_port"],
            "meters": registered,
            "run": "mosquitto -c %s" % conf,
        },
        "seconds": round(time.monotonic() - t0, 3),
        "meters": meters,
    }


def summary_text(s: dict) -> str:
    fe = ", ".join("%s %d" % (k, v) for k, v in s["frontends"].items() if v)
    b = s["broker"]
    return "\n".join(
        [
            "provisioned %d meter(s) %s..%s in %s (%s; prepaid %d) in %.1f s"
            % (s["count"], s["first"], s["last"], s["db"], fe, s["prepaid"], s["seconds"]),
            "board configs: %s/<meter_id>/config.json (mode 0600: key and broker password)" % s["out"],
            "broker files for %d registered meter(s) + the head-end user:" % b["meters"],
            "  passwd %s (meters; the head-end's: %s)" % (b["passwd"], b["headend_passwd"]),
            "  acl    %s (meters; the head-end's: %s)" % (b["acl"], b["headend_acl"]),
            "  conf   %s (meters' listener 127.0.0.1:%d, the head-end's 127.0.0.1:%d)"
            % (b["conf"], b["port"], b["headend_port"]),
            "  start: %s   (a running broker: reload with SIGHUP)" % b["run"],
        ]
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``headend meter provision`` (and of tools/provision_fleet.py)."""
    p.add_argument("--count", type=int, required=True, help="number of meters to create")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/<meter_id>/config.json")
    p.add_argument("--prefix", default="m-", help="meter id prefix (default m-)")
    p.add_argument("--first", type=int, default=1, help="first meter number (default 1)")
    p.add_argument("--frontend", default="atm90e26", choices=FRONTENDS, help="metering front end")
    p.add_argument("--prepaid-share", type=float, default=0.0, help="share of prepaid meters 0..1")
    p.add_argument("--broker-host", default="127.0.0.1", help="broker host the boards connect to")
    p.add_argument("--broker-port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument(
        "--broker-headend-port", type=int, help="the head-end's listener (default the broker port + 1)"
    )
    p.add_argument("--broker-dir", metavar="DIR", help="broker files (default OUT/broker)")
    p.add_argument("--broker-persistence", action="store_true", help="mosquitto.conf keeps state in DIR")
    p.add_argument("--wifi-ssid", help="Wi-Fi network the boards join (written to each config.json)")
    p.add_argument("--wifi-password", default="", help="its password (needs --wifi-ssid)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(provision_parser=p)


def run(args) -> int:
    """Provision as ``args`` say and print the summary; errors are raised (``FleetError``,
    ``ProvisionError``, ``StorageError``, ``OSError``) for the caller's handler."""
    if args.wifi_password and not args.wifi_ssid:
        args.provision_parser.error("--wifi-password needs --wifi-ssid")
    wifi = {"ssid": args.wifi_ssid, "password": args.wifi_password} if args.wifi_ssid else None
    s = provision_fleet(
        args.db,
        args.count,
        args.out,
        prefix=args.prefix,
        first=args.first,
        frontend=args.frontend,
        prepaid_share=args.prepaid_share,
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        broker_dir=args.broker_dir,
        broker_persistence=args.broker_persistence,
        wifi=wifi,
        broker_headend_port=args.broker_headend_port,
    )
    print(json.dumps(s) if args.json else summary_text(s))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python tools/provision_fleet.py ...``: ``headend meter provision ...`` as a script."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip('"`'))
    p.add_argument("--db", default="headend.db", help="head-end database (default headend.db)")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except (HeadendError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


# -- one meter's config: headend meter config ------------------------------------------------------

BOARDS = ("esp32", "rp2040", "unix")


def _calibration_file(path: str) -> dict:
    """A board's factory calibration: a JSON object, or a config.json whose ``calibration`` it is."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except ValueError as e:
        raise FleetError("--calibration %s is not JSON: %s" % (path, e)) from None
    if isinstance(obj, dict) and isinstance(obj.get("calibration"), dict) and "meter_id" in obj:
        obj = obj["calibration"]
    if not isinstance(obj, dict) or not obj:
        raise FleetError(
            "--calibration %s: expected a non-empty JSON object (the calibration section)" % path
        )
    return obj


def _password_from_file(path: str) -> str:
    with open(path) as f:
        password = f.readline().rstrip("\r\n")
    if not password:
        raise FleetError("--password-file %s: the first line is empty" % path)
    return password


def meter_config(
    store,
    meter_id: str,
    out: str,
    board: str = "unix",
    frontend: str = "atm90e26",
    broker_host: str = "127.0.0.1",
    broker_port: int = 1883,
    password: str | None = None,
    new_password: bool = False,
    interval: int | None = None,
    calibration: dict | None = None,
    wifi: dict | None = None,
    force: bool = False,
    broker_cafile: str | None = None,
) -> dict:
    """Write ``out/config.json`` for registered meter ``meter_id`` (see cli.md); a summary dict.
    ``broker_cafile``: the TLS broker's CA (PEM, `broker-config --tls` DIR/ca.pem), copied to
    ``out/ca.pem`` and named by the config's ``broker.tls``/``broker.cafile``.

    The broker password: ``password`` is checked against the stored hash; ``new_password`` makes
    a new one and stores its hash (the broker's passwd must then be rewritten: broker-config)."""
    if board not in BOARDS:
        raise FleetError("--board must be one of %s, got %r" % ("|".join(BOARDS), board))
    if frontend not in ("atm90e26", "adc"):
        raise FleetError("--frontend must be atm90e26 or adc, got %r" % frontend)
    if (password is None) == (not new_password):
        raise FleetError(
            "the meter's broker password is needed and the head-end keeps only its hash: give the one"
            " `headend meter add` printed with --password-file FILE, or issue a new one with --new-password"
        )
    m = store.meter(meter_id)
    if m is None:
        raise FleetError("unknown meter %r (register it with `headend meter add`)" % meter_id)
    path = os.path.join(os.path.abspath(out), CONFIG_NAME)
    if os.path.exists(path) and not force:
        raise FleetError("%s exists: remove it or pass --force to replace it" % path)
    if password is not None and not provision.check_mosquitto_hash(password, m["mqtt_password_hash"]):
        raise FleetError(
            "--password-file: not meter %r's broker password (the broker would refuse it); issue a new"
            " one with --new-password" % meter_id
        )
    new_hash = None
    if new_password:
        password = provision.new_password()
        new_hash = provision.mosquitto_hash(password)
    extra: dict = {}
    if interval is not None:
        extra["interval"] = interval
    for key, column, scale in (("ib", "ib_ma", 1000), ("imax", "imax_ma", 1000), ("un", "un_mv", 1000)):
        if m.get(column):
            extra[key] = m[column] / scale
    if m.get("rates"):
        extra["rates"] = m["rates"]
    if calibration:
        extra["calibration"] = dict(calibration)
    ca_pem = None
    if broker_cafile is not None:
        try:
            with open(broker_cafile, "rb") as f:
                ca_pem = f.read()
        except OSError as e:
            raise FleetError("cannot read --broker-cafile %s: %s" % (broker_cafile, e.strerror))
        if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise FleetError("--broker-cafile %s holds no PEM certificate" % broker_cafile)
        extra["broker"] = {"host": broker_host, "port": broker_port, "user": meter_id}
        extra["broker"].update(password=password, tls=True, cafile=CAFILE_NAME)
    if m.get("privacy"):
        extra["privacy"] = True  # the meter seals with COSE_Encrypt0 (headend/meters/privacy.py)
    account_id = store.meter_account_ids().get(meter_id)
    account = store.account(account_id) if account_id else None
    prepaid = bool(account and account.get("billing") == "prepaid")
    meter = {"meter_id": meter_id, "key": m["key"], "mqtt_password": password}
    cfg = board_config(meter, frontend, prepaid, broker_host, broker_port, wifi, extra)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    _write_private(tmp, json.dumps(cfg, indent=2) + "\n")
    if new_hash is not None:
        store.set_meter_password_hash(meter_id, new_hash)  # only once the file is written
    os.replace(tmp, path)
    if ca_pem is not None:  # public: no need to hide it, but the flash copy must be this one
        with open(os.path.join(os.path.dirname(path), CAFILE_NAME), "wb") as f:
            f.write(ca_pem)
    if board == "unix":
        nxt = "python tools/emulate.py --scenario FILE --flash %s --broker mqtt://%s:PASSWORD@%s:%d" % (
            os.path.dirname(path), meter_id, broker_host, broker_port)  # fmt: skip
        if ca_pem is not None:
            nxt = nxt.replace(" --broker mqtt://", " --runtime unix64 --broker mqtts://") + " --cafile %s" % (
                os.path.join(os.path.dirname(path), CAFILE_NAME))  # fmt: skip
    else:
        nxt = "python tools/deploy.py --port PORT --board %s --config %s" % (board, path)
    return {
        "meter_id": meter_id,
        "config": path,
        "board": board,
        "frontend": frontend,
        "prepaid": prepaid,
        "broker": {"host": broker_host, "port": broker_port, "user": meter_id, "tls": ca_pem is not None},
        "password": "new" if new_hash is not None else "given",
        "calibration": bool(calibration),
        "privacy": bool(m.get("privacy")),
        "next": nxt,
    }


def meter_config_text(s: dict) -> str:
    lines = [
        "wrote %s (mode 0600: key and broker password) for meter %s: %s board, %s front end%s,"
        " broker %s:%d as %s"
        % (
            s["config"],
            s["meter_id"],
            s["board"],
            s["frontend"],
            ", prepaid" if s["prepaid"] else "",
            s["broker"]["host"],
            s["broker"]["port"],
            s["broker"]["user"],
        ),  # fmt: skip
    ]
    if s["password"] == "new":
        lines.append(
            "a new broker password was issued and its hash stored: rewrite the broker's passwd with"
            " `headend broker-config --out DIR --port %d` and reload the broker (SIGHUP), or it refuses"
            " the meter" % s["broker"]["port"]
        )
    if not s["calibration"]:
        lines.append(
            "no calibration in it: tools/emulate.py adds its factory calibration; a board refuses to"
            " meter until its factory calibration is in config.json (--calibration FILE)"
        )
    lines.append("next: %s" % s["next"])
    return "\n".join(lines)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``headend meter config``."""
    p.add_argument("meter_id")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/config.json (the board's flash)")
    p.add_argument(
        "--board", choices=BOARDS, default="unix", help="where it runs (default unix: the emulator)"
    )
    p.add_argument("--frontend", choices=("atm90e26", "adc"), default="atm90e26", help="metering front end")
    p.add_argument("--broker-host", default="127.0.0.1", help="broker host the board connects to")
    p.add_argument("--broker-port", type=int, default=1883, help="the meters' listener (default 1883)")
    p.add_argument(
        "--broker-cafile",
        metavar="FILE",
        help="the broker speaks TLS (broker-config --tls): its CA (PEM, DIR/ca.pem), copied beside the"
        " config as ca.pem; the board verifies the broker with it",
    )
    pw = p.add_mutually_exclusive_group()
    pw.add_argument(
        "--password-file", metavar="FILE", help="the meter's broker password (what `meter add` printed)"
    )
    pw.add_argument(
        "--new-password",
        action="store_true",
        help="issue a new broker password and store its hash (then rerun broker-config)",
    )
    p.add_argument(
        "--interval", type=int, metavar="S", help="reading interval, s (default the firmware's 900)"
    )
    p.add_argument(
        "--calibration",
        metavar="FILE",
        help="the board's factory calibration (JSON, or a config.json with one)",
    )
    p.add_argument("--wifi-ssid", help="Wi-Fi network the board joins")
    p.add_argument("--wifi-password", default="", help="its password (needs --wifi-ssid)")
    p.add_argument("--force", action="store_true", help="replace an existing DIR/config.json")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run_config(args, store) -> int:
    wifi = {"ssid": args.wifi_ssid, "password": args.wifi_password} if args.wifi_ssid else None
    if args.wifi_password and not args.wifi_ssid:
        raise FleetError("--wifi-password needs --wifi-ssid")
    s = meter_config(
        store,
        args.meter_id,
        args.out,
        board=args.board,
        frontend=args.frontend,
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        password=_password_from_file(args.password_file) if args.password_file else None,
        new_password=args.new_password,
        interval=args.interval,
        calibration=_calibration_file(args.calibration) if args.calibration else None,
        wifi=wifi,
        force=args.force,
        broker_cafile=args.broker_cafile,
    )
    print(json.dumps(s) if args.json else meter_config_text(s))
    return 0
