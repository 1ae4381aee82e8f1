//! The raw ring layer: one mapped ring with io_uring's layout, an
//! [`IoUring`], and the index arithmetic of its two queues, with nothing
//! on top. A ring is driven by io_uring (syscalls 12-14,
//! [`IoUring::setup`]) or by the Ring API (syscalls 2000-2002,
//! [`IoUring::setup_ring_api`]): both map the same layout, so everything but
//! the three calls is shared ([`Api`] says which calls a ring uses). The
//! Ring API's own seed-style type, `ring_io::Ring`, is built on this one.
//!
//! [`IoUring::setup`] calls `io_uring_setup` and locates every part of the ring
//! mapping through the offsets the kernel returns in
//! [`IoUringParams`] (`sq_off`/`cq_off`, relative to `sq_off.user_addr`);
//! only the SQE array, which Linux reaches through a separate mmap offset,
//! comes from [`ring_layout::SQES`]. Nothing else about the layout is
//! assumed, and the offsets are bounds-checked against
//! [`ring_layout::SIZE`] before anything is dereferenced.
//!
//! Submitting: [`IoUring::push_sqe`] writes an SQE into a free slot and its
//! index into the SQ array but does not publish it; [`IoUring::publish`]
//! store-releases the SQ tail; [`IoUring::enter`] asks the kernel to consume
//! (on a Ring API ring it rings the doorbell, see [`IoUring::enter`]).
//! A Ring API context has no descriptor: closing or dropping its `IoUring`
//! ends it with `ring_register(CONTEXT_CLOSE)`, which unmaps it
//! (`libuser::ring_io` is its seed-style API).
//! Completing: [`IoUring::peek_cqe`] load-acquires the CQ tail and reads the
//! entry at the head; [`IoUring::pop_cqe`] also store-releases the new head.
//!
//! Invariants (what makes the `unsafe` in this module sound):
//! - An io_uring mapping, once `io_uring_setup` returned it, stays mapped
//!   at `sq_off.user_addr` until its descriptor is closed; the close
//!   unmaps it at once and frees its slot for the next ring (kernel
//!   contract). The `IoUring` viewing it owns the descriptor: it is entered
//!   in [`crate::sys::raw`]'s table of owned ring descriptors when
//!   [`IoUring::setup`] succeeds, and the safe close functions
//!   ([`crate::sys::close`], [`crate::sys::close_ring`],
//!   [`crate::sys::raw::close`]) refuse it with `EBUSY`; a ring's `CLOSE`
//!   op cannot close a ring descriptor at all (`EBADF`, kernel contract as
//!   on Linux). So from safe code only the owning `IoUring` closes it, from
//!   `close(self)` or `drop`, ending its views with the same call;
//!   [`IoUring::into_raw_fd`] ends the views first and then hands the
//!   descriptor out. A Ring API context stays mapped until `CONTEXT_CLOSE`,
//!   which only the `IoUring` viewing it sends, the same way; the system
//!   ring stays mapped for the life of the process. The views are
//!   `'static` references kept inside the `IoUring` and never handed out,
//!   so none outlives the memory.
//! - The kernel may write the header words and CQEs at any time, so they are
//!   only touched through atomics or volatile copies, never through `&`
//!   references to plain data.
//! - Every index into ring memory is masked with the mask computed from the
//!   entry counts the kernel returned in the params (checked to be powers
//!   of two that fit the mapping), never with a mask read back from ring
//!   memory, which anyone (a hostile test, a buggy kernel) may scribble on.
//!
//! What needs `unsafe` from callers: an SQE is a request for the kernel to
//! read or write memory at the addresses it names, until the request
//! completes. [`IoUring::push_sqe`] and the scribbling functions used by the
//! hostile test are therefore `unsafe fn`s whose contract is that every
//! address a published SQE names stays valid, and is not otherwise used,
//! until its completion (or until the process exits).

use crate::sys::raw;
use abi::errno::Errno;
use abi::errno::{EINVAL, ENOSYS, ERANGE};
use abi::io_uring::{enter_flags, register};
use abi::io_uring::{
    header, ring_layout, Cqe, IoUringParams, IoVec, Probe, ProbeOp, Sqe, PROBE_OP_SUPPORTED,
};
use abi::ring_api::{self, RingSetupParams};
use abi::syscall as nr;
use alloc::vec::Vec;
use core::cell::Cell;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

/// Which half of the ring a header word belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Submission,
    Completion,
}

/// `io_uring_setup(entries, params)`: returns the ring descriptor; `params`
/// is read (flags, `cq_entries` with CQSIZE, `resv`) and filled in.
///
/// Takes any address so that tests can pass bad ones; the kernel only ever
/// writes one [`IoUringParams`] there.
///
/// # Safety
///
/// `params` must be valid for reading and writing one [`IoUringParams`], or
/// an address the kernel is bound to refuse (it then returns `EFAULT`).
pub unsafe fn setup_raw(entries: u32, params: u64) -> Result<u64, Errno> {
    // SAFETY: the caller vouches for `params`.
    Errno::from_ret(unsafe { raw::syscall2(nr::IO_URING_SETUP, u64::from(entries), params) })
}

/// `io_uring_enter(fd, to_submit, min_complete, flags)` on any descriptor;
/// returns how many SQEs the kernel consumed.
///
/// Safe: it passes no pointer, and the SQEs it makes the kernel consume were
/// published under [`IoUring::push_sqe`]'s contract.
pub fn enter(fd: u64, to_submit: u32, min_complete: u32, flags: u32) -> Result<u32, Errno> {
    // SAFETY: no pointer arguments; see above for the ring's contents.
    let ret = unsafe {
        raw::syscall4(
            nr::IO_URING_ENTER,
            fd,
            u64::from(to_submit),
            u64::from(min_complete),
            u64::from(flags),
        )
    };
    Errno::from_ret(ret).map(|n| n as u32)
}

