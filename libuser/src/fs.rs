//! Files: an owned descriptor type and whole-file helpers.

use crate::sys;
use abi::errno::Errno;
use abi::open_flags::{O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY};
use abi::{DirEntry, FileStat, FromBytes};
use alloc::vec::Vec;

/// An open file descriptor, closed when dropped.
#[derive(Debug)]
pub struct File {
    fd: u64,
}

impl File {
    /// Opens `path` with `flags` from [`abi::open_flags`].
    pub fn open(path: &str, flags: u64) -> Result<File, Errno> {
        sys::open(path, flags).map(|fd| File { fd })
    }

    /// Creates `path` for writing, or empties it if it exists.
    pub fn create(path: &str) -> Result<File, Errno> {
        File::open(path, O_WRONLY | O_CREAT | O_TRUNC)
    }

    /// The descriptor number.
    pub fn fd(&self) -> u64 {
        self.fd
    }

    /// Reads into `buf`; returns the byte count, 0 at end of file.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        sys::read(self.fd, buf)
    }

    /// Appends everything up to end of file to `out`; returns the byte count.
    pub fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize, Errno> {
        let mut chunk = [0u8; 512];
        let mut total = 0;
        loop {
            match self.read(&mut chunk)? {
                0 => return Ok(total),
                n => {
                    out.extend_from_slice(&chunk[..n]);
                    total += n;
                }
            }
        }
    }

    /// Writes from `buf`; returns how many bytes were taken.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, Errno> {
        sys::write(self.fd, buf)
    }

    /// Writes all of `buf`.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), Errno> {
        sys::write_all(self.fd, buf)
    }

    /// Moves the offset (`whence` from [`abi::seek`]); returns the new one.
    pub fn seek(&mut self, offset: i64, whence: u64) -> Result<u64, Errno> {
        sys::lseek(self.fd, offset, whence)
    }

    /// Flushes the file to its backing store.
    pub fn fsync(&self) -> Result<(), Errno> {
        sys::fsync(self.fd)
    }

    /// Reads at `offset` without moving the position.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        sys::pread(self.fd, buf, offset)
    }

    /// Writes at `offset` without moving the position.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        sys::pwrite(self.fd, buf, offset)
    }

    /// Sets the size.
    pub fn set_len(&self, len: u64) -> Result<(), Errno> {
        sys::ftruncate(self.fd, len)
    }

    /// Flushes the data (not all metadata) to the backing store.
    pub fn sync_data(&self) -> Result<(), Errno> {
        sys::fdatasync(self.fd)
    }

    /// Size and inode number.
    pub fn stat(&self) -> Result<FileStat, Errno> {
        sys::fstat(self.fd)
    }

    /// Closes the descriptor, reporting any error (dropping ignores it).
    pub fn close(self) -> Result<(), Errno> {
        let fd = self.fd;
        core::mem::forget(self);
        sys::close(fd)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = sys::close(self.fd);
    }
}

/// The whole contents of `path`.
pub fn read_to_vec(path: &str) -> Result<Vec<u8>, Errno> {
    let mut file = File::open(path, O_RDONLY)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// Creates or truncates `path` and writes `data` to it.
pub fn write_file(path: &str, data: &[u8]) -> Result<(), Errno> {
    let mut file = File::create(path)?;
    file.write_all(data)?;
    file.close()
}

/// One entry of a directory, as [`read_dir`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirListing {
    pub name: alloc::string::String,
    pub ino: u64,
    pub size: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// The records of a `getdents` buffer, decoded: `(head, name bytes)`; a
/// record that does not fit what is left ends the iteration.
pub struct Dirents<'a> {
    rest: &'a [u8],
}

impl<'a> Dirents<'a> {
    /// The records in `buf` (the bytes `getdents` reported writing).
    pub fn new(buf: &'a [u8]) -> Self {
        Dirents { rest: buf }
    }
}

impl<'a> Iterator for Dirents<'a> {
    type Item = (abi::Dirent, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let head_len = core::mem::size_of::<abi::Dirent>();
        let (head, _) = abi::Dirent::read_from_prefix(self.rest).ok()?;
        let reclen = head.reclen as usize;
        let name_end = head_len + head.name_len as usize;
        if reclen < name_end || reclen > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let name = &self.rest[head_len..name_end];
        self.rest = &self.rest[reclen..];
        Some((head, name))
    }
}

