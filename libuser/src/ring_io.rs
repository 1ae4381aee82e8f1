//! The Ring API from user space (syscalls 2000-2002): the seed's
//! `Ring::setup(sqpoll)` and submission without syscalls under SQPOLL.
//!
//! ```ignore
//! use libuser::ring_io::Ring;
//! let mut ring = Ring::setup(true)?;          // ring_setup with SQPOLL
//! unsafe { ring.push_sqe(&nop) };             // write the SQE
//! ring.submit()?;                             // publish; ring_enter only if NEED_WAKEUP
//! let cqe = ring.wait_cqe()?;                 // poll the CQ
//! ```
//!
//! A process has one Ring API context, mapped at
//! `abi::layout::USER_RING_CONTEXT_BASE` with the io_uring layout, so this
//! is a thin layer over [`crate::uring::IoUring`] (which also drives it for
//! `AsyncContext::new_ring_api`). What it adds is the SQPOLL protocol:
//! [`Ring::submit`] publishes the tail, fences, and calls `ring_enter` only
//! when the poller said it sleeps (`NEED_WAKEUP`), counting those calls
//! ([`Ring::wakeups`]); [`Ring::wait_cqe`] polls the CQ, giving the CPU
//! away while it is empty so that the poller (on the same CPU) can run.
//! With more than one CPU the poller may be running on another, and then a
//! yield is only a detour through the kernel: it spins first
//! ([`Ring::relax`]).
//!
//! What needs `unsafe`: as for [`crate::uring::IoUring::push_sqe`], an SQE
//! names memory the kernel uses until its completion; [`Ring::push_sqe`]
//! passes that contract on, and is the module's only unsafe code (the
//! only item here allowed it).

use crate::sys;
use crate::uring;
use abi::errno::Errno;
use abi::io_uring::{Cqe, IoVec, Sqe};
use abi::ring_api::{enter_flags, setup_flags, RingSetupParams};

/// Entries of the context [`Ring::setup`] creates.
pub const DEFAULT_ENTRIES: u32 = 256;

/// Yields [`Ring::wait_cqe`] spends polling an empty CQ before it sleeps in
/// the kernel (a completion that takes that long is waiting for a timer or
/// a file, not for the poller).
const POLL_YIELDS: u32 = 64;

/// Empty polls of the CQ between two yields when the machine has more than
/// one CPU: about 5 us under TCG, longer than an SQPOLL poller on another
/// CPU takes for a batch of 32 NOPs.
const SPIN_POLLS: u32 = 1024;

/// Empty polls between two `spin_loop` hints. Under QEMU's TCG a PAUSE is
/// no hint but an exit from the translated code through QEMU's global lock
/// (about 115 ns, measured): hinting on every poll made a spinning program
/// slower to see its CQE than one that yields.
const POLLS_PER_PAUSE: u32 = 256;

/// The process's Ring API context.
pub struct Ring {
    ring: uring::IoUring,
    params: RingSetupParams,
    wakeups: u64,
    spin_polls: u32,
}

impl Ring {
    /// `ring_setup` with [`DEFAULT_ENTRIES`] entries, SQPOLL or not, and
    /// the default poller idle time.
    pub fn setup(sqpoll: bool) -> Result<Ring, Errno> {
        Ring::setup_with(RingSetupParams {
            sq_entries: DEFAULT_ENTRIES,
            flags: if sqpoll { setup_flags::SQPOLL } else { 0 },
            ..RingSetupParams::default()
        })
    }

    /// `ring_setup` with the caller's params (entries, CQSIZE, idle time,
    /// CPU).
    pub fn setup_with(params: RingSetupParams) -> Result<Ring, Errno> {
        let (ring, params) = uring::IoUring::setup_ring_api(params)?;
        let cpus = sys::sysinfo().map_or(1, |info| info.cpus);
        Ok(Ring {
            ring,
            params,
            wakeups: 0,
            spin_polls: if cpus > 1 { SPIN_POLLS } else { 0 },
        })
    }

    /// The params as the kernel filled them in (sizes, idle time, the
    /// poller's task id, the context address).
    pub fn params(&self) -> &RingSetupParams {
        &self.params
    }

    /// Whether a kernel poller consumes the SQ.
    pub fn sqpoll(&self) -> bool {
        self.ring.sqpoll()
    }

    /// The raw ring underneath (header words, counters).
    pub fn raw(&self) -> &uring::IoUring {
        &self.ring
    }

    /// The raw ring underneath, mutably.
    pub fn raw_mut(&mut self) -> &mut uring::IoUring {
        &mut self.ring
    }

    /// Writes `sqe` into the next free slot; it reaches the kernel with
    /// [`Ring::submit`]. False when the SQ is full.
    ///
    /// # Safety
    ///
    /// As for [`crate::uring::IoUring::push_sqe`].
    #[allow(unsafe_code)] // passes `IoUring::push_sqe`'s contract on
    pub unsafe fn push_sqe(&mut self, sqe: &Sqe) -> bool {
        // SAFETY: passed on to the caller.
        unsafe { self.ring.push_sqe(sqe) }
    }