/// `io_uring_register(fd, opcode, arg, nr)` with a raw argument.
///
/// # Safety
///
/// `arg` must be what `opcode` expects for `nr` entries (readable, and
/// writable for `REGISTER_PROBE`), or an address the kernel is bound to
/// refuse. Registered buffers are only touched by fixed-buffer SQEs, whose
/// addresses [`IoUring::push_sqe`]'s contract covers.
pub unsafe fn register_raw(fd: u64, opcode: u32, arg: u64, nr: u32) -> Result<u64, Errno> {
    // SAFETY: the caller vouches for `arg`.
    Errno::from_ret(unsafe {
        raw::syscall4(
            nr::IO_URING_REGISTER,
            fd,
            u64::from(opcode),
            arg,
            u64::from(nr),
        )
    })
}

/// What `REGISTER_PROBE` reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// Highest opcode the kernel knows.
    pub last_op: u8,
    /// The entries the kernel filled in (`ops_len` of them).
    pub ops: Vec<ProbeOp>,
}

impl ProbeReport {
    /// The opcodes marked [`PROBE_OP_SUPPORTED`], ascending.
    pub fn supported(&self) -> Vec<u8> {
        let mut ops: Vec<u8> = self
            .ops
            .iter()
            .filter(|op| op.flags & PROBE_OP_SUPPORTED != 0)
            .map(|op| op.op)
            .collect();
        ops.sort_unstable();
        ops
    }
}

/// Room for a probe header and one entry per possible opcode.
#[repr(C)]
struct ProbeBuffer {
    header: Probe,
    ops: [ProbeOp; 256],
}

/// Where the parts of a ring mapping are, as validated byte offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    base: u64,
    sq_entries: u32,
    cq_entries: u32,
}

/// Checks that `params` describe a mapping this layer can use: entry counts
/// that are powers of two within the layout's limits, and every offset
/// 4-aligned with its object inside [`ring_layout::SIZE`]. A kernel that
/// returns anything else gets `ERANGE`, and nothing is dereferenced.
fn validate(params: &IoUringParams) -> Result<Layout, Errno> {
    let bad = Err(ERANGE);
    let (sq, cq) = (params.sq_entries, params.cq_entries);
    if !sq.is_power_of_two()
        || !cq.is_power_of_two()
        || sq > ring_layout::MAX_SQ_ENTRIES
        || cq > ring_layout::MAX_CQ_ENTRIES
    {
        return bad;
    }
    let base = params.sq_off.user_addr;
    if base == 0
        || base != params.cq_off.user_addr
        || !base.is_multiple_of(abi::layout::PAGE_SIZE)
        || base
            .checked_add(ring_layout::SIZE)
            .is_none_or(|end| end > abi::layout::USER_END)
    {
        return bad;
    }
    let fits = |offset: u32, bytes: u64, align: u64| {
        u64::from(offset).is_multiple_of(align) && u64::from(offset) + bytes <= ring_layout::SIZE
    };
    let word = |offset: u32| fits(offset, 4, 4);
    let s = &params.sq_off;
    let c = &params.cq_off;
    let words = [
        s.head,
        s.tail,
        s.ring_mask,
        s.ring_entries,
        s.flags,
        s.dropped,
        c.head,
        c.tail,
        c.ring_mask,
        c.ring_entries,
        c.overflow,
        c.flags,
    ];
    let sqes_ok = ring_layout::SQES.is_multiple_of(64)
        && ring_layout::SQES + u64::from(sq) * size_of::<Sqe>() as u64 <= ring_layout::SIZE;
    if !words.into_iter().all(word)
        || !fits(s.array, 4 * u64::from(sq), 4)
        || !fits(c.cqes, u64::from(cq) * size_of::<Cqe>() as u64, 16)
        || !sqes_ok
    {
        return bad;
    }
    Ok(Layout {
        base,
        sq_entries: sq,
        cq_entries: cq,
    })
}

/// Which syscalls drive a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// io_uring: syscalls 12-14 on this descriptor.
    IoUring { fd: u64 },
    /// The Ring API: syscalls 2000-2002 on the process's one context.
    RingApi { sqpoll: bool },
    /// The process's system ring (`SyscallMode::RingBased`, see
    /// [`abi::StartInfo`]) in an io_uring kernel: registered ring 0.
    SystemIoUring,
    /// The process's system ring in a Ring API kernel: `ring_enter` with
    /// `SYSTEM_RING`.
    SystemRingApi,
}

/// `ring_setup(params)`: creates the process's Ring API context; `params`
/// is read and filled in (see [`abi::ring_api`]).
///
/// # Safety
///
/// `params` must be valid for reading and writing one
/// [`RingSetupParams`], or an address the kernel is bound to refuse.
pub unsafe fn ring_setup_raw(params: u64) -> Result<u64, Errno> {
    // SAFETY: the caller vouches for `params`.
    Errno::from_ret(unsafe { raw::syscall1(nr::RING_SETUP, params) })
}

/// `ring_enter(flags, min_complete)`: the Ring API doorbell (flags from
/// [`abi::ring_api::enter_flags`]); returns how many SQEs it consumed.
///
/// Safe for the reason [`enter`] is.
pub fn ring_enter(flags: u32, min_complete: u32) -> Result<u32, Errno> {
    // SAFETY: no pointer arguments; the SQEs the kernel consumes were
    // published under `IoUring::push_sqe`'s contract.
    let ret = unsafe { raw::syscall2(nr::RING_ENTER, u64::from(flags), u64::from(min_complete)) };
    Errno::from_ret(ret).map(|n| n as u32)
}

/// `ring_register(opcode, arg, nr)` on the process's Ring API context.
///
/// # Safety
///
/// As for [`register_raw`]; and `CONTEXT_CLOSE` unmaps the context, so it
/// may only be sent when no [`IoUring`] views it (close that `IoUring` instead).
pub unsafe fn ring_register_raw(opcode: u32, arg: u64, nr: u32) -> Result<u64, Errno> {
    // SAFETY: the caller vouches for `arg`.
    Errno::from_ret(unsafe {
        raw::syscall3(nr::RING_REGISTER, u64::from(opcode), arg, u64::from(nr))
    })
}

