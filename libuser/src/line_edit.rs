//! Line editing with history, as pure logic (tested on the host): the
//! editor takes the bytes a terminal sends in raw mode, one at a time, and
//! answers with the bytes to echo and, at the end of a line, the line.
//!
//! Keys understood (what a VT100/xterm sends, over the serial port or from
//! the kernel's keyboard driver):
//! - printable characters (UTF-8) are inserted at the cursor;
//! - Backspace (`0x7f` or `^H`) deletes before the cursor, Delete
//!   (`ESC [ 3 ~`) and `^D` on a non-empty line at it;
//! - Left/Right (`ESC [ D` / `ESC [ C`, also `ESC O D`/`C`, `^B`/`^F`)
//!   move, Home/End (`ESC [ H`/`F`, `ESC [ 1 ~`/`4 ~`, `^A`/`^E`) jump;
//! - Up/Down (`ESC [ A` / `ESC [ B`) walk the history; the line being
//!   typed comes back after the newest entry;
//! - `^U` deletes to the start, `^K` to the end of the line;
//! - `^C` abandons the line ([`Event::Interrupt`]), `^D` on an empty line
//!   is end of input ([`Event::Eof`]);
//! - Enter (`\r` or `\n`; `\r\n` counts once) ends the line.
//!
//! The echo assumes one column per character and a cursor that the
//! terminal moves with `ESC [ n D` (left), as every VT100 does.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// What a byte completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing yet: keep feeding.
    Pending,
    /// Enter: the line, without its end.
    Line(String),
    /// `^D` on an empty line.
    Eof,
    /// `^C`: the line was abandoned.
    Interrupt,
}

/// Where the editor is in an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After `ESC`.
    Start,
    /// After `ESC [` with the number so far.
    Csi(u16),
    /// After `ESC O`.
    Ss3,
}

/// A line editor with a history of the lines it returned.
#[derive(Debug)]
pub struct LineEditor {
    line: Vec<char>,
    cursor: usize,
    history: VecDeque<String>,
    history_max: usize,
    /// Which history entry is shown (`None`: the line being typed).
    browsing: Option<usize>,
    /// The line being typed, kept while the history is browsed.
    typed: Vec<char>,
    escape: Escape,
    /// Bytes of a UTF-8 character not yet complete.
    utf8: [u8; 4],
    utf8_len: usize,
    /// The last byte was `\r` (a following `\n` is the same Enter).
    after_cr: bool,
}

impl LineEditor {
    /// An editor that keeps the last `history_max` lines.
    pub fn new(history_max: usize) -> Self {
        LineEditor {
            line: Vec::new(),
            cursor: 0,
            history: VecDeque::new(),
            history_max,
            browsing: None,
            typed: Vec::new(),
            escape: Escape::None,
            utf8: [0; 4],
            utf8_len: 0,
            after_cr: false,
        }
    }

    /// The line as typed so far.
    pub fn line(&self) -> String {
        self.line.iter().collect()
    }

