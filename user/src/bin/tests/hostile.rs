//! The only unsafe code of the test suite: syscalls with hand-made
//! arguments, the addresses the bad-pointer cases use, and borrowing the top
//! of the stack.
//!
//! [`syscall`] is a safe function only because of what this program passes
//! it: every pointer is either one a correct kernel must refuse without
//! touching it (null, the kernel half, wrapping or unmapped ranges,
//! read-only memory as a destination) or points into a buffer the calling
//! case owns and does not otherwise use during the call. If the kernel is
//! wrong it may scribble on this process; detecting that is the point.
#![allow(unsafe_code)]

use abi::errno::{EINVAL, ENOSYS};
use abi::io_uring::{op, Sqe, AT_FDCWD};
use abi::layout::{USER_END, USER_STACK_BOTTOM, USER_STACK_TOP};
use abi::syscall as nr;
use alloc::vec::Vec;
use core::ptr;
use libuser::sys::{self, KERNEL_HALF};
use libuser::{sysring, Errno};

/// Issues syscall `nr` with `args`, as described in the module docs.
pub fn syscall(nr: u64, args: [u64; 6]) -> Result<u64, Errno> {
    // SAFETY: see the module docs: the callers in this program only pass
    // pointers the kernel must refuse or buffers they own for the call.
    unsafe { sys::raw::syscall(nr, args) }
}

/// The I/O call `nr` (`READ`, `WRITE` or `OPEN`) with hand-made arguments,
/// made the way this process makes its I/O:
/// - `SyscallMode::Direct`: the syscall.
/// - `RingBased`: the syscall must be refused with `ENOSYS` (any other
///   answer is returned as it is, so the case fails showing it); then the
///   same request goes to the system ring as an SQE with the same
///   addresses: `READ`/`WRITE` at the file position with the length
///   clamped to `u32::MAX` (an SQE's length has 32 bits), `OPEN` as
///   `OPENAT` of the NUL-terminated name at `ptr` (the length argument has
///   no equivalent). A name that starts in the top bytes of the stack is
///   made to run into the end of the stack first (those bytes are
///   whatever `_start` left), so the kernel must fault reading it rather
///   than find a stray NUL.
pub fn io(nr: u64, args: [u64; 6]) -> Result<u64, Errno> {
    let direct = syscall(nr, args);
    if !sysring::active() || direct != Err(ENOSYS) {
        return direct;
    }
    let [a0, a1, a2, ..] = args;
    let rw = |opcode| {
        // SAFETY: as for `syscall`, see the module docs.
        let result = unsafe { sysring::rw(opcode, a0, a1, a2) };
        result.map_or(Err(ENOSYS), |r| r.map(|n| n as u64))
    };
    let open = |addr: u64| {
        let sqe = Sqe {
            opcode: op::OPENAT,
            fd: AT_FDCWD,
            addr,
            op_flags: u32::try_from(a2).map_err(|_| EINVAL)?,
            ..Sqe::default()
        };
        // SAFETY: as for `syscall`, see the module docs.
        ring_call(unsafe { sysring::call(sqe) })
    };
    match nr {
        nr::READ => rw(op::READ),
        nr::WRITE => rw(op::WRITE),
        nr::OPEN if (USER_STACK_TOP - 64..USER_STACK_TOP).contains(&a0) => {
            let filler = [b'x'; 64];
            at_stack_top(&filler[..(USER_STACK_TOP - a0) as usize], open)
        }
        nr::OPEN => open(a0),
        _ => direct,
    }
}

fn ring_call(result: Option<Result<u32, Errno>>) -> Result<u64, Errno> {
    result.map_or(Err(ENOSYS), |r| r.map(u64::from))
}

/// A user range that no syscall may read or write.
#[derive(Clone, Copy, Debug)]
pub struct Bad {
    pub what: &'static str,
    pub ptr: u64,
    pub len: u64,
}

const fn bad(what: &'static str, ptr: u64, len: u64) -> Bad {
    Bad { what, ptr, len }
}

/// Byte buffers of about 100 bytes that are bad for reading and writing.
#[rustfmt::skip]
pub fn bad_buffers() -> [Bad; 6] {
    [
        bad("null", 0, 16),
        bad("kernel address", KERNEL_HALF, 16),
        bad("range wrapping around", u64::MAX - 10, 100),
        bad("range across the end of the user half", USER_END - 8, 100),
        bad("range off the top of the stack", USER_STACK_TOP - 10, 100),
        bad("range from below the stack", USER_STACK_BOTTOM - 10, 100),
    ]
}

/// Read-only places of this program's image: fine to read from, bad to
/// write to.
pub fn read_only() -> [Bad; 2] {
    [
        bad("read-only .text", text_address(), 16),
        bad("read-only .rodata", READ_ONLY_DATA.as_ptr() as u64, 16),
    ]
}

/// 8-aligned places where a `size`-byte object may not be read from (or,
/// with `written`, written to).
#[rustfmt::skip]
pub fn bad_objects(size: u64, written: bool) -> Vec<Bad> {
    let mut places = Vec::from([
        bad("null", 0, size),
        bad("kernel address", KERNEL_HALF, size),
        bad("wrapping around", u64::MAX - 7, size),
        bad("at the end of the user half", USER_END - 8, size),
        bad("from below the stack", USER_STACK_BOTTOM - 8, size),
    ]);
    if size > 8 {
        places.push(bad("off the top of the stack", USER_STACK_TOP - 8, size));
    }
    if written {
        places.extend(read_only());
    }
    places
}

/// Some bytes in `.rodata`, which the kernel must never write.
static READ_ONLY_DATA: [u64; 8] = [0x5a5a_5a5a_5a5a_5a5a; 8];

/// Whether [`READ_ONLY_DATA`] still holds its initial bytes.
pub fn read_only_data_intact() -> bool {
    let base = READ_ONLY_DATA.as_ptr();
    (0..READ_ONLY_DATA.len()).all(|i| {
        // SAFETY: `i` is in bounds of the static. The volatile read stops
        // the compiler from assuming the constant it was initialised with.
        unsafe { ptr::read_volatile(base.add(i)) == 0x5a5a_5a5a_5a5a_5a5a }
    })
}

/// An address in `.text`: this function's own.
fn text_address() -> u64 {
    text_address as fn() -> u64 as usize as u64
}

/// Runs `f` with `bytes` copied to the very end of the user stack, so that a
/// range starting at the address `f` gets runs from mapped into unmapped
/// memory; puts back what was there before returning.
pub fn at_stack_top<R>(bytes: &[u8], f: impl FnOnce(u64) -> R) -> R {
    const ROOM: usize = 64;
    assert!(
        bytes.len() <= ROOM,
        "at_stack_top takes at most {ROOM} bytes"
    );
    let len = bytes.len();
    let addr = USER_STACK_TOP - len as u64;
    let top = addr as *mut u8;
    let mut saved = [0u8; ROOM];
    // SAFETY: the stack is mapped, writable, up to `USER_STACK_TOP`. Its top
    // bytes hold the argument strings, which `main` dropped, or the frames
    // of `_start` and `start`, which stay suspended until `main` returns;
    // the bytes are restored below before anything can read them. Our own
    // frames are far below.
    unsafe {
        ptr::copy_nonoverlapping(top, saved.as_mut_ptr(), len);
        ptr::copy_nonoverlapping(bytes.as_ptr(), top, len);
    }
    let result = f(addr);
    // SAFETY: as above; writes back the bytes saved there.
    unsafe { ptr::copy_nonoverlapping(saved.as_ptr(), top, len) };
    result
}
