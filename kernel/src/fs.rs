//! The file systems (the mount table with the RAM file system at `/`,
//! filled from the initrd at boot) and the objects behind a process's file
//! descriptors.
//!
//! `/dev/NAME` names a disk (`/dev/nvme0n1`, `/dev/vda`): [`open_at`] checks
//! for it before it resolves a path, so `/dev` is no directory of the
//! VFS (a devfs comes when there are more devices than disks).

use crate::arch::paging::AddressSpace;
use crate::block::{self, Dir, Disk, InFlightGuard, SyncWait};
use crate::diskfs::WorkerFs;
use crate::usercopy::{FrameBuf, UserPages, UserSlice};
use abi::errno;
use abi::errno::Errno;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use kernel_core::fs::{OpenFile, RamFs};
use kernel_core::ring::{BackendKind, RingObject};
use kernel_core::vfs::{self, FileSystem, Kind, Loc, Vfs};
use spin::Mutex;
use x86_64::instructions::interrupts;

/// The mount table. Changed only at boot (the disks are mounted before the
/// first program starts); a call takes a reference and resolves paths
/// without the lock, since a disk file system sleeps (docs/vfs.md).
static VFS: Mutex<Option<Arc<Vfs>>> = Mutex::new(None);
/// The disk file systems mounted, for `sync` at shutdown.
static DISK_MOUNTS: Mutex<Vec<Arc<WorkerFs>>> = Mutex::new(Vec::new());
/// The RAM file system (also mounted at `/`), for the program loader.
static RAM: Mutex<Option<Arc<RamFs>>> = Mutex::new(None);

/// What a file descriptor (or a ring's registered file) refers to. Shared:
/// a registered file and its descriptor are the same open file, position
/// included, and the file lives while either holds it.
pub type FileHandle = Arc<File>;

/// An open file.
pub enum File {
    /// The console (fds 0-2 at process start): reads take keyboard and
    /// serial input through the line discipline, writes go to the serial
    /// port and the screen.
    Console,
    /// An open RAM file.
    Ram(Mutex<OpenFile>),
    /// A ring of a ring backend (an io_uring descriptor).
    Ring(RingDescriptor),
    /// A disk (`/dev/nvme0n1`, `/dev/vda`): raw block I/O, as Linux's with
    /// `O_DIRECT`.
    Block(BlockFile),
    /// An open directory, read with `getdents`.
    Dir(DirFile),
    /// A file on a disk file system: every call goes to the file-system
    /// worker (`crate::fswork`).
    Disk(DiskFile),
}

/// An open file on a disk file system: the mount, the inode, the position.
pub struct DiskFile {
    fs: Arc<WorkerFs>,
    ino: vfs::Ino,
    pos: Mutex<u64>,
    flags: u64,
}

impl Drop for DiskFile {
    fn drop(&mut self) {
        self.fs.closed(self.ino);
    }
}

impl DiskFile {
    fn readable(&self) -> bool {
        self.flags & abi::open_flags::O_ACCMODE != abi::open_flags::O_WRONLY
    }

    fn writable(&self) -> bool {
        matches!(
            self.flags & abi::open_flags::O_ACCMODE,
            abi::open_flags::O_WRONLY | abi::open_flags::O_RDWR
        )
    }

