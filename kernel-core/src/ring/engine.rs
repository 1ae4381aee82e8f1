//! [`RingEngine`]: the per-ring state machine both ring backends run.
//!
//! It consumes SQEs from the shared SQ, preps and issues them through the
//! op table, and posts CQEs to the shared CQ, with Linux's semantics for
//! links (`IO_LINK`, `IO_HARDLINK`), `IO_DRAIN`, `CQE_SKIP_SUCCESS`, CQ
//! overflow, timeouts (TIMEOUT, LINK_TIMEOUT), cancellation and registered
//! buffers and files. The backend decides when to call it and holds the
//! ring's lock while it does; the engine never blocks.
//!
//! # Invariants
//! - The kernel's SQ head and CQ tail live here and are never re-read from
//!   shared memory. From shared memory the engine reads, once per use: SQ
//!   tail, SQ array entries, SQEs (copied whole before anything looks at
//!   them) and CQ head. Whatever those hold, the engine does bounded work:
//!   one submit consumes at most `sq_entries` SQEs, a nonsense CQ head makes
//!   the CQ count as full.
//! - Completions are not dropped: a CQE that does not fit goes to the
//!   overflow list, and overflowed CQEs reach the CQ in order before any
//!   newer CQE. `submit` refuses (`EBUSY`) while [`OVERFLOW_MAX`] CQEs wait.
//!   The one exception is Linux's: if the overflow list cannot grow (the
//!   ring memory quota or the heap says no), the CQE is dropped and counted
//!   in the CQ's overflow word and in [`RingStats::lost`].
//! - Every consumed SQE ends in exactly one of: dropped (bad SQ array
//!   index), completed (a CQE, or none when `CQE_SKIP_SUCCESS` or a failed
//!   chain hides it), pending (counted by [`RingEngine::pending_ops`],
//!   bounded by [`MAX_PENDING`]; past it an SQE that would have to wait
//!   completes with `-EBUSY`), or discarded by `teardown`. [`RingStats`]
//!   counts each, so
//!   `consumed == dropped + posted + skipped + discarded + pending_ops()`.
//! - Memory the engine holds for its user (pending ops, waiting chain
//!   members, overflowed CQEs, the chain being assembled, registered
//!   tables) is charged to a [`Quota`] (by default the kernel-wide
//!   [`RING_MEMORY`]) before it is allocated, and allocated fallibly; when
//!   either says no, the SQE completes with `-ENOMEM`. Everything charged
//!   is returned when it is freed, and all of it when the engine drops.
//! - No heap allocation on the path of a lone synchronous op that completes
//!   into a CQ with room.
//! - No recursion: completing a pending op only queues the rest of its
//!   chain; one loop (`settle`) runs queued chains, count-based timeouts and
//!   drained SQEs until nothing is left to do.
//!
//! # Submission
//! As Linux's `io_submit_sqes`: every SQE is prepped (the flags, `ioprio`,
//! `personality` and the op's own checks, [`ops::prep_sqe`]) before it is
//! issued, and a link chain is assembled whole, every member prepped,
//! before any member issues. An SQE without links that fails prep
//! completes with its error and ends the batch: `submit` returns the SQEs
//! taken so far, the failed one included, and the rest stay in the SQ. A
//! chain with a member that fails prep completes whole without issuing:
//! the failed members with their errors, the others with `-ECANCELED`;
//! if its last member is the one that failed, the batch ends after it. An
//! out-of-range SQ array entry is dropped (counted in the SQ's dropped
//! word) and ends the batch without being counted.
//!
//! # Chains
//! A chain is a run of SQEs each but the last carrying `IO_LINK` or
//! `IO_HARDLINK`, consumed in one `submit` (a chain still open at the end of
//! the batch ends there). Members issue in order. A member that fails
//! (`res < 0`, or a short transfer) with `IO_LINK` cancels the rest
//! (`-ECANCELED` each); with `IO_HARDLINK` the chain goes on. A member that
//! stays pending (TIMEOUT) holds the rest of its chain until it completes.
//! A LINK_TIMEOUT directly after a pending member arms a timer on it; after
//! a member that completed at once it completes with `-ECANCELED`.
//!
//! # Which CQEs `CQE_SKIP_SUCCESS` hides
//! As Linux 6.1 (liburing's `test/skip-cqe.c`): a member's own success is
//! hidden, its failure never is. When a member with the flag fails and its
//! chain breaks, the members it cancels post nothing either, whatever their
//! own flags; when a member without it fails, they all post `-ECANCELED`,
//! whatever their own flags. A chain that fails prep counts as failed by
//! its first member. A LINK_TIMEOUT's own completion (`-ETIME` when it
//! fires, `-ECANCELED` when its target completes first) is hidden by its
//! own flag.
//!
//! # Drain
//! A chain whose first SQE has `IO_DRAIN` waits until every earlier SQE has
//! completed, and the chain after it waits until the drained one has (an
//! `IO_DRAIN` on a later member only has this second effect: its chain
//! already started). While any chain waits, later chains queue behind it.
//! A chain that failed prep completes at once, drain or not (Linux).
//!
//! # Where this differs from Linux 6.1
//! - Bounds Linux leaves to the memory cgroup: [`MAX_PENDING`] waiting SQEs
//!   per ring (`-EBUSY` past it), [`OVERFLOW_MAX`] overflowed CQEs (enter
//!   refuses with `EBUSY`), and the [`RING_MEMORY`] quota (`-ENOMEM`). A CQE
//!   dropped for lack of memory is counted as on Linux, but enter does not
//!   report `EBADR` for it.
//! - `IOSQE_ASYNC` is accepted and the SQE issued inline (there are no
//!   worker threads); `BUFFER_SELECT` is refused with `-EINVAL` (no
//!   provided buffers).
//! - `IO_DRAIN` keeps working after a `CQE_SKIP_SUCCESS` (Linux refuses
//!   the drain with `-EOPNOTSUPP` from then on).
//! - An `RT` I/O priority is allowed (there is no privilege model) and no
//!   priority has an effect.
//! - NOP refuses `op_flags` (as kernels after 6.1 do); a timespec with
//!   `nsec >= 1e9` is `-EINVAL`.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem::size_of;

use abi::errno::{
    Errno, EBUSY, ECANCELED, EFAULT, EINVAL, ENOENT, ENOMEM, ENXIO, EOPNOTSUPP, EOVERFLOW, ETIME,
};
use abi::io_uring::{
    header, op, register as reg, ring_layout, sq_flags, sqe_flags, Cqe, Probe, ProbeOp, Sqe,
};

use super::env::{FileRef, IoEnv, IoTarget};
use super::mailbox::{IoMailbox, IoResult};
use super::ops::{self, cqe_res, Issue, IssueCtx, Lookup, OpCaps, OpDef, PrepCtx, Prepared};
use super::shared::{BatchView, SharedRing};
use crate::quota::Quota;

/// Most CQEs the overflow list holds before `submit` refuses with `EBUSY`.
pub const OVERFLOW_MAX: usize = 4096;
/// Most SQEs that may wait in the engine (pending timers, chain members
/// behind them, drained SQEs); past it, an SQE that would wait gets
/// `-EBUSY`.
pub const MAX_PENDING: usize = 4096;

/// Memory every ring engine charges, unless made with
/// [`RingEngine::with_quota`]. Unlimited until the kernel sets a limit at
/// boot, so that all rings together cannot take the kernel heap.
pub static RING_MEMORY: Quota = Quota::new(usize::MAX);

/// Largest ring the engine runs (the shared layout's limit).
const MAX_ENTRIES: u32 = ring_layout::MAX_SQ_ENTRIES;

const LINK_FLAGS: u8 = sqe_flags::IO_LINK | sqe_flags::IO_HARDLINK;
const SKIP: u8 = sqe_flags::CQE_SKIP_SUCCESS;

/// Bytes charged per pending op: the op and the room reserved for it in
/// `ready` and in the `due` scratch list.
const COST_PENDING: usize = size_of::<PendingOp>() + size_of::<Ready>() + size_of::<(u64, u64)>();
/// Bytes charged per SQE waiting behind a pending op or held by drain.
const COST_MEMBER: usize = size_of::<Deferred>();
/// Bytes charged per overflowed CQE.
const COST_CQE: usize = size_of::<Cqe>();
/// Bytes charged per registered file, for the kernel's reference to it.
const COST_PINNED_FILE: usize = 128;

/// Counters of one ring, for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// SQ entries consumed (the SQ head moved past them), dropped ones too.
    pub consumed: u64,
    /// SQ entries dropped for an out-of-range SQ array index.
    pub dropped: u64,
    /// CQEs posted, into the CQ or the overflow list (or lost).
    pub posted: u64,
    /// Completions not posted: successes with `CQE_SKIP_SUCCESS`, and the
    /// members of a broken chain that Linux's rules hide.
    pub skipped: u64,
    /// CQEs that went through the overflow list.
    pub overflowed: u64,
    /// CQEs posted while the overflow list could not grow, and so dropped
    /// (counted in `posted` too, and in the CQ's overflow word).
    pub lost: u64,
    /// Pending SQEs `teardown` dropped without a CQE.
    pub discarded: u64,
}

/// An SQE taken from the SQ, prepped, on its way to issue.
#[derive(Clone, Copy, Debug)]
struct Member {
    sqe: Sqe,
    /// What its prep found.
    prepared: Prepared,
}

/// A member of the chain being assembled, with its prep's verdict.
#[derive(Clone, Copy, Debug)]
struct Staged {
    member: Member,
    error: Option<Errno>,
}

#[derive(Clone, Copy, Debug)]
struct LinkTimer {
    user_data: u64,
    flags: u8,
    deadline: u64,
}

/// An op waiting: a TIMEOUT for its deadline or count, or started I/O for
/// its result, with what waits behind it.
#[derive(Debug)]
struct PendingOp {
    id: u64,
    user_data: u64,
    flags: u8,
    deadline: Option<u64>,
    count_target: Option<u64>,
    /// Started I/O (its token is `id`): the bytes asked for. It cannot be
    /// cancelled; only its result completes it.
    io_wanted: Option<u32>,
    link_timer: Option<LinkTimer>,
    /// The rest of its chain.
    rest: Vec<Member>,
}

/// An SQE held back by drain.
#[derive(Debug)]
struct Deferred {
    member: Member,
    /// First member of its chain.
    chain_start: bool,
    /// (Chain starts only) waits until nothing else is pending.
    needs_drain: bool,
}

/// The rest of a chain whose pending member completed, waiting to run.
#[derive(Debug)]
struct Ready {
    origin: u64,
    state: Chain,
    members: Vec<Member>,
}

