//! Reading the initrd: a cpio archive in the "newc" format.
//!
//! Each entry is a 110-byte header (the magic `070701` and thirteen 8-digit
//! ASCII hex fields), the name (`namesize` bytes including a final NUL),
//! padding to a multiple of 4, the data (`filesize` bytes), and padding to a
//! multiple of 4 again. The entry named `TRAILER!!!` ends the archive.
//!
//! Invariants:
//! - [`entries`] borrows the archive and never copies or panics; every
//!   offset is computed with checked arithmetic.
//! - The iterator yields each entry in order, ends (`None`) after the
//!   trailer, and ends after yielding the first error. An archive that stops
//!   before its trailer yields [`CpioError::UnexpectedEnd`], so a truncated
//!   initrd is never mistaken for a complete one.
//! - Entries of every type are yielded; callers pick regular files with
//!   [`Entry::is_file`].

use abi::errno::Errno;
use core::fmt;

use abi::errno;

/// The magic of a newc header.
pub const MAGIC: &[u8; 6] = b"070701";
/// The name of the entry that ends the archive.
pub const TRAILER: &str = "TRAILER!!!";
/// The file type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
/// File type: regular file.
pub const S_IFREG: u32 = 0o100000;
/// File type: directory.
pub const S_IFDIR: u32 = 0o040000;

const HEADER_SIZE: usize = 110;
const FIELD_NAMES: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];
const MODE: usize = 1;
const FILESIZE: usize = 6;
const NAMESIZE: usize = 11;

/// One archive member, borrowed from the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as stored (often without a leading `/`).
    pub name: &'a str,
    /// The contents.
    pub data: &'a [u8],
    /// Type and permission bits, as in `st_mode`.
    pub mode: u32,
}

impl Entry<'_> {
    /// Whether the entry is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// Why the archive could not be read; `offset` is where the bad entry's
/// header starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// The archive ends inside an entry or before the trailer.
    UnexpectedEnd { offset: usize },
    /// A header does not start with `070701`.
    BadMagic { offset: usize },
    /// A header field is not 8 hex digits.
    BadHex { offset: usize, field: &'static str },
    /// `namesize` is 0, or the name does not end at its first NUL.
    BadName { offset: usize },
    /// The name is not UTF-8.
    NameNotUtf8 { offset: usize },
}

impl CpioError {
    /// Where the bad entry starts.
    pub fn offset(&self) -> usize {
        match *self {
            CpioError::UnexpectedEnd { offset }
            | CpioError::BadMagic { offset }
            | CpioError::BadHex { offset, .. }
            | CpioError::BadName { offset }
            | CpioError::NameNotUtf8 { offset } => offset,
        }
    }

    /// `EIO`: the initrd is corrupt. (These errors normally stop the boot
    /// and never reach user space.)
    pub fn errno(&self) -> Errno {
        errno::EIO
    }
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::UnexpectedEnd { .. } => f.write_str("archive ends early")?,
            CpioError::BadMagic { .. } => f.write_str("bad magic (not cpio newc)")?,
            CpioError::BadHex { field, .. } => write!(f, "field {field} is not hex")?,
            CpioError::BadName { .. } => f.write_str("name size or NUL terminator wrong")?,
            CpioError::NameNotUtf8 { .. } => f.write_str("name is not UTF-8")?,
        }
        write!(f, " at offset {}", self.offset())
    }
}

/// Iterates over the entries of `archive`.
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries {
        archive,
        offset: 0,
        done: false,
    }
}

/// The iterator returned by [`entries`].
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    archive: &'a [u8],
    offset: usize,
    done: bool,
}

fn parse_hex(field: &[u8]) -> Option<u32> {
    field.iter().try_fold(0u32, |value, &byte| {
        let digit = char::from(byte).to_digit(16)?;
        Some(value << 4 | digit)
    })
}

fn align4(value: usize) -> Option<usize> {
    value.checked_next_multiple_of(4)
}

impl<'a> Entries<'a> {
    fn read_entry(&mut self) -> Result<Option<Entry<'a>>, CpioError> {
        let start = self.offset;
        let end = CpioError::UnexpectedEnd { offset: start };
        let header = start
            .checked_add(HEADER_SIZE)
            .and_then(|header_end| self.archive.get(start..header_end))
            .ok_or(end)?;
        if &header[..6] != MAGIC {
            return Err(CpioError::BadMagic { offset: start });
        }
        let mut fields = [0u32; 13];
        for (i, raw) in header[6..].chunks_exact(8).enumerate() {
            fields[i] = parse_hex(raw).ok_or(CpioError::BadHex {
                offset: start,
                field: FIELD_NAMES[i],
            })?;
        }
        let mode = fields[MODE];
        let name_size = fields[NAMESIZE] as usize;
        let file_size = fields[FILESIZE] as usize;

