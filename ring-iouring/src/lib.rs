//! The io_uring backend: syscalls 12 (`io_uring_setup`), 13
//! (`io_uring_enter`) and 14 (`io_uring_register`), Linux-compatible in
//! layout and semantics.
//!
//! This crate only does what is specific to the io_uring calling
//! convention: decoding the three syscalls, placing each ring at its fixed
//! address (`USER_IO_URING_BASE + slot * RING_SLOT_STRIDE`, the lowest slot
//! free; closing a ring unmaps it and frees its slot), the process's table
//! of rings, and the system ring of a process in
//! `SyscallMode::RingBased` (at `USER_SYSTEM_RING_BASE`, no descriptor,
//! reached as registered ring 0 with `IORING_ENTER_REGISTERED_RING`). Submission, completion, links, drain,
//! overflow, timeouts and every op are the shared engine's
//! (`kernel_core::ring::engine`), reached through `RingHost`.
//!
//! Invariants:
//! - A ring belongs to one process. Its memory is held by a
//!   `RingMapping` (and by the owner's user mapping): views borrow from it,
//!   so nothing here can reach memory that was freed.
//! - A process has at most `MAX_RINGS_PER_PROCESS` rings open at once (the
//!   system ring aside); a slot is free again once its ring is released
//!   and unmapped.
//! - The ring lock is never held while the caller sleeps.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

use abi::errno::*;
use abi::io_uring::{
    enter_flags, features, ring_layout, setup_flags, IoUringParams, REGISTERED_RINGS_MAX,
};
use abi::layout::{USER_IO_URING_BASE, USER_SYSTEM_RING_BASE};
use abi::{IntoBytes, SYSTEM_RING_ENTRIES};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use hashbrown::HashMap;
use kernel_core::ring::engine::RingEngine;
use kernel_core::ring::{
    AsDynHost, BackendKind, FdRing, RawArgs, RingBackend, RingHost, SystemRing,
};
use spin::Mutex;

/// Bytes of `struct io_uring_params`.
const PARAMS_SIZE: usize = core::mem::size_of::<IoUringParams>();

/// One io_uring instance: the engine's descriptor-backed ring
/// (`kernel_core::ring::FdRing`), whose `slot` is its mapping slot (`None`
/// for the system ring).
type Ring = FdRing;

#[derive(Default)]
struct Table {
    /// Every ring, system rings included, by id.
    rings: HashMap<u64, Arc<Mutex<Ring>>>,
    /// The mapping slots of each process.
    slots: HashMap<u64, Slots>,
    /// The system ring of each `RingBased` process (registered ring 0).
    system: HashMap<u64, Arc<Mutex<Ring>>>,
}

/// One process's mapping slots, as bit masks (bit `n`: slot `n`).
#[derive(Default)]
struct Slots {
    /// Slots whose address is mapped (or being mapped).
    used: u32,
    /// Used slots whose ring was released by a thread that could not unmap
    /// it (not the owner): the owner's next setup unmaps them.
    stale: u32,
}

impl Slots {
    /// Takes the lowest free slot below `max`.
    fn take(&mut self, max: u32) -> Option<u32> {
        let slot = (!self.used).trailing_zeros();
        (slot < max).then(|| {
            self.used |= 1 << slot;
            slot
        })
    }

    /// Frees `slot` (its address is no longer mapped).
    fn put(&mut self, slot: u32) {
        self.used &= !(1 << slot);
        self.stale &= !(1 << slot);
    }
}

/// Mapping slots of a process: rings it may have open at once.
const MAX_SLOTS: u32 = ring_layout::MAX_RINGS_PER_PROCESS as u32;
const _: () = assert!(MAX_SLOTS <= u32::BITS, "a slot mask is a u32");

/// User address of mapping slot `slot`.
fn slot_base(slot: u32) -> u64 {
    USER_IO_URING_BASE + u64::from(slot) * ring_layout::RING_SLOT_STRIDE
}

