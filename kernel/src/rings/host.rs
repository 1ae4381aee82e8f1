//! The kernel's side of the ring backends: [`KernelHost`] implements
//! `RingHost` and [`ProcessEnv`] implements `IoEnv` for one process, so the
//! shared engine can reach files and user memory of the ring's owner
//! whichever task is running. Backend threads (the SQPOLL poller) start
//! through [`KernelHost::spawn_thread`]: the boxed body waits in a table
//! until the new kernel thread takes it and runs it with a host that has no
//! caller.

use super::{timer, RingRelease};
use crate::fs::{File, FileHandle, RingDescriptor};
use crate::mm::shared::{SharedFrames, SharedRingWords};
use crate::process::{Process, UserTask};
use crate::task::{self, Task, WaitQueue};
use crate::usercopy::UserSlice;
use abi::errno::*;
use abi::io_uring::ring_layout;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicU64, Ordering};
use hashbrown::HashMap;
use kernel_core::ring::{
    AsyncIo, BackendKind, FileRef, IoEnv, IoTarget, PathOp, RingHost, RingMapping, RingMemory,
    RingObject, SharedRing, ThreadBody,
};
use kernel_core::vfs::Loc;
use spin::Mutex;
use x86_64::instructions::interrupts;

/// The memory of one ring: frames shared with the owner's user mapping,
/// laid out as `abi::io_uring::ring_layout` says (the engine's
/// `RingWords`), checked once when it is mapped.
struct RingPages {
    words: SharedRingWords,
}

impl RingPages {
    /// The ring in `frames`; `None` if they are smaller than a ring.
    fn new(frames: Arc<SharedFrames>) -> Option<Self> {
        Some(Self {
            words: SharedRingWords::new(frames)?,
        })
    }
}

impl RingMemory for RingPages {
    fn view(&self) -> SharedRing<'_> {
        SharedRing::new(self.words.words())
    }
}

/// Bodies of backend threads between `spawn_thread` and the thread's start,
/// by the key the thread is started with.
static THREAD_BODIES: Mutex<BTreeMap<u64, ThreadBody>> = Mutex::new(BTreeMap::new());
static NEXT_THREAD_KEY: AtomicU64 = AtomicU64::new(1);

/// Entry of a backend thread: runs its body with a host of its own.
fn run_thread_body(key: u64) {
    let body = interrupts::without_interrupts(|| THREAD_BODIES.lock().remove(&key));
    if let Some(body) = body {
        let mut host = KernelHost::system();
        body(&mut host);
    }
}

/// Wait queues of rings, by the key their backend chose.
static WAIT_QUEUES: Mutex<Option<HashMap<u64, Arc<WaitQueue>>>> = Mutex::new(None);

fn queue(key: u64) -> Arc<WaitQueue> {
    interrupts::without_interrupts(|| {
        WAIT_QUEUES
            .lock()
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_default()
            .clone()
    })
}

/// Wakes every sleeper on `key`; returns how many there were.
pub fn wake_key(key: u64) -> usize {
    let queue = interrupts::without_interrupts(|| {
        WAIT_QUEUES
            .lock()
            .as_ref()
            .and_then(|m| m.get(&key).cloned())
    });
    queue.map_or(0, |queue| queue.wake_all())
}

/// `RingHost` for one call into a backend.
pub struct KernelHost<'a> {
    /// The calling process's task and process, looked up once per call.
    caller: Option<(&'a Task, &'a Process)>,
    /// The caller's id (0: none).
    pid: u64,
    /// The caller's environment, made once per call ([`RingHost::caller_env`],
    /// every enter asks). Only ever the borrowed kind, which owns nothing:
    /// not dropping it loses nothing, and saves the check of its kind.
    mine: Option<ManuallyDrop<ProcessEnv<'a>>>,
    /// Another process's environment, when a backend asks for one.
    other: Option<ProcessEnv<'a>>,
}

