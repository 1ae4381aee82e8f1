//! Machine-independent kernel logic.
//!
//! Everything here is pure: no hardware access, no `unsafe`, no global state
//! that a test cannot build. That is what lets it run under `cargo test` on
//! the host; the kernel image crate supplies the machine.
//!
//! It also holds the seams that make the kernel modular: [`ring::RingBackend`],
//! the trait every ring system implements, and [`ring::SyscallMode`].
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod ring;