    /// Reads into `buf` at `offset` (`None`: the position, which moves
    /// past what was read). Sleeps for the worker unless on it.
    pub fn read(&self, offset: Option<u64>, buf: &mut [u8]) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(errno::EBADF);
        }
        let at = offset.unwrap_or_else(|| self.position());
        let n = self.fs.read_at(self.ino, at, buf)?;
        if offset.is_none() {
            self.set_position(at + n as u64);
        }
        Ok(n)
    }

    /// A read served by the page cache alone (see `File::read_to_user`):
    /// `None` on a miss, with nothing read and the position unmoved.
    pub fn read_cached(
        &self,
        offset: Option<u64>,
        len: usize,
        out: impl FnMut(usize, &[u8]),
    ) -> Option<usize> {
        if !self.readable() {
            return None;
        }
        let at = offset.unwrap_or_else(|| self.position());
        let n = self.fs.read_cached(self.ino, at, len, out)?;
        if offset.is_none() {
            self.set_position(at + n as u64);
        }
        Some(n)
    }

    /// Whether a read of `len` bytes at `offset` would hit the page cache.
    pub fn cached(&self, offset: Option<u64>, len: usize) -> bool {
        self.readable()
            && self
                .fs
                .cached(self.ino, offset.unwrap_or_else(|| self.position()), len)
    }

    /// Writes all of `data` at `offset` (`None`: the position, which moves
    /// past it; with `O_APPEND` always at the end, as Linux).
    pub fn write(&self, offset: Option<u64>, data: &[u8]) -> Result<usize, Errno> {
        if !self.writable() {
            return Err(errno::EBADF);
        }
        let at = if self.flags & abi::open_flags::O_APPEND != 0 {
            self.fs.stat(self.ino)?.size
        } else {
            offset.unwrap_or_else(|| self.position())
        };
        at.checked_add(data.len() as u64).ok_or(errno::EFBIG)?;
        let n = self.fs.write_at(self.ino, at, data)?;
        if offset.is_none() {
            self.set_position(at + n as u64);
        }
        Ok(n)
    }

    /// Makes the file durable (see `diskfs`: a journal commit and device
    /// flushes).
    pub fn fsync(&self, datasync: bool) -> Result<(), Errno> {
        self.fs.fsync(self.ino, datasync)
    }

    fn position(&self) -> u64 {
        interrupts::without_interrupts(|| *self.pos.lock())
    }

    fn set_position(&self, at: u64) {
        interrupts::without_interrupts(|| *self.pos.lock() = at);
    }
}

/// An open directory: its file system, its inode and the `getdents`
/// cursor.
pub struct DirFile {
    fs: Arc<dyn FileSystem>,
    /// Where it is in the mount table (its inode, and the start of paths
    /// relative to it).
    loc: Loc,
    cursor: Mutex<vfs::DirCursor>,
}

/// An open disk: the disk and the file position.
pub struct BlockFile {
    pub disk: Arc<Disk>,
    pos: Mutex<u64>,
}

/// What [`BlockFile::begin`] did.
pub enum Begun {
    /// Nothing to move (at or past the end): this many bytes, 0.
    Done(u32),
    /// Started: wait on it, outside any lock.
    Wait(Arc<SyncWait>),
}

impl BlockFile {
    /// The byte offset for a transfer of `len` bytes at `offset` (`None`:
    /// the file position, which moves past it), and how many bytes it
    /// moves (clamped at the end of the disk; `EINVAL` unless whole
    /// blocks).
    pub fn claim(&self, dir: Dir, offset: Option<u64>, len: u64) -> Result<(u64, u64), Errno> {
        match offset {
            Some(at) => Ok((at, self.disk.clamp(dir, at, len)?)),
            None => interrupts::without_interrupts(|| {
                let mut pos = self.pos.lock();
                let at = *pos;
                let n = self.disk.clamp(dir, at, len)?;
                *pos = at + n;
                Ok((at, n))
            }),
        }
    }

    /// Starts a transfer for a syscall (under the address-space lock,
    /// which it does not sleep under); the caller waits on the result.
    pub fn begin(
        &self,
        space: &AddressSpace,
        dir: Dir,
        offset: Option<u64>,
        buf: u64,
        len: u64,
        guard: InFlightGuard,
    ) -> Result<Begun, Errno> {
        let (at, n) = self.claim(dir, offset, len)?;
        if n == 0 {
            return Ok(Begun::Done(0));
        }
        let wait = Arc::new(SyncWait::default());
        let done = block::Done {
            target: block::Target::Sync(wait.clone()),
            polled: false,
            guard: Some(guard),
        };
        self.disk.start(space, dir, at, &[(buf, n)], done)?;
        Ok(Begun::Wait(wait))
    }
}

