"""ESP32 board: ATM90E26 on SPI(2) (VSPI: SCK 18, MOSI 23, MISO 19, CS 5) or direct ADC on ADC1.

ADC1 only (GPIO 32..39): ADC2 cannot be read while Wi-Fi runs. Inputs get
11 dB attenuation (full range ~0..3.1 V). Relay on GPIO 26. Pins can be
changed in config "pins" (firmware/boards/mcu.py). main.py on the board:

    from firmware.boards import esp32
    esp32.main()
"""

import machine

from firmware.boards import mcu

ADC1_PINS = (32, 33, 34, 35, 36, 37, 38, 39)


class Esp32Board(mcu.McuBoard):
    name = "esp32"
    SPI_ID = 2
    PINS = {"sck": 18, "mosi": 23, "miso": 19, "cs": 5, "relay": 26, "v_adc": 34, "i_adc": 35}

    def make_adc(self, pin):
        if pin not in ADC1_PINS:
            raise ValueError("ESP32 ADC pin %r: use ADC1, GPIO 32..39 (ADC2 is unusable with Wi-Fi)" % (pin,))
        adc = machine.ADC(machine.Pin(pin))
        adc.atten(machine.ADC.ATTN_11DB)
        return adc


def main(flash_dir="/flash"):
    mcu.run_board(Esp32Board(flash_dir))