/// `ring_register(CONTEXT_CLOSE, 0, 0)`: ends the process's Ring API
/// context and unmaps it. Only an `IoUring` viewing the context may call this
/// (module invariants), so it is private.
fn close_context() -> Result<(), Errno> {
    // SAFETY: CONTEXT_CLOSE takes no pointer; the callers own the only
    // views of the memory it unmaps and drop them with this call.
    unsafe { ring_register_raw(ring_api::CONTEXT_CLOSE, 0, 0) }.map(drop)
}

/// The io_uring params describing a Ring API context at `ring_addr`: the
/// same layout, so one validation and one set of accessors serve both.
fn ring_api_layout(p: &RingSetupParams) -> IoUringParams {
    let mut out = IoUringParams {
        sq_entries: p.sq_entries,
        cq_entries: p.cq_entries,
        flags: p.flags,
        features: p.features,
        ..IoUringParams::default()
    };
    // `ring_api::CONTEXT_LAYOUT` is io_uring's `ring_layout` (abi tests it).
    out.set_offsets(p.ring_addr);
    out
}

/// One header word of the mapping, for as long as the `IoUring` that keeps
/// it lives (the `'static` never leaves the `IoUring`).
fn word_at(base: u64, offset: u32) -> &'static AtomicU32 {
    let at = (base + u64::from(offset)) as *mut u32;
    // SAFETY: `validate` checked that the word lies, 4-aligned, inside the
    // ring mapping, which stays mapped until the `IoUring` this view is
    // kept in closes it (module invariants); all access goes through the
    // atomic.
    unsafe { AtomicU32::from_ptr(at) }
}

/// A mapped ring with io_uring's layout: which calls drive it, its params
/// and views of its queues.
///
/// An io_uring's `IoUring` owns its descriptor, as `OwnedFd` owns a file
/// descriptor: the safe close functions refuse it with `EBUSY` while the
/// `IoUring` lives, and closing or dropping the `IoUring` closes it, which
/// unmaps the ring. Dropping a Ring API context closes it (and unmaps it);
/// the system ring stays.
pub struct IoUring {
    api: Api,
    params: IoUringParams,
    /// The kernel's SQ head when SQEs were last published (SQPOLL
    /// bookkeeping for [`IoUring::enter`]'s count).
    head_at_publish: Cell<u32>,
    sq_head: &'static AtomicU32,
    sq_tail: &'static AtomicU32,
    sq_flags: &'static AtomicU32,
    sq_dropped: &'static AtomicU32,
    /// The SQ index array, `sq_entries` words.
    sq_array: &'static [AtomicU32],
    /// Whether the SQ array holds `i` at position `i` (written once when a
    /// private ring is mapped, as liburing does), so that pushing an SQE
    /// need not write it. Cleared when anything else writes the array.
    sq_array_identity: Cell<bool>,
    /// SQ slots known to be free: a lower bound, since the kernel only
    /// moves its head forward. The head is read again only when it runs
    /// out; cleared when the tail or head is rewritten by hand.
    sq_free: Cell<u32>,
    /// The SQE slots, `sq_entries` of them.
    sqes: *mut Sqe,
    sq_mask: u32,
    /// The tail including pushed but unpublished SQEs.
    sq_local_tail: u32,
    cq_head: &'static AtomicU32,
    cq_tail: &'static AtomicU32,
    cq_overflow: &'static AtomicU32,
    cqes: *const Cqe,
    cq_mask: u32,
    /// False once [`IoUring::close`] ran, so `Drop` does not close twice.
    open: bool,
}

// SAFETY: the raw pointers and `'static` views name the ring mapping,
// which belongs to the process, not to a thread, and stays mapped while the
// `IoUring` lives (module invariants); the header words are atomics, and
// SQE and CQE slots are only reached through `&mut self` or volatile copies.
// Nothing in it is tied to the thread that made it, so it may move to
// another (it is not `Sync`: `head_at_publish` is a `Cell`).
unsafe impl Send for IoUring {}

impl IoUring {
    /// `io_uring_setup(entries)` with `flags` (from
    /// [`abi::io_uring::setup_flags`]) and everything else zero.
    pub fn setup(entries: u32, flags: u32) -> Result<IoUring, Errno> {
        IoUring::setup_with_params(
            entries,
            IoUringParams {
                flags,
                ..IoUringParams::default()
            },
        )
    }

    /// `io_uring_setup(entries, &params)` with the caller's params (for
    /// `CQSIZE`'s `cq_entries`, or deliberately bad fields). Returns the
    /// kernel's error, or `ERANGE` if the kernel's answer describes a
    /// mapping outside [`ring_layout::SIZE`] or a descriptor that cannot be
    /// a new one (at or past `FDS_MAX`, or owned by a live ring); the
    /// descriptor is then closed.
    pub fn setup_with_params(entries: u32, mut params: IoUringParams) -> Result<IoUring, Errno> {
        // SAFETY: `params` is a local `IoUringParams`.
        let fd = unsafe { setup_raw(entries, &raw mut params as u64)? };
        if let Err(err) = raw::claim_ring_fd(fd) {
            // Past `FDS_MAX`, or a number the table holds for a live ring:
            // not a new descriptor this layer can own. Nothing views it.
            let _ = raw::close(fd);
            return Err(err);
        }
        match IoUring::map(Api::IoUring { fd }, params) {
            Ok(ring) => Ok(ring),
            Err(err) => {
                // SAFETY: the descriptor was claimed above and no
                // `IoUring` views its mapping.
                let _ = unsafe { raw::close_unchecked(fd) };
                Err(err)
            }
        }
    }

    /// `ring_setup(&params)`: the process's Ring API context (one per
    /// process; a second is `EBUSY`). Returns the ring and the params as
    /// the kernel filled them in, or the kernel's error, or `ERANGE` if its
    /// answer describes memory outside the context layout.
    pub fn setup_ring_api(
        mut params: RingSetupParams,
    ) -> Result<(IoUring, RingSetupParams), Errno> {
        // SAFETY: `params` is a local `RingSetupParams`.
        unsafe { ring_setup_raw(&raw mut params as u64)? };
        let sqpoll = params.flags & ring_api::setup_flags::SQPOLL != 0;
        match IoUring::map(Api::RingApi { sqpoll }, ring_api_layout(&params)) {
            Ok(ring) => Ok((ring, params)),
            Err(err) => {
                let _ = close_context();
                Err(err)
            }
        }
    }

