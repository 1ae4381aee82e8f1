//! Files: an owned descriptor type and whole-file helpers.

use crate::sys;
use abi::errno::Errno;
use abi::open_flags::{O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY};
use abi::FileStat;
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
