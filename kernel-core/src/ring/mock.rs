//! [`MockEnv`]: an [`IoEnv`] made of plain data, for host tests of the
//! engine here and of the backends in their own crates.
//!
//! It has a [`RamFs`], a descriptor table of open files, a table of pinned
//! (registered) files, one block of fake user memory at a chosen base
//! address (anything outside it is `EFAULT`) and a clock the test sets.
//! Descriptors and pins share one open file description, as on Linux, so a
//! registered file and its descriptor move the same file position.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicUsize, Ordering};

use abi::errno::EINVAL;
use abi::errno::{Errno, EBADF, EFAULT};
use abi::open_flags::{O_ACCMODE, O_RDWR};

use super::env::{AsyncIo, FileRef, IoEnv, IoTarget, PathOp};
use super::mailbox::IoMailbox;
use super::{OwnedRing, RingMapping, RingMemory, SharedRing};
use crate::fs::{FdTable, OpenFile, RamFs};
use alloc::string::String;

type SharedFile = Arc<spin::Mutex<OpenFile>>;

/// Ring memory for a mock `RingHost::map_ring`: an [`OwnedRing`] of the
/// largest layout that counts itself in `live` for as long as it exists,
/// so a test can check that the memory goes with its last holder and not
/// before.
struct MockRingMemory {
    ring: OwnedRing,
    live: Arc<AtomicUsize>,
}

impl RingMemory for MockRingMemory {
    fn view(&self) -> SharedRing<'_> {
        self.ring.view()
    }
}

impl Drop for MockRingMemory {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Fresh zeroed memory of the largest ring layout
/// (`abi::io_uring::ring_layout`), as a mock `RingHost::map_ring` returns
/// it; `live` counts it until the last clone of the handle (and of any
/// other holder's) is dropped.
pub fn mock_ring_mapping(live: &Arc<AtomicUsize>) -> RingMapping {
    use abi::io_uring::ring_layout;
    live.fetch_add(1, Ordering::SeqCst);
    RingMapping::new(Arc::new(MockRingMemory {
        ring: OwnedRing::new(ring_layout::MAX_SQ_ENTRIES, ring_layout::MAX_CQ_ENTRIES),
        live: live.clone(),
    }))
}

/// A fake machine for ring tests.
#[derive(Debug)]
pub struct MockEnv {
    /// The file system; tests may fill and inspect it directly.
    pub fs: RamFs,
    fds: FdTable<SharedFile>,
    pinned: BTreeMap<u64, SharedFile>,
    next_token: u64,
    mem_base: u64,
    mem: Vec<u8>,
    now: u64,
    /// How many `fsync` calls succeeded.
    pub fsyncs: u32,
    /// Descriptors whose I/O completes later (a mock block device): `start`
    /// records it in `started` instead of doing it.
    async_fds: Vec<i32>,
    /// I/O started on those: the op, and where to post its result.
    pub started: Vec<StartedIo>,
    /// Whether path-based ops are handed off (a sleeping file system is
    /// mounted): `start_path` records them in `started_paths`.
    pub punt_paths: bool,
    /// Path ops handed off: what (`"open x"`), and where the result goes.
    pub started_paths: Vec<(String, StartedIo)>,
}

/// I/O a [`MockEnv`] started on an asynchronous descriptor.
#[derive(Debug, Clone)]
pub struct StartedIo {
    pub io: AsyncIo,
    pub token: u64,
    pub polled: bool,
    pub mailbox: Arc<IoMailbox>,
}

impl MockEnv {
    /// An environment with `mem_len` bytes of zeroed user memory at
    /// `mem_base`, no files, and the clock at 0.
    pub fn new(mem_base: u64, mem_len: usize) -> Self {
        Self {
            fs: RamFs::new(),
            fds: FdTable::new(),
            pinned: BTreeMap::new(),
            next_token: 1,
            mem_base,
            mem: vec![0; mem_len],
            now: 0,
            fsyncs: 0,
            async_fds: Vec::new(),
            started: Vec::new(),
            punt_paths: false,
            started_paths: Vec::new(),
        }
    }

    /// Makes descriptor `fd`'s I/O asynchronous: ops on it start and stay
    /// pending until the test calls [`MockEnv::finish_io`].
    pub fn make_async(&mut self, fd: i32) {
        self.async_fds.push(fd);
    }

    /// Posts `result` for the started I/O `token` (and forgets it); false
    /// if no such I/O was started.
    pub fn finish_io(&mut self, token: u64, result: Result<u32, Errno>) -> bool {
        let Some(i) = self.started.iter().position(|s| s.token == token) else {
            return false;
        };
        let io = self.started.remove(i);
        assert!(
            io.mailbox.post(token, result),
            "a started I/O had no mailbox room"
        );
        true
    }

