// qemuhost: the qemu-arm emulator runtime's view of its host, over Arm semihosting
// (qemu-system-arm -semihosting). Built into MicroPython's qemu port by make firmware-arm
// (tools/build_qemu_arm.py, USER_C_MODULES=emulator/cmodules).
//
//   qemuhost.open(path, mode) -> handle   SYS_OPEN of a host file (mode: semihosting's 0..11,
//                                         e.g. 3 = "r+b"); OSError when it cannot be opened
//   qemuhost.pread(handle, pos, buf)      SYS_SEEK + SYS_READ of len(buf) bytes at pos; OSError if short
//   qemuhost.pwrite(handle, pos, buf)     SYS_SEEK + SYS_WRITE of buf at pos; returns once the host's
//                                         write() did (then a kill of qemu cannot lose it); OSError if short
//   qemuhost.close(handle)
//   qemuhost.uart_readinto(buf)           fill buf from the board's UART0 (the bench link's input),
//                                         waiting asleep (WFI) for each byte; returns len(buf)
//   qemuhost.log(text)                    text to qemu's stderr (the semihosting console)
//   qemuhost.exit(code)                   SYS_EXIT: qemu exits, status 0 for code 0, else 1
//
// It also supplies mp_hal_time_ns(), which littlefs (MICROPY_VFS_LFS2) needs and the
// port lacks; the board has no RTC, so it is 0 (the firmware passes mtime=False anyway).

#include <stdint.h>
#include <string.h>

#include "py/runtime.h"
#include "py/mperrno.h"

#define SYS_OPEN   (0x01)
#define SYS_CLOSE  (0x02)
#define SYS_WRITE0 (0x04)
#define SYS_WRITE  (0x05)
#define SYS_READ   (0x06)
#define SYS_SEEK   (0x0A)
#define SYS_EXIT   (0x18)
#define ADP_STOPPED_APPLICATION_EXIT (0x20026)
#define ADP_STOPPED_RUNTIME_ERROR (0x20023)

uint64_t mp_hal_time_ns(void) {
    return 0;
}

static uint32_t semihost(uint32_t num, const void *arg) {
    register uint32_t r0 __asm__ ("r0") = num;
    register const void *r1 __asm__ ("r1") = arg;
    __asm__ __volatile__ ("bkpt 0xAB" : "+r" (r0) : "r" (r1) : "memory");
    return r0;
}

static mp_obj_t qemuhost_open(mp_obj_t path_in, mp_obj_t mode_in) {
    size_t len;
    const char *path = mp_obj_str_get_data(path_in, &len);
    uint32_t args[3] = { (uint32_t)path, (uint32_t)mp_obj_get_int(mode_in), (uint32_t)len };
    int32_t h = (int32_t)semihost(SYS_OPEN, args);
    if (h < 0) {
        mp_raise_OSError(MP_ENOENT);
    }
    return MP_OBJ_NEW_SMALL_INT(h);
}
static MP_DEFINE_CONST_FUN_OBJ_2(qemuhost_open_obj, qemuhost_open);

static void seek(mp_obj_t h, mp_obj_t pos) {
    uint32_t args[2] = { (uint32_t)mp_obj_get_int(h), (uint32_t)mp_obj_get_int(pos) };
    if (semihost(SYS_SEEK, args) != 0) {
        mp_raise_OSError(MP_EIO);
    }
}

