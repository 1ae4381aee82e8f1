//! Driving a boot over its serial port: a scripted session.
//!
//! A configuration with `session = "NAME"` is booted with QEMU's serial
//! port on pipes, and the script `configs/NAME.session` types into it and
//! checks what comes back. The script is data, one step per line:
//!
//! ```text
//! # a comment
//! expect $             wait until the output (after the last match) holds "$ "
//! send echo hi > f     type the line and Enter (`\r`)
//! type ^[[A^M          type without Enter; caret notation: `^[` Escape,
//!                      `^M` Enter, `^?` DEL, `^^` a caret (also in send)
//! ctrl c               type Ctrl-C (0x03); any letter a-z works
//! timeout 30           later `expect`s wait up to 30 s (default 20)
//! end pass             QEMU must then exit with this verdict: pass or fail
//! ```
//!
//! Text after `send ` and `expect ` is taken as written up to the end of
//! the line (trailing blanks included, so `expect $ ` waits for the prompt
//! with its blank). The output is matched with `\r` removed and with the
//! backtrace lines symbolized as they complete (`symbolize.rs`), so an
//! `expect` can name a function of a backtrace. The session fails at the
//! first `expect` that times out or when QEMU ends otherwise than `end`
//! says; the failure shows the end of the transcript. The whole transcript
//! is written to the boot's log.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::qemu::{Machine, Verdict};
use crate::symbolize::Symbolizer;

/// How long an `expect` waits unless `timeout` says otherwise.
pub const DEFAULT_EXPECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of the transcript shown when a session fails.
const TAIL_LINES: usize = 40;

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Type these bytes.
    Send(Vec<u8>),
    /// Wait for this text.
    Expect(String),
    /// From now on, wait this long for each `expect`.
    Timeout(Duration),
    /// QEMU must now exit with this verdict (`true`: pass).
    End { pass: bool },
}

/// A parsed script: its steps with their line numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub steps: Vec<(usize, Step)>,
}

/// Parses the text of a `.session` file; errors name the line.
pub fn parse_script(text: &str) -> Result<Script, String> {
    let mut steps = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_start();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line.trim_end(), ""));
        let step = match word {
            "send" | "type" => {
                let mut bytes =
                    unescape(rest).map_err(|err| format!("line {line_no}: {err}"))?;
                if word == "send" {
                    bytes.push(b'\r');
                }
                Step::Send(bytes)
            }
            "expect" if !rest.is_empty() => Step::Expect(rest.to_string()),
            "ctrl" => match rest.trim().as_bytes() {
                [c @ b'a'..=b'z'] => Step::Send(vec![c - b'a' + 1]),
                _ => return Err(format!("line {line_no}: `ctrl` takes one letter a-z")),
            },
            "timeout" => match rest.trim().parse::<u64>() {
                Ok(seconds) if seconds > 0 => Step::Timeout(Duration::from_secs(seconds)),
                _ => return Err(format!("line {line_no}: `timeout` takes seconds (> 0)")),
            },
            "end" => match rest.trim() {
                "pass" => Step::End { pass: true },
                "fail" => Step::End { pass: false },
                _ => return Err(format!("line {line_no}: `end` takes pass or fail")),
            },
            _ => {
                return Err(format!(
                    "line {line_no}: unknown step `{}` (send, expect TEXT, ctrl LETTER, timeout SECONDS, end pass|fail)",
                    raw.trim()
                ))
            }
        };
        if steps
            .last()
            .is_some_and(|(_, s)| matches!(s, Step::End { .. }))
        {
            return Err(format!("line {line_no}: nothing may follow `end`"));
        }
        steps.push((line_no, step));
    }
    if !steps
        .last()
        .is_some_and(|(_, s)| matches!(s, Step::End { .. }))
    {
        return Err("the script must finish with `end pass` or `end fail`".into());
    }
    Ok(Script { steps })
}

/// `text` with caret notation decoded: `^A`..`^Z`, `^[` (Escape), `^?`
/// (DEL), `^^` (a caret).
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'^' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'^') => out.push(b'^'),
            Some(b'?') => out.push(0x7f),
            Some(c @ b'@'..=b'_') => out.push(c - b'@'),
            Some(c @ b'a'..=b'z') => out.push(c - b'a' + 1),
            _ => return Err(format!("bad caret escape in {text:?}")),
        }
    }
    Ok(out)
}

/// What the guest printed so far, shared with the reader threads.
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    /// Both pipes reached end of file.
    closed: usize,
}

/// The output as the script sees it: `\r` removed, backtraces named.
fn view(bytes: &[u8], symbolizer: &mut Option<Symbolizer>) -> String {
    let text = String::from_utf8_lossy(bytes).replace('\r', "");
    match symbolizer {
        Some(symbolizer) => symbolizer.annotate(&text),
        None => text,
    }
}

