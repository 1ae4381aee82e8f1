//! The on-disk file system: ext4 with its JBD2 journal, through the
//! [`rsext4`] crate, behind an adapter whose only error type is
//! [`abi::errno::Errno`].
//!
//! [`Ext4Fs`] mounts a [`BlockDevice`] (replaying the journal), and offers
//! the operations a VFS needs, by inode number ([`Ino`]) and by path:
//! lookup, create, mkdir, read and write at an offset, truncate, unlink,
//! rmdir, rename, readdir, stat, fsync and unmount. Host tools read and
//! check what it writes (`e2fsck -fn`, `debugfs`; see `tests/`).
//!
//! What no image may do is panic the kernel (which runs with
//! `panic = abort`): the superblock is checked here before rsext4 sees it
//! ([`precheck`]), every device request rsext4 makes is range-checked
//! ([`device`]), and `tests/hostile.rs` mounts and uses a few hundred
//! corrupted images under `catch_unwind`. `docs/ext4.md` has the numbers
//! and what remains.
//!
//! rsext4 is synchronous and needs `&mut` for every call: the kernel runs
//! it on a worker thread behind one lock per mount.

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod device;
pub mod errno;
pub mod precheck;
pub mod vfs;

use abi::errno::{Errno, EINVAL, EIO, EISDIR, ENAMETOOLONG, ENOENT, ENOTDIR};
use alloc::vec::Vec;
use rsext4::{
    DirectoryCursor, DirectoryEntryType, Ext4, Ext4Result, Ext4Timestamp, FileName,
    FilePermissions, InodeInfo, InodeNumber, MountOptions, MountServices, MountedServices,
    MutationContext, RenameOptions,
};

pub use device::{BlockDevice, MemDisk, ReadCache};
pub use errno::{ENOTEMPTY, EROFS, EUCLEAN};

use device::IoAdapter;
use errno::to_errno;

/// An inode number.
pub type Ino = u32;

/// The longest name in a directory, in bytes.
pub const NAME_MAX: usize = 255;
/// The longest path [`Ext4Fs::lookup`] takes, in bytes.
pub const PATH_MAX: usize = 4096;
/// Directory entries one [`Ext4Fs::read_dir`] call returns at most.
pub const READDIR_BATCH: usize = 64;
/// Directory entries [`Ext4Fs::read_dir_all`] collects at most.
pub const READDIR_ALL_MAX: usize = 1 << 16;

/// The kind of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    /// Devices, FIFOs, sockets, and types this adapter does not handle.
    Other,
}

impl FileType {
    fn of_entry(t: DirectoryEntryType) -> Self {
        match t {
            DirectoryEntryType::RegularFile => FileType::Regular,
            DirectoryEntryType::Directory => FileType::Directory,
            DirectoryEntryType::Symlink => FileType::Symlink,
            _ => FileType::Other,
        }
    }
}

/// What `stat` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ino: Ino,
    /// File type and permission bits, as in `st_mode`.
    pub mode: u16,
    pub kind: FileType,
    pub size: u64,
    pub links: u16,
    /// 512-byte units allocated (`st_blocks`).
    pub blocks: u64,
    pub mtime: u32,
}

impl Stat {
    fn of(info: &InodeInfo) -> Self {
        Stat {
            ino: info.number.raw(),
            mode: info.mode,
            kind: FileType::of_entry(info.file_type()),
            size: info.size,
            links: info.links,
            blocks: info.blocks,
            mtime: info.mtime,
        }
    }
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: FileType,
    pub name: Vec<u8>,
    /// Where a listing resumes after this entry.
    pub next: DirCursor,
}

/// Where a directory listing resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirCursor(pub DirectoryCursor);

impl DirCursor {
    /// The start of a directory.
    pub const START: DirCursor = DirCursor(DirectoryCursor::Start);

    /// Whether the listing has ended.
    pub fn is_end(self) -> bool {
        self.0 == DirectoryCursor::End
    }
}

/// Space and inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u64,
    pub blocks: u64,
    pub free_blocks: u64,
    pub inodes: u32,
    pub free_inodes: u32,
}

/// The time source rsext4 stamps inodes with: seconds since 1970.
struct Clock(fn() -> i64);

