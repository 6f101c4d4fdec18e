"""Ingest: verifying one MQTT message into batch rows (``verify``, ``fast``), the MQTT service
that commits batches before acknowledging them (``service``, ``headend serve``), their SQL
(``store``, ``store_quarantine``) and the commands (``cli``: serve, readings, stats)."""