    /// The cursor's position in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The history, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.iter().map(String::as_str)
    }

    /// Adds `line` to the history (not if blank or the same as the newest).
    pub fn remember(&mut self, line: &str) {
        if line.trim().is_empty() || self.history.back().is_some_and(|last| last == line) {
            return;
        }
        if self.history.len() == self.history_max {
            self.history.pop_front();
        }
        if self.history_max > 0 {
            self.history.push_back(String::from(line));
        }
    }

    /// Takes one byte from the terminal; appends what to echo to `out`.
    pub fn feed(&mut self, byte: u8, out: &mut Vec<u8>) -> Event {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::None => {}
            Escape::Start => {
                self.escape = match byte {
                    b'[' => Escape::Csi(0),
                    b'O' => Escape::Ss3,
                    _ => Escape::None,
                };
                return Event::Pending;
            }
            Escape::Csi(n) => {
                match byte {
                    b'0'..=b'9' => {
                        let n = n.saturating_mul(10).saturating_add(u16::from(byte - b'0'));
                        self.escape = Escape::Csi(n);
                        return Event::Pending;
                    }
                    // Parameters we do not use (`ESC [ 1 ; 5 C`): keep going.
                    b';' => return Event::Pending,
                    _ => {
                        self.escape = Escape::None;
                        self.key(byte, n, out);
                        return Event::Pending;
                    }
                }
            }
            Escape::Ss3 => {
                self.escape = Escape::None;
                self.key(byte, 0, out);
                return Event::Pending;
            }
        }
        match byte {
            0x1b => self.escape = Escape::Start,
            b'\r' | b'\n' => {
                if byte == b'\n' && after_cr {
                    return Event::Pending;
                }
                self.after_cr = byte == b'\r';
                out.extend_from_slice(b"\r\n");
                let line = self.line();
                self.reset();
                return Event::Line(line);
            }
            0x03 => {
                out.extend_from_slice(b"^C\r\n");
                self.reset();
                return Event::Interrupt;
            }
            0x04 => {
                if self.line.is_empty() {
                    self.reset();
                    return Event::Eof;
                }
                self.edit(out, |e| {
                    if e.cursor < e.line.len() {
                        e.line.remove(e.cursor);
                    }
                });
            }
            0x7f | 0x08 => self.edit(out, |e| {
                if e.cursor > 0 {
                    e.cursor -= 1;
                    e.line.remove(e.cursor);
                }
            }),
            0x01 => self.edit(out, |e| e.cursor = 0),
            0x05 => self.edit(out, |e| e.cursor = e.line.len()),
            0x02 => self.edit(out, |e| e.cursor = e.cursor.saturating_sub(1)),
            0x06 => self.edit(out, |e| e.cursor = (e.cursor + 1).min(e.line.len())),
            0x15 => self.edit(out, |e| {
                e.line.drain(..e.cursor);
                e.cursor = 0;
            }),
            0x0b => self.edit(out, |e| e.line.truncate(e.cursor)),
            0x00..=0x1f => {}
            0x20..=0x7e => self.insert(byte as char, out),
            _ => self.utf8_byte(byte, out),
        }
        Event::Pending
    }

    /// The end of an escape sequence: `final_byte` with parameter `n`.
    fn key(&mut self, final_byte: u8, n: u16, out: &mut Vec<u8>) {
        match (final_byte, n) {
            (b'A', _) => self.history_step(true, out),
            (b'B', _) => self.history_step(false, out),
            (b'C', _) => self.edit(out, |e| e.cursor = (e.cursor + 1).min(e.line.len())),
            (b'D', _) => self.edit(out, |e| e.cursor = e.cursor.saturating_sub(1)),
            (b'H', _) | (b'~', 1 | 7) => self.edit(out, |e| e.cursor = 0),
            (b'F', _) | (b'~', 4 | 8) => self.edit(out, |e| e.cursor = e.line.len()),
            (b'~', 3) => self.edit(out, |e| {
                if e.cursor < e.line.len() {
                    e.line.remove(e.cursor);
                }
            }),
            _ => {}
        }
    }

    fn utf8_byte(&mut self, byte: u8, out: &mut Vec<u8>) {
        if self.utf8_len == self.utf8.len() {
            self.utf8_len = 0;
        }
        self.utf8[self.utf8_len] = byte;
        self.utf8_len += 1;
        match core::str::from_utf8(&self.utf8[..self.utf8_len]) {
            Ok(s) => {
                let c = s.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                self.utf8_len = 0;
                self.insert(c, out);
            }
            Err(e) if e.error_len().is_some() => self.utf8_len = 0,
            Err(_) => {}
        }
    }

    fn insert(&mut self, c: char, out: &mut Vec<u8>) {
        self.edit(out, |e| {
            e.line.insert(e.cursor, c);
            e.cursor += 1;
        });
    }

    fn history_step(&mut self, older: bool, out: &mut Vec<u8>) {
        let len = self.history.len();
        let next = match (self.browsing, older) {
            (None, true) if len > 0 => Some(len - 1),
            (None, _) => return,
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < len => Some(i + 1),
            (Some(_), false) => None,
        };
        self.edit(out, |e| {
            if e.browsing.is_none() {
                e.typed = core::mem::take(&mut e.line);
            }
            e.line = match next {
                Some(i) => e.history[i].chars().collect(),
                None => core::mem::take(&mut e.typed),
            };
            e.browsing = next;
            e.cursor = e.line.len();
        });
    }

    /// Applies `change`, then redraws the line: back to its start, the
    /// whole line, clear to the end of the screen line, back to the cursor.
    fn edit(&mut self, out: &mut Vec<u8>, change: impl FnOnce(&mut Self)) {
        let before_line = self.line.clone();
        let before_cursor = self.cursor;
        change(self);
        if self.line == before_line {
            // Only the cursor moved.
            move_cursor(out, before_cursor, self.cursor);
            return;
        }
        // Redraw from the first character that changed.
        let same = before_line
            .iter()
            .zip(&self.line)
            .take_while(|(a, b)| a == b)
            .count();
        move_cursor(out, before_cursor, same);
        let mut utf8 = [0u8; 4];
        for c in &self.line[same..] {
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        if before_line.len() > self.line.len() {
            out.extend_from_slice(b"\x1b[K");
        }
        move_cursor(out, self.line.len(), self.cursor);
    }

    fn reset(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.browsing = None;
        self.typed.clear();
        self.escape = Escape::None;
        self.utf8_len = 0;
    }
}