/// Where a chain stands, i.e. what happens to its next member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// No chain open: the next SQE starts one.
    Idle,
    /// The next member issues now.
    Running,
    /// The chain broke: the next member completes with `-ECANCELED`, hidden
    /// if `quiet` (the member that broke it had `CQE_SKIP_SUCCESS`).
    /// `after_failure`: the next member comes directly after that one (a
    /// LINK_TIMEOUT there follows its own flag).
    Cancelling { quiet: bool, after_failure: bool },
    /// A member is pending (id): the next one waits behind it.
    Blocked(u64),
    /// The chain is held back by drain: the next member queues with it.
    Deferred,
}

impl Chain {
    /// The chain after `sqe`, which failed with its result posted, broke it.
    fn broken_by(sqe: &Sqe) -> Chain {
        Chain::Cancelling {
            quiet: sqe.flags & SKIP != 0,
            after_failure: true,
        }
    }
}

/// The state of one ring.
#[derive(Debug)]
pub struct RingEngine {
    sq_entries: u32,
    sq_mask: u32,
    cq_entries: u32,
    cq_mask: u32,
    /// The kernel's SQ head: next SQ position to consume.
    sq_head: u32,
    /// The kernel's CQ tail: next CQ position to fill.
    cq_tail: u32,
    /// CQ slots known to be free (a lower bound: user space only ever frees
    /// more); the user's head is re-read only when this runs out. Published
    /// tails are stored once per call, not once per CQE.
    cq_room: u32,
    overflow: VecDeque<Cqe>,
    /// Pending TIMEOUTs, in the order they were armed.
    pending: Vec<PendingOp>,
    next_id: u64,
    /// Armed LINK_TIMEOUTs (they live in their target's `PendingOp`).
    link_timers: usize,
    deferred: VecDeque<Deferred>,
    /// Chains whose pending member completed; room for one per pending op
    /// is reserved when it is armed, so completing never allocates.
    ready: VecDeque<Ready>,
    /// Scratch for `expire`, with room for every pending op (reserved when
    /// it is armed).
    due: Vec<(u64, u64)>,
    /// Members in `rest` lists, `deferred` and `ready`.
    waiting: usize,
    /// The chain the SQ stream is adding to.
    open: Chain,
    /// The next chain must wait for everything before it.
    drain_next: bool,
    /// The chain being assembled in this `submit` (room for a ring's worth
    /// is reserved, and charged, the first time a chain comes).
    staged: Vec<Staged>,
    /// A chain whose assembly failed for lack of memory is being consumed:
    /// its remaining members complete with `-ECANCELED`, hidden if `true`.
    lost_chain: Option<bool>,
    /// CQEs posted that count for count-based timeouts.
    cq_seq: u64,
    /// Smallest `count_target` of the pending ops (`u64::MAX`: none).
    next_count_target: u64,
    /// A count target may have been reached.
    count_due: bool,
    buffers: Vec<Option<(u64, u64)>>,
    files: Vec<Option<u64>>,
    stats: RingStats,
    /// Where the machine reports the I/O this ring's ops started.
    mailbox: Arc<IoMailbox>,
    /// Scratch for `reap_io`, with room for every I/O in flight.
    reaped: Vec<(u64, IoResult)>,
    /// Pending ops that are started I/O.
    io_pending: usize,
    /// Reap by polling (`IORING_SETUP_IOPOLL`).
    iopoll: bool,
    /// The CQ is read on another CPU while batches post (SQPOLL with a CPU
    /// of its own): see [`RingEngine::set_cq_remote`].
    cq_remote: bool,
    /// Where memory held for the ring's user is charged.
    quota: &'static Quota,
    /// Bytes charged to `quota` now.
    charged: usize,
    /// Whether only plain submission can be needed
    /// ([`RingEngine::is_calm`]): one test for the submission fast path
    /// and the backends' enter instead of nine. Recomputed
    /// ([`RingEngine::recheck_calm`]) at the end of every call that can
    /// change what it sums up (the general submission path, reaping I/O,
    /// timers, overflow, teardown); the fast paths change none of it.
    calm: bool,
}

impl Drop for RingEngine {
    fn drop(&mut self) {
        self.quota.uncharge(self.charged);
    }
}

/// Whether a completion must be counted for a count-based timeout.
#[inline(always)]
fn counts_pending(next_count_target: u64, counts: bool) -> bool {
    counts && next_count_target != u64::MAX
}

/// Whether `sqe`'s completion counts for count-based timeouts (a TIMEOUT's
/// own does not, as on Linux).
#[inline(always)]
fn counts(sqe: &Sqe) -> bool {
    sqe.opcode != op::TIMEOUT
}

/// `n` made a power of two in `1..=MAX_ENTRIES`.
fn ring_size(n: u32) -> u32 {
    n.clamp(1, MAX_ENTRIES).next_power_of_two()
}

fn is_link_timer(sqe: &Sqe) -> bool {
    matches!(ops::lookup(sqe.opcode), Lookup::Known(def) if def.caps.contains(OpCaps::LINK_TIMER))
}

impl RingEngine {
    /// An engine for `sq_entries` SQ and `cq_entries` CQ entries: powers of
    /// two up to 256 (other values are rounded up and clamped), charging
    /// [`RING_MEMORY`].
    pub fn new(sq_entries: u32, cq_entries: u32) -> Self {
        Self::with_quota(sq_entries, cq_entries, &RING_MEMORY)
    }

    /// Like [`RingEngine::new`], charging `quota`.
    pub fn with_quota(sq_entries: u32, cq_entries: u32, quota: &'static Quota) -> Self {
        let sq_entries = ring_size(sq_entries);
        let cq_entries = ring_size(cq_entries);
        Self {
            sq_entries,
            sq_mask: sq_entries - 1,
            cq_entries,
            cq_mask: cq_entries - 1,
            sq_head: 0,
            cq_tail: 0,
            cq_room: 0,
            overflow: VecDeque::new(),
            pending: Vec::new(),
            next_id: 0,
            link_timers: 0,
            deferred: VecDeque::new(),
            ready: VecDeque::new(),
            due: Vec::new(),
            waiting: 0,
            open: Chain::Idle,
            drain_next: false,
            staged: Vec::new(),
            lost_chain: None,
            cq_seq: 0,
            next_count_target: u64::MAX,
            count_due: false,
            buffers: Vec::new(),
            files: Vec::new(),
            stats: RingStats::default(),
            mailbox: Arc::new(IoMailbox::new()),
            reaped: Vec::new(),
            io_pending: 0,
            iopoll: false,
            cq_remote: false,
            quota,
            charged: 0,
            calm: true,
        }
    }

    /// Whether nothing but plain submission can be needed: no CQE waits in
    /// the overflow list, no op or timer is pending, no count-based
    /// timeout waits, and nothing is open, held back or due
    /// ([`RingEngine::quiet`]). While it holds, an enter need not flush,
    /// reap timers or look for deadlines, and the fast paths may run.
    #[inline(always)]
    pub fn is_calm(&self) -> bool {
        debug_assert_eq!(self.calm, self.sum_calm(), "calm not rechecked");
        self.calm
    }

    /// What [`RingEngine::is_calm`] sums up, from the fields.
    fn sum_calm(&self) -> bool {
        self.overflow.is_empty()
            && self.pending.is_empty()
            && self.next_count_target == u64::MAX
            && self.quiet()
    }

    /// Brings the summary [`RingEngine::is_calm`] reads up to date.
    #[inline(always)]
    fn recheck_calm(&mut self) {
        self.calm = self.sum_calm();
    }

    /// The mailbox where the machine posts this ring's finished I/O.
    pub fn mailbox(&self) -> &Arc<IoMailbox> {
        &self.mailbox
    }

    /// Makes the ring reap its I/O by polling (`IORING_SETUP_IOPOLL`): I/O
    /// it starts asks for queues that do not interrupt.
    pub fn set_iopoll(&mut self, on: bool) {
        self.iopoll = on;
    }

    /// Whether the ring reaps by polling.
    pub fn iopoll(&self) -> bool {
        self.iopoll
    }

    /// Says that the program reading this ring's CQ runs on another CPU
    /// while batches post (an SQPOLL poller with CPUs to spare). A batch of
    /// the fast path then first stores once into each CQE line it is about
    /// to fill, so that the lines, which sit in the reader's cache since it
    /// last reaped them, move to this CPU together instead of one after the
    /// other behind the batch's CQE stores. The CQEs are the same; with the
    /// reader on this CPU it costs a few instructions a batch for nothing.
    /// Measured with the two-CPU `sqpoll_b32` bench when the host's CPUs
    /// are far apart (docs/io_uring.md): the NOP loop of a batch of 32
    /// took 1 000-1 400 fewer host TSC ticks (about a quarter).
    pub fn set_cq_remote(&mut self, on: bool) {
        self.cq_remote = on;
    }

    /// Started I/O not finished yet.
    pub fn io_in_flight(&self) -> usize {
        self.io_pending
    }

    /// Posts the results of finished I/O from the mailbox (completing each
    /// op, continuing its chain, releasing drains) and publishes the CQ
    /// tail. Returns whether any CQE was posted.
    #[inline]
    pub fn reap_io(&mut self, shared: &SharedRing, env: &mut dyn IoEnv) -> bool {
        // Tested in the caller's frame: a poller asks on every pass.
        if !self.mailbox.has_posts() {
            return false;
        }
        self.reap_posts(shared, env)
    }

    /// [`RingEngine::reap_io`] with results in the mailbox.
    #[inline(never)]
    fn reap_posts(&mut self, shared: &SharedRing, env: &mut dyn IoEnv) -> bool {
        let before = self.stats.posted;
        let mut reaped = core::mem::take(&mut self.reaped);
        self.mailbox.take(&mut reaped);
        for (token, result) in reaped.drain(..) {
            let Some(i) = self
                .pending
                .iter()
                .position(|p| p.id == token && p.io_wanted.is_some())
            else {
                // Not ours (the ring was torn down and rebuilt): nothing to do.
                continue;
            };
            let wanted = self.pending[i].io_wanted.unwrap_or(0);
            self.io_pending -= 1;
            let (res, failed) = match result {
                // A descriptor or 0 from a handed-off path op.
                Ok(n) if wanted == ops::PENDING_VALUE => (cqe_res(Ok(n)), false),
                Ok(n) if n < wanted => (cqe_res(Ok(n)), true),
                Ok(n) => (cqe_res(Ok(n.min(wanted))), false),
                Err(errno) => (-errno, true),
            };
            self.finish_pending_as(shared, i, res, failed, -ECANCELED);
        }
        self.reaped = reaped;
        self.settle(shared, env);
        self.recheck_calm();
        shared.store_cq_tail(self.cq_tail);
        self.stats.posted != before
    }