    /// Posts `result` for the handed-off path op `token` (as the worker
    /// would); false if there is none.
    pub fn finish_path(&mut self, token: u64, result: Result<u32, Errno>) -> bool {
        let Some(i) = self
            .started_paths
            .iter()
            .position(|(_, s)| s.token == token)
        else {
            return false;
        };
        let (_, io) = self.started_paths.remove(i);
        assert!(io.mailbox.post(token, result), "no mailbox room");
        true
    }

    /// Sets the clock.
    pub fn set_now(&mut self, ns: u64) {
        self.now = ns;
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ns: u64) {
        self.now = self.now.saturating_add(ns);
    }

    /// First address of the user memory.
    pub fn mem_base(&self) -> u64 {
        self.mem_base
    }

    /// Size of the user memory.
    pub fn mem_len(&self) -> usize {
        self.mem.len()
    }

    /// A copy of `len` bytes of user memory at `addr`; `EFAULT` outside it.
    pub fn peek(&self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let range = self.range(addr, len as u64)?;
        Ok(self.mem[range].to_vec())
    }

    /// Creates (or replaces) `path` holding `data` and opens it read-write;
    /// returns the descriptor.
    pub fn create_file(&mut self, path: &str, data: &[u8]) -> Result<i32, Errno> {
        self.fs.insert(path, data.to_vec()).map_err(|e| e.errno())?;
        self.open(abi::io_uring::AT_FDCWD, path, O_RDWR as u32)
    }

    /// The contents of `path`, if it exists.
    pub fn file_data(&self, path: &str) -> Option<Vec<u8>> {
        let inode = self.fs.lookup(path).ok()?;
        Some(inode.with_data(|d| d.to_vec()))
    }

    /// The file position of descriptor `fd`.
    pub fn fd_offset(&self, fd: i32) -> Option<u64> {
        let file = self.fds.get(u64::try_from(fd).ok()?)?;
        Some(file.lock().offset())
    }

    /// Number of open descriptors.
    pub fn open_fds(&self) -> usize {
        self.fds.len()
    }

    /// Number of pinned (registered) files.
    pub fn pinned_files(&self) -> usize {
        self.pinned.len()
    }

    fn range(&self, addr: u64, len: u64) -> Result<Range<usize>, Errno> {
        let start = addr.checked_sub(self.mem_base).ok_or(EFAULT)?;
        let end = start.checked_add(len).ok_or(EFAULT)?;
        if end > self.mem.len() as u64 {
            return Err(EFAULT);
        }
        Ok(start as usize..end as usize)
    }

    /// Where a relative `path` starts: `AT_FDCWD` is `/`; the mock's
    /// descriptors are all files, so any other open one is `ENOTDIR` and a
    /// closed one `EBADF`. Absolute paths ignore `dirfd`, as on Linux.
    fn check_dirfd(&self, dirfd: i32, path: &str) -> Result<(), Errno> {
        if dirfd == abi::io_uring::AT_FDCWD || path.starts_with('/') {
            return Ok(());
        }
        self.file(FileRef::Fd(dirfd))?;
        Err(abi::errno::ENOTDIR)
    }

    fn file(&self, file: FileRef) -> Result<SharedFile, Errno> {
        match file {
            FileRef::Fd(fd) => {
                let fd = u64::try_from(fd).map_err(|_| EBADF)?;
                self.fds.get(fd).cloned().ok_or(EBADF)
            }
            FileRef::Pinned(token) => self.pinned.get(&token).cloned().ok_or(EBADF),
        }
    }
}

impl IoEnv for MockEnv {
    fn now_ns(&self) -> u64 {
        self.now
    }

    fn read(
        &mut self,
        file: FileRef,
        offset: Option<u64>,
        buf: u64,
        len: u32,
    ) -> Result<u32, Errno> {
        let file = self.file(file)?;
        let range = self.range(buf, u64::from(len))?;
        let dst = &mut self.mem[range];
        let n = file.lock().read_via(offset, dst.len(), |data| {
            dst[..data.len()].copy_from_slice(data);
            Ok(())
        })?;
        Ok(n as u32)
    }

    fn write(
        &mut self,
        file: FileRef,
        offset: Option<u64>,
        buf: u64,
        len: u32,
    ) -> Result<u32, Errno> {
        let file = self.file(file)?;
        let range = self.range(buf, u64::from(len))?;
        let src = &self.mem[range];
        let n = file
            .lock()
            .write_via(offset, src.len(), |dst| dst.copy_from_slice(src))
            .map_err(|e| e.errno())?;
        Ok(n as u32)
    }

    fn fsync(&mut self, file: FileRef) -> Result<(), Errno> {
        self.file(file)?;
        self.fsyncs += 1;
        Ok(())
    }

