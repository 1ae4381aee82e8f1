//! The bottom of libuser's syscall layer: the `syscall` instruction, the
//! decoding of its result ([`Errno::from_ret`]) and one typed wrapper per
//! direct syscall. It uses nothing else from libuser, so everything above
//! it, the system ring ([`crate::sysring`]) and the rings
//! ([`crate::uring`]) included, can call the kernel without a cycle.
//!
//! These are the *direct* calls: in `SyscallMode::RingBased` the kernel
//! refuses `read`, `write`, `open`, `close` and `fsync` here with
//! `ENOSYS`, and programs use [`crate::sys`], which sends those through
//! the system ring.
//!
//! The typed wrappers take Rust references, so the kernel only ever sees
//! memory the caller owns; [`syscall`] and [`syscall0`]..[`syscall6`]
//! take plain numbers, for tests that hand the kernel bad pointers on
//! purpose.
//!
//! Closing an io_uring descriptor unmaps its ring at once, so a ring
//! descriptor is owned by the [`crate::uring::IoUring`] that set it up, as
//! Rust's `OwnedFd` owns a file descriptor: this module keeps the
//! process's table of owned ring descriptors ([`ring_fd_owned`]), and the
//! safe [`close`] refuses those with `EBUSY`. Only the owning `IoUring`
//! closes one, from safe code; [`close_unchecked`] is the `unsafe` way
//! around it. (A ring's `CLOSE` op cannot close a ring descriptor at all:
//! `EBADF`, as on Linux.)

