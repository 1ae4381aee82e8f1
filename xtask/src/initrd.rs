//! The initrd: a cpio archive in the "newc" format (the one Linux reads),
//! holding flat files only, no directories.
//!
//! Each entry is a 110-byte header of ASCII fields (the magic `070701` and
//! thirteen 8-digit hexadecimal numbers), the NUL-terminated name padded so
//! that header plus name is a multiple of 4 bytes, then the data padded to a
//! multiple of 4. The archive ends with an empty entry named `TRAILER!!!`.
//! Timestamps and owners are zero so that the same inputs give the same bytes.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{bail, Error, Result};

/// Mode of a regular file that may be executed (`S_IFREG | 0755`).
pub const MODE_EXECUTABLE: u32 = 0o100_755;
/// Mode of a regular data file (`S_IFREG | 0644`).
pub const MODE_DATA: u32 = 0o100_644;

const MAGIC: &str = "070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// One file to put into the initrd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name inside the archive (no directories).
    pub name: String,
    pub source: PathBuf,
    pub mode: u32,
}

/// Writes `entries` to a new archive at `path`.
pub fn write_initrd(path: &Path, entries: &[Entry]) -> Result<()> {
    let mut names: Vec<&str> = Vec::with_capacity(entries.len());
    let mut archive = CpioWriter::new(Vec::new());
    for entry in entries {
        if names.contains(&entry.name.as_str()) {
            bail!("two initrd files are both named `{}`", entry.name);
        }
        names.push(&entry.name);
        let data = fs::read(&entry.source).map_err(|err| Error::io("read", &entry.source, err))?;
        archive
            .add_file(&entry.name, entry.mode, &data)
            .map_err(|err| {
                Error::new(format!(
                    "cannot add {} to the initrd: {err}",
                    entry.source.display()
                ))
            })?;
    }
    let bytes = archive
        .finish()
        .map_err(|err| Error::new(format!("cannot finish the initrd: {err}")))?;
    fs::write(path, bytes).map_err(|err| Error::io("write", path, err))
}