    fn open(&mut self, dirfd: i32, path: &str, flags: u32) -> Result<i32, Errno> {
        self.check_dirfd(dirfd, path)?;
        let file = self
            .fs
            .open_file(path, u64::from(flags))
            .map_err(|e| e.errno())?;
        let fd = self
            .fds
            .insert(Arc::new(spin::Mutex::new(file)))
            .map_err(|e| e.errno())?;
        Ok(fd as i32)
    }

    fn close(&mut self, fd: i32) -> Result<(), Errno> {
        let fd = u64::try_from(fd).map_err(|_| EBADF)?;
        self.fds.remove(fd).map(drop).map_err(|e| e.errno())
    }

    fn stat(&mut self, dirfd: i32, path: &str) -> Result<abi::Stat, Errno> {
        self.check_dirfd(dirfd, path)?;
        Ok(self.fs.stat_path(path)?.to_abi())
    }

    fn mkdir(&mut self, dirfd: i32, path: &str) -> Result<(), Errno> {
        self.check_dirfd(dirfd, path)?;
        self.fs.mkdir(path)?;
        Ok(())
    }

    fn unlink(&mut self, dirfd: i32, path: &str, dir: bool) -> Result<(), Errno> {
        self.check_dirfd(dirfd, path)?;
        if dir {
            Ok(self.fs.rmdir(path)?)
        } else {
            Ok(self.fs.unlink(path)?)
        }
    }

    fn rename(&mut self, olddirfd: i32, old: &str, newdirfd: i32, new: &str) -> Result<(), Errno> {
        self.check_dirfd(olddirfd, old)?;
        self.check_dirfd(newdirfd, new)?;
        Ok(self.fs.rename(old, new)?)
    }

    fn ftruncate(&mut self, file: FileRef, len: u64) -> Result<(), Errno> {
        let file = self.file(file)?;
        let file = file.lock();
        if file.flags() & O_ACCMODE == abi::open_flags::O_RDONLY {
            return Err(EINVAL);
        }
        Ok(file.inode().truncate(len)?)
    }

    fn read_user(&self, addr: u64, dst: &mut [u8]) -> Result<(), Errno> {
        let range = self.range(addr, dst.len() as u64)?;
        dst.copy_from_slice(&self.mem[range]);
        Ok(())
    }

    fn write_user(&mut self, addr: u64, src: &[u8]) -> Result<(), Errno> {
        let range = self.range(addr, src.len() as u64)?;
        self.mem[range].copy_from_slice(src);
        Ok(())
    }

    fn check_user(&self, addr: u64, len: u64, _write: bool) -> Result<(), Errno> {
        self.range(addr, len).map(drop)
    }

    fn pin_file(&mut self, fd: i32) -> Result<u64, Errno> {
        let file = self.file(FileRef::Fd(fd))?;
        let token = self.next_token;
        self.next_token += 1;
        self.pinned.insert(token, file);
        Ok(token)
    }

    fn may_start(&self, file: FileRef) -> bool {
        matches!(file, FileRef::Fd(fd) if self.async_fds.contains(&fd))
    }

    fn start(&mut self, file: FileRef, io: AsyncIo, target: IoTarget<'_>) -> Result<bool, Errno> {
        let FileRef::Fd(fd) = file else {
            return Ok(false);
        };
        if !self.async_fds.contains(&fd) {
            return Ok(false);
        }
        target.room?;
        self.started.push(StartedIo {
            io,
            token: target.token,
            polled: target.polled,
            mailbox: target.mailbox.clone(),
        });
        Ok(true)
    }

    fn unpin_file(&mut self, token: u64) {
        self.pinned.remove(&token);
    }

    fn may_start_path(&self) -> bool {
        self.punt_paths
    }