        let name_start = start + HEADER_SIZE;
        let name_end = name_start.checked_add(name_size).ok_or(end)?;
        let name = self.archive.get(name_start..name_end).ok_or(end)?;
        // The name ends with its only NUL.
        let Some((&0, name)) = name.split_last() else {
            return Err(CpioError::BadName { offset: start });
        };
        if name.contains(&0) {
            return Err(CpioError::BadName { offset: start });
        }
        let name =
            core::str::from_utf8(name).map_err(|_| CpioError::NameNotUtf8 { offset: start })?;
        if name == TRAILER {
            return Ok(None);
        }

        let data_start = align4(name_end).ok_or(end)?;
        let data_end = data_start.checked_add(file_size).ok_or(end)?;
        let data = self.archive.get(data_start..data_end).ok_or(end)?;
        // Past the end is fine here: the next header read reports it.
        self.offset = align4(data_end).unwrap_or(usize::MAX);
        Ok(Some(Entry { name, data, mode }))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.read_entry();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result.transpose()
    }
}

impl core::iter::FusedIterator for Entries<'_> {}

impl From<CpioError> for Errno {
    fn from(e: CpioError) -> Errno {
        e.errno()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    /// A minimal newc writer.
    struct Writer(Vec<u8>);

    impl Writer {
        fn new() -> Self {
            Writer(Vec::new())
        }

        fn raw_entry(&mut self, name: &[u8], name_size: u32, mode: u32, data: &[u8]) {
            let fields = [
                1,
                mode,
                0,
                0,
                1,
                0,
                data.len() as u32,
                0,
                0,
                0,
                0,
                name_size,
                0,
            ];
            self.0.extend_from_slice(MAGIC);
            for field in fields {
                self.0.extend_from_slice(format!("{field:08X}").as_bytes());
            }
            self.0.extend_from_slice(name);
            self.pad();
            self.0.extend_from_slice(data);
            self.pad();
        }

        fn pad(&mut self) {
            while !self.0.len().is_multiple_of(4) {
                self.0.push(0);
            }
        }

        fn entry(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
            let mut with_nul = Vec::from(name.as_bytes());
            with_nul.push(0);
            self.raw_entry(&with_nul, with_nul.len() as u32, mode, data);
            self
        }

        fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.entry(name, S_IFREG | 0o755, data)
        }

        fn finish(&mut self) -> Vec<u8> {
            self.entry(TRAILER, 0, b"");
            core::mem::take(&mut self.0)
        }
    }