use abi::errno::Errno;
use abi::errno::{EBUSY, ERANGE};
use abi::syscall as nr;
use abi::syscall::limits::FDS_MAX;
use abi::{Arg, FileStat, SysInfo, TaskInfo};
use alloc::vec::Vec;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// Issues syscall `n` with six arguments and returns `rax` undecoded.
///
/// # Safety
///
/// Every argument the kernel treats as a pointer must name memory it may
/// read or write as the call describes, or be one the kernel is bound to
/// refuse; the call may change any memory it is given. A call that unmaps
/// memory must not take away memory Rust code still views: a `close` of a
/// ring descriptor an [`crate::uring::IoUring`] owns ([`ring_fd_owned`]) is
/// only allowed under [`close_unchecked`]'s contract, and then leaves the
/// descriptor number marked as owned (use [`close_unchecked`]).
#[inline(always)]
pub unsafe fn syscall6(n: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let ret: i64;
    // SAFETY: `syscall` clobbers only rcx and r11 (declared), returns in rax
    // and may touch memory (not `nomem`), which the caller vouched for; the
    // kernel does not use the user stack.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as i64 => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            in("r8") a4,
            in("r9") a5,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// [`syscall6`] with no arguments.
///
/// # Safety
///
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall0(n: u64) -> i64 {
    // SAFETY: passed on to the caller.
    unsafe { syscall6(n, 0, 0, 0, 0, 0, 0) }
}

/// [`syscall6`] with one argument.
///
/// # Safety
///
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall1(n: u64, a0: u64) -> i64 {
    // SAFETY: passed on to the caller.
    unsafe { syscall6(n, a0, 0, 0, 0, 0, 0) }
}

/// [`syscall6`] with two arguments.
///
/// # Safety
///
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall2(n: u64, a0: u64, a1: u64) -> i64 {
    // SAFETY: passed on to the caller.
    unsafe { syscall6(n, a0, a1, 0, 0, 0, 0) }
}

/// [`syscall6`] with three arguments.
///
/// # Safety
///
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall3(n: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    // SAFETY: passed on to the caller.
    unsafe { syscall6(n, a0, a1, a2, 0, 0, 0) }
}

/// [`syscall6`] with four arguments.
///
/// # Safety
///
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall4(n: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: passed on to the caller.
    unsafe { syscall6(n, a0, a1, a2, a3, 0, 0) }
}

/// [`syscall6`] with five arguments.
///
/// # Safety
///
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall5(n: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    // SAFETY: passed on to the caller.
    unsafe { syscall6(n, a0, a1, a2, a3, a4, 0) }
}

/// Issues syscall `n` with `args` and decodes the result.
///
/// # Safety
///
/// As for [`syscall6`].
pub unsafe fn syscall(n: u64, args: [u64; 6]) -> Result<u64, Errno> {
    let [a0, a1, a2, a3, a4, a5] = args;
    // SAFETY: passed on to the caller.
    Errno::from_ret(unsafe { syscall6(n, a0, a1, a2, a3, a4, a5) })
}

/// `read`: from `fd` into `buf`; returns the byte count, 0 at end of file.
pub fn read(fd: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which
    // is borrowed mutably for the call.
    let ret = unsafe { syscall3(nr::READ, fd, buf.as_mut_ptr() as u64, buf.len() as u64) };
    Errno::from_ret(ret).map(|n| n as usize)
}

/// `write`: `buf` to `fd`; returns how many bytes were taken.
pub fn write(fd: u64, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel only reads the `buf.len()` bytes of `buf`.
    let ret = unsafe { syscall3(nr::WRITE, fd, buf.as_ptr() as u64, buf.len() as u64) };
    Errno::from_ret(ret).map(|n| n as usize)
}

/// `close`: ends `fd` (in `SyscallMode::RingBased` only ring descriptors,
/// which a ring cannot close, as on Linux).
///
/// A ring descriptor that a live [`crate::uring::IoUring`] owns is refused
/// with `EBUSY` and stays open: closing it would unmap the ring memory the
/// `IoUring` still views. Close that `IoUring` instead, or take the
/// descriptor out of it with [`crate::uring::IoUring::into_raw_fd`].
pub fn close(fd: u64) -> Result<(), Errno> {
    if ring_fd_owned(fd) {
        return Err(EBUSY);
    }
    // SAFETY: `fd` is not a ring descriptor an `IoUring` owns (checked
    // above), so no live view of ring memory goes with it.
    unsafe { close_unchecked(fd) }
}

/// `close` without the ownership check of [`close`]: closes `fd` even if
/// an [`crate::uring::IoUring`] owns it, and ends that ownership.
///
/// # Safety
///
/// If `fd` is a ring descriptor an `IoUring` owns, that `IoUring` must
/// never be used or dropped again (`core::mem::forget` it): the close
/// unmaps the ring memory it views, and its `Drop` would close the
/// descriptor number again, which by then may name another ring.
pub unsafe fn close_unchecked(fd: u64) -> Result<(), Errno> {
    release_ring_fd(fd);
    // SAFETY: no pointer arguments; the caller answers for the views of
    // the memory the close may unmap.
    Errno::from_ret(unsafe { syscall1(nr::CLOSE, fd) }).map(drop)
}

/// Ring descriptors owned by live [`crate::uring::IoUring`]s, one bit per
/// descriptor number below [`FDS_MAX`]. One thread per process, but the
/// bits are atomics all the same, so nothing here depends on that.
static RING_FDS: [AtomicU64; FDS_MAX.div_ceil(64)] =
    [const { AtomicU64::new(0) }; FDS_MAX.div_ceil(64)];

/// The word and bit of `fd` in [`RING_FDS`]; `None` past [`FDS_MAX`].
fn ring_fd_bit(fd: u64) -> Option<(&'static AtomicU64, u64)> {
    let fd = usize::try_from(fd).ok().filter(|&fd| fd < FDS_MAX)?;
    Some((&RING_FDS[fd / 64], 1 << (fd % 64)))
}

/// Whether a live [`crate::uring::IoUring`] owns ring descriptor `fd`, so
/// that the safe close functions refuse it (`EBUSY`).
pub fn ring_fd_owned(fd: u64) -> bool {
    ring_fd_bit(fd).is_some_and(|(word, bit)| word.load(Ordering::Acquire) & bit != 0)
}

/// Marks ring descriptor `fd` as owned by a new `IoUring`. Fails, marking
/// nothing, if `fd` is not below [`FDS_MAX`] or is already owned: the
/// kernel may not hand out either as a new descriptor.
pub(crate) fn claim_ring_fd(fd: u64) -> Result<(), Errno> {
    let (word, bit) = ring_fd_bit(fd).ok_or(ERANGE)?;
    if word.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
        return Err(ERANGE);
    }
    Ok(())
}

