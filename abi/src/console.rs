//! The console: fd 0 reads it through a line discipline, fds 1 and 2
//! write to it (the serial port and the screen).

/// `console_mode` argument: cooked lines (echo, editing, Ctrl-C, Ctrl-D).
pub const MODE_COOKED: u64 = 0;
/// `console_mode` argument: raw bytes, no echo, no editing.
pub const MODE_RAW: u64 = 1;

/// `console_set_foreground` argument meaning no foreground process: Ctrl-C
/// then only drops the line being typed (and interrupts a waiting read).
pub const NO_FOREGROUND: u64 = 0;