/// Streams a newc archive into `out`.
pub struct CpioWriter<W: Write> {
    out: W,
    next_inode: u32,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter { out, next_inode: 1 }
    }

    /// Appends a regular file.
    pub fn add_file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        if name.is_empty() || name.contains(['/', '\0']) || name == TRAILER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{name}` is not a valid file name in the initrd"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "newc cannot hold files of 4 GiB or more",
            )
        })?;
        let inode = self.next_inode;
        self.next_inode += 1;
        self.write_entry(inode, mode, 1, name, data, size)
    }

    /// Writes the trailer entry and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_entry(0, 0, 1, TRAILER, &[], 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn write_entry(
        &mut self,
        inode: u32,
        mode: u32,
        links: u32,
        name: &str,
        data: &[u8],
        size: u32,
    ) -> io::Result<()> {
        let name_size = name.len() as u32 + 1; // with the terminating NUL
                                               // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
                                               // rdevmajor, rdevminor, namesize, check (always 0 for newc).
        let fields = [inode, mode, 0, 0, links, 0, size, 0, 0, 0, 0, name_size, 0];
        let mut header = String::with_capacity(HEADER_LEN);
        header.push_str(MAGIC);
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        debug_assert_eq!(header.len(), HEADER_LEN);

        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(HEADER_LEN + name_size as usize)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    /// Writes the zero bytes that bring `len` up to a multiple of 4.
    fn pad(&mut self, len: usize) -> io::Result<()> {
        let padding = (4 - len % 4) % 4;
        self.out.write_all(&[0; 3][..padding])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry read back from an archive.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        name: String,
        mode: u32,
        inode: u32,
        links: u32,
        data: Vec<u8>,
    }

    /// A strict newc reader, independent of the writer: checks the magic,
    /// the alignment of names and data and that nothing follows the trailer.
    fn read_archive(bytes: &[u8]) -> Vec<Parsed> {
        let field = |header: &[u8], index: usize| {
            let start = 6 + index * 8;
            let text = std::str::from_utf8(&header[start..start + 8]).unwrap();
            assert!(
                text.chars().all(|c| c.is_ascii_hexdigit()),
                "field {index}: {text}"
            );
            u32::from_str_radix(text, 16).unwrap()
        };
        let align = |offset: usize| offset.next_multiple_of(4);
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(offset % 4, 0, "entry not 4-byte aligned");
            let header = &bytes[offset..offset + HEADER_LEN];
            assert_eq!(&header[..6], b"070701");
            let name_size = field(header, 11) as usize;
            let size = field(header, 6) as usize;
            assert_eq!(field(header, 12), 0, "check field must be 0");
            let name_start = offset + HEADER_LEN;
            let name_bytes = &bytes[name_start..name_start + name_size];
            assert_eq!(name_bytes.last(), Some(&0), "name must end in NUL");
            let name = std::str::from_utf8(&name_bytes[..name_size - 1])
                .unwrap()
                .to_string();
            let padded_name_end = align(name_start + name_size);
            assert!(bytes[name_start + name_size..padded_name_end]
                .iter()
                .all(|&b| b == 0));
            let data = bytes[padded_name_end..padded_name_end + size].to_vec();
            let padded_data_end = align(padded_name_end + size);
            assert!(bytes[padded_name_end + size..padded_data_end]
                .iter()
                .all(|&b| b == 0));
            offset = padded_data_end;
            let done = name == TRAILER;
            entries.push(Parsed {
                name,
                mode: field(header, 1),
                inode: field(header, 0),
                links: field(header, 4),
                data,
            });
            if done {
                assert_eq!(offset, bytes.len(), "bytes after the trailer");
                return entries;
            }
        }
    }

    #[test]
    fn empty_archive_is_only_the_trailer() {
        let bytes = CpioWriter::new(Vec::new()).finish().unwrap();
        let mut expected = String::from("070701");
        for field in [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0] {
            expected.push_str(&format!("{field:08x}"));
        }
        expected.push_str("TRAILER!!!\0");
        // 110 + 11 = 121 bytes, padded to 124.
        assert_eq!(bytes.len(), 124);
        assert_eq!(&bytes[..121], expected.as_bytes());
        assert_eq!(&bytes[121..], &[0, 0, 0]);
    }

    #[test]
    fn header_of_a_file_is_exact() {
        let mut writer = CpioWriter::new(Vec::new());
        writer.add_file("init", MODE_EXECUTABLE, b"hello").unwrap();
        let bytes = writer.finish().unwrap();
        let header = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        assert_eq!(
            header,
            concat!(
                "070701", "00000001", // ino
                "000081ed", // mode 0100755
                "00000000", // uid
                "00000000", // gid
                "00000001", // nlink
                "00000000", // mtime
                "00000005", // filesize
                "00000000", // devmajor
                "00000000", // devminor
                "00000000", // rdevmajor
                "00000000", // rdevminor
                "00000005", // namesize: "init" + NUL
                "00000000", // check
            )
        );
        // Name: 110 + 5 = 115, padded to 116; data 5 bytes padded to 8.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..124], b"hello\0\0\0");
        assert_eq!(&bytes[124..130], b"070701");
    }

    #[test]
    fn files_round_trip_with_every_padding() {
        let mut writer = CpioWriter::new(Vec::new());
        // Name lengths 1..=4 and data lengths 0..=4 cover every padding amount.
        let files: Vec<(String, Vec<u8>)> = (0..8)
            .map(|i| {
                (
                    "abcd"[..i % 4 + 1].to_string() + &i.to_string(),
                    vec![i as u8; i % 5],
                )
            })
            .collect();
        for (name, data) in &files {
            writer.add_file(name, MODE_DATA, data).unwrap();
        }
        let parsed = read_archive(&writer.finish().unwrap());
        assert_eq!(parsed.len(), files.len() + 1);
        for (i, ((name, data), entry)) in files.iter().zip(&parsed).enumerate() {
            assert_eq!(&entry.name, name);
            assert_eq!(&entry.data, data);
            assert_eq!(entry.mode, MODE_DATA);
            assert_eq!(entry.inode, i as u32 + 1, "inodes are distinct");
            assert_eq!(entry.links, 1);
        }
        assert_eq!(parsed.last().unwrap().name, TRAILER);
    }

    #[test]
    fn bad_names_are_rejected() {
        let mut writer = CpioWriter::new(Vec::new());
        for name in ["", "bin/init", "a\0b", TRAILER] {
            assert!(writer.add_file(name, MODE_DATA, b"").is_err(), "{name:?}");
        }
    }

    #[test]
    fn write_initrd_reads_sources_and_rejects_duplicates() {
        let dir = std::env::temp_dir().join(format!("xtask-initrd-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let source = dir.join("data.txt");
        fs::write(&source, b"payload").unwrap();
        let entry = |name: &str| Entry {
            name: name.to_string(),
            source: source.clone(),
            mode: MODE_DATA,
        };

        let archive = dir.join("initrd.cpio");
        write_initrd(&archive, &[entry("one"), entry("two")]).unwrap();
        let parsed = read_archive(&fs::read(&archive).unwrap());
        assert_eq!(parsed[0].name, "one");
        assert_eq!(parsed[1].data, b"payload");

        let err = write_initrd(&archive, &[entry("same"), entry("same")]).unwrap_err();
        assert!(err.to_string().contains("both named `same`"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