/// Opens the disk `/dev/NAME`, if there is one by that name.
fn open_device(name: &str) -> Option<FileHandle> {
    let disk = block::find(name.strip_prefix("/dev/").or(name.strip_prefix("dev/"))?)?;
    Some(Arc::new(File::Block(BlockFile {
        disk,
        pos: Mutex::new(0),
    })))
}

/// What a ring descriptor holds: which backend's ring and the backend's
/// object, read on every `enter` without a type check, and the ring
/// layer's guard, which releases the ring in its backend when the last
/// handle goes (this layer never calls up into the ring layer).
pub struct RingDescriptor {
    // Declared first, so dropped first: the ring is released while
    // `object` still holds it, as the backend expects.
    _release: Box<dyn Send + Sync>,
    /// The backend that owns the ring.
    pub kind: BackendKind,
    /// The backend's ring object.
    pub object: RingObject,
}

impl RingDescriptor {
    /// A descriptor for `object`, a ring of `kind`'s backend; dropping
    /// the last handle drops `release`.
    pub fn new(kind: BackendKind, object: RingObject, release: Box<dyn Send + Sync>) -> Self {
        Self {
            _release: release,
            kind,
            object,
        }
    }
}

impl File {
    /// Reads into user memory at `offset` (`None`: the current position).
    /// The destination is checked before the position moves.
    ///
    /// A RAM file's read is inlined into the callers (the ring's READ fast
    /// path is one of them); the other files take `read_to_user_other`.
    #[inline(always)]
    pub fn read_to_user(
        &self,
        space: &AddressSpace,
        offset: Option<u64>,
        user: UserSlice,
    ) -> Result<usize, Errno> {
        match self {
            File::Ram(file) => read_ram(file, space, offset, user),
            _ => self.read_to_user_other(space, offset, user),
        }
    }

    /// [`File::read_to_user`] on anything but a RAM file.
    #[inline(never)]
    fn read_to_user_other(
        &self,
        space: &AddressSpace,
        offset: Option<u64>,
        user: UserSlice,
    ) -> Result<usize, Errno> {
        match self {
            File::Console => {
                // Never blocks here: what is typed now, or EAGAIN. (The
                // `read` syscall sleeps in `console::read` instead; a ring
                // READ would wait with `console::on_input`.)
                user.check(space, true)?;
                let mut buf = [0u8; 256];
                let len = (user.len() as usize).min(buf.len());
                let n = crate::console::try_read(&mut buf[..len]).ok_or(errno::EAGAIN)?;
                user.prefix(n as u64).write_from(space, &buf[..n])?;
                Ok(n)
            }
            File::Ring { .. } => Err(errno::EINVAL),
            File::Dir(_) => Err(errno::EISDIR),
            // A page-cache hit only (a ring READ that `IoEnv::start` saw
            // cached): the disk is never waited for under the
            // address-space lock this runs under. A page dropped since is
            // `EAGAIN`.
            File::Disk(d) => {
                let len = user.len().min(IO_CHUNK) as usize;
                let mut frames = FrameBuf::new();
                let pages = user.prefix(len as u64).pages(space, true, &mut frames)?;
                d.read_cached(offset, len, |at, data| pages.write_at(at as u64, data))
                    .ok_or(errno::EAGAIN)
            }
            // Only the transfer that moves nothing gets here (at the end of
            // the disk); the others start with `BlockFile::begin` or through
            // a ring, because they wait for the device.
            File::Block(b) => match b.claim(Dir::Read, offset, user.len())? {
                (_, 0) => Ok(0),
                _ => Err(errno::EIO),
            },
            // Not reached: `read_to_user` takes it first.
            File::Ram(file) => read_ram(file, space, offset, user),
        }
    }

    /// Writes from user memory at `offset` (`None`: the current position).
    /// The source is checked before anything is written.
    ///
    /// A RAM file's write is inlined into the callers (the ring's WRITE
    /// fast path is one of them); the other files take
    /// `write_from_user_other`.
    #[inline(always)]
    pub fn write_from_user(
        &self,
        space: &AddressSpace,
        offset: Option<u64>,
        user: UserSlice,
    ) -> Result<usize, Errno> {
        match self {
            File::Ram(file) => write_ram(file, space, offset, user),
            _ => self.write_from_user_other(space, offset, user),
        }
    }

