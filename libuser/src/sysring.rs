//! The system ring: how a process in `SyscallMode::RingBased` does its
//! ordinary I/O.
//!
//! In that mode the kernel sets up a ring for the process before it runs
//! and describes it in the [`abi::StartInfo`] handed to `_start`; the
//! direct read, write, open, fsync and close syscalls then fail with
//! `ENOSYS`. [`crate::sys`]'s wrappers of those calls come here instead:
//! each call is one SQE (`READ`/`WRITE` at the file position, `OPENAT`,
//! `FSYNC`, `CLOSE`), one doorbell that submits it and waits for its
//! completion, and one CQE, whose result is what the direct syscall would
//! have returned. So every program, the test suites included, runs
//! unchanged in either mode.
//!
//! The ring has no poller: the kernel reads the SQ only inside the
//! doorbell. A call therefore owns its buffers exactly for its duration,
//! and an SQE that a failed doorbell did not consume is withdrawn by
//! putting the tail back.
//!
//! Processes are single-threaded, so one lock taken with `try_lock` is
//! enough; a call made while another is in progress (only possible from
//! the panic handler, printing while a ring call panicked) gets `EBUSY`.
#![allow(unsafe_code)]

use crate::sys::raw;
use crate::uring::Ring;
use abi::errno::Errno;
use abi::errno::{EBADF, EBUSY, EINVAL, EIO, ENAMETOOLONG};
use abi::io_uring::{enter_flags, op, Sqe, AT_FDCWD};
use abi::syscall::limits::PATH_MAX;
use abi::StartInfo;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::{Mutex, Once};

/// The system ring and the number of the next call (its `user_data`).
struct System {
    ring: Ring,
    next: u64,
}

// SAFETY: processes are single-threaded; the ring's raw pointers are only
// used under the lock.
unsafe impl Send for System {}

static SYSTEM: Once<Option<Mutex<System>>> = Once::new();
/// The `StartInfo` the kernel passed, as it was.
static START: Once<StartInfo> = Once::new();
/// `abi::syscall::mode` of this process, from its `StartInfo`.
static MODE: AtomicU64 = AtomicU64::new(abi::syscall::mode::DIRECT);
/// Calls made through the system ring.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Takes the process's `StartInfo` (from `_start`). A process whose mode is
/// `RingBased` but whose ring cannot be used exits with 127: it could not
/// do any I/O, not even say why.
#[cfg_attr(test, allow(dead_code))] // `rt::start` is left out on the host.
pub(crate) fn init(info: Option<&StartInfo>) {
    let info = info.copied().unwrap_or_default();
    START.call_once(|| info);
    MODE.store(info.mode, Ordering::Relaxed);
    SYSTEM.call_once(|| {
        if info.mode != abi::syscall::mode::RING_BASED {
            return None;
        }
        match Ring::system(&info) {
            Ok(ring) => Some(Mutex::new(System { ring, next: 1 })),
            Err(_) => raw::exit(127),
        }
    });
}

/// The `StartInfo` this process was started with (all zero before
/// `_start` ran, as on the host).
pub fn start_info() -> StartInfo {
    START.get().copied().unwrap_or_default()
}

/// This process's `abi::syscall::mode` value.
pub fn mode() -> u64 {
    MODE.load(Ordering::Relaxed)
}

/// Whether this process does its I/O through the system ring.
pub fn active() -> bool {
    matches!(SYSTEM.get(), Some(Some(_)))
}

