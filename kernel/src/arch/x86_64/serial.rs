//! The COM1 serial port (16550 UART at I/O port 0x3f8): half of the kernel
//! console (the screen is the other half).
//!
//! A machine may have no UART there (`qemu -serial none`, most laptops):
//! [`SerialPort::init`] looks for it with the scratch register and a
//! loopback test and reports whether it answered; every wait on the line
//! status register is bounded, and a transmitter that never becomes ready
//! marks the port dead, so that the console never hangs on it.

use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;
/// The ISA IRQ of COM1.
pub const COM1_IRQ: u8 = 4;

const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
const SCRATCH: u16 = 7;

const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
/// Line-status reads before a byte is given up: far longer than one byte
/// takes at 115200 baud (87 us), short enough not to stall a boot.
const SEND_SPINS: u32 = 100_000;

/// Whether COM1 answered at boot and has not stopped transmitting since.
static PRESENT: AtomicBool = AtomicBool::new(false);

fn read(offset: u16) -> u8 {
    // SAFETY: COM1's registers are owned by this driver; reading them only
    // affects the UART (reading DATA takes a received byte).
    unsafe { Port::<u8>::new(COM1 + offset).read() }
}

fn write(offset: u16, value: u8) {
    // SAFETY: as in `read`: writes only configure or feed the UART.
    unsafe { Port::<u8>::new(COM1 + offset).write(value) }
}

/// A polled COM1 writer. Construct with [`SerialPort::init`] once at boot;
/// after that [`SerialPort::new`] is free (the port keeps its settings).
/// Writing to an absent port does nothing.
pub struct SerialPort(());

impl SerialPort {
    /// A handle on COM1 without touching its configuration.
    pub const fn new() -> Self {
        Self(())
    }

    /// Looks for COM1 and programs it for 115200 baud, 8N1, FIFOs on,
    /// receive interrupt off. `None` if no UART answers.
    pub fn init() -> Option<Self> {
        // The scratch register holds what is written to it on a 16450 or
        // later; nothing at the port (floating bus) reads back 0xff.
        write(SCRATCH, 0xA5);
        if read(SCRATCH) != 0xA5 {
            return None;
        }
        let settings: [(u16, u8); 6] = [
            (INTERRUPT_ENABLE, 0x00),
            (LINE_CONTROL, 0x80),     // DLAB on
            (DATA, 0x01),             // divisor low: 115200
            (INTERRUPT_ENABLE, 0x00), // divisor high
            (LINE_CONTROL, 0x03),     // 8N1, DLAB off
            (FIFO_CONTROL, 0xC7),     // FIFO on, cleared, 14-byte threshold
        ];
        for (offset, value) in settings {
            write(offset, value);
        }
        // Loopback: a byte sent must come back (bytes from the other end
        // that arrived meanwhile are skipped).
        write(MODEM_CONTROL, 0x1E);
        write(DATA, 0xAE);
        let mut echoed = false;
        for _ in 0..SEND_SPINS {
            if read(LINE_STATUS) & LSR_DATA_READY != 0 && read(DATA) == 0xAE {
                echoed = true;
                break;
            }
            core::hint::spin_loop();
        }
        // DTR, RTS, OUT2 (which gates the interrupt line on a PC), no loopback.
        write(MODEM_CONTROL, 0x0B);
        if !echoed {
            return None;
        }
        PRESENT.store(true, Ordering::Release);
        Some(Self::new())
    }

    /// Whether COM1 is there and working.
    pub fn present() -> bool {
        PRESENT.load(Ordering::Acquire)
    }

    /// Sends one byte, waiting (boundedly) for the transmitter.
    pub fn send(&mut self, byte: u8) {
        if !Self::present() {
            return;
        }
        for _ in 0..SEND_SPINS {
            if read(LINE_STATUS) & LSR_THR_EMPTY != 0 {
                write(DATA, byte);
                return;
            }
            core::hint::spin_loop();
        }
        // A transmitter that never empties: stop using the port rather
        // than stall every line of output.
        PRESENT.store(false, Ordering::Release);
    }

    /// Raises COM1's interrupt when a byte arrives (received data
    /// available), once a handler is routed to its IRQ.
    pub fn enable_receive_interrupt(&mut self) {
        if Self::present() {
            write(INTERRUPT_ENABLE, 0x01);
        }
    }

    /// A received byte, if one is waiting.
    pub fn try_receive(&mut self) -> Option<u8> {
        if Self::present() && read(LINE_STATUS) & LSR_DATA_READY != 0 {
            Some(read(DATA))
        } else {
            None
        }
    }
}

impl Default for SerialPort {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Write for SerialPort {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.send(b'\r');
            }
            self.send(byte);
        }
        Ok(())
    }
}
