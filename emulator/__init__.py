"""Host-only side of the meter emulator: never deployed to a board (firmware/manifest.py lists what is).

MicroPython, in the emulator's firmware process (frozen into build/micropython-unix32 by
emulator/manifest.py): ``main`` (``micropython -m emulator.main``), ``unix_board`` (the
unix board over ``bench_link``, the binary link to the CPython test bench) and
``bench_setup`` (tariff and opening balance for a test run; the HIL agent uploads it).
Chip models, run by the CPython bench (tools/emulate_bench.py) and by the dual tests:
``atm90e26_model`` (register-level ATM90E26), ``adc_model`` (sampled ADC front end).
"""
