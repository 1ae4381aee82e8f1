//! Disk file systems: ext4 (`fs-ext4`) on the block layer's disks,
//! mounted at `/disk`, `/disk1`, ... at boot and unmounted at shutdown.
//!
//! - [`DiskDev`] is `fs_ext4::BlockDevice` over a [`Disk`]: synchronous
//!   block reads, writes and cache flushes through a DMA bounce buffer,
//!   the calling thread (the worker) sleeping until the device is done.
//! - [`WorkerFs`] is the VFS face of a mount: every call is run on the
//!   file-system worker ([`crate::fswork`]), whose stack rsext4 needs, with
//!   its arguments copied in and its results copied out. Path resolution,
//!   which calls `lookup` once per component, works unchanged.
//!
//! What fsync means: `Ext4Fs::fsync` writes the file data home, commits
//! the metadata to the journal and flushes the device before and after
//! the commit block (`docs/filesystems.md`), so [`DiskDev::flush`] is the
//! block layer's FLUSH, waited for.

use crate::block::{Dir, Disk};
use crate::fswork;
use crate::mm::shared::SharedFrames;
use abi::errno::{Errno, EINVAL, EIO, ENOSPC};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use fs_ext4::vfs::Ext4Vfs;
use fs_ext4::{Ext4Fs, ReadCache};
use kernel_core::vfs::cache::{PageCache, PAGE};
use kernel_core::vfs::{Attr, DirCursor, DirEnt, FileSystem, Ino, Kind};
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;

/// Bytes the bounce buffer holds: the most one device transfer of
/// [`DiskDev`] moves (larger requests from rsext4 are split).
const BOUNCE: u64 = 128 * 1024;

/// A disk as rsext4 sees it.
pub struct DiskDev {
    disk: Arc<Disk>,
    bounce: Arc<SharedFrames>,
    block: u32,
    /// Device transfers and flushes so far (shared with the mount).
    counts: Arc<IoCounts>,
    /// Whether a write completed since the last flush. A flush with none
    /// has nothing to make durable (every write here has completed before
    /// `flush` is called) and is skipped: rsext4 flushes before and after
    /// each journal commit and again at checkpoints, and each flush is a
    /// host `fdatasync` under QEMU.
    unflushed: bool,
}

/// What a [`DiskDev`] asked of its disk: the cost of the file system's
/// calls in device requests, logged at unmount (docs/filesystems.md).
#[derive(Default, Debug)]
pub struct IoCounts {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub flushes: AtomicU64,
    /// Flushes with no write before them since the last: skipped.
    pub flushes_skipped: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl DiskDev {
    pub fn new(disk: Arc<Disk>) -> Result<Self, Errno> {
        let block = disk.geometry().block_size;
        if block == 0 || !BOUNCE.is_multiple_of(u64::from(block)) {
            return Err(EINVAL);
        }
        let bounce = SharedFrames::alloc_zeroed(BOUNCE / abi::layout::PAGE_SIZE)?;
        Ok(Self {
            disk,
            bounce,
            block,
            counts: Arc::new(IoCounts::default()),
            unflushed: true,
        })
    }

    /// Moves `len` bytes at block `lba` in pieces of at most [`BOUNCE`].
    fn each_piece(
        &self,
        lba: u64,
        len: usize,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if !len.is_multiple_of(self.block as usize) {
            return Err(EINVAL);
        }
        let start = lba.checked_mul(u64::from(self.block)).ok_or(EINVAL)?;
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(BOUNCE as usize);
            f(start + done as u64, done, n)?;
            done += n;
        }
        Ok(())
    }
}

impl fs_ext4::BlockDevice for DiskDev {
    fn block_size(&self) -> u32 {
        self.block
    }

