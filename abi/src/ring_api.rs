//! The Ring API ABI: syscalls 2002 `ring_setup`, 2000 `ring_enter` (the
//! doorbell) and 2001 `ring_register`, with SQPOLL.
//!
//! The Ring API is a second calling convention over the same rings as
//! io_uring: the context it maps has exactly the io_uring ring layout
//! ([`crate::io_uring::ring_layout`], header words at
//! [`crate::io_uring::header`] offsets, [`Sqe`](crate::io_uring::Sqe) and
//! [`Cqe`](crate::io_uring::Cqe) entries, the same opcodes, SQE flags, SQ
//! flags and register opcodes), so one engine and one op table serve both.
//! What differs is how a process reaches its ring:
//!
//! - one context per process, at the fixed address
//!   [`crate::layout::USER_RING_CONTEXT_BASE`], with no descriptor: the
//!   calls take no ring argument, and the context lives until the process
//!   ends or closes it ([`CONTEXT_CLOSE`]);
//! - `ring_enter` is a doorbell: with no arguments it makes the kernel take
//!   everything published in the SQ;
//! - with [`setup_flags::SQPOLL`] a kernel thread (the *poller*) takes SQEs
//!   as soon as they are published, with no syscall at all; it goes to
//!   sleep after [`RingSetupParams::sq_thread_idle_ms`] without work, and
//!   says so with [`sq_flags::NEED_WAKEUP`] in the SQ flags word.
//!
//! # Calls
//!
//! `ring_setup(params: *mut RingSetupParams) -> 0`
//! : Creates the caller's context. In: `sq_entries` (1 or more; rounded up
//!   to a power of two, clamped to 256; 0 is `EINVAL`), `flags`
//!   ([`setup_flags`]; unknown bits are `EINVAL`), `cq_entries` with
//!   `CQSIZE` (rounded, clamped to 256, not below the SQ size, else
//!   `EINVAL`), `sq_thread_idle_ms` with `SQPOLL` (0 = [`DEFAULT_IDLE_MS`],
//!   clamped to [`MAX_IDLE_MS`]), `sq_thread_cpu` with `SQ_AFF` (must be
//!   below the number of CPUs running tasks, else `EINVAL`). `resv`, and
//!   `sq_thread_idle_ms`/`sq_thread_cpu` without their flag, must be zero
//!   (`EINVAL`); `SQ_AFF` needs `SQPOLL` (`EINVAL`); the output-only fields,
//!   and `cq_entries` without `CQSIZE`, are ignored (as on Linux, so one
//!   struct can be reused). Out: `sq_entries`, `cq_entries`
//!   (default `min(2 * sq, 256)`), `sq_thread_idle_ms` as used,
//!   `features` ([`crate::io_uring::features`] bits), `sq_thread_id` (the
//!   poller's task id for `task_info`, 0 without SQPOLL) and `ring_addr`.
//!   A second context for the same process is `EBUSY`; a bad `params`
//!   pointer is `EFAULT`, checked before anything is created.
//!
//! `ring_enter(flags, min_complete) -> consumed`
//! : The doorbell. Without SQPOLL it consumes every published SQE (at most
//!   one ring's worth) and returns how many it consumed; with SQPOLL it
//!   wakes the poller (clearing `NEED_WAKEUP` is the poller's job) and
//!   returns 0, or with [`enter_flags::SQ_WAIT`] sleeps until the poller
//!   has consumed what was published and returns how many that was.
//!   [`enter_flags::GETEVENTS`] then sleeps until `min_complete` (clamped to
//!   the CQ size) CQEs are in the CQ. Overflowed completions move into the
//!   CQ on every call. No context: `ENXIO`; unknown flags: `EINVAL`; 4096
//!   completions waiting in the overflow list: `EBUSY`, nothing consumed
//!   (with SQPOLL: only if SQEs are published that the poller therefore
//!   cannot take).
//!
//! `ring_register(opcode, arg, nr) -> 0`
//! : io_uring's `io_uring_register` without the descriptor: the same
//!   [`register`] opcodes, arguments and errors, plus [`CONTEXT_CLOSE`],
//!   which ends the context early. No context: `ENXIO`.
//!
//! # SQPOLL protocol (user side)
//!
//! To submit: write the SQEs and SQ array entries, store-release the SQ
//! tail, then a full fence (`SeqCst`), then load the SQ flags; only if
//! `NEED_WAKEUP` is set call `ring_enter(0, 0)`. The poller, before it
//! sleeps, sets `NEED_WAKEUP`, fences, and reads the SQ tail once more, so
//! one of the two always sees the other's store: nothing published is left
//! behind by a sleeping poller.
//!
//! # The system ring
//!
//! In `SyscallMode::RingBased` with this backend active, the kernel gives
//! each process a second, kernel-made context at
//! [`crate::layout::USER_SYSTEM_RING_BASE`] (see [`crate::StartInfo`]),
//! without a poller, for its ordinary I/O. `ring_enter` addresses it with
//! [`enter_flags::SYSTEM_RING`]; `ring_setup` still creates the process's
//! own context at the usual address, and `ring_register` only ever acts on
//! that one.

use crate::io_uring::ring_layout;
pub use crate::io_uring::{register, sq_flags};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `ring_register` opcode of the Ring API's own, beside io_uring's
/// [`register`] opcodes: `ring_register(CONTEXT_CLOSE, 0, 0)` ends the
/// caller's context before the process does. Its poller is stopped and
/// gone when the call returns, work still pending is dropped without a
/// CQE, registrations are released and the context's memory is unmapped;
/// a later `ring_setup` creates a fresh context at the same address. No
/// context: `ENXIO`; `arg` or `nr` not zero: `EINVAL`. The system ring
/// cannot be closed.
pub const CONTEXT_CLOSE: u32 = 0x100;