    /// SQ entries.
    pub fn sq_entries(&self) -> u32 {
        self.sq_entries
    }

    /// CQ entries.
    pub fn cq_entries(&self) -> u32 {
        self.cq_entries
    }

    /// The ring's counters.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Bytes this engine has charged to its quota.
    pub fn memory(&self) -> usize {
        self.charged
    }

    /// Writes the headers of a new ring: mask and entries, heads and tails
    /// at the engine's positions (0 for a new engine), flags and counters
    /// zero.
    pub fn init_shared(&self, shared: &SharedRing) {
        // Both header pages have the same words; only the values differ.
        let words = |position: u32, mask: u32, entries: u32| {
            [
                (header::HEAD, position),
                (header::TAIL, position),
                (header::MASK, mask),
                (header::ENTRIES, entries),
                (header::FLAGS, 0),
                (header::DROPPED, 0),
                (header::OVERFLOW, 0),
            ]
        };
        for (word, value) in words(self.sq_head, self.sq_mask, self.sq_entries) {
            shared.set_sq_header(word, value);
        }
        for (word, value) in words(self.cq_tail, self.cq_mask, self.cq_entries) {
            shared.set_cq_header(word, value);
        }
    }

    /// Starts the engine's SQ head and CQ tail at the given positions (to
    /// test wrap-around); call before `init_shared`.
    #[cfg(test)]
    pub(crate) fn start_at(&mut self, sq_head: u32, cq_tail: u32) {
        self.sq_head = sq_head;
        self.cq_tail = cq_tail;
    }

    /// Consumes up to `to_submit` SQEs from the SQ (between the kernel's head
    /// and the tail as read once), preps and issues them, as Linux's
    /// `io_submit_sqes` (see "Submission" above): the batch ends early after
    /// an SQE that fails prep (unless a later member of its chain is what
    /// ends the chain) and at a dropped SQ entry. Returns the SQEs taken,
    /// not counting a dropped entry. `Err(EBUSY)`, consuming nothing, if
    /// [`OVERFLOW_MAX`] CQEs wait in the overflow list. Inlined into the
    /// backends' enter: its own frame would cost a batch of one more than
    /// its checks do.
    #[inline]
    pub fn submit(
        &mut self,
        shared: &SharedRing,
        env: &mut dyn IoEnv,
        to_submit: u32,
    ) -> Result<u32, Errno> {
        if !self.is_calm() {
            return self.submit_slow(shared, env, to_submit);
        }
        Ok(self.submit_calm(shared, env, to_submit))
    }

    /// [`RingEngine::submit`] for an engine known to be calm
    /// ([`RingEngine::is_calm`]: a backend's enter tested it already), which
    /// cannot fail: the batch goes the fast way, what does not fit it the
    /// general way.
    #[inline(always)]
    pub fn submit_calm(&mut self, shared: &SharedRing, env: &mut dyn IoEnv, to_submit: u32) -> u32 {
        debug_assert!(self.is_calm());
        let n = self.sq_pending(shared).min(to_submit);
        if n == 1 {
            return self.submit_one(shared, env);
        }
        self.submit_fast(shared, env, n)
    }

    /// [`RingEngine::submit`] when the engine is not calm: CQEs in the
    /// overflow list are flushed first (`EBUSY` if they fill it), and the
    /// batch takes the general path.
    #[inline(never)]
    fn submit_slow(
        &mut self,
        shared: &SharedRing,
        env: &mut dyn IoEnv,
        to_submit: u32,
    ) -> Result<u32, Errno> {
        if !self.overflow.is_empty() {
            self.flush_overflow(shared);
            if self.overflow.len() >= OVERFLOW_MAX {
                return Err(EBUSY);
            }
        }
        let n = self.sq_pending(shared).min(to_submit);
        Ok(self.submit_rest(shared, env, n, 0))
    }

    /// A batch that may go the fast way ([`RingEngine::fast_lone`]); what
    /// does not goes to [`RingEngine::submit_rest`]. Out of line, so that
    /// [`RingEngine::submit`] stays small for a batch of one.
    #[inline(never)]
    fn submit_fast(&mut self, shared: &SharedRing, env: &mut dyn IoEnv, n: u32) -> u32 {
        let fast = self.fast_lone(shared, env, n);
        // Calm before, and the fast way starts nothing that waits.
        debug_assert!(self.pending.is_empty());
        if fast == n {
            // The whole batch went the fast way and no timer can be
            // due: the end of `submit_rest`, with nothing to settle.
            self.stats.consumed += u64::from(n);
            shared.store_sq_head(self.sq_head);
            shared.store_cq_tail(self.cq_tail);
            return n;
        }
        self.submit_rest(shared, env, n, fast)
    }

    /// [`RingEngine::submit_fast`] for a batch of one SQE (`io_uring_enter`
    /// with `to_submit` 1, the common call of a program that submits as it
    /// goes): the same checks and work as [`RingEngine::fast_lone`] for one
    /// plain NOP, READ or WRITE, without setting up a batch. The SQ array
    /// entry and every SQE word looked at are loaded once and checked on
    /// the copy; anything else, or a full CQ, goes to the general path,
    /// which reads the SQE again, nothing consumed.
    #[inline(always)]
    fn submit_one(&mut self, shared: &SharedRing, env: &mut dyn IoEnv) -> u32 {
        use core::sync::atomic::Ordering::Relaxed;
        let index = shared.sq_array(self.sq_head & self.sq_mask);
        let words = if index < self.sq_entries {
            shared.sqe_words(index)
        } else {
            None
        };
        let Some(words) = words else {
            return self.submit_rest(shared, env, 1, 0);
        };
        if self.cq_room == 0 {
            self.cq_room = self.cq_space_at(shared, self.cq_tail);
            if self.cq_room == 0 {
                return self.submit_rest(shared, env, 1, 0);
            }
        }
        let w0 = words[0].load(Relaxed);
        let w3 = words[3].load(Relaxed);
        let w5 = words[5].load(Relaxed);
        if !is_plain_nop(w0, w3, w5) {
            return self.submit_one_rw(shared, env, words, w0, w3, w5);
        }
        self.post_one(shared, words[4].load(Relaxed), 0)
    }

    /// [`RingEngine::submit_one`] for an SQE that is not a plain NOP (its
    /// words 0, 3 and 5 as read there): a READ or WRITE that [`fast_rw`]
    /// takes, else the general path. Out of line, so that a lone NOP saves
    /// no registers for it.
    #[inline(never)]
    fn submit_one_rw(
        &mut self,
        shared: &SharedRing,
        env: &mut dyn IoEnv,
        words: &[core::sync::atomic::AtomicU64; super::shared::SQE_WORDS],
        w0: u64,
        w3: u64,
        w5: u64,
    ) -> u32 {
        use core::sync::atomic::Ordering::Relaxed;
        match fast_rw(env, words, w0, w3, w5) {
            Some(res) => self.post_one(shared, words[4].load(Relaxed), res),
            None => self.submit_rest(shared, env, 1, 0),
        }
    }

    /// The end of [`RingEngine::submit_one`]: posts the SQE's CQE (room was
    /// checked), consumes the SQE and ends the batch (the engine was calm:
    /// no timer can be due).
    #[inline(always)]
    fn post_one(&mut self, shared: &SharedRing, user_data: u64, res: i32) -> u32 {
        shared.write_cqe(
            self.cq_tail & self.cq_mask,
            &Cqe {
                user_data,
                res,
                flags: 0,
            },
        );
        self.sq_head = self.sq_head.wrapping_add(1);
        self.cq_tail = self.cq_tail.wrapping_add(1);
        self.cq_room -= 1;
        // Counters of 2^64 events: they do not wrap in practice, and an
        // overflow check per SQE buys nothing.
        self.stats.posted = self.stats.posted.wrapping_add(1);
        // Calm before (no timer can be due), and nothing was started.
        debug_assert!(self.pending.is_empty());
        self.stats.consumed = self.stats.consumed.wrapping_add(1);
        shared.store_sq_head(self.sq_head);
        shared.store_cq_tail(self.cq_tail);
        1
    }

    /// The general path of [`RingEngine::submit`]: consumes SQEs `done..n`
    /// of the batch (the first `done` went the fast way, and were counted
    /// as taken) and ends the batch. Out of line, so that its stack frame
    /// is paid only by batches that need it.
    #[inline(never)]
    fn submit_rest(&mut self, shared: &SharedRing, env: &mut dyn IoEnv, n: u32, done: u32) -> u32 {
        // Whether nothing is open, held back or due; recomputed only after
        // an SQE that may have changed that.
        let mut quiet = self.quiet();
        let mut read = done;
        let mut taken = done;
        // Whether a chain is being assembled (kept here: the lone-SQE path
        // looks at nothing else).
        let mut chain_open = false;
        while read < n {
            let index = shared.sq_array(self.sq_head & self.sq_mask);
            self.sq_head = self.sq_head.wrapping_add(1);
            read += 1;
            let sqe = if index < self.sq_entries {
                shared.read_sqe(index)
            } else {
                None
            };
            let Some(sqe) = sqe else {
                shared.bump_dropped();
                self.stats.dropped += 1;
                break;
            };
            taken += 1;
            if chain_open || sqe.flags & LINK_FLAGS != 0 {
                if self.assemble(shared, env, sqe) {
                    break;
                }
                chain_open = self.assembling();
                quiet = self.quiet();
                continue;
            }
            // A lone SQE: prepped, then issued at once (or queued).
            let prepped = {
                let ctx = PrepCtx {
                    env: &*env,
                    buffers: self.buffers.len(),
                    head: true,
                    after_link_timeout: false,
                };
                ops::prep_sqe(&ctx, &sqe)
            };
            let (def, prepared) = match prepped {
                Ok(prepped) => prepped,
                Err(errno) => {
                    self.fail_lone(shared, &sqe, errno);
                    break;
                }
            };
            if quiet && sqe.flags == 0 {
                // The common case: a lone SQE with nothing open, held back
                // or due; it issues at once, with no chain state.
                let outcome = self.run_op(env, def, &sqe, prepared);
                let res = match outcome {
                    Issue::Done(result) => cqe_res(result),
                    Issue::Short(n) => cqe_res(Ok(n)),
                    outcome => {
                        let member = Member { sqe, prepared };
                        self.open = self.apply(shared, member, outcome);
                        if self.count_due || !self.ready.is_empty() {
                            self.settle(shared, env);
                        }
                        quiet = self.quiet();
                        continue;
                    }
                };
                self.post_plain(shared, sqe.user_data, res, counts(&sqe));
                if self.count_due {
                    self.settle(shared, env);
                    quiet = self.quiet();
                }
            } else {
                self.consume(shared, env, Member { sqe, prepared });
                quiet = self.quiet();
            }
        }
        // A chain still open at the end of the batch ends here.
        if self.assembling() {
            self.end_chain(shared, env);
        }
        self.lost_chain = None;
        self.stats.consumed += u64::from(read);
        // Every SQE of the batch is copied: user space may reuse the slots.
        shared.store_sq_head(self.sq_head);
        self.open = Chain::Idle;
        if !self.pending.is_empty() {
            // Timers that are already due (a zero or past timeout) fire now.
            self.expire(shared, env.now_ns());
            self.settle(shared, env);
        }
        self.recheck_calm();
        shared.store_cq_tail(self.cq_tail);
        taken
    }