    fn block_count(&self) -> u64 {
        self.disk.size() / u64::from(self.block)
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Errno> {
        add(&self.counts.reads, 1);
        add(&self.counts.bytes_read, buf.len() as u64);
        let (disk, bounce) = (&self.disk, &self.bounce);
        self.each_piece(lba, buf.len(), |at, done, n| {
            disk.transfer_sync(Dir::Read, at, bounce, n as u64)?;
            bounce.read_bytes(0, &mut buf[done..done + n]);
            Ok(())
        })
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), Errno> {
        add(&self.counts.writes, 1);
        add(&self.counts.bytes_written, buf.len() as u64);
        self.unflushed = true;
        let (disk, bounce) = (&self.disk, &self.bounce);
        self.each_piece(lba, buf.len(), |at, done, n| {
            bounce.write_bytes(0, &buf[done..done + n]);
            disk.transfer_sync(Dir::Write, at, bounce, n as u64)
        })
    }

    fn flush(&mut self) -> Result<(), Errno> {
        if !self.unflushed {
            add(&self.counts.flushes_skipped, 1);
            return Ok(());
        }
        add(&self.counts.flushes, 1);
        // Cleared before: a write that fails after this point sets it
        // again; a failed flush leaves it set.
        self.unflushed = false;
        self.disk
            .flush_sync(None)
            .inspect_err(|_| self.unflushed = true)
    }
}

/// A mounted ext4 file system: on its disk, behind a cache of recent
/// reads (`fs_ext4::ReadCache`: rsext4 re-reads the journal superblock,
/// bitmaps and group descriptors around every commit).
pub type Ext4 = Ext4Vfs<ReadCache<DiskDev>>;

/// Recent reads the cache in front of each disk keeps.
const READ_CACHE_ENTRIES: usize = 256;

/// A disk file system, called through the worker, with its page cache.
pub struct WorkerFs {
    inner: Arc<Ext4>,
    /// File data: hits are served by whoever reads (inside
    /// `io_uring_enter` too), misses and every change go through the
    /// worker, which keeps it exact (`kernel_core::vfs::cache`). Taken
    /// with interrupts off.
    cache: Arc<Mutex<PageCache>>,
    /// The disk it is on, for logs.
    pub disk: String,
    /// Its device traffic.
    pub counts: Arc<IoCounts>,
    /// Open files per inode, and the unlinked ones still open (see
    /// [`Orphans`]). Taken with interrupts off.
    open: Arc<Mutex<Orphans>>,
}

/// Files unlinked while open. rsext4 frees an inode with its last name,
/// but POSIX keeps an unlinked file readable until its last close (and
/// freeing it at once would let a new file reuse the number under the old
/// descriptor). So a name whose inode is open is moved into the orphan
/// directory (`lost+found`, which `mkfs.ext4` makes) as `#orphan-INO`
/// instead, and unlinked there at the last close; orphans a crash left
/// behind are unlinked at the next mount. A rename that replaces an open
/// file does the same with the replaced one.
#[derive(Default)]
struct Orphans {
    /// Open descriptors per inode.
    open: hashbrown::HashMap<Ino, u32>,
    /// Inodes moved to the orphan directory while open.
    orphaned: Vec<Ino>,
    /// The orphan directory (`None` if the file system has none; unlink
    /// of an open file is then `EBUSY`).
    dir: Option<Ino>,
}

const ORPHAN_DIR: &str = "lost+found";
const ORPHAN_PREFIX: &str = "#orphan-";

fn orphan_name(ino: Ino) -> String {
    alloc::format!("{ORPHAN_PREFIX}{ino}")
}

/// Directory entries one worker round trip of `readdir` collects.
const READDIR_BATCH: usize = 64;

/// One entry of a `readdir` batch, owned.
struct OwnedEnt {
    name: Vec<u8>,
    ino: Ino,
    kind: Kind,
    size: u64,
    next: DirCursor,
}

impl WorkerFs {
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Ext4) -> Result<R, Errno> + Send + 'static,
    ) -> Result<R, Errno> {
        let inner = self.inner.clone();
        fswork::call(move || f(&inner))?
    }

    /// Runs `f` on the worker with the file system and the cache.
    fn run_cached<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Ext4, &Mutex<PageCache>) -> Result<R, Errno> + Send + 'static,
    ) -> Result<R, Errno> {
        let inner = self.inner.clone();
        let cache = self.cache.clone();
        fswork::call(move || f(&inner, &cache))?
    }

    /// A read served from the page cache alone: `Some(n)` with the bytes
    /// handed to `out` (offset in the read, bytes), or `None` on a miss.
    /// Never sleeps: callable under any lock.
    pub fn read_cached(
        &self,
        ino: Ino,
        offset: u64,
        len: usize,
        out: impl FnMut(usize, &[u8]),
    ) -> Option<usize> {
        without_interrupts(|| self.cache.lock().read(ino, offset, len, out))
    }

    /// Whether [`WorkerFs::read_cached`] would hit now.
    pub fn cached(&self, ino: Ino, offset: u64, len: usize) -> bool {
        without_interrupts(|| self.cache.lock().covers(ino, offset, len))
    }

    /// A descriptor of `ino` was opened.
    pub fn opened(&self, ino: Ino) -> Result<(), Errno> {
        without_interrupts(|| {
            let mut o = self.open.lock();
            o.open.try_reserve(1).map_err(|_| abi::errno::ENOMEM)?;
            *o.open.entry(ino).or_insert(0) += 1;
            Ok(())
        })
    }

    /// A descriptor of `ino` was closed: at the last close of an orphan,
    /// the worker unlinks it (from whatever context this runs in: it never
    /// sleeps).
    pub fn closed(&self, ino: Ino) {
        let orphan_dir = without_interrupts(|| {
            let mut o = self.open.lock();
            let last = match o.open.get_mut(&ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    o.open.remove(&ino);
                    true
                }
                None => false,
            };
            let i = o.orphaned.iter().position(|&x| x == ino).filter(|_| last)?;
            o.orphaned.swap_remove(i);
            o.dir
        });
        let Some(dir) = orphan_dir else { return };
        let inner = self.inner.clone();
        let cache = self.cache.clone();
        let posted = fswork::post(move || {
            if let Err(e) = inner.unlink(dir, &orphan_name(ino)) {
                log::warn!(
                    "ext4: orphan {ino}: unlink at last close: {e}; it goes at the next mount"
                );
            }
            without_interrupts(|| cache.lock().forget(ino));
        });
        if let Err(e) = posted {
            log::warn!("ext4: orphan {ino}: {e}; it goes at the next mount");
        }
    }

    /// Writes everything back and unmounts (on the worker).
    pub fn unmount(&self) -> Result<(), Errno> {
        self.run(|fs| fs.unmount())
    }

    /// One line on the device traffic and the page cache.
    pub fn report(&self) -> String {
        let c = &self.counts;
        let (hits, misses) = without_interrupts(|| self.cache.lock().stats());
        alloc::format!(
            "{} reads ({} KiB), {} writes ({} KiB), {} flushes ({} with nothing to flush skipped); page cache {} hits, {} misses",
            c.reads.load(Ordering::Relaxed),
            c.bytes_read.load(Ordering::Relaxed) >> 10,
            c.writes.load(Ordering::Relaxed),
            c.bytes_written.load(Ordering::Relaxed) >> 10,
            c.flushes.load(Ordering::Relaxed),
            c.flushes_skipped.load(Ordering::Relaxed),
            hits,
            misses
        )
    }
}