impl KernelHost<'_> {
    /// Runs `f` with a host serving the running process's syscall (no
    /// reference counting: the running task outlives the call).
    pub fn with_current<R>(f: impl FnOnce(&mut KernelHost<'_>) -> R) -> R {
        task::with_current(|t| {
            let caller = t.user_process().map(|p| (t, p));
            let mine = caller.map(|(t, p)| {
                ManuallyDrop::new(ProcessEnv {
                    pid: t.id,
                    process: ProcessRef::Borrowed(p),
                })
            });
            f(&mut KernelHost {
                caller,
                pid: caller.map_or(0, |(t, _)| t.id),
                mine,
                other: None,
            })
        })
    }

    /// A host for kernel work with no calling process (the timer thread).
    pub fn system() -> KernelHost<'static> {
        KernelHost {
            caller: None,
            pid: 0,
            mine: None,
            other: None,
        }
    }

    fn caller(&self) -> Result<&Process, Errno> {
        self.caller.map(|(_, p)| p).ok_or(EPERM)
    }

    /// [`RingHost::env`] for a process other than the caller.
    #[cold]
    #[inline(never)]
    fn env_of(&mut self, pid: u64) -> Option<&mut dyn IoEnv> {
        if self.other.as_ref().is_none_or(|e| e.pid != pid) {
            let process = task::find_user(pid)?.process_arc()?;
            self.other = Some(ProcessEnv {
                pid,
                process: ProcessRef::Owned(process),
            });
        }
        self.other.as_mut().map(|e| e as &mut dyn IoEnv)
    }
}

impl RingHost for KernelHost<'_> {
    #[inline(always)]
    fn pid(&self) -> u64 {
        self.pid
    }

    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }

    fn env(&mut self, pid: u64) -> Option<&mut dyn IoEnv> {
        if pid == self.pid && self.mine.is_some() {
            return self.caller_env();
        }
        self.env_of(pid)
    }

    #[inline(always)]
    fn caller_env(&mut self) -> Option<&mut dyn IoEnv> {
        self.mine.as_deref_mut().map(|e| e as &mut dyn IoEnv)
    }

    fn unmap_ring(&mut self, addr: u64) -> Result<(), Errno> {
        self.caller()?.unmap_shared(addr)
    }

    fn map_ring(&mut self, addr: u64) -> Result<RingMapping, Errno> {
        let pages = ring_layout::SIZE / abi::layout::PAGE_SIZE;
        let frames = self.caller()?.map_shared(addr, pages)?;
        let pages = RingPages::new(frames).ok_or(ENOMEM)?;
        Ok(RingMapping::new(Arc::new(pages)))
    }

    fn install_fd(&mut self, kind: BackendKind, id: u64, object: RingObject) -> Result<i32, Errno> {
        let pid = self.pid();
        let process = self.caller()?;
        let release = Box::new(RingRelease { kind, pid, id });
        let file: FileHandle = Arc::new(File::Ring(RingDescriptor::new(kind, object, release)));
        let fd = process.files.lock().insert(file).map_err(|e| e.errno())?;
        Ok(fd as i32)
    }

    fn ring_of_fd(&mut self, kind: BackendKind, fd: i32) -> Result<RingObject, Errno> {
        let process = self.caller()?;
        let fd = u64::try_from(fd).map_err(|_| EBADF)?;
        let files = process.files.lock();
        match files.get(fd).map(|f| &**f) {
            None => Err(EBADF),
            Some(File::Ring(ring)) if ring.kind == kind => Ok(ring.object.clone()),
            Some(_) => Err(EOPNOTSUPP),
        }
    }

    fn wait(&mut self, key: u64, ready: &mut dyn FnMut() -> bool) {
        queue(key).wait_until(|| ready().then_some(()));
    }

    fn wake(&mut self, key: u64) {
        wake_key(key);
    }

    fn forget_wait(&mut self, key: u64) {
        let removed = interrupts::without_interrupts(|| {
            WAIT_QUEUES.lock().as_mut().and_then(|m| m.remove(&key))
        });
        drop(removed);
    }

    fn arm_timer(&mut self, deadline: u64) {
        timer::arm(deadline);
    }

    fn cpus(&self) -> u32 {
        task::cpus()
    }

    fn spawn_thread(
        &mut self,
        name: &str,
        cpu: Option<u32>,
        body: ThreadBody,
    ) -> Result<u64, Errno> {
        // The caller's page tables: its backend joins the thread before the
        // caller's address space goes (see `RingHost::spawn_thread`).
        let root = self.caller.map_or(0, |(t, _)| t.space_root());
        let key = NEXT_THREAD_KEY.fetch_add(1, Ordering::Relaxed);
        interrupts::without_interrupts(|| THREAD_BODIES.lock().insert(key, body));
        let cpu = cpu.map(|c| c as usize);
        task::spawn_kernel_thread_in(name, run_thread_body, key, cpu, root).inspect_err(|_| {
            let body = interrupts::without_interrupts(|| THREAD_BODIES.lock().remove(&key));
            drop(body);
        })
    }

    fn join_thread(&mut self, tid: u64) {
        // Told to end, it has at most its last steps to run: give it the CPU.
        while task::is_live(tid) {
            task::yield_now();
        }
    }

    fn yield_now(&mut self) {
        task::yield_now();
    }

    fn cpu_wanted(&self) -> bool {
        task::cpu_wanted()
    }

    fn atomically(&mut self, f: &mut dyn FnMut(&mut dyn RingHost)) {
        interrupts::without_interrupts(|| f(self));
    }

    fn poll_io(&mut self) -> bool {
        crate::block::poll_all()
    }

    fn poll_io_all(&mut self) -> bool {
        crate::block::poll_every_queue()
    }
}