    /// [`File::write_from_user`] on anything but a RAM file.
    #[inline(never)]
    fn write_from_user_other(
        &self,
        space: &AddressSpace,
        offset: Option<u64>,
        user: UserSlice,
    ) -> Result<usize, Errno> {
        // One walk over the whole claimed buffer: the part a write can
        // take is translated, the rest only checked.
        let mut frames = FrameBuf::new();
        let pages = user.prefix(IO_CHUNK).pages(space, false, &mut frames)?;
        if user.len() > IO_CHUNK {
            user.skip(IO_CHUNK).check(space, false)?;
        }
        match self {
            File::Console => {
                let mut chunk = [0u8; 256];
                let mut done = 0;
                while done < pages.len() {
                    let n = (pages.len() - done).min(chunk.len() as u64);
                    let bytes = &mut chunk[..n as usize];
                    pages.read_at(done, bytes);
                    crate::logger::write_bytes(bytes);
                    done += n;
                }
                Ok(done as usize)
            }
            File::Ring { .. } => Err(errno::EINVAL),
            File::Dir(_) => Err(errno::EISDIR),
            File::Disk(_) => Err(errno::EIO),
            File::Block(b) => match b.claim(Dir::Write, offset, user.len())? {
                (_, 0) => Ok(0),
                _ => Err(errno::EIO),
            },
            // Not reached: `write_from_user` takes it first.
            File::Ram(file) => write_ram(file, space, offset, user),
        }
    }

    pub fn lseek(&self, offset: i64, whence: u64) -> Result<u64, Errno> {
        match self {
            File::Console | File::Ring { .. } => Err(errno::ESPIPE),
            // Only back to the start: cursors are the file system's.
            File::Dir(d) if offset == 0 && whence == abi::seek::SEEK_SET => {
                interrupts::without_interrupts(|| *d.cursor.lock() = 0);
                Ok(0)
            }
            File::Dir(_) => Err(errno::EINVAL),
            File::Block(b) => {
                let base = match whence {
                    abi::seek::SEEK_SET => 0,
                    abi::seek::SEEK_CUR => interrupts::without_interrupts(|| *b.pos.lock()),
                    abi::seek::SEEK_END => b.disk.size(),
                    _ => return Err(errno::EINVAL),
                };
                let new = base.checked_add_signed(offset).ok_or(errno::EINVAL)?;
                interrupts::without_interrupts(|| *b.pos.lock() = new);
                Ok(new)
            }
            File::Ram(file) => interrupts::without_interrupts(|| {
                file.lock().lseek(offset, whence).map_err(|e| e.errno())
            }),
            File::Disk(d) => {
                let base = match whence {
                    abi::seek::SEEK_SET => 0,
                    abi::seek::SEEK_CUR => d.position(),
                    abi::seek::SEEK_END => d.fs.stat(d.ino)?.size,
                    _ => return Err(errno::EINVAL),
                };
                let new = base.checked_add_signed(offset).ok_or(errno::EINVAL)?;
                if new > i64::MAX as u64 {
                    return Err(errno::EINVAL);
                }
                d.set_position(new);
                Ok(new)
            }
        }
    }

    pub fn fsync(&self) -> Result<(), Errno> {
        match self {
            // Only the RAM file system exists yet, which never sleeps; a
            // disk file system's fsync will run with interrupts on.
            File::Dir(d) => interrupts::without_interrupts(|| d.fs.fsync(d.loc.ino, false)),
            File::Console | File::Ring { .. } => Err(errno::EINVAL),
            // Only a disk without a volatile cache gets here (the others
            // flush with `BlockFile` or through a ring): nothing to do.
            File::Block(b) if !b.disk.geometry().volatile_cache => Ok(()),
            File::Block(_) => Err(errno::EIO),
            // RAM files have no backing store: once written they are as
            // durable as they will ever be.
            File::Ram(_) => Ok(()),
            File::Disk(d) => d.fsync(false),
        }
    }