fn owned(name: &str) -> Result<String, Errno> {
    let mut s = String::new();
    s.try_reserve_exact(name.len())
        .map_err(|_| abi::errno::ENOMEM)?;
    s.push_str(name);
    Ok(s)
}

impl FileSystem for WorkerFs {
    fn name(&self) -> &'static str {
        "ext4"
    }

    fn root(&self) -> Ino {
        self.inner.root()
    }

    fn might_sleep(&self) -> bool {
        true
    }

    fn lookup(&self, dir: Ino, name: &str) -> Result<(Ino, Kind), Errno> {
        let name = owned(name)?;
        self.run(move |fs| fs.lookup(dir, &name))
    }

    fn parent(&self, dir: Ino) -> Result<Ino, Errno> {
        self.run(move |fs| fs.parent(dir))
    }

    fn stat(&self, ino: Ino) -> Result<Attr, Errno> {
        self.run(move |fs| fs.stat(ino))
    }

    fn create(&self, dir: Ino, name: &str, kind: Kind) -> Result<Ino, Errno> {
        let name = owned(name)?;
        self.run(move |fs| fs.create(dir, &name, kind))
    }

    fn unlink(&self, dir: Ino, name: &str) -> Result<(), Errno> {
        let name = owned(name)?;
        let open = self.open.clone();
        self.run_cached(move |fs, cache| {
            let (victim, kind) = fs.lookup(dir, &name)?;
            if kind == Kind::File && orphan_if_open(fs, &open, dir, &name, victim)? {
                return Ok(());
            }
            fs.unlink(dir, &name)?;
            // Its number may be reused: nothing of it may stay cached.
            without_interrupts(|| cache.lock().forget(victim));
            Ok(())
        })
    }

    fn rmdir(&self, dir: Ino, name: &str) -> Result<(), Errno> {
        let name = owned(name)?;
        self.run(move |fs| fs.rmdir(dir, &name))
    }

    fn rename(&self, olddir: Ino, oldname: &str, newdir: Ino, newname: &str) -> Result<(), Errno> {
        let (oldname, newname) = (owned(oldname)?, owned(newname)?);
        let open = self.open.clone();
        self.run_cached(move |fs, cache| {
            let replaced = fs.lookup(newdir, &newname).ok();
            let moving = fs.lookup(olddir, &oldname)?.0;
            if let Some((target, Kind::File)) = replaced {
                if target != moving {
                    // The POSIX checks first, so that nothing moves on a
                    // rename that must fail.
                    if fs.stat(moving)?.kind == Kind::Dir {
                        return Err(abi::errno::ENOTDIR);
                    }
                    orphan_if_open(fs, &open, newdir, &newname, target)?;
                }
            }
            let replaced = fs.lookup(newdir, &newname).ok().map(|(ino, _)| ino);
            fs.rename(olddir, &oldname, newdir, &newname)?;
            let moved = fs.lookup(newdir, &newname).ok().map(|(ino, _)| ino);
            if let Some(old) = replaced.filter(|&r| Some(r) != moved) {
                without_interrupts(|| cache.lock().forget(old));
            }
            Ok(())
        })
    }

    fn readdir(
        &self,
        dir: Ino,
        mut cursor: DirCursor,
        sink: &mut dyn FnMut(&DirEnt<'_>) -> bool,
    ) -> Result<(), Errno> {
        loop {
            let batch = self.run(move |fs| {
                let mut out: Vec<OwnedEnt> = Vec::new();
                out.try_reserve_exact(READDIR_BATCH)
                    .map_err(|_| abi::errno::ENOMEM)?;
                let mut failed = None;
                fs.readdir(dir, cursor, &mut |e| {
                    let mut name = Vec::new();
                    if name.try_reserve_exact(e.name.len()).is_err() {
                        failed = Some(abi::errno::ENOMEM);
                        return false;
                    }
                    name.extend_from_slice(e.name);
                    out.push(OwnedEnt {
                        name,
                        ino: e.ino,
                        kind: e.kind,
                        size: e.size,
                        next: e.next,
                    });
                    out.len() < READDIR_BATCH
                })?;
                match failed {
                    Some(e) => Err(e),
                    None => Ok(out),
                }
            })?;
            let full = batch.len() == READDIR_BATCH;
            for e in &batch {
                let ent = DirEnt {
                    name: &e.name,
                    ino: e.ino,
                    kind: e.kind,
                    size: e.size,
                    next: e.next,
                };
                if !sink(&ent) {
                    return Ok(());
                }
                cursor = e.next;
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn read_at(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let len = buf.len();
        if let Some(n) = self.read_cached(ino, offset, len, |at, d| {
            buf[at..at + d.len()].copy_from_slice(d)
        }) {
            return Ok(n);
        }
        // A miss: the worker reads the whole pages the range touches and
        // caches them.
        let data = self.run_cached(move |fs, cache| {
            let size = fs.stat(ino)?.size;
            if offset >= size || len == 0 {
                without_interrupts(|| cache.lock().set_size(ino, size));
                return Ok(Vec::new());
            }
            let start = offset / PAGE as u64 * PAGE as u64;
            let end = offset.saturating_add(len as u64).min(size);
            let span = usize::try_from(end - start).map_err(|_| EINVAL)?;
            let mut data = Vec::new();
            data.try_reserve_exact(span)
                .map_err(|_| abi::errno::ENOMEM)?;
            data.resize(span, 0);
            let n = fs.read_at(ino, start, &mut data)?;
            data.truncate(n);
            without_interrupts(|| cache.lock().fill(ino, start, &data, size));
            let skip = ((offset - start) as usize).min(data.len());
            data.drain(..skip);
            Ok(data)
        })?;
        if data.len() > buf.len() {
            return Err(EIO);
        }
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn write_at(&self, ino: Ino, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        let mut data = Vec::new();
        data.try_reserve_exact(buf.len())
            .map_err(|_| abi::errno::ENOMEM)?;
        data.extend_from_slice(buf);
        self.run_cached(move |fs, cache| {
            let old_size = fs.stat(ino)?.size;
            let result = fs.write_at(ino, offset, &data);
            without_interrupts(|| {
                let mut cache = cache.lock();
                match result {
                    Ok(n) => cache.wrote(ino, old_size, offset, &data[..n.min(data.len())]),
                    // What part landed is unknown: forget the file.
                    Err(_) => cache.forget(ino),
                }
            });
            result
        })
    }

    fn truncate(&self, ino: Ino, len: u64) -> Result<(), Errno> {
        self.run_cached(move |fs, cache| {
            let result = fs.truncate(ino, len);
            without_interrupts(|| cache.lock().forget(ino));
            result
        })
    }

    fn fsync(&self, ino: Ino, datasync: bool) -> Result<(), Errno> {
        self.run(move |fs| fs.fsync(ino, datasync))
    }
}

/// Moves `dir/name` (inode `ino`, a file) into the orphan directory if it
/// is open; `Ok(true)` if it did. On the worker.
fn orphan_if_open(
    fs: &Ext4,
    open: &Mutex<Orphans>,
    dir: Ino,
    name: &str,
    ino: Ino,
) -> Result<bool, Errno> {
    let (is_open, orphans) = without_interrupts(|| {
        let o = open.lock();
        (o.open.get(&ino).is_some_and(|&n| n > 0), o.dir)
    });
    if !is_open {
        return Ok(false);
    }
    let Some(orphans) = orphans else {
        return Err(abi::errno::EBUSY);
    };
    without_interrupts(|| open.lock().orphaned.try_reserve(1)).map_err(|_| abi::errno::ENOMEM)?;
    fs.rename(dir, name, orphans, &orphan_name(ino))?;
    without_interrupts(|| open.lock().orphaned.push(ino));
    Ok(true)
}

/// Seconds since 1970 for inode times: the RTC is not read yet, so a
/// fixed date (the project's epoch, 2026-12-03) plus the time since boot.
/// Not done: the real time of day.
fn now() -> i64 {
    const BOOT: i64 = 1_796_256_000;
    BOOT + (crate::time::now_ns() / 1_000_000_000) as i64
}

/// Mounts the ext4 file system on `disk` (on the worker, which this
/// sleeps for). `EINVAL` if the disk holds none.
pub fn mount(disk: Arc<Disk>) -> Result<Arc<WorkerFs>, Errno> {
    let name = owned(disk.name())?;
    let counts = Arc::new(IoCounts::default());
    let theirs = counts.clone();
    let (fs, orphan_dir) = fswork::call(move || {
        let mut dev = DiskDev::new(disk)?;
        dev.counts = theirs;
        let dev = ReadCache::new(dev, READ_CACHE_ENTRIES);
        let fs = Arc::new(Ext4Vfs::new(Ext4Fs::mount(dev, now)?));
        let dir = reap_orphans(&fs);
        Ok::<_, Errno>((fs, dir))
    })??;
    if fs.is_read_only() {
        log::warn!("ext4 on {name}: mounted read-only");
    }
    let stat = fs.statfs();
    log::info!(
        "ext4 on {name}: {} MiB, {} MiB free, {}-byte blocks",
        (stat.blocks * stat.block_size) >> 20,
        (stat.free_blocks * stat.block_size) >> 20,
        stat.block_size
    );
    if stat.free_blocks == 0 {
        log::warn!("ext4 on {name}: full; writes will get {}", ENOSPC);
    }
    Ok(Arc::new(WorkerFs {
        inner: fs,
        cache: Arc::new(Mutex::new(PageCache::new())),
        disk: name,
        counts,
        open: Arc::new(Mutex::new(Orphans {
            dir: orphan_dir,
            ..Orphans::default()
        })),
    }))
}

/// Finds the orphan directory and unlinks what a crash left in it (files
/// unlinked while open). On the worker, at mount.
fn reap_orphans(fs: &Ext4) -> Option<Ino> {
    let (dir, kind) = fs.lookup(fs.root(), ORPHAN_DIR).ok()?;
    if kind != Kind::Dir || fs.is_read_only() {
        return None;
    }
    let mut left = Vec::new();
    let listed = fs.readdir(dir, 0, &mut |e| {
        if e.kind == Kind::File && e.name.starts_with(ORPHAN_PREFIX.as_bytes()) {
            if let Ok(name) = core::str::from_utf8(e.name) {
                if left.try_reserve(1).is_ok() {
                    left.push(String::from(name));
                }
            }
        }
        left.len() < 4096
    });
    if let Err(e) = listed {
        log::warn!("ext4: {ORPHAN_DIR}: {e}; orphans left alone");
        return Some(dir);
    }
    for name in &left {
        match fs.unlink(dir, name) {
            Ok(()) => {
                log::info!("ext4: removed {ORPHAN_DIR}/{name} (unlinked while open before a crash)")
            }
            Err(e) => log::warn!("ext4: {ORPHAN_DIR}/{name}: {e}"),
        }
    }
    Some(dir)
}
