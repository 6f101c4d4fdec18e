"""The head-end's MQTT edges, shared: broker URLs and paho clients (``serve``, ``dispatch``, ``console``).

``parse_broker_url("mqtt://USER:PASS@HOST:PORT")`` -> {host, port, username, password}
(``ServiceError`` naming the URL when it is not one); ``make_client(broker, client_id, ...)``
is a paho-mqtt 2 client (callback API version 2) with the URL's credentials set, of class
``cls`` (ingest passes its chunked-read subclass) with paho's keyword arguments passed on.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from headend.errors import ServiceError


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


def make_client(broker: dict, client_id: str, cls=mqtt.Client, **kwargs) -> mqtt.Client:
    """A paho client for ``broker`` (a ``parse_broker_url`` result), credentials set."""
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
    if broker["username"]:
        client.username_pw_set(broker["username"], broker["password"])
    return client