    /// Whether I/O on this file completes later (a disk, or a file on a
    /// disk file system): a process that opens one lets its rings start
    /// I/O that stays pending.
    pub fn completes_later(&self) -> bool {
        matches!(self, File::Block(_) | File::Disk(_))
    }

    pub fn stat(&self) -> abi::FileStat {
        match self {
            File::Console | File::Ring { .. } => abi::FileStat { size: 0, ino: 0 },
            File::Block(b) => abi::FileStat {
                size: b.disk.size(),
                ino: 0,
            },
            File::Ram(file) => interrupts::without_interrupts(|| file.lock().inode().stat()),
            File::Dir(d) => abi::FileStat {
                size: 0,
                ino: d.loc.ino,
            },
            File::Disk(d) => abi::FileStat {
                size: d.fs.stat(d.ino).map_or(0, |a| a.size),
                ino: d.ino,
            },
        }
    }

    /// Sets a regular file's size: `EINVAL` unless it is one, open for
    /// writing (as Linux's `ftruncate`).
    pub fn truncate(&self, len: u64) -> Result<(), Errno> {
        match self {
            File::Ram(file) => interrupts::without_interrupts(|| {
                let file = file.lock();
                if file.flags() & abi::open_flags::O_ACCMODE == abi::open_flags::O_RDONLY {
                    return Err(errno::EINVAL);
                }
                file.inode().truncate(len).map_err(|e| e.errno())
            }),
            File::Disk(d) if d.writable() => d.fs.truncate(d.ino, len),
            _ => Err(errno::EINVAL),
        }
    }

    /// The directory this file is, as a starting point for relative paths
    /// (`ENOTDIR` for anything else).
    pub fn dir_loc(&self) -> Result<Loc, Errno> {
        match self {
            File::Dir(d) => Ok(d.loc),
            _ => Err(errno::ENOTDIR),
        }
    }

    /// Fills `buf` with `abi::Dirent` records from the directory's cursor
    /// on and moves the cursor past them (`ENOTDIR` for anything but a
    /// directory); returns the bytes written.
    pub fn read_dir(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let File::Dir(d) = self else {
            return Err(errno::ENOTDIR);
        };
        // The cursor is not held while the file system is called (a disk
        // one sleeps): two readers of one descriptor may see an entry
        // twice, never a torn cursor.
        let at = interrupts::without_interrupts(|| *d.cursor.lock());
        let (n, next) =
            interrupts::without_interrupts(|| vfs::read_dir(&*d.fs, d.loc.ino, at, buf))?;
        interrupts::without_interrupts(|| *d.cursor.lock() = next);
        Ok(n)
    }
}

/// The pages of the part of `user` one RAM-file transfer moves (at most
/// [`IO_CHUNK`] bytes), translated into `frames`, and the rest of the
/// claimed buffer checked (`into_user`: written by a read, so writable).
#[inline(always)]
fn ram_pages<'s>(
    space: &'s AddressSpace,
    user: UserSlice,
    into_user: bool,
    frames: &'s mut FrameBuf,
) -> Result<UserPages<'s>, Errno> {
    let pages = user.prefix(IO_CHUNK).pages(space, into_user, frames)?;
    if user.len() > IO_CHUNK {
        user.skip(IO_CHUNK).check(space, into_user)?;
    }
    Ok(pages)
}

/// [`File::read_to_user`] on a RAM file: one walk over the whole claimed
/// buffer (the part a read can fill is translated, the rest only checked),
/// then the file's bytes go straight to the user's pages under its lock.
#[inline(always)]
fn read_ram(
    file: &Mutex<OpenFile>,
    space: &AddressSpace,
    offset: Option<u64>,
    user: UserSlice,
) -> Result<usize, Errno> {
    let mut frames = FrameBuf::new();
    let pages = ram_pages(space, user, true, &mut frames)?;
    let len = pages.len() as usize;
    let irq = InterruptsOff::new();
    // The file's lock is a statement's temporary: released before `irq`.
    let result = file.lock().read_via(offset, len, |data| {
        pages.write_at(0, data);
        Ok(())
    });
    drop(irq);
    result
}