/// A process, borrowed when it is the caller's, held otherwise.
enum ProcessRef<'a> {
    Borrowed(&'a Process),
    Owned(Arc<Process>),
}

/// The I/O environment of one process: its files and its user memory.
pub struct ProcessEnv<'a> {
    pid: u64,
    process: ProcessRef<'a>,
}

impl ProcessEnv<'_> {
    fn process(&self) -> &Process {
        match &self.process {
            ProcessRef::Borrowed(p) => p,
            ProcessRef::Owned(p) => p,
        }
    }

    /// Where a relative `path` of an `*at` op starts: `None` (`/`) for
    /// `AT_FDCWD` or an absolute path, else the directory open at `dirfd`
    /// (`EBADF` if none, `ENOTDIR` if a file).
    fn dir_at(&self, dirfd: i32, path: &str) -> Result<Option<kernel_core::vfs::Loc>, Errno> {
        if dirfd == abi::io_uring::AT_FDCWD || path.starts_with('/') {
            return Ok(None);
        }
        self.file(FileRef::Fd(dirfd))?.dir_loc().map(Some)
    }

    /// What `IoEnv::read` (`write` false) or `IoEnv::write` does on the
    /// descriptor `fd`, `offset` being the SQE's (`u64::MAX`: the file
    /// position): the fast path's transfer, inlined into `rw_sync` and
    /// `rw_sync_run`.
    #[inline(always)]
    fn transfer(
        &self,
        fd: i32,
        write: bool,
        offset: u64,
        buf: u64,
        len: u32,
    ) -> Result<u32, Errno> {
        let offset = (offset != u64::MAX).then_some(offset);
        let handle = self.file(FileRef::Fd(fd))?;
        let user = UserSlice::new(buf, u64::from(len))?;
        // `Process::with_address_space`, spelled out so that it is inlined
        // (in `rw_sync_run`'s loop the generic call stays out of line).
        let space = self.process().address_space.lock();
        let space = space.as_ref().ok_or(EFAULT)?;
        let n = if write {
            handle.write_from_user(space, offset, user)?
        } else {
            handle.read_to_user(space, offset, user)?
        };
        Ok(n as u32)
    }

    #[inline(always)]
    fn file(&self, file: FileRef) -> Result<FileHandle, Errno> {
        let process = self.process();
        match file {
            FileRef::Fd(fd) => {
                let fd = u64::try_from(fd).map_err(|_| EBADF)?;
                process.files.lock().get(fd).cloned().ok_or(EBADF)
            }
            FileRef::Pinned(token) => process.pinned.lock().get(&token).cloned().ok_or(EBADF),
        }
    }
}

static NEXT_PIN: AtomicU64 = AtomicU64::new(1);

/// Most iovecs a vectored op on a disk takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: u32 = 1024;

impl ProcessEnv<'_> {
    /// [`IoEnv::start`] for a disk.
    fn start_block(
        &mut self,
        file: &crate::fs::BlockFile,
        io: AsyncIo,
        target: IoTarget<'_>,
    ) -> Result<bool, Errno> {
        use crate::block::{Dir, Target};
        let ring_target = || Target::Ring {
            mailbox: target.mailbox.clone(),
            token: target.token,
            wake: super::io_posted,
        };
        let process = self.process();
        let Some((write, offset, iov)) = transfer_of(io) else {
            target.room?;
            let guard = process.io.guard();
            return file
                .disk
                .start_flush(ring_target(), target.polled, Some(guard));
        };
        let dir = if write { Dir::Write } else { Dir::Read };
        let (mut list, total) = self.iovecs(iov)?;
        let (at, n) = file.claim(dir, offset, total)?;
        if n == 0 {
            // At the end of the disk: the op reads 0 synchronously.
            return Ok(false);
        }
        target.room?;
        // Clamped at the end of the disk.
        trim(&mut list, n);
        let guard = process.io.guard();
        let done = crate::block::Done {
            target: ring_target(),
            polled: target.polled,
            guard: Some(guard),
        };
        process.with_address_space(|space| file.disk.start(space, dir, at, &list, done))?;
        Ok(true)
    }
}

