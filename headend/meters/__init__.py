"""Meters: registering them (``provision``: keys, broker passwords, the broker's config; ``fleet``:
many at once with their boards' config.json), their SQL (``store``) and their commands
(``cli``: meter add/list/provision, broker-config)."""