/// Ends the ownership of ring descriptor `fd` (its `IoUring` hands it to
/// the caller, or it is being closed).
pub(crate) fn release_ring_fd(fd: u64) {
    if let Some((word, bit)) = ring_fd_bit(fd) {
        word.fetch_and(!bit, Ordering::AcqRel);
    }
}

/// Moves the offset of `fd` (`whence` from [`abi::seek`]); returns the new one.
pub fn lseek(fd: u64, offset: i64, whence: u64) -> Result<u64, Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall3(nr::LSEEK, fd, offset as u64, whence) })
}

/// Gives up the CPU to other runnable tasks.
pub fn yield_now() -> Result<(), Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall0(nr::YIELD) }).map(drop)
}

/// The caller's process id.
pub fn getpid() -> Result<u64, Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall0(nr::GETPID) })
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: `exit` takes no pointers and does not return; the `ud2` only
    // runs if the kernel breaks that promise.
    unsafe {
        asm!("syscall", "ud2", in("rax") nr::EXIT, in("rdi") code as i64, options(noreturn, nostack));
    }
}

/// `fsync`: flushes `fd` to its backing store.
pub fn fsync(fd: u64) -> Result<(), Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall1(nr::FSYNC, fd) }).map(drop)
}

/// `open`: `path` with `flags` from [`abi::open_flags`]; returns the new fd.
pub fn open(path: &str, flags: u64) -> Result<u64, Errno> {
    // SAFETY: the kernel only reads the `path.len()` bytes of `path`.
    Errno::from_ret(unsafe { syscall3(nr::OPEN, path.as_ptr() as u64, path.len() as u64, flags) })
}

/// `openat`: [`open`] with a relative `path` starting at the directory
/// open at `dirfd` (or `/` for `AT_FDCWD`).
pub fn openat(dirfd: i32, path: &str, flags: u64) -> Result<u64, Errno> {
    // SAFETY: the kernel only reads the `path.len()` bytes of `path`.
    Errno::from_ret(unsafe {
        syscall4(
            nr::OPENAT,
            dirfd as i64 as u64,
            path.as_ptr() as u64,
            path.len() as u64,
            flags,
        )
    })
}

/// `pread64`: reads into `buf` at `offset`, the file position untouched.
pub fn pread(fd: u64, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    Errno::from_ret(unsafe {
        syscall4(
            nr::PREAD64,
            fd,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            offset,
        )
    })
    .map(|n| n as usize)
}

/// `pwrite64`: writes `buf` at `offset`, the file position untouched.
pub fn pwrite(fd: u64, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel only reads the `buf.len()` bytes of `buf`.
    Errno::from_ret(unsafe {
        syscall4(
            nr::PWRITE64,
            fd,
            buf.as_ptr() as u64,
            buf.len() as u64,
            offset,
        )
    })
    .map(|n| n as usize)
}

/// `fdatasync`: as [`fsync`], metadata aside.
pub fn fdatasync(fd: u64) -> Result<(), Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall1(nr::FDATASYNC, fd) }).map(drop)
}

/// `ftruncate`: sets the size of the file open at `fd` (for writing).
pub fn ftruncate(fd: u64, len: u64) -> Result<(), Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall2(nr::FTRUNCATE, fd, len) }).map(drop)
}

/// `mkdir`: creates the directory `path`.
pub fn mkdir(path: &str) -> Result<(), Errno> {
    // SAFETY: the kernel only reads the `path.len()` bytes of `path`.
    Errno::from_ret(unsafe { syscall3(nr::MKDIR, path.as_ptr() as u64, path.len() as u64, 0o755) })
        .map(drop)
}

/// `rmdir`: removes the empty directory `path`.
pub fn rmdir(path: &str) -> Result<(), Errno> {
    // SAFETY: the kernel only reads the `path.len()` bytes of `path`.
    Errno::from_ret(unsafe { syscall2(nr::RMDIR, path.as_ptr() as u64, path.len() as u64) })
        .map(drop)
}

