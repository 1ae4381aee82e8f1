//! The only unsafe code of the ring test suite: SQEs and syscalls with
//! hand-made addresses, and scribbling on ring memory.
//!
//! The functions here are safe only because of what this program passes
//! them: every address is either one a correct kernel must refuse without
//! touching it (null, the kernel half, unmapped ranges, read-only memory as
//! a destination), or memory the calling case keeps alive and unused until
//! the operation's completion has been reaped. If the kernel is wrong it may
//! scribble on this process; detecting that is the point.
#![allow(unsafe_code)]

use abi::io_uring::{IoUringParams, IoVec, Sqe};
use abi::layout::{USER_END, USER_STACK_BOTTOM};
use alloc::vec::Vec;
use core::ptr;
use libuser::async_io::AsyncOp;
use libuser::sys::KERNEL_HALF;
use libuser::uring::{self, Ring};
use libuser::Errno;

/// `io_uring_setup(entries, params_addr)`.
pub fn setup_at(entries: u32, params_addr: u64) -> Result<u64, Errno> {
    // SAFETY: see the module docs.
    unsafe { uring::setup_raw(entries, params_addr) }
}

/// `io_uring_setup(entries, &mut params)`, returning the raw descriptor and
/// leaving the kernel's answer in `params`.
pub fn setup_fd(entries: u32, params: &mut IoUringParams) -> Result<u64, Errno> {
    setup_at(entries, ptr::from_mut(params) as u64)
}

/// `io_uring_register(fd, opcode, arg, nr)` with a raw argument.
pub fn register(fd: u64, opcode: u32, arg: u64, nr: u32) -> Result<u64, Errno> {
    // SAFETY: see the module docs.
    unsafe { uring::register_raw(fd, opcode, arg, nr) }
}

/// `register(opcode, arg, nr)` on `ring`, through whichever syscall drives
/// it, with a raw argument.
pub fn register_on(ring: &Ring, opcode: u32, arg: u64, nr: u32) -> Result<u64, Errno> {
    // SAFETY: see the module docs.
    unsafe { ring.register(opcode, arg, nr) }
}

/// `ring_setup(params_addr)`.
pub fn ring_setup_at(params_addr: u64) -> Result<u64, Errno> {
    // SAFETY: see the module docs.
    unsafe { uring::ring_setup_raw(params_addr) }
}

/// `ring_register(opcode, arg, nr)` with a raw argument.
pub fn ring_register(opcode: u32, arg: u64, nr: u32) -> Result<u64, Errno> {
    // SAFETY: see the module docs.
    unsafe { uring::ring_register_raw(opcode, arg, nr) }
}

/// `task_info(tid, out_addr)`.
pub fn task_info_at(tid: u64, out_addr: u64) -> Result<u64, Errno> {
    // SAFETY: see the module docs.
    unsafe { libuser::sys::raw::syscall(abi::syscall::TASK_INFO, [tid, out_addr, 0, 0, 0, 0]) }
}

/// Pushes `sqe` onto `ring` (not published).
pub fn push(ring: &mut Ring, sqe: &Sqe) -> bool {
    // SAFETY: see the module docs.
    unsafe { ring.push_sqe(sqe) }
}

/// Pushes `sqe` onto the Ring API context `ring` (not published).
pub fn push_api(ring: &mut libuser::ring_io::Ring, sqe: &Sqe) -> bool {
    // SAFETY: see the module docs.
    unsafe { ring.push_sqe(sqe) }
}

/// An op made from a raw SQE.
pub fn op(sqe: Sqe) -> AsyncOp {
    // SAFETY: see the module docs.
    unsafe { AsyncOp::from_sqe(sqe) }
}

/// A READ into `len` bytes at `addr`.
pub fn read_at(fd: i32, addr: u64, len: u32, offset: u64, user_data: u64) -> AsyncOp {
    // SAFETY: see the module docs.
    unsafe { AsyncOp::read_raw(fd, addr as *mut u8, len, offset, user_data) }
}

/// A WRITE from `len` bytes at `addr`.
pub fn write_at(fd: i32, addr: u64, len: u32, offset: u64, user_data: u64) -> AsyncOp {
    // SAFETY: see the module docs.
    unsafe { AsyncOp::write_raw(fd, addr as *const u8, len, offset, user_data) }
}

