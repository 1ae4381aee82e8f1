//! What the ring engine needs from the machine: [`IoEnv`].
//!
//! The engine and the ops reach files, user memory and the clock only
//! through this trait, so they stay pure and host-testable. The kernel
//! implements it per process (the ring owner's descriptors and address
//! space); [`super::MockEnv`] implements it for tests.
//!
//! Contract:
//! - Every error is a positive errno (`abi::errno`) in `Err`.
//! - A user address is a claim: the implementation checks it (user half,
//!   no overflow, mapped with the right access) and returns `EFAULT` when a
//!   copy cannot be done, never faults the kernel.
//! - Nothing here blocks for long: the engine runs with the ring lock held.

use abi::errno::Errno;
use alloc::sync::Arc;

use super::engine::RwRun;
use super::mailbox::IoMailbox;

/// A file an op works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRef {
    /// A descriptor of the ring owner, looked up at issue time.
    Fd(i32),
    /// A registered file: the token [`IoEnv::pin_file`] returned.
    Pinned(u64),
}

/// I/O an op asks the machine to start (see [`IoEnv::start`]). Offsets are
/// `None` for the file position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsyncIo {
    /// Into user memory `buf`.
    Read {
        offset: Option<u64>,
        buf: u64,
        len: u32,
    },
    /// From user memory `buf`.
    Write {
        offset: Option<u64>,
        buf: u64,
        len: u32,
    },
    /// READV: `count` iovecs at user address `iov`, `total` bytes in all
    /// (the op checked them; the host copies them again before use).
    Readv {
        offset: Option<u64>,
        iov: u64,
        count: u32,
        total: u32,
    },
    /// WRITEV, as `Readv`.
    Writev {
        offset: Option<u64>,
        iov: u64,
        count: u32,
        total: u32,
    },
    /// FSYNC: make the file's writes durable.
    Fsync { datasync: bool },
}

/// A path-based op an op asks the host to run where it may sleep (see
/// [`IoEnv::start_path`]): the path was copied from user memory already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathOp<'a> {
    /// OPENAT: the result is the new descriptor.
    Open {
        dirfd: i32,
        path: &'a str,
        flags: u32,
    },
    /// STATX: the `Statx` goes to user memory at `out` (checked when
    /// written, as the synchronous op does).
    Statx { dirfd: i32, path: &'a str, out: u64 },
    /// MKDIRAT.
    Mkdir { dirfd: i32, path: &'a str },
    /// UNLINKAT (`dir`: `AT_REMOVEDIR`).
    Unlink {
        dirfd: i32,
        path: &'a str,
        dir: bool,
    },
    /// RENAMEAT.
    Rename {
        olddirfd: i32,
        old: &'a str,
        newdirfd: i32,
        new: &'a str,
    },
    /// FTRUNCATE of the file.
    Ftruncate { file: FileRef, len: u64 },
}

/// Where the host reports an I/O it started.
#[derive(Clone, Copy)]
pub struct IoTarget<'a> {
    /// The ring's mailbox: the host posts `(token, result)` there once.
    pub mailbox: &'a Arc<IoMailbox>,
    /// The name of this I/O.
    pub token: u64,
    /// The ring reaps by polling (`IORING_SETUP_IOPOLL`): use a queue that
    /// does not interrupt, if the device has one.
    pub polled: bool,
    /// Whether the engine could make room to keep this I/O pending; if
    /// not, an asynchronous file must fail the op with this error (a
    /// synchronous one goes on as usual).
    pub room: Result<(), Errno>,
}