/// Moves the terminal's cursor from column `from` to `to` of the line.
fn move_cursor(out: &mut Vec<u8>, from: usize, to: usize) {
    use core::fmt::Write;
    let mut text = String::new();
    if to < from {
        let _ = write!(text, "\x1b[{}D", from - to);
    } else if to > from {
        let _ = write!(text, "\x1b[{}C", to - from);
    }
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// Feeds `input`; returns every event that was not `Pending` and the
    /// echo.
    fn type_in(editor: &mut LineEditor, input: &[u8]) -> (Vec<Event>, Vec<u8>) {
        let mut out = Vec::new();
        let events = input
            .iter()
            .map(|&b| editor.feed(b, &mut out))
            .filter(|e| *e != Event::Pending)
            .collect();
        (events, out)
    }

    fn line(s: &str) -> Event {
        Event::Line(s.to_string())
    }

    #[test]
    fn typing_and_enter() {
        let mut e = LineEditor::new(10);
        let (events, out) = type_in(&mut e, b"ls -l\r");
        assert_eq!(events, [line("ls -l")]);
        assert_eq!(out, b"ls -l\r\n");
        // \r\n is one Enter; a lone \n is one too.
        let (events, _) = type_in(&mut e, b"a\r\nb\n\n");
        assert_eq!(events, [line("a"), line("b"), line("")]);
    }

    #[test]
    fn backspace_and_cursor_keys_edit_in_the_middle() {
        let mut e = LineEditor::new(10);
        let (_, out) = type_in(&mut e, b"ct\x1b[Da");
        assert_eq!(e.line(), "cat");
        assert_eq!(e.cursor(), 2);
        // The left arrow moved back one; `a` redrew "at" and stepped back.
        assert_eq!(out, b"ct\x1b[1Dat\x1b[1D");
        let (_, out) = type_in(&mut e, b"\x7f");
        assert_eq!(e.line(), "ct");
        assert_eq!(out, b"\x1b[1Dt\x1b[K\x1b[1D");
        type_in(&mut e, b"\x1b[Hx\x1b[F!\x08");
        assert_eq!(e.line(), "xct");
        type_in(&mut e, b"\x01\x1b[3~");
        assert_eq!(e.line(), "ct");
        type_in(&mut e, b"\x05\x02\x02\x04");
        assert_eq!(e.line(), "t");
        // Backspace at the start and Delete at the end do nothing.
        type_in(&mut e, b"\x01\x7f\x05\x1b[3~");
        assert_eq!(e.line(), "t");
        // SS3 arrows (application cursor mode) and unknown sequences.
        type_in(&mut e, b"\x1bODu\x1b[1;5C\x1b[9~\x1bx");
        assert_eq!(e.line(), "ut");
    }

    #[test]
    fn kill_keys() {
        let mut e = LineEditor::new(10);
        type_in(&mut e, b"hello world\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x15");
        assert_eq!(e.line(), "world");
        assert_eq!(e.cursor(), 0);
        type_in(&mut e, b"\x1b[C\x1b[C\x0b");
        assert_eq!(e.line(), "wo");
    }

    #[test]
    fn control_c_and_control_d() {
        let mut e = LineEditor::new(10);
        let (events, out) = type_in(&mut e, b"spin\x03");
        assert_eq!(events, [Event::Interrupt]);
        assert_eq!(out, b"spin^C\r\n");
        assert_eq!(e.line(), "");
        let (events, _) = type_in(&mut e, b"\x04");
        assert_eq!(events, [Event::Eof]);
        // ^D with text deletes at the cursor instead.
        let (events, _) = type_in(&mut e, b"ab\x01\x04\r");
        assert_eq!(events, [line("b")]);
    }

    #[test]
    fn history_walks_back_and_returns_to_the_typed_line() {
        let mut e = LineEditor::new(2);
        for l in ["one", "two", "two", " ", "three"] {
            e.remember(l);
        }
        assert_eq!(e.history().collect::<Vec<_>>(), ["two", "three"]);
        type_in(&mut e, b"draft");
        type_in(&mut e, b"\x1b[A");
        assert_eq!(e.line(), "three");
        type_in(&mut e, b"\x1b[A\x1b[A");
        assert_eq!(e.line(), "two");
        type_in(&mut e, b"\x1b[B");
        assert_eq!(e.line(), "three");
        type_in(&mut e, b"\x1b[B");
        assert_eq!(e.line(), "draft");
        type_in(&mut e, b"\x1b[B");
        assert_eq!(e.line(), "draft");
        // An entry can be edited and sent.
        let (events, _) = type_in(&mut e, b"\x1b[A\x7f\x7f\x7f\x7f\x7fecho\r");
        assert_eq!(events, [line("echo")]);
        // The new line starts fresh, not browsing.
        type_in(&mut e, b"\x1b[B");
        assert_eq!(e.line(), "");
    }

    #[test]
    fn utf8_is_one_character() {
        let mut e = LineEditor::new(1);
        type_in(&mut e, "héé".as_bytes());
        type_in(&mut e, b"\x7f");
        assert_eq!(e.line(), "hé");
        assert_eq!(e.cursor(), 2);
        // An invalid sequence is dropped.
        type_in(&mut e, b"\xff!");
        assert_eq!(e.line(), "hé!");
    }
}