/// [`File::write_from_user`] on a RAM file: one walk over the whole
/// claimed buffer (the part a write can take is translated, the rest only
/// checked), then the user's bytes go straight into the file under its
/// lock.
#[inline(always)]
fn write_ram(
    file: &Mutex<OpenFile>,
    space: &AddressSpace,
    offset: Option<u64>,
    user: UserSlice,
) -> Result<usize, Errno> {
    let mut frames = FrameBuf::new();
    let pages = ram_pages(space, user, false, &mut frames)?;
    let irq = InterruptsOff::new();
    // The file's lock is a statement's temporary: released before `irq`.
    let result = file
        .lock()
        .write_via(offset, pages.len() as usize, |dst| pages.read_at(0, dst));
    drop(irq);
    result.map_err(|e| e.errno())
}

/// Interrupts off while it lives (as `interrupts::without_interrupts`),
/// back on when dropped if they were on. Not a closure, so that the
/// transfer under it is inlined: `without_interrupts` calls its closure
/// on two paths, and one as large as a file transfer then stays out of
/// line.
struct InterruptsOff(bool);

impl InterruptsOff {
    #[inline(always)]
    fn new() -> Self {
        let on = interrupts::are_enabled();
        interrupts::disable();
        Self(on)
    }
}

impl Drop for InterruptsOff {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0 {
            interrupts::enable();
        }
    }
}

/// Most bytes one read or write moves; larger requests are partial, as
/// POSIX allows. The whole claimed buffer is still checked first.
pub const IO_CHUNK: u64 = 1 << 20;

/// Opens `name` with `flags` (abi::open_flags): a disk for `/dev/NAME`,
/// else the file or directory at that path (rules: `docs/vfs.md`), a
/// relative path starting at `at` (`None`: `/`).
pub fn open_at(at: Option<Loc>, name: &str, flags: u64) -> Result<FileHandle, Errno> {
    if at.is_none() || name.starts_with('/') {
        if let Some(device) = open_device(name) {
            return Ok(device);
        }
    }
    let opened = with(|vfs| vfs.open(at.unwrap_or(vfs.root()), name, flags))?;
    let file = match opened.attr.kind {
        Kind::Dir => File::Dir(DirFile {
            fs: opened.fs,
            loc: opened.loc,
            cursor: Mutex::new(0),
        }),
        Kind::File => match opened.fs.ram_file(opened.loc.ino) {
            Some(inode) => File::Ram(Mutex::new(OpenFile::new(inode, flags)?)),
            None => {
                let fs = disk_mount(&opened.fs).ok_or(errno::EOPNOTSUPP)?;
                fs.opened(opened.loc.ino)?;
                File::Disk(DiskFile {
                    fs,
                    ino: opened.loc.ino,
                    pos: Mutex::new(0),
                    flags,
                })
            }
        },
    };
    Ok(Arc::new(file))
}

/// Runs `f` on the mount table (interrupts off, as the RAM file system's
/// locks want; a disk file system's calls sleep for the worker).
fn with<R>(f: impl FnOnce(&Vfs) -> R) -> R {
    interrupts::without_interrupts(|| {
        let vfs = VFS.lock().clone().expect("file system used before init");
        f(&vfs)
    })
}

/// The disk mount `fs` is, if it is one.
fn disk_mount(fs: &Arc<dyn FileSystem>) -> Option<Arc<WorkerFs>> {
    let want = Arc::as_ptr(fs) as *const ();
    interrupts::without_interrupts(|| {
        DISK_MOUNTS
            .lock()
            .iter()
            .find(|m| Arc::as_ptr(m) as *const () == want)
            .cloned()
    })
}

