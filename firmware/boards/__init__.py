"""Board files: each builds the HAL objects of firmware/hal.py for one target (unix = the emulator)."""