impl ProcessEnv<'_> {
    /// [`IoEnv::start`] for a file on a disk file system: the op goes to
    /// the file-system worker (never run inside `io_uring_enter`); the
    /// user's buffers are pinned now, so the worker needs no address
    /// space, and the process's exit waits for the job.
    fn start_disk(
        &mut self,
        handle: FileHandle,
        io: AsyncIo,
        target: IoTarget<'_>,
    ) -> Result<bool, Errno> {
        let process = self.process();
        let Some((write, offset, iov)) = transfer_of(io) else {
            let AsyncIo::Fsync { datasync } = io else {
                return Err(EINVAL);
            };
            target.room?;
            let job = DiskJob {
                file: handle,
                kind: DiskOp::Fsync { datasync },
                mailbox: target.mailbox.clone(),
                token: target.token,
                _guard: process.io.guard(),
            };
            crate::fswork::post(move || job.run())?;
            return Ok(true);
        };
        let (mut list, total) = self.iovecs(iov)?;
        if total > u64::from(u32::MAX / 2) {
            return Err(EINVAL);
        }
        // At most `IO_CHUNK` per op, as the syscalls (the worker holds the
        // bytes in the kernel heap): a larger transfer is short, which
        // POSIX allows and the op reports.
        let total = total.min(crate::fs::IO_CHUNK);
        trim(&mut list, total);
        let mut pinned = alloc::vec::Vec::new();
        pinned.try_reserve_exact(list.len()).map_err(|_| ENOMEM)?;
        process.with_address_space(|space| {
            for &(addr, len) in list.iter().filter(|&&(_, len)| len > 0) {
                pinned.push(UserSlice::new(addr, len)?.pin(space, !write)?);
            }
            Ok(())
        })?;
        target.room?;
        let job = DiskJob {
            file: handle,
            kind: DiskOp::Transfer {
                write,
                offset,
                pinned,
                total: total as usize,
            },
            mailbox: target.mailbox.clone(),
            token: target.token,
            _guard: process.io.guard(),
        };
        crate::fswork::post(move || job.run())?;
        Ok(true)
    }

    /// The buffers of a transfer, one or `count` iovecs read from the user
    /// (at most [`IOV_MAX`]), and their total length (`EINVAL` if it
    /// overflows).
    fn iovecs(&self, iov: Iovecs) -> Result<(alloc::vec::Vec<(u64, u64)>, u64), Errno> {
        let mut list = alloc::vec::Vec::new();
        match iov {
            Iovecs::One(buf, len) => {
                list.try_reserve(1).map_err(|_| ENOMEM)?;
                list.push((buf, len));
            }
            Iovecs::User(addr, count) => {
                if count > IOV_MAX {
                    return Err(EINVAL);
                }
                list.try_reserve_exact(count as usize).map_err(|_| ENOMEM)?;
                let process = self.process();
                for i in 0..u64::from(count) {
                    let at = addr
                        .checked_add(i * size_of::<abi::io_uring::IoVec>() as u64)
                        .ok_or(EFAULT)?;
                    let v: abi::io_uring::IoVec = process
                        .with_address_space(|space| crate::usercopy::read_value(space, at))?;
                    list.push((v.base, v.len));
                }
            }
        }
        let total = list
            .iter()
            .try_fold(0u64, |sum, &(_, len)| sum.checked_add(len))
            .ok_or(EINVAL)?;
        Ok((list, total))
    }
}