    /// Fires expired timeouts (in deadline order) and runs what waited
    /// behind them. Returns whether any CQE was posted.
    pub fn poll_timers(&mut self, shared: &SharedRing, env: &mut dyn IoEnv) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let before = self.stats.posted;
        self.expire(shared, env.now_ns());
        self.settle(shared, env);
        self.recheck_calm();
        shared.store_cq_tail(self.cq_tail);
        self.stats.posted != before
    }

    /// The earliest deadline of a pending timer.
    #[inline(always)]
    pub fn next_deadline(&self) -> Option<u64> {
        if self.pending.is_empty() {
            None
        } else {
            self.earliest_deadline()
        }
    }

    /// [`RingEngine::next_deadline`] with timers pending.
    #[inline(never)]
    fn earliest_deadline(&self) -> Option<u64> {
        self.pending
            .iter()
            .flat_map(|p| [p.deadline, p.link_timer.map(|t| t.deadline)])
            .flatten()
            .min()
    }

    /// Moves overflowed CQEs into the CQ as space allows, oldest first;
    /// clears `CQ_OVERFLOW` in the SQ flags once none are left.
    #[inline(always)]
    pub fn flush_overflow(&mut self, shared: &SharedRing) {
        if !self.overflow.is_empty() {
            self.flush_overflow_list(shared);
        }
    }

    /// [`RingEngine::flush_overflow`] with CQEs in the list.
    #[cold]
    #[inline(never)]
    fn flush_overflow_list(&mut self, shared: &SharedRing) {
        self.cq_room = self.cq_space(shared);
        let n = (self.cq_room as usize).min(self.overflow.len());
        for cqe in self.overflow.drain(..n) {
            shared.write_cqe(self.cq_tail & self.cq_mask, &cqe);
            self.cq_tail = self.cq_tail.wrapping_add(1);
        }
        self.uncharge(n * COST_CQE);
        self.cq_room -= n as u32;
        if n > 0 {
            shared.store_cq_tail(self.cq_tail);
        }
        if self.overflow.is_empty() {
            shared.clear_sq_flags(sq_flags::CQ_OVERFLOW);
            self.overflow = VecDeque::new();
        }
        self.recheck_calm();
    }

    /// CQEs user space can take now: the kernel's tail minus the user's
    /// head, read once; a head that makes no sense counts as a full CQ.
    pub fn cq_ready(&self, shared: &SharedRing) -> u32 {
        self.cq_tail
            .wrapping_sub(shared.cq_head())
            .min(self.cq_entries)
    }

    /// Whether at least `want` CQEs (at most the CQ's size) are ready:
    /// [`RingEngine::cq_ready`] `>= want`, without capping the count (a
    /// head that makes no sense gives a count past the size, enough for
    /// any `want`, as the capped count is).
    #[inline(always)]
    pub fn cq_holds(&self, shared: &SharedRing, want: u32) -> bool {
        debug_assert!(want <= self.cq_entries);
        self.cq_tail.wrapping_sub(shared.cq_head()) >= want
    }

    /// SQEs user space published that are not consumed yet (at most a
    /// ring's worth, whatever the tail says).
    pub fn sq_pending(&self, shared: &SharedRing) -> u32 {
        shared
            .sq_tail()
            .wrapping_sub(self.sq_head)
            .min(self.sq_entries)
    }

    /// SQEs waiting in the engine: pending timers, armed link timers, chain
    /// members behind them and SQEs held by drain.
    pub fn pending_ops(&self) -> usize {
        self.pending.len() + self.link_timers + self.waiting
    }

    /// Drops everything pending (no CQEs), the overflow list, registered
    /// buffers, and unpins registered files. The ring is empty afterwards
    /// and its memory returned to the quota.
    pub fn teardown(&mut self, env: &mut dyn IoEnv) {
        self.stats.discarded += self.pending_ops() as u64;
        self.pending = Vec::new();
        // Started I/O still posts to the mailbox, which outlives this;
        // nothing here waits for it.
        self.io_pending = 0;
        self.deferred = VecDeque::new();
        self.ready = VecDeque::new();
        self.due = Vec::new();
        self.overflow = VecDeque::new();
        self.staged = Vec::new();
        self.lost_chain = None;
        self.link_timers = 0;
        self.waiting = 0;
        self.open = Chain::Idle;
        self.drain_next = false;
        self.next_count_target = u64::MAX;
        self.count_due = false;
        self.unpin_files(env);
        self.buffers = Vec::new();
        self.uncharge(self.charged);
        self.recheck_calm();
    }

    /// Charges `bytes` to the quota.
    fn charge(&mut self, bytes: usize) -> Result<(), Errno> {
        self.quota.try_charge(bytes)?;
        self.charged += bytes;
        Ok(())
    }

    /// Returns `bytes` to the quota.
    fn uncharge(&mut self, bytes: usize) {
        let bytes = bytes.min(self.charged);
        self.charged -= bytes;
        self.quota.uncharge(bytes);
    }

    // ---- Registration ----

    /// `io_uring_register`: `REGISTER_BUFFERS` (`arg` = iovec array of `nr`),
    /// `UNREGISTER_BUFFERS`, `REGISTER_FILES` (`arg` = `nr` `i32` fds, -1 an
    /// empty slot), `UNREGISTER_FILES`, `REGISTER_PROBE` (`arg` = a zeroed
    /// `Probe` header and `nr` `ProbeOp`s, filled in). Returns 0.
    ///
    /// Errors as on Linux: `EBUSY` if already registered, `EINVAL` for a bad
    /// count or non-zero arguments to unregister, `EFAULT` for bad memory
    /// (and for a buffer with an address but length 0), `EBADF` for a bad
    /// fd; unregistering what is not registered is `ENXIO`. The tables are
    /// charged to the ring's quota (`ENOMEM` past it).
    pub fn register(
        &mut self,
        env: &mut dyn IoEnv,
        opcode: u32,
        arg: u64,
        nr: u32,
    ) -> Result<u64, Errno> {
        match opcode {
            reg::REGISTER_BUFFERS => self.register_buffers(env, arg, nr),
            reg::REGISTER_FILES => self.register_files(env, arg, nr),
            reg::UNREGISTER_BUFFERS | reg::UNREGISTER_FILES => {
                // Arguments first, then whether there is anything, as Linux.
                if arg != 0 || nr != 0 {
                    return Err(EINVAL);
                }
                let buffers = opcode == reg::UNREGISTER_BUFFERS;
                let registered = if buffers {
                    !self.buffers.is_empty()
                } else {
                    !self.files.is_empty()
                };
                if !registered {
                    return Err(ENXIO);
                }
                if buffers {
                    let cost = buffers_cost(self.buffers.len());
                    self.buffers = Vec::new();
                    self.uncharge(cost);
                } else {
                    self.unpin_files(env);
                }
                Ok(0)
            }
            reg::REGISTER_PROBE => register_probe(env, arg, nr),
            _ => Err(EINVAL),
        }
    }

    fn register_buffers(&mut self, env: &mut dyn IoEnv, arg: u64, nr: u32) -> Result<u64, Errno> {
        if !self.buffers.is_empty() {
            return Err(EBUSY);
        }
        if nr == 0 || nr > reg::MAX_BUFFERS {
            return Err(EINVAL);
        }
        let table = self.with_charge(buffers_cost(nr as usize), |_| read_buffers(env, arg, nr))?;
        self.buffers = table;
        Ok(0)
    }

    /// Runs `f` with `cost` charged; keeps the charge only if it succeeds.
    fn with_charge<T>(
        &mut self,
        cost: usize,
        f: impl FnOnce(&mut Self) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        self.charge(cost)?;
        let result = f(self);
        if result.is_err() {
            self.uncharge(cost);
        }
        result
    }

    fn register_files(&mut self, env: &mut dyn IoEnv, arg: u64, nr: u32) -> Result<u64, Errno> {
        if !self.files.is_empty() {
            return Err(EBUSY);
        }
        if nr == 0 || nr > reg::MAX_FILES {
            return Err(EINVAL);
        }
        self.charge(files_cost(nr as usize))?;
        let mut table = Vec::new();
        if table.try_reserve_exact(nr as usize).is_err() {
            self.uncharge(files_cost(nr as usize));
            return Err(ENOMEM);
        }
        let result = (|| {
            for i in 0..nr {
                let mut raw = [0u8; 4];
                let at = arg.checked_add(u64::from(i) * 4).ok_or(EFAULT)?;
                env.read_user(at, &mut raw)?;
                let fd = i32::from_le_bytes(raw);
                if fd == -1 {
                    table.push(None);
                } else {
                    table.push(Some(env.pin_file(fd)?));
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.files = table;
                Ok(0)
            }
            Err(errno) => {
                for token in table.into_iter().flatten() {
                    env.unpin_file(token);
                }
                self.uncharge(files_cost(nr as usize));
                Err(errno)
            }
        }
    }

    fn unpin_files(&mut self, env: &mut dyn IoEnv) {
        let cost = files_cost(self.files.len());
        for token in core::mem::take(&mut self.files).into_iter().flatten() {
            env.unpin_file(token);
        }
        self.uncharge(cost);
    }

    // ---- Submission ----

    /// SQEs waiting in the engine (what [`MAX_PENDING`] bounds).
    fn stored(&self) -> usize {
        self.pending_ops()
    }

    /// Whether a chain is being assembled (or the rest of one whose
    /// assembly failed is being consumed).
    #[inline(always)]
    fn assembling(&self) -> bool {
        !self.staged.is_empty() || self.lost_chain.is_some()
    }

    /// Completes a lone SQE that failed prep with its error (Linux's
    /// `io_submit_fail_init`); a drain on it still drains what follows.
    fn fail_lone(&mut self, shared: &SharedRing, sqe: &Sqe, errno: Errno) {
        self.finish_member(shared, sqe, -errno, true);
        if sqe.flags & sqe_flags::IO_DRAIN != 0 {
            self.drain_next = true;
        }
    }

    /// Preps `sqe`, a member of the chain being assembled, and adds it;
    /// the chain is run (or failed) once its last member is in. Returns
    /// whether the batch must end here: the last member failed prep.
    fn assemble(&mut self, shared: &SharedRing, env: &mut dyn IoEnv, sqe: Sqe) -> bool {
        let last = sqe.flags & LINK_FLAGS == 0;
        if let Some(quiet) = self.lost_chain {
            self.complete(shared, sqe.user_data, -ECANCELED, counts(&sqe), quiet);
            if last {
                self.lost_chain = None;
            }
            return false;
        }
        if self.staged.capacity() == 0 && !self.reserve_staging() {
            // No room to assemble the chain: its first member fails with
            // ENOMEM and the rest is cancelled as it comes.
            self.finish_member(shared, &sqe, -ENOMEM, true);
            if !last {
                self.lost_chain = Some(sqe.flags & SKIP != 0);
            }
            return false;
        }
        let ctx = PrepCtx {
            env: &*env,
            buffers: self.buffers.len(),
            head: self.staged.is_empty(),
            after_link_timeout: self
                .staged
                .last()
                .is_some_and(|s| is_link_timer(&s.member.sqe)),
        };
        let (prepared, error) = match ops::prep_sqe(&ctx, &sqe) {
            Ok((_, prepared)) => (prepared, None),
            Err(errno) => (Prepared::Nothing, Some(errno)),
        };
        // Room for a ring's worth was reserved, and a batch is at most that.
        if self.staged.len() < self.staged.capacity() {
            self.staged.push(Staged {
                member: Member { sqe, prepared },
                error,
            });
        } else {
            self.finish_member(shared, &sqe, -ENOMEM, true);
            return false;
        }
        if last {
            self.end_chain(shared, env);
            return error.is_some();
        }
        false
    }

    /// Reserves (and charges) room to assemble a chain of a ring's worth
    /// of SQEs; kept until teardown.
    fn reserve_staging(&mut self) -> bool {
        let entries = at_least_a_page::<Staged>(self.sq_entries as usize);
        let cost = entries * size_of::<Staged>();
        if self.charge(cost).is_err() {
            return false;
        }
        if self.staged.try_reserve_exact(entries).is_err() {
            self.uncharge(cost);
            return false;
        }
        true
    }

    /// Runs the assembled chain, or completes it without issuing anything
    /// if a member failed prep.
    fn end_chain(&mut self, shared: &SharedRing, env: &mut dyn IoEnv) {
        let mut staged = core::mem::take(&mut self.staged);
        if staged.iter().any(|s| s.error.is_some()) {
            self.fail_chain(shared, &staged);
        } else {
            for s in staged.iter() {
                self.consume(shared, env, s.member);
            }
        }
        staged.clear();
        self.staged = staged;
        self.lost_chain = None;
    }

    /// Completes a chain a member of which failed prep, as Linux does: the
    /// first member with its own error or `-ECANCELED` (always posted), the
    /// others with theirs or `-ECANCELED`, hidden if the first member has
    /// `CQE_SKIP_SUCCESS`. A drain on any member drains what follows.
    fn fail_chain(&mut self, shared: &SharedRing, staged: &[Staged]) {
        let Some((head, rest)) = staged.split_first() else {
            return;
        };
        let res = |s: &Staged| s.error.map_or(-ECANCELED, |errno| -errno);
        self.finish_member(shared, &head.member.sqe, res(head), true);
        let quiet = head.member.sqe.flags & SKIP != 0;
        for s in rest {
            let sqe = &s.member.sqe;
            self.complete(shared, sqe.user_data, res(s), counts(sqe), quiet);
        }
        if staged
            .iter()
            .any(|s| s.member.sqe.flags & sqe_flags::IO_DRAIN != 0)
        {
            self.drain_next = true;
        }
    }

    /// Takes one prepped SQE into the open chain.
    fn consume(&mut self, shared: &SharedRing, env: &mut dyn IoEnv, member: Member) {
        let sqe = member.sqe;
        let linked = sqe.flags & LINK_FLAGS != 0;
        let drain = sqe.flags & sqe_flags::IO_DRAIN != 0;
        let state = match self.open {
            Chain::Idle => {
                let needs_drain = drain || self.drain_next;
                self.drain_next = false;
                if !self.deferred.is_empty() || (needs_drain && !self.pending.is_empty()) {
                    self.defer(shared, member, true, needs_drain)
                } else {
                    self.issue(shared, env, member)
                }
            }
            Chain::Deferred => self.defer(shared, member, false, false),
            state => self.step(shared, env, state, member),
        };
        if drain {
            self.drain_next = true;
        }
        self.open = if linked { state } else { Chain::Idle };
        if self.count_due || !self.ready.is_empty() || self.deferred_releasable() {
            self.settle(shared, env);
        }
    }

    /// Holds `member` back behind drain.
    fn defer(
        &mut self,
        shared: &SharedRing,
        member: Member,
        chain_start: bool,
        needs_drain: bool,
    ) -> Chain {
        if self.stored() >= MAX_PENDING {
            return self.refuse(shared, &member.sqe, EBUSY);
        }
        if self.charge(COST_MEMBER).is_err() {
            return self.refuse(shared, &member.sqe, ENOMEM);
        }
        if self.deferred.try_reserve(1).is_err() {
            self.uncharge(COST_MEMBER);
            return self.refuse(shared, &member.sqe, ENOMEM);
        }
        self.deferred.push_back(Deferred {
            member,
            chain_start,
            needs_drain,
        });
        self.waiting += 1;
        Chain::Deferred
    }

    /// Completes an SQE that would have to wait but cannot (`EBUSY`: the
    /// engine is at [`MAX_PENDING`]; `ENOMEM`: no memory to hold it); the
    /// rest of its chain is cancelled.
    fn refuse(&mut self, shared: &SharedRing, sqe: &Sqe, errno: Errno) -> Chain {
        self.finish_member(shared, sqe, -errno, true);
        Chain::broken_by(sqe)
    }

    /// Moves `member` on in a chain that stands at `state`.
    fn step(
        &mut self,
        shared: &SharedRing,
        env: &mut dyn IoEnv,
        state: Chain,
        member: Member,
    ) -> Chain {
        match state {
            Chain::Running => self.issue(shared, env, member),
            Chain::Cancelling {
                quiet,
                after_failure,
            } => {
                let sqe = &member.sqe;
                // Linux posts a LINK_TIMEOUT of the failed member as its own
                // completion; the rest follow the member that broke the chain.
                let hide = if after_failure && is_link_timer(sqe) {
                    sqe.flags & SKIP != 0
                } else {
                    quiet
                };
                self.complete(shared, sqe.user_data, -ECANCELED, counts(sqe), hide);
                Chain::Cancelling {
                    quiet,
                    after_failure: false,
                }
            }
            Chain::Blocked(id) => {
                if self.stored() >= MAX_PENDING {
                    self.refuse(shared, &member.sqe, EBUSY)
                } else {
                    self.attach(shared, env, id, member)
                }
            }
            // Not reached: only the SQ stream is ever idle or deferred, and
            // it handles those itself.
            Chain::Idle | Chain::Deferred => self.issue(shared, env, member),
        }
    }

    /// The fast path of [`RingEngine::submit`]: a run of lone SQEs with no
    /// flags, `ioprio` or `personality` that are NOPs (and no `op_flags`),
    /// or READs and WRITEs on a file whose I/O is synchronous
    /// ([`IoEnv::may_start`] says no), while nothing is open, held back,
    /// due or overflowed and nothing counts completions, each completing
    /// at once into a CQ with room: no prep or issue call through the op
    /// table, no chain state. READ and WRITE check what their ops check
    /// (`op_flags` `EOPNOTSUPP`, the offset `EINVAL`, the length clamped to
    /// [`ops::MAX_RW_COUNT`]) and move the bytes with `IoEnv::rw_sync` (what
    /// `IoEnv::read` or `write` would do, in one call), as `ops::rw` does;
    /// an SQE whose checks fail completes here whatever its file, as its
    /// op's issue-time checks would fail it there. The SQ array entry and every SQE word
    /// looked at are read once and checked on the copy, as on the general
    /// path. Stops, consuming nothing more, at the first entry that is
    /// anything else (or when the CQ is full), which the general path then
    /// reads. Returns how many it consumed.
    #[inline]
    fn fast_lone(&mut self, shared: &SharedRing, env: &mut dyn IoEnv, n: u32) -> u32 {
        use core::sync::atomic::Ordering::Relaxed;
        let Some(ring) =
            shared.batch_view(self.sq_entries, self.cq_entries, self.sq_mask, self.cq_mask)
        else {
            return 0;
        };
        // CQ room for the batch, with the user's head read at most once:
        // what does not fit is left to the general path (which overflows).
        let mut room = self.cq_room;
        if room < n {
            room = self.cq_space_at(shared, self.cq_tail);
        }
        let (head0, tail0) = (self.sq_head, self.cq_tail);
        let end = head0.wrapping_add(n.min(room));
        if self.cq_remote {
            ring.warm_cqes(tail0, end.wrapping_sub(head0));
        }
        let mut head = head0;
        // Runs of NOPs go through a leaf loop that keeps everything in
        // registers (`nop_run`, which reads the SQE seen here again, once
        // for its own use); runs of READs and WRITEs through `rw_run`, the
        // same way.
        let delta = tail0.wrapping_sub(head0);
        while head != end {
            // The array entry, then each SQE word looked at, loaded once
            // and checked on the copy.
            let Some(words) = ring.sqe_at(head) else {
                break;
            };
            let w0 = words[0].load(Relaxed);
            let w3 = words[3].load(Relaxed);
            let w5 = words[5].load(Relaxed);
            if is_plain_nop(w0, w3, w5) {
                if end.wrapping_sub(head) == 1 {
                    // A lone NOP: not worth the call.
                    ring.write_cqe(head.wrapping_add(delta), words[4].load(Relaxed), 0);
                    head = head.wrapping_add(1);
                    continue;
                }
                let next = nop_run(&ring, head, end, delta);
                if next == head {
                    // Rewritten since it was looked at here.
                    break;
                }
                head = next;
                continue;
            }
            // READs and WRITEs: a leaf loop of their own, as NOPs have.
            let next = rw_run(&ring, env, head, end, delta);
            if next == head {
                // Not one the fast path takes.
                break;
            }
            head = next;
        }
        let done = head.wrapping_sub(head0);
        self.sq_head = head;
        self.cq_tail = tail0.wrapping_add(done);
        self.cq_room = room - done;
        self.stats.posted += u64::from(done);
        done
    }

    /// Whether nothing is open, held back or due: an SQE without flags can
    /// then issue directly.
    #[inline]
    fn quiet(&self) -> bool {
        self.open == Chain::Idle
            && !self.drain_next
            && !self.count_due
            && self.deferred.is_empty()
            && self.ready.is_empty()
    }

    /// Posts the result of a flagless SQE (no skip, no chain).
    #[inline]
    fn post_plain(&mut self, shared: &SharedRing, user_data: u64, res: i32, counts: bool) {
        self.post(
            shared,
            Cqe {
                user_data,
                res,
                flags: 0,
            },
            counts,
        );
    }

    /// Issues one prepped member; returns where its chain stands.
    fn issue(&mut self, shared: &SharedRing, env: &mut dyn IoEnv, member: Member) -> Chain {
        let outcome = match ops::lookup(member.sqe.opcode) {
            Lookup::Known(def) => self.run_op(env, def, &member.sqe, member.prepared),
            _ => self.execute(env, &member),
        };
        self.apply(shared, member, outcome)
    }

    /// Issues one op. An op that may start I/O first gets room to stay
    /// pending (so that once its I/O is started, keeping it cannot fail),
    /// given back if it did not start any.
    #[inline(always)]
    fn run_op(
        &mut self,
        env: &mut dyn IoEnv,
        def: &'static OpDef,
        sqe: &Sqe,
        prepared: Prepared,
    ) -> Issue {
        let may_pend = (def.caps.contains(OpCaps::DEVICE_IO) && env.may_start(self.file_ref(sqe)))
            || (def.caps.contains(OpCaps::PATH_IO) && env.may_start_path());
        if !may_pend {
            let mut ctx = IssueCtx::new(env, &self.files, &self.buffers);
            return (def.issue)(&mut ctx, sqe, prepared);
        }
        let room = self.reserve_io();
        let outcome = {
            let target = IoTarget {
                mailbox: &self.mailbox,
                token: self.next_id,
                polled: self.iopoll,
                room,
            };
            let mut ctx = IssueCtx::new(env, &self.files, &self.buffers).with_io(target);
            (def.issue)(&mut ctx, sqe, prepared)
        };
        if room.is_ok() && !matches!(outcome, Issue::Pending { .. }) {
            self.uncharge(COST_PENDING);
        }
        outcome
    }

    /// The file `sqe` names, for [`IoEnv::may_start`] (an index that names
    /// no registered file is left to the op to refuse).
    #[inline(always)]
    fn file_ref(&self, sqe: &Sqe) -> FileRef {
        if sqe.flags & sqe_flags::FIXED_FILE == 0 {
            return FileRef::Fd(sqe.fd);
        }
        match usize::try_from(sqe.fd).ok().and_then(|i| self.files.get(i)) {
            Some(Some(token)) => FileRef::Pinned(*token),
            _ => FileRef::Fd(-1),
        }
    }

    /// Room for one more pending I/O: under [`MAX_PENDING`] (`EBUSY`), its
    /// memory charged and reserved (`ENOMEM`), and a mailbox slot for its
    /// result. On `Ok` the charge is held for the caller.
    fn reserve_io(&mut self) -> Result<(), Errno> {
        if self.stored() >= MAX_PENDING {
            return Err(EBUSY);
        }
        self.charge(COST_PENDING)?;
        let reserved = self.reserve_pending_room()
            && self.mailbox.reserve(self.io_pending + 1).is_ok()
            && self.reaped.try_reserve(self.io_pending + 1).is_ok();
        if !reserved {
            self.uncharge(COST_PENDING);
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// Makes started I/O pending (its room was reserved and charged by
    /// `reserve_io`); returns its id, which is its token.
    fn arm_io(&mut self, sqe: &Sqe, wanted: u32) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.io_pending += 1;
        // Room was reserved: this push does not allocate.
        self.pending.push(PendingOp {
            id,
            user_data: sqe.user_data,
            flags: sqe.flags,
            deadline: None,
            count_target: None,
            io_wanted: Some(wanted),
            link_timer: None,
            rest: Vec::new(),
        });
        id
    }

    /// Acts on the outcome of issuing `member`; returns where its chain
    /// stands.
    fn apply(&mut self, shared: &SharedRing, member: Member, outcome: Issue) -> Chain {
        let sqe = member.sqe;
        let linked = sqe.flags & LINK_FLAGS != 0;
        let (res, failed) = match outcome {
            Issue::Done(result) => {
                let res = cqe_res(result);
                (res, res < 0)
            }
            Issue::Short(n) => (cqe_res(Ok(n)), true),
            Issue::LinkTimeout { .. } => {
                // Directly after an op that already completed: nothing to
                // time. Linux posts -ECANCELED, hidden by its own
                // CQE_SKIP_SUCCESS, and the chain goes on.
                let hide = sqe.flags & SKIP != 0;
                self.complete(shared, sqe.user_data, -ECANCELED, true, hide);
                return if linked { Chain::Running } else { Chain::Idle };
            }
            Issue::Cancel {
                target,
                timeouts_only,
            } => {
                let res = self.cancel(shared, target, timeouts_only);
                (res, res < 0)
            }
            Issue::Pending { wanted } => {
                let id = self.arm_io(&sqe, wanted);
                return if linked {
                    Chain::Blocked(id)
                } else {
                    Chain::Idle
                };
            }
            Issue::Timeout { deadline_ns, count } => match self.arm(&sqe, deadline_ns, count) {
                Ok(id) => {
                    return if linked {
                        Chain::Blocked(id)
                    } else {
                        Chain::Idle
                    };
                }
                Err(errno) => (-errno, true),
            },
        };
        self.finish_member(shared, &sqe, res, failed);
        if !linked {
            Chain::Idle
        } else if failed && sqe.flags & sqe_flags::IO_HARDLINK == 0 {
            Chain::broken_by(&sqe)
        } else {
            Chain::Running
        }
    }

    /// Issues a prepped member through the op table.
    #[inline(always)]
    fn execute(&self, env: &mut dyn IoEnv, member: &Member) -> Issue {
        let mut ctx = IssueCtx::new(env, &self.files, &self.buffers);
        ops::issue_sqe(&mut ctx, &member.sqe, member.prepared)
    }

    /// Puts `member` behind pending op `id`; a LINK_TIMEOUT directly after
    /// it arms a timer on it instead. Returns where the chain stands.
    fn attach(
        &mut self,
        shared: &SharedRing,
        env: &mut dyn IoEnv,
        id: u64,
        member: Member,
    ) -> Chain {
        let Some(i) = self.pending.iter().position(|p| p.id == id) else {
            // Not reached: a chain is blocked on an op only while it is
            // pending. Fail safe.
            return self.refuse(shared, &member.sqe, ECANCELED);
        };
        let directly_after =
            self.pending[i].rest.is_empty() && self.pending[i].link_timer.is_none();
        if directly_after && is_link_timer(&member.sqe) {
            // Anything but a timer (not reached: prep read the timespec)
            // waits like any member and completes when its turn comes.
            if let Issue::LinkTimeout { deadline_ns } = self.execute(env, &member) {
                self.pending[i].link_timer = Some(LinkTimer {
                    user_data: member.sqe.user_data,
                    flags: member.sqe.flags,
                    deadline: deadline_ns,
                });
                self.link_timers += 1;
                return Chain::Blocked(id);
            }
        }
        if self.charge(COST_MEMBER).is_err() {
            return self.refuse(shared, &member.sqe, ENOMEM);
        }
        if self.pending[i].rest.try_reserve(1).is_err() {
            self.uncharge(COST_MEMBER);
            return self.refuse(shared, &member.sqe, ENOMEM);
        }
        self.pending[i].rest.push(member);
        self.waiting += 1;
        Chain::Blocked(id)
    }

    /// Room for one more pending op, and for completing it without
    /// allocating (a `ready` entry, a `due` slot); false if the heap says
    /// no. Shared by timers ([`Self::arm`]) and started I/O.
    fn reserve_pending_room(&mut self) -> bool {
        let n = self.pending.len() + 1;
        self.pending.try_reserve(1).is_ok()
            && self.ready.try_reserve(at_least_a_page::<Ready>(n)).is_ok()
            && self
                .due
                .try_reserve(at_least_a_page::<(u64, u64)>(n))
                .is_ok()
    }

    /// Makes a TIMEOUT pending; returns its id. `EBUSY` past
    /// [`MAX_PENDING`], `ENOMEM` if its memory (the op, and room to
    /// complete it without allocating) cannot be had.
    fn arm(&mut self, sqe: &Sqe, deadline: Option<u64>, count: u32) -> Result<u64, Errno> {
        if self.stored() >= MAX_PENDING {
            return Err(EBUSY);
        }
        self.charge(COST_PENDING)?;
        if !self.reserve_pending_room() {
            self.uncharge(COST_PENDING);
            return Err(ENOMEM);
        }
        let id = self.next_id;
        self.next_id += 1;
        let count_target = (count > 0).then(|| self.cq_seq + u64::from(count));
        if let Some(target) = count_target {
            self.next_count_target = self.next_count_target.min(target);
        }
        self.pending.push(PendingOp {
            id,
            user_data: sqe.user_data,
            flags: sqe.flags,
            deadline,
            count_target,
            io_wanted: None,
            link_timer: None,
            rest: Vec::new(),
        });
        Ok(id)
    }

    /// Cancels the pending op (a TIMEOUT, or unless `timeouts_only` an armed
    /// LINK_TIMEOUT) with `user_data == target`: 0, or `-ENOENT`.
    fn cancel(&mut self, shared: &SharedRing, target: u64, timeouts_only: bool) -> i32 {
        // Started I/O cannot be called back from the device: as on Linux
        // for block I/O in flight, it is not found (`-ENOENT`) and
        // completes with the device's result.
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.user_data == target && p.io_wanted.is_none())
        {
            self.finish_pending(shared, i, -ECANCELED, -ECANCELED);
            return 0;
        }
        if !timeouts_only {
            let timer = self
                .pending
                .iter_mut()
                .find(|p| p.link_timer.is_some_and(|t| t.user_data == target))
                .and_then(|p| p.link_timer.take());
            if let Some(timer) = timer {
                self.link_timers -= 1;
                let hide = timer.flags & SKIP != 0;
                self.complete(shared, timer.user_data, -ECANCELED, true, hide);
                return 0;
            }
        }
        -ENOENT
    }

    // ---- Completion ----

    /// Completes pending op `index` with `res`, and its link timer (if any)
    /// with `timer_res`; queues the rest of its chain.
    fn finish_pending(&mut self, shared: &SharedRing, index: usize, res: i32, timer_res: i32) {
        self.finish_pending_as(shared, index, res, res < 0, timer_res);
    }

    /// [`Self::finish_pending`] with the failure decided by the caller (a
    /// short transfer fails a chain with a non-negative result).
    fn finish_pending_as(
        &mut self,
        shared: &SharedRing,
        index: usize,
        res: i32,
        failed: bool,
        timer_res: i32,
    ) {
        let op = self.pending.remove(index);
        self.uncharge(COST_PENDING);
        // TIMEOUT completions do not count for count-based timeouts (Linux),
        // I/O completions do; failures are shown whatever the flags.
        let hide = op.flags & SKIP != 0 && !failed;
        self.complete(shared, op.user_data, res, op.io_wanted.is_some(), hide);
        let mut after_failure = true;
        if let Some(timer) = op.link_timer {
            self.link_timers -= 1;
            let hide = timer.flags & SKIP != 0;
            self.complete(shared, timer.user_data, timer_res, true, hide);
            after_failure = false;
        }
        let state = if failed && op.flags & sqe_flags::IO_HARDLINK == 0 {
            Chain::Cancelling {
                quiet: op.flags & SKIP != 0,
                after_failure,
            }
        } else {
            Chain::Running
        };
        if !op.rest.is_empty() || self.open == Chain::Blocked(op.id) {
            // Room for one entry per pending op was reserved when it was
            // armed, so this does not allocate.
            self.ready.push_back(Ready {
                origin: op.id,
                state,
                members: op.rest,
            });
        }
    }

    /// Posts a chain member's result; a success is hidden by its
    /// `CQE_SKIP_SUCCESS`, a failure never.
    fn finish_member(&mut self, shared: &SharedRing, sqe: &Sqe, res: i32, failed: bool) {
        let hide = sqe.flags & SKIP != 0 && !failed;
        self.complete(shared, sqe.user_data, res, counts(sqe), hide);
    }

    /// Posts a result unless `hide`.
    fn complete(
        &mut self,
        shared: &SharedRing,
        user_data: u64,
        res: i32,
        counts: bool,
        hide: bool,
    ) {
        if hide {
            self.stats.skipped += 1;
            return;
        }
        self.post(
            shared,
            Cqe {
                user_data,
                res,
                flags: 0,
            },
            counts,
        );
    }

    /// Free CQ slots, by the user's head read once (none if it is nonsense).
    fn cq_space(&self, shared: &SharedRing) -> u32 {
        self.cq_space_at(shared, self.cq_tail)
    }

    /// Free CQ slots with the kernel's tail at `tail`.
    #[inline]
    fn cq_space_at(&self, shared: &SharedRing, tail: u32) -> u32 {
        let used = tail.wrapping_sub(shared.cq_head());
        self.cq_entries.saturating_sub(used)
    }

    /// Puts `cqe` in the CQ, or in the overflow list if the CQ is full or
    /// older CQEs still wait there (or drops it, counted, if the list cannot
    /// grow).
    #[inline(always)]
    fn post(&mut self, shared: &SharedRing, cqe: Cqe, counts: bool) {
        self.stats.posted += 1;
        if self.cq_room > 0
            && !counts_pending(self.next_count_target, counts)
            && self.overflow.is_empty()
        {
            // The common case: room known, nothing to count, nothing older.
            self.cq_room -= 1;
            shared.write_cqe(self.cq_tail & self.cq_mask, &cqe);
            self.cq_tail = self.cq_tail.wrapping_add(1);
            return;
        }
        // Completions only need counting while a count-based timeout waits:
        // targets are relative to `cq_seq` at arming time.
        if counts && self.next_count_target != u64::MAX {
            self.cq_seq += 1;
            if self.cq_seq >= self.next_count_target {
                self.count_due = true;
            }
        }
        if !self.overflow.is_empty() {
            self.flush_overflow(shared);
        }
        if self.overflow.is_empty() {
            if self.cq_room == 0 {
                self.cq_room = self.cq_space(shared);
            }
            if self.cq_room > 0 {
                self.cq_room -= 1;
                shared.write_cqe(self.cq_tail & self.cq_mask, &cqe);
                self.cq_tail = self.cq_tail.wrapping_add(1);
                return;
            }
        }
        self.overflow_push(shared, cqe);
    }

    /// Appends `cqe` to the overflow list; if its memory cannot be had the
    /// CQE is lost, and counted, as Linux does.
    #[cold]
    fn overflow_push(&mut self, shared: &SharedRing, cqe: Cqe) {
        let room = self.charge(COST_CQE).is_ok();
        if room && self.overflow.try_reserve(1).is_ok() {
            self.overflow.push_back(cqe);
            self.stats.overflowed += 1;
            shared.set_sq_flags(sq_flags::CQ_OVERFLOW);
        } else {
            if room {
                self.uncharge(COST_CQE);
            }
            self.stats.lost += 1;
        }
        shared.bump_cq_overflow();
    }

    // ---- Deferred work ----

    /// Whether the first held-back chain may start.
    fn deferred_releasable(&self) -> bool {
        self.deferred
            .front()
            .is_some_and(|d| !d.needs_drain || self.pending.is_empty())
    }

    /// Runs queued work until none is left: count-based timeouts that are
    /// due, chains whose pending member completed, chains drain released.
    fn settle(&mut self, shared: &SharedRing, env: &mut dyn IoEnv) {
        loop {
            if self.count_due {
                self.fire_counts(shared);
            } else if let Some(ready) = self.ready.pop_front() {
                let state = self.run(shared, env, ready.state, ready.members);
                if self.open == Chain::Blocked(ready.origin) {
                    self.open = state;
                }
            } else if self.deferred_releasable() {
                self.release_deferred(shared, env);
            } else {
                break;
            }
        }
    }

    /// Issues stored chain members from `state` on; returns the final state.
    fn run(
        &mut self,
        shared: &SharedRing,
        env: &mut dyn IoEnv,
        mut state: Chain,
        members: Vec<Member>,
    ) -> Chain {
        for member in members {
            self.waiting -= 1;
            self.uncharge(COST_MEMBER);
            state = self.step(shared, env, state, member);
        }
        state
    }

    /// Completes (with 0) every pending TIMEOUT whose count was reached.
    fn fire_counts(&mut self, shared: &SharedRing) {
        self.count_due = false;
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i]
                .count_target
                .is_some_and(|t| t <= self.cq_seq)
            {
                self.finish_pending(shared, i, 0, -ECANCELED);
            } else {
                i += 1;
            }
        }
        self.next_count_target = self
            .pending
            .iter()
            .filter_map(|p| p.count_target)
            .min()
            .unwrap_or(u64::MAX);
        // Link timers cancelled above posted CQEs that count too.
        self.count_due = self.cq_seq >= self.next_count_target;
    }

    /// Starts the first held-back chain (without allocating: its members
    /// are taken from the queue one by one).
    fn release_deferred(&mut self, shared: &SharedRing, env: &mut dyn IoEnv) {
        let len = 1 + self
            .deferred
            .iter()
            .skip(1)
            .take_while(|d| !d.chain_start)
            .count();
        // Is this the chain the SQ stream is still adding to?
        let open = self.deferred.len() == len && self.open == Chain::Deferred;
        let mut state = Chain::Running;
        for _ in 0..len {
            let Some(next) = self.deferred.pop_front() else {
                break;
            };
            self.waiting -= 1;
            self.uncharge(COST_MEMBER);
            state = self.step(shared, env, state, next.member);
        }
        if open {
            self.open = state;
        }
    }

    /// Completes the timers due at `now`, earliest deadline first: a TIMEOUT
    /// with `-ETIME`; for a LINK_TIMEOUT, its target with `-ECANCELED` and
    /// itself with `-ETIME`. Uses the `due` scratch list, which has room
    /// for every pending op (reserved when each was armed).
    fn expire(&mut self, shared: &SharedRing, now: u64) {
        let due_at = |p: &PendingOp| {
            let own = p.deadline.filter(|&d| d <= now);
            let link = p.link_timer.map(|t| t.deadline).filter(|&d| d <= now);
            (own, link)
        };
        let mut due = core::mem::take(&mut self.due);
        due.clear();
        for p in &self.pending {
            let (own, link) = due_at(p);
            if let Some(first) = [own, link].into_iter().flatten().min() {
                // Never allocates; anything past the room fires on the next
                // poll (not reached: there is room for every pending op).
                if due.len() < due.capacity() {
                    due.push((first, p.id));
                }
            }
        }
        due.sort_unstable();
        for &(_, id) in &due {
            let Some(i) = self.pending.iter().position(|p| p.id == id) else {
                continue;
            };
            if self.pending[i].io_wanted.is_some() {
                // A link timer on started I/O: the I/O cannot be called
                // back, so (as Linux's link timeout whose cancel finds
                // nothing) the timer completes with -ENOENT and the I/O
                // later with its own result.
                if let Some(timer) = self.pending[i].link_timer.take() {
                    self.link_timers -= 1;
                    let hide = timer.flags & SKIP != 0;
                    self.complete(shared, timer.user_data, -ENOENT, true, hide);
                }
                continue;
            }
            match due_at(&self.pending[i]) {
                (Some(own), Some(link)) if link < own => {
                    self.finish_pending(shared, i, -ECANCELED, -ETIME)
                }
                (Some(_), _) => self.finish_pending(shared, i, -ETIME, -ECANCELED),
                (None, Some(_)) => self.finish_pending(shared, i, -ECANCELED, -ETIME),
                (None, None) => {}
            }
        }
        due.clear();
        self.due = due;
    }
}

