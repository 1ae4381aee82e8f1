//! The kernel console's output behind the `log` facade: every line goes to
//! COM1 (when there is one) and to the screen (when the boot loader set up
//! a framebuffer), the screen's coloured by level. Raw printing for places
//! that must not wait on locks (panics, faults).

use crate::arch::framebuffer;
use crate::arch::serial::SerialPort;
use core::fmt::Write;
use kernel_core::console::text::{Rgb, PALETTE};
use spin::Mutex;

static CONSOLE: Mutex<Option<SerialPort>> = Mutex::new(None);

struct KernelLogger;

impl log::Log for KernelLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                log::Level::Error => "ERROR",
                log::Level::Warn => "WARN ",
                log::Level::Info => "INFO ",
                log::Level::Debug => "DEBUG",
                log::Level::Trace => "TRACE",
            };
            let colour = level_colour(record.level());
            print_coloured(colour, format_args!("[{level}] {}\n", record.args()));
        }
    }

    fn flush(&self) {}
}

/// The screen colour of a log level: errors bright red, warnings yellow,
/// information in the default colour, debugging grey.
fn level_colour(level: log::Level) -> Option<Rgb> {
    match level {
        log::Level::Error => Some(PALETTE[9]),
        log::Level::Warn => Some(PALETTE[11]),
        log::Level::Info => None,
        log::Level::Debug | log::Level::Trace => Some(PALETTE[8]),
    }
}

static LOGGER: KernelLogger = KernelLogger;

/// Looks for COM1 and installs the logger at `Info` until the boot
/// parameters say otherwise.
pub fn init() {
    // No UART at COM1: the console is the screen alone (or nothing).
    *CONSOLE.lock() = SerialPort::init();
    // A second call can only fail because a logger is set already: ignore.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Whether COM1 carries the console.
pub fn has_serial() -> bool {
    SerialPort::present()
}

/// Formats into a fixed buffer, then hands it on in pieces (no heap: the
/// logger runs before the heap and in interrupt handlers).
struct Chunked<F: FnMut(&[u8])> {
    buf: [u8; 256],
    len: usize,
    flush: F,
}

impl<F: FnMut(&[u8])> Write for Chunked<F> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                (self.flush)(&self.buf);
                self.len = 0;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Formats `args` onto both outputs (the screen in `colour`), holding the
/// console for the whole text so that lines from several CPUs do not
/// interleave, with interrupts off so an interrupt handler cannot
/// deadlock on it.
pub fn print_coloured(colour: Option<Rgb>, args: core::fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut serial = CONSOLE.lock();
        let mut out = Chunked {
            buf: [0; 256],
            len: 0,
            flush: |bytes: &[u8]| write_both(&mut serial, colour, bytes),
        };
        let _ = out.write_fmt(args);
        let len = out.len;
        (out.flush)(&out.buf[..len]);
    });
}

/// To the serial port, `\n` as CRLF, and to the screen.
fn write_both(serial: &mut Option<SerialPort>, colour: Option<Rgb>, bytes: &[u8]) {
    if let Some(port) = serial.as_mut() {
        for &b in bytes {
            if b == b'\n' {
                port.send(b'\r');
            }
            port.send(b);
        }
    }
    framebuffer::write(colour, bytes);
}

/// Writes raw bytes (user output, echo) to the console.
pub fn write_bytes(bytes: &[u8]) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        write_both(&mut CONSOLE.lock(), None, bytes);
    });
}

/// Printing for the panic path: takes the serial port even if a
/// panicking holder never released it, and the screen if it is free.
pub fn emergency_print(args: core::fmt::Arguments) {
    let mut port = SerialPort::new();
    let _ = port.write_fmt(args);
    let mut screen = Chunked {
        buf: [0; 256],
        len: 0,
        flush: |bytes: &[u8]| framebuffer::emergency_write(Some(PALETTE[9]), bytes),
    };
    let _ = screen.write_fmt(args);
    let len = screen.len;
    (screen.flush)(&screen.buf[..len]);
}

/// `print!` to the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::logger::print_coloured(None, format_args!($($arg)*)) };
}
