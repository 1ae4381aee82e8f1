//! Machine-independent kernel logic.
//!
//! Everything here is pure: no hardware access, no `unsafe`, no global state
//! that a test cannot build. That is what lets it run under `cargo test` on
//! the host; the kernel image crate supplies the machine.
//!
//! It also holds the seams that make the kernel modular: [`ring::RingBackend`],
//! the trait every ring system implements, and [`ring::SyscallMode`].
//!
//! Modules:
//! - [`bootparam`]: the kernel command line, parsed into a typed configuration.
//! - [`elf`]: checking a static x86_64 executable and planning how to load it.
//! - [`console`]: the line discipline and the framebuffer text console.
//! - [`cpio`]: reading the initrd archive.
//! - [`fs`]: the RAM file system, open files and file descriptor tables.
//! - [`frames`]: the physical frame bitmap allocator.
//! - [`pci`]: PCI config-space logic (capabilities, BARs, MSI/MSI-X).
//! - [`quota`]: bounded byte counters for memory held on behalf of users.
//! - [`ring`]: the seam between the kernel and its ring systems.
//!
//! Every error is an enum with an `errno()` method giving the `abi::errno`
//! value user space would see; none of this code panics on bad input.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod block;
pub mod bootparam;
pub mod console;
pub mod cpio;
pub mod elf;
pub mod frames;
pub mod fs;
pub mod pci;
pub mod quota;
pub mod ring;
pub mod vfs;