/// The io_uring backend.
pub struct IoUring {
    table: Mutex<Option<Table>>,
    next_id: AtomicU64,
}

/// The single instance the kernel image registers.
pub static BACKEND: IoUring = IoUring::new();

impl Default for IoUring {
    fn default() -> Self {
        Self::new()
    }
}

/// Wait-queue keys of this backend: the high bit tells them from others'.
const WAIT_KEY_TAG: u64 = 1 << 63;

impl IoUring {
    /// A backend with no rings.
    pub const fn new() -> Self {
        Self {
            table: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    fn with_table<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        f(self.table.lock().get_or_insert_with(Table::default))
    }

    #[inline]
    fn ring<H: RingHost + ?Sized>(&self, host: &mut H, fd: u64) -> Result<Arc<Mutex<Ring>>, Errno> {
        let fd = i32::try_from(fd).map_err(|_| EBADF)?;
        host.ring_of_fd(BackendKind::IoUring, fd)
    }

    /// The caller's registered ring `index` (`IORING_ENTER_REGISTERED_RING`):
    /// only index 0, the system ring, exists.
    /// As on Linux, the index is the low 32 bits of the `fd` argument; one
    /// past the table is `EINVAL`, an empty slot `EBADF`.
    fn registered<H: RingHost + ?Sized>(
        &self,
        host: &mut H,
        index: u64,
    ) -> Result<Arc<Mutex<Ring>>, Errno> {
        match index as u32 {
            i if i >= REGISTERED_RINGS_MAX => Err(EINVAL),
            0 => {
                let pid = host.pid();
                self.with_table(|t| t.system.get(&pid).cloned())
                    .ok_or(EBADF)
            }
            _ => Err(EBADF),
        }
    }

    /// `io_uring_enter(fd, to_submit, min_complete, flags)`, generic over
    /// the host: `RingBackend::enter` is this with `dyn RingHost`, and a
    /// kernel that calls it with its own host type pays no virtual call
    /// for the ring lookup, the caller's id, its environment or the timer
    /// (the call every submission makes; see docs/io_uring.md).
    #[inline]
    pub fn enter_in<H: AsDynHost + ?Sized>(
        &self,
        host: &mut H,
        args: RawArgs,
    ) -> Result<u64, Errno> {
        let [fd, to_submit, min_complete, flags, ..] = args.0;
        let flags = u32::try_from(flags).map_err(|_| EINVAL)?;
        if flags & !enter_flags::SUPPORTED != 0 {
            return Err(EINVAL);
        }
        let ring = if flags & enter_flags::REGISTERED_RING != 0 {
            self.registered(host, fd)?
        } else {
            self.ring(host, fd)?
        };
        let to_submit = u32::try_from(to_submit).unwrap_or(u32::MAX);
        let pid = host.pid();

        let (submitted, wait) = {
            let mut guard = ring.lock();
            let r = &mut *guard;
            let shared = r.mapping.shared();
            let submitted = if r.engine.is_calm() && !r.engine.mailbox().has_posts() {
                // Calm (nothing in overflow, pending or open) and no I/O
                // posted: straight to the submission.
                if to_submit > 0 {
                    let env = host.caller_env().ok_or(EPERM)?;
                    r.engine.submit_calm(&shared, env, to_submit)
                } else {
                    0
                }
            } else {
                r.engine.flush_overflow(&shared);
                if r.engine.mailbox().has_posts() {
                    let env = host.caller_env().ok_or(EPERM)?;
                    r.engine.reap_io(&shared, env);
                }
                if to_submit > 0 {
                    let env = host.caller_env().ok_or(EPERM)?;
                    r.engine.submit(&shared, env, to_submit)?
                } else {
                    0
                }
            };
            if !r.engine.is_calm() {
                if let Some(deadline) = r.engine.next_deadline() {
                    host.arm_timer(deadline);
                }
            }
            // At most a full CQ (`cq_entries` fits a u32).
            let want = min_complete.min(u64::from(r.engine.cq_entries())) as u32;
            // As Linux: a submission that took fewer SQEs than asked (one
            // failed prep, or fewer were published) returns at once.
            let wait = flags & enter_flags::GETEVENTS != 0
                && submitted == to_submit
                && !r.engine.cq_holds(&shared, want);
            (submitted, wait.then_some((want, r.wait_key)))
        };
        if let Some((want, key)) = wait {
            wait_cqes(host.as_dyn(), &ring, pid, want, key);
        }
        Ok(u64::from(submitted))
    }

    /// Maps a ring in the caller, at mapping slot `slot` or (with `None`)
    /// at the system ring's address, and enters it in the table.
    fn create(
        &self,
        host: &mut dyn RingHost,
        slot: Option<u32>,
        sq_entries: u32,
        cq_entries: u32,
        iopoll: bool,
    ) -> Result<(u64, Arc<Mutex<Ring>>), Errno> {
        let base = slot.map_or(USER_SYSTEM_RING_BASE, slot_base);
        let mapping = host.map_ring(base)?;
        let mut engine = RingEngine::new(sq_entries, cq_entries);
        engine.init_shared(&mapping.shared());
        engine.set_iopoll(iopoll);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        engine.mailbox().set_wait_key(WAIT_KEY_TAG | id);
        let ring = Arc::new(Mutex::new(Ring {
            pid: host.pid(),
            slot,
            mapping,
            engine,
            wait_key: WAIT_KEY_TAG | id,
        }));
        self.with_table(|t| t.rings.insert(id, ring.clone()));
        Ok((id, ring))
    }

    /// Takes the caller's lowest free mapping slot (`EMFILE` if it has
    /// `MAX_RINGS_PER_PROCESS` rings), first unmapping the slots of rings
    /// that were released where they could not be unmapped.
    fn take_slot(&self, host: &mut dyn RingHost, pid: u64) -> Result<u32, Errno> {
        let mut stale = self.with_table(|t| t.slots.get(&pid).map_or(0, |s| s.stale));
        while stale != 0 {
            let slot = stale.trailing_zeros();
            stale &= !(1 << slot);
            if host.unmap_ring(slot_base(slot)).is_ok() {
                self.with_table(|t| t.slots.entry(pid).or_default().put(slot));
            }
        }
        self.with_table(|t| t.slots.entry(pid).or_default().take(MAX_SLOTS))
            .ok_or(EMFILE)
    }

    /// Unmaps mapping slot `slot` of process `pid` and frees it; when the
    /// caller is not `pid` (only the owner can unmap) the slot stays taken
    /// until the owner's next setup or its end.
    fn free_slot(&self, host: &mut dyn RingHost, pid: u64, slot: u32) {
        let unmapped = host.pid() == pid && host.unmap_ring(slot_base(slot)).is_ok();
        self.with_table(|t| {
            if let Some(slots) = t.slots.get_mut(&pid) {
                if unmapped {
                    slots.put(slot);
                } else {
                    slots.stale |= 1 << slot;
                }
            }
        });
    }
}

/// Entries rounded up to a power of two and clamped to what the layout holds.
fn ring_size(requested: u32, max: u32) -> u32 {
    requested.min(max).next_power_of_two()
}

impl RingBackend for IoUring {
    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    /// `io_uring_setup(entries, params)`.
    fn setup(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno> {
        let [entries, params_ptr, ..] = args.0;
        let pid = host.pid();
        let entries = u32::try_from(entries).map_err(|_| EINVAL)?;
        if entries == 0 {
            return Err(EINVAL);
        }
        let mut params = IoUringParams::default();
        {
            let env = host.env(pid).ok_or(EPERM)?;
            // Checked writable up front, so a bad pointer costs no ring slot.
            env.check_user(params_ptr, PARAMS_SIZE as u64, true)?;
            env.read_user(params_ptr, params.as_mut_bytes())?;
        }
        let accepted = setup_flags::CQSIZE | setup_flags::CLAMP | setup_flags::IOPOLL;
        if params.flags & !accepted != 0 || params.resv != [0; 3] {
            return Err(EINVAL);
        }
        let sq_entries = ring_size(entries, ring_layout::MAX_SQ_ENTRIES);
        let cq_entries = if params.flags & setup_flags::CQSIZE != 0 {
            if params.cq_entries == 0 {
                return Err(EINVAL);
            }
            let cq = ring_size(params.cq_entries, ring_layout::MAX_CQ_ENTRIES);
            if cq < sq_entries {
                return Err(EINVAL);
            }
            cq
        } else {
            (2 * sq_entries).min(ring_layout::MAX_CQ_ENTRIES)
        };

        let slot = self.take_slot(host, pid)?;
        let iopoll = params.flags & setup_flags::IOPOLL != 0;
        let (id, ring) = match self.create(host, Some(slot), sq_entries, cq_entries, iopoll) {
            Ok(made) => made,
            Err(e) => {
                // Nothing was mapped.
                self.with_table(|t| t.slots.entry(pid).or_default().put(slot));
                return Err(e);
            }
        };
        let fd = match host.install_fd(BackendKind::IoUring, id, ring) {
            Ok(fd) => fd,
            Err(e) => {
                let ring = self.with_table(|t| t.rings.remove(&id));
                drop(ring);
                self.free_slot(host, pid, slot);
                return Err(e);
            }
        };

        params.sq_entries = sq_entries;
        params.cq_entries = cq_entries;
        params.features = features::SINGLE_MMAP
            | features::NODROP
            | features::SUBMIT_STABLE
            | features::RW_CUR_POS;
        params.set_offsets(slot_base(slot));
        if let Some(env) = host.env(pid) {
            // Checked writable above; nothing in between can unmap it.
            env.write_user(params_ptr, params.as_bytes())?;
        }
        Ok(fd as u64)
    }

    /// `io_uring_enter(fd, to_submit, min_complete, flags)`: [`IoUring::enter_in`].
    fn enter(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno> {
        self.enter_in(host, args)
    }

    /// `io_uring_register(fd, opcode, arg, nr_args)`.
    fn register(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno> {
        let [fd, opcode, arg, nr, ..] = args.0;
        let opcode = u32::try_from(opcode).map_err(|_| EINVAL)?;
        let nr = u32::try_from(nr).map_err(|_| EINVAL)?;
        let ring = self.ring(host, fd)?;
        let pid = host.pid();
        let env = host.env(pid).ok_or(EPERM)?;
        let mut r = ring.lock();
        r.engine.register(env, opcode, arg, nr)
    }

    fn setup_system_ring(&self, host: &mut dyn RingHost) -> Result<SystemRing, Errno> {
        let pid = host.pid();
        if pid == 0 {
            return Err(EPERM);
        }
        if self.with_table(|t| t.system.contains_key(&pid)) {
            return Err(EBUSY);
        }
        let sq_entries = SYSTEM_RING_ENTRIES;
        let cq_entries = 2 * sq_entries;
        let (_, ring) = self.create(host, None, sq_entries, cq_entries, false)?;
        self.with_table(|t| t.system.insert(pid, ring));
        Ok(SystemRing {
            addr: USER_SYSTEM_RING_BASE,
            sq_entries,
            cq_entries,
        })
    }

    fn release(&self, host: &mut dyn RingHost, pid: u64, id: u64) {
        let ring = self.with_table(|t| t.rings.remove(&id));
        if let Some(ring) = ring {
            retire(host, &ring);
            // A timer pass may still hold the ring: its memory stays
            // allocated (not mapped) until that clone goes too.
            let slot = ring.lock().slot;
            if let Some(slot) = slot {
                self.free_slot(host, pid, slot);
            }
        }
    }

    fn teardown(&self, host: &mut dyn RingHost, pid: u64) {
        let rings: alloc::vec::Vec<Arc<Mutex<Ring>>> = self.with_table(|t| {
            t.slots.remove(&pid);
            t.system.remove(&pid);
            let ids: alloc::vec::Vec<u64> = t
                .rings
                .iter()
                .filter(|(_, r)| r.lock().pid == pid)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| t.rings.remove(id)).collect()
        });
        for ring in &rings {
            retire(host, ring);
        }
    }

    fn poll_timers(&self, host: &mut dyn RingHost) {
        let now = host.now_ns();
        let rings: alloc::vec::Vec<Arc<Mutex<Ring>>> =
            self.with_table(|t| t.rings.values().cloned().collect());
        for ring in rings {
            let mut guard = ring.lock();
            let r = &mut *guard;
            if r.engine.mailbox().has_posts() {
                // Finished I/O nobody waited for: post it now, so that a
                // program watching its CQ without entering sees it.
                let key = r.wait_key;
                let shared = r.mapping.shared();
                let posted = match host.env(r.pid) {
                    Some(env) => r.engine.reap_io(&shared, env),
                    None => false,
                };
                if posted {
                    host.wake(key);
                }
            }
            let Some(deadline) = r.engine.next_deadline() else {
                continue;
            };
            if deadline > now {
                host.arm_timer(deadline);
                continue;
            }
            let Some(env) = host.env(r.pid) else { continue };
            let shared = r.mapping.shared();
            let posted = r.engine.poll_timers(&shared, env);
            if let Some(next) = r.engine.next_deadline() {
                host.arm_timer(next);
            }
            let key = r.wait_key;
            drop(guard);
            if posted {
                host.wake(key);
            }
        }
    }
}

/// GETEVENTS: waits until `want` CQEs are in the CQ, moving overflowed ones
/// in and reaping finished I/O as it goes. An IOPOLL ring polls the devices
/// instead of sleeping, and stops once nothing is in flight.
fn wait_cqes(host: &mut dyn RingHost, ring: &Arc<Mutex<Ring>>, pid: u64, want: u32, key: u64) {
    let (mailbox, iopoll) = {
        let r = ring.lock();
        (r.engine.mailbox().clone(), r.engine.iopoll())
    };
    loop {
        if iopoll {
            host.poll_io();
        }
        let (ready, idle) = {
            let mut guard = ring.lock();
            let r = &mut *guard;
            let shared = r.mapping.shared();
            r.engine.flush_overflow(&shared);
            if mailbox.has_posts() {
                if let Some(env) = host.env(pid) {
                    r.engine.reap_io(&shared, env);
                }
            }
            (
                r.engine.cq_ready(&shared) >= want,
                r.engine.pending_ops() == 0,
            )
        };
        if ready || (iopoll && idle) {
            return;
        }
        if iopoll {
            // Let anything else that wants this CPU run between polls.
            if host.cpu_wanted() {
                host.yield_now();
            }
            continue;
        }
        let in_flight = ring.lock().engine.io_in_flight() > 0;
        if in_flight && kernel_core::ring::spin_for_io(host, &mailbox) {
            continue;
        }
        host.wait(key, &mut || {
            if mailbox.has_posts() {
                return true;
            }
            let mut guard = ring.lock();
            let r = &mut *guard;
            let shared = r.mapping.shared();
            r.engine.flush_overflow(&shared);
            r.engine.cq_ready(&shared) >= want
        });
    }
}

/// Ends a ring: drops its pending work and registrations and its wait queue.
fn retire(host: &mut dyn RingHost, ring: &Arc<Mutex<Ring>>) {
    let mut r = ring.lock();
    let pid = r.pid;
    let key = r.wait_key;
    if let Some(env) = host.env(pid) {
        r.engine.teardown(env);
    }
    drop(r);
    host.wake(key);
    host.forget_wait(key);
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sizes {
    use super::*;

    #[test]
    fn sizes_round_up_and_clamp() {
        assert_eq!(ring_size(1, 256), 1);
        assert_eq!(ring_size(3, 256), 4);
        assert_eq!(ring_size(200, 256), 256);
        assert_eq!(ring_size(4096, 256), 256);
        assert_eq!(ring_size(u32::MAX, 256), 256);
    }
}
