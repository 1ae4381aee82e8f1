//! The console's line discipline: what a terminal does between the keys
//! typed and the bytes a program reads from fd 0.
//!
//! Cooked mode (the default) edits a line before anyone reads it: bytes
//! are echoed, backspace (BS or DEL) erases the last byte, Ctrl-U the
//! whole line, Enter (CR or LF) ends it with `\n`, Ctrl-D ends it without
//! one (on an empty line that is end of file: the read returns 0), and
//! Ctrl-C drops the line and reports an interrupt. A read returns at most
//! one line. Raw mode passes every byte through at once, unechoed and
//! unedited, and a read returns whatever bytes are there.
//!
//! Everything has a fixed size and nothing allocates, because input
//! arrives in interrupt handlers. Input that does not fit is dropped (a
//! line longer than [`LINE_MAX`], a queue of unread input longer than
//! [`QUEUE_MAX`]), as a terminal drops what it cannot buffer.

/// Longest line being edited; further bytes (but Enter) are dropped.
pub const LINE_MAX: usize = 256;
/// Most items (bytes and line ends without a byte) waiting to be read.
pub const QUEUE_MAX: usize = 2048;

const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const BACKSPACE: u8 = 0x08;
const CTRL_U: u8 = 0x15;
const DELETE: u8 = 0x7f;
/// In the queue: the end of a line that has no byte of its own (Ctrl-D).
/// Met by a read that has copied nothing, it is end of file.
const DELIMITER: u16 = 0x100;

/// How input is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Cooked,
    Raw,
}

impl Mode {
    /// The `console_mode` syscall's number for this mode.
    pub fn value(self) -> u64 {
        match self {
            Mode::Cooked => abi::console::MODE_COOKED,
            Mode::Raw => abi::console::MODE_RAW,
        }
    }

    /// The mode a `console_mode` argument names.
    pub fn from_value(value: u64) -> Option<Mode> {
        match value {
            abi::console::MODE_COOKED => Some(Mode::Cooked),
            abi::console::MODE_RAW => Some(Mode::Raw),
            _ => None,
        }
    }
}

/// What one input byte did, besides the echo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Something became readable: wake the readers.
    pub readable: bool,
    /// Ctrl-C in cooked mode: interrupt the foreground program.
    pub interrupt: bool,
}

/// A line discipline: the line being edited and the input ready to read.
pub struct LineDiscipline {
    mode: Mode,
    line: [u8; LINE_MAX],
    line_len: usize,
    queue: [u16; QUEUE_MAX],
    head: usize,
    len: usize,
    dropped: u64,
}

impl Default for LineDiscipline {
    fn default() -> Self {
        Self::new()
    }
}