    /// The process's system ring as the kernel described it at entry
    /// (`ERANGE` if that description is not a ring layout, `ENOSYS` if the
    /// process has none).
    ///
    /// Crate-private: views of ring memory are only made from what the
    /// kernel itself reported (module invariants).
    pub(crate) fn system(info: &abi::StartInfo) -> Result<IoUring, Errno> {
        let api = match info.backend {
            _ if info.mode != abi::syscall::mode::RING_BASED => return Err(ENOSYS),
            abi::syscall::backend::IO_URING => Api::SystemIoUring,
            abi::syscall::backend::RING_API => Api::SystemRingApi,
            _ => return Err(ENOSYS),
        };
        let mut params = IoUringParams {
            sq_entries: info.sq_entries,
            cq_entries: info.cq_entries,
            ..IoUringParams::default()
        };
        params.set_offsets(info.ring_addr);
        IoUring::map(api, params)
    }

    /// A second view of the process's system ring, for a program that
    /// means to attack it (`ring_hostile system`).
    ///
    /// # Safety
    ///
    /// `info` must be the `StartInfo` the kernel passed this process
    /// ([`crate::sysring::start_info`]). The ring is shared with
    /// [`crate::sysring`]: anything written through this view can make the
    /// process's ordinary I/O fail, or wait for whatever the kernel makes
    /// of it, and the SQEs written must satisfy [`IoUring::push_sqe`]'s
    /// contract.
    pub unsafe fn system_view(info: &abi::StartInfo) -> Result<IoUring, Errno> {
        IoUring::system(info)
    }

    /// The views of a mapping the kernel described in `params`.
    fn map(api: Api, params: IoUringParams) -> Result<IoUring, Errno> {
        let layout = validate(&params)?;
        let base = layout.base;
        let (s, c) = (params.sq_off, params.cq_off);
        let array = (base + u64::from(s.array)) as *const AtomicU32;
        // SAFETY: `validate` checked that `sq_entries` 4-aligned words at
        // `array` lie inside the mapping, which stays mapped as long as
        // the `IoUring` that keeps this view (module invariants); they are
        // only accessed atomically.
        let sq_array = unsafe { core::slice::from_raw_parts(array, layout.sq_entries as usize) };
        // A private ring's SQ array maps position `i` to slot `i` once and
        // for all (liburing's way); the system ring's may be written by
        // another view (`system_view`), so its pushes keep writing it.
        let identity = matches!(api, Api::IoUring { .. } | Api::RingApi { .. });
        if identity {
            for (i, entry) in sq_array.iter().enumerate() {
                entry.store(i as u32, Ordering::Relaxed);
            }
        }
        Ok(IoUring {
            api,
            params,
            head_at_publish: Cell::new(word_at(base, s.head).load(Ordering::Acquire)),
            sq_head: word_at(base, s.head),
            sq_tail: word_at(base, s.tail),
            sq_flags: word_at(base, s.flags),
            sq_dropped: word_at(base, s.dropped),
            sq_array,
            sq_array_identity: Cell::new(identity),
            sq_free: Cell::new(0),
            sqes: (base + ring_layout::SQES) as *mut Sqe,
            sq_mask: layout.sq_entries - 1,
            // The kernel starts the queue at whatever tail it wrote.
            sq_local_tail: word_at(base, s.tail).load(Ordering::Acquire),
            cq_head: word_at(base, c.head),
            cq_tail: word_at(base, c.tail),
            cq_overflow: word_at(base, c.overflow),
            cqes: (base + u64::from(c.cqes)) as *const Cqe,
            cq_mask: layout.cq_entries - 1,
            open: true,
        })
    }

    /// The io_uring descriptor; `u64::MAX` (no descriptor) for a Ring API
    /// context.
    pub fn fd(&self) -> u64 {
        match self.api {
            Api::IoUring { fd } => fd,
            _ => u64::MAX,
        }
    }

    /// Which syscalls drive this ring.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Whether a kernel poller consumes the SQ (Ring API with SQPOLL).
    pub fn sqpoll(&self) -> bool {
        self.api == Api::RingApi { sqpoll: true }
    }

    /// The params the kernel returned (for a Ring API context: the same
    /// information in io_uring's form, offsets from the context address).
    pub fn params(&self) -> &IoUringParams {
        &self.params
    }

    /// User address of the ring mapping (`sq_off.user_addr`).
    pub fn base(&self) -> u64 {
        self.params.sq_off.user_addr
    }

    /// SQ size.
    pub fn sq_entries(&self) -> u32 {
        self.params.sq_entries
    }

    /// CQ size.
    pub fn cq_entries(&self) -> u32 {
        self.params.cq_entries
    }

    /// SQEs pushed but not yet consumed by the kernel (published or not).
    pub fn sq_pending(&self) -> u32 {
        self.sq_local_tail
            .wrapping_sub(self.sq_head.load(Ordering::Acquire))
    }

    /// SQEs pushed but not yet published with [`IoUring::publish`].
    pub fn sq_unpublished(&self) -> u32 {
        self.sq_local_tail
            .wrapping_sub(self.sq_tail.load(Ordering::Relaxed))
    }

    /// Free SQ slots.
    pub fn sq_space(&self) -> u32 {
        self.sq_entries().saturating_sub(self.sq_pending())
    }

