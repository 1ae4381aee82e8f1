//! ext4 behind the kernel's VFS trait ([`kernel_core::vfs::FileSystem`]).
//!
//! [`Ext4Vfs`] holds one mounted [`Ext4Fs`] in a lock. Every call takes
//! that lock, so calls on one mount are serialised: rsext4 is a `&mut self`
//! API. The kernel calls this only from its file-system worker thread,
//! which has the deep stack rsext4 needs (`tests/stack.rs`) and may sleep
//! on the disk while it holds the lock; nothing else ever contends for it.
//!
//! Mapping:
//! - inode numbers widen from `u32`; a VFS number above `u32::MAX` is
//!   `ENOENT` (it cannot name an ext4 inode);
//! - `Kind::File` is a regular file, `Kind::Dir` a directory. Symbolic
//!   links, devices and the like exist on disks made by other systems; the
//!   VFS has no kind for them, so lookups of them are `EOPNOTSUPP` and
//!   listings skip them (they are left alone, never damaged);
//! - rsext4's directory cursor packs into the VFS's 128-bit one
//!   ([`pack`]/[`unpack`]); `.` and `..` are not listed, as the trait asks;
//! - `fsync` is rsext4's whole-file-system sync (journal commit and device
//!   flushes): stronger than one file's, never weaker. `datasync` makes no
//!   difference (rsext4 has no data-only sync).

use crate::{DirCursor as ExtCursor, Ext4Fs, FileType, Stat, ENOTEMPTY};
use abi::errno::{Errno, EISDIR, ENOENT, ENOTDIR, EOPNOTSUPP, EROFS};
use kernel_core::vfs::{Attr, DirCursor, DirEnt, FileSystem, Ino, Kind};
use rsext4::DirectoryCursor;
use spin::Mutex;

use crate::BlockDevice;

/// A mounted ext4 file system as a VFS file system.
pub struct Ext4Vfs<D: BlockDevice> {
    fs: Mutex<Ext4Fs<D>>,
    root: Ino,
    read_only: bool,
}

const TAG_SHIFT: u32 = 120;
const TAG_LINEAR: u128 = 1;
const TAG_HTREE: u128 = 2;
const END: u128 = u128::MAX;

/// rsext4's cursor as the VFS's: 0 the start, `u128::MAX` the end, else a
/// tag in the top byte and the position below.
pub fn pack(cursor: ExtCursor) -> DirCursor {
    match cursor.0 {
        DirectoryCursor::Start => 0,
        DirectoryCursor::Linear { offset } => (TAG_LINEAR << TAG_SHIFT) | u128::from(offset),
        DirectoryCursor::HTree {
            major,
            minor,
            collision,
        } => {
            (TAG_HTREE << TAG_SHIFT)
                | (u128::from(major) << 64)
                | (u128::from(minor) << 32)
                | u128::from(collision)
        }
        DirectoryCursor::End => END,
    }
}

/// The inverse of [`pack`]; a value `pack` never makes (the VFS hands back
/// only what it was given, so only a bug gets here) is the end.
pub fn unpack(cursor: DirCursor) -> ExtCursor {
    let low = cursor & ((1u128 << TAG_SHIFT) - 1);
    ExtCursor(match (cursor, cursor >> TAG_SHIFT) {
        (0, _) => DirectoryCursor::Start,
        (_, TAG_LINEAR) if low >> 64 == 0 => DirectoryCursor::Linear { offset: low as u64 },
        (_, TAG_HTREE) if low >> 96 == 0 => DirectoryCursor::HTree {
            major: (low >> 64) as u32,
            minor: (low >> 32) as u32,
            collision: low as u32,
        },
        _ => DirectoryCursor::End,
    })
}

fn narrow(ino: Ino) -> Result<crate::Ino, Errno> {
    crate::Ino::try_from(ino).map_err(|_| ENOENT)
}

fn kind_of(kind: FileType) -> Option<Kind> {
    match kind {
        FileType::Regular => Some(Kind::File),
        FileType::Directory => Some(Kind::Dir),
        FileType::Symlink | FileType::Other => None,
    }
}

fn attr(st: &Stat) -> Result<Attr, Errno> {
    let kind = kind_of(st.kind).ok_or(EOPNOTSUPP)?;
    Ok(Attr {
        ino: Ino::from(st.ino),
        kind,
        size: if kind == Kind::Dir { 0 } else { st.size },
        nlink: u32::from(st.links),
    })
}

impl<D: BlockDevice> Ext4Vfs<D> {
    /// Wraps a mounted file system.
    pub fn new(fs: Ext4Fs<D>) -> Self {
        let root = Ino::from(fs.root());
        let read_only = fs.is_read_only();
        Self {
            fs: Mutex::new(fs),
            root,
            read_only,
        }
    }

    /// Whether writes are refused (`EROFS`).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Space and inode counts.
    pub fn statfs(&self) -> crate::StatFs {
        self.fs.lock().statfs()
    }

    /// Writes everything back and unmounts ([`Ext4Fs::unmount`]).
    pub fn unmount(&self) -> Result<(), Errno> {
        self.fs.lock().unmount()
    }

    fn writable(&self) -> Result<(), Errno> {
        if self.read_only {
            return Err(EROFS);
        }
        Ok(())
    }
}

