"""Head-end: ingest, storage, VEE, billing, prepaid, commands, alerts."""

__version__ = "0.1.0"
