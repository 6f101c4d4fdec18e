"""``headend meter`` (add, list, provision) and ``headend broker-config``: registering meters, a
fleet of them with their boards' config files, and the broker's view of them.

Registered with ``headend.cli`` by ``register(subparsers)`` and ``COMMANDS``; errors are raised
for its one handler.
"""

from __future__ import annotations

import argparse
import json

from headend.meters import fleet


def register(subparsers) -> None:
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=argparse.SUPPRESS, help="SQLite database file (default headend.db)")
    meter = subparsers.add_parser("meter", help="provision meters", parents=[db])
    msub = meter.add_subparsers(dest="meter_command", metavar="SUBCOMMAND", required=True)
    add = msub.add_parser("add", help="register a meter; prints its key and broker password", parents=[db])
    add.add_argument("meter_id")
    add.add_argument("--key", help="64 hex digits (generated when not given)")
    add.add_argument(
        "--account", help="an existing account (headend account add) the meter is linked to from now on"
    )
    add.add_argument(
        "--privacy",
        action="store_true",
        help="the meter must encrypt: COSE_Encrypt0 only, its COSE_Mac0 frames refused (docs/security.md)",
    )
    add.set_defaults(db_use="create")  # headend.cli: creates a missing database
    rot = msub.add_parser(
        "rotate-key",
        help="start a key rotation (a sealed set-config command carrying a new key), or --finish it",
        parents=[db],
    )
    rot.add_argument("meter_id")
    rot.add_argument("--key", help="the new key, 64 hex digits (generated when not given)")
    rot.add_argument(
        "--finish", action="store_true", help="once the meter acked the rotation: the new key becomes its key"
    )
    mset = msub.add_parser("set", help="change a registered meter's policy (--privacy on|off)", parents=[db])
    mset.add_argument("meter_id")
    mset.add_argument(
        "--privacy",
        choices=("on", "off"),
        required=True,
        help="on: require COSE_Encrypt0 of the meter (its COSE_Mac0 refused, commands sealed with"
        " COSE_Encrypt0); then write its config.json again (meter config) so the meter seals too",
    )
    lst = msub.add_parser("list", help="list registered meters", parents=[db])
    lst.add_argument("--json", action="store_true", help="print the meters as a JSON list")
    prov = msub.add_parser(
        "provision",
        help="register N meters in one transaction; each board's config.json; the broker's files",
        parents=[db],
    )
    fleet.add_arguments(prov)
    prov.set_defaults(db_use="create")
    fleet.add_config_arguments(
        msub.add_parser(
            "config",
            help="write a registered meter's board config.json (for tools/deploy.py or tools/emulate.py)",
            parents=[db],
        )
    )

    bc = subparsers.add_parser(
        "broker-config", help="write a Mosquitto config for every registered meter", parents=[db]
    )
    bc.add_argument(
        "--out", required=True, metavar="DIR", help="writes mosquitto.conf, passwd and acl files here"
    )
    bc.add_argument("--port", required=True, type=int, help="the meters' listener")
    bc.add_argument(
        "--headend-port",
        type=int,
        metavar="M",
        help="the head-end's listener, where headend_url points (default PORT + 1: a `--port N`"
        " command line keeps working; meters need only PORT open)",
    )
    bc.add_argument("--persistence", action="store_true", help="keep broker state in DIR across restarts")
    bc.add_argument(
        "--tls",
        action="store_true",
        help="both listeners speak MQTT over TLS (mqtts://): DIR/ca.pem, server.pem, server.key (0600) from"
        " a CA made in DIR once (DIR/ca.key, 0600, kept for the next run), or the operator's --cert/--key/"
        "--cafile; meters get ca.pem as broker.cafile, the head-end as --cafile",
    )
    bc.add_argument(
        "--tls-host",
        action="append",
        metavar="HOST",
        help="with --tls: a host name or IP address the meters and the head-end connect to, for the"
        " made server certificate's subjectAltName (repeat it; default localhost and 127.0.0.1)",
    )
    bc.add_argument(
        "--cert", metavar="FILE", help="with --tls: the broker's certificate (PEM) instead of a made one"
    )
    bc.add_argument(
        "--key", metavar="FILE", help="with --tls: that certificate's private key (PEM, unencrypted)"
    )
    bc.add_argument(
        "--cafile", metavar="FILE", help="with --tls: the CA certificate(s) (PEM) that issued --cert"
    )
    bc.add_argument(
        "--plain-listener",
        type=int,
        metavar="P",
        help="with --tls: also a plaintext meters' listener on port P, for boards whose firmware has no"
        " TLS (off by default: without --tls nothing is encrypted anyway)",
    )
    bc.set_defaults(db_use="create")


def _store(args):
    from headend.db.storage import Storage

    return Storage(args.db, master_key_file=getattr(args, "master_key_file", None))


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=None, separators=(", ", ": "), default=str))


LIST_FIELDS = ("meter_id", "account", "online", "last_seen", "fw", "board", "privacy")


def cmd_meter(args) -> int:
    from headend.meters import provision

    if args.meter_command == "provision":
        return fleet.run(args)
    with _store(args) as store:
        if args.meter_command == "config":
            return fleet.run_config(args, store)
        if args.meter_command == "add":
            _print_json(provision.add_meter(store, args.meter_id, args.key, args.account, args.privacy))
            return 0
        if args.meter_command == "rotate-key":
            import time

            from headend.meters import privacy

            if args.finish:
                if args.key:
                    raise provision.ProvisionError("--finish takes no --key")
                _print_json(privacy.finish_rotation(store, args.meter_id))
            else:
                _print_json(privacy.rotate_key(store, args.meter_id, time.time(), args.key))
            return 0
        if args.meter_command == "set":
            if store.meter(args.meter_id) is None:
                raise provision.ProvisionError("unknown meter %r" % args.meter_id)
            store.set_meter_privacy(args.meter_id, args.privacy == "on")
            _print_json({"meter_id": args.meter_id, "privacy": bool(store.meter(args.meter_id)["privacy"])})
            return 0
        accounts = store.meter_account_ids()  # the open account link, as the web and bills see it
        rows = [
            {
                k: accounts.get(m["meter_id"]) if k == "account" else bool(m[k]) if k == "privacy" else m[k]
                for k in LIST_FIELDS
            }
            for m in store.meters()
        ]
    if args.json:
        _print_json(rows)
    else:
        for m in rows:
            print(
                "%-32s %-16s %s"
                % (m["meter_id"], m["account"] or "-", "online" if m["online"] else "offline")
            )
    return 0


def cmd_broker_config(args) -> int:
    from headend.meters import provision

    tls = None
    if args.tls:
        tls = {
            "hosts": args.tls_host,
            "cert": args.cert,
            "key": args.key,
            "cafile": args.cafile,
            "plain_port": args.plain_listener,
        }
    else:
        for flag, value in (
            ("--tls-host", args.tls_host),
            ("--cert", args.cert),
            ("--key", args.key),
            ("--cafile", args.cafile),
            ("--plain-listener", args.plain_listener),
        ):
            if value is not None:
                raise provision.ProvisionError(
                    "%s needs --tls (without it every listener is plaintext)" % flag
                )
    with _store(args) as store:
        cfg = provision.write_broker_config(
            store, args.out, args.port, args.persistence, args.headend_port, tls=tls
        )
    _print_json(cfg)
    return 0


COMMANDS = {"meter": cmd_meter, "broker-config": cmd_broker_config}
