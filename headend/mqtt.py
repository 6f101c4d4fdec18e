"""The head-end's MQTT edges, shared: broker URLs and paho clients (``serve``, ``dispatch``, ``console``).

``parse_broker_url("mqtt://USER:PASS@HOST:PORT")`` -> {host, port, username, password}
(``ServiceError`` naming the URL when it is not one); ``check_service_client_id(id)``: a head-end
client id must be one no meter can have; ``broker_url_with_password(url, password_file)``: the
password from the URL, ``--password-file`` or ``$HEADEND_BROKER_PASSWORD`` (``BROKER_HELP``,
``PASSWORD_HELP`` are the options' help); ``make_client(broker, client_id, ...)``
is a paho-mqtt 2 client (callback API version 2) with the URL's credentials set, of class
``cls`` (ingest passes its chunked-read subclass) with paho's keyword arguments passed on.
"""

from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import paho.mqtt.client as mqtt

from headend.errors import ServiceError
from protocol import topics


def parse_broker_url(url: str) -> dict:
    """``mqtt://USER:PASS@HOST:PORT`` -> {host, port, username, password}."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ServiceError("broker URL must look like mqtt://USER:PASS@HOST:PORT, got %r" % url)
    try:
        port = parts.port or 1883
    except ValueError:
        raise ServiceError("broker URL has a bad port: %r" % url)
    return {
        "host": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }


def check_service_client_id(client_id: str, flag: str = "--client-id") -> str:
    """ServiceError for a head-end client id a meter could also have.

    Mosquitto's client ids are one namespace across its listeners, and a login under an
    id already connected takes that session over (a clean one discards it and its queue).
    The meters' listener of `headend broker-config` gives each meter its username as
    client id, a meter id (``[A-Za-z0-9_-]{1,32}``): a head-end session named like a
    meter would be lost when that meter logs in. The defaults (``headend.ingest``,
    ``headend.dispatch``, ``headend.console.<hex>``) carry a dot for that reason."""
    if not isinstance(client_id, str) or not client_id:
        raise ServiceError("%s must not be empty" % flag)
    if topics.meter_id_valid(client_id):
        like = client_id.replace("-", ".", 1) if client_id.startswith("headend-") else "headend." + client_id
        raise ServiceError(
            "%s %r could be a meter's id, and the broker gives every meter its id as client id: that"
            " meter's login would take this session over; use an id with a character meter ids cannot"
            " have, such as a dot (e.g. %r)" % (flag, client_id, like)
        )
    return client_id


PASSWORD_ENV = "HEADEND_BROKER_PASSWORD"
BROKER_HELP = "mqtt://USER[:PASS]@HOST:PORT (better without PASS: see --password-file)"
PASSWORD_HELP = (
    "read the broker password from FILE's first line instead of the URL (which `ps` shows);"
    " without either, $%s is used" % PASSWORD_ENV
)


def add_broker_arguments(parser) -> None:
    """``--broker URL`` and ``--password-file FILE``, as serve, dispatch and console take them;
    ``broker_url_with_password(args.broker, args.password_file)`` combines them."""
    parser.add_argument("--broker", required=True, metavar="URL", help=BROKER_HELP)
    parser.add_argument("--password-file", metavar="FILE", help=PASSWORD_HELP)


def broker_url_with_password(url: str, password_file: str | None = None, environ=None) -> str:
    """The broker URL carrying its password, for this process only.

    The password comes from the URL (``mqtt://USER:PASS@HOST:PORT``, visible in ``ps``),
    else from ``password_file``'s first line (``--password-file``), else from
    ``$HEADEND_BROKER_PASSWORD``. Giving it in the URL and in a file is refused."""
    environ = os.environ if environ is None else environ
    broker = parse_broker_url(url)
    password = None
    if password_file is not None:
        if broker["password"] is not None:
            raise ServiceError("the broker password is in the URL and in --password-file: give it once")
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except OSError as e:
            raise ServiceError("cannot read --password-file %s: %s" % (password_file, e.strerror))
        if not password:
            raise ServiceError("--password-file %s is empty: its first line is the password" % password_file)
    elif broker["password"] is None and environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    if password is None:
        return url
    if broker["username"] is None:
        raise ServiceError("a broker password needs a user name in the URL: mqtt://USER@HOST:PORT")
    parts = urlsplit(url)
    netloc = "%s:%s@%s" % (
        quote(broker["username"], safe=""),
        quote(password, safe=""),
        parts.netloc.rsplit("@", 1)[-1],
    )
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def broker_url_without_password(url: str) -> str:
    """The URL with its password removed (for child processes' command lines)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = "%s@%s" % (parts.username, parts.netloc.rsplit("@", 1)[-1])
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def make_client(broker: dict, client_id: str, cls=mqtt.Client, **kwargs) -> mqtt.Client:
    """A paho client for ``broker`` (a ``parse_broker_url`` result), credentials set."""
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
    if broker["username"]:
        client.username_pw_set(broker["username"], broker["password"])
    return client