    /// Writes `sqe` into the next free slot and its index into the SQ
    /// array; it reaches the kernel after [`IoUring::publish`] and
    /// [`IoUring::enter`]. False (nothing written) when the SQ is full.
    ///
    /// # Safety
    ///
    /// Every address `sqe` names (buffer, iovec array and the buffers it
    /// lists, path, timespec, statx destination, or a range of a registered
    /// buffer) must stay valid for the access the opcode makes, and not be
    /// otherwise used, until the SQE's completion has been reaped (or the
    /// process exits); or it must be an address the kernel is bound to
    /// refuse without touching.
    #[inline]
    pub unsafe fn push_sqe(&mut self, sqe: &Sqe) -> bool {
        let mut free = self.sq_free.get();
        if free == 0 {
            free = self.sq_space();
            if free == 0 {
                return false;
            }
        }
        self.sq_free.set(free - 1);
        let index = self.sq_local_tail & self.sq_mask;
        // SAFETY: `index <= sq_mask`, the slot is free (`sq_free` is a
        // lower bound of the free slots); the caller answers for the
        // addresses inside the SQE.
        unsafe { self.write_slot(self.sqes, index, sqe) };
        self.sq_local_tail = self.sq_local_tail.wrapping_add(1);
        true
    }

    /// Writes `sqe` into SQE slot `index` of `sqes` (this ring's SQEs) and
    /// its index into the SQ array unless that holds `i` at `i` already.
    ///
    /// # Safety
    ///
    /// `index <= sq_mask`, the slot is free (the kernel's head has moved
    /// past it), and `sqe` meets [`IoUring::push_sqe`]'s contract.
    #[inline(always)]
    unsafe fn write_slot(&self, sqes: *mut Sqe, index: u32, sqe: &Sqe) {
        // SAFETY: `index <= sq_mask < sq_entries`, and `validate` checked
        // that `sq_entries` SQEs at `sqes` lie in the mapping. The kernel
        // does not read a slot before its index is published (and a slot is
        // only reused once the kernel's head moved past it), and the writes
        // are volatile because the memory is shared; word by word, so that
        // a constant SQE becomes constant stores.
        unsafe {
            let slot = sqes.add(index as usize).cast::<u64>();
            for (i, word) in sqe.to_words().into_iter().enumerate() {
                ptr::write_volatile(slot.add(i), word);
            }
        }
        if !self.sq_array_identity.get() {
            self.sq_array[index as usize].store(index, Ordering::Relaxed);
        }
    }

    /// Makes every pushed SQE visible to the kernel: store-release of the
    /// SQ tail, ordered after the SQE and array writes.
    pub fn publish(&mut self) {
        // Only the Ring API's SQPOLL enter counts from this head.
        if matches!(self.api, Api::RingApi { sqpoll: true }) && self.sq_unpublished() > 0 {
            self.head_at_publish
                .set(self.sq_head.load(Ordering::Acquire));
        }
        self.sq_tail.store(self.sq_local_tail, Ordering::Release);
    }