impl rsext4::Clock for Clock {
    fn now(&self) -> Ext4Result<Ext4Timestamp> {
        Ok(Ext4Timestamp::new((self.0)(), 0))
    }
}

/// rsext4's mount events, into the kernel log.
struct LogObserver;

impl rsext4::Observer for LogObserver {
    fn event(&mut self, event: rsext4::Event) {
        use rsext4::Event;
        match event {
            Event::Recovery(_) | Event::Integrity(_) | Event::Repair(_) | Event::Feature(_) => {
                log::warn!("ext4: {event:?}")
            }
            _ => log::debug!("ext4: {event:?}"),
        }
    }
}

type Inner<D> = Ext4<IoAdapter<D>, MountedServices<(), LogObserver, ()>>;

/// A mounted ext4 file system.
pub struct Ext4Fs<D: BlockDevice> {
    fs: Inner<D>,
    read_only: bool,
}

fn ino(raw: Ino) -> Result<InodeNumber, Errno> {
    InodeNumber::new(raw).map_err(|_| EINVAL)
}

fn name(bytes: &[u8]) -> Result<FileName<'_>, Errno> {
    if bytes.len() > NAME_MAX {
        return Err(ENAMETOOLONG);
    }
    if bytes == b"." || bytes == b".." {
        return Err(EINVAL);
    }
    FileName::new(bytes).map_err(|_| EINVAL)
}

/// `path` split into its parent directory and last component.
fn split_last(path: &[u8]) -> Result<(&[u8], &[u8]), Errno> {
    if path.len() > PATH_MAX {
        return Err(ENAMETOOLONG);
    }
    let trimmed = match path.iter().rposition(|&b| b != b'/') {
        Some(end) => &path[..=end],
        None => return Err(EINVAL), // "/" or "": no last component
    };
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(slash) => Ok((&trimmed[..=slash], &trimmed[slash + 1..])),
        None => Ok((b"", trimmed)),
    }
}

const OWNER: MutationContext = MutationContext::new(0, 0, 0, 0);

impl<D: BlockDevice> Ext4Fs<D> {
    /// Mounts the ext4 file system on `dev`, replaying its journal.
    ///
    /// `now` gives the time for inode stamps. A device that refuses writes,
    /// a file system with errors recorded or with read-only-compatible
    /// features this driver cannot write is mounted read-only (with a
    /// message); anything that is not ext4, or that needs features this
    /// driver cannot read, is not mounted (`EINVAL`, `EOPNOTSUPP`,
    /// `EUCLEAN`); so is a read-only device whose journal needs a replay
    /// (`EROFS`).
    pub fn mount(mut dev: D, now: fn() -> i64) -> Result<Self, Errno> {
        let check = precheck::check(&mut dev)?;
        let want_ro = dev.read_only() || check.read_only;
        if dev.read_only() {
            if check.needs_recovery {
                // Without a replay the file system is missing what the
                // journal holds (fsynced files); Linux refuses too.
                log::warn!("ext4: journal needs recovery but the device is read-only: not mounted");
                return Err(EROFS);
            }
            log::warn!("ext4: device is read-only: mounting read-only");
        }
        let bitmaps = precheck::inode_bitmaps(&mut dev);
        let mut io = IoAdapter::new(dev)?;
        if let Some(b) = bitmaps {
            io.keep_inode_bitmap_padding(b);
        }
        let services = MountServices::new(Clock(now), (), LogObserver);
        let mounted = if want_ro {
            // A read-only device cannot take a replay (and one that needs
            // it was refused above); a writable one replays, as Linux does
            // for a read-only mount.
            let options = MountOptions {
                readonly: true,
                replay_journal: !io.device().read_only(),
                block_validity: true,
            };
            Ext4::mount(io, services, options)
        } else {
            Ext4::mount_with_readonly_fallback(io, services)
        };
        let fs = mounted.map_err(|e| {
            log::warn!("ext4: mount failed: {e}");
            to_errno("mount", e)
        })?;
        let read_only = fs.options().readonly;
        if read_only && !want_ro {
            log::warn!("ext4: errors are recorded on the file system: mounted read-only");
        }
        Ok(Ext4Fs { fs, read_only })
    }

