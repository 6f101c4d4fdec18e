"""RP2040 board (e.g. Raspberry Pi Pico): ATM90E26 on SPI(0) (SCK GP18, MOSI GP19, MISO GP16,
CS GP17) or direct ADC on GP26/GP27 (12-bit, 0..3.3 V); relay on GP15.

The RP2040 watchdog allows at most 8388 ms (firmware.app uses 8000). Its RTC
has no battery: after a power cut the meter continues from the persisted
clock until a time sync (firmware/boards/mcu.py). main.py on the board:

    from firmware.boards import rp2040
    rp2040.main()
"""

from firmware.boards import mcu

ADC_PINS = (26, 27, 28)


class Rp2040Board(mcu.McuBoard):
    name = "rp2040"
    SPI_ID = 0
    PINS = {"sck": 18, "mosi": 19, "miso": 16, "cs": 17, "relay": 15, "v_adc": 26, "i_adc": 27}

    def make_adc(self, pin):
        if pin not in ADC_PINS:
            raise ValueError("RP2040 ADC pin %r: use GP26, GP27 or GP28" % (pin,))
        return super().make_adc(pin)


def main(flash_dir="/flash"):
    mcu.run_board(Rp2040Board(flash_dir))
