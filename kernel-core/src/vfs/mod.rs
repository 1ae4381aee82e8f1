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

pub mod mount;
pub mod path;

pub use mount::{Loc, Mount, Vfs};

use crate::fs::Inode;
use abi::errno::Errno;
use abi::syscall::limits::NAME_MAX;
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

/// One directory entry, as [`FileSystem::readdir`] hands it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEnt<'a> {
    pub name: &'a str,
    pub ino: Ino,
    pub kind: Kind,
    /// Bytes (0 for a directory).
    pub size: u64,
    /// The cursor that continues after this entry (Linux's `d_off`).
    pub next: u64,
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
        cursor: u64,
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

/// The longest name a file system must accept.
pub const NAME_LIMIT: usize = NAME_MAX;