/// `getdents`: [`abi::Dirent`] records of the directory open at `fd`, from
/// its position on; returns the bytes written, 0 at the end.
pub fn getdents(fd: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    Errno::from_ret(unsafe {
        syscall3(nr::GETDENTS, fd, buf.as_mut_ptr() as u64, buf.len() as u64)
    })
    .map(|n| n as usize)
}

/// `stat`: metadata of the file or directory at `path`.
pub fn stat(path: &str) -> Result<abi::Stat, Errno> {
    let mut out = abi::Stat::default();
    // SAFETY: the kernel writes one `abi::Stat` into `out`.
    Errno::from_ret(unsafe {
        syscall3(
            nr::STAT,
            path.as_ptr() as u64,
            path.len() as u64,
            &mut out as *mut abi::Stat as u64,
        )
    })?;
    Ok(out)
}

/// Removes the name `path`; open descriptors keep the file alive.
pub fn unlink(path: &str) -> Result<(), Errno> {
    // SAFETY: the kernel only reads the `path.len()` bytes of `path`.
    Errno::from_ret(unsafe { syscall2(nr::UNLINK, path.as_ptr() as u64, path.len() as u64) })
        .map(drop)
}

/// Starts program `name` as a child with exactly `argv` as its arguments
/// (so `argv[0]` should be the program name); returns the child's pid.
pub fn spawn(name: &str, argv: &[&str]) -> Result<u64, Errno> {
    let args: Vec<Arg> = argv
        .iter()
        .map(|arg| Arg {
            ptr: arg.as_ptr() as u64,
            len: arg.len() as u64,
        })
        .collect();
    // SAFETY: the kernel only reads `name`, the `args` array and the strings
    // it points to, all borrowed for the call.
    let ret = unsafe {
        syscall4(
            nr::SPAWN,
            name.as_ptr() as u64,
            name.len() as u64,
            args.as_ptr() as u64,
            args.len() as u64,
        )
    };
    Errno::from_ret(ret)
}

/// Waits for child `pid` (any child if `pid == -1`) to end and reaps it;
/// returns its pid and status (see [`abi::status`]).
pub fn wait(pid: i64) -> Result<(u64, i32), Errno> {
    let mut status = 0i32;
    // SAFETY: the kernel writes one `i32` to `status`, a local.
    let ret = unsafe { syscall2(nr::WAIT, pid as u64, &raw mut status as u64) };
    Errno::from_ret(ret).map(|pid| (pid, status))
}

/// Sleeps for at least `ns` nanoseconds.
pub fn sleep_ns(ns: u64) -> Result<(), Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall1(nr::SLEEP, ns) }).map(drop)
}

/// Monotonic nanoseconds since boot.
pub fn clock_ns() -> Result<u64, Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall0(nr::CLOCK) })
}

/// Turns the machine off; `code` 0 reports success to the test harness.
pub fn poweroff(code: i32) -> ! {
    // SAFETY: `poweroff` takes no pointers and does not return; the `ud2`
    // only runs if the kernel breaks that promise.
    unsafe {
        asm!("syscall", "ud2", in("rax") nr::POWEROFF, in("rdi") code as i64, options(noreturn, nostack));
    }
}

/// System-wide counters.
pub fn sysinfo() -> Result<SysInfo, Errno> {
    let mut info = SysInfo::default();
    // SAFETY: the kernel writes one `SysInfo` to `info`, a local.
    Errno::from_ret(unsafe { syscall1(nr::SYSINFO, &raw mut info as u64) }).map(|_| info)
}

/// Run time and state of task `tid` (`ESRCH` if there is none).
pub fn task_info(tid: u64) -> Result<TaskInfo, Errno> {
    let mut info = TaskInfo::default();
    // SAFETY: the kernel writes one `TaskInfo` to `info`, a local.
    Errno::from_ret(unsafe { syscall2(nr::TASK_INFO, tid, &raw mut info as u64) }).map(|_| info)
}

