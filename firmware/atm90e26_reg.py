"""ATM90E26 register map, power-on defaults, status bits and magic values.

Source: Atmel-46002 datasheet and Atmel-46102 app note as summarised in
shared/REFERENCES.md; ESPHome's ``atm90e26_reg.h`` keeps the same layout.
Shared by the driver (firmware/atm90e26.py) and the register-level emulator
(emulator/atm90e26_model.py).

SPI frame: 24 clocks with CS low, MSB first, mode 3:
  bit 23 R/W (1 = read), bits 22..16 address, bits 15..0 data.

Scaling (chip units -> engineering units):
  Urms 0.01 V/LSB; Irms 1 mA/LSB; Pmean/Qmean two's complement 1 W (var)/LSB;
  Smean 1 VA/LSB; Freq 0.01 Hz/LSB (0x1388 = 50.00 Hz); PowerF sign-magnitude
  0.001/LSB (0x83E8 = -1.000); Pangle sign-magnitude 0.1 deg/LSB.
  Energy registers: 1 LSB = 0.1 CF pulse, clear on read, 0xFFFF wraps to 0;
  Wh = count * 100 / MC (MC = meter constant, imp/kWh).
"""

from micropython import const

# --- status and special registers ---
SOFTRESET = const(0x00)  # write SOFTRESET_CODE to reset the chip
SYSSTATUS = const(0x01)  # system status; reading clears it
FUNCEN = const(0x02)  # function enable (sag, reverse-direction interrupts)
SAGTH = const(0x03)  # voltage sag threshold
SMALLPMOD = const(0x04)  # small-power mode (0xA987 enables)
LASTSPIDATA = const(0x06)  # echo of the last value read or written
LSB = const(0x08)  # low 16 bits of the last RMS/power reading

# --- metering calibration (checked by CS1) ---
CALSTART = const(0x20)
PLCONSTH = const(0x21)  # PL constant, high word (takes effect when PLCONSTL is written)
PLCONSTL = const(0x22)  # PL constant, low word
LGAIN = const(0x23)  # L-line energy gain, two's complement: gain = 1 + Lgain / 2**15
LPHI = const(0x24)  # L-line phase compensation, sign-magnitude (bit 15 sign, bits 9..0)
NGAIN = const(0x25)  # N-line energy gain
NPHI = const(0x26)  # N-line phase compensation
PSTARTTH = const(0x27)  # active startup power threshold
PNOLTH = const(0x28)  # active no-load power threshold
QSTARTTH = const(0x29)  # reactive startup power threshold
QNOLTH = const(0x2A)  # reactive no-load power threshold
MMODE = const(0x2B)  # metering mode (PGA gains, L/N selection, pulse modes)
CS1 = const(0x2C)  # checksum over 0x21..0x2B

# --- measurement calibration (checked by CS2) ---
ADJSTART = const(0x30)
UGAIN = const(0x31)  # voltage rms gain
IGAINL = const(0x32)  # L-line current rms gain
IGAINN = const(0x33)  # N-line current rms gain
UOFFSET = const(0x34)
IOFFSETL = const(0x35)
IOFFSETN = const(0x36)
POFFSETL = const(0x37)  # L-line active power offset
QOFFSETL = const(0x38)  # L-line reactive power offset
POFFSETN = const(0x39)
QOFFSETN = const(0x3A)
CS2 = const(0x3B)  # checksum over 0x31..0x3A

# --- energy registers (clear on read, 0.1 pulse per LSB) ---
APENERGY = const(0x40)  # forward (import) active
ANENERGY = const(0x41)  # reverse (export) active
ATENERGY = const(0x42)  # absolute active (forward + reverse)
RPENERGY = const(0x43)  # forward reactive
RNENERGY = const(0x44)  # reverse reactive
RTENERGY = const(0x45)  # absolute reactive
ENSTATUS = const(0x46)  # metering status