/// Whether SQE words 0, 3 and 5 (as read) are those of a NOP with no
/// flags, ioprio, `op_flags` or personality: word 0 holds opcode, flags
/// and ioprio in its low 32 bits (NOP is opcode 0, so all zero), word 3
/// `op_flags` in its high half, word 5 the personality in bits 16..32.
#[inline(always)]
fn is_plain_nop(w0: u64, w3: u64, w5: u64) -> bool {
    const W3_OP_FLAGS: u64 = 0xFFFF_FFFF << 32;
    const W5_PERSONALITY: u64 = 0xFFFF << 16;
    const _: () = assert!(op::NOP == 0);
    w0 as u32 == 0 && w3 & W3_OP_FLAGS == 0 && w5 & W5_PERSONALITY == 0
}

/// Completes the plain NOPs at SQ positions `head..end` (their CQEs at
/// position + `delta`) and returns the position of the first SQE that is
/// not one (not consumed), or `end`. A leaf, so that the loop runs in
/// registers. Each array entry and SQE word is loaded once and checked on
/// the copy; the caller made sure the CQ has room for `end - head`.
#[inline(never)]
fn nop_run(ring: &BatchView<'_>, mut head: u32, end: u32, delta: u32) -> u32 {
    use core::sync::atomic::Ordering::Relaxed;
    let Some(ring) = ring.masked() else {
        return head;
    };
    while head != end {
        let Some(words) = ring.sqe_at(head) else {
            break;
        };
        let (w0, w3, w5) = (
            words[0].load(Relaxed),
            words[3].load(Relaxed),
            words[5].load(Relaxed),
        );
        if !is_plain_nop(w0, w3, w5) {
            break;
        }
        ring.write_cqe(head.wrapping_add(delta), words[4].load(Relaxed), 0);
        head = head.wrapping_add(1);
    }
    head
}

