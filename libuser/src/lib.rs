//! The user-space runtime every program in `user/` links against.
//!
//! It gives a `no_std` program what `std` would: the `_start` entry point and
//! the argument list ([`Args`], [`entry!`]), a panic handler that prints
//! `panicked at FILE:LINE: MESSAGE` and exits with 101, a global allocator
//! over a fixed region in `.bss` ([`heap`]), typed syscall wrappers ([`sys`],
//! which in `SyscallMode::RingBased` do their I/O through the process's
//! system ring, [`sysring`]; the direct calls are [`sys::raw`]),
//! console printing ([`print!`], [`println!`], [`eprint!`], [`eprintln!`]),
//! files ([`fs`]), child processes ([`process`]), rings
//! ([`uring::IoUring`], the raw ring of either ring system, [`ring_io`],
//! the Ring API's `Ring` with SQPOLL, and [`async_io`], the seed's
//! `AsyncContext`), a small test harness ([`test`]), and the shell's pure
//! logic: command-line parsing ([`shell_parse`]) and line editing with
//! history ([`line_edit`]).
//!
//! Invariants:
//! - Every syscall number, errno value, flag, struct and fixed address comes
//!   from the `abi` crate; nothing here repeats one.
//! - Layers call downwards only: [`sys::raw`] (the `syscall` instruction)
//!   uses no other module; [`uring`] uses only [`sys::raw`]; [`sysring`]
//!   uses [`uring`] and [`sys::raw`]; [`sys`] is the facade over
//!   [`sys::raw`] and [`sysring`]; everything else builds on those.
//! - Unsafe code is denied crate-wide and allowed where it is the point:
//!   in the modules [`rt`] (the entry point), [`sys::raw`] (the `syscall`
//!   instruction), [`uring`] (views of the shared ring mapping),
//!   [`sysring`] (lending call buffers to the system ring) and
//!   [`async_io`] (lending buffers to the kernel), each allowed at its
//!   `mod` line; and on two items, [`heap`]'s allocator (handing it the
//!   static region) and `ring_io::Ring::push_sqe` (passing on
//!   `IoUring::push_sqe`'s contract). Every unsafe block carries a
//!   `// SAFETY:` comment; everything else is safe code over those.
//! - A ring descriptor belongs to the [`uring::IoUring`] that set it up,
//!   as a file descriptor to Rust's `OwnedFd`: closing it unmaps the ring,
//!   so the safe close functions refuse it with `EBUSY` while that
//!   `IoUring` lives ([`sys::raw::ring_fd_owned`]).
//! - On the host (`cargo test -p libuser`) the entry point, panic handler and
//!   global allocator are left out, so the pure logic can be unit-tested.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

#[allow(unsafe_code)] // lends buffers to the kernel; the `*_raw` builders take addresses
pub mod async_io;
pub mod console;
pub mod fs;
pub mod heap;
pub mod line_edit;
pub mod process;
pub mod ring_io;
#[allow(unsafe_code)] // the entry point: naked `_start`, and argv and StartInfo from the kernel
pub mod rt;
pub mod shell_parse;
pub mod sys;
#[allow(unsafe_code)] // lends each call's buffers to the system ring
pub mod sysring;
pub mod test;
#[allow(unsafe_code)] // views of ring memory shared with the kernel
pub mod uring;

pub use abi::errno::Errno;
pub use rt::Args;