/// Whether any disk file system is mounted (ring path ops then make room
/// to be handed to the worker).
pub fn disks_mounted() -> bool {
    interrupts::without_interrupts(|| !DISK_MOUNTS.lock().is_empty())
}

/// Whether resolving `path` from `at` (`None`: `/`) may call a file
/// system that sleeps. Conservative and cheap: disks are mounted only on
/// directories of the RAM root (`/disk`, `/disk1`, ...) and there are no
/// links, so a walk reaches one only by starting inside it or by naming
/// its mount point.
pub fn path_may_sleep(at: Option<Loc>, path: &str) -> bool {
    with(|vfs| {
        if at.is_some_and(|loc| vfs.fs(loc).might_sleep()) {
            return true;
        }
        let sleeps_at = |part: &str| {
            vfs.mounts()
                .iter()
                .any(|m| m.fs.might_sleep() && m.path.rsplit('/').next() == Some(part))
        };
        path.split('/').any(sleeps_at)
    })
}

/// Mounts the file system of every disk that holds one: the disk `root`
/// names (or the first found) at `/disk`, the others at `/disk1`, ...
/// (`vfs::mount::disk_mount_points`). Runs at boot, before the first
/// program, on a thread that may sleep. A disk without a file system the
/// kernel knows is left alone (it stays a raw `/dev/NAME`).
pub fn mount_disks(root: Option<&str>) {
    let mut found = Vec::new();
    for disk in block::disks() {
        match crate::diskfs::mount(disk.clone()) {
            Ok(fs) => found.push(fs),
            Err(e) => log::info!("{}: no file system mounted ({})", disk.name(), e),
        }
    }
    if let Some(want) = root {
        if !found.iter().any(|f| f.disk == want) {
            log::warn!("root={want}: no such disk holds a file system; using the first found");
        }
    }
    let names: Vec<&str> = found.iter().map(|f| f.disk.as_str()).collect();
    let plan = vfs::mount::disk_mount_points(&names, root);
    interrupts::without_interrupts(|| {
        let mut table = VFS.lock();
        let Some(vfs) = table.as_mut().and_then(Arc::get_mut) else {
            log::error!("disks: the mount table is in use; nothing mounted");
            return;
        };
        for (i, at) in plan {
            let fs = found[i].clone();
            match vfs.mount_new_dir(&at, fs.clone()) {
                Ok(_) => {
                    log::info!("{}: ext4 mounted at {at}", fs.disk);
                    DISK_MOUNTS.lock().push(fs);
                }
                Err(e) => log::error!("{}: cannot mount at {at}: {e}", fs.disk),
            }
        }
    });
}

/// Writes every disk file system back and unmounts it (at shutdown; the
/// caller may sleep). A mount that cannot finish is logged: its journal
/// replays at the next mount.
pub fn unmount_disks() {
    let mounts = interrupts::without_interrupts(|| core::mem::take(&mut *DISK_MOUNTS.lock()));
    for fs in mounts {
        let traffic = fs.report();
        match fs.unmount() {
            Ok(()) => log::info!("{}: unmounted; {traffic}", fs.disk),
            Err(e) => log::warn!(
                "{}: unmount: {e}; the journal will be replayed at the next mount",
                fs.disk
            ),
        }
    }
}

/// The RAM file system.
fn ram() -> Arc<RamFs> {
    interrupts::without_interrupts(|| RAM.lock().clone().expect("file system used before init"))
}

/// The calls below take `at`, where relative paths start (`None`: `/`,
/// there being no working directory yet).
///
/// Creates the directory `path`.
pub fn mkdir(at: Option<Loc>, path: &str) -> Result<(), Errno> {
    with(|vfs| vfs.mkdir(at.unwrap_or(vfs.root()), path)).map(drop)
}

/// Removes the empty directory `path`.
pub fn rmdir(at: Option<Loc>, path: &str) -> Result<(), Errno> {
    with(|vfs| vfs.rmdir(at.unwrap_or(vfs.root()), path))
}

