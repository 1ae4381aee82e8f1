//! The COM1 serial port (16550 UART at I/O port 0x3f8): the kernel console.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

/// A polled COM1 writer. Construct with [`SerialPort::init`] once at boot;
/// after that [`SerialPort::new`] is free (the port keeps its settings).
pub struct SerialPort {
    data: Port<u8>,
    line_status: Port<u8>,
}

impl SerialPort {
    /// A handle on COM1 without touching its configuration.
    pub const fn new() -> Self {
        Self {
            data: Port::new(COM1),
            line_status: Port::new(COM1 + 5),
        }
    }

    /// Programs COM1 for 115200 baud, 8N1, FIFOs on.
    pub fn init() -> Self {
        let settings: [(u16, u8); 7] = [
            (1, 0x00), // interrupts off
            (3, 0x80), // DLAB on
            (0, 0x01), // divisor low: 115200
            (1, 0x00), // divisor high
            (3, 0x03), // 8N1, DLAB off
            (2, 0xC7), // FIFO on, cleared, 14-byte threshold
            (4, 0x0B), // DTR, RTS, OUT2
        ];
        for (offset, value) in settings {
            let mut port = Port::<u8>::new(COM1 + offset);
            // SAFETY: COM1's registers are owned by this driver; writing its
            // configuration has no effect on memory.
            unsafe { port.write(value) };
        }
        Self::new()
    }

    /// Sends one byte, waiting for the transmitter.
    pub fn send(&mut self, byte: u8) {
        // SAFETY: reading the line status and writing the data register of
        // COM1 only affects the UART.
        unsafe {
            while self.line_status.read() & 0x20 == 0 {
                core::hint::spin_loop();
            }
            self.data.write(byte);
        }
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