    /// Whether writes are refused (`EROFS`).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The root directory.
    pub fn root(&self) -> Ino {
        self.fs.root_inode().raw()
    }

    /// Space and inode counts.
    pub fn statfs(&self) -> StatFs {
        let s = self.fs.statfs();
        StatFs {
            block_size: s.block_size,
            blocks: s.total_blocks,
            free_blocks: s.free_blocks,
            inodes: s.total_inodes,
            free_inodes: s.free_inodes,
        }
    }

    /// The attributes of `ino`.
    pub fn stat(&mut self, ino_: Ino) -> Result<Stat, Errno> {
        let info = self.fs.inode(ino(ino_)?).map_err(|e| to_errno("stat", e))?;
        Ok(Stat::of(&info))
    }

    /// The inode named `name` in directory `dir`.
    pub fn lookup_at(&mut self, dir: Ino, name_: &[u8]) -> Result<Ino, Errno> {
        if name_ == b"." {
            return Ok(dir);
        }
        let parent = ino(dir)?;
        let fname = if name_ == b".." {
            FileName::new(name_).map_err(|_| EINVAL)?
        } else {
            name(name_)?
        };
        let d = self.stat(dir)?;
        if d.kind != FileType::Directory {
            return Err(ENOTDIR);
        }
        match self
            .fs
            .lookup_child(parent, fname)
            .map_err(|e| to_errno("lookup", e))?
        {
            Some(info) => Ok(info.number.raw()),
            None => Err(ENOENT),
        }
    }