/// Finds `needle` in `haystack` at or after `from`; returns the end of
/// the match.
fn find_after(haystack: &str, from: usize, needle: &str) -> Option<usize> {
    let start = haystack.get(from..)?;
    start.find(needle).map(|at| from + at + needle.len())
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Boots `machine`, runs `script` against its serial port, writes the
/// transcript to `log`. `total` bounds the whole session.
pub fn run(
    machine: &Machine,
    script: &Script,
    log: &Path,
    mut symbolizer: Option<Symbolizer>,
    total: Duration,
) -> Result<(), String> {
    let mut cmd = machine.command();
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|err| format!("cannot run QEMU: {err}"))?;
    let shared = Arc::new((Mutex::new(Output::default()), Condvar::new()));
    let mut readers = Vec::new();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for mut pipe in pipes.into_iter().flatten() {
        let shared = Arc::clone(&shared);
        readers.push(thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = pipe.read(&mut buf).unwrap_or(0);
                let (lock, ready) = &*shared;
                let mut out = lock.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    out.closed += 1;
                    ready.notify_all();
                    return;
                }
                out.bytes.extend_from_slice(&buf[..n]);
                ready.notify_all();
            }
        }));
    }
    let stdin = child.stdin.take();
    let result = drive(&mut child, stdin, &shared, script, &mut symbolizer, total);
    // Whatever happened, QEMU goes (the pid is this child's own).
    if !matches!(child.try_wait(), Ok(Some(_))) {
        let _ = child.kill();
        let _ = child.wait();
    }
    for reader in readers {
        let _ = reader.join();
    }
    let transcript = {
        let out = shared.0.lock().unwrap_or_else(|p| p.into_inner());
        view(&out.bytes, &mut symbolizer)
    };
    if let Some(dir) = log.parent() {
        let _ = fs::create_dir_all(dir);
    }
    fs::write(log, &transcript).map_err(|err| format!("cannot write {}: {err}", log.display()))?;
    result.map_err(|reason| {
        format!(
            "{reason}\n---- last {TAIL_LINES} lines of the transcript ----\n{}\n---- end ----",
            tail(&transcript, TAIL_LINES)
        )
    })
}

fn drive(
    child: &mut Child,
    mut stdin: Option<ChildStdin>,
    shared: &(Mutex<Output>, Condvar),
    script: &Script,
    symbolizer: &mut Option<Symbolizer>,
    total: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + total;
    let mut expect_timeout = DEFAULT_EXPECT_TIMEOUT;
    // Where in the viewed output the next `expect` starts looking.
    let mut mark = 0;
    let (lock, ready) = shared;
    for (line_no, step) in &script.steps {
        match step {
            Step::Timeout(t) => expect_timeout = *t,
            Step::Send(bytes) => {
                let pipe = stdin.as_mut().ok_or("QEMU's stdin is closed")?;
                pipe.write_all(bytes)
                    .and_then(|()| pipe.flush())
                    .map_err(|err| format!("line {line_no}: cannot type into QEMU: {err}"))?;
            }
            Step::Expect(text) => {
                let until = (Instant::now() + expect_timeout).min(deadline);
                let mut out = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let seen = view(&out.bytes, symbolizer);
                    if let Some(end) = find_after(&seen, mark, text) {
                        mark = end;
                        break;
                    }
                    let now = Instant::now();
                    if out.closed == 2 {
                        return Err(format!(
                            "line {line_no}: QEMU ended before the output showed {text:?}"
                        ));
                    }
                    if now >= until {
                        return Err(format!(
                            "line {line_no}: {text:?} did not appear within {} s",
                            expect_timeout.as_secs()
                        ));
                    }
                    out = ready
                        .wait_timeout(out, until - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            Step::End { pass } => {
                // Closing stdin is end of input for the guest, as a
                // terminal's Ctrl-D would be; by now it has what it needs.
                drop(stdin.take());
                let verdict = loop {
                    match child.try_wait() {
                        Ok(Some(status)) => break Verdict::from_status(status),
                        Ok(None) if Instant::now() >= deadline => {
                            return Err(format!(
                                "line {line_no}: QEMU still ran after {} s",
                                total.as_secs()
                            ))
                        }
                        Ok(None) => thread::sleep(Duration::from_millis(50)),
                        Err(err) => return Err(format!("cannot wait for QEMU: {err}")),
                    }
                };
                let wanted = if *pass { Verdict::Pass } else { Verdict::Fail };
                if verdict != wanted {
                    return Err(format!(
                        "line {line_no}: the guest ended with {verdict:?}, the script wants {wanted:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse() {
        let script = parse_script(
            "# shell\nexpect $ \n  send echo hi > f\nctrl c\ntimeout 5\n\nsend\ntype ^[[A^^x^?\nend pass\n",
        )
        .unwrap();
        let steps: Vec<Step> = script.steps.into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            steps,
            [
                Step::Expect("$ ".into()),
                Step::Send(b"echo hi > f\r".to_vec()),
                Step::Send(vec![3]),
                Step::Timeout(Duration::from_secs(5)),
                Step::Send(b"\r".to_vec()),
                Step::Send(b"\x1b[A^x\x7f".to_vec()),
                Step::End { pass: true },
            ]
        );
    }

    #[test]
    fn bad_scripts_name_the_line() {
        for (text, wanted) in [
            ("send a\n", "must finish with"),
            ("jump\nend pass\n", "line 1: unknown step"),
            ("ctrl 3\nend pass", "line 1: `ctrl`"),
            ("timeout 0\nend pass", "line 1: `timeout`"),
            ("end maybe", "line 1: `end`"),
            ("end pass\nsend x\n", "line 2: nothing may follow"),
            ("expect\nend pass", "line 1: unknown step"),
            ("type ^1\nend pass", "line 1: bad caret"),
        ] {
            let err = parse_script(text).unwrap_err();
            assert!(err.contains(wanted), "{text:?}: {err}");
        }
    }

    #[test]
    fn matches_move_forward() {
        let out = "$ echo a\na\n$ echo a\na\n$ ";
        let first = find_after(out, 0, "a\n").unwrap();
        assert_eq!(first, 9);
        let second = find_after(out, first, "a\n").unwrap();
        assert!(second > first);
        assert_eq!(find_after(out, out.len(), "$ "), None);
        assert_eq!(find_after(out, out.len() - 2, "$ "), Some(out.len()));
        assert_eq!(find_after(out, 1000, "x"), None);
    }

    #[test]
    fn the_view_drops_carriage_returns() {
        assert_eq!(view(b"a\r\nb\r\n", &mut None), "a\nb\n");
        assert_eq!(tail("1\n2\n3\n", 2), "2\n3");
    }
}