impl LineDiscipline {
    pub const fn new() -> Self {
        Self {
            mode: Mode::Cooked,
            line: [0; LINE_MAX],
            line_len: 0,
            queue: [0; QUEUE_MAX],
            head: 0,
            len: 0,
            dropped: 0,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Switches mode and returns the previous one. Going raw, a half-edited
    /// line becomes readable as it is (nothing typed is lost); going
    /// cooked, bytes already queued stay readable.
    pub fn set_mode(&mut self, mode: Mode) -> Mode {
        let old = self.mode;
        if old == Mode::Cooked && mode == Mode::Raw {
            self.commit_line(false);
        }
        self.mode = mode;
        old
    }

    /// Bytes dropped because a buffer was full, since boot.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether a read would return now (data or end of file).
    pub fn readable(&self) -> bool {
        match self.mode {
            Mode::Cooked => self.len > 0,
            Mode::Raw => (0..self.len).any(|i| self.at(i) != DELIMITER),
        }
    }

    /// Processes one input byte; `echo` receives what the terminal shows.
    pub fn input(&mut self, byte: u8, echo: &mut impl FnMut(&[u8])) -> Effect {
        if self.mode == Mode::Raw {
            let readable = self.push(u16::from(byte));
            return Effect {
                readable,
                interrupt: false,
            };
        }
        match byte {
            b'\r' | b'\n' => {
                // The newline goes in even if the line is full.
                self.line_len = self.line_len.min(LINE_MAX - 1);
                self.line[self.line_len] = b'\n';
                self.line_len += 1;
                echo(b"\n");
                Effect {
                    readable: self.commit_line(false),
                    interrupt: false,
                }
            }
            BACKSPACE | DELETE => {
                if self.line_len > 0 {
                    self.line_len -= 1;
                    echo(b"\x08 \x08");
                }
                Effect::default()
            }
            CTRL_U => {
                while self.line_len > 0 {
                    self.line_len -= 1;
                    echo(b"\x08 \x08");
                }
                Effect::default()
            }
            CTRL_D => Effect {
                readable: self.commit_line(true),
                interrupt: false,
            },
            CTRL_C => {
                self.line_len = 0;
                // Typed-ahead input goes too, as with Linux's default
                // (no NOFLSH): it was meant for what is interrupted.
                self.len = 0;
                echo(b"^C\n");
                Effect {
                    readable: false,
                    interrupt: true,
                }
            }
            b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                if self.line_len < LINE_MAX - 1 {
                    self.line[self.line_len] = byte;
                    self.line_len += 1;
                    echo(&[byte]);
                } else {
                    self.dropped += 1;
                }
                Effect::default()
            }
            // Other control bytes (escape sequences of arrow keys among
            // them) mean nothing to a cooked line.
            _ => Effect::default(),
        }
    }

    /// Moves the edited line into the queue, followed by a delimiter if
    /// `delimit` (Ctrl-D). Returns whether anything was queued.
    fn commit_line(&mut self, delimit: bool) -> bool {
        let needed = self.line_len + usize::from(delimit);
        if self.len + needed > QUEUE_MAX {
            self.dropped += needed as u64;
            self.line_len = 0;
            return false;
        }
        for i in 0..self.line_len {
            self.push(u16::from(self.line[i]));
        }
        if delimit {
            self.push(DELIMITER);
        }
        self.line_len = 0;
        needed > 0
    }

    fn push(&mut self, item: u16) -> bool {
        if self.len == QUEUE_MAX {
            self.dropped += 1;
            return false;
        }
        self.queue[(self.head + self.len) % QUEUE_MAX] = item;
        self.len += 1;
        true
    }

    fn at(&self, i: usize) -> u16 {
        self.queue[(self.head + i) % QUEUE_MAX]
    }

    fn pop(&mut self) {
        self.head = (self.head + 1) % QUEUE_MAX;
        self.len -= 1;
    }

    /// Reads into `buf`: `None` if a reader must wait, else the byte count
    /// (0 for end of file in cooked mode, or for an empty `buf`). Cooked, it
    /// returns at most one line; raw, whatever bytes are queued.
    pub fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        if !self.readable() {
            return None;
        }
        if buf.is_empty() {
            return Some(0);
        }
        let mut n = 0;
        while n < buf.len() && self.len > 0 {
            let item = self.at(0);
            self.pop();
            if item == DELIMITER {
                if self.mode == Mode::Cooked {
                    // End of a Ctrl-D line, or end of file if nothing came.
                    return Some(n);
                }
                continue;
            }
            buf[n] = item as u8;
            n += 1;
            if self.mode == Mode::Cooked && item == u16::from(b'\n') {
                return Some(n);
            }
        }
        // A full buffer right before a Ctrl-D delimiter takes it too, so
        // that the next read does not see a false end of file.
        if self.mode == Mode::Cooked && n > 0 && self.len > 0 && self.at(0) == DELIMITER {
            self.pop();
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(ld: &mut LineDiscipline, bytes: &[u8]) -> (Vec<u8>, Effect) {
        let mut echo = Vec::new();
        let mut all = Effect::default();
        for &b in bytes {
            let e = ld.input(b, &mut |s| echo.extend_from_slice(s));
            all.readable |= e.readable;
            all.interrupt |= e.interrupt;
        }
        (echo, all)
    }

    fn read(ld: &mut LineDiscipline, max: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0; max];
        ld.read(&mut buf).map(|n| buf[..n].to_vec())
    }

    #[test]
    fn cooked_lines_wait_for_enter_and_echo() {
        let mut ld = LineDiscipline::new();
        let (echo, effect) = feed(&mut ld, b"ls -l");
        assert_eq!(echo, b"ls -l");
        assert!(!effect.readable);
        assert_eq!(read(&mut ld, 64), None);
        let (echo, effect) = feed(&mut ld, b"\r");
        assert_eq!(echo, b"\n");
        assert!(effect.readable);
        assert_eq!(read(&mut ld, 64).unwrap(), b"ls -l\n");
        assert_eq!(read(&mut ld, 64), None);
    }

    #[test]
    fn a_read_returns_one_line_and_continues_a_long_one() {
        let mut ld = LineDiscipline::new();
        feed(&mut ld, b"first\nsecond\n");
        assert_eq!(read(&mut ld, 3).unwrap(), b"fir");
        assert_eq!(read(&mut ld, 64).unwrap(), b"st\n");
        assert_eq!(read(&mut ld, 64).unwrap(), b"second\n");
    }

    #[test]
    fn backspace_and_ctrl_u_edit_the_line() {
        let mut ld = LineDiscipline::new();
        let (echo, _) = feed(&mut ld, b"cat\x7f\x08r");
        assert_eq!(echo, b"cat\x08 \x08\x08 \x08r");
        // Backspace on an empty line echoes nothing.
        let (echo, _) = feed(&mut ld, b"\x15\x08");
        assert_eq!(echo, b"\x08 \x08\x08 \x08");
        feed(&mut ld, b"ok\n");
        assert_eq!(read(&mut ld, 64).unwrap(), b"ok\n");
    }

    #[test]
    fn ctrl_d_ends_a_line_or_the_input() {
        let mut ld = LineDiscipline::new();
        let (_, effect) = feed(&mut ld, b"abc\x04");
        assert!(effect.readable);
        assert_eq!(read(&mut ld, 64).unwrap(), b"abc");
        // Not an end of file after a pushed line.
        assert_eq!(read(&mut ld, 64), None);
        feed(&mut ld, b"\x04");
        assert_eq!(read(&mut ld, 64).unwrap(), b"");
        assert_eq!(read(&mut ld, 64), None);
        // A buffer filled exactly at the Ctrl-D takes the delimiter too.
        feed(&mut ld, b"xy\x04");
        assert_eq!(read(&mut ld, 2).unwrap(), b"xy");
        assert_eq!(read(&mut ld, 2), None);
    }

    #[test]
    fn ctrl_c_drops_input_and_interrupts() {
        let mut ld = LineDiscipline::new();
        feed(&mut ld, b"queued\n");
        let (echo, effect) = feed(&mut ld, b"half\x03");
        assert_eq!(echo, b"half^C\n");
        assert!(effect.interrupt);
        assert_eq!(read(&mut ld, 64), None);
    }

    #[test]
    fn raw_mode_passes_bytes_through() {
        let mut ld = LineDiscipline::new();
        feed(&mut ld, b"ab");
        assert_eq!(ld.set_mode(Mode::Raw), Mode::Cooked);
        // The half-typed line is readable at once in raw mode.
        assert_eq!(read(&mut ld, 64).unwrap(), b"ab");
        let (echo, effect) = feed(&mut ld, b"\x03\x7f\x1b[A\r");
        assert!(echo.is_empty());
        assert!(!effect.interrupt);
        assert!(effect.readable);
        assert_eq!(read(&mut ld, 3).unwrap(), b"\x03\x7f\x1b");
        assert_eq!(read(&mut ld, 64).unwrap(), b"[A\r");
        assert_eq!(read(&mut ld, 64), None);
        assert_eq!(ld.set_mode(Mode::Cooked), Mode::Raw);
        feed(&mut ld, b"x\n");
        assert_eq!(read(&mut ld, 64).unwrap(), b"x\n");
    }

    #[test]
    fn full_buffers_drop_input_without_panicking() {
        let mut ld = LineDiscipline::new();
        let long = vec![b'a'; LINE_MAX + 10];
        feed(&mut ld, &long);
        feed(&mut ld, b"\n");
        let line = read(&mut ld, 1024).unwrap();
        assert_eq!(line.len(), LINE_MAX);
        assert_eq!(line.last(), Some(&b'\n'));
        assert!(ld.dropped() >= 10);
        for _ in 0..QUEUE_MAX {
            feed(&mut ld, b"zz\n");
        }
        let mut lines = 0;
        while let Some(l) = read(&mut ld, 8) {
            assert_eq!(l, b"zz\n");
            lines += 1;
        }
        assert_eq!(lines, QUEUE_MAX / 3);
        ld.set_mode(Mode::Raw);
        for b in 0..=255u8 {
            feed(&mut ld, &[b; 16]);
        }
        assert_eq!(read(&mut ld, 8192).unwrap().len(), QUEUE_MAX);
    }

    #[test]
    fn modes_have_syscall_values() {
        for mode in [Mode::Cooked, Mode::Raw] {
            assert_eq!(Mode::from_value(mode.value()), Some(mode));
        }
        assert_eq!(Mode::from_value(7), None);
    }
}
