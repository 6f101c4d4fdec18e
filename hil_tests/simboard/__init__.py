"""The simulated board: the firmware on the MicroPython unix port behind a raw REPL, reachable as
``socket://127.0.0.1:PORT``, so the board target can be exercised without hardware (simboard/server.py)."""
