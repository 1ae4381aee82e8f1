//! Naming the frames of the backtraces a boot log holds.
//!
//! The kernel prints one line per frame: `BACKTRACE kernel #N ADDRESS`
//! from its panic handler, `BACKTRACE user PROGRAM #N ADDRESS` for a user
//! program killed by a CPU exception (the line may carry the logger's
//! prefix before it). [`annotate`] puts after each such line the
//! function and `file:line` of the address, found in the DWARF of the
//! kernel ELF or of `target/user/.../PROGRAM` with the `addr2line` crate.
//! A user program's frame #0 is where it was (the faulting instruction);
//! every other frame is a return address, so the address looked up is one
//! before, inside the call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use addr2line::Loader;

/// Whose address a frame is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Space {
    Kernel,
    /// A user program, by its initrd name.
    User(String),
}

/// One parsed `BACKTRACE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub space: Space,
    pub depth: u32,
    pub address: u64,
}

impl Frame {
    /// The address to look up: inside the call for a return address.
    /// Every kernel frame is one (the walk starts in the panic handler);
    /// a user frame #0 is the faulting instruction itself.
    pub fn probe(&self) -> u64 {
        if self.depth == 0 && self.space != Space::Kernel {
            self.address
        } else {
            self.address.saturating_sub(1)
        }
    }
}

/// The frame a log line reports, if it is a `BACKTRACE` line.
pub fn parse_frame(line: &str) -> Option<Frame> {
    let (_, rest) = line.split_once("BACKTRACE ")?;
    let mut words = rest.split_whitespace();
    let space = match words.next()? {
        "kernel" => Space::Kernel,
        "user" => Space::User(words.next()?.to_string()),
        _ => return None,
    };
    let depth = words.next()?.strip_prefix('#')?.parse().ok()?;
    let address = u64::from_str_radix(words.next()?.strip_prefix("0x")?, 16).ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(Frame {
        space,
        depth,
        address,
    })
}