/// Removes the file `path`.
pub fn unlink(at: Option<Loc>, path: &str) -> Result<(), Errno> {
    with(|vfs| vfs.unlink(at.unwrap_or(vfs.root()), path))
}

/// Renames `old` (relative to `old_at`) to `new` (relative to `new_at`).
pub fn rename(old_at: Option<Loc>, old: &str, new_at: Option<Loc>, new: &str) -> Result<(), Errno> {
    with(|vfs| {
        let root = vfs.root();
        vfs.rename2(old_at.unwrap_or(root), old, new_at.unwrap_or(root), new)
    })
}

/// Metadata of the file or directory at `path`.
pub fn stat(at: Option<Loc>, path: &str) -> Result<abi::Stat, Errno> {
    with(|vfs| vfs.stat_path(at.unwrap_or(vfs.root()), path)).map(|attr| attr.to_abi())
}

/// `list_files`: the names in `/` after `after` (see `RamFs::list_after`).
pub fn list_after(after: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
    let ram = ram();
    interrupts::without_interrupts(|| ram.list_after(after, buf)).map_err(|e| e.errno())
}

/// The file system's size, as a fraction of usable RAM: what its files may
/// hold (contents, names, inodes) before writes and creates fail with
/// `ENOSPC`. A quarter keeps a full file system from starving the kernel
/// heap and the processes' memory.
const SIZE_DIVISOR: u64 = 4;

/// Creates the file system and copies every regular file of the initrd
/// (a cpio newc archive) into it. Returns how many files were loaded.
pub fn init(initrd: Option<&[u8]>) -> usize {
    let (_, usable) = crate::mm::frames::counts();
    let size = usable * abi::layout::PAGE_SIZE / SIZE_DIVISOR;
    let ram = Arc::new(RamFs::with_size(
        usize::try_from(size).unwrap_or(usize::MAX),
    ));
    interrupts::without_interrupts(|| {
        *RAM.lock() = Some(ram.clone());
        *VFS.lock() = Some(Arc::new(Vfs::new(ram.clone())));
    });
    log::info!("file system: {} MiB", size >> 20);
    let Some(archive) = initrd else {
        log::warn!("no initrd module: the file system starts empty");
        return 0;
    };
    let mut count = 0;
    for entry in kernel_core::cpio::entries(archive) {
        match entry {
            Ok(entry) if entry.is_file() => {
                let mut data = Vec::new();
                let result = match data.try_reserve_exact(entry.data.len()) {
                    Ok(()) => {
                        data.extend_from_slice(entry.data);
                        interrupts::without_interrupts(|| ram.insert(entry.name, data))
                            .map_err(|e| e.errno())
                    }
                    Err(_) => Err(errno::ENOMEM),
                };
                match result {
                    Ok(_) => count += 1,
                    Err(e) => log::warn!("initrd: skipping {:?}: {}", entry.name, e),
                }
            }
            Ok(_) => {}
            Err(e) => {
                log::error!("initrd: {e:?}; files after this point are missing");
                break;
            }
        }
    }
    log::info!("initrd: {count} files, {} KiB", archive.len() / 1024);
    count
}

/// The size in bytes of the file `name`.
pub fn file_size(name: &str) -> Result<u64, Errno> {
    let ram = ram();
    let inode = interrupts::without_interrupts(|| ram.lookup(name)).map_err(|e| e.errno())?;
    Ok(inode.size())
}

/// The whole content of the file `name` in the RAM file system (for
/// loading programs); `ENOMEM` if there is no memory for the copy.
pub fn read_whole(name: &str) -> Result<Vec<u8>, Errno> {
    let ram = ram();
    let inode = interrupts::without_interrupts(|| ram.lookup(name)).map_err(|e| e.errno())?;
    let size = inode.size() as usize;
    let mut data = Vec::new();
    data.try_reserve_exact(size).map_err(|_| errno::ENOMEM)?;
    data.resize(size, 0);
    let n = inode.read_at(0, &mut data);
    data.truncate(n);
    if data.is_empty() {
        return Err(errno::ENOEXEC);
    }
    Ok(data)
}
