//! Console output: the `print!` family over fds 1 and 2.
//!
//! Each macro call formats into a small buffer on the stack and issues one
//! `write` per line (or per full buffer), so a line from one process is not
//! split by output from another.

use crate::sys;
use core::fmt::{self, Write};

/// A line-buffered writer to one file descriptor; flushes on drop.
pub struct Console {
    fd: u64,
    buf: [u8; 256],
    len: usize,
}

impl Console {
    /// A writer to `fd` with an empty buffer.
    pub const fn new(fd: u64) -> Self {
        Console {
            fd,
            buf: [0; 256],
            len: 0,
        }
    }

    /// The descriptor it writes to.
    pub fn fd(&self) -> u64 {
        self.fd
    }

    /// Writes out whatever is buffered. Errors are dropped: there is nowhere
    /// left to report them.
    pub fn flush(&mut self) {
        let _ = sys::write_all(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while !rest.is_empty() {
            let n = rest.len().min(self.buf.len() - self.len);
            let (chunk, tail) = rest.split_at(n);
            self.buf[self.len..self.len + n].copy_from_slice(chunk);
            self.len += n;
            rest = tail;
            if self.len == self.buf.len() || chunk.contains(&b'\n') {
                self.flush();
            }
        }
        Ok(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.len > 0 {
            self.flush();
        }
    }
}

/// Formats `args` to `fd`. Used by the macros.
pub fn print_to(fd: u64, args: fmt::Arguments<'_>) {
    let _ = Console::new(fd).write_fmt(args);
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    print_to(abi::fd::STDOUT, args);
}

#[doc(hidden)]
pub fn _eprint(args: fmt::Arguments<'_>) {
    print_to(abi::fd::STDERR, args);
}

/// Prints to standard output (fd 1).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to standard output (fd 1).
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints to standard error (fd 2).
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::console::_eprint(format_args!($($arg)*)) };
}

/// Prints a line to standard error (fd 2).
#[macro_export]
macro_rules! eprintln {
    () => { $crate::console::_eprint(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::console::_eprint(format_args!("{}\n", format_args!($($arg)*)))
    };
}