/// Completes the READs and WRITEs [`fast_rw`] takes at SQ positions
/// `head..end` (their CQEs at position + `delta`) and returns the position
/// of the first SQE it does not take (not consumed), or `end`: what
/// [`nop_run`] is for NOPs. The loop itself is the environment's
/// ([`IoEnv::rw_sync_run`], over an [`RwRun`]), so that a host can run it
/// with its transfer inlined and no call per SQE. The caller made sure the
/// CQ has room for `end - head`, so once a transfer has moved bytes its
/// SQE is consumed.
#[inline(never)]
fn rw_run(ring: &BatchView<'_>, env: &mut dyn IoEnv, head: u32, end: u32, delta: u32) -> u32 {
    let Some(ring) = ring.masked() else {
        return head;
    };
    let mut run = RwRun {
        ring,
        head,
        end,
        delta,
    };
    env.rw_sync_run(&mut run);
    run.head
}

/// A run of SQEs for [`IoEnv::rw_sync_run`]: [`RwRun::next_sqe`] reads the
/// next one and hands over a READ or WRITE the fast path takes,
/// [`RwRun::complete`] posts its CQE and consumes it. The hostile-memory
/// rules of the fast path hold inside: each SQ array entry and SQE word is
/// loaded once and checked on the copy, positions are masked.
pub struct RwRun<'a> {
    ring: BatchView<'a>,
    head: u32,
    end: u32,
    delta: u32,
}