/// The machine, as the ring engine sees it.
pub trait IoEnv {
    /// Monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Reads up to `len` bytes from `file` into user memory at `buf`; at
    /// `offset`, or at (and advancing) the file position when `None`.
    /// Returns the bytes read (fewer at end of file).
    fn read(
        &mut self,
        file: FileRef,
        offset: Option<u64>,
        buf: u64,
        len: u32,
    ) -> Result<u32, Errno>;
    /// Writes up to `len` bytes from user memory at `buf` to `file`, like
    /// [`IoEnv::read`]. Returns the bytes written.
    fn write(
        &mut self,
        file: FileRef,
        offset: Option<u64>,
        buf: u64,
        len: u32,
    ) -> Result<u32, Errno>;
    /// Makes `file`'s data durable.
    fn fsync(&mut self, file: FileRef) -> Result<(), Errno>;
    /// Opens `path` (relative paths from the directory open at `dirfd`, or
    /// from `/` for `AT_FDCWD`) with `abi::open_flags` `flags`; returns the
    /// new descriptor. A `dirfd` that is not open is `EBADF`, one that is
    /// not a directory `ENOTDIR` (for relative paths; an absolute path
    /// ignores `dirfd`, as on Linux). The same for every `dirfd` below.
    fn open(&mut self, dirfd: i32, path: &str, flags: u32) -> Result<i32, Errno>;
    /// Closes descriptor `fd`.
    fn close(&mut self, fd: i32) -> Result<(), Errno>;
    /// Metadata of the file or directory at `path`.
    fn stat(&mut self, dirfd: i32, path: &str) -> Result<abi::Stat, Errno>;
    /// Creates the directory `path` (MKDIRAT).
    fn mkdir(&mut self, dirfd: i32, path: &str) -> Result<(), Errno>;
    /// Removes the file `path`, or with `dir` the empty directory
    /// (UNLINKAT).
    fn unlink(&mut self, dirfd: i32, path: &str, dir: bool) -> Result<(), Errno>;
    /// Renames `old` to `new` (RENAMEAT), each relative to its `dirfd`.
    fn rename(&mut self, olddirfd: i32, old: &str, newdirfd: i32, new: &str) -> Result<(), Errno>;
    /// Sets the size of the regular file `file`, open for writing
    /// (FTRUNCATE; `EINVAL` otherwise, as Linux).
    fn ftruncate(&mut self, file: FileRef, len: u64) -> Result<(), Errno>;
    /// Copies `dst.len()` bytes of user memory at `addr` into `dst`; `EFAULT`
    /// if any of it is not readable.
    fn read_user(&self, addr: u64, dst: &mut [u8]) -> Result<(), Errno>;
    /// Copies `src` to user memory at `addr`; `EFAULT` if any of it is not
    /// writable.
    fn write_user(&mut self, addr: u64, src: &[u8]) -> Result<(), Errno>;
    /// `Ok` if `[addr, addr + len)` is user memory the process may read (and
    /// write, if `write`); `EFAULT` otherwise.
    fn check_user(&self, addr: u64, len: u64, write: bool) -> Result<(), Errno>;
    /// Takes a reference to the file at `fd` that outlives the descriptor
    /// (for registered files); returns a token for [`FileRef::Pinned`].
    fn pin_file(&mut self, fd: i32) -> Result<u64, Errno>;
    /// Drops the reference `pin_file` took.
    fn unpin_file(&mut self, token: u64);
    /// Whether `file`'s I/O may complete later, so that an op on it must
    /// make room to stay pending before it issues: a cheap, conservative
    /// look (`true` may still start nothing; `false` must mean [`start`]
    /// would say `Ok(false)`).
    ///
    /// [`start`]: IoEnv::start
    fn may_start(&self, file: FileRef) -> bool {
        let _ = file;
        false
    }

    /// The engine's fast path for a READ (`write` false) or WRITE on the
    /// descriptor `fd` ([`FileRef::Fd`]): `None`, doing nothing, if
    /// [`IoEnv::may_start`] says the file's I/O may complete later;
    /// otherwise what [`IoEnv::read`] or [`IoEnv::write`] returns for the
    /// same arguments, `offset` being the SQE's (`u64::MAX`: the file
    /// position, `None` there). One call, so that an implementation can
    /// look the file up once (the default makes the two calls), with
    /// arguments that all travel in registers.
    fn rw_sync(
        &mut self,
        fd: i32,
        write: bool,
        offset: u64,
        buf: u64,
        len: u32,
    ) -> Option<Result<u32, Errno>> {
        let file = FileRef::Fd(fd);
        if self.may_start(file) {
            return None;
        }
        let offset = (offset != u64::MAX).then_some(offset);
        Some(if write {
            self.write(file, offset, buf, len)
        } else {
            self.read(file, offset, buf, len)
        })
    }

    /// Runs the READs and WRITEs of `run` as [`IoEnv::rw_sync`] would each
    /// ([`RwRun::next_sqe`], the transfer, [`RwRun::complete`]), stopping,
    /// with that SQE left in the ring, at the first one whose I/O may
    /// complete later. The default calls `rw_sync` for each; a host can
    /// run the loop with its transfer inlined (no call per SQE).
    fn rw_sync_run(&mut self, run: &mut RwRun<'_>) {
        while let Some(sqe) = run.next_sqe() {
            let Some(result) = self.rw_sync(sqe.fd, sqe.write, sqe.offset, sqe.buf, sqe.len) else {
                return;
            };
            run.complete(sqe, result);
        }
    }

    /// Starts `io` on `file` if that file's I/O completes later (a block
    /// device): returns `Ok(true)`, and posts the result to
    /// `target.mailbox` under `target.token` exactly once when it is done
    /// (whatever happens to the ring meanwhile; user memory under the I/O
    /// stays valid until then). `Ok(false)` for a file whose I/O is
    /// synchronous: the op then uses `read`/`write`/`fsync`. An error
    /// means nothing started.
    fn start(&mut self, file: FileRef, io: AsyncIo, target: IoTarget<'_>) -> Result<bool, Errno> {
        let _ = (file, io, target);
        Ok(false)
    }

    /// Whether path-based ops ([`PathOp`]) may complete later (a file
    /// system that sleeps is mounted), so that they make room to stay
    /// pending before they issue.
    fn may_start_path(&self) -> bool {
        false
    }

    /// Runs `op` where it may sleep if it touches a file system that does
    /// (the kernel's file-system worker): `Ok(true)`, and the result (the
    /// descriptor for `Open`, else 0) goes to `target.mailbox` under
    /// `target.token` exactly once. `Ok(false)`: the op runs
    /// synchronously through the methods above. An error means nothing
    /// started.
    fn start_path(&mut self, op: PathOp<'_>, target: IoTarget<'_>) -> Result<bool, Errno> {
        let _ = (op, target);
        Ok(false)
    }
}
