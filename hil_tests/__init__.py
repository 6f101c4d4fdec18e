"""Hardware-in-the-loop suite: one set of tests, two targets (the emulator, or a real board on --port)."""