/// How many calls went through the system ring so far.
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// Runs one SQE through the system ring; `None` when the process has none.
///
/// # Safety
///
/// Every address in `sqe` must be valid for the access its opcode makes
/// until this returns, or be one the kernel is bound to refuse.
pub unsafe fn call(mut sqe: Sqe) -> Option<Result<u32, Errno>> {
    let system = SYSTEM.get()?.as_ref()?;
    let Some(mut system) = system.try_lock() else {
        return Some(Err(EBUSY));
    };
    let system = &mut *system;
    let tag = system.next;
    system.next = system.next.wrapping_add(1);
    sqe.user_data = tag;
    CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: passed on to the caller; the SQE is consumed (or withdrawn
    // below) and completed before this returns.
    if !unsafe { system.ring.push_sqe(&sqe) } {
        // Only SQEs of earlier calls could fill it, and each call leaves
        // none behind.
        return Some(Err(EIO));
    }
    system.ring.publish();
    if let Err(errno) = system.ring.enter(1, 1, enter_flags::GETEVENTS) {
        if system.ring.sq_pending() > 0 {
            // No poller: the kernel did not and will not read it.
            system.ring.withdraw_published();
        }
        return Some(Err(errno));
    }
    // One call at a time, so the CQE is the only one; anything else in the
    // CQ (a kernel bug or a scribble) is dropped. At most a ring's worth is
    // looked at, whatever a scribbled tail says.
    for _ in 0..system.ring.cq_entries() {
        match system.ring.pop_cqe() {
            Some(cqe) if cqe.user_data == tag => {
                return Some(Errno::from_res(cqe.res));
            }
            Some(_) => {}
            None => break,
        }
    }
    Some(Err(EIO))
}

/// A descriptor as an SQE's `fd`.
fn sqe_fd(fd: u64) -> Result<i32, Errno> {
    i32::try_from(fd).map_err(|_| EBADF)
}

/// `read(fd, buf)` at the file position.
pub fn read(fd: u64, buf: &mut [u8]) -> Option<Result<usize, Errno>> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`,
    // borrowed mutably for the call.
    unsafe { rw(op::READ, fd, buf.as_mut_ptr() as u64, buf.len() as u64) }
}

/// `write(fd, buf)` at the file position.
pub fn write(fd: u64, buf: &[u8]) -> Option<Result<usize, Errno>> {
    // SAFETY: the kernel only reads the `buf.len()` bytes of `buf`.
    unsafe { rw(op::WRITE, fd, buf.as_ptr() as u64, buf.len() as u64) }
}

/// `READ` or `WRITE` (`opcode`) of `len` bytes at the user address `addr`,
/// at the file position; `len` is clamped to `u32::MAX` (an SQE's length
/// has 32 bits), which makes it a short transfer at most.
///
/// # Safety
///
/// The `len` bytes at `addr` must be valid for the access `opcode` makes
/// until this returns, or be memory the kernel is bound to refuse.
pub unsafe fn rw(opcode: u8, fd: u64, addr: u64, len: u64) -> Option<Result<usize, Errno>> {
    SYSTEM.get()?.as_ref()?;
    let fd = match sqe_fd(fd) {
        Ok(fd) => fd,
        Err(e) => return Some(Err(e)),
    };
    let sqe = Sqe {
        opcode,
        fd,
        off: u64::MAX,
        addr,
        len: u32::try_from(len).unwrap_or(u32::MAX),
        ..Sqe::default()
    };
    // SAFETY: passed on to the caller.
    unsafe { call(sqe) }.map(|r| r.map(|n| n as usize))
}

/// `open(path, flags)`: `OPENAT` in the (flat) current directory. The path
/// is copied to add the NUL `OPENAT` wants; a path that holds a NUL is
/// `EINVAL`, one longer than `PATH_MAX` `ENAMETOOLONG` (as the direct call).
pub fn open(path: &str, flags: u64) -> Option<Result<u64, Errno>> {
    SYSTEM.get()?.as_ref()?;
    if path.len() > PATH_MAX {
        return Some(Err(ENAMETOOLONG));
    }
    let (Ok(op_flags), false) = (u32::try_from(flags), path.as_bytes().contains(&0)) else {
        return Some(Err(EINVAL));
    };
    let mut buf = [0u8; PATH_MAX + 1];
    buf[..path.len()].copy_from_slice(path.as_bytes());
    let sqe = Sqe {
        opcode: op::OPENAT,
        fd: AT_FDCWD,
        addr: buf.as_ptr() as u64,
        op_flags,
        ..Sqe::default()
    };
    // SAFETY: the kernel reads the NUL-terminated path in `buf`, a local
    // that outlives the call.
    unsafe { call(sqe) }.map(|r| r.map(u64::from))
}

/// `close(fd)`. A ring descriptor cannot be closed through a ring
/// (`EBADF`, as on Linux); [`crate::sys::close_ring`] closes those.
pub fn close(fd: u64) -> Option<Result<(), Errno>> {
    fd_only(op::CLOSE, fd)
}

/// `fsync(fd)`.
pub fn fsync(fd: u64) -> Option<Result<(), Errno>> {
    fd_only(op::FSYNC, fd)
}

/// An op whose only argument is the descriptor (CLOSE, FSYNC).
fn fd_only(opcode: u8, fd: u64) -> Option<Result<(), Errno>> {
    SYSTEM.get()?.as_ref()?;
    let fd = match sqe_fd(fd) {
        Ok(fd) => fd,
        Err(e) => return Some(Err(e)),
    };
    let sqe = Sqe {
        opcode,
        fd,
        ..Sqe::default()
    };
    // SAFETY: CLOSE and FSYNC name no memory.
    unsafe { call(sqe) }.map(|r| r.map(drop))
}
