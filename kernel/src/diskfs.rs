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
use fs_ext4::vfs::Ext4Vfs;
use fs_ext4::Ext4Fs;
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
        let (disk, bounce) = (&self.disk, &self.bounce);
        self.each_piece(lba, buf.len(), |at, done, n| {
            disk.transfer_sync(Dir::Read, at, bounce, n as u64)?;
            bounce.read_bytes(0, &mut buf[done..done + n]);
            Ok(())
        })
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), Errno> {
        let (disk, bounce) = (&self.disk, &self.bounce);
        self.each_piece(lba, buf.len(), |at, done, n| {
            bounce.write_bytes(0, &buf[done..done + n]);
            disk.transfer_sync(Dir::Write, at, bounce, n as u64)
        })
    }

    fn flush(&mut self) -> Result<(), Errno> {
        self.disk.flush_sync(None)
    }
}

/// A mounted ext4 file system.
pub type Ext4 = Ext4Vfs<DiskDev>;

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

    /// Writes everything back and unmounts (on the worker).
    pub fn unmount(&self) -> Result<(), Errno> {
        self.run(|fs| fs.unmount())
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
        self.run_cached(move |fs, cache| {
            let victim = fs.lookup(dir, &name)?.0;
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
        self.run_cached(move |fs, cache| {
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
            let result = fs.write_at(ino, offset, &data);
            without_interrupts(|| {
                let mut cache = cache.lock();
                match result {
                    Ok(n) => cache.wrote(ino, offset, &data[..n.min(data.len())]),
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
    let fs = fswork::call(move || {
        let dev = DiskDev::new(disk)?;
        Ext4Fs::mount(dev, now).map(|fs| Arc::new(Ext4Vfs::new(fs)))
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
    }))
}
