//! The user-space runtime every program in `user/` links against.
//!
//! It gives a `no_std` program what `std` would: the `_start` entry point and
//! the argument list ([`Args`], [`entry!`]), a panic handler that prints
//! `panicked at FILE:LINE: MESSAGE` and exits with 101, a global allocator
//! over a fixed region in `.bss` ([`heap`]), typed syscall wrappers ([`sys`]),
//! console printing ([`print!`], [`println!`], [`eprint!`], [`eprintln!`]),
//! files ([`fs`]), child processes ([`process`]) and a small test harness
//! ([`test`]).
//!
//! Invariants:
//! - Every syscall number, errno value, flag, struct and fixed address comes
//!   from the `abi` crate; nothing here repeats one.
//! - Unsafe code lives only in [`rt`] (entry point), [`heap`] (allocator) and
//!   [`sys`] (the `syscall` instruction), each block with a `// SAFETY:`
//!   comment; everything else is safe code over those three.
//! - On the host (`cargo test -p libuser`) the entry point, panic handler and
//!   global allocator are left out, so the pure logic can be unit-tested.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod console;
pub mod fs;
pub mod heap;
pub mod process;
pub mod rt;
pub mod sys;
pub mod test;

pub use rt::Args;
pub use sys::Errno;
