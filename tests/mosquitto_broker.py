"""Tests start brokers through tools/mosquitto_broker.py (shared with the demo)."""

from tools.mosquitto_broker import MosquittoBroker, broker_tmpdir, find_mosquitto, free_port, free_ports

__all__ = ["MosquittoBroker", "broker_tmpdir", "find_mosquitto", "free_port", "free_ports"]
