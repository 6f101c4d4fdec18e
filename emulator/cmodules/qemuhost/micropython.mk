# User C module of the qemu-arm emulator runtime (make firmware-arm: USER_C_MODULES=emulator/cmodules)
QEMUHOST_MOD_DIR := $(USERMOD_DIR)
SRC_USERMOD_C += $(QEMUHOST_MOD_DIR)/qemuhost.c
