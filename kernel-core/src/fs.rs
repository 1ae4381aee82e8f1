//! A RAM file system and per-process file descriptor tables, as plain data
//! structures. [`RamFs`] locks inside and implements
//! [`crate::vfs::FileSystem`]; the kernel mounts it at `/`.
//!
//! The namespace is a tree of directories (the root is [`ROOT_INO`]).
//! Paths follow [`crate::vfs::path`]: `/a`, `//a` and `a` are the same
//! file, `.` and `..` work, a name is at most 255 bytes and a path at most
//! [`PATH_MAX`]. [`normalize`] is the older rule for a single name (still
//! used to check `init=`).
//!
//! Invariants:
//! - A file's contents never exceed [`MAX_FILE_SIZE`] bytes; a write or
//!   truncate that would pass it fails with `EFBIG` and changes nothing.
//! - Inode numbers are never reused within one [`RamFs`].
//! - Every file and directory but the root has exactly one name, in one
//!   directory; a directory's parent link always names the directory that
//!   holds its name, and no directory is below itself (`rename` refuses
//!   to move one there: `EINVAL`).
//! - A directory is removed only when empty (`ENOTEMPTY`), a file only by
//!   `unlink`, a directory only by `rmdir` (`EISDIR`, `ENOTDIR`).
//! - A file lives as long as an `Arc<Inode>` to it: [`RamFs::unlink`] only
//!   removes the name, so open files stay readable and writable and the
//!   data is freed when the last handle drops.
//! - An [`OpenFile`]'s offset never exceeds `i64::MAX`, so `lseek` can
//!   always report it.
//! - The file system has a size: every byte it holds for its users (file
//!   contents as allocated, each name, each inode) is charged to its
//!   [`Quota`] before it is allocated, and a write, truncate or create
//!   that would pass it fails with `ENOSPC` and changes nothing; at most
//!   [`MAX_INODES`] files and directories exist at once (`ENOSPC` too; a
//!   directory costs [`INODE_COST`] and its name). What a file holds
//!   is returned when the file is freed.
//! - Memory for names, the name table and file contents is reserved
//!   fallibly: running out is `ENOMEM`, never an abort. (The inode itself
//!   is one small `Arc`, which cannot be made fallibly; the size bounds how
//!   many there are.)
//! - An [`FdTable`] never holds more than [`FDS_MAX`] descriptors and always
//!   hands out the lowest free one; growing it is fallible (`ENOMEM`).

use crate::quota::Quota;
use abi::errno::Errno;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use hashbrown::HashMap;

use crate::vfs::{
    self, path::Component, path::Last, Attr, DirCursor, DirEnt, FileSystem, Ino, Kind,
};

use abi::open_flags::{O_ACCMODE, O_APPEND, O_CREAT, O_EXCL, O_KNOWN, O_RDWR, O_TRUNC, O_WRONLY};
use abi::seek::{SEEK_CUR, SEEK_END, SEEK_SET};
use abi::syscall::limits::{FDS_MAX, PATH_MAX};
use abi::{errno, DirEntry, FileStat, IntoBytes};

/// The largest a file may grow: 64 MiB.
pub const MAX_FILE_SIZE: u64 = 64 << 20;
/// Most files that exist at once (Linux's tmpfs `nr_inodes`); one more is
/// `ENOSPC`.
pub const MAX_INODES: usize = 65536;
/// Bytes of the file system's size an inode takes besides its contents
/// (the inode, its entry in the name table).
pub const INODE_COST: usize = 192;

/// Why a file system or descriptor operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// No file has that name, or the name is empty. `ENOENT`
    NotFound,
    /// The name is longer than [`PATH_MAX`] bytes. `ENAMETOOLONG`
    NameTooLong,
    /// The name contains NUL or is not UTF-8. `EINVAL`
    InvalidName,
    /// `O_CREAT | O_EXCL` and the name exists. `EEXIST`
    Exists,
    /// The file would grow past [`MAX_FILE_SIZE`]. `EFBIG`
    FileTooBig,
    /// No such descriptor, or the descriptor's access mode forbids the
    /// operation. `EBADF`
    BadFd,
    /// Unknown flags, access mode, or `whence`, or a negative offset. `EINVAL`
    InvalidArgument,
    /// The offset would not fit in an `i64`. `EOVERFLOW`
    Overflow,
    /// The descriptor table is full. `EMFILE`
    TooManyFiles,
    /// Memory could not be reserved. `ENOMEM`
    NoMemory,
    /// The file system is full: its size or its number of files. `ENOSPC`
    NoSpace,
    /// A directory where a file is wanted. `EISDIR`
    IsDir,
    /// A file where a directory is wanted. `ENOTDIR`
    NotDir,
    /// The directory is not empty. `ENOTEMPTY`
    NotEmpty,
}

impl FsError {
    /// The errno value user space sees.
    pub fn errno(&self) -> Errno {
        match self {
            FsError::NotFound => errno::ENOENT,
            FsError::NameTooLong => errno::ENAMETOOLONG,
            FsError::InvalidName => errno::EINVAL,
            FsError::Exists => errno::EEXIST,
            FsError::FileTooBig => errno::EFBIG,
            FsError::BadFd => errno::EBADF,
            FsError::InvalidArgument => errno::EINVAL,
            FsError::Overflow => errno::EOVERFLOW,
            FsError::TooManyFiles => errno::EMFILE,
            FsError::NoMemory => errno::ENOMEM,
            FsError::NoSpace => errno::ENOSPC,
            FsError::IsDir => errno::EISDIR,
            FsError::NotDir => errno::ENOTDIR,
            FsError::NotEmpty => errno::ENOTEMPTY,
        }
    }

    /// The error for an errno the path rules give (`ENOENT`,
    /// `ENAMETOOLONG`, `EINVAL`); anything else is `InvalidArgument`.
    fn from_errno(e: Errno) -> Self {
        match e {
            errno::ENOENT => FsError::NotFound,
            errno::ENAMETOOLONG => FsError::NameTooLong,
            errno::ENOTDIR => FsError::NotDir,
            errno::EINVAL => FsError::InvalidName,
            _ => FsError::InvalidArgument,
        }
    }

    /// `Exists` for the kind that is in the way of a new file.
    fn from_kind(kind: Kind) -> Self {
        match kind {
            Kind::File => FsError::Exists,
            Kind::Dir => FsError::IsDir,
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            FsError::NotFound => "no such file",
            FsError::NameTooLong => "file name too long",
            FsError::InvalidName => "invalid file name",
            FsError::Exists => "file exists",
            FsError::FileTooBig => "file too big",
            FsError::BadFd => "bad file descriptor",
            FsError::InvalidArgument => "invalid argument",
            FsError::Overflow => "offset overflow",
            FsError::TooManyFiles => "too many open files",
            FsError::NoMemory => "out of memory",
            FsError::NoSpace => "no space left on the file system",
            FsError::IsDir => "is a directory",
            FsError::NotDir => "not a directory",
            FsError::NotEmpty => "directory not empty",
        };
        write!(f, "{what} ({})", self.errno())
    }
}

/// The file name `path` refers to: leading `/`s stripped, then checked.
///
/// Empty (or only `/`) is `NotFound`, more than [`PATH_MAX`] bytes is
/// `NameTooLong`, a NUL byte is `InvalidName`.
pub fn normalize(path: &str) -> Result<&str, FsError> {
    let name = path.trim_start_matches('/');
    if name.is_empty() {
        Err(FsError::NotFound)
    } else if name.len() > PATH_MAX {
        Err(FsError::NameTooLong)
    } else if name.contains('\0') {
        Err(FsError::InvalidName)
    } else {
        Ok(name)
    }
}

/// Like [`normalize`], for a path copied from user space as bytes; bytes
/// that are not UTF-8 are `InvalidName`.
pub fn normalize_bytes(path: &[u8]) -> Result<&str, FsError> {
    let path = core::str::from_utf8(path).map_err(|_| FsError::InvalidName)?;
    normalize(path)
}

/// `len` as a `usize` if it is an allowed file size.
fn checked_size(len: u64) -> Result<usize, FsError> {
    if len > MAX_FILE_SIZE {
        return Err(FsError::FileTooBig);
    }
    usize::try_from(len).map_err(|_| FsError::FileTooBig)
}

/// A file's bytes and what they are charged.
#[derive(Debug)]
struct Contents {
    bytes: Vec<u8>,
    /// Bytes charged to the file system's quota for `bytes` (its capacity).
    charged: usize,
}

/// A file: a number and its bytes.
#[derive(Debug)]
pub struct Inode {
    ino: u64,
    data: spin::Mutex<Contents>,
    /// The file system's size, charged for this inode and its contents.
    space: Arc<Quota>,
}

impl Drop for Inode {
    fn drop(&mut self) {
        let charged = self.data.get_mut().charged;
        self.space.uncharge(charged + INODE_COST);
    }
}

impl Inode {
    /// An inode holding `data`, with `INODE_COST` and the data's capacity
    /// already charged to `space` by the caller.
    fn new(ino: u64, data: Vec<u8>, space: Arc<Quota>) -> Self {
        let charged = data.capacity();
        Inode {
            ino,
            data: spin::Mutex::new(Contents {
                bytes: data,
                charged,
            }),
            space,
        }
    }

    /// The inode number, unique within its file system.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The current size in bytes.
    pub fn size(&self) -> u64 {
        self.data.lock().bytes.len() as u64
    }

    /// Size and inode number, as `fstat` reports them.
    pub fn stat(&self) -> FileStat {
        FileStat {
            size: self.size(),
            ino: self.ino,
        }
    }