/// A READ or WRITE of an [`RwRun`], its words read and checked (see
/// [`fast_rw`]).
#[derive(Clone, Copy, Debug)]
pub struct RwSqe {
    /// The descriptor ([`FileRef::Fd`]).
    pub fd: i32,
    /// WRITE (else READ).
    pub write: bool,
    /// The SQE's offset: `u64::MAX` for the file position.
    pub offset: u64,
    /// The user buffer (a claim).
    pub buf: u64,
    /// The length, clamped to [`ops::MAX_RW_COUNT`].
    pub len: u32,
    user_data: u64,
}

impl RwRun<'_> {
    /// The next SQE of the run if it is a READ or WRITE the fast path
    /// takes; it stays in the ring until [`RwRun::complete`]. An SQE whose
    /// op's checks fail (`op_flags`: `EOPNOTSUPP`; an offset below -1:
    /// `EINVAL`) is completed on the way, whatever its file, as `fast_rw`
    /// does. `None` at the end of the run or at an SQE the fast path does
    /// not take, which stays in the ring.
    #[inline(always)]
    pub fn next_sqe(&mut self) -> Option<RwSqe> {
        use core::sync::atomic::Ordering::Relaxed;
        while self.head != self.end {
            let words = self.ring.sqe_at(self.head)?;
            let (w0, w3, w5) = (
                words[0].load(Relaxed),
                words[3].load(Relaxed),
                words[5].load(Relaxed),
            );
            match check_rw(words, w0, w3, w5) {
                RwCheck::Not => return None,
                RwCheck::Failed(res) => {
                    let user_data = words[4].load(Relaxed);
                    self.ring
                        .write_cqe(self.head.wrapping_add(self.delta), user_data, res);
                    self.head = self.head.wrapping_add(1);
                }
                RwCheck::Transfer(mut sqe) => {
                    sqe.user_data = words[4].load(Relaxed);
                    return Some(sqe);
                }
            }
        }
        None
    }

    /// Posts the CQE of `sqe`, the SQE [`RwRun::next_sqe`] returned last, with
    /// `result` (`Ok`: the bytes moved, at most its length) and consumes
    /// it.
    #[inline(always)]
    pub fn complete(&mut self, sqe: RwSqe, result: Result<u32, Errno>) {
        let res = cqe_res(result.map(|n| n.min(sqe.len)));
        self.ring
            .write_cqe(self.head.wrapping_add(self.delta), sqe.user_data, res);
        self.head = self.head.wrapping_add(1);
    }
}