/// Every entry of the directory `path`, in the order the file system
/// lists them (`.` and `..` are not listed).
pub fn read_dir(path: &str) -> Result<Vec<DirListing>, Errno> {
    let dir = File::open(path, O_RDONLY | abi::open_flags::O_DIRECTORY)?;
    let mut out = Vec::new();
    let mut buf = alloc::vec![0u8; 4096];
    loop {
        let n = sys::getdents(dir.fd(), &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        for (head, name) in Dirents::new(&buf[..n]) {
            out.push(DirListing {
                name: alloc::string::String::from_utf8_lossy(name).into_owned(),
                ino: head.ino,
                size: head.size,
                is_dir: head.kind == abi::file_kind::DIRECTORY,
            });
        }
    }
}

/// One file as [`list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    pub name: alloc::string::String,
    pub ino: u64,
    pub size: u64,
}

/// The records of a `list_files` buffer, decoded: `(head, name bytes)`.
/// A record that does not fit what is left of the buffer ends the
/// iteration (the kernel writes only whole ones).
pub struct DirEntries<'a> {
    rest: &'a [u8],
}

impl<'a> DirEntries<'a> {
    /// The records in `buf` (the bytes `list_files` reported writing).
    pub fn new(buf: &'a [u8]) -> Self {
        DirEntries { rest: buf }
    }
}

impl<'a> Iterator for DirEntries<'a> {
    type Item = (DirEntry, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (head, _) = DirEntry::read_from_prefix(self.rest).ok()?;
        let reclen = head.reclen as usize;
        let name_end = core::mem::size_of::<DirEntry>().checked_add(head.name_len as usize)?;
        if reclen < name_end || reclen > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let name = &self.rest[core::mem::size_of::<DirEntry>()..name_end];
        self.rest = &self.rest[reclen..];
        Some((head, name))
    }
}

/// Every file of the file system, sorted by name.
pub fn list() -> Result<Vec<ListedFile>, Errno> {
    let mut files: Vec<ListedFile> = Vec::new();
    let mut buf = alloc::vec![0u8; 4096];
    loop {
        let after = files.last().map(|f| f.name.as_bytes()).unwrap_or_default();
        let n = sys::list_files(after, &mut buf)?;
        if n == 0 {
            return Ok(files);
        }
        let before = files.len();
        for (head, name) in DirEntries::new(&buf[..n]) {
            files.push(ListedFile {
                name: alloc::string::String::from_utf8_lossy(name).into_owned(),
                ino: head.ino,
                size: head.size,
            });
        }
        if files.len() == before {
            // Nothing decodable: stop rather than ask for the same again.
            return Err(abi::errno::EIO);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::IntoBytes;

    fn record(name: &str, ino: u64) -> Vec<u8> {
        let reclen = DirEntry::record_len(name.len());
        let head = DirEntry {
            ino,
            size: ino * 10,
            reclen: reclen as u32,
            name_len: name.len() as u32,
        };
        let mut out = head.as_bytes().to_vec();
        out.extend_from_slice(name.as_bytes());
        out.resize(reclen, 0);
        out
    }

    #[test]
    fn dir_entries_decode_records_and_stop_at_a_broken_one() {
        let mut buf = record("a", 1);
        buf.extend(record("longer-name", 2));
        let got: Vec<(u64, &[u8])> = DirEntries::new(&buf).map(|(h, n)| (h.ino, n)).collect();
        assert_eq!(got, [(1, &b"a"[..]), (2, &b"longer-name"[..])]);
        // Truncated: the whole record is missing, so it is not reported.
        let cut = &buf[..buf.len() - 1];
        assert_eq!(DirEntries::new(cut).count(), 1);
        // A reclen that would not hold its name.
        let mut bad = record("abc", 3);
        bad[16] = 8;
        assert_eq!(DirEntries::new(&bad).count(), 0);
        assert_eq!(DirEntries::new(&[]).count(), 0);
    }
}
