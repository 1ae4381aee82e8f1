//! The virtual file system: one trait every file system implements
//! ([`FileSystem`]), the mount table and path resolution ([`Vfs`]), and the
//! path rules ([`path`]).
//!
//! A file system is addressed by inode numbers ([`Ino`]): the VFS walks a
//! path one component at a time with [`FileSystem::lookup`] and does the
//! operation on the directory and name it ends in. File systems never see
//! a path, never see `.` or `..`, and never see another file system: the
//! mount table sits between them. Design, rules and the plan for disk file
//! systems (worker threads, the page cache): `docs/vfs.md`.
//!
//! Invariants:
//! - Every error is an [`Errno`]; no input (a hostile path, a name of 256
//!   bytes, a rename into its own subdirectory) panics.
//! - A name handed to a file system is 1..=[`NAME_MAX`] bytes of UTF-8,
//!   without `/` or NUL, and neither `.` nor `..` ([`path::check_name`]).
//! - There are no symbolic or hard links: every file has exactly one name,
//!   every directory one parent.

pub mod cache;
pub mod mount;
pub mod path;

pub use mount::{Loc, Mount, Vfs};

use crate::fs::Inode;
use abi::errno::Errno;
use alloc::sync::Arc;

/// An inode number, unique within one file system while the file exists.
pub type Ino = u64;

/// What kind of file an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: bytes.
    File,
    /// A directory: names of other inodes.
    Dir,
}

impl Kind {
    /// The `abi::file_kind` value.
    pub fn abi(self) -> u8 {
        match self {
            Kind::File => abi::file_kind::REGULAR,
            Kind::Dir => abi::file_kind::DIRECTORY,
        }
    }
}

/// An inode's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    /// Bytes (0 for a directory).
    pub size: u64,
    /// Names the inode has: 1 for a file, 2 + subdirectories for a
    /// directory (as on Linux).
    pub nlink: u32,
}

impl Attr {
    /// As `abi::Stat`.
    pub fn to_abi(self) -> abi::Stat {
        abi::Stat {
            ino: self.ino,
            size: self.size,
            kind: self.kind.abi(),
            _pad: [0; 3],
            nlink: self.nlink,
        }
    }
}

/// Where a directory listing resumes: 0 is the start; otherwise whatever
/// the file system encodes (the RAM file system a sequence number, ext4 a
/// byte offset or its HTree position: hash major, minor and a collision
/// ordinal, 96 bits, hence 128 rather than Linux's 64-bit `d_off`). It
/// never leaves the kernel: `getdents` keeps it in the open directory.
pub type DirCursor = u128;

/// One directory entry, as [`FileSystem::readdir`] hands it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEnt<'a> {
    /// The name as stored: bytes (a disk may hold names that are not
    /// UTF-8, which can be listed though not named in a path).
    pub name: &'a [u8],
    pub ino: Ino,
    pub kind: Kind,
    /// Bytes (0 for a directory).
    pub size: u64,
    /// The cursor that continues after this entry (Linux's `d_off`).
    pub next: DirCursor,
}

/// A file system, as the VFS uses it. Object-safe; every method takes
/// `&self` (a file system locks what it needs inside), so one instance is
/// shared by the mount table and every open file on it.
///
/// Names are checked by the VFS before they get here (see the module
/// invariants); a file system may rely on that. Directory operations take
/// the directory's inode and a name in it.
pub trait FileSystem: Send + Sync {
    /// A short name for logs (`"ramfs"`, `"ext4"`).
    fn name(&self) -> &'static str;

    /// The root directory's inode.
    fn root(&self) -> Ino;

    /// Whether operations may sleep (wait for a disk). A file system that
    /// answers true must not be called with interrupts off or a spin lock
    /// held, and the ring layer must not call it inside `io_uring_enter`:
    /// it hands such ops to worker threads (`docs/vfs.md`). The RAM file
    /// system answers false: all its operations finish at once.
    fn might_sleep(&self) -> bool;