    fn collect(archive: &[u8]) -> Result<Vec<Entry<'_>>, CpioError> {
        entries(archive).collect()
    }

    fn sample() -> Vec<u8> {
        Writer::new()
            .entry(".", S_IFDIR | 0o755, b"")
            .file("init", b"\x7fELF init")
            .file("bin/hello", b"hi")
            .file("empty", b"")
            .file("abc", b"abcd")
            .finish()
    }

    #[test]
    fn reads_every_entry() {
        let archive = sample();
        let all = collect(&archive).unwrap();
        let names: Vec<&str> = all.iter().map(|e| e.name).collect();
        assert_eq!(names, [".", "init", "bin/hello", "empty", "abc"]);
        assert!(all[0].is_dir() && !all[0].is_file());
        assert!(all[1].is_file() && !all[1].is_dir());
        assert_eq!(all[1].data, b"\x7fELF init");
        assert_eq!(all[1].mode, S_IFREG | 0o755);
        assert_eq!(all[2].data, b"hi");
        assert_eq!(all[3].data, b"");
        assert_eq!(all[4].data, b"abcd");
        let files = entries(&archive)
            .filter_map(Result::ok)
            .filter(Entry::is_file)
            .count();
        assert_eq!(files, 4);
    }

    #[test]
    fn lower_case_hex_and_trailing_padding() {
        let mut archive = sample();
        // Lower-case hex digits are accepted.
        let lower: Vec<u8> = archive[..HEADER_SIZE].to_ascii_lowercase();
        archive[..HEADER_SIZE].copy_from_slice(&lower);
        // Zero padding after the trailer (as written by cpio to fill a block).
        archive.extend_from_slice(&[0; 512]);
        assert_eq!(collect(&archive).unwrap().len(), 5);
    }

    #[test]
    fn empty_archives() {
        assert_eq!(collect(&Writer::new().finish()).unwrap(), []);
        assert_eq!(collect(b""), Err(CpioError::UnexpectedEnd { offset: 0 }));
    }

    #[test]
    fn every_truncation_is_an_error_or_complete() {
        let archive = sample();
        // The archive is complete once the trailer's name is in; its padding
        // may be missing.
        let trailer_start = archive.len() - 124;
        let complete_at = trailer_start + HEADER_SIZE + TRAILER.len() + 1;
        assert_eq!(&archive[trailer_start..trailer_start + 6], MAGIC);
        for len in 0..archive.len() {
            let result = collect(&archive[..len]);
            if len < complete_at {
                let err = result.expect_err("truncated archive accepted");
                assert!(
                    matches!(err, CpioError::UnexpectedEnd { .. }),
                    "{len}: {err:?}"
                );
            } else {
                assert_eq!(result.unwrap().len(), 5);
            }
        }
    }

    #[test]
    fn stops_after_the_first_error() {
        let mut archive = sample();
        archive[0] = b'1';
        let mut iter = entries(&archive);
        assert_eq!(iter.next(), Some(Err(CpioError::BadMagic { offset: 0 })));
        assert_eq!(iter.next(), None);
        assert_eq!(iter.next(), None);

        // A good entry, then garbage.
        let mut archive = Writer::new().file("a", b"x").finish();
        let second = 112 + 4; // header + "a\0" padded, data padded
        archive[second] = b'x';
        let results: Vec<_> = entries(&archive).collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        assert_eq!(results[1], Err(CpioError::BadMagic { offset: second }));
    }

    #[test]
    fn bad_magic() {
        for magic in [b"070702", b"070707", b"\0\0\0\0\0\0", b"07070X"] {
            let mut archive = sample();
            archive[..6].copy_from_slice(magic);
            assert_eq!(collect(&archive), Err(CpioError::BadMagic { offset: 0 }));
        }
    }

    #[test]
    fn bad_hex() {
        for (field, &name) in FIELD_NAMES.iter().enumerate() {
            for bad in [b'g', b' ', b'-', b'+', 0, 0xff] {
                let mut archive = sample();
                archive[6 + field * 8 + 3] = bad;
                assert_eq!(
                    collect(&archive),
                    Err(CpioError::BadHex {
                        offset: 0,
                        field: name
                    }),
                    "{name} {bad}"
                );
            }
        }
    }

    #[test]
    fn name_must_be_nul_terminated() {
        // No NUL at the end.
        let mut w = Writer::new();
        w.raw_entry(b"abc", 3, S_IFREG, b"data");
        let archive = w.finish();
        assert_eq!(collect(&archive), Err(CpioError::BadName { offset: 0 }));

        // namesize 0.
        let mut w = Writer::new();
        w.raw_entry(b"", 0, S_IFREG, b"data");
        assert_eq!(collect(&w.finish()), Err(CpioError::BadName { offset: 0 }));

        // A NUL inside the name.
        let mut w = Writer::new();
        w.raw_entry(b"a\0b\0", 4, S_IFREG, b"");
        assert_eq!(collect(&w.finish()), Err(CpioError::BadName { offset: 0 }));

        // namesize beyond the end of the archive.
        let mut w = Writer::new();
        w.raw_entry(b"a\0", 0xffff_ffff, S_IFREG, b"");
        assert_eq!(collect(&w.0), Err(CpioError::UnexpectedEnd { offset: 0 }));
    }

    #[test]
    fn name_must_be_utf8() {
        let mut w = Writer::new();
        w.raw_entry(b"\xff\xfe\0", 3, S_IFREG, b"");
        assert_eq!(
            collect(&w.finish()),
            Err(CpioError::NameNotUtf8 { offset: 0 })
        );
        // Non-ASCII UTF-8 is fine.
        let archive = Writer::new().file("héllo", b"").finish();
        assert_eq!(collect(&archive).unwrap()[0].name, "héllo");
    }

    #[test]
    fn file_size_past_the_end() {
        let mut archive = Writer::new().file("a", b"xy").finish();
        // filesize field = 0xffffffff.
        archive[6 + FILESIZE * 8..6 + FILESIZE * 8 + 8].copy_from_slice(b"FFFFFFFF");
        assert_eq!(
            collect(&archive),
            Err(CpioError::UnexpectedEnd { offset: 0 })
        );
    }

    #[test]
    fn garbage_never_panics() {
        let archive = sample();
        let mut state = 0xdead_beef_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let mut bad = archive.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bad.len();
                bad[at] = match next() % 4 {
                    0 => b'f',
                    1 => b'0',
                    2 => 0,
                    _ => next() as u8,
                };
            }
            let results: Vec<_> = entries(&bad).collect();
            // At most one error, and only as the last item.
            let errors = results.iter().filter(|r| r.is_err()).count();
            assert!(errors <= 1);
            if errors == 1 {
                assert!(results.last().unwrap().is_err());
            }
        }
    }

    #[test]
    fn errors_display_and_errno() {
        let err = CpioError::BadHex {
            offset: 4,
            field: "mode",
        };
        assert_eq!(format!("{err}"), "field mode is not hex at offset 4");
        assert_eq!(err.errno(), errno::EIO);
        assert_eq!(err.offset(), 4);
    }
}