# --- L-line measurements ---
IRMS = const(0x48)  # 1 mA/LSB
URMS = const(0x49)  # 0.01 V/LSB
PMEAN = const(0x4A)  # W, two's complement
QMEAN = const(0x4B)  # var, two's complement
FREQ = const(0x4C)  # 0.01 Hz/LSB
POWERF = const(0x4D)  # 0.001/LSB, sign-magnitude
PANGLE = const(0x4E)  # 0.1 deg/LSB, sign-magnitude
SMEAN = const(0x4F)  # VA

# --- N-line measurements ---
IRMS2 = const(0x68)
PMEAN2 = const(0x6A)
QMEAN2 = const(0x6B)
POWERF2 = const(0x6D)
PANGLE2 = const(0x6E)
SMEAN2 = const(0x6F)

# --- frame layout ---
READ_BIT = const(0x80)  # first byte: R/W bit (1 = read) | 7-bit address
ADDR_MASK = const(0x7F)
WORD_MASK = const(0xFFFF)
SIGN_BIT = const(0x8000)  # sign of two's complement and sign-magnitude words
MAGNITUDE_MASK = const(0x7FFF)

# --- magic values ---
SOFTRESET_CODE = const(0x789A)  # written to SOFTRESET
START_CODE = const(0x5678)  # CalStart/AdjStart: calibration in progress (resets the block)
CHECK_CODE = const(0x8765)  # CalStart/AdjStart: check the block against CS1/CS2
POWERON_START = const(0x6886)  # CalStart/AdjStart power-on value
SMALLPMOD_CODE = const(0xA987)
RESET_WAIT_MS = const(5)  # wait after power-on or soft reset

# --- power-on defaults (others are 0) ---
DEF_FUNCEN = const(0x000C)
DEF_SAGTH = const(0x1D6A)
DEF_PLCONSTH = const(0x0015)
DEF_PLCONSTL = const(0xD174)
DEF_PSTARTTH = const(0x08BD)
DEF_QSTARTTH = const(0x0AEC)
DEF_MMODE = const(0x9422)
DEF_UGAIN = const(0x6720)
DEF_IGAINL = const(0x7A13)
DEF_IGAINN = const(0x7530)
DEF_ENSTATUS = const(0xC800)

# --- SysStatus (0x01) bits ---
SYS_CALERR = const(0xC000)  # CS1 mismatch: metering stopped
SYS_ADJERR = const(0x3000)  # CS2 mismatch: measurement registers frozen
SYS_LNCHANGE = const(0x0080)  # metering line changed L <-> N
SYS_REVQCHG = const(0x0040)  # reactive direction changed
SYS_REVPCHG = const(0x0020)  # active direction changed
SYS_SAGWARN = const(0x0002)  # voltage sag

# --- EnStatus (0x46) bits ---
EN_QNOLOAD = const(0x8000)  # reactive power below the no-load threshold
EN_PNOLOAD = const(0x4000)  # active power below the no-load threshold
EN_REVQ = const(0x2000)  # reactive energy flows in reverse
EN_REVP = const(0x1000)  # active energy flows in reverse
EN_LLINE = const(0x0800)  # metering the L line (anti-tamper picked L)
EN_LNMODE = const(0x0003)  # L/N metering mode from MMode

# --- PL constant: int(PL_K * GL * VL * VU / (MC * Un * Ib)) (mV units) ---
PL_K = const(838860800)
DEF_GL = const(24)  # L-line PGA gain
DEF_VL = const(1)
DEF_VU = const(250)  # voltage channel signal at Un, mV

# --- energy units ---
LSB_PER_PULSE = const(10)  # 1 energy LSB = 0.1 CF pulse
WH_PER_KWH_TENTHS = const(100)  # Wh = count * 100 / MC  (1000 Wh/kWh / 10 LSB/pulse)
MAX_COUNT = const(0xFFFF)  # at MC 3200 that is 2048 Wh between polls

# --- calibration register scales used by the helpers ---
LGAIN_ONE = const(0x8000)  # energy gain = 1 + Lgain / LGAIN_ONE
LPHI_MAX = const(0x03FF)  # magnitude bits of Lphi/Nphi
LPHI_LSB_PER_DEG = 3763.74  # Lphi LSBs per degree of compensation (unverified)
