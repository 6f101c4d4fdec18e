"""Tests start brokers through tools/mosquitto_broker.py (shared with the demo)."""

from tools.mosquitto_broker import MosquittoBroker, find_mosquitto, free_port

__all__ = ["MosquittoBroker", "find_mosquitto", "free_port"]
