//! The io_uring backend: syscalls 12 (`io_uring_setup`), 13
//! (`io_uring_enter`) and 14 (`io_uring_register`).
//!
//! NOT IMPLEMENTED YET. This crate only claims its place in the layout: every
//! call answers `ENOSYS`, honestly, until the ring-core issue lands the shared
//! op table and this backend's ring mapping at
//! `abi::layout::USER_IO_URING_BASE`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

use kernel_core::ring::{BackendKind, RawArgs, RingBackend};

/// The io_uring backend.
pub struct IoUring;

/// The single instance the kernel image registers.
pub static BACKEND: IoUring = IoUring;

impl RingBackend for IoUring {
    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }
    fn setup(&self, _args: RawArgs) -> Result<u64, i32> {
        Err(abi::errno::ENOSYS)
    }
    fn enter(&self, _args: RawArgs) -> Result<u64, i32> {
        Err(abi::errno::ENOSYS)
    }
    fn register(&self, _args: RawArgs) -> Result<u64, i32> {
        Err(abi::errno::ENOSYS)
    }
    fn teardown(&self, _pid: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_calls_say_enosys() {
        assert_eq!(BACKEND.kind(), BackendKind::IoUring);
        assert_eq!(BACKEND.setup(RawArgs::default()), Err(abi::errno::ENOSYS));
        assert_eq!(BACKEND.enter(RawArgs::default()), Err(abi::errno::ENOSYS));
        assert_eq!(
            BACKEND.register(RawArgs::default()),
            Err(abi::errno::ENOSYS)
        );
    }
}