impl ProcessEnv<'_> {
    /// The process, held: for work that outlives this call.
    fn process_arc(&self) -> Result<Arc<Process>, Errno> {
        match &self.process {
            ProcessRef::Owned(p) => Ok(p.clone()),
            ProcessRef::Borrowed(_) => task::find_user(self.pid)
                .and_then(|t| t.user_data_arc())
                .ok_or(ESRCH),
        }
    }

    /// [`IoEnv::start_path`]: hands `op` to the file-system worker if it
    /// may touch a disk file system, so that `io_uring_enter` (or the
    /// SQPOLL poller) never waits on the disk. Paths were copied at prep;
    /// a STATX's destination is pinned now.
    fn start_path_op(&mut self, op: PathOp<'_>, target: IoTarget<'_>) -> Result<bool, Errno> {
        let owned = |path: &str| -> Result<alloc::string::String, Errno> {
            let mut s = alloc::string::String::new();
            s.try_reserve_exact(path.len()).map_err(|_| ENOMEM)?;
            s.push_str(path);
            Ok(s)
        };
        let job = match op {
            PathOp::Ftruncate { file, len } => {
                let handle = self.file(file)?;
                if !matches!(*handle, File::Disk(_)) {
                    return Ok(false);
                }
                PathJob::Ftruncate(handle, len)
            }
            PathOp::Open { dirfd, path, flags } => {
                let at = self.dir_at(dirfd, path)?;
                if !crate::fs::path_may_sleep(at, path) {
                    return Ok(false);
                }
                if u64::from(flags) & !abi::open_flags::O_KNOWN != 0 {
                    return Err(EINVAL);
                }
                PathJob::Open(at, owned(path)?, u64::from(flags), self.process_arc()?)
            }
            PathOp::Statx { dirfd, path, out } => {
                let at = self.dir_at(dirfd, path)?;
                if !crate::fs::path_may_sleep(at, path) {
                    return Ok(false);
                }
                let size = size_of::<abi::io_uring::Statx>() as u64;
                let pinned = self
                    .process()
                    .with_address_space(|space| UserSlice::new(out, size)?.pin(space, true))?;
                PathJob::Statx(at, owned(path)?, pinned)
            }
            PathOp::Mkdir { dirfd, path } => {
                let at = self.dir_at(dirfd, path)?;
                if !crate::fs::path_may_sleep(at, path) {
                    return Ok(false);
                }
                PathJob::Mkdir(at, owned(path)?)
            }
            PathOp::Unlink { dirfd, path, dir } => {
                let at = self.dir_at(dirfd, path)?;
                if !crate::fs::path_may_sleep(at, path) {
                    return Ok(false);
                }
                PathJob::Unlink(at, owned(path)?, dir)
            }
            PathOp::Rename {
                olddirfd,
                old,
                newdirfd,
                new,
            } => {
                let old_at = self.dir_at(olddirfd, old)?;
                let new_at = self.dir_at(newdirfd, new)?;
                if !crate::fs::path_may_sleep(old_at, old)
                    && !crate::fs::path_may_sleep(new_at, new)
                {
                    return Ok(false);
                }
                PathJob::Rename(old_at, owned(old)?, new_at, owned(new)?)
            }
        };
        target.room?;
        let mailbox = target.mailbox.clone();
        let token = target.token;
        let guard = self.process().io.guard();
        crate::fswork::post(move || {
            let result = job.run();
            drop(guard);
            if !mailbox.post(token, result) {
                log::error!("fs: a ring had no room for completion {token}");
            }
            super::io_posted(mailbox.wait_key());
        })?;
        Ok(true)
    }
}

/// A path-based ring op run on the file-system worker.
enum PathJob {
    Open(Option<Loc>, alloc::string::String, u64, Arc<Process>),
    Statx(
        Option<Loc>,
        alloc::string::String,
        crate::usercopy::PinnedPages,
    ),
    Mkdir(Option<Loc>, alloc::string::String),
    Unlink(Option<Loc>, alloc::string::String, bool),
    Rename(
        Option<Loc>,
        alloc::string::String,
        Option<Loc>,
        alloc::string::String,
    ),
    Ftruncate(FileHandle, u64),
}

impl PathJob {
    fn run(self) -> Result<u32, Errno> {
        match self {
            PathJob::Open(at, path, flags, process) => {
                let file = crate::fs::open_at(at, &path, flags)?;
                if file.completes_later() {
                    process.uses_devices.store(true, Ordering::Relaxed);
                }
                let fd = interrupts::without_interrupts(|| process.files.lock().insert(file))
                    .map_err(|e| e.errno())?;
                u32::try_from(fd).map_err(|_| EMFILE)
            }
            PathJob::Statx(at, path, pinned) => {
                let stat = crate::fs::stat(at, &path)?;
                let st = kernel_core::ring::ops::statx::statx_of(&stat);
                pinned.write_at(0, abi::IntoBytes::as_bytes(&st));
                Ok(0)
            }
            PathJob::Mkdir(at, path) => crate::fs::mkdir(at, &path).map(|()| 0),
            PathJob::Unlink(at, path, true) => crate::fs::rmdir(at, &path).map(|()| 0),
            PathJob::Unlink(at, path, false) => crate::fs::unlink(at, &path).map(|()| 0),
            PathJob::Rename(old_at, old, new_at, new) => {
                crate::fs::rename(old_at, &old, new_at, &new).map(|()| 0)
            }
            PathJob::Ftruncate(file, len) => file.truncate(len).map(|()| 0),
        }
    }
}