    /// Copies bytes from `offset` into `buf`; returns how many, 0 at or past
    /// the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let data = self.data.lock();
        let Ok(start) = usize::try_from(offset) else {
            return 0;
        };
        let Some(available) = data.bytes.get(start..) else {
            return 0;
        };
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        n
    }

    /// Writes all of `buf` at `offset`, growing the file (a gap past the old
    /// end reads as zeros). Fails with `EFBIG`, writing nothing, if the file
    /// would pass [`MAX_FILE_SIZE`], `ENOSPC` if the file system would pass
    /// its size, `ENOMEM` if memory runs out.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> Result<usize, FsError> {
        let mut data = self.data.lock();
        self.write_locked(&mut data, offset, buf)
    }

    /// Writes all of `buf` at the current end of the file, atomically with
    /// respect to other writers; returns the new size.
    pub fn append(&self, buf: &[u8]) -> Result<u64, FsError> {
        let mut data = self.data.lock();
        let end = data.bytes.len() as u64;
        self.write_locked(&mut data, end, buf)?;
        Ok(data.bytes.len() as u64)
    }

    /// Hands up to `len` bytes from `offset` to `sink` with the file locked
    /// (no intermediate copy); returns how many it handed over (0 at or past
    /// the end) or the sink's error.
    #[inline(always)]
    pub fn read_with<E>(
        &self,
        offset: u64,
        len: usize,
        sink: impl FnOnce(&[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let data = self.data.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let available = data.bytes.get(start..).unwrap_or(&[]);
        let n = available.len().min(len);
        sink(&available[..n])?;
        Ok(n)
    }

    /// Makes room for `len` bytes at `offset` (growing the file, a gap
    /// reading as zeros) and lets `fill` write them in place with the file
    /// locked. `fill` must write the whole slice; it cannot fail, so callers
    /// check their source first. `EFBIG` past [`MAX_FILE_SIZE`], `ENOSPC`
    /// past the file system's size, `ENOMEM` without memory: nothing
    /// changed. With `offset == None` the bytes go at the current end
    /// (append). Returns the offset just past the written bytes.
    #[inline(always)]
    pub fn write_with(
        &self,
        offset: Option<u64>,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64, FsError> {
        let mut data = self.data.lock();
        let offset = offset.unwrap_or(data.bytes.len() as u64);
        if len == 0 {
            return Ok(offset);
        }
        let end = offset.checked_add(len as u64).ok_or(FsError::FileTooBig)?;
        let end = checked_size(end)?;
        self.grow(&mut data, end)?;
        fill(&mut data.bytes[end - len..end]);
        Ok(end as u64)
    }

    fn write_locked(&self, data: &mut Contents, offset: u64, buf: &[u8]) -> Result<usize, FsError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(FsError::FileTooBig)?;
        let end = checked_size(end)?;
        let start = end - buf.len();
        self.grow(data, end)?;
        data.bytes[start..end].copy_from_slice(buf);
        Ok(buf.len())
    }

    /// Makes the contents at least `len` bytes long (zeros after the old
    /// end), charging what more memory that takes: amortized doubling, or
    /// when the file system has not that much room left, all the room there
    /// is (so that a file growing by small writes near a full file system
    /// does not copy itself at every write). `ENOSPC` or `ENOMEM`, nothing
    /// changed, if even `len` cannot be had.
    /// Makes the file at least `len` bytes long (zeros at the end); an
    /// overwrite inside the file returns at once, without a call.
    #[inline(always)]
    fn grow(&self, data: &mut Contents, len: usize) -> Result<(), FsError> {
        if len <= data.bytes.len() {
            return Ok(());
        }
        self.grow_slow(data, len)
    }

    #[inline(never)]
    fn grow_slow(&self, data: &mut Contents, len: usize) -> Result<(), FsError> {
        let capacity = data.bytes.capacity();
        if len > capacity {
            let doubled = capacity
                .saturating_mul(2)
                .min(MAX_FILE_SIZE as usize)
                .max(len);
            let extra = self
                .space
                .try_charge_between(
                    len.saturating_sub(data.charged),
                    doubled.saturating_sub(data.charged),
                    errno::ENOSPC,
                )
                .map_err(|_| FsError::NoSpace)?;
            let target = data.charged + extra;
            if data
                .bytes
                .try_reserve_exact(target - data.bytes.len())
                .is_err()
            {
                self.space.uncharge(extra);
                return Err(FsError::NoMemory);
            }
            data.charged = target;
            // The allocator may have given more than asked: charge that
            // too if there is room (it is held either way).
            let given = data.bytes.capacity();
            if given > data.charged && self.space.try_charge(given - data.charged).is_ok() {
                data.charged = given;
            }
        }
        // Within the capacity: does not allocate.
        data.bytes.resize(len, 0);
        Ok(())
    }

    /// Sets the size to `len`: cuts the file, or extends it with zeros.
    pub fn truncate(&self, len: u64) -> Result<(), FsError> {
        let len = checked_size(len)?;
        let mut data = self.data.lock();
        if len > data.bytes.len() {
            return self.grow(&mut data, len);
        }
        data.bytes.truncate(len);
        if len == 0 {
            // An emptied file gives its memory back.
            data.bytes = Vec::new();
            let charged = core::mem::take(&mut data.charged);
            self.space.uncharge(charged);
        }
        Ok(())
    }

    /// Runs `f` on the whole contents with the file locked (e.g. to check an
    /// executable and copy its segments without a second copy).
    pub fn with_data<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self.data.lock().bytes)
    }
}

/// Bytes of the file system's size a name takes.
fn name_cost(name: &str) -> usize {
    name.len()
}

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;

/// A name in a directory: the inode and the name's place in the listing
/// order (the directory's cursor for it).
#[derive(Debug)]
struct Slot {
    ino: u64,
    seq: u64,
}

/// A directory: its parent and its names.
#[derive(Debug)]
struct DirNode {
    parent: u64,
    entries: HashMap<String, Slot>,
    /// The next `Slot::seq`: names are listed in the order they were made.
    next_seq: u64,
    /// Subdirectories (for `nlink`).
    subdirs: u32,
}

impl DirNode {
    fn new(parent: u64) -> Self {
        DirNode {
            parent,
            entries: HashMap::new(),
            next_seq: 0,
            subdirs: 0,
        }
    }
}

#[derive(Debug)]
enum Node {
    File(Arc<Inode>),
    Dir(DirNode),
}

/// The directory tree: every live file and directory by inode number.
#[derive(Debug)]
struct Tree {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

impl Tree {
    fn node(&self, ino: u64) -> Result<&Node, FsError> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn dir(&self, ino: u64) -> Result<&DirNode, FsError> {
        match self.node(ino)? {
            Node::Dir(d) => Ok(d),
            Node::File(_) => Err(FsError::NotDir),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut DirNode, FsError> {
        match self.nodes.get_mut(&ino).ok_or(FsError::NotFound)? {
            Node::Dir(d) => Ok(d),
            Node::File(_) => Err(FsError::NotDir),
        }
    }

    fn kind(&self, ino: u64) -> Result<Kind, FsError> {
        Ok(match self.node(ino)? {
            Node::File(_) => Kind::File,
            Node::Dir(_) => Kind::Dir,
        })
    }

    fn lookup(&self, dir: u64, name: &str) -> Result<(u64, Kind), FsError> {
        let slot = self.dir(dir)?.entries.get(name).ok_or(FsError::NotFound)?;
        Ok((slot.ino, self.kind(slot.ino)?))
    }

    /// The inode `path` names (rules: [`crate::vfs::path`], no mounts).
    fn walk(&self, path: &str) -> Result<u64, FsError> {
        vfs::path::check(path).map_err(FsError::from_errno)?;
        let mut ino = ROOT_INO;
        for component in vfs::path::components(path) {
            ino = match component.map_err(FsError::from_errno)? {
                Component::Parent => self.dir(ino)?.parent,
                Component::Name(name) => self.lookup(ino, name)?.0,
            };
        }
        if vfs::path::wants_dir(path) {
            self.dir(ino)?;
        }
        Ok(ino)
    }

    /// The directory of `path`'s last component, and that component
    /// (`NotFound` if the path has none: `/`, `.`, `..`).
    fn walk_parent<'p>(&self, path: &'p str) -> Result<(u64, &'p str), FsError> {
        match vfs::path::split_last(path).map_err(FsError::from_errno)? {
            Last::Special => Err(FsError::NotFound),
            Last::Name { dir, name } => {
                let dir = if dir.is_empty() {
                    ROOT_INO
                } else {
                    self.walk(dir)?
                };
                self.dir(dir)?;
                Ok((dir, name))
            }
        }
    }

    /// Whether `ino` is `ancestor` or below it.
    fn is_within(&self, mut ino: u64, ancestor: u64) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.dir(ino) {
                Ok(d) if ino != ROOT_INO => ino = d.parent,
                _ => return false,
            }
        }
    }
}

/// Gives a table's memory back once it is mostly empty (tables never
/// shrink by themselves): moves the entries into one a quarter the size.
/// Fallible: without memory for the new table the old one stays.
fn shrink<K: Eq + core::hash::Hash, V>(map: &mut HashMap<K, V>) {
    let len = map.len();
    if map.capacity() < 64 || len * 8 > map.capacity() {
        return;
    }
    let mut smaller = HashMap::new();
    if smaller.try_reserve(len * 2).is_ok() {
        // Room reserved: moving the entries does not allocate.
        smaller.extend(map.drain());
        *map = smaller;
    }
}

/// A copy of `name` in memory reserved fallibly.
fn try_string(name: &str) -> Result<String, FsError> {
    let mut key = String::new();
    key.try_reserve_exact(name.len())
        .map_err(|_| FsError::NoMemory)?;
    key.push_str(name);
    Ok(key)
}

/// The RAM file system: a tree of directories and files, locked inside
/// (every method takes `&self`), so that it can be shared as a
/// [`FileSystem`] by the mount table and open files.
///
/// Besides the [`FileSystem`] operations on inode numbers it keeps the
/// path-based calls (`open`, `lookup`, `insert`, `unlink`, `rename`) that
/// the kernel's program loader, the initrd and the ring tests use; those
/// resolve paths inside this file system only (no mounts).
#[derive(Debug)]
pub struct RamFs {
    tree: spin::Mutex<Tree>,
    /// Its size: what every inode, name and byte of contents is charged to.
    space: Arc<Quota>,
}

