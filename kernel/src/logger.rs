//! The serial console behind the `log` facade, and raw printing for places
//! that must not take locks (panics, faults).

use crate::arch::serial::SerialPort;
use core::fmt::Write;
use spin::Mutex;

static CONSOLE: Mutex<Option<SerialPort>> = Mutex::new(None);

struct SerialLogger;

impl log::Log for SerialLogger {
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
            print_fmt(format_args!("[{level}] {}\n", record.args()));
        }
    }

    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

/// Brings up COM1 and installs the logger at `Info` until the boot
/// parameters say otherwise.
pub fn init() {
    // No UART at COM1: the console is the screen alone (or nothing).
    *CONSOLE.lock() = SerialPort::init();
    // A second call can only fail because a logger is set already: ignore.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes formatted text to the console, with interrupts off while the
/// console is held so an interrupt handler cannot deadlock on it.
pub fn print_fmt(args: core::fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        if let Some(port) = CONSOLE.lock().as_mut() {
            let _ = port.write_fmt(args);
        }
    });
}

/// Writes raw bytes (user output) to the console.
pub fn write_bytes(bytes: &[u8]) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        if let Some(port) = CONSOLE.lock().as_mut() {
            for &b in bytes {
                if b == b'\n' {
                    port.send(b'\r');
                }
                port.send(b);
            }
        }
    });
}

/// Printing for the panic path: takes the console even if a panicking
/// holder never released it.
pub fn emergency_print(args: core::fmt::Arguments) {
    let mut port = SerialPort::new();
    let _ = port.write_fmt(args);
}

/// `print!` to the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::logger::print_fmt(format_args!($($arg)*)) };
}
