//! The user-space runtime every program in `user/` links against.
//!
//! It gives a `no_std` program what `std` would: the `_start` entry point and
//! the argument list ([`Args`], [`entry!`]), a panic handler that prints
//! `panicked at FILE:LINE: MESSAGE` and exits with 101, a global allocator
//! over a fixed region in `.bss` ([`heap`]), typed syscall wrappers ([`sys`],
//! which in `SyscallMode::RingBased` do their I/O through the process's
//! system ring, [`sysring`]; the direct calls are [`sys::raw`]),
//! console printing ([`print!`], [`println!`], [`eprint!`], [`eprintln!`]),
//! files ([`fs`]), child processes ([`process`]), rings ([`uring`], the
//! raw ring of either ring system, [`ring_io`], the Ring API's `Ring`
//! with SQPOLL, and [`async_io`], the seed's `AsyncContext`) and a small
//! test harness ([`test`]).
//!
//! Invariants:
//! - Every syscall number, errno value, flag, struct and fixed address comes
//!   from the `abi` crate; nothing here repeats one.
//! - Layers call downwards only: [`sys::raw`] (the `syscall` instruction)
//!   uses no other module; [`uring`] uses only [`sys::raw`]; [`sysring`]
//!   uses [`uring`] and [`sys::raw`]; [`sys`] is the facade over
//!   [`sys::raw`] and [`sysring`]; everything else builds on those.
//! - Unsafe code lives only in [`rt`] (entry point), [`heap`] (allocator),
//!   [`sys::raw`] (the `syscall` instruction), [`sysring`] (lending call
//!   buffers to the system ring), [`uring`] (the shared ring
//!   mapping), [`ring_io`] (passing on `push_sqe`'s contract) and
//!   [`async_io`] (lending buffers to the kernel), each block
//!   with a `// SAFETY:` comment; everything else is safe code over those.
//! - On the host (`cargo test -p libuser`) the entry point, panic handler and
//!   global allocator are left out, so the pure logic can be unit-tested.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod async_io;
pub mod console;
pub mod fs;
pub mod heap;
pub mod process;
pub mod ring_io;
pub mod rt;
pub mod sys;
pub mod sysring;
pub mod test;
pub mod uring;

pub use abi::errno::Errno;
pub use rt::Args;
