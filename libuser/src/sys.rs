//! Syscalls as programs make them: one typed function per call.
//!
//! `read`, `write`, `open`, `close` and `fsync` are a facade: in
//! `SyscallMode::RingBased` they go through the process's system ring
//! ([`crate::sysring`]), otherwise they are the direct syscalls of
//! [`raw`]. Every other call is the direct syscall, re-exported from
//! [`raw`], which also holds the `syscall` instruction itself for tests
//! that hand the kernel bad pointers on purpose.
//!
//! Layering: [`raw`] uses nothing else from libuser; [`crate::sysring`]
//! and [`crate::uring`] build on [`raw`] only, and this module on both, so
//! no module here calls back into one that calls it.

#[allow(unsafe_code)] // the `syscall` instruction, and the pointers passed to it
pub mod raw;

use crate::sysring;
use abi::errno::{Errno, EBUSY, EIO};

pub use raw::{
    clock_ns, console_mode, console_set_foreground, exit, fstat, ftruncate, getdents, getpid,
    list_files, lseek, mkdir, openat, poweroff, pread, pwrite, rename, rmdir, sleep_ns, spawn,
    stat, sysinfo, task_info, task_list, unlink, wait, yield_now,
};

/// First address of the canonical upper half, where the kernel lives: the
/// sign extension of [`abi::layout::USER_END`]. User pointers at or above it
/// must be refused.
pub const KERNEL_HALF: u64 = !(abi::layout::USER_END - 1);

/// Reads from `fd` into `buf`; returns the byte count, 0 at end of file.
pub fn read(fd: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    sysring::read(fd, buf).unwrap_or_else(|| raw::read(fd, buf))
}

/// Writes `buf` to `fd`; returns how many bytes were taken.
pub fn write(fd: u64, buf: &[u8]) -> Result<usize, Errno> {
    sysring::write(fd, buf).unwrap_or_else(|| raw::write(fd, buf))
}

/// Writes all of `buf` to `fd`, retrying short writes.
pub fn write_all(fd: u64, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        match write(fd, buf)? {
            0 => return Err(EIO),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// Opens `path` with `flags` from [`abi::open_flags`]; returns the new fd.
pub fn open(path: &str, flags: u64) -> Result<u64, Errno> {
    sysring::open(path, flags).unwrap_or_else(|| raw::open(path, flags))
}

/// Closes `fd`. A ring descriptor cannot be closed through a ring: use
/// [`close_ring`] for those. A ring descriptor that a live
/// [`crate::uring::IoUring`] owns is refused with `EBUSY` and stays open
/// (closing it would unmap the ring under the `IoUring`): close the
/// `IoUring` instead.
pub fn close(fd: u64) -> Result<(), Errno> {
    if raw::ring_fd_owned(fd) {
        return Err(EBUSY);
    }
    sysring::close(fd).unwrap_or_else(|| raw::close(fd))
}

/// Closes `fd` with the `close` syscall, which in `SyscallMode::RingBased`
/// closes ring descriptors only (a ring cannot close one, as on Linux).
/// `EBUSY`, closing nothing, for a ring descriptor that a live
/// [`crate::uring::IoUring`] owns: only that `IoUring` closes it
/// ([`crate::uring::IoUring::close`], or dropping it); a descriptor taken
/// out of it with [`crate::uring::IoUring::into_raw_fd`] is the caller's
/// to close here.
pub fn close_ring(fd: u64) -> Result<(), Errno> {
    raw::close(fd)
}

/// Flushes `fd`'s data to its backing store (metadata not needed to read
/// it back may stay behind). Through the system ring this is a full FSYNC,
/// which does at least as much.
pub fn fdatasync(fd: u64) -> Result<(), Errno> {
    sysring::fsync(fd).unwrap_or_else(|| raw::fdatasync(fd))
}

/// Flushes `fd` to its backing store.
pub fn fsync(fd: u64) -> Result<(), Errno> {
    sysring::fsync(fd).unwrap_or_else(|| raw::fsync(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_half_starts_at_the_upper_canonical_half() {
        assert_eq!(KERNEL_HALF, 0xffff_8000_0000_0000);
    }
}