impl Default for RamFs {
    fn default() -> Self {
        Self::new()
    }
}

impl RamFs {
    /// An empty file system without a size limit.
    pub fn new() -> Self {
        Self::with_size(usize::MAX)
    }

    /// An empty file system of `bytes` bytes: what its files hold (contents
    /// as allocated, names, [`INODE_COST`] per file or directory) never
    /// passes that. The root directory costs nothing.
    pub fn with_size(bytes: usize) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT_INO, Node::Dir(DirNode::new(ROOT_INO)));
        RamFs {
            tree: spin::Mutex::new(Tree {
                nodes,
                next_ino: ROOT_INO + 1,
            }),
            space: Arc::new(Quota::new(bytes)),
        }
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.space.limit()
    }

    /// Bytes of the size in use (files unlinked but still open included).
    pub fn used(&self) -> usize {
        self.space.used()
    }

    /// Makes `name` in `dir`: a file holding `data`, or an empty directory
    /// (`data` empty). With `replace`, an existing file of that name is
    /// replaced by the new one (it lives on while open); otherwise an
    /// existing name is `Exists`. Charges the name (unless replacing), the
    /// inode and `data`'s capacity first: `ENOSPC` past the size or
    /// [`MAX_INODES`], `ENOMEM` without memory, nothing changed.
    fn make(
        &self,
        tree: &mut Tree,
        dir: u64,
        name: &str,
        kind: Kind,
        data: Vec<u8>,
        replace: bool,
    ) -> Result<u64, FsError> {
        let existing = match tree.dir(dir)?.entries.get(name) {
            Some(slot) if replace && matches!(tree.node(slot.ino)?, Node::File(_)) => {
                Some(slot.ino)
            }
            Some(slot) if replace => return Err(FsError::from_kind(tree.kind(slot.ino)?)),
            Some(_) => return Err(FsError::Exists),
            None => None,
        };
        // The root is not counted.
        if existing.is_none() && tree.nodes.len() > MAX_INODES {
            return Err(FsError::NoSpace);
        }
        let cost = INODE_COST
            + data.capacity()
            + if existing.is_some() {
                0
            } else {
                name_cost(name)
            };
        self.space.try_charge(cost).map_err(|_| FsError::NoSpace)?;
        let prepared = (|| {
            tree.nodes.try_reserve(1).map_err(|_| FsError::NoMemory)?;
            if existing.is_some() {
                return Ok(None);
            }
            let key = try_string(name)?;
            tree.dir_mut(dir)?
                .entries
                .try_reserve(1)
                .map_err(|_| FsError::NoMemory)?;
            Ok(Some(key))
        })();
        let key = match prepared {
            Ok(key) => key,
            Err(e) => {
                self.space.uncharge(cost);
                return Err(e);
            }
        };
        let ino = tree.next_ino;
        tree.next_ino += 1;
        // A file's inode now owns its charge (returned when it is freed); a
        // directory's is returned by `rmdir`; the name's stays with the
        // entry. Room was reserved: no allocation below.
        let node = match kind {
            Kind::File => Node::File(Arc::new(Inode::new(ino, data, Arc::clone(&self.space)))),
            Kind::Dir => Node::Dir(DirNode::new(dir)),
        };
        tree.nodes.insert(ino, node);
        let parent = tree.dir_mut(dir)?;
        match (existing, key) {
            (Some(old), _) => {
                if let Some(slot) = parent.entries.get_mut(name) {
                    slot.ino = ino;
                }
                // A replaced file lives on while it is open.
                tree.nodes.remove(&old);
            }
            (None, Some(key)) => {
                let seq = parent.next_seq;
                parent.next_seq += 1;
                if kind == Kind::Dir {
                    parent.subdirs += 1;
                }
                parent.entries.insert(key, Slot { ino, seq });
            }
            (None, None) => {}
        }
        Ok(ino)
    }

    fn file(tree: &Tree, ino: u64) -> Result<Arc<Inode>, FsError> {
        match tree.node(ino)? {
            Node::File(inode) => Ok(Arc::clone(inode)),
            Node::Dir(_) => Err(FsError::IsDir),
        }
    }

    fn remove(&self, dir: u64, name: &str, kind: Kind) -> Result<(), FsError> {
        let mut tree = self.tree.lock();
        let (ino, found) = tree.lookup(dir, name)?;
        match (kind, found) {
            (Kind::File, Kind::Dir) => return Err(FsError::IsDir),
            (Kind::Dir, Kind::File) => return Err(FsError::NotDir),
            (Kind::Dir, Kind::Dir) if !tree.dir(ino)?.entries.is_empty() => {
                return Err(FsError::NotEmpty)
            }
            _ => {}
        }
        let parent = tree.dir_mut(dir)?;
        if let Some((key, _)) = parent.entries.remove_entry(name) {
            self.space.uncharge(name_cost(&key));
        }
        if found == Kind::Dir {
            parent.subdirs = parent.subdirs.saturating_sub(1);
            self.space.uncharge(INODE_COST);
        }
        shrink(&mut parent.entries);
        // A file's inode lives on while it is open.
        tree.nodes.remove(&ino);
        shrink(&mut tree.nodes);
        Ok(())
    }

    fn rename_at(
        &self,
        olddir: u64,
        oldname: &str,
        newdir: u64,
        newname: &str,
    ) -> Result<(), FsError> {
        let mut tree = self.tree.lock();
        let (src, kind) = tree.lookup(olddir, oldname)?;
        tree.dir(newdir)?;
        if olddir == newdir && oldname == newname {
            return Ok(());
        }
        if kind == Kind::Dir && tree.is_within(newdir, src) {
            return Err(FsError::InvalidArgument);
        }
        let target = match tree.lookup(newdir, newname) {
            Ok(found) => Some(found),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        if let Some((dst, dst_kind)) = target {
            match (kind, dst_kind) {
                (Kind::File, Kind::Dir) => return Err(FsError::IsDir),
                (Kind::Dir, Kind::File) => return Err(FsError::NotDir),
                (Kind::Dir, Kind::Dir) if !tree.dir(dst)?.entries.is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
            // The name `newname` keeps its entry (and its charge); only
            // the inode behind it changes. No allocation.
            let parent = tree.dir_mut(newdir)?;
            if let Some(slot) = parent.entries.get_mut(newname) {
                slot.ino = src;
            }
            if dst_kind == Kind::Dir {
                parent.subdirs = parent.subdirs.saturating_sub(1);
                self.space.uncharge(INODE_COST);
            }
            tree.nodes.remove(&dst);
        } else {
            // The entry changes its name only: charge what the new name
            // adds, return what it saves once the entry moved.
            let cost = name_cost(newname).saturating_sub(name_cost(oldname));
            self.space.try_charge(cost).map_err(|_| FsError::NoSpace)?;
            let prepared = (|| {
                let key = try_string(newname)?;
                tree.dir_mut(newdir)?
                    .entries
                    .try_reserve(1)
                    .map_err(|_| FsError::NoMemory)?;
                Ok(key)
            })();
            let key = match prepared {
                Ok(key) => key,
                Err(e) => {
                    self.space.uncharge(cost);
                    return Err(e);
                }
            };
            self.space
                .uncharge(name_cost(oldname).saturating_sub(name_cost(newname)));
            let parent = tree.dir_mut(newdir)?;
            let seq = parent.next_seq;
            parent.next_seq += 1;
            if kind == Kind::Dir {
                parent.subdirs += 1;
            }
            // Room was reserved: no allocation.
            parent.entries.insert(key, Slot { ino: src, seq });
            let old = tree.dir_mut(olddir)?;
            if kind == Kind::Dir {
                old.subdirs = old.subdirs.saturating_sub(1);
            }
            old.entries.remove(oldname);
            shrink(&mut old.entries);
            if kind == Kind::Dir {
                if let Ok(moved) = tree.dir_mut(src) {
                    moved.parent = newdir;
                }
            }
            return Ok(());
        }
        // Replacing: the source's entry goes.
        let old = tree.dir_mut(olddir)?;
        if kind == Kind::Dir {
            old.subdirs = old.subdirs.saturating_sub(1);
        }
        if let Some((key, _)) = old.entries.remove_entry(oldname) {
            self.space.uncharge(name_cost(&key));
        }
        shrink(&mut old.entries);
        if kind == Kind::Dir {
            if let Ok(moved) = tree.dir_mut(src) {
                moved.parent = newdir;
            }
            if let Ok(parent) = tree.dir_mut(newdir) {
                parent.subdirs += 1;
            }
        }
        Ok(())
    }

    /// Opens `path` following `abi::open_flags`: `O_CREAT` creates a missing
    /// file, `O_CREAT | O_EXCL` fails with `EEXIST` if it exists, `O_TRUNC`
    /// empties it (as on Linux, whatever the access mode). Unknown flags or
    /// access mode 3 are `EINVAL`; a new file past the file system's size
    /// is `ENOSPC`; a directory is `EISDIR`. The access mode itself is
    /// enforced by [`OpenFile`].
    pub fn open(&self, path: &str, flags: u64) -> Result<Arc<Inode>, FsError> {
        check_flags(flags)?;
        let mut tree = self.tree.lock();
        match tree.walk(path) {
            Ok(ino) => {
                if flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL {
                    return Err(FsError::Exists);
                }
                let inode = Self::file(&tree, ino)?;
                if flags & O_TRUNC != 0 {
                    inode.truncate(0)?;
                }
                Ok(inode)
            }
            Err(FsError::NotFound) if flags & O_CREAT != 0 => {
                let (dir, name) = tree.walk_parent(path)?;
                let ino = self.make(&mut tree, dir, name, Kind::File, Vec::new(), false)?;
                Self::file(&tree, ino)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens `path` and wraps it in an [`OpenFile`] at offset 0.
    pub fn open_file(&self, path: &str, flags: u64) -> Result<OpenFile, FsError> {
        let inode = self.open(path, flags)?;
        OpenFile::new(inode, flags)
    }

    /// Creates a new empty file; `EEXIST` if the name is taken. The same as
    /// `open(path, O_CREAT | O_EXCL)`.
    pub fn create(&self, path: &str) -> Result<Arc<Inode>, FsError> {
        self.open(path, O_CREAT | O_EXCL)
    }

    /// The file called `path` (`IsDir` for a directory).
    pub fn lookup(&self, path: &str) -> Result<Arc<Inode>, FsError> {
        let tree = self.tree.lock();
        let ino = tree.walk(path)?;
        Self::file(&tree, ino)
    }

    /// Metadata of the file or directory `path`.
    pub fn stat_path(&self, path: &str) -> Result<Attr, Errno> {
        let ino = self.tree.lock().walk(path)?;
        FileSystem::stat(self, ino)
    }

    /// Makes the directory `path`; `Exists` if the name is taken.
    pub fn mkdir(&self, path: &str) -> Result<u64, FsError> {
        let mut tree = self.tree.lock();
        let (dir, name) = tree.walk_parent(path)?;
        self.make(&mut tree, dir, name, Kind::Dir, Vec::new(), false)
    }

    /// Binds `path` to a new file holding `data` (for filling the file
    /// system from the initrd), making missing directories on the way. An
    /// existing file of that name is replaced, so the last of several
    /// entries wins.
    pub fn insert(&self, path: &str, data: Vec<u8>) -> Result<Arc<Inode>, FsError> {
        let name = normalize(path)?;
        checked_size(data.len() as u64)?;
        let mut tree = self.tree.lock();
        let (dir, name) = match vfs::path::split_last(name).map_err(FsError::from_errno)? {
            Last::Special => return Err(FsError::NotFound),
            Last::Name { dir, name } => {
                let mut at = ROOT_INO;
                for component in vfs::path::components(dir) {
                    at = match component.map_err(FsError::from_errno)? {
                        Component::Parent => tree.dir(at)?.parent,
                        Component::Name(part) => match tree.lookup(at, part) {
                            Ok((ino, _)) => ino,
                            Err(FsError::NotFound) => {
                                self.make(&mut tree, at, part, Kind::Dir, Vec::new(), false)?
                            }
                            Err(e) => return Err(e),
                        },
                    };
                }
                (at, name)
            }
        };
        let ino = self.make(&mut tree, dir, name, Kind::File, data, true)?;
        Self::file(&tree, ino)
    }

    /// Removes the file `path` (`IsDir` for a directory); open handles
    /// keep the file alive.
    pub fn unlink(&self, path: &str) -> Result<(), FsError> {
        let (dir, name) = self.tree.lock().walk_parent(path)?;
        self.remove(dir, name, Kind::File)
    }

    /// Removes the empty directory `path`.
    pub fn rmdir(&self, path: &str) -> Result<(), FsError> {
        let (dir, name) = self.tree.lock().walk_parent(path)?;
        self.remove(dir, name, Kind::Dir)
    }

    /// How many files and directories exist (the root not counted).
    pub fn len(&self) -> usize {
        self.tree.lock().nodes.len() - 1
    }

    /// Whether only the empty root exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives the file or directory `old` the name `new`, replacing any
    /// file called `new` (POSIX `rename`: handles open on either stay
    /// valid, a replaced file lives on while open). See
    /// [`FileSystem::rename`] for directories. Charges the new name first:
    /// `ENOSPC` past the size, `ENOMEM` without memory for it, nothing
    /// changed.
    pub fn rename(&self, old: &str, new: &str) -> Result<(), FsError> {
        let ((odir, oname), (ndir, nname)) = {
            let tree = self.tree.lock();
            (tree.walk_parent(old)?, tree.walk_parent(new)?)
        };
        self.rename_at(odir, oname, ndir, nname)
    }

    /// Writes [`abi::DirEntry`] records (head, name, padding to 8) into
    /// `buf` for the names in `/` that sort (bytewise) strictly after
    /// `after`, in that order, as many whole records as fit; returns the
    /// bytes written, 0 when no name comes after `after`. `InvalidArgument`
    /// if the first record due does not fit. The names are sorted into a
    /// scratch list reserved fallibly (`ENOMEM`); only as many as `buf`
    /// could hold are sorted, so one call costs O(files). (The
    /// `list_files` call; directories show with size 0.)
    pub fn list_after(&self, after: &[u8], buf: &mut [u8]) -> Result<usize, FsError> {
        let tree = self.tree.lock();
        let root = tree.dir(ROOT_INO)?;
        let mut names: Vec<(&str, u64)> = Vec::new();
        let later = root
            .entries
            .iter()
            .filter(|(name, _)| name.as_bytes() > after);
        names
            .try_reserve_exact(later.clone().count())
            .map_err(|_| FsError::NoMemory)?;
        names.extend(later.map(|(name, slot)| (name.as_str(), slot.ino)));
        // No record is shorter than a head plus one byte of name.
        let most = (buf.len() / DirEntry::record_len(1)).min(names.len());
        if most == 0 {
            return if names.is_empty() {
                Ok(0)
            } else {
                Err(FsError::InvalidArgument)
            };
        }
        if most < names.len() {
            names.select_nth_unstable_by(most - 1, |a, b| a.0.cmp(b.0));
            names.truncate(most);
        }
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut written = 0;
        for (name, ino) in names {
            let reclen = DirEntry::record_len(name.len());
            let Some(record) = buf.get_mut(written..written + reclen) else {
                break;
            };
            let size = match tree.node(ino) {
                Ok(Node::File(inode)) => inode.size(),
                _ => 0,
            };
            let head = DirEntry {
                ino,
                size,
                reclen: reclen as u32,
                name_len: name.len() as u32,
            };
            let (head_bytes, rest) = record.split_at_mut(core::mem::size_of::<DirEntry>());
            head_bytes.copy_from_slice(head.as_bytes());
            rest[..name.len()].copy_from_slice(name.as_bytes());
            rest[name.len()..].fill(0);
            written += reclen;
        }
        if written == 0 {
            return Err(FsError::InvalidArgument);
        }
        Ok(written)
    }

    /// The names in `/`, with their inode numbers, in no particular order
    /// (a snapshot: the tree is locked only while it is taken).
    pub fn root_names(&self) -> Vec<(String, u64)> {
        let tree = self.tree.lock();
        tree.dir(ROOT_INO)
            .map(|d| {
                d.entries
                    .iter()
                    .map(|(name, slot)| (name.clone(), slot.ino))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl FileSystem for RamFs {
    fn name(&self) -> &'static str {
        "ramfs"
    }

    fn root(&self) -> Ino {
        ROOT_INO
    }

    fn might_sleep(&self) -> bool {
        false
    }

    fn lookup(&self, dir: Ino, name: &str) -> Result<(Ino, Kind), Errno> {
        Ok(self.tree.lock().lookup(dir, name)?)
    }

    fn parent(&self, dir: Ino) -> Result<Ino, Errno> {
        Ok(self.tree.lock().dir(dir)?.parent)
    }

    fn stat(&self, ino: Ino) -> Result<Attr, Errno> {
        let tree = self.tree.lock();
        Ok(match tree.node(ino)? {
            Node::File(inode) => Attr {
                ino,
                kind: Kind::File,
                size: inode.size(),
                nlink: 1,
            },
            Node::Dir(d) => Attr {
                ino,
                kind: Kind::Dir,
                size: 0,
                nlink: 2 + d.subdirs,
            },
        })
    }

    fn create(&self, dir: Ino, name: &str, kind: Kind) -> Result<Ino, Errno> {
        vfs::path::check_name(name)?;
        let mut tree = self.tree.lock();
        Ok(self.make(&mut tree, dir, name, kind, Vec::new(), false)?)
    }

    fn unlink(&self, dir: Ino, name: &str) -> Result<(), Errno> {
        Ok(self.remove(dir, name, Kind::File)?)
    }

    fn rmdir(&self, dir: Ino, name: &str) -> Result<(), Errno> {
        Ok(self.remove(dir, name, Kind::Dir)?)
    }

    fn rename(&self, olddir: Ino, oldname: &str, newdir: Ino, newname: &str) -> Result<(), Errno> {
        vfs::path::check_name(newname)?;
        Ok(self.rename_at(olddir, oldname, newdir, newname)?)
    }

    /// Lists in the order names were made (a rename makes a name anew);
    /// the cursor is that order's number. One call sorts the directory's
    /// remaining names (a scratch list reserved fallibly, `ENOMEM`): O(n
    /// log n) per call, fine for the RAM file system's sizes. `sink` runs
    /// with the tree locked and must not call back into this file system.
    fn readdir(
        &self,
        dir: Ino,
        cursor: DirCursor,
        sink: &mut dyn FnMut(&DirEnt<'_>) -> bool,
    ) -> Result<(), Errno> {
        let tree = self.tree.lock();
        let d = match tree.dir(dir) {
            Ok(d) => d,
            // A directory removed while open lists nothing, as on Linux.
            Err(FsError::NotFound) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let later = d
            .entries
            .iter()
            .filter(|(_, slot)| u128::from(slot.seq) >= cursor);
        let mut names: Vec<(&str, &Slot)> = Vec::new();
        names
            .try_reserve_exact(later.clone().count())
            .map_err(|_| errno::ENOMEM)?;
        names.extend(later.map(|(name, slot)| (name.as_str(), slot)));
        names.sort_unstable_by_key(|(_, slot)| slot.seq);
        for (name, slot) in names {
            let (kind, size) = match tree.node(slot.ino)? {
                Node::File(inode) => (Kind::File, inode.size()),
                Node::Dir(_) => (Kind::Dir, 0),
            };
            let entry = DirEnt {
                name: name.as_bytes(),
                ino: slot.ino,
                kind,
                size,
                next: u128::from(slot.seq) + 1,
            };
            if !sink(&entry) {
                break;
            }
        }
        Ok(())
    }

    fn read_at(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let inode = Self::file(&self.tree.lock(), ino)?;
        Ok(inode.read_at(offset, buf))
    }

    fn write_at(&self, ino: Ino, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        let inode = Self::file(&self.tree.lock(), ino)?;
        Ok(inode.write_at(offset, buf)?)
    }

    fn truncate(&self, ino: Ino, len: u64) -> Result<(), Errno> {
        let inode = Self::file(&self.tree.lock(), ino)?;
        Ok(inode.truncate(len)?)
    }

    /// RAM files have no backing store: once written they are as durable
    /// as they will ever be.
    fn fsync(&self, ino: Ino, _datasync: bool) -> Result<(), Errno> {
        self.tree.lock().node(ino)?;
        Ok(())
    }

    fn ram_file(&self, ino: Ino) -> Option<Arc<Inode>> {
        Self::file(&self.tree.lock(), ino).ok()
    }
}

fn check_flags(flags: u64) -> Result<(), FsError> {
    if flags & !O_KNOWN != 0 || flags & O_ACCMODE == O_ACCMODE {
        Err(FsError::InvalidArgument)
    } else {
        Ok(())
    }
}

/// An open file: an inode, a position, and the flags it was opened with.
#[derive(Clone, Debug)]
pub struct OpenFile {
    inode: Arc<Inode>,
    offset: u64,
    flags: u64,
}

impl OpenFile {
    /// A handle on `inode` at offset 0. Only the access mode and `O_APPEND`
    /// of `flags` matter here; invalid flags are `EINVAL`.
    pub fn new(inode: Arc<Inode>, flags: u64) -> Result<Self, FsError> {
        check_flags(flags)?;
        Ok(OpenFile {
            inode,
            offset: 0,
            flags,
        })
    }

    /// The file.
    pub fn inode(&self) -> &Arc<Inode> {
        &self.inode
    }

    /// The current position.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The flags given at open.
    pub fn flags(&self) -> u64 {
        self.flags
    }

    fn readable(&self) -> bool {
        self.flags & O_ACCMODE != O_WRONLY
    }

    fn writable(&self) -> bool {
        matches!(self.flags & O_ACCMODE, O_WRONLY | O_RDWR)
    }

    /// Reads from the current position and advances it. `EBADF` if opened
    /// `O_WRONLY`.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, FsError> {
        if !self.readable() {
            return Err(FsError::BadFd);
        }
        let n = self.inode.read_at(self.offset, buf);
        self.offset += n as u64;
        Ok(n)
    }

    /// Writes at the current position (at the end with `O_APPEND`) and
    /// advances it. `EBADF` if opened `O_RDONLY`.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, FsError> {
        if !self.writable() {
            return Err(FsError::BadFd);
        }
        if self.flags & O_APPEND != 0 {
            self.offset = self.inode.append(buf)?;
            Ok(buf.len())
        } else {
            let n = self.inode.write_at(self.offset, buf)?;
            self.offset += n as u64;
            Ok(n)
        }
    }

    /// Reads up to `len` bytes at `offset` (`None`: the current position,
    /// which then advances) by handing the file's bytes to `sink`, without a
    /// bounce buffer. `EBADF` if opened `O_WRONLY`.
    #[inline(always)]
    pub fn read_via(
        &mut self,
        offset: Option<u64>,
        len: usize,
        sink: impl FnOnce(&[u8]) -> Result<(), Errno>,
    ) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(FsError::BadFd.errno());
        }
        let n = self
            .inode
            .read_with(offset.unwrap_or(self.offset), len, sink)?;
        if offset.is_none() {
            self.offset += n as u64;
        }
        Ok(n)
    }

    /// Writes `len` bytes at `offset` (`None`: the current position, which
    /// then advances; with `O_APPEND` always the end) produced in place by
    /// `fill`, which must not fail (check the source first). `EBADF` if
    /// opened `O_RDONLY`.
    #[inline(always)]
    pub fn write_via(
        &mut self,
        offset: Option<u64>,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize, FsError> {
        if !self.writable() {
            return Err(FsError::BadFd);
        }
        let at = if self.flags & O_APPEND != 0 {
            None
        } else {
            Some(offset.unwrap_or(self.offset))
        };
        let end = self.inode.write_with(at, len, fill)?;
        if offset.is_none() {
            self.offset = end;
        }
        Ok(len)
    }

    /// Moves the position: to `offset` (`SEEK_SET`), by `offset`
    /// (`SEEK_CUR`), or to the end plus `offset` (`SEEK_END`). Returns the
    /// new position. A negative result or unknown `whence` is `EINVAL`, a
    /// result past `i64::MAX` is `EOVERFLOW`. Seeking past the end is
    /// allowed; a later write fills the gap with zeros.
    pub fn lseek(&mut self, offset: i64, whence: u64) -> Result<u64, FsError> {
        let base = match whence {
            SEEK_SET => 0,
            SEEK_CUR => self.offset,
            SEEK_END => self.inode.size(),
            _ => return Err(FsError::InvalidArgument),
        };
        // Both bases are at most i64::MAX (offset by invariant, size by
        // MAX_FILE_SIZE), so the conversion cannot fail.
        let base = i64::try_from(base).map_err(|_| FsError::Overflow)?;
        let new = base.checked_add(offset).ok_or(FsError::Overflow)?;
        let new = u64::try_from(new).map_err(|_| FsError::InvalidArgument)?;
        self.offset = new;
        Ok(new)
    }
}

/// A process's file descriptors: a slot per number below [`FDS_MAX`],
/// generic over what a descriptor refers to (the kernel's own enum of
/// console, file, ring...).
#[derive(Debug)]
pub struct FdTable<T> {
    slots: Vec<Option<T>>,
    open: usize,
}

impl<T> Default for FdTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> FdTable<T> {
    /// An empty table.
    pub const fn new() -> Self {
        FdTable {
            slots: Vec::new(),
            open: 0,
        }
    }

    fn index(fd: u64) -> Option<usize> {
        usize::try_from(fd).ok().filter(|&i| i < FDS_MAX)
    }

    /// Stores `file` at the lowest free descriptor and returns it. `EMFILE`
    /// (dropping `file`) if all [`FDS_MAX`] are in use, `ENOMEM` if the
    /// table cannot grow.
    pub fn insert(&mut self, file: T) -> Result<u64, FsError> {
        let index = match self.slots.iter().position(Option::is_none) {
            Some(index) => index,
            None if self.slots.len() < FDS_MAX => {
                self.slots.try_reserve(1).map_err(|_| FsError::NoMemory)?;
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err(FsError::TooManyFiles),
        };
        self.slots[index] = Some(file);
        self.open += 1;
        Ok(index as u64)
    }

    /// Stores `file` at descriptor `fd` (e.g. the console at 0-2, or for
    /// `dup2`), returning what was there. `EBADF` if `fd >= FDS_MAX`,
    /// `ENOMEM` if the table cannot grow.
    pub fn insert_at(&mut self, fd: u64, file: T) -> Result<Option<T>, FsError> {
        let index = Self::index(fd).ok_or(FsError::BadFd)?;
        if index >= self.slots.len() {
            self.slots
                .try_reserve(index + 1 - self.slots.len())
                .map_err(|_| FsError::NoMemory)?;
            self.slots.resize_with(index + 1, || None);
        }
        let old = self.slots[index].replace(file);
        if old.is_none() {
            self.open += 1;
        }
        Ok(old)
    }

    /// The object at `fd`.
    pub fn get(&self, fd: u64) -> Option<&T> {
        // No test against `FDS_MAX`: the table never grows past it
        // (`insert`, `insert_at`), so the slice's bound is that test too.
        self.slots.get(usize::try_from(fd).ok()?)?.as_ref()
    }

    /// The object at `fd`, mutably (e.g. to move a file offset).
    pub fn get_mut(&mut self, fd: u64) -> Option<&mut T> {
        self.slots.get_mut(Self::index(fd)?)?.as_mut()
    }

    /// Takes the object out of `fd` (`close`). `EBADF` if `fd` is not open.
    pub fn remove(&mut self, fd: u64) -> Result<T, FsError> {
        let index = Self::index(fd).ok_or(FsError::BadFd)?;
        let file = self
            .slots
            .get_mut(index)
            .and_then(Option::take)
            .ok_or(FsError::BadFd)?;
        self.open -= 1;
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        Ok(file)
    }

    /// Empties the table (process exit), yielding each open descriptor in
    /// increasing order. Descriptors not consumed are dropped with the
    /// iterator.
    pub fn drain(&mut self) -> impl Iterator<Item = (u64, T)> + '_ {
        self.open = 0;
        self.slots
            .drain(..)
            .enumerate()
            .filter_map(|(fd, slot)| Some((fd as u64, slot?)))
    }

    /// How many descriptors are open.
    pub fn len(&self) -> usize {
        self.open
    }

    /// Whether no descriptor is open.
    pub fn is_empty(&self) -> bool {
        self.open == 0
    }

    /// Every open descriptor, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(fd, slot)| Some((fd as u64, slot.as_ref()?)))
    }
}

impl From<FsError> for Errno {
    fn from(e: FsError) -> Errno {
        e.errno()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_copy_read_and_write_via() {
        let fs = RamFs::new();
        let mut f = fs.open_file("z", O_CREAT | O_RDWR).unwrap();
        assert_eq!(f.write_via(None, 5, |d| d.copy_from_slice(b"hello")), Ok(5));
        assert_eq!(f.offset(), 5);
        assert_eq!(
            f.write_via(Some(10), 2, |d| d.copy_from_slice(b"!!")),
            Ok(2)
        );
        assert_eq!(f.offset(), 5, "a positioned write leaves the offset");
        assert_eq!(f.inode().size(), 12);
        let mut seen = Vec::new();
        assert_eq!(
            f.read_via(Some(0), 100, |d| {
                seen.extend_from_slice(d);
                Ok(())
            }),
            Ok(12)
        );
        assert_eq!(&seen[..], b"hello\0\0\0\0\0!!");
        assert_eq!(f.offset(), 5);
        assert_eq!(
            f.read_via(None, 3, |_| Err(abi::errno::EFAULT)),
            Err(abi::errno::EFAULT)
        );
        assert_eq!(f.offset(), 5, "a failed sink moves nothing");
        let mut ro = fs.open_file("z", O_RDONLY).unwrap();
        assert_eq!(ro.write_via(None, 1, |d| d[0] = 1), Err(FsError::BadFd));
        assert_eq!(
            f.write_via(Some(MAX_FILE_SIZE), 1, |d| d[0] = 1),
            Err(FsError::FileTooBig)
        );
    }

    use super::*;
    use abi::open_flags::O_RDONLY;
    use alloc::sync::Weak;
    use alloc::vec;

    /// Inode 1 of a file system without a size limit.
    fn test_inode(data: Vec<u8>) -> Inode {
        Inode::new(1, data, Arc::new(Quota::new(usize::MAX)))
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize("a"), Ok("a"));
        assert_eq!(normalize("/a"), Ok("a"));
        assert_eq!(normalize("///a/b"), Ok("a/b"));
        assert_eq!(normalize("héllo"), Ok("héllo"));
        assert_eq!(normalize(""), Err(FsError::NotFound));
        assert_eq!(normalize("/"), Err(FsError::NotFound));
        assert_eq!(normalize("//"), Err(FsError::NotFound));
        assert_eq!(normalize("a\0"), Err(FsError::InvalidName));
        let longest = "x".repeat(PATH_MAX);
        assert_eq!(normalize(&longest), Ok(longest.as_str()));
        assert_eq!(
            normalize(&"x".repeat(PATH_MAX + 1)),
            Err(FsError::NameTooLong)
        );
        // The limit applies to the name, not the leading slashes.
        let slashed = format!("/{longest}");
        assert_eq!(normalize(&slashed), Ok(longest.as_str()));
        // A multi-byte character counts by its bytes.
        assert_eq!(
            normalize(&"é".repeat(PATH_MAX / 2 + 1)),
            Err(FsError::NameTooLong)
        );
    }

    #[test]
    fn byte_names() {
        assert_eq!(normalize_bytes(b"/init"), Ok("init"));
        assert_eq!(normalize_bytes(b"\xff\xfe"), Err(FsError::InvalidName));
        assert_eq!(normalize_bytes(b"a\xc3"), Err(FsError::InvalidName));
        assert_eq!(normalize_bytes(b""), Err(FsError::NotFound));
    }

    #[test]
    fn errno_values() {
        assert_eq!(FsError::NotFound.errno(), errno::ENOENT);
        assert_eq!(FsError::NameTooLong.errno(), errno::ENAMETOOLONG);
        assert_eq!(FsError::InvalidName.errno(), errno::EINVAL);
        assert_eq!(FsError::Exists.errno(), errno::EEXIST);
        assert_eq!(FsError::FileTooBig.errno(), errno::EFBIG);
        assert_eq!(FsError::BadFd.errno(), errno::EBADF);
        assert_eq!(FsError::InvalidArgument.errno(), errno::EINVAL);
        assert_eq!(FsError::Overflow.errno(), errno::EOVERFLOW);
        assert_eq!(FsError::TooManyFiles.errno(), errno::EMFILE);
        assert_eq!(FsError::NoMemory.errno(), errno::ENOMEM);
        assert_eq!(format!("{}", FsError::Exists), "file exists (EEXIST)");
    }

    #[test]
    fn open_flags() {
        let fs = RamFs::new();
        assert_eq!(fs.open("a", O_RDONLY).unwrap_err(), FsError::NotFound);
        let a = fs.open("a", O_CREAT | O_RDWR).unwrap();
        assert_eq!(fs.len(), 1);
        // Same file through either spelling.
        let again = fs.open("/a", O_RDONLY).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(
            fs.open("a", O_CREAT | O_EXCL | O_WRONLY).unwrap_err(),
            FsError::Exists
        );
        // O_CREAT on an existing file opens it.
        assert!(Arc::ptr_eq(&a, &fs.open("a", O_CREAT).unwrap()));
        // O_EXCL without O_CREAT is ignored, as on Linux.
        assert!(Arc::ptr_eq(&a, &fs.open("a", O_EXCL).unwrap()));

        a.write_at(0, b"hello").unwrap();
        fs.open("a", O_WRONLY).unwrap();
        assert_eq!(a.size(), 5);
        fs.open("a", O_WRONLY | O_TRUNC).unwrap();
        assert_eq!(a.size(), 0);

        // O_CREAT | O_TRUNC makes a new empty file too.
        let b = fs.open("b", O_CREAT | O_TRUNC | O_WRONLY).unwrap();
        assert_eq!(b.size(), 0);
        assert_ne!(a.ino(), b.ino());
        assert_eq!(fs.len(), 2);
    }

    #[test]
    fn bad_flags_and_names() {
        let fs = RamFs::new();
        assert_eq!(
            fs.open("a", O_ACCMODE | O_CREAT).unwrap_err(),
            FsError::InvalidArgument
        );
        assert_eq!(
            fs.open("a", 0o4000_0000 | O_CREAT).unwrap_err(),
            FsError::InvalidArgument
        );
        assert_eq!(fs.open("", O_CREAT).unwrap_err(), FsError::NotFound);
        assert_eq!(fs.open("/", O_CREAT).unwrap_err(), FsError::IsDir);
        assert_eq!(
            fs.open(&"n".repeat(PATH_MAX + 1), O_CREAT).unwrap_err(),
            FsError::NameTooLong
        );
        assert_eq!(fs.open("a\0b", O_CREAT).unwrap_err(), FsError::InvalidName);
        assert!(fs.is_empty());
        assert_eq!(fs.lookup("").unwrap_err(), FsError::NotFound);
        assert_eq!(fs.unlink("").unwrap_err(), FsError::NotFound);
        assert_eq!(
            fs.insert(&"n".repeat(PATH_MAX + 1), vec![]).unwrap_err(),
            FsError::NameTooLong
        );
    }

    #[test]
    fn create_lookup_insert() {
        let fs = RamFs::new();
        let a = fs.create("/a").unwrap();
        assert_eq!(fs.create("a").unwrap_err(), FsError::Exists);
        assert!(Arc::ptr_eq(&a, &fs.lookup("a").unwrap()));
        assert_eq!(fs.lookup("b").unwrap_err(), FsError::NotFound);

        let init = fs.insert("init", b"\x7fELF".to_vec()).unwrap();
        assert_eq!(init.size(), 4);
        assert_eq!(fs.lookup("/init").unwrap().ino(), init.ino());
        // Inserting again replaces the binding with a new file.
        let init2 = fs.insert("/init", b"new".to_vec()).unwrap();
        assert_ne!(init.ino(), init2.ino());
        assert_eq!(fs.lookup("init").unwrap().size(), 3);
        assert_eq!(fs.len(), 2);
        let mut names: Vec<String> = fs.root_names().into_iter().map(|(name, _)| name).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "init"]);
        assert_eq!(init2.with_data(|d| d.to_vec()), b"new");
    }

    #[test]
    fn inode_numbers_are_not_reused() {
        let fs = RamFs::default();
        let first = fs.create("a").unwrap().ino();
        fs.unlink("a").unwrap();
        let second = fs.create("a").unwrap().ino();
        assert_ne!(first, second);
    }

    #[test]
    fn insert_rejects_oversized_data() {
        let fs = RamFs::new();
        let big = vec![0u8; MAX_FILE_SIZE as usize + 1];
        assert_eq!(fs.insert("big", big).unwrap_err(), FsError::FileTooBig);
        assert!(fs.is_empty());
    }

    /// Decodes `list_after` output into (name, ino, size).
    fn decode_entries(mut buf: &[u8]) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let (head, _) = <DirEntry as abi::FromBytes>::read_from_prefix(buf).unwrap();
            let head: DirEntry = head;
            assert_eq!(head.reclen as usize % 8, 0);
            let name = &buf[24..24 + head.name_len as usize];
            out.push((
                String::from_utf8(name.to_vec()).unwrap(),
                head.ino,
                head.size,
            ));
            buf = &buf[head.reclen as usize..];
        }
        out
    }

    /// Every name, listed through `list_after` with a buffer of `size`.
    fn list_all(fs: &RamFs, size: usize) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let mut buf = vec![0u8; size];
        loop {
            let after = names
                .last()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default();
            let n = fs.list_after(&after, &mut buf).unwrap();
            if n == 0 {
                return names;
            }
            names.extend(decode_entries(&buf[..n]).into_iter().map(|e| e.0));
        }
    }

    #[test]
    fn listing_is_sorted_resumable_and_complete() {
        let fs = RamFs::new();
        assert_eq!(fs.list_after(b"", &mut [0u8; 64]), Ok(0));
        fs.insert("b", b"bb".to_vec()).unwrap();
        fs.insert("a", b"a".to_vec()).unwrap();
        fs.insert("a-very-long-name-that-takes-room", Vec::new())
            .unwrap();
        let mut buf = [0u8; 256];
        let n = fs.list_after(b"", &mut buf).unwrap();
        let entries = decode_entries(&buf[..n]);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["a", "a-very-long-name-that-takes-room", "b"]);
        assert_eq!(entries[0].2, 1);
        assert_eq!(entries[2].2, 2);
        assert_eq!(entries[0].1, fs.lookup("a").unwrap().ino());
        // After a name: only the later ones.
        let n = fs.list_after(b"a-very", &mut buf).unwrap();
        let names: Vec<String> = decode_entries(&buf[..n]).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["a-very-long-name-that-takes-room", "b"]);
        assert_eq!(fs.list_after(b"b", &mut buf), Ok(0));
        // A buffer too small for the next record is refused, not truncated.
        assert_eq!(
            fs.list_after(b"a", &mut [0u8; 40]),
            Err(FsError::InvalidArgument)
        );
        assert_eq!(fs.list_after(b"", &mut []), Err(FsError::InvalidArgument));
        // Many files, small buffers: every name once, in order.
        let fs = RamFs::new();
        let mut expected: Vec<String> = (0..300).map(|i| format!("f{}", i * 7919 % 1000)).collect();
        for name in &expected {
            fs.insert(name, Vec::new()).unwrap();
        }
        expected.sort();
        expected.dedup();
        for size in [32, 100, abi::DIRENT_MAX, 4096] {
            assert_eq!(list_all(&fs, size), expected, "buffer of {size}");
        }
    }

    #[test]
    fn rename_moves_replaces_and_charges_names() {
        let fs = RamFs::with_size(10_000);
        fs.insert("old", b"data".to_vec()).unwrap();
        let ino = fs.lookup("old").unwrap().ino();
        let used = fs.used();
        fs.rename("old", "/newer").unwrap();
        assert_eq!(fs.lookup("old").unwrap_err(), FsError::NotFound);
        let inode = fs.lookup("newer").unwrap();
        assert_eq!(inode.ino(), ino);
        assert_eq!(fs.used(), used + 2, "the longer name is charged");
        drop(inode);
        // Onto an existing name: that file is replaced, but stays open.
        fs.insert("other", b"x".to_vec()).unwrap();
        let mut replaced = fs.open_file("other", O_RDONLY).unwrap();
        fs.rename("newer", "other").unwrap();
        assert_eq!(fs.len(), 1);
        assert_eq!(fs.lookup("other").unwrap().ino(), ino);
        let mut byte = [0u8; 1];
        assert_eq!(replaced.read(&mut byte), Ok(1));
        assert_eq!(&byte, b"x");
        // To itself: nothing changes; a missing source is ENOENT.
        fs.rename("other", "other").unwrap();
        assert_eq!(fs.lookup("other").unwrap().ino(), ino);
        assert_eq!(fs.rename("nope", "x"), Err(FsError::NotFound));
        assert_eq!(fs.rename("other", ""), Err(FsError::NotFound));
        // A name that does not fit in the size is ENOSPC, nothing moved.
        let probe = RamFs::new();
        probe.insert("a", b"12345678".to_vec()).unwrap();
        let fs = RamFs::with_size(probe.used());
        fs.insert("a", b"12345678".to_vec()).unwrap();
        assert_eq!(fs.rename("a", "bb"), Err(FsError::NoSpace));
        assert!(fs.lookup("a").is_ok());
        fs.rename("a", "b").unwrap();
        assert!(fs.lookup("b").is_ok());
        drop(replaced);
    }

    #[test]
    fn unlinked_file_stays_usable_until_last_handle() {
        let fs = RamFs::new();
        let mut file = fs.open_file("tmp", O_CREAT | O_RDWR).unwrap();
        file.write(b"data").unwrap();
        let weak: Weak<Inode> = Arc::downgrade(file.inode());

        fs.unlink("/tmp").unwrap();
        assert_eq!(fs.unlink("tmp").unwrap_err(), FsError::NotFound);
        assert_eq!(fs.lookup("tmp").unwrap_err(), FsError::NotFound);
        assert!(fs.is_empty());

        // Still readable and writable through the handle.
        file.write(b"more").unwrap();
        file.lseek(0, SEEK_SET).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(file.read(&mut buf).unwrap(), 8);
        assert_eq!(&buf[..8], b"datamore");

        // A new file of the same name is a different file.
        let new = fs.create("tmp").unwrap();
        assert_eq!(new.size(), 0);

        let clone = file.clone();
        drop(file);
        assert!(weak.upgrade().is_some());
        drop(clone);
        assert!(weak.upgrade().is_none(), "data freed with the last handle");
    }

    #[test]
    fn read_at_and_write_at() {
        let inode = test_inode(Vec::new());
        let mut buf = [0xaau8; 8];
        assert_eq!(inode.read_at(0, &mut buf), 0);
        assert_eq!(inode.read_at(u64::MAX, &mut buf), 0);

        assert_eq!(inode.write_at(0, b"abc").unwrap(), 3);
        assert_eq!(inode.read_at(1, &mut buf), 2);
        assert_eq!(&buf[..2], b"bc");
        assert_eq!(inode.read_at(3, &mut buf), 0);
        assert_eq!(inode.read_at(100, &mut buf), 0);
        assert_eq!(inode.read_at(0, &mut []), 0);

        // Overwrite in the middle.
        inode.write_at(1, b"X").unwrap();
        assert_eq!(inode.with_data(|d| d.to_vec()), b"aXc");

        // A write past the end zero-fills the gap.
        inode.write_at(6, b"z").unwrap();
        assert_eq!(inode.size(), 7);
        assert_eq!(inode.with_data(|d| d.to_vec()), b"aXc\0\0\0z");

        // Empty writes succeed anywhere and change nothing.
        assert_eq!(inode.write_at(u64::MAX, b"").unwrap(), 0);
        assert_eq!(inode.size(), 7);

        // A short buffer reads only what fits.
        let mut two = [0u8; 2];
        assert_eq!(inode.read_at(0, &mut two), 2);
        assert_eq!(&two, b"aX");
    }

    #[test]
    fn file_size_limit() {
        let inode = test_inode(Vec::new());
        assert_eq!(
            inode.write_at(MAX_FILE_SIZE, b"x").unwrap_err(),
            FsError::FileTooBig
        );
        assert_eq!(
            inode.write_at(MAX_FILE_SIZE - 1, b"xy").unwrap_err(),
            FsError::FileTooBig
        );
        assert_eq!(
            inode.write_at(u64::MAX, b"x").unwrap_err(),
            FsError::FileTooBig
        );
        assert_eq!(inode.size(), 0, "failed writes change nothing");
        assert_eq!(inode.write_at(MAX_FILE_SIZE - 1, b"x").unwrap(), 1);
        assert_eq!(inode.size(), MAX_FILE_SIZE);
        assert_eq!(inode.append(b"x").unwrap_err(), FsError::FileTooBig);
        assert_eq!(
            inode.truncate(MAX_FILE_SIZE + 1).unwrap_err(),
            FsError::FileTooBig
        );
        inode.truncate(0).unwrap();
        assert_eq!(inode.size(), 0);
    }

    #[test]
    fn truncate_cuts_and_extends() {
        let inode = test_inode(b"hello".to_vec());
        inode.truncate(2).unwrap();
        assert_eq!(inode.with_data(|d| d.to_vec()), b"he");
        inode.truncate(4).unwrap();
        assert_eq!(inode.with_data(|d| d.to_vec()), b"he\0\0");
        assert_eq!(inode.stat(), FileStat { size: 4, ino: 1 });
    }

    #[test]
    fn open_file_read_write_and_modes() {
        let fs = RamFs::new();
        let mut w = fs.open_file("f", O_CREAT | O_WRONLY).unwrap();
        assert_eq!(w.write(b"hello").unwrap(), 5);
        assert_eq!(w.offset(), 5);
        assert_eq!(w.flags(), O_CREAT | O_WRONLY);
        let mut buf = [0u8; 8];
        assert_eq!(w.read(&mut buf).unwrap_err(), FsError::BadFd);

        let mut r = fs.open_file("f", O_RDONLY).unwrap();
        assert_eq!(r.write(b"x").unwrap_err(), FsError::BadFd);
        assert_eq!(r.read(&mut buf[..3]).unwrap(), 3);
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"lo");
        assert_eq!(r.read(&mut buf).unwrap(), 0, "end of file");
        assert_eq!(r.offset(), 5);

        let mut rw = fs.open_file("f", O_RDWR).unwrap();
        rw.write(b"J").unwrap();
        assert_eq!(rw.read(&mut buf[..4]).unwrap(), 4);
        assert_eq!(&buf[..4], b"ello");
        assert_eq!(fs.lookup("f").unwrap().with_data(|d| d.to_vec()), b"Jello");

        assert_eq!(
            OpenFile::new(fs.lookup("f").unwrap(), O_ACCMODE).unwrap_err(),
            FsError::InvalidArgument
        );
    }

    #[test]
    fn append_writes_at_the_end() {
        let fs = RamFs::new();
        let mut a = fs.open_file("log", O_CREAT | O_WRONLY | O_APPEND).unwrap();
        let mut b = fs.open_file("log", O_WRONLY | O_APPEND).unwrap();
        a.write(b"one ").unwrap();
        b.write(b"two ").unwrap();
        // Even after seeking back, O_APPEND writes at the end.
        a.lseek(0, SEEK_SET).unwrap();
        a.write(b"three").unwrap();
        assert_eq!(a.offset(), 13);
        assert_eq!(
            fs.lookup("log").unwrap().with_data(|d| d.to_vec()),
            b"one two three"
        );
        // An empty append is fine and moves to the end.
        b.write(b"").unwrap();
        assert_eq!(b.offset(), 13);
    }

    #[test]
    fn lseek() {
        let fs = RamFs::new();
        let mut f = fs.open_file("f", O_CREAT | O_RDWR).unwrap();
        f.write(b"0123456789").unwrap();
        assert_eq!(f.lseek(3, SEEK_SET).unwrap(), 3);
        assert_eq!(f.lseek(2, SEEK_CUR).unwrap(), 5);
        assert_eq!(f.lseek(-1, SEEK_CUR).unwrap(), 4);
        assert_eq!(f.lseek(0, SEEK_END).unwrap(), 10);
        assert_eq!(f.lseek(-10, SEEK_END).unwrap(), 0);
        let mut buf = [0u8; 1];
        f.lseek(-3, SEEK_END).unwrap();
        f.read(&mut buf).unwrap();
        assert_eq!(&buf, b"7");

        // Negative results are EINVAL and leave the offset alone.
        let before = f.offset();
        assert_eq!(f.lseek(-1, SEEK_SET).unwrap_err(), FsError::InvalidArgument);
        assert_eq!(
            f.lseek(-11, SEEK_END).unwrap_err(),
            FsError::InvalidArgument
        );
        assert_eq!(
            f.lseek(i64::MIN, SEEK_CUR).unwrap_err(),
            FsError::InvalidArgument
        );
        assert_eq!(f.offset(), before);
        // Bad whence.
        for whence in [3, 4, u64::MAX] {
            assert_eq!(f.lseek(0, whence).unwrap_err(), FsError::InvalidArgument);
        }
        // Overflow.
        assert_eq!(f.lseek(i64::MAX, SEEK_SET).unwrap(), i64::MAX as u64);
        assert_eq!(f.lseek(1, SEEK_CUR).unwrap_err(), FsError::Overflow);
        assert_eq!(f.lseek(i64::MAX, SEEK_END).unwrap_err(), FsError::Overflow);
        // Reading far past the end gives 0, writing there is EFBIG.
        assert_eq!(f.read(&mut buf).unwrap(), 0);
        assert_eq!(f.write(b"x").unwrap_err(), FsError::FileTooBig);

        // Seeking past the end then writing leaves a zero gap.
        f.lseek(12, SEEK_SET).unwrap();
        f.write(b"!").unwrap();
        assert_eq!(f.inode().with_data(|d| d.to_vec()), b"0123456789\0\0!");
    }

    #[test]
    fn fd_table_lowest_free() {
        let mut t: FdTable<&str> = FdTable::new();
        assert!(t.is_empty());
        assert_eq!(t.insert("a").unwrap(), 0);
        assert_eq!(t.insert("b").unwrap(), 1);
        assert_eq!(t.insert("c").unwrap(), 2);
        assert_eq!(t.remove(1).unwrap(), "b");
        assert_eq!(t.insert("d").unwrap(), 1);
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(1), Some(&"d"));
        *t.get_mut(2).unwrap() = "C";
        assert_eq!(t.get(2), Some(&"C"));
        assert_eq!(t.get(3), None);
        assert_eq!(t.get(u64::MAX), None);
        assert_eq!(t.get_mut(u64::MAX), None);
    }

    #[test]
    fn fd_table_remove_errors() {
        let mut t: FdTable<u32> = FdTable::default();
        assert_eq!(t.remove(0).unwrap_err(), FsError::BadFd);
        assert_eq!(t.remove(u64::MAX).unwrap_err(), FsError::BadFd);
        t.insert(7).unwrap();
        assert_eq!(t.remove(0).unwrap(), 7);
        assert_eq!(t.remove(0).unwrap_err(), FsError::BadFd, "double close");
        assert!(t.is_empty());
    }

    #[test]
    fn fd_table_limit() {
        let mut t = FdTable::new();
        for i in 0..FDS_MAX {
            assert_eq!(t.insert(i).unwrap(), i as u64);
        }
        assert_eq!(t.len(), FDS_MAX);
        assert_eq!(t.insert(999).unwrap_err(), FsError::TooManyFiles);
        t.remove(17).unwrap();
        assert_eq!(t.insert(1000).unwrap(), 17);
        assert_eq!(t.insert(1001).unwrap_err(), FsError::TooManyFiles);
    }

    #[test]
    fn fd_table_insert_at() {
        let mut t = FdTable::new();
        // The caller puts the console at 0-2 first.
        for fd in [0, 1, 2] {
            assert_eq!(t.insert_at(fd, "console").unwrap(), None);
        }
        assert_eq!(t.insert("file").unwrap(), 3);
        // Replacing returns the old object and keeps the count.
        assert_eq!(t.insert_at(1, "other").unwrap(), Some("console"));
        assert_eq!(t.len(), 4);
        // A gap below a high descriptor is filled first.
        assert_eq!(t.insert_at(10, "high").unwrap(), None);
        assert_eq!(t.insert("next").unwrap(), 4);
        assert_eq!(t.len(), 6);
        assert_eq!(
            t.insert_at(FDS_MAX as u64, "x").unwrap_err(),
            FsError::BadFd
        );
        assert_eq!(t.insert_at(u64::MAX, "x").unwrap_err(), FsError::BadFd);
        assert_eq!(t.insert_at(FDS_MAX as u64 - 1, "last").unwrap(), None);
        let fds: Vec<u64> = t.iter().map(|(fd, _)| fd).collect();
        assert_eq!(fds, [0, 1, 2, 3, 4, 10, FDS_MAX as u64 - 1]);
    }

    #[test]
    fn fd_table_drain() {
        let mut t = FdTable::new();
        t.insert_at(0, 0).unwrap();
        t.insert_at(5, 5).unwrap();
        t.insert_at(2, 2).unwrap();
        let drained: Vec<(u64, i32)> = t.drain().collect();
        assert_eq!(drained, [(0, 0), (2, 2), (5, 5)]);
        assert!(t.is_empty());
        assert_eq!(t.get(0), None);
        assert_eq!(t.insert(9).unwrap(), 0);
    }

    #[test]
    fn fd_table_drops_open_files() {
        let fs = RamFs::new();
        let inode = fs.create("f").unwrap();
        let weak = Arc::downgrade(&inode);
        let mut t = FdTable::new();
        for _ in 0..3 {
            let file = OpenFile::new(Arc::clone(&inode), O_RDONLY).unwrap();
            t.insert(file).unwrap();
        }
        drop(inode);
        fs.unlink("f").unwrap();
        assert!(weak.upgrade().is_some(), "the table keeps the file alive");
        // Dropping the drain iterator early still drops everything.
        let mut drain = t.drain();
        drain.next();
        drop(drain);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn a_full_file_system_is_enospc_and_everything_comes_back() {
        let size = 64 * 1024;
        let fs = RamFs::with_size(size);
        assert_eq!(fs.size(), size);
        assert_eq!(FsError::NoSpace.errno(), errno::ENOSPC);
        let mut f = fs.open_file("big", O_CREAT | O_RDWR).unwrap();
        let chunk = [7u8; 1000];
        let mut written = 0;
        let err = loop {
            match f.write(&chunk) {
                Ok(n) => written += n,
                Err(e) => break e,
            }
            assert!(fs.used() <= size);
        };
        assert_eq!(err, FsError::NoSpace);
        assert!(written > size / 2, "wrote {written}");
        assert_eq!(
            f.inode().size() as usize,
            written,
            "a refused write writes nothing"
        );
        // Smaller writes fill what is left, then fail too.
        while f.write(b"x").is_ok() {}
        assert_eq!(f.write(b"x").unwrap_err(), FsError::NoSpace);
        assert_eq!(
            f.write_via(None, 1, |d| d[0] = 1).unwrap_err(),
            FsError::NoSpace
        );
        assert_eq!(f.inode().truncate(1 << 20).unwrap_err(), FsError::NoSpace);
        // Empty files: a name and an inode each, until that runs out too.
        let mut made = 0;
        let err = loop {
            match fs.create(&alloc::format!("e{made}")) {
                Ok(_) => made += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, FsError::NoSpace);
        assert!(fs.used() <= size);
        // Emptying a file gives its bytes back; unlinking the rest returns
        // everything, an open file's only when its last handle goes.
        f.inode().truncate(0).unwrap();
        assert!(fs.used() < INODE_COST * (made + 1) + 64);
        for i in 0..made {
            fs.unlink(&alloc::format!("e{i}")).unwrap();
        }
        f.lseek(0, SEEK_SET).unwrap();
        f.write(b"still open").unwrap();
        fs.unlink("big").unwrap();
        assert!(fs.used() > 0);
        drop(f);
        assert_eq!(fs.used(), 0);
        // And the space is there again.
        let mut g = fs.open_file("again", O_CREAT | O_RDWR).unwrap();
        g.write(&[1; 30_000]).unwrap();
    }

    #[test]
    fn insert_and_replace_are_charged() {
        let fs = RamFs::with_size(4096);
        fs.insert("a", vec![1; 1000]).unwrap();
        let one = fs.used();
        assert!(one >= 1000 + INODE_COST);
        fs.insert("a", vec![2; 1000]).unwrap();
        assert_eq!(fs.used(), one, "the replaced file is freed");
        assert_eq!(fs.insert("b", vec![3; 4000]).unwrap_err(), FsError::NoSpace);
        assert_eq!(fs.lookup("b").unwrap_err(), FsError::NotFound);
        assert_eq!(fs.used(), one, "a refused insert takes nothing");
        fs.unlink("a").unwrap();
        assert_eq!(fs.used(), 0);
    }

    #[test]
    fn the_name_table_shrinks_when_emptied() {
        let fs = RamFs::new();
        for i in 0..5000 {
            fs.create(&alloc::format!("{i}")).unwrap();
        }
        let capacity = |fs: &RamFs| fs.tree.lock().dir(ROOT_INO).unwrap().entries.capacity();
        let full = capacity(&fs);
        for i in 0..4990 {
            fs.unlink(&alloc::format!("{i}")).unwrap();
        }
        assert!(capacity(&fs) < full / 16, "{}", capacity(&fs));
        for i in 4990..5000 {
            assert!(fs.lookup(&alloc::format!("{i}")).is_ok());
        }
    }

    #[test]
    fn the_number_of_files_is_bounded() {
        let fs = RamFs::new();
        for i in 0..MAX_INODES {
            fs.create(&alloc::format!("{i}")).unwrap();
        }
        assert_eq!(fs.create("one more").unwrap_err(), FsError::NoSpace);
        // Replacing an existing name is not one more.
        fs.insert("0", vec![1]).unwrap();
        fs.unlink("0").unwrap();
        fs.create("one more").unwrap();
    }

    #[test]
    fn fd_table_growth_is_fallible() {
        // The error exists and maps to ENOMEM; growth itself cannot be made
        // to fail on the host.
        let mut t: FdTable<u8> = FdTable::new();
        assert_eq!(t.insert_at(FDS_MAX as u64 - 1, 1).unwrap(), None);
        assert_eq!(FsError::NoMemory.errno(), errno::ENOMEM);
    }
}
