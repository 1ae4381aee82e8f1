//! The Ring API backend: syscalls 2002 (`ring_setup`), 2000
//! (`ring_enter`, the doorbell) and 2001 (`ring_register`), with SQPOLL.
//!
//! NOT IMPLEMENTED YET. This crate only claims its place in the layout: every
//! call answers `ENOSYS`, honestly, until the Ring API issue lands its
//! SQPOLL poller on the shared ring engine and this backend's ring mapping
//! at `abi::layout::USER_RING_CONTEXT_BASE`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

use kernel_core::ring::{BackendKind, RawArgs, RingBackend, RingHost};

/// The Ring API backend.
pub struct SqPoll;

/// The single instance the kernel image registers.
pub static BACKEND: SqPoll = SqPoll;

impl RingBackend for SqPoll {
    fn kind(&self) -> BackendKind {
        BackendKind::SqPoll
    }
    fn setup(&self, _host: &mut dyn RingHost, _args: RawArgs) -> Result<u64, i32> {
        Err(abi::errno::ENOSYS)
    }
    fn enter(&self, _host: &mut dyn RingHost, _args: RawArgs) -> Result<u64, i32> {
        Err(abi::errno::ENOSYS)
    }
    fn register(&self, _host: &mut dyn RingHost, _args: RawArgs) -> Result<u64, i32> {
        Err(abi::errno::ENOSYS)
    }
    fn release(&self, _host: &mut dyn RingHost, _pid: u64, _id: u64) {}
    fn teardown(&self, _host: &mut dyn RingHost, _pid: u64) {}
    fn poll_timers(&self, _host: &mut dyn RingHost) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_sqpoll() {
        assert_eq!(BACKEND.kind(), BackendKind::SqPoll);
    }
}