/// What a [`DiskJob`] does.
enum DiskOp {
    Fsync {
        datasync: bool,
    },
    /// A READ/WRITE (vectored or not) between the pinned buffers, in
    /// order, and the file at `offset` (`None`: its position).
    Transfer {
        write: bool,
        offset: Option<u64>,
        pinned: alloc::vec::Vec<crate::usercopy::PinnedPages>,
        total: usize,
    },
}

/// A ring op on a disk file, run on the file-system worker; its result
/// goes to the ring's mailbox.
struct DiskJob {
    file: FileHandle,
    kind: DiskOp,
    mailbox: Arc<kernel_core::ring::IoMailbox>,
    token: u64,
    _guard: crate::block::InFlightGuard,
}

impl DiskJob {
    fn run(self) {
        let result = match &*self.file {
            File::Disk(file) => Self::transfer(file, &self.kind),
            _ => Err(EINVAL),
        };
        if !self.mailbox.post(self.token, result) {
            log::error!("fs: a ring had no room for completion {}", self.token);
        }
        super::io_posted(self.mailbox.wait_key());
    }

    fn transfer(file: &crate::fs::DiskFile, op: &DiskOp) -> Result<u32, Errno> {
        let (write, offset, pinned, total) = match op {
            DiskOp::Fsync { datasync } => return file.fsync(*datasync).map(|()| 0),
            DiskOp::Transfer {
                write,
                offset,
                pinned,
                total,
            } => (*write, *offset, pinned, *total),
        };
        let mut data = alloc::vec::Vec::new();
        data.try_reserve_exact(total).map_err(|_| ENOMEM)?;
        data.resize(total, 0);
        if write {
            let mut at = 0usize;
            for p in pinned {
                let n = p.len() as usize;
                p.read_at(0, &mut data[at..at + n]);
                at += n;
            }
            return file.write(offset, &data).map(|n| n as u32);
        }
        let n = file.read(offset, &mut data)?;
        let mut at = 0usize;
        for p in pinned {
            if at >= n {
                break;
            }
            let m = (p.len() as usize).min(n - at);
            p.write_at(0, &data[at..at + m]);
            at += m;
        }
        Ok(n as u32)
    }
}

/// A ring READ of the console that waits for input: completed from the
/// input interrupt, not by a blocked enter.
struct ConsoleRead {
    pid: u64,
    user: crate::usercopy::PinnedPages,
    /// What is read, before it goes to the pinned user buffer.
    bytes: alloc::vec::Vec<u8>,
    mailbox: Arc<kernel_core::ring::IoMailbox>,
    token: u64,
    _guard: crate::block::InFlightGuard,
}

impl ConsoleRead {
    /// Waits (without a thread) for input, then completes.
    fn arm(self: Box<Self>) {
        let mailbox = self.mailbox.clone();
        let token = self.token;
        let pid = self.pid;
        if let Err(e) = crate::console::on_input(pid, Box::new(move || self.fire())) {
            // The waker was dropped with it: complete with the error.
            mailbox.post(token, Err(e));
            super::io_posted(mailbox.wait_key());
        }
    }

    /// Input arrived (interrupt context): read it, or wait again if another
    /// reader was faster.
    fn fire(mut self: Box<Self>) {
        match crate::console::try_read(&mut self.bytes) {
            Some(n) => {
                self.user.write_at(0, &self.bytes[..n]);
                self.mailbox.post(self.token, Ok(n as u32));
                super::io_posted(self.mailbox.wait_key());
            }
            // Another reader took the input: wait again. (Not done yet: if
            // the process ended between the take and this re-arm, the new
            // waker outlives `console::process_ended` and the exit waits
            // for it until its timeout, then leaks the memory rather than
            // free it under the waker.)
            None => self.arm(),
        }
    }
}

/// Most bytes one ring READ of the console takes.
const CONSOLE_READ_MAX: u32 = 4096;

