"""The head-end's MQTT edges, shared: broker URLs and paho clients (``serve``, ``dispatch``, ``console``).

``parse_broker_url("mqtt://USER:PASS@HOST:PORT")`` -> {host, port, username, password}
(``ServiceError`` naming the URL when it is not one); ``check_service_client_id(id)``: a head-end
client id must be one no meter can have; ``make_client(broker, client_id, ...)``
is a paho-mqtt 2 client (callback API version 2) with the URL's credentials set, of class
``cls`` (ingest passes its chunked-read subclass) with paho's keyword arguments passed on.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

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


def make_client(broker: dict, client_id: str, cls=mqtt.Client, **kwargs) -> mqtt.Client:
    """A paho client for ``broker`` (a ``parse_broker_url`` result), credentials set."""
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
    if broker["username"]:
        client.username_pw_set(broker["username"], broker["password"])
    return client
