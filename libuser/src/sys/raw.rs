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
#![allow(unsafe_code)]

use abi::errno::Errno;
use abi::syscall as nr;
use abi::{Arg, FileStat, SysInfo, TaskInfo};
use alloc::vec::Vec;
use core::arch::asm;

/// Issues syscall `n` with six arguments and returns `rax` undecoded.
///
/// # Safety
///
/// Every argument the kernel treats as a pointer must name memory it may
/// read or write as the call describes, or be one the kernel is bound to
/// refuse; the call may change any memory it is given.
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
pub fn close(fd: u64) -> Result<(), Errno> {
    // SAFETY: no pointer arguments.
    Errno::from_ret(unsafe { syscall1(nr::CLOSE, fd) }).map(drop)
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
