//! The shell's view of the console: raw mode for its own line editing,
//! cooked mode while a program runs, and which process Ctrl-C stops.
//!
//! Everything that depends on the kernel console's calls is in this file:
//! `console_mode` (1010) switches fd 0 between the kernel's cooked line
//! discipline and raw bytes, `console_set_foreground` (1011) names the
//! process the kernel kills on Ctrl-C. Without them (a kernel whose
//! console has no input mode) the shell reads the cooked lines as they
//! come, with no history.

use alloc::string::String;
use alloc::vec::Vec;
use libuser::line_edit::{Event, LineEditor};
use libuser::{print, sys, Errno};

/// What reading a command line gave.
pub enum Input {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// End of input (Ctrl-D, or fd 0 at end of file).
    Eof,
}

/// The console as the shell uses it.
pub struct Terminal {
    editor: LineEditor,
    /// Whether the console accepted raw mode.
    raw: bool,
    /// Bytes read after the end of the last line (typed ahead).
    pending: Vec<u8>,
}

impl Terminal {
    pub fn new() -> Self {
        Terminal {
            editor: LineEditor::new(100),
            raw: false,
            pending: Vec::new(),
        }
    }

    /// Prints `prompt` and reads one line.
    pub fn read_line(&mut self, prompt: &str) -> Result<Input, Errno> {
        self.raw = set_raw(true).is_ok();
        print!("{prompt}");
        let input = if self.raw {
            self.read_edited()
        } else {
            self.read_cooked()
        };
        if self.raw {
            let _ = set_raw(false);
        }
        if let Ok(Input::Line(line)) = &input {
            self.editor.remember(line);
        }
        input
    }

    /// Feeds the editor, first with what was typed ahead of the last line,
    /// then with what fd 0 gives; bytes after this line are kept for the
    /// next one.
    fn read_edited(&mut self) -> Result<Input, Errno> {
        let mut echo = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            if self.pending.is_empty() {
                let n = sys::read(abi::fd::STDIN, &mut buf)?;
                if n == 0 {
                    return Ok(Input::Eof);
                }
                self.pending.extend_from_slice(&buf[..n]);
            }
            let mut used = 0;
            let mut done = None;
            for &byte in &self.pending {
                used += 1;
                let event = self.editor.feed(byte, &mut echo);
                match event {
                    Event::Pending => continue,
                    Event::Line(line) => done = Some(Input::Line(line)),
                    Event::Eof => done = Some(Input::Eof),
                    Event::Interrupt => done = Some(Input::Interrupted),
                }
                break;
            }
            self.pending.drain(..used);
            if !echo.is_empty() {
                sys::write_all(abi::fd::STDOUT, &echo)?;
                echo.clear();
            }
            if let Some(input) = done {
                return Ok(input);
            }
        }
    }

    /// A line from the kernel's cooked line discipline (which echoes and
    /// edits); end of file without a line is `Eof`.
    fn read_cooked(&mut self) -> Result<Input, Errno> {
        let mut buf = [0u8; 256];
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]).into_owned();
                return Ok(Input::Line(line));
            }
            let n = sys::read(abi::fd::STDIN, &mut buf)?;
            if n == 0 {
                if self.pending.is_empty() {
                    return Ok(Input::Eof);
                }
                // A last line without its newline.
                let line = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return Ok(Input::Line(line));
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }
}

/// Switches fd 0 to raw bytes (`true`) or back to cooked lines.
fn set_raw(on: bool) -> Result<(), Errno> {
    let mode = if on {
        abi::console::MODE_RAW
    } else {
        abi::console::MODE_COOKED
    };
    sys::console_mode(mode).map(drop)
}

/// Names the process Ctrl-C stops ([`abi::console::NO_FOREGROUND`]:
/// none). A refusal only means Ctrl-C will not reach it; it is reported.
pub fn set_foreground(pid: u64) {
    if let Err(e) = sys::console_set_foreground(pid) {
        libuser::eprintln!("sh: cannot hand the console to {pid}: {e}");
    }
}
