"""``headend meter provision``: a fleet of meters in one go: head-end records, each board's
config.json, broker files.

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


def board_config(
    meter: dict,
    frontend: str,
    prepaid: bool,
    broker_host: str,
    broker_port: int,
    wifi: dict | None = None,
) -> dict:
    """The config.json dict for one provisioned meter, checked by protocol.board_config.validate."""
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
    p.add_argument("--wifi-ssid")
    p.add_argument("--wifi-password", default="")
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