    /// A run of pushes that keeps the SQ's local tail and free count in
    /// the returned guard (as the `io-uring` crate's `SubmissionQueue`
    /// does) and hands them back to the ring when dropped: a loop of
    /// [`SqBatch::push`] then keeps them in registers, where a loop of
    /// [`IoUring::push_sqe`] reloads and stores them around every SQE (its
    /// volatile SQE stores may alias them). Publishing is still
    /// [`IoUring::publish`], after the guard is gone.
    #[inline]
    pub fn sq_batch(&mut self) -> SqBatch<'_> {
        SqBatch {
            tail: self.sq_local_tail,
            free: self.sq_free.get(),
            mask: self.sq_mask,
            sqes: self.sqes,
            ring: self,
        }
    }

    /// Publishes, then tells whether an SQPOLL poller is asleep and must be
    /// woken (`NEED_WAKEUP`): the full fence between the tail store and the
    /// flags load pairs with the poller's between its flag store and its
    /// last look at the tail, so a poller going to sleep is never missed.
    pub fn publish_and_check_wakeup(&mut self) -> bool {
        self.publish();
        core::sync::atomic::fence(Ordering::SeqCst);
        self.sq_flags() & abi::io_uring::sq_flags::NEED_WAKEUP != 0
    }

    /// Asks the kernel to consume published SQEs and, with `GETEVENTS`, to
    /// wait for `min_complete` CQEs (`flags` from
    /// [`abi::io_uring::enter_flags`]). Returns how many SQEs were consumed.
    ///
    /// - io_uring: `io_uring_enter(fd, to_submit, min_complete, flags)`.
    /// - Ring API without SQPOLL: `ring_enter(flags, min_complete)`; the
    ///   doorbell consumes everything published, whatever `to_submit` says.
    /// - Ring API with SQPOLL: `ring_enter`, adding `SQ_WAIT` when
    ///   `to_submit > 0`, so that the poller has consumed what was
    ///   published when it returns; the count is how far the kernel's SQ
    ///   head moved since the last [`IoUring::publish`] (0 when `to_submit`
    ///   is 0).
    ///
    /// The three enter flag values are the same in both ABIs; other bits
    /// are passed on as they are (the kernel refuses them).
    #[inline]
    pub fn enter(&self, to_submit: u32, min_complete: u32, flags: u32) -> Result<u32, Errno> {
        match self.api {
            Api::IoUring { fd } => enter(fd, to_submit, min_complete, flags),
            Api::SystemIoUring => enter(
                0,
                to_submit,
                min_complete,
                flags | enter_flags::REGISTERED_RING,
            ),
            Api::RingApi { sqpoll: false } => ring_enter(flags, min_complete),
            Api::SystemRingApi => {
                ring_enter(flags | ring_api::enter_flags::SYSTEM_RING, min_complete)
            }
            Api::RingApi { sqpoll: true } => {
                if to_submit == 0 {
                    return ring_enter(flags, min_complete).map(|_| 0);
                }
                ring_enter(flags | ring_api::enter_flags::SQ_WAIT, min_complete)?;
                let head = self.sq_head.load(Ordering::Acquire);
                let moved = head.wrapping_sub(self.head_at_publish.replace(head));
                Ok(moved)
            }
        }
    }

    /// Publishes, then submits everything pending and waits for `wait`
    /// completions (`GETEVENTS` when `wait > 0`). Returns how many SQEs the
    /// kernel consumed.
    pub fn submit_and_wait(&mut self, wait: u32) -> Result<u32, Errno> {
        self.publish();
        let flags = if wait > 0 { enter_flags::GETEVENTS } else { 0 };
        self.enter(self.sq_pending(), wait, flags)
    }

    /// CQEs ready to be reaped.
    pub fn cq_ready(&self) -> u32 {
        self.cq_tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.cq_head.load(Ordering::Relaxed))
    }

    /// The CQE at the head, if any, without consuming it.
    pub fn peek_cqe(&self) -> Option<Cqe> {
        let head = self.cq_head.load(Ordering::Relaxed);
        let tail = self.cq_tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let index = (head & self.cq_mask) as usize;
        // SAFETY: `index <= cq_mask < cq_entries`, and `validate` checked
        // that `cq_entries` 16-aligned CQEs at `cqes` lie in the mapping.
        // The acquire load of the tail orders this read after the kernel's
        // write of the entry; the copy is volatile because the memory is
        // shared (a hostile kernel could rewrite it: it is plain data).
        Some(unsafe { ptr::read_volatile(self.cqes.add(index)) })
    }

    /// Takes up to `max` CQEs, oldest first, handing each to `f`, which
    /// returns false to stop after that one: the CQ tail is read once and
    /// the head stored once at the end (liburing's `io_uring_for_each_cqe`
    /// and `io_uring_cq_advance`). Returns how many were taken.
    #[inline]
    pub fn reap_cqes(&mut self, max: u32, mut f: impl FnMut(&Cqe) -> bool) -> u32 {
        let head = self.cq_head.load(Ordering::Relaxed);
        let ready = self
            .cq_tail
            .load(Ordering::Acquire)
            .wrapping_sub(head)
            .min(max);
        let mut taken = 0;
        while taken < ready {
            let index = (head.wrapping_add(taken) & self.cq_mask) as usize;
            // SAFETY: as in `peek_cqe`: `index <= cq_mask < cq_entries`, in
            // the mapping; the acquire load of the tail orders this read
            // after the kernel's write of the entry.
            let cqe = unsafe { ptr::read_volatile(self.cqes.add(index)) };
            taken += 1;
            if !f(&cqe) {
                break;
            }
        }
        // Store-release: the kernel reuses the slots only after the reads.
        self.cq_head
            .store(head.wrapping_add(taken), Ordering::Release);
        taken
    }

    /// The CQE at the head, consumed: store-release of the new head, so the
    /// kernel may reuse the slot only after the entry was read.
    pub fn pop_cqe(&mut self) -> Option<Cqe> {
        let cqe = self.peek_cqe()?;
        let head = self.cq_head.load(Ordering::Relaxed);
        self.cq_head.store(head.wrapping_add(1), Ordering::Release);
        Some(cqe)
    }

    /// The SQ `flags` word ([`abi::io_uring::sq_flags`]).
    pub fn sq_flags(&self) -> u32 {
        self.sq_flags.load(Ordering::Acquire)
    }

    /// The SQ `dropped` counter.
    pub fn sq_dropped(&self) -> u32 {
        self.sq_dropped.load(Ordering::Acquire)
    }

    /// The CQ `overflow` counter.
    pub fn cq_overflow(&self) -> u32 {
        self.cq_overflow.load(Ordering::Acquire)
    }

    /// Header word `word` ([`abi::io_uring::header`]) of `queue`, read from
    /// the mapping (located through the params, as the kernel reported).
    pub fn header_word(&self, queue: Queue, word: usize) -> Option<u32> {
        self.header_word_ref(queue, word)
            .map(|w| w.load(Ordering::Acquire))
    }

    fn header_word_ref(&self, queue: Queue, word: usize) -> Option<&'static AtomicU32> {
        let (s, c) = (&self.params.sq_off, &self.params.cq_off);
        let offset = match (queue, word) {
            (Queue::Submission, header::HEAD) => s.head,
            (Queue::Submission, header::TAIL) => s.tail,
            (Queue::Submission, header::MASK) => s.ring_mask,
            (Queue::Submission, header::ENTRIES) => s.ring_entries,
            (Queue::Submission, header::FLAGS) => s.flags,
            (Queue::Submission, header::DROPPED) => s.dropped,
            (Queue::Completion, header::HEAD) => c.head,
            (Queue::Completion, header::TAIL) => c.tail,
            (Queue::Completion, header::MASK) => c.ring_mask,
            (Queue::Completion, header::ENTRIES) => c.ring_entries,
            (Queue::Completion, header::FLAGS) => c.flags,
            (Queue::Completion, header::OVERFLOW) => c.overflow,
            _ => return None,
        };
        Some(word_at(self.base(), offset))
    }

    /// SQ array entry `position` (masked).
    pub fn sq_array_entry(&self, position: u32) -> u32 {
        self.sq_array[(position & self.sq_mask) as usize].load(Ordering::Acquire)
    }

    /// The SQE in slot `slot` (masked), as ring memory holds it now.
    pub fn sqe_slot(&self, slot: u32) -> Sqe {
        let index = (slot & self.sq_mask) as usize;
        // SAFETY: `index < sq_entries`, inside the mapping (`validate`).
        unsafe { ptr::read_volatile(self.sqes.add(index)) }
    }

    /// Overwrites header word `word` of `queue` with `value`; false if the
    /// queue has no such word. For the hostile-memory test.
    ///
    /// # Safety
    ///
    /// Moving the SQ head or tail (or the CQ head) can make the kernel
    /// consume any SQE slot again or anew, so [`IoUring::push_sqe`]'s contract
    /// must hold for the current contents of *every* SQE slot.
    pub unsafe fn write_header_word(&self, queue: Queue, word: usize, value: u32) -> bool {
        self.sq_free.set(0);
        match self.header_word_ref(queue, word) {
            Some(w) => {
                w.store(value, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Overwrites SQ array entry `position` (masked) with `value`, which
    /// need not be a valid SQE index (the kernel must then drop the entry).
    ///
    /// # Safety
    ///
    /// As for [`IoUring::write_header_word`]: the SQE slot `value` names (if
    /// any) must satisfy [`IoUring::push_sqe`]'s contract.
    pub unsafe fn write_sq_array(&self, position: u32, value: u32) {
        self.sq_array_identity.set(false);
        self.sq_array[(position & self.sq_mask) as usize].store(value, Ordering::Release);
    }

    /// Overwrites SQE slot `slot` (masked) with `sqe` without queueing it.
    ///
    /// # Safety
    ///
    /// As for [`IoUring::push_sqe`]: the kernel may consume this slot whenever
    /// the SQ array and tail lead it there.
    pub unsafe fn write_sqe_slot(&self, slot: u32, sqe: &Sqe) {
        let index = (slot & self.sq_mask) as usize;
        // SAFETY: `index < sq_entries`, inside the mapping (`validate`);
        // the caller answers for the addresses inside `sqe`.
        unsafe { ptr::write_volatile(self.sqes.add(index), *sqe) };
    }

    /// Takes back every SQE published but not consumed: the SQ tail goes
    /// back to the kernel's head. Crate-private because it is only sound
    /// for a ring whose kernel side reads the SQ only inside `enter` (the
    /// system ring, which has no poller), between two calls.
    pub(crate) fn withdraw_published(&mut self) {
        let head = self.sq_head.load(Ordering::Acquire);
        self.sq_tail.store(head, Ordering::Release);
        self.sq_local_tail = head;
        self.sq_free.set(0);
    }

    /// Re-reads the SQ tail from ring memory into the local tail (after a
    /// test scribbled on it), so that pushing goes on from there.
    pub fn resync_sq_tail(&mut self) {
        self.sq_local_tail = self.sq_tail.load(Ordering::Acquire);
        self.sq_free.set(0);
    }

    /// `io_uring_register` with a raw argument; see [`register_raw`].
    ///
    /// # Safety
    ///
    /// As for [`register_raw`].
    pub unsafe fn register(&self, opcode: u32, arg: u64, nr: u32) -> Result<u64, Errno> {
        match self.api {
            // SAFETY: passed on to the caller.
            Api::IoUring { fd } => unsafe { register_raw(fd, opcode, arg, nr) },
            // SAFETY: passed on to the caller.
            Api::RingApi { .. } => unsafe { ring_register_raw(opcode, arg, nr) },
            // The system ring cannot be registered with.
            Api::SystemIoUring | Api::SystemRingApi => Err(EINVAL),
        }
    }

    /// `REGISTER_BUFFERS` with `iovecs` (the kernel copies the array). The
    /// memory they name is only accessed by fixed-buffer SQEs, which
    /// [`IoUring::push_sqe`]'s contract covers; bad ranges must fail `EFAULT`.
    pub fn register_buffers(&self, iovecs: &[IoVec]) -> Result<(), Errno> {
        let nr = u32::try_from(iovecs.len()).map_err(|_| abi::errno::EINVAL)?;
        // SAFETY: the kernel reads `nr` iovecs from a borrowed slice.
        unsafe { self.register(register::REGISTER_BUFFERS, iovecs.as_ptr() as u64, nr) }.map(drop)
    }

    /// `UNREGISTER_BUFFERS`.
    pub fn unregister_buffers(&self) -> Result<(), Errno> {
        // SAFETY: no argument memory.
        unsafe { self.register(register::UNREGISTER_BUFFERS, 0, 0) }.map(drop)
    }

    /// `REGISTER_FILES` with descriptor numbers (`-1` = empty slot).
    pub fn register_files(&self, fds: &[i32]) -> Result<(), Errno> {
        let nr = u32::try_from(fds.len()).map_err(|_| abi::errno::EINVAL)?;
        // SAFETY: the kernel reads `nr` i32s from a borrowed slice.
        unsafe { self.register(register::REGISTER_FILES, fds.as_ptr() as u64, nr) }.map(drop)
    }

    /// `UNREGISTER_FILES`.
    pub fn unregister_files(&self) -> Result<(), Errno> {
        // SAFETY: no argument memory.
        unsafe { self.register(register::UNREGISTER_FILES, 0, 0) }.map(drop)
    }

    /// `REGISTER_PROBE` with room for 256 entries.
    pub fn probe(&self) -> Result<ProbeReport, Errno> {
        let mut buf = alloc::boxed::Box::new(ProbeBuffer {
            header: Probe::default(),
            ops: [ProbeOp::default(); 256],
        });
        let arg = &raw mut *buf as u64;
        // SAFETY: `buf` is a header followed by 256 writable entries, and
        // `nr` says 256.
        unsafe { self.register(register::REGISTER_PROBE, arg, 256)? };
        let len = usize::from(buf.header.ops_len);
        Ok(ProbeReport {
            last_op: buf.header.last_op,
            ops: buf.ops[..len].to_vec(),
        })
    }

    /// Closes the ring, reporting any error: an io_uring's descriptor
    /// (pending work is dropped, the mapping is unmapped and its slot
    /// freed, the descriptor number may be reused), a Ring API context
    /// with `CONTEXT_CLOSE` (its poller ends, its memory is unmapped, a new
    /// `ring_setup` may follow). The system ring is not closed.
    pub fn close(mut self) -> Result<(), Errno> {
        self.open = false;
        match self.api {
            // SAFETY: this `IoUring` owns the descriptor and holds the only
            // views of its mapping, which end with `self` here.
            Api::IoUring { fd } => unsafe { raw::close_unchecked(fd) },
            Api::RingApi { .. } => close_context(),
            Api::SystemIoUring | Api::SystemRingApi => Ok(()),
        }
    }

    /// Gives the ring up without closing it, as `IntoRawFd` does: the
    /// views end here and an io_uring's descriptor is returned, no longer
    /// owned, so the caller may close it with [`crate::sys::close_ring`]
    /// (which unmaps the ring) or keep it until exit. A ring without a
    /// descriptor (a Ring API context, the system ring) gives `None` and is
    /// closed as dropping it would.
    pub fn into_raw_fd(mut self) -> Option<u64> {
        let Api::IoUring { fd } = self.api else {
            return None;
        };
        self.open = false;
        raw::release_ring_fd(fd);
        Some(fd)
    }
}

impl Drop for IoUring {
    fn drop(&mut self) {
        match (self.open, self.api) {
            (true, Api::IoUring { fd }) => {
                // SAFETY: as in `close`: the views end with `self`.
                let _ = unsafe { raw::close_unchecked(fd) };
            }
            (true, Api::RingApi { .. }) => {
                let _ = close_context();
            }
            _ => {}
        }
    }
}

/// Pushes onto an [`IoUring`] with its SQ bookkeeping held in locals (see
/// [`IoUring::sq_batch`]).
pub struct SqBatch<'a> {
    ring: &'a mut IoUring,
    tail: u32,
    free: u32,
    mask: u32,
    sqes: *mut Sqe,
}

impl SqBatch<'_> {
    /// [`IoUring::push_sqe`] within the batch. False (nothing written)
    /// when the SQ is full.
    ///
    /// # Safety
    ///
    /// As for [`IoUring::push_sqe`].
    #[inline]
    pub unsafe fn push(&mut self, sqe: &Sqe) -> bool {
        if self.free == 0 {
            let head = self.ring.sq_head.load(Ordering::Acquire);
            self.free = self
                .ring
                .sq_entries()
                .saturating_sub(self.tail.wrapping_sub(head));
            if self.free == 0 {
                return false;
            }
        }
        self.free -= 1;
        let index = self.tail & self.mask;
        // SAFETY: `index <= sq_mask`, the slot is free (`free` is a lower
        // bound of the free slots); the caller answers for the SQE.
        unsafe { self.ring.write_slot(self.sqes, index, sqe) };
        self.tail = self.tail.wrapping_add(1);
        true
    }
}

impl Drop for SqBatch<'_> {
    fn drop(&mut self) {
        self.ring.sq_local_tail = self.tail;
        self.ring.sq_free.set(self.free);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::io_uring::{CqRingOffsets, SqRingOffsets};

    /// The params the contract promises for a first ring of `sq` entries.
    fn contract_params(sq: u32, cq: u32) -> IoUringParams {
        let base = abi::layout::USER_IO_URING_BASE;
        let sqh = |w: usize| (ring_layout::SQ_HEADER + 4 * w as u64) as u32;
        let cqh = |w: usize| (ring_layout::CQ_HEADER + 4 * w as u64) as u32;
        IoUringParams {
            sq_entries: sq,
            cq_entries: cq,
            sq_off: SqRingOffsets {
                head: sqh(header::HEAD),
                tail: sqh(header::TAIL),
                ring_mask: sqh(header::MASK),
                ring_entries: sqh(header::ENTRIES),
                flags: sqh(header::FLAGS),
                dropped: sqh(header::DROPPED),
                array: ring_layout::SQ_ARRAY as u32,
                resv1: 0,
                user_addr: base,
            },
            cq_off: CqRingOffsets {
                head: cqh(header::HEAD),
                tail: cqh(header::TAIL),
                ring_mask: cqh(header::MASK),
                ring_entries: cqh(header::ENTRIES),
                overflow: cqh(header::OVERFLOW),
                cqes: ring_layout::CQES as u32,
                flags: cqh(header::FLAGS),
                resv1: 0,
                user_addr: base,
            },
            ..IoUringParams::default()
        }
    }

    #[test]
    fn the_contract_layout_validates() {
        for sq in [1, 2, 64, 256] {
            let cq = (2 * sq).min(256);
            let layout = validate(&contract_params(sq, cq)).unwrap();
            assert_eq!(layout.sq_entries, sq);
            assert_eq!(layout.cq_entries, cq);
            assert_eq!(layout.base, abi::layout::USER_IO_URING_BASE);
        }
    }

    #[test]
    fn bad_answers_from_the_kernel_are_refused() {
        let good = contract_params(8, 16);
        let cases: [fn(&mut IoUringParams); 9] = [
            |p| p.sq_entries = 3,
            |p| p.cq_entries = 0,
            |p| p.sq_entries = 512,
            |p| p.sq_off.user_addr = 0,
            |p| p.cq_off.user_addr += 0x1000,
            |p| p.sq_off.tail = ring_layout::SIZE as u32,
            |p| p.sq_off.flags = 2,
            |p| p.cq_off.cqes = ring_layout::SIZE as u32 - 16,
            |p| {
                p.sq_off.user_addr = abi::layout::USER_END - 0x1000;
                p.cq_off.user_addr = p.sq_off.user_addr;
            },
        ];
        for (i, break_it) in cases.iter().enumerate() {
            let mut p = good;
            break_it(&mut p);
            assert_eq!(validate(&p), Err(ERANGE), "case {i}");
        }
    }

    #[test]
    fn a_ring_api_context_has_the_io_uring_layout() {
        for sq in [1, 8, 256] {
            let cq = (2 * sq).min(256);
            let p = RingSetupParams {
                sq_entries: sq,
                cq_entries: cq,
                ring_addr: abi::layout::USER_RING_CONTEXT_BASE,
                ..RingSetupParams::default()
            };
            let derived = ring_api_layout(&p);
            let layout = validate(&derived).unwrap();
            assert_eq!(layout.base, abi::layout::USER_RING_CONTEXT_BASE);
            assert_eq!((layout.sq_entries, layout.cq_entries), (sq, cq));
            // The same offsets an io_uring at another base reports.
            let mut io = contract_params(sq, cq);
            io.sq_off.user_addr = p.ring_addr;
            io.cq_off.user_addr = p.ring_addr;
            assert_eq!((derived.sq_off, derived.cq_off), (io.sq_off, io.cq_off));
        }
        // A kernel answer with a bad size is refused before any use.
        let bad = RingSetupParams {
            sq_entries: 3,
            cq_entries: 8,
            ring_addr: abi::layout::USER_RING_CONTEXT_BASE,
            ..RingSetupParams::default()
        };
        assert_eq!(validate(&ring_api_layout(&bad)), Err(ERANGE));
    }

    #[test]
    fn probe_report_lists_supported_opcodes() {
        let op = |op: u8, flags: u16| ProbeOp {
            op,
            flags,
            ..ProbeOp::default()
        };
        let report = ProbeReport {
            last_op: 23,
            ops: alloc::vec![op(22, 1), op(0, 1), op(6, 0), op(1, 1)],
        };
        assert_eq!(report.supported(), [0, 1, 22]);
    }
}