impl<D: BlockDevice + Send> FileSystem for Ext4Vfs<D> {
    fn name(&self) -> &'static str {
        "ext4"
    }

    fn root(&self) -> Ino {
        self.root
    }

    fn might_sleep(&self) -> bool {
        true
    }

    fn lookup(&self, dir: Ino, name: &str) -> Result<(Ino, Kind), Errno> {
        let mut fs = self.fs.lock();
        let ino = fs.lookup_at(narrow(dir)?, name.as_bytes())?;
        let st = fs.stat(ino)?;
        Ok((Ino::from(ino), attr(&st)?.kind))
    }

    fn parent(&self, dir: Ino) -> Result<Ino, Errno> {
        let mut fs = self.fs.lock();
        fs.lookup_at(narrow(dir)?, b"..").map(Ino::from)
    }

    fn stat(&self, ino: Ino) -> Result<Attr, Errno> {
        attr(&self.fs.lock().stat(narrow(ino)?)?)
    }

    fn create(&self, dir: Ino, name: &str, kind: Kind) -> Result<Ino, Errno> {
        self.writable()?;
        let mut fs = self.fs.lock();
        let dir = narrow(dir)?;
        let made = match kind {
            Kind::File => fs.create_at(dir, name.as_bytes(), 0o644),
            Kind::Dir => fs.mkdir_at(dir, name.as_bytes(), 0o755),
        };
        made.map(Ino::from)
    }

    fn unlink(&self, dir: Ino, name: &str) -> Result<(), Errno> {
        self.writable()?;
        let mut fs = self.fs.lock();
        let dir = narrow(dir)?;
        let ino = fs.lookup_at(dir, name.as_bytes())?;
        if fs.stat(ino)?.kind == FileType::Directory {
            return Err(EISDIR);
        }
        fs.unlink_at(dir, name.as_bytes())
    }

    fn rmdir(&self, dir: Ino, name: &str) -> Result<(), Errno> {
        self.writable()?;
        let mut fs = self.fs.lock();
        let dir = narrow(dir)?;
        let ino = fs.lookup_at(dir, name.as_bytes())?;
        if fs.stat(ino)?.kind != FileType::Directory {
            return Err(ENOTDIR);
        }
        fs.rmdir_at(dir, name.as_bytes())
    }

    fn rename(&self, olddir: Ino, oldname: &str, newdir: Ino, newname: &str) -> Result<(), Errno> {
        self.writable()?;
        let mut fs = self.fs.lock();
        let (od, nd) = (narrow(olddir)?, narrow(newdir)?);
        let src = fs.lookup_at(od, oldname.as_bytes())?;
        let src_kind = fs.stat(src)?.kind;
        match fs.lookup_at(nd, newname.as_bytes()) {
            Ok(dst) if dst == src => return Ok(()),
            Ok(dst) => {
                // POSIX's rules for the replaced name, checked here rather
                // than left to rsext4's own.
                let dst_kind = fs.stat(dst)?.kind;
                match (src_kind, dst_kind) {
                    (FileType::Directory, FileType::Directory) => {
                        let (entries, _) = fs.read_dir(dst, ExtCursor::START)?;
                        if entries.iter().any(|e| e.name != b"." && e.name != b"..") {
                            return Err(ENOTEMPTY);
                        }
                    }
                    (FileType::Directory, _) => return Err(ENOTDIR),
                    (_, FileType::Directory) => return Err(EISDIR),
                    _ => {}
                }
            }
            Err(e) if e == ENOENT => {}
            Err(e) => return Err(e),
        }
        if src_kind == FileType::Directory {
            // Not into itself or below: walk up from the new parent.
            let mut at = nd;
            for _ in 0..4096 {
                if at == src {
                    return Err(abi::errno::EINVAL);
                }
                let up = fs.lookup_at(at, b"..")?;
                if up == at {
                    break;
                }
                at = up;
            }
        }
        fs.rename_at(od, oldname.as_bytes(), nd, newname.as_bytes())
    }

    fn readdir(
        &self,
        dir: Ino,
        cursor: DirCursor,
        sink: &mut dyn FnMut(&DirEnt<'_>) -> bool,
    ) -> Result<(), Errno> {
        let mut fs = self.fs.lock();
        let dir = narrow(dir)?;
        let mut at = unpack(cursor);
        while !at.is_end() {
            let (batch, next) = fs.read_dir(dir, at)?;
            if batch.is_empty() {
                return Ok(());
            }
            for e in &batch {
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                let Some(kind) = kind_of(e.kind) else {
                    continue;
                };
                let size = match kind {
                    Kind::File => fs.stat(e.ino).map(|s| s.size).unwrap_or(0),
                    Kind::Dir => 0,
                };
                let ent = DirEnt {
                    name: &e.name,
                    ino: Ino::from(e.ino),
                    kind,
                    size,
                    next: pack(e.next),
                };
                if !sink(&ent) {
                    return Ok(());
                }
            }
            at = next;
        }
        Ok(())
    }

    fn read_at(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        self.fs.lock().read_at(narrow(ino)?, offset, buf)
    }

    fn write_at(&self, ino: Ino, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        self.writable()?;
        self.fs.lock().write_at(narrow(ino)?, offset, buf)
    }

    fn truncate(&self, ino: Ino, len: u64) -> Result<(), Errno> {
        self.writable()?;
        self.fs.lock().truncate(narrow(ino)?, len)
    }

    fn fsync(&self, ino: Ino, _datasync: bool) -> Result<(), Errno> {
        if self.read_only {
            return Ok(());
        }
        let mut fs = self.fs.lock();
        fs.stat(narrow(ino)?)?;
        fs.fsync()
    }
}