/// Where each part of a ring context lies, as byte offsets from
/// [`RingSetupParams::ring_addr`]. The same as an io_uring ring's.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RingContextLayout {
    /// The SQ header page: header words at [`crate::io_uring::header`]
    /// offsets, the SQ index array at `header::ARRAY`.
    pub sq_header: u64,
    /// The CQ header page.
    pub cq_header: u64,
    /// The SQE array (`sq_entries` × 64 bytes).
    pub sq_entries: u64,
    /// The CQE array (`cq_entries` × 16 bytes).
    pub cq_entries: u64,
    /// Bytes mapped in all.
    pub size: u64,
}
const _: () = assert!(core::mem::size_of::<RingContextLayout>() == 40);

/// The layout of every ring context.
pub const CONTEXT_LAYOUT: RingContextLayout = RingContextLayout {
    sq_header: ring_layout::SQ_HEADER,
    cq_header: ring_layout::CQ_HEADER,
    sq_entries: ring_layout::SQES,
    cq_entries: ring_layout::CQES,
    size: ring_layout::SIZE,
};

/// The poller's idle time when `sq_thread_idle_ms` is 0 (Linux's default).
pub const DEFAULT_IDLE_MS: u32 = 1000;
/// Longest idle time; larger values are clamped to it.
pub const MAX_IDLE_MS: u32 = 60_000;

/// `ring_setup`'s in/out argument, 64 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RingSetupParams {
    /// In: SQ entries wanted. Out: the SQ size.
    pub sq_entries: u32,
    /// In with `CQSIZE`: CQ entries wanted (else 0). Out: the CQ size.
    pub cq_entries: u32,
    /// In: [`setup_flags`].
    pub flags: u32,
    /// In with `SQ_AFF`: the CPU the poller should run on (else 0).
    pub sq_thread_cpu: u32,
    /// In with `SQPOLL`: milliseconds without work before the poller
    /// sleeps (0: [`DEFAULT_IDLE_MS`]; else 0). Out: the value used.
    pub sq_thread_idle_ms: u32,
    /// Out: [`crate::io_uring::features`] bits.
    pub features: u32,
    /// Out: the poller's task id (for `task_info`), 0 without SQPOLL.
    pub sq_thread_id: u64,
    /// Out: user address of the context
    /// ([`crate::layout::USER_RING_CONTEXT_BASE`]).
    pub ring_addr: u64,
    /// Must be zero.
    pub resv: [u64; 3],
}
const _: () = assert!(core::mem::size_of::<RingSetupParams>() == 64);
const _: () = assert!(core::mem::offset_of!(RingSetupParams, sq_thread_id) == 24);
const _: () = assert!(core::mem::offset_of!(RingSetupParams, ring_addr) == 32);

/// `ring_setup` flags ([`RingSetupParams::flags`]).
pub mod setup_flags {
    /// A kernel thread polls the SQ: submission needs no syscall.
    pub const SQPOLL: u32 = 1 << 0;
    /// Run the poller on `sq_thread_cpu` (with `SQPOLL` only).
    pub const SQ_AFF: u32 = 1 << 1;
    /// `cq_entries` gives the CQ size.
    pub const CQSIZE: u32 = 1 << 2;
    /// Every flag the kernel accepts.
    pub const SUPPORTED: u32 = SQPOLL | SQ_AFF | CQSIZE;
}

/// `ring_enter` flags.
pub mod enter_flags {
    /// After the doorbell, sleep until `min_complete` CQEs are in the CQ.
    pub const GETEVENTS: u32 = 1 << 0;
    /// Wake the poller. Accepted for io_uring's sake: the doorbell always
    /// wakes it.
    pub const SQ_WAKEUP: u32 = 1 << 1;
    /// SQPOLL: sleep until the poller has consumed every SQE published when
    /// the call began (or cannot go on: `EBUSY`). Without SQPOLL the
    /// doorbell consumes them itself, so this changes nothing.
    pub const SQ_WAIT: u32 = 1 << 2;
    /// Ring the process's system ring (`SyscallMode::RingBased`, see
    /// `crate::StartInfo`) instead of its context; `ENXIO` if it has none.
    /// The system ring has no poller: the doorbell consumes its SQ.
    pub const SYSTEM_RING: u32 = 1 << 4;
    /// Every flag the kernel accepts.
    pub const SUPPORTED: u32 = GETEVENTS | SQ_WAKEUP | SQ_WAIT | SYSTEM_RING;
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::{FromBytes, IntoBytes};

    #[test]
    fn params_round_trip_through_bytes() {
        let p = RingSetupParams {
            sq_entries: 1,
            cq_entries: 2,
            flags: 3,
            sq_thread_cpu: 4,
            sq_thread_idle_ms: 5,
            features: 6,
            sq_thread_id: 0x0102_0304_0506_0708,
            ring_addr: crate::layout::USER_RING_CONTEXT_BASE,
            resv: [9, 10, 11],
        };
        let bytes = p.as_bytes();
        assert_eq!(RingSetupParams::read_from_bytes(bytes), Ok(p));
        assert_eq!(bytes[8], 3, "flags at byte 8");
        assert_eq!(bytes[24], 8, "sq_thread_id at byte 24, little-endian");
    }

    #[test]
    fn the_context_layout_is_the_io_uring_layout() {
        assert_eq!(CONTEXT_LAYOUT.sq_header, ring_layout::SQ_HEADER);
        assert_eq!(CONTEXT_LAYOUT.cq_entries, ring_layout::CQES);
        assert_eq!(CONTEXT_LAYOUT.size, ring_layout::SIZE);
    }
}