static mp_obj_t qemuhost_pread(mp_obj_t h, mp_obj_t pos, mp_obj_t buf_in) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(buf_in, &buf, MP_BUFFER_WRITE);
    seek(h, pos);
    uint32_t args[3] = { (uint32_t)mp_obj_get_int(h), (uint32_t)buf.buf, (uint32_t)buf.len };
    if (semihost(SYS_READ, args) != 0) {  // the number of bytes NOT read
        mp_raise_OSError(MP_EIO);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(qemuhost_pread_obj, qemuhost_pread);

static mp_obj_t qemuhost_pwrite(mp_obj_t h, mp_obj_t pos, mp_obj_t buf_in) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(buf_in, &buf, MP_BUFFER_READ);
    seek(h, pos);
    uint32_t args[3] = { (uint32_t)mp_obj_get_int(h), (uint32_t)buf.buf, (uint32_t)buf.len };
    if (semihost(SYS_WRITE, args) != 0) {  // the number of bytes NOT written
        mp_raise_OSError(MP_EIO);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(qemuhost_pwrite_obj, qemuhost_pwrite);

static mp_obj_t qemuhost_close(mp_obj_t h) {
    uint32_t args[1] = { (uint32_t)mp_obj_get_int(h) };
    semihost(SYS_CLOSE, args);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(qemuhost_close_obj, qemuhost_close);

static mp_obj_t qemuhost_log(mp_obj_t text_in) {
    size_t len;
    const char *text = mp_obj_str_get_data(text_in, &len);
    char chunk[65];
    while (len) {  // SYS_WRITE0 writes a NUL-terminated string
        size_t n = len < sizeof(chunk) - 1 ? len : sizeof(chunk) - 1;
        memcpy(chunk, text, n);
        chunk[n] = 0;
        semihost(SYS_WRITE0, chunk);
        text += n;
        len -= n;
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(qemuhost_log_obj, qemuhost_log);

static mp_obj_t qemuhost_exit(mp_obj_t code) {
    uint32_t reason = mp_obj_get_int(code) == 0 ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUNTIME_ERROR;
    semihost(SYS_EXIT, (void *)reason);
    for (;;) {
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(qemuhost_exit_obj, qemuhost_exit);

// The MPS2 board's UART0 (CMSDK APB UART): qemu's stdin/stdout
#define UART0_DATA (*(volatile uint32_t *)0x40004000)
#define UART0_STATE (*(volatile uint32_t *)0x40004004)
#define UART0_CTRL (*(volatile uint32_t *)0x40004008)
#define UART0_INTSTATUS (*(volatile uint32_t *)0x4000400C)
#define UART_STATE_RXFULL (1 << 1)
#define UART_CTRL_RX_INTEN (1 << 3)
#define UART_INT_RX (1 << 1)
#define UART0_RX_IRQ (0)
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100)
#define NVIC_ICER0 (*(volatile uint32_t *)0xE000E180)
#define NVIC_ICPR0 (*(volatile uint32_t *)0xE000E280)

// Fill buf from UART0, waiting for each byte asleep (WFI), not spinning: a spinning vCPU keeps a
// host core busy and contends for qemu's global lock with the I/O thread that feeds the UART one
// byte at a time, which made the link 3x slower. The RX interrupt is enabled in the UART and the
// NVIC only to wake WFI: interrupts stay masked (PRIMASK) while waiting, so the port's vector table
// (no external interrupt entries) is never used; between waits PRIMASK is dropped for an instant
// so a pending SysTick (the port's ticks_ms) runs.
static mp_obj_t qemuhost_uart_readinto(mp_obj_t buf_in) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(buf_in, &buf, MP_BUFFER_WRITE);
    uint8_t *p = buf.buf;
    __asm__ __volatile__ ("cpsid i" ::: "memory");
    UART0_CTRL |= UART_CTRL_RX_INTEN;
    NVIC_ISER0 = 1 << UART0_RX_IRQ;
    for (size_t i = 0; i < buf.len; ++i) {
        while (!(UART0_STATE & UART_STATE_RXFULL)) {
            __asm__ __volatile__ ("wfi" ::: "memory");
            // disabled in the NVIC while PRIMASK drops: a byte arriving now must not be taken
            NVIC_ICER0 = 1 << UART0_RX_IRQ;
            UART0_INTSTATUS = UART_INT_RX;
            NVIC_ICPR0 = 1 << UART0_RX_IRQ;
            __asm__ __volatile__ ("cpsie i\n isb\n cpsid i" ::: "memory");
            NVIC_ISER0 = 1 << UART0_RX_IRQ;  // pending again if a byte came meanwhile: WFI returns at once
        }
        p[i] = UART0_DATA;
    }
    NVIC_ICER0 = 1 << UART0_RX_IRQ;
    UART0_CTRL &= ~UART_CTRL_RX_INTEN;
    UART0_INTSTATUS = UART_INT_RX;
    NVIC_ICPR0 = 1 << UART0_RX_IRQ;
    __asm__ __volatile__ ("cpsie i" ::: "memory");
    return MP_OBJ_NEW_SMALL_INT(buf.len);
}
static MP_DEFINE_CONST_FUN_OBJ_1(qemuhost_uart_readinto_obj, qemuhost_uart_readinto);

static const mp_rom_map_elem_t qemuhost_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_uart_readinto), MP_ROM_PTR(&qemuhost_uart_readinto_obj) },
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_qemuhost) },
    { MP_ROM_QSTR(MP_QSTR_open), MP_ROM_PTR(&qemuhost_open_obj) },
    { MP_ROM_QSTR(MP_QSTR_pread), MP_ROM_PTR(&qemuhost_pread_obj) },
    { MP_ROM_QSTR(MP_QSTR_pwrite), MP_ROM_PTR(&qemuhost_pwrite_obj) },
    { MP_ROM_QSTR(MP_QSTR_close), MP_ROM_PTR(&qemuhost_close_obj) },
    { MP_ROM_QSTR(MP_QSTR_log), MP_ROM_PTR(&qemuhost_log_obj) },
    { MP_ROM_QSTR(MP_QSTR_exit), MP_ROM_PTR(&qemuhost_exit_obj) },
};
static MP_DEFINE_CONST_DICT(qemuhost_globals, qemuhost_globals_table);

const mp_obj_module_t qemuhost_module = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&qemuhost_globals,
};
MP_REGISTER_MODULE(MP_QSTR_qemuhost, qemuhost_module);
