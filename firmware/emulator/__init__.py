"""Emulated hardware for the unix board and tests: register-level chip models."""
