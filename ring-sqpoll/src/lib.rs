//! The Ring API backend: syscalls 2002 (`ring_setup`), 2000
//! (`ring_enter`, the doorbell) and 2001 (`ring_register`), with SQPOLL.
//!
//! NOT IMPLEMENTED YET. This crate only claims its place in the layout: every
//! call answers `ENOSYS`, honestly, until the Ring API issue lands its SQPOLL poller on the shared
//! op table and this backend's ring mapping at
//! `abi::layout::USER_RING_CONTEXT_BASE`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

use kernel_core::ring::{BackendKind, RawArgs, RingBackend};

/// The Ring API backend.
pub struct SqPoll;

/// The single instance the kernel image registers.
pub static BACKEND: SqPoll = SqPoll;

impl RingBackend for SqPoll {
    fn kind(&self) -> BackendKind {
        BackendKind::SqPoll
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
        assert_eq!(BACKEND.kind(), BackendKind::SqPoll);
        assert_eq!(BACKEND.setup(RawArgs::default()), Err(abi::errno::ENOSYS));
        assert_eq!(BACKEND.enter(RawArgs::default()), Err(abi::errno::ENOSYS));
        assert_eq!(
            BACKEND.register(RawArgs::default()),
            Err(abi::errno::ENOSYS)
        );
    }
}