    fn start_path(&mut self, op: PathOp<'_>, target: IoTarget<'_>) -> Result<bool, Errno> {
        if !self.punt_paths {
            return Ok(false);
        }
        target.room?;
        let what = match op {
            PathOp::Open { path, .. } => alloc::format!("open {path}"),
            PathOp::Statx { path, .. } => alloc::format!("statx {path}"),
            PathOp::Mkdir { path, .. } => alloc::format!("mkdir {path}"),
            PathOp::Unlink { path, dir, .. } => alloc::format!("unlink {path} {dir}"),
            PathOp::Rename { old, new, .. } => alloc::format!("rename {old} {new}"),
            PathOp::Ftruncate { len, .. } => alloc::format!("ftruncate {len}"),
        };
        self.started_paths.push((
            what,
            StartedIo {
                io: AsyncIo::Fsync { datasync: false },
                token: target.token,
                polled: target.polled,
                mailbox: target.mailbox.clone(),
            },
        ));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::io_uring::AT_FDCWD;
    use abi::open_flags::{O_CREAT, O_RDONLY, O_WRONLY};

    #[test]
    fn ring_memory_lives_as_long_as_its_last_holder() {
        let live = Arc::new(AtomicUsize::new(0));
        let mapping = mock_ring_mapping(&live);
        let clone = mapping.clone();
        assert_eq!(live.load(Ordering::SeqCst), 1);
        mapping
            .shared()
            .set_sq_header(abi::io_uring::header::TAIL, 7);
        drop(mapping);
        assert_eq!(live.load(Ordering::SeqCst), 1, "a clone keeps the memory");
        assert_eq!(clone.shared().sq_header(abi::io_uring::header::TAIL), 7);
        drop(clone);
        assert_eq!(live.load(Ordering::SeqCst), 0, "freed with the last clone");
    }

    #[test]
    fn user_memory_bounds() {
        let mut env = MockEnv::new(0x1000, 16);
        env.write_user(0x1000, b"hello").unwrap();
        assert_eq!(env.peek(0x1000, 5).unwrap(), b"hello");
        assert_eq!(env.write_user(0x100c, b"hello"), Err(EFAULT));
        assert_eq!(env.read_user(0xfff, &mut [0; 1]), Err(EFAULT));
        assert_eq!(env.read_user(u64::MAX, &mut [0; 2]), Err(EFAULT));
        assert_eq!(env.check_user(0x1000, 16, true), Ok(()));
        assert_eq!(env.check_user(0x1000, 17, false), Err(EFAULT));
        assert_eq!(env.check_user(0x1010, 0, false), Ok(()));
    }

    #[test]
    fn files_positions_and_pins() {
        let mut env = MockEnv::new(0x1000, 64);
        let fd = env.create_file("f", b"0123456789").unwrap();
        assert_eq!(env.read(FileRef::Fd(fd), None, 0x1000, 4), Ok(4));
        assert_eq!(env.peek(0x1000, 4).unwrap(), b"0123");
        assert_eq!(env.fd_offset(fd), Some(4));
        // A positioned read leaves the position alone.
        assert_eq!(env.read(FileRef::Fd(fd), Some(8), 0x1000, 4), Ok(2));
        assert_eq!(env.peek(0x1000, 2).unwrap(), b"89");
        assert_eq!(env.fd_offset(fd), Some(4));
        assert_eq!(
            env.read(FileRef::Fd(fd), Some(u64::MAX - 1), 0x1000, 4),
            Ok(0)
        );
        assert_eq!(env.read(FileRef::Fd(fd), None, 0x1000, 65), Err(EFAULT));

        let token = env.pin_file(fd).unwrap();
        env.close(fd).unwrap();
        assert_eq!(env.read(FileRef::Fd(fd), None, 0x1000, 1), Err(EBADF));
        assert_eq!(env.read(FileRef::Pinned(token), None, 0x1000, 2), Ok(2));
        assert_eq!(env.peek(0x1000, 2).unwrap(), b"45", "shares the position");
        env.unpin_file(token);
        assert_eq!(env.pinned_files(), 0);
        assert_eq!(
            env.read(FileRef::Pinned(token), None, 0x1000, 1),
            Err(EBADF)
        );
        assert_eq!(env.read(FileRef::Fd(-1), None, 0x1000, 1), Err(EBADF));
        assert_eq!(env.close(-1), Err(EBADF));
    }

    #[test]
    fn open_modes_stat_and_fsync() {
        let mut env = MockEnv::new(0x1000, 64);
        assert_eq!(
            env.open(AT_FDCWD, "nope", O_RDONLY as u32),
            Err(abi::errno::ENOENT)
        );
        let w = env
            .open(AT_FDCWD, "new", (O_CREAT | O_WRONLY) as u32)
            .unwrap();
        env.write_user(0x1000, b"abc").unwrap();
        assert_eq!(env.write(FileRef::Fd(w), None, 0x1000, 3), Ok(3));
        assert_eq!(env.read(FileRef::Fd(w), Some(0), 0x1000, 3), Err(EBADF));
        assert_eq!(env.file_data("new").unwrap(), b"abc");
        let st = env.stat(AT_FDCWD, "/new").unwrap();
        assert_eq!(st.size, 3);
        assert_eq!(env.fsync(FileRef::Fd(w)), Ok(()));
        assert_eq!(env.fsync(FileRef::Fd(99)), Err(EBADF));
        assert_eq!(env.fsyncs, 1);
        assert_eq!(env.open_fds(), 1);
        env.set_now(5);
        env.advance(u64::MAX);
        assert_eq!(env.now_ns(), u64::MAX);
    }
}