    /// The inode at `path`, from the root (a leading `/` is optional;
    /// symbolic links are not followed).
    pub fn lookup(&mut self, path: &[u8]) -> Result<Ino, Errno> {
        if path.len() > PATH_MAX {
            return Err(ENAMETOOLONG);
        }
        let mut at = self.root();
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            at = self.lookup_at(at, part)?;
        }
        Ok(at)
    }

    fn parent_of<'p>(&mut self, path: &'p [u8]) -> Result<(Ino, &'p [u8]), Errno> {
        let (dir, last) = split_last(path)?;
        let dir = self.lookup(dir)?;
        name(last)?;
        Ok((dir, last))
    }

    fn permissions(perm: u16) -> Result<FilePermissions, Errno> {
        FilePermissions::new(perm & 0o7777).map_err(|_| EINVAL)
    }

    fn require_dir(&mut self, dir: Ino) -> Result<(), Errno> {
        if self.stat(dir)?.kind != FileType::Directory {
            return Err(ENOTDIR);
        }
        Ok(())
    }

    /// Creates an empty regular file `name` in `dir` (`EEXIST` if the name
    /// is taken).
    pub fn create_at(&mut self, dir: Ino, name_: &[u8], perm: u16) -> Result<Ino, Errno> {
        let n = name(name_)?;
        self.require_dir(dir)?;
        let info = self
            .fs
            .create_regular_file(OWNER, ino(dir)?, n, Self::permissions(perm)?)
            .map_err(|e| to_errno("create", e))?;
        Ok(info.number.raw())
    }

    /// Creates a directory `name` in `dir`.
    pub fn mkdir_at(&mut self, dir: Ino, name_: &[u8], perm: u16) -> Result<Ino, Errno> {
        let n = name(name_)?;
        self.require_dir(dir)?;
        let info = self
            .fs
            .create_directory(OWNER, ino(dir)?, n, Self::permissions(perm)?)
            .map_err(|e| to_errno("mkdir", e))?;
        Ok(info.number.raw())
    }

    /// [`Ext4Fs::create_at`] by path.
    pub fn create(&mut self, path: &[u8], perm: u16) -> Result<Ino, Errno> {
        let (dir, last) = self.parent_of(path)?;
        self.create_at(dir, last, perm)
    }

    /// [`Ext4Fs::mkdir_at`] by path.
    pub fn mkdir(&mut self, path: &[u8], perm: u16) -> Result<Ino, Errno> {
        let (dir, last) = self.parent_of(path)?;
        self.mkdir_at(dir, last, perm)
    }

    fn require_file(&mut self, ino_: Ino) -> Result<Stat, Errno> {
        let st = self.stat(ino_)?;
        match st.kind {
            FileType::Regular => Ok(st),
            FileType::Directory => Err(EISDIR),
            _ => Err(EINVAL),
        }
    }

    /// Reads from `ino` at `offset` into `buf`; returns the bytes read (0
    /// at or past the end).
    pub fn read_at(&mut self, ino_: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let st = self.require_file(ino_)?;
        if offset >= st.size || buf.is_empty() {
            return Ok(0);
        }
        let n = self
            .fs
            .read_inode(ino(ino_)?, offset, buf)
            .map_err(|e| to_errno("read", e))?;
        if n > buf.len() {
            log::warn!(
                "ext4: read: rsext4 claims {n} bytes into a {}-byte buffer",
                buf.len()
            );
            return Err(EIO);
        }
        Ok(n)
    }

    /// Writes `data` to `ino` at `offset`, growing the file as needed;
    /// returns `data.len()`. On `ENOSPC` nothing written before is lost.
    pub fn write_at(&mut self, ino_: Ino, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        self.require_file(ino_)?;
        if data.is_empty() {
            return Ok(0);
        }
        offset
            .checked_add(data.len() as u64)
            .ok_or(abi::errno::EFBIG)?;
        self.fs
            .write_inode(ino(ino_)?, offset, data)
            .map_err(|e| to_errno("write", e))?;
        Ok(data.len())
    }

    /// Appends `data` to `ino`; returns the offset it was written at.
    pub fn append(&mut self, ino_: Ino, data: &[u8]) -> Result<u64, Errno> {
        let at = self.require_file(ino_)?.size;
        self.write_at(ino_, at, data)?;
        Ok(at)
    }

    /// Sets the size of `ino` to `size` (freeing blocks past it, or
    /// extending with zeros).
    pub fn truncate(&mut self, ino_: Ino, size: u64) -> Result<(), Errno> {
        self.require_file(ino_)?;
        self.fs
            .truncate_inode(ino(ino_)?, size)
            .map_err(|e| to_errno("truncate", e))
    }

    /// Removes the name `name` (not a directory) from `dir`; the inode and
    /// its blocks are freed with its last name.
    ///
    /// Unfinished: an inode still open elsewhere should live until its last
    /// close (rsext4's orphan list supports it); the VFS must then call
    /// rsext4's reap on release instead of freeing here.
    pub fn unlink_at(&mut self, dir: Ino, name_: &[u8]) -> Result<(), Errno> {
        let n = name(name_)?;
        self.require_dir(dir)?;
        let out = self
            .fs
            .unlink(ino(dir)?, n)
            .map_err(|e| to_errno("unlink", e))?;
        if out.requires_reap() {
            self.fs
                .reap_unlinked_inode(out.inode)
                .map_err(|e| to_errno("unlink:reap", e))?;
        }
        Ok(())
    }

    /// Removes the empty directory `name` from `dir` (`ENOTEMPTY`
    /// otherwise).
    pub fn rmdir_at(&mut self, dir: Ino, name_: &[u8]) -> Result<(), Errno> {
        let n = name(name_)?;
        self.require_dir(dir)?;
        let out = self
            .fs
            .remove_empty_directory(ino(dir)?, n)
            .map_err(|e| to_errno("rmdir", e))?;
        if out.requires_reap() {
            self.fs
                .reap_unlinked_inode(out.inode)
                .map_err(|e| to_errno("rmdir:reap", e))?;
        }
        Ok(())
    }

    /// Renames `old_dir/old` to `new_dir/new`, replacing a file there.
    pub fn rename_at(
        &mut self,
        old_dir: Ino,
        old: &[u8],
        new_dir: Ino,
        new: &[u8],
    ) -> Result<(), Errno> {
        let (o, n) = (name(old)?, name(new)?);
        self.require_dir(old_dir)?;
        self.require_dir(new_dir)?;
        let out = self
            .fs
            .rename(ino(old_dir)?, o, ino(new_dir)?, n, RenameOptions::REPLACE)
            .map_err(|e| to_errno("rename", e))?;
        if let Some(replaced) = out.replaced {
            if replaced.requires_reap() {
                self.fs
                    .reap_unlinked_inode(replaced.inode)
                    .map_err(|e| to_errno("rename:reap", e))?;
            }
        }
        Ok(())
    }

    /// [`Ext4Fs::unlink_at`] by path.
    pub fn unlink(&mut self, path: &[u8]) -> Result<(), Errno> {
        let (dir, last) = self.parent_of(path)?;
        self.unlink_at(dir, last)
    }

    /// [`Ext4Fs::rmdir_at`] by path.
    pub fn rmdir(&mut self, path: &[u8]) -> Result<(), Errno> {
        let (dir, last) = self.parent_of(path)?;
        self.rmdir_at(dir, last)
    }

    /// [`Ext4Fs::rename_at`] by paths.
    pub fn rename(&mut self, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        let (od, ol) = self.parent_of(old)?;
        let (nd, nl) = self.parent_of(new)?;
        self.rename_at(od, ol, nd, nl)
    }

    /// Up to [`READDIR_BATCH`] entries of `dir` from `cursor` (including
    /// `.` and `..`), and where to resume; an empty batch with an end
    /// cursor ends the listing.
    pub fn read_dir(
        &mut self,
        dir: Ino,
        cursor: DirCursor,
    ) -> Result<(Vec<DirEntry>, DirCursor), Errno> {
        self.require_dir(dir)?;
        if cursor.is_end() {
            return Ok((Vec::new(), cursor));
        }
        let batch = self
            .fs
            .read_directory(ino(dir)?, cursor.0, READDIR_BATCH)
            .map_err(|e| to_errno("readdir", e))?;
        let next = match batch.last() {
            Some(e) => e.next_cursor,
            None => DirectoryCursor::End,
        };
        if !batch.is_empty() && next == cursor.0 {
            log::warn!("ext4: readdir: directory {dir} does not advance");
            return Err(EUCLEAN);
        }
        let mut out = Vec::new();
        out.try_reserve_exact(batch.len())
            .map_err(|_| abi::errno::ENOMEM)?;
        for e in batch {
            out.push(DirEntry {
                ino: e.inode.raw(),
                kind: FileType::of_entry(e.file_type),
                name: e.name,
                next: DirCursor(e.next_cursor),
            });
        }
        Ok((out, DirCursor(next)))
    }

    /// Every entry of `dir` (at most [`READDIR_ALL_MAX`]; `EUCLEAN` for a
    /// directory that claims more or loops).
    pub fn read_dir_all(&mut self, dir: Ino) -> Result<Vec<DirEntry>, Errno> {
        let mut all = Vec::new();
        let mut cursor = DirCursor::START;
        loop {
            let (batch, next) = self.read_dir(dir, cursor)?;
            if batch.is_empty() {
                return Ok(all);
            }
            if all.len() + batch.len() > READDIR_ALL_MAX {
                log::warn!("ext4: readdir: directory {dir} has too many entries");
                return Err(EUCLEAN);
            }
            all.try_reserve(batch.len())
                .map_err(|_| abi::errno::ENOMEM)?;
            all.extend(batch);
            if next.is_end() {
                return Ok(all);
            }
            cursor = next;
        }
    }

    /// Makes everything written so far durable: file data is written home,
    /// the metadata (inodes, directory entries, bitmaps, group descriptors,
    /// superblock) is committed to the journal, whose commit block goes out
    /// after a device flush and is itself flushed, so that a power cut
    /// after this returns loses none of it (the journal replays on the next
    /// mount). This is a whole-file-system sync: stronger than one file's
    /// fsync, never weaker.
    pub fn fsync(&mut self) -> Result<(), Errno> {
        self.fs.sync().map_err(|e| to_errno("fsync", e))
    }

    /// Writes everything back (journal committed and checkpointed, the
    /// superblock marked clean) and unmounts; later calls fail (`EBUSY`).
    /// On an error the file system stays mounted.
    pub fn unmount(&mut self) -> Result<(), Errno> {
        self.fs.unmount().map_err(|e| to_errno("unmount", e))
    }
}

/// The kernel keeps a mount in a lock shared by threads: it must be `Send`
/// (and a lock makes it `Sync`).
#[allow(dead_code)]
fn assert_send() {
    fn send<T: Send>() {}
    send::<Ext4Fs<MemDisk>>();
}