/// What [`check_rw`] found.
enum RwCheck {
    /// Not a flagless READ or WRITE: not for the fast path.
    Not,
    /// A READ or WRITE whose op's checks fail with this result.
    Failed(i32),
    /// A READ or WRITE to transfer (`user_data` not yet read).
    Transfer(RwSqe),
}

/// The fast path's look at an SQE (words 0, 3 and 5 as already read): a
/// READ or WRITE with no flags, ioprio or personality, and whether it
/// passes the checks of `ops::rw` (`op_flags`: `EOPNOTSUPP`; an offset
/// below -1: `EINVAL`), which come first whatever the file: on the
/// general path they too precede `IoEnv::start` (`ops::rw::check_rw`).
#[inline(always)]
fn check_rw(
    words: &[core::sync::atomic::AtomicU64; super::shared::SQE_WORDS],
    w0: u64,
    w3: u64,
    w5: u64,
) -> RwCheck {
    use core::sync::atomic::Ordering::Relaxed;
    let opcode = w0 as u8;
    // flags (byte 1) and ioprio (bytes 2-3) of word 0; personality.
    if w0 & 0xFFFF_FF00 != 0 || w5 & (0xFFFF << 16) != 0 {
        return RwCheck::Not;
    }
    if opcode != op::READ && opcode != op::WRITE {
        return RwCheck::Not;
    }
    if w3 >> 32 != 0 {
        return RwCheck::Failed(-EOPNOTSUPP);
    }
    let off = words[1].load(Relaxed);
    let addr = words[2].load(Relaxed);
    if (off as i64) < -1 {
        return RwCheck::Failed(-EINVAL);
    }
    RwCheck::Transfer(RwSqe {
        fd: (w0 >> 32) as i32,
        write: opcode == op::WRITE,
        offset: off,
        buf: addr,
        len: (w3 as u32).min(ops::MAX_RW_COUNT),
        user_data: 0,
    })
}

/// A lone flagless READ or WRITE on the fast path ([`RingEngine::fast_lone`]):
/// `None` unless the SQE (words 0, 3 and 5 as already read) is a READ or
/// WRITE with no flags, ioprio or personality that fails the checks of
/// `ops::rw` (`op_flags`: `EOPNOTSUPP`; an offset below -1: `EINVAL`) or
/// is on a file whose I/O is synchronous; then its result (the length
/// clamped to [`ops::MAX_RW_COUNT`]). Inlined into the lone SQE's path.
#[inline(always)]
fn fast_rw(
    env: &mut dyn IoEnv,
    words: &[core::sync::atomic::AtomicU64; super::shared::SQE_WORDS],
    w0: u64,
    w3: u64,
    w5: u64,
) -> Option<i32> {
    match check_rw(words, w0, w3, w5) {
        RwCheck::Not => None,
        RwCheck::Failed(res) => Some(res),
        RwCheck::Transfer(sqe) => {
            let result = env.rw_sync(sqe.fd, sqe.write, sqe.offset, sqe.buf, sqe.len)?;
            Some(cqe_res(result.map(|n| n.min(sqe.len))))
        }
    }
}

/// `n`, or more: enough `T`s to fill a page. Scratch room the engine keeps
/// is reserved in page-sized steps, so that it comes from the heap's page
/// runs, whose frames go back as soon as it is freed, and not from a slab
/// size class, which keeps the frames it carves at its high-water mark.
fn at_least_a_page<T>(n: usize) -> usize {
    n.max(4096 / size_of::<T>().max(1))
}

/// Bytes charged for a registered buffer table of `n` slots.
fn buffers_cost(n: usize) -> usize {
    n * size_of::<Option<(u64, u64)>>()
}

/// Bytes charged for a registered file table of `n` slots.
fn files_cost(n: usize) -> usize {
    n * (size_of::<Option<u64>>() + COST_PINNED_FILE)
}

/// The table REGISTER_BUFFERS describes.
fn read_buffers(env: &mut dyn IoEnv, arg: u64, nr: u32) -> Result<Vec<Option<(u64, u64)>>, Errno> {
    let mut table = Vec::new();
    table.try_reserve_exact(nr as usize).map_err(|_| ENOMEM)?;
    for i in 0..nr {
        let mut raw = [0u8; 16];
        let at = arg.checked_add(u64::from(i) * 16).ok_or(EFAULT)?;
        env.read_user(at, &mut raw)?;
        let base = u64::from_le_bytes(raw[..8].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(raw[8..].try_into().unwrap_or_default());
        if base == 0 {
            // A sparse slot, as on Linux; a length without a base is bad.
            if len != 0 {
                return Err(EFAULT);
            }
            table.push(None);
            continue;
        }
        // Linux's io_buffer_validate: a buffer needs a length too.
        if len == 0 || len > reg::MAX_BUFFER_LEN {
            return Err(EFAULT);
        }
        base.checked_add(len).ok_or(EOVERFLOW)?;
        env.check_user(base, len, true)?;
        table.push(Some((base, len)));
    }
    Ok(table)
}

/// REGISTER_PROBE: fills the user's zeroed probe (header and up to
/// `op::LAST` entries) from the op table.
fn register_probe(env: &mut dyn IoEnv, arg: u64, nr: u32) -> Result<u64, Errno> {
    const HEADER: usize = core::mem::size_of::<Probe>();
    const ENTRY: usize = core::mem::size_of::<ProbeOp>();
    let n = (nr as usize).min(ops::TABLE_LEN);
    let size = HEADER + n * ENTRY;
    let mut buf = [0u8; HEADER + ops::TABLE_LEN * ENTRY];
    env.read_user(arg, &mut buf[..size])?;
    if buf[..size].iter().any(|&b| b != 0) {
        return Err(EINVAL);
    }
    let mut entries = [ProbeOp::default(); ops::TABLE_LEN];
    let probe = ops::probe(&mut entries[..n]);
    buf[0] = probe.last_op;
    buf[1] = probe.ops_len;
    for (i, entry) in entries[..n].iter().enumerate() {
        let at = HEADER + i * ENTRY;
        buf[at] = entry.op;
        buf[at + 2..at + 4].copy_from_slice(&entry.flags.to_le_bytes());
    }
    env.write_user(arg, &buf[..size])?;
    Ok(0)
}