/// Size and inode of the file open as `fd`.
pub fn fstat(fd: u64) -> Result<FileStat, Errno> {
    let mut stat = FileStat::default();
    // SAFETY: the kernel writes one `FileStat` to `stat`, a local.
    Errno::from_ret(unsafe { syscall2(nr::FSTAT, fd, &raw mut stat as u64) }).map(|_| stat)
}

/// `list_files`: fills `buf` with [`abi::DirEntry`] records of the files
/// named after `after` (bytewise), in order; returns the bytes written, 0
/// when there are no more. Decode with [`crate::fs::DirEntries`].
pub fn list_files(after: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads the `after.len()` bytes of `after` and
    // writes at most `buf.len()` bytes to `buf`, both borrowed for the call.
    let ret = unsafe {
        syscall4(
            nr::LIST_FILES,
            after.as_ptr() as u64,
            after.len() as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
        )
    };
    Errno::from_ret(ret).map(|n| n as usize)
}

/// `task_list`: writes the ids of live tasks, ascending, into `out` (as
/// many as fit); returns how many live tasks there are.
pub fn task_list(out: &mut [u64]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `out.len()` ids to `out`.
    let ret = unsafe { syscall2(nr::TASK_LIST, out.as_mut_ptr() as u64, out.len() as u64) };
    Errno::from_ret(ret).map(|n| n as usize)
}

/// `rename`: gives the file `old` the name `new`, replacing any file
/// called `new`.
pub fn rename(old: &str, new: &str) -> Result<(), Errno> {
    // SAFETY: the kernel only reads the two strings.
    let ret = unsafe {
        syscall4(
            nr::RENAME,
            old.as_ptr() as u64,
            old.len() as u64,
            new.as_ptr() as u64,
            new.len() as u64,
        )
    };
    Errno::from_ret(ret).map(drop)
}

/// Sets the console's input mode ([`abi::console::MODE_COOKED`] or
/// [`abi::console::MODE_RAW`]); returns the previous one.
pub fn console_mode(mode: u64) -> Result<u64, Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall1(nr::CONSOLE_MODE, mode) })
}

/// Names the process Ctrl-C kills: the caller or one of its children, or
/// [`abi::console::NO_FOREGROUND`].
pub fn console_set_foreground(pid: u64) -> Result<(), Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall1(nr::CONSOLE_SET_FOREGROUND, pid) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table is process-wide and tests run on threads: each test uses
    // descriptor numbers of its own.

    #[test]
    fn a_claimed_ring_fd_is_owned_until_released() {
        assert!(!ring_fd_owned(40));
        assert_eq!(claim_ring_fd(40), Ok(()));
        assert!(ring_fd_owned(40));
        assert!(!ring_fd_owned(39) && !ring_fd_owned(41));
        // The kernel cannot hand out a live descriptor again.
        assert_eq!(claim_ring_fd(40), Err(ERANGE));
        release_ring_fd(40);
        assert!(!ring_fd_owned(40));
        assert_eq!(claim_ring_fd(40), Ok(()));
        release_ring_fd(40);
    }

    #[test]
    fn only_numbers_below_fds_max_can_be_owned() {
        let last = FDS_MAX as u64 - 1;
        assert_eq!(claim_ring_fd(last), Ok(()));
        assert!(ring_fd_owned(last));
        release_ring_fd(last);
        for fd in [FDS_MAX as u64, 1 << 32, u64::MAX] {
            assert_eq!(claim_ring_fd(fd), Err(ERANGE));
            assert!(!ring_fd_owned(fd));
            release_ring_fd(fd);
        }
    }

    #[test]
    fn the_safe_closes_refuse_an_owned_ring_fd() {
        // EBUSY comes before any syscall, so this runs on the host.
        assert_eq!(claim_ring_fd(50), Ok(()));
        assert_eq!(close(50), Err(EBUSY));
        assert_eq!(crate::sys::close(50), Err(EBUSY));
        assert_eq!(crate::sys::close_ring(50), Err(EBUSY));
        assert!(ring_fd_owned(50));
        release_ring_fd(50);
    }
}