    /// A run of pushes with the SQ bookkeeping in locals
    /// ([`crate::uring::IoUring::sq_batch`]); drop it before
    /// [`Ring::submit`].
    pub fn sq_batch(&mut self) -> uring::SqBatch<'_> {
        self.ring.sq_batch()
    }

    /// Free SQ slots.
    pub fn sq_space(&self) -> u32 {
        self.ring.sq_space()
    }

    /// Publishes what was pushed. Without SQPOLL rings the doorbell and
    /// returns how many SQEs the kernel consumed. With SQPOLL makes no
    /// syscall unless the poller sleeps (`NEED_WAKEUP`), then rings to wake
    /// it; returns 0 (the poller consumes them).
    pub fn submit(&mut self) -> Result<u32, Errno> {
        if !self.ring.sqpoll() {
            self.ring.publish();
            return uring::ring_enter(0, 0);
        }
        if self.ring.publish_and_check_wakeup() {
            self.wakeups += 1;
            uring::ring_enter(enter_flags::SQ_WAKEUP, 0)?;
        }
        Ok(0)
    }

    /// Ends the context now (`ring_register(CONTEXT_CLOSE)`): the poller
    /// stops, pending work is dropped and the memory unmapped; a new
    /// [`Ring::setup`] may follow. Dropping the `Ring` does the same,
    /// ignoring errors.
    pub fn close(self) -> Result<(), Errno> {
        self.ring.close()
    }

    /// `ring_enter(flags, min_complete)` itself.
    pub fn doorbell(&mut self, flags: u32, min_complete: u32) -> Result<u32, Errno> {
        uring::ring_enter(flags, min_complete)
    }

    /// Submits, then sleeps in the kernel until `n` completions are ready
    /// (`GETEVENTS`). Returns how many are ready.
    pub fn submit_and_wait(&mut self, n: u32) -> Result<u32, Errno> {
        self.ring.publish();
        uring::ring_enter(enter_flags::GETEVENTS, n)?;
        Ok(self.ring.cq_ready())
    }

    /// Calls of `ring_enter` [`Ring::submit`] made because the poller
    /// slept.
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// What to do after the `empty`-th poll in a row found the CQ empty:
    /// spin (a `spin_loop` hint every [`POLLS_PER_PAUSE`] polls) while a
    /// CPU may be running the poller, yield the CPU once [`SPIN_POLLS`]
    /// polls were empty (at once on one CPU, where the poller runs only
    /// when the program yields) and start counting again. Returns whether
    /// it yielded.
    pub fn relax(&self, empty: &mut u32) -> Result<bool, Errno> {
        if *empty < self.spin_polls {
            *empty += 1;
            if empty.is_multiple_of(POLLS_PER_PAUSE) {
                core::hint::spin_loop();
            }
            return Ok(false);
        }
        *empty = 0;
        sys::yield_now()?;
        Ok(true)
    }

    /// Whether the poller says it sleeps.
    pub fn need_wakeup(&self) -> bool {
        self.ring.sq_flags() & abi::io_uring::sq_flags::NEED_WAKEUP != 0
    }

    /// CQEs ready.
    pub fn cq_ready(&self) -> u32 {
        self.ring.cq_ready()
    }

    /// The oldest CQE, consumed; `None` if the CQ is empty.
    pub fn pop_cqe(&mut self) -> Option<Cqe> {
        self.ring.pop_cqe()
    }

    /// The next CQE: polls the CQ, spinning and yielding the CPU while it
    /// is empty ([`Ring::relax`]); after a while (or at once without
    /// SQPOLL) sleeps in the kernel for it instead. Overflowed CQEs are
    /// fetched as needed.
    pub fn wait_cqe(&mut self) -> Result<Cqe, Errno> {
        let mut yields = if self.ring.sqpoll() { POLL_YIELDS } else { 0 };
        let mut empty = 0;
        loop {
            if let Some(cqe) = self.ring.pop_cqe() {
                return Ok(cqe);
            }
            if yields == 0 {
                uring::ring_enter(enter_flags::GETEVENTS, 1)?;
            } else if self.relax(&mut empty)? {
                yields -= 1;
            }
        }
    }

    /// `REGISTER_BUFFERS` (see [`crate::uring::IoUring::register_buffers`]).
    pub fn register_buffers(&self, iovecs: &[IoVec]) -> Result<(), Errno> {
        self.ring.register_buffers(iovecs)
    }

    /// `REGISTER_FILES` (`-1` = empty slot).
    pub fn register_files(&self, fds: &[i32]) -> Result<(), Errno> {
        self.ring.register_files(fds)
    }

    /// The opcodes the kernel reports as supported, ascending.
    pub fn probe(&self) -> Result<alloc::vec::Vec<u8>, Errno> {
        self.ring.probe().map(|report| report.supported())
    }
}