/// `log` with, after every `BACKTRACE` line, one line per function
/// `resolve` names for its frame (innermost inlined function first):
/// `    at FUNCTION (FILE:LINE)`. Lines without a frame, and frames
/// `resolve` knows nothing about, are kept as they are. Only complete
/// lines are annotated; an unfinished last line is copied.
pub fn annotate(log: &str, mut resolve: impl FnMut(&Frame) -> Vec<String>) -> String {
    let mut out = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(end) = rest.find('\n') {
        let line = &rest[..end];
        out.push_str(line);
        out.push('\n');
        if let Some(frame) = parse_frame(line) {
            for name in resolve(&frame) {
                out.push_str("    at ");
                out.push_str(&name);
                out.push('\n');
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Resolves frames from the ELF files of one build.
pub struct Symbolizer {
    kernel: PathBuf,
    programs: PathBuf,
    /// The workspace root, cut from the front of file names.
    root: PathBuf,
    loaders: HashMap<Space, Option<Loader>>,
}

impl Symbolizer {
    /// A symbolizer for the kernel ELF `kernel` and the user programs in
    /// `programs` (one ELF per program name).
    pub fn new(kernel: &Path, programs: &Path, root: &Path) -> Symbolizer {
        Symbolizer {
            kernel: kernel.to_path_buf(),
            programs: programs.to_path_buf(),
            root: root.to_path_buf(),
            loaders: HashMap::new(),
        }
    }

    /// The functions at `frame`, innermost first, each with its source
    /// location; empty if the ELF or its debug information is missing.
    pub fn resolve(&mut self, frame: &Frame) -> Vec<String> {
        let loader = self.loaders.entry(frame.space.clone()).or_insert_with(|| {
            let path = match &frame.space {
                Space::Kernel => self.kernel.clone(),
                Space::User(name) => self.programs.join(name),
            };
            Loader::new(&path).ok()
        });
        let Some(loader) = loader else {
            return Vec::new();
        };
        let mut names = Vec::new();
        if let Ok(mut frames) = loader.find_frames(frame.probe()) {
            while let Ok(Some(f)) = frames.next() {
                let function = f
                    .function
                    .as_ref()
                    .and_then(|name| name.demangle().ok())
                    .map_or_else(|| "??".to_string(), |name| strip_hash(&name).to_string());
                let place = f.location.map_or_else(
                    || "?".to_string(),
                    |loc| {
                        let file = loc.file.unwrap_or("?");
                        let file = Path::new(file)
                            .strip_prefix(&self.root)
                            .map_or_else(|_| file.to_string(), |p| p.display().to_string());
                        format!("{file}:{}", loc.line.unwrap_or(0))
                    },
                );
                names.push(format!("{function} ({place})"));
            }
        }
        if names.is_empty() {
            if let Some(symbol) = loader.find_symbol(frame.probe()) {
                let demangled = addr2line::demangle_auto(symbol.into(), None);
                names.push(format!("{} (no line information)", strip_hash(&demangled)));
            }
        }
        names
    }

    /// [`annotate`] with this symbolizer.
    pub fn annotate(&mut self, log: &str) -> String {
        annotate(log, |frame| self.resolve(frame))
    }
}

/// A demangled Rust name without its `::h0123456789abcdef` hash.
fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_parsed_from_log_lines() {
        assert_eq!(
            parse_frame("BACKTRACE kernel #0 0xffffffff80012345"),
            Some(Frame {
                space: Space::Kernel,
                depth: 0,
                address: 0xffff_ffff_8001_2345
            })
        );
        assert_eq!(
            parse_frame("[WARN ] BACKTRACE user crash #3 0x401a2c"),
            Some(Frame {
                space: Space::User("crash".into()),
                depth: 3,
                address: 0x401a2c
            })
        );
        for bad in [
            "BACKTRACE",
            "BACKTRACE kernel 0x1",
            "BACKTRACE kernel #x 0x1",
            "BACKTRACE kernel #1 123",
            "BACKTRACE nobody #1 0x1",
            "BACKTRACE user #1 0x1",
            "BACKTRACE kernel #1 0x1 trailing",
            "process 5 killed: page fault",
        ] {
            assert_eq!(parse_frame(bad), None, "{bad}");
        }
    }

    #[test]
    fn return_addresses_are_looked_up_inside_the_call() {
        let frame = |space, depth| Frame {
            space,
            depth,
            address: 0x1000,
        };
        assert_eq!(frame(Space::User("a".into()), 0).probe(), 0x1000);
        assert_eq!(frame(Space::User("a".into()), 1).probe(), 0xfff);
        assert_eq!(frame(Space::Kernel, 0).probe(), 0xfff);
    }

    #[test]
    fn annotations_follow_their_frame_lines() {
        let log = "boot\nBACKTRACE kernel #0 0x10\nBACKTRACE user sh #1 0x20\nunfinished BACKTRACE kernel #2 0x30";
        let annotated = annotate(log, |frame| match frame.address {
            0x10 => vec!["inner (a.rs:1)".into(), "outer (a.rs:9)".into()],
            _ => vec![],
        });
        assert_eq!(
            annotated,
            "boot\nBACKTRACE kernel #0 0x10\n    at inner (a.rs:1)\n    at outer (a.rs:9)\n\
             BACKTRACE user sh #1 0x20\nunfinished BACKTRACE kernel #2 0x30"
        );
    }

    #[test]
    fn hashes_are_cut_from_names() {
        assert_eq!(
            strip_hash("kernel::main::h0123456789abcdef"),
            "kernel::main"
        );
        assert_eq!(strip_hash("kernel::main"), "kernel::main");
        assert_eq!(strip_hash("a::hello"), "a::hello");
    }

    #[test]
    fn a_missing_elf_gives_nothing() {
        let mut s = Symbolizer::new(
            Path::new("/nonexistent/k"),
            Path::new("/nonexistent"),
            Path::new("/"),
        );
        let frame = Frame {
            space: Space::User("x".into()),
            depth: 0,
            address: 0x401000,
        };
        assert!(s.resolve(&frame).is_empty());
    }
}