/// A READV/WRITEV with `count` iovecs at `iovecs`.
pub fn vectored_at(write: bool, fd: i32, iovecs: u64, count: u32, user_data: u64) -> AsyncOp {
    // SAFETY: see the module docs.
    unsafe { AsyncOp::vectored_raw(write, fd, iovecs as *const IoVec, count, 0, user_data) }
}

/// A READ_FIXED/WRITE_FIXED of `len` bytes at `addr` against registered
/// buffer `index`.
pub fn fixed_at(write: bool, fd: i32, index: u16, addr: u64, len: u32, user_data: u64) -> AsyncOp {
    // SAFETY: see the module docs.
    unsafe { AsyncOp::fixed_raw(write, fd, index, addr as *mut u8, len, 0, user_data) }
}

/// Overwrites SQ array entry `position` of `ring` with `value`.
pub fn set_sq_array(ring: &Ring, position: u32, value: u32) {
    // SAFETY: the cases only store out-of-range indices, which name no SQE.
    unsafe { ring.write_sq_array(position, value) }
}

/// A user range no syscall or SQE may read or write.
#[derive(Clone, Copy, Debug)]
pub struct Bad {
    pub what: &'static str,
    pub addr: u64,
}

/// Places where 64 bytes may be neither read nor written.
pub fn bad_places() -> [Bad; 5] {
    [
        Bad {
            what: "null",
            addr: 0,
        },
        Bad {
            what: "kernel address",
            addr: KERNEL_HALF,
        },
        Bad {
            what: "end of the user half",
            addr: USER_END - 8,
        },
        Bad {
            what: "unmapped, below the stack",
            addr: USER_STACK_BOTTOM - 0x10_0000,
        },
        Bad {
            what: "wrapping around",
            addr: u64::MAX - 7,
        },
    ]
}

/// Read-only places of this program's image: fine to read, bad to write.
pub fn read_only_places() -> [Bad; 2] {
    [
        Bad {
            what: "read-only .text",
            addr: text_address(),
        },
        Bad {
            what: "read-only .rodata",
            addr: READ_ONLY_DATA.as_ptr() as u64,
        },
    ]
}

/// 4 KiB of zeros in `.rodata`: readable, not writable, and all zero (for
/// calls such as REGISTER_PROBE that insist on a zeroed input).
pub fn read_only_zeros() -> Bad {
    Bad {
        what: "read-only zeros",
        addr: READ_ONLY_ZEROS.0.as_ptr() as u64,
    }
}

#[repr(C, align(4096))]
struct Zeros([u8; 4096]);

static READ_ONLY_ZEROS: Zeros = Zeros([0; 4096]);

/// Everything bad as a destination.
pub fn bad_destinations() -> Vec<Bad> {
    let mut all = Vec::from(bad_places());
    all.extend(read_only_places());
    all
}

/// Bytes in `.rodata`, which the kernel must never write.
static READ_ONLY_DATA: [u64; 16] = [0x5a5a_5a5a_5a5a_5a5a; 16];

/// Whether [`READ_ONLY_DATA`] still holds its initial bytes.
pub fn read_only_data_intact() -> bool {
    let base = READ_ONLY_DATA.as_ptr();
    (0..READ_ONLY_DATA.len()).all(|i| {
        // SAFETY: `i` is in bounds of the static; the volatile read stops
        // the compiler from assuming its initial value.
        unsafe { ptr::read_volatile(base.add(i)) == 0x5a5a_5a5a_5a5a_5a5a }
    })
}

/// Whether [`READ_ONLY_ZEROS`] is still all zero.
pub fn read_only_zeros_intact() -> bool {
    let base = READ_ONLY_ZEROS.0.as_ptr();
    (0..4096).all(|i| {
        // SAFETY: `i` is in bounds of the static; the volatile read stops
        // the compiler from assuming its initial value.
        unsafe { ptr::read_volatile(base.add(i)) == 0 }
    })
}

fn text_address() -> u64 {
    text_address as fn() -> u64 as usize as u64
}
