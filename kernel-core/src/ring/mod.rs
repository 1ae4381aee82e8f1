//! The seam between the kernel and its ring systems, and the ring engine
//! they share.
//!
//! Each ring system (io_uring on syscalls 12-14, the Ring API on 2000-2002)
//! lives in its own crate and implements [`RingBackend`]. The kernel image
//! registers the backends compiled into it and the `ring=` boot parameter
//! chooses the active one; nothing else names a concrete backend.
//!
//! Both backends drive the same engine, unchanged:
//! - [`shared`]: [`SharedRing`], the view of the ring memory user space
//!   shares with the kernel, which the engine treats as hostile (every word
//!   read once, every index masked or bounds-checked).
//! - [`ops`]: the op table; one file per op family, each op a
//!   [`ops::OpDef`] with `prep`/`issue` and capability bits.
//! - [`env`]: [`IoEnv`], everything the engine needs from the machine
//!   (files, user memory, the clock), and [`MockEnv`] for host tests.
//! - [`engine`]: [`RingEngine`], the per-ring state machine: submission,
//!   completion, links, drain, overflow, timeouts, registration.
//!
//! The engine never blocks and never touches hardware: the backend decides
//! when to call it (on `enter`, from an SQPOLL thread, from a timer) and how
//! to sleep and wake.

use abi::errno::Errno;

pub mod engine;
pub mod env;
pub mod host;
pub mod mailbox;
pub mod mock;
pub mod ops;
pub mod shared;
#[cfg(test)]
mod tests;

pub use engine::{RingEngine, RingStats, MAX_PENDING, OVERFLOW_MAX, RING_MEMORY};
pub use env::{AsyncIo, FileRef, IoEnv, IoTarget, PathOp};
pub use host::{AsDynHost, FdRing, RingHost, RingMapping, RingMemory, RingObject, ThreadBody};
pub use mailbox::{IoMailbox, IoResult};
pub use mock::{mock_ring_mapping, MockEnv};
pub use shared::{OwnedRing, SharedRing};

/// How a process talks to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyscallMode {
    /// Classic: every service is a `syscall` instruction.
    #[default]
    Direct,
    /// Ordinary I/O goes through a ring the kernel sets up for each process
    /// before it runs ([`RingBackend::setup_system_ring`], described to the
    /// process by `abi::StartInfo`); the direct I/O syscalls it replaces
    /// (read, write, open, fsync, and close of anything but a ring) fail
    /// with `ENOSYS`.
    RingBased,
}

impl SyscallMode {
    /// The values the `syscall=` boot parameter accepts, for messages and help.
    pub const PARAM_VALUES: &'static str = "direct|ring";

    /// Parses the value of the `syscall=` boot parameter: `direct` or `ring`
    /// (exact, lower case). `None` for anything else.
    pub fn from_param(value: &str) -> Option<Self> {
        match value {
            "direct" => Some(SyscallMode::Direct),
            "ring" => Some(SyscallMode::RingBased),
            _ => None,
        }
    }

    /// The name used by the `syscall=` boot parameter.
    pub const fn name(self) -> &'static str {
        match self {
            SyscallMode::Direct => "direct",
            SyscallMode::RingBased => "ring",
        }
    }
}

/// Which ring system a backend implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Linux-compatible io_uring, syscalls 12-14.
    IoUring,
    /// Doorbell-style Ring API with SQPOLL, syscalls 2000-2002.
    SqPoll,
}

impl BackendKind {
    /// The values the `ring=` boot parameter accepts, for messages and help.
    pub const PARAM_VALUES: &'static str = "iouring|sqpoll";

    /// Parses the value of the `ring=` boot parameter: `iouring` or `sqpoll`
    /// (exact, lower case; the inverse of [`BackendKind::name`]). `None` for
    /// anything else.
    pub fn from_param(value: &str) -> Option<Self> {
        [BackendKind::IoUring, BackendKind::SqPoll]
            .into_iter()
            .find(|kind| kind.name() == value)
    }

    /// The name used by the `ring=` boot parameter.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::IoUring => "iouring",
            BackendKind::SqPoll => "sqpoll",
        }
    }
}

/// Raw syscall arguments as the dispatcher received them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawArgs(pub [u64; 6]);

/// A process's system ring, as [`RingBackend::setup_system_ring`] made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemRing {
    /// User address of the ring (`abi::layout::USER_SYSTEM_RING_BASE`).
    pub addr: u64,
    /// SQ entries.
    pub sq_entries: u32,
    /// CQ entries.
    pub cq_entries: u32,
}

/// A ring system, used as `&'static dyn RingBackend`.
///
/// Each method receives the raw arguments of its syscall and returns the
/// result or an errno; decoding and validating the arguments is the
/// backend's job because the two systems' calls differ.
pub trait RingBackend: Sync {
    /// Which system this is.
    fn kind(&self) -> BackendKind;
    /// `io_uring_setup` / `ring_setup`, for the host's calling process.
    fn setup(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno>;
    /// `io_uring_enter` / `ring_enter` (the doorbell).
    fn enter(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno>;
    /// `io_uring_register` / `ring_register`.
    fn register(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno>;
    /// Sets up the caller's system ring for `SyscallMode::RingBased`: a
    /// ring of this system at `abi::layout::USER_SYSTEM_RING_BASE` with
    /// `abi::SYSTEM_RING_ENTRIES` SQ entries, reached with this system's
    /// doorbell and the system-ring flag (`abi::StartInfo`), that lives
    /// until `teardown`. `EBUSY` if the caller has one already.
    fn setup_system_ring(&self, host: &mut dyn RingHost) -> Result<SystemRing, Errno>;
    /// The last descriptor of ring `id` of process `pid` was closed.
    fn release(&self, host: &mut dyn RingHost, pid: u64, id: u64);
    /// Releases every ring the process `pid` owns; called when it ends,
    /// before its address space (and so the ring memory) goes away.
    fn teardown(&self, host: &mut dyn RingHost, pid: u64);
    /// Fires expired timeouts of every ring (the kernel's timer thread calls
    /// this after a deadline asked for with `RingHost::arm_timer`).
    fn poll_timers(&self, host: &mut dyn RingHost);
}

/// How long a CQ waiter with device I/O in flight polls the devices before
/// it sleeps (guest nanoseconds).
pub const SPIN_NS: u64 = 50_000;

/// Before a GETEVENTS waiter sleeps for device I/O it has in flight: polls
/// every device queue for up to [`SPIN_NS`], as long as no other task wants
/// the CPU. A halted CPU wakes slowly (under emulation, tens of
/// microseconds), and a 4 KiB read takes about as long as this, so the
/// spin usually turns an interrupt, a halt and a wake-up into one poll.
/// Returns whether a result reached `mailbox` (the caller reaps it and
/// checks again); `false` when the time ran out or the CPU is wanted.
pub fn spin_for_io(host: &mut dyn RingHost, mailbox: &IoMailbox) -> bool {
    let until = host.now_ns().saturating_add(SPIN_NS);
    loop {
        host.poll_io_all();
        if mailbox.has_posts() {
            return true;
        }
        if host.now_ns() >= until || host.cpu_wanted() {
            return false;
        }
        core::hint::spin_loop();
    }
}