impl ProcessEnv<'_> {
    /// [`IoEnv::start`] for the console: a READ with nothing typed yet
    /// stays pending until the input interrupt completes it. With input
    /// there, or for other ops, the op runs synchronously.
    fn start_console(&mut self, io: AsyncIo, target: IoTarget<'_>) -> Result<bool, Errno> {
        let AsyncIo::Read { buf, len, .. } = io else {
            return Ok(false);
        };
        if len == 0 || crate::console::readable() {
            return Ok(false);
        }
        target.room?;
        let len = len.min(CONSOLE_READ_MAX);
        let process = self.process();
        let user = process
            .with_address_space(|space| UserSlice::new(buf, u64::from(len))?.pin(space, true))?;
        let mut bytes = alloc::vec::Vec::new();
        bytes.try_reserve_exact(len as usize).map_err(|_| ENOMEM)?;
        bytes.resize(len as usize, 0);
        let read = Box::new(ConsoleRead {
            pid: self.pid,
            user,
            bytes,
            mailbox: target.mailbox.clone(),
            token: target.token,
            _guard: process.io.guard(),
        });
        read.arm();
        Ok(true)
    }
}

/// A READ/WRITE/READV/WRITEV as (write, offset, buffers); `None` for
/// FSYNC.
fn transfer_of(io: AsyncIo) -> Option<(bool, Option<u64>, Iovecs)> {
    Some(match io {
        AsyncIo::Fsync { .. } => return None,
        AsyncIo::Read { offset, buf, len } => (false, offset, Iovecs::One(buf, len.into())),
        AsyncIo::Write { offset, buf, len } => (true, offset, Iovecs::One(buf, len.into())),
        AsyncIo::Readv {
            offset, iov, count, ..
        } => (false, offset, Iovecs::User(iov, count)),
        AsyncIo::Writev {
            offset, iov, count, ..
        } => (true, offset, Iovecs::User(iov, count)),
    })
}

/// Shortens the buffers, in order, to `n` bytes in all.
fn trim(list: &mut [(u64, u64)], n: u64) {
    let mut left = n;
    for entry in list.iter_mut() {
        entry.1 = entry.1.min(left);
        left -= entry.1;
    }
}

/// The buffers of an asynchronous transfer.
enum Iovecs {
    One(u64, u64),
    /// `count` iovecs at this user address.
    User(u64, u32),
}