    /// The inode called `name` in the directory `dir`, and its kind.
    /// `ENOENT` if there is none, `ENOTDIR` if `dir` is not a directory.
    fn lookup(&self, dir: Ino, name: &str) -> Result<(Ino, Kind), Errno>;

    /// The directory `dir`'s parent (the root's parent is the root).
    /// `ENOTDIR` if `dir` is a file.
    fn parent(&self, dir: Ino) -> Result<Ino, Errno>;

    /// Metadata of `ino` (`ENOENT` if it no longer exists).
    fn stat(&self, ino: Ino) -> Result<Attr, Errno>;

    /// Creates an empty file or directory `name` in `dir`. `EEXIST` if the
    /// name is taken, `ENOSPC` if the file system is full.
    fn create(&self, dir: Ino, name: &str, kind: Kind) -> Result<Ino, Errno>;

    /// Removes the file `name` from `dir` (`EISDIR` for a directory). An
    /// open file lives on until closed.
    fn unlink(&self, dir: Ino, name: &str) -> Result<(), Errno>;

    /// Removes the empty directory `name` from `dir` (`ENOTDIR` for a file,
    /// `ENOTEMPTY` unless empty).
    fn rmdir(&self, dir: Ino, name: &str) -> Result<(), Errno>;

    /// Moves `olddir/oldname` to `newdir/newname` (POSIX `rename`): an
    /// existing target is replaced if both are files or the target is an
    /// empty directory (`EISDIR` file over directory, `ENOTDIR` directory
    /// over file, `ENOTEMPTY`); moving a directory into itself or below
    /// itself is `EINVAL`; a name onto itself does nothing.
    fn rename(&self, olddir: Ino, oldname: &str, newdir: Ino, newname: &str) -> Result<(), Errno>;

    /// Hands the entries of `dir` from `cursor` on (0: the first) to
    /// `sink`, in a fixed order, until `sink` returns false or the entries
    /// end. Each entry carries the cursor that continues after it. Entries
    /// added or removed meanwhile may or may not be seen; none is seen
    /// twice. `.` and `..` are not listed.
    fn readdir(
        &self,
        dir: Ino,
        cursor: DirCursor,
        sink: &mut dyn FnMut(&DirEnt<'_>) -> bool,
    ) -> Result<(), Errno>;

    /// Reads from `offset` into `buf`; 0 at or past the end. `EISDIR` for
    /// a directory.
    fn read_at(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno>;

    /// Writes all of `buf` at `offset`, growing the file.
    fn write_at(&self, ino: Ino, offset: u64, buf: &[u8]) -> Result<usize, Errno>;

    /// Sets a file's size (`EISDIR` for a directory).
    fn truncate(&self, ino: Ino, len: u64) -> Result<(), Errno>;

    /// Makes what was written to `ino` durable (with `datasync`, metadata
    /// not needed to read the data back may stay behind). Returns only
    /// once the device reported the data written and its cache flushed.
    fn fsync(&self, ino: Ino, datasync: bool) -> Result<(), Errno>;

    /// A file system whose files live in memory hands out the file itself,
    /// so reads and writes copy straight between it and user memory (the
    /// kernel's fast path). Others answer `None` and are used through
    /// [`FileSystem::read_at`] and [`FileSystem::write_at`].
    fn ram_file(&self, _ino: Ino) -> Option<Arc<Inode>> {
        None
    }
}

/// Fills `buf` with [`abi::Dirent`] records (head, name, zeros to a
/// multiple of 8) for the entries of `dir` from `cursor` on, as many whole
/// records as fit; returns the bytes written and the cursor to continue
/// from. `(0, cursor)` at the end; `EINVAL` if the next record does not
/// fit in `buf` (the `getdents` call).
pub fn read_dir(
    fs: &dyn FileSystem,
    dir: Ino,
    cursor: DirCursor,
    buf: &mut [u8],
) -> Result<(usize, DirCursor), Errno> {
    use abi::IntoBytes;
    let mut written = 0;
    let mut next = cursor;
    let mut too_small = false;
    fs.readdir(dir, cursor, &mut |entry| {
        let reclen = abi::DirEntry::record_len(entry.name.len());
        let Some(record) = buf.get_mut(written..written + reclen) else {
            too_small = written == 0;
            return false;
        };
        let head = abi::Dirent {
            ino: entry.ino,
            size: entry.size,
            reclen: reclen as u16,
            name_len: entry.name.len() as u16,
            kind: entry.kind.abi(),
            _pad: [0; 3],
        };
        let (head_bytes, rest) = record.split_at_mut(core::mem::size_of::<abi::Dirent>());
        head_bytes.copy_from_slice(head.as_bytes());
        rest[..entry.name.len()].copy_from_slice(entry.name);
        rest[entry.name.len()..].fill(0);
        written += reclen;
        next = entry.next;
        true
    })?;
    if too_small {
        return Err(abi::errno::EINVAL);
    }
    Ok((written, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RamFs;
    use abi::{Dirent, FromBytes};
    use alloc::string::String;
    use alloc::vec::Vec;

    /// Every entry of `dir`, read `chunk` bytes at a time.
    fn list(fs: &RamFs, dir: Ino, chunk: usize) -> Vec<(String, Kind)> {
        let mut out = Vec::new();
        let mut cursor = 0;
        let mut buf = alloc::vec![0u8; chunk];
        loop {
            let (n, next) = read_dir(fs, dir, cursor, &mut buf).unwrap();
            if n == 0 {
                return out;
            }
            cursor = next;
            let mut at = 0;
            while at < n {
                let (head, _) = Dirent::read_from_prefix(&buf[at..]).unwrap();
                let name = &buf[at + 24..at + 24 + head.name_len as usize];
                let kind = if head.kind == abi::file_kind::DIRECTORY {
                    Kind::Dir
                } else {
                    Kind::File
                };
                out.push((String::from(core::str::from_utf8(name).unwrap()), kind));
                at += head.reclen as usize;
            }
        }
    }

    #[test]
    fn readdir_is_resumable_and_complete() {
        let fs = RamFs::new();
        let d = fs.mkdir("/d").unwrap();
        for i in 0..40 {
            fs.create(&alloc::format!("/d/f{i}")).unwrap();
        }
        fs.mkdir("/d/sub").unwrap();
        // Small buffers: one record at a time; large: all at once.
        for chunk in [abi::DIRENT_MAX, 64, 4096] {
            let names = list(&fs, d, chunk);
            assert_eq!(names.len(), 41, "chunk {chunk}");
            assert_eq!(names[0].0, "f0", "listed in the order made");
            assert_eq!(names[40], (String::from("sub"), Kind::Dir));
        }
        // Too small for the next record: EINVAL; empty directory: 0.
        let mut tiny = [0u8; 16];
        assert_eq!(read_dir(&fs, d, 0, &mut tiny), Err(abi::errno::EINVAL));
        let sub = fs.stat_path("/d/sub").unwrap().ino;
        assert_eq!(read_dir(&fs, sub, 0, &mut [0u8; 512]), Ok((0, 0)));
        // Entries removed between calls are not seen, none twice.
        let mut buf = [0u8; 64];
        let (_, cursor) = read_dir(&fs, d, 0, &mut buf).unwrap();
        fs.unlink("/d/f1").unwrap();
        fs.unlink("/d/f0").unwrap();
        let (n, _) = read_dir(&fs, d, cursor, &mut buf).unwrap();
        let (head, _) = Dirent::read_from_prefix(&buf[..n]).unwrap();
        assert_eq!(&buf[24..24 + head.name_len as usize], b"f2");
        // A file is not a directory.
        let f = fs.stat_path("/d/f5").unwrap().ino;
        assert_eq!(read_dir(&fs, f, 0, &mut buf), Err(abi::errno::ENOTDIR));
        // A directory removed while open lists nothing.
        fs.rmdir("/d/sub").unwrap();
        assert_eq!(read_dir(&fs, sub, 0, &mut buf), Ok((0, 0)));
    }

    #[test]
    fn tree_operations() {
        use abi::errno::*;
        let fs = RamFs::new();
        let a = fs.mkdir("/a").unwrap();
        let b = fs.mkdir("/a/b").unwrap();
        fs.insert("/a/b/f", b"data".to_vec()).unwrap();
        // Rename across directories keeps the inode and its contents.
        let ino = fs.lookup("/a/b/f").unwrap().ino();
        fs.rename("/a/b/f", "/g").unwrap();
        assert_eq!(fs.lookup("/g").unwrap().ino(), ino);
        assert!(fs.lookup("/a/b/f").is_err());
        // Directories: rmdir non-empty, unlink a directory, into its own child.
        fs.insert("/a/b/h", Vec::new()).unwrap();
        assert_eq!(FileSystem::rmdir(&fs, a, "b"), Err(ENOTEMPTY));
        assert_eq!(FileSystem::unlink(&fs, a, "b"), Err(EISDIR));
        assert_eq!(FileSystem::rmdir(&fs, b, "h"), Err(ENOTDIR));
        assert_eq!(FileSystem::rename(&fs, ROOT, "a", b, "x"), Err(EINVAL));
        assert_eq!(FileSystem::rename(&fs, ROOT, "a", a, "x"), Err(EINVAL));
        // A directory moves with its contents; `..` follows it.
        fs.mkdir("/c").unwrap();
        fs.rename("/a/b", "/c/b2").unwrap();
        assert!(fs.lookup("/c/b2/h").is_ok());
        assert_eq!(fs.parent(b), Ok(fs.stat_path("/c").unwrap().ino));
        assert_eq!(fs.stat_path("/a").unwrap().nlink, 2);
        assert_eq!(fs.stat_path("/c").unwrap().nlink, 3);
        // Replacing: file over file, empty dir over empty dir; not across kinds.
        fs.mkdir("/e").unwrap();
        assert_eq!(fs.rename("/g", "/e").err(), Some(crate::fs::FsError::IsDir));
        assert_eq!(
            fs.rename("/e", "/g").err(),
            Some(crate::fs::FsError::NotDir)
        );
        assert_eq!(
            fs.rename("/e", "/c").err(),
            Some(crate::fs::FsError::NotEmpty)
        );
        fs.rename("/e", "/a").unwrap();
        assert_eq!(fs.stat_path("/a").unwrap().kind, Kind::Dir);
        fs.rename("/c/b2/h", "/g").unwrap();
        assert_eq!(fs.lookup("/g").unwrap().size(), 0);
        // Names are checked: too long, `.`/`..`, slashes.
        assert_eq!(
            FileSystem::create(
                &fs,
                ROOT,
                &"n".repeat(abi::syscall::limits::NAME_MAX + 1),
                Kind::File
            ),
            Err(ENAMETOOLONG)
        );
        assert_eq!(FileSystem::create(&fs, ROOT, "..", Kind::Dir), Err(EINVAL));
        assert_eq!(FileSystem::rename(&fs, ROOT, "g", ROOT, "x/y"), Err(EINVAL));
        // Everything comes back.
        for path in ["/g", "/c/b2/h"].iter().filter(|p| fs.lookup(p).is_ok()) {
            fs.unlink(path).unwrap();
        }
        fs.rmdir("/c/b2").unwrap();
        fs.rmdir("/c").unwrap();
        fs.rmdir("/a").unwrap();
        assert!(fs.is_empty());
        let sized = RamFs::with_size(1 << 20);
        sized.mkdir("/x").unwrap();
        sized.insert("/x/y/z", alloc::vec![1; 100]).unwrap();
        sized.rename("/x/y", "/longer-name").unwrap();
        // Replacing an empty directory and a file gives their charges back.
        sized.mkdir("/empty").unwrap();
        sized.rename("/longer-name", "/empty").unwrap();
        sized.insert("/victim", alloc::vec![2; 300]).unwrap();
        sized.rename("/empty/z", "/victim").unwrap();
        sized.unlink("/victim").unwrap();
        sized.rmdir("/empty").unwrap();
        sized.rmdir("/x").unwrap();
        assert_eq!(sized.used(), 0);
        assert!(sized.is_empty());
    }

    const ROOT: Ino = crate::fs::ROOT_INO;
}