impl IoEnv for ProcessEnv<'_> {
    fn now_ns(&self) -> u64 {
        crate::time::now_ns()
    }

    fn may_start(&self, file: FileRef) -> bool {
        // Descriptor 0 (the console) and, once the process opened a disk,
        // any file (registered ones too).
        file == FileRef::Fd(0) || self.process().uses_devices.load(Ordering::Relaxed)
    }

    fn start(&mut self, file: FileRef, io: AsyncIo, target: IoTarget<'_>) -> Result<bool, Errno> {
        // Until a process opens a disk, only its descriptor 0 (the
        // console) may complete later.
        if !self.process().uses_devices.load(Ordering::Relaxed) && file != FileRef::Fd(0) {
            return Ok(false);
        }
        let handle = self.file(file)?;
        match &*handle {
            File::Block(b) => self.start_block(b, io, target),
            // A READ the page cache holds completes inline (`read`).
            File::Disk(d) => match io {
                AsyncIo::Read { offset, len, .. } if d.cached(offset, len as usize) => Ok(false),
                _ => self.start_disk(handle.clone(), io, target),
            },
            File::Console => self.start_console(io, target),
            _ => Ok(false),
        }
    }

    fn read(
        &mut self,
        file: FileRef,
        offset: Option<u64>,
        buf: u64,
        len: u32,
    ) -> Result<u32, Errno> {
        let file = self.file(file)?;
        let user = UserSlice::new(buf, u64::from(len))?;
        self.process()
            .with_address_space(|space| file.read_to_user(space, offset, user))
            .map(|n| n as u32)
    }

    fn write(
        &mut self,
        file: FileRef,
        offset: Option<u64>,
        buf: u64,
        len: u32,
    ) -> Result<u32, Errno> {
        let file = self.file(file)?;
        let user = UserSlice::new(buf, u64::from(len))?;
        self.process()
            .with_address_space(|space| file.write_from_user(space, offset, user))
            .map(|n| n as u32)
    }

    fn rw_sync(
        &mut self,
        fd: i32,
        write: bool,
        offset: u64,
        buf: u64,
        len: u32,
    ) -> Option<Result<u32, Errno>> {
        // `may_start`, then `read` or `write`, with one look at the process.
        let process = self.process();
        if fd == 0 || process.uses_devices.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.transfer(fd, write, offset, buf, len))
    }

    fn rw_sync_run(&mut self, run: &mut kernel_core::ring::engine::RwRun<'_>) {
        // `rw_sync` for each, with the transfer inlined in the loop.
        let process = self.process();
        while let Some(sqe) = run.next_sqe() {
            if sqe.fd == 0 || process.uses_devices.load(Ordering::Relaxed) {
                return;
            }
            let result = self.transfer(sqe.fd, sqe.write, sqe.offset, sqe.buf, sqe.len);
            run.complete(sqe, result);
        }
    }

    fn fsync(&mut self, file: FileRef) -> Result<(), Errno> {
        self.file(file)?.fsync()
    }

    fn open(&mut self, dirfd: i32, path: &str, flags: u32) -> Result<i32, Errno> {
        let flags = u64::from(flags);
        if flags & !abi::open_flags::O_KNOWN != 0 {
            return Err(EINVAL);
        }
        let at = self.dir_at(dirfd, path)?;
        let file = crate::fs::open_at(at, path, flags)?;
        if file.completes_later() {
            self.process().uses_devices.store(true, Ordering::Relaxed);
        }
        let fd = self
            .process()
            .files
            .lock()
            .insert(file)
            .map_err(|e| e.errno())?;
        Ok(fd as i32)
    }

    fn close(&mut self, fd: i32) -> Result<(), Errno> {
        let fd = u64::try_from(fd).map_err(|_| EBADF)?;
        let mut files = self.process().files.lock();
        // As on Linux, a ring cannot close a ring descriptor (it may be its
        // own, whose lock the caller holds).
        if matches!(files.get(fd).map(|f| &**f), Some(File::Ring { .. })) {
            return Err(EBADF);
        }
        let file = files.remove(fd).map_err(|e| e.errno());
        drop(files);
        let file = file?;
        drop(file);
        Ok(())
    }

    fn stat(&mut self, dirfd: i32, path: &str) -> Result<abi::Stat, Errno> {
        crate::fs::stat(self.dir_at(dirfd, path)?, path)
    }

    fn mkdir(&mut self, dirfd: i32, path: &str) -> Result<(), Errno> {
        crate::fs::mkdir(self.dir_at(dirfd, path)?, path)
    }

    fn unlink(&mut self, dirfd: i32, path: &str, dir: bool) -> Result<(), Errno> {
        let at = self.dir_at(dirfd, path)?;
        if dir {
            crate::fs::rmdir(at, path)
        } else {
            crate::fs::unlink(at, path)
        }
    }

    fn rename(&mut self, olddirfd: i32, old: &str, newdirfd: i32, new: &str) -> Result<(), Errno> {
        let old_at = self.dir_at(olddirfd, old)?;
        let new_at = self.dir_at(newdirfd, new)?;
        crate::fs::rename(old_at, old, new_at, new)
    }

    fn ftruncate(&mut self, file: FileRef, len: u64) -> Result<(), Errno> {
        self.file(file)?.truncate(len)
    }

    fn may_start_path(&self) -> bool {
        crate::fs::disks_mounted()
    }

    fn start_path(&mut self, op: PathOp<'_>, target: IoTarget<'_>) -> Result<bool, Errno> {
        self.start_path_op(op, target)
    }

    fn read_user(&self, addr: u64, dst: &mut [u8]) -> Result<(), Errno> {
        let user = UserSlice::new(addr, dst.len() as u64)?;
        self.process()
            .with_address_space(|space| user.read_into(space, dst))
    }

    fn write_user(&mut self, addr: u64, src: &[u8]) -> Result<(), Errno> {
        let user = UserSlice::new(addr, src.len() as u64)?;
        self.process()
            .with_address_space(|space| user.write_from(space, src))
    }

    fn check_user(&self, addr: u64, len: u64, write: bool) -> Result<(), Errno> {
        let user = UserSlice::new(addr, len)?;
        self.process()
            .with_address_space(|space| user.check(space, write))
    }

    fn pin_file(&mut self, fd: i32) -> Result<u64, Errno> {
        let file = self.file(FileRef::Fd(fd))?;
        // A ring cannot be registered as a file (as on Linux).
        if matches!(*file, File::Ring { .. }) {
            return Err(EBADF);
        }
        let token = NEXT_PIN.fetch_add(1, Ordering::Relaxed);
        let mut pinned = self.process().pinned.lock();
        pinned.try_reserve(1).map_err(|_| ENOMEM)?;
        pinned.insert(token, file);
        Ok(token)
    }

    fn unpin_file(&mut self, token: u64) {
        let file = self.process().pinned.lock().remove(&token);
        drop(file);
    }
}
