//! The Ring API backend: syscalls 2002 (`ring_setup`), 2000 (`ring_enter`,
//! the doorbell) and 2001 (`ring_register`), with SQPOLL.
//!
//! This crate only does what is specific to the Ring API (ABI in
//! `abi::ring_api`): one context per process, mapped at
//! `USER_RING_CONTEXT_BASE` with io_uring's ring layout; a doorbell that
//! takes no ring argument; and the SQPOLL poller ([`poller`]), a kernel
//! thread per SQPOLL context that consumes the SQ without syscalls.
//! Submission, completion, links, drain, overflow, timeouts, registration
//! and every op are the shared engine's (`kernel_core::ring::engine`),
//! exactly as io_uring drives it; the kernel services come through
//! `RingHost`. A process in `SyscallMode::RingBased` also has a system
//! ring: a context without a poller at `USER_SYSTEM_RING_BASE`, set up by
//! the kernel and rung with `enter_flags::SYSTEM_RING`.
//!
//! Invariants:
//! - A context belongs to one process and lives until that process ends
//!   or closes it. Its ring memory is held by its `RingMapping` (and by the
//!   owner's user mapping until `CONTEXT_CLOSE` or the process's end):
//!   every view borrows from a context, so whoever still holds a clone
//!   (the poller, the timer pass) works on memory that is still there.
//! - A poller runs on its owner's page tables, so it must not outlive the
//!   owner's address space: it stops at the moment it sets
//!   [`Poller::stopped`], and `teardown` and `CONTEXT_CLOSE` stop it, wait
//!   for that and join it before they return.
//! - The engine lock is taken only by syscalls, the timer thread and, inside
//!   `RingHost::atomically`, the poller: never by a task that can be
//!   preempted while holding it, and never held across a sleep.
//! - User space may scribble on every shared word, `NEED_WAKEUP` included;
//!   the poller sets and clears that bit with the engine lock held, so it
//!   never undoes the engine's own `CQ_OVERFLOW` updates.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

mod params;
pub(crate) mod poller;
#[cfg(test)]
mod tests;

use abi::errno::*;
use abi::io_uring::features;
use abi::layout::{USER_RING_CONTEXT_BASE, USER_SYSTEM_RING_BASE};
use abi::ring_api::{enter_flags, RingSetupParams, CONTEXT_CLOSE};
use abi::{IntoBytes, SYSTEM_RING_ENTRIES};
use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use hashbrown::HashMap;
use kernel_core::ring::engine::RingEngine;
use kernel_core::ring::{
    BackendKind, RawArgs, RingBackend, RingHost, RingMapping, SharedRing, SystemRing,
};
use spin::Mutex;

/// Bytes of `RingSetupParams`.
const PARAMS_SIZE: usize = core::mem::size_of::<RingSetupParams>();

/// Wait-queue keys of this backend: bit 62 tells them from io_uring's (bit
/// 63); the low two bits say which queue of a context.
const WAIT_KEY_TAG: u64 = 1 << 62;
/// Tasks in `ring_enter` waiting for completions or for the poller.
const QUEUE_WAITERS: u64 = 0;
/// The poller, asleep.
const QUEUE_POLLER: u64 = 1;
/// `teardown`, waiting for the poller to stop.
const QUEUE_EXIT: u64 = 2;

/// One process's ring context.
pub(crate) struct Context {
    pid: u64,
    id: u64,
    /// The ring memory; every view borrows from it.
    mapping: RingMapping,
    engine: Mutex<RingEngine>,
    /// Tasks sleeping in `ring_enter` (the poller wakes them only if any).
    waiters: AtomicU32,
    /// `Some` for an SQPOLL context.
    poller: Option<Poller>,
}

/// The state an SQPOLL poller shares with the syscalls and `teardown`.
pub(crate) struct Poller {
    /// Nanoseconds without work before it sleeps.
    idle_ns: u64,
    /// The CPU it is pinned to (SQ_AFF), if any.
    cpu: Option<u32>,
    /// Its task id, once started.
    tid: AtomicU64,
    /// Set by `teardown`: finish now.
    stop: AtomicBool,
    /// Set by the poller as its last touch of ring memory.
    stopped: AtomicBool,
    /// Set by the doorbell, consumed by the poller's sleep.
    doorbell: AtomicBool,
    /// The engine refused work (a full overflow backlog): it waits for
    /// user space to reap and ring.
    blocked: AtomicBool,
    /// Times it woke from sleep.
    wakeups: AtomicU64,
}

impl Poller {
    fn new(config: params::PollerConfig) -> Self {
        Self {
            idle_ns: u64::from(config.idle_ms) * 1_000_000,
            cpu: config.cpu,
            tid: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            doorbell: AtomicBool::new(false),
            blocked: AtomicBool::new(false),
            wakeups: AtomicU64::new(0),
        }
    }
}

impl Context {
    fn key(&self, queue: u64) -> u64 {
        WAIT_KEY_TAG | (self.id << 2) | queue
    }

    fn shared(&self) -> SharedRing<'_> {
        self.mapping.shared()
    }

    /// Wakes tasks sleeping in `ring_enter`, if there are any.
    fn wake_waiters(&self, host: &mut dyn RingHost) {
        if self.waiters.load(Ordering::Acquire) > 0 {
            host.wake(self.key(QUEUE_WAITERS));
        }
    }

    /// Sleeps the caller on the waiters' queue until `ready()`.
    fn wait(&self, host: &mut dyn RingHost, ready: &mut dyn FnMut() -> bool) {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        host.wait(self.key(QUEUE_WAITERS), ready);
        self.waiters.fetch_sub(1, Ordering::AcqRel);
    }

    /// The doorbell without SQPOLL: consumes everything published. Returns
    /// how many SQEs, and whether GETEVENTS must sleep for `want` CQEs.
    fn submit_inline(
        &self,
        host: &mut dyn RingHost,
        getevents: bool,
        want: u32,
    ) -> Result<(u32, bool), Errno> {
        let mut engine = self.engine.lock();
        let shared = self.shared();
        engine.flush_overflow(&shared);
        let env = host.env(self.pid).ok_or(EPERM)?;
        engine.reap_io(&shared, env);
        // The engine ends a batch at an SQE that fails prep (as Linux
        // does); the doorbell goes on until the SQ is empty or stuck.
        let mut consumed = engine.submit(&shared, env, u32::MAX)?;
        loop {
            let left = engine.sq_pending(&shared);
            if left == 0 {
                break;
            }
            match engine.submit(&shared, env, u32::MAX) {
                Ok(n) => consumed += n,
                Err(_) => break,
            }
            if engine.sq_pending(&shared) >= left {
                break;
            }
        }
        if let Some(deadline) = engine.next_deadline() {
            host.arm_timer(deadline);
        }
        let wait = getevents && engine.cq_ready(&shared) < want.min(engine.cq_entries());
        Ok((consumed, wait))
    }

    /// The doorbell with SQPOLL: moves overflowed CQEs in, wakes the
    /// poller and, with `sq_wait`, sleeps until it consumed what was
    /// published. Returns how many SQEs that was (0 without `sq_wait`).
    /// `EBUSY` when SQEs are published that the poller cannot take because
    /// the overflow backlog is full (the poller may already have taken the
    /// caller's: then there is nothing to refuse).
    fn ring_poller(
        &self,
        host: &mut dyn RingHost,
        poller: &Poller,
        sq_wait: bool,
    ) -> Result<u32, Errno> {
        let (published, busy) = {
            let mut engine = self.engine.lock();
            let shared = self.shared();
            let env = host.env(self.pid).ok_or(EPERM)?;
            // Consumes nothing: moves overflowed CQEs into the CQ and
            // fails with EBUSY if the backlog is still full.
            let busy = match engine.submit(&shared, env, 0) {
                Ok(_) => false,
                Err(EBUSY) => true,
                Err(e) => return Err(e),
            };
            (engine.sq_pending(&shared), busy)
        };
        if busy && published > 0 {
            return Err(EBUSY);
        }
        poller.blocked.store(false, Ordering::Release);
        poller.doorbell.store(true, Ordering::SeqCst);
        host.wake(self.key(QUEUE_POLLER));
        if !sq_wait || published == 0 {
            return Ok(0);
        }
        let pending = || self.engine.lock().sq_pending(&self.shared());
        self.wait(host, &mut || {
            pending() == 0
                || poller.blocked.load(Ordering::Acquire)
                || poller.stop.load(Ordering::Acquire)
        });
        let consumed = published.saturating_sub(pending());
        if consumed == 0 && poller.blocked.load(Ordering::Acquire) {
            return Err(EBUSY);
        }
        Ok(consumed)
    }

    /// GETEVENTS: sleeps until `want` CQEs are in the CQ (overflowed ones
    /// are moved in as room appears).
    fn wait_completions(&self, host: &mut dyn RingHost, want: u32) {
        let (want, mailbox) = {
            let engine = self.engine.lock();
            (want.min(engine.cq_entries()), engine.mailbox().clone())
        };
        loop {
            {
                let mut engine = self.engine.lock();
                let shared = self.shared();
                engine.flush_overflow(&shared);
                if mailbox.has_posts() {
                    if let Some(env) = host.env(self.pid) {
                        engine.reap_io(&shared, env);
                    }
                }
                if engine.cq_ready(&shared) >= want {
                    return;
                }
            }
            let in_flight = self.engine.lock().io_in_flight() > 0;
            if in_flight && kernel_core::ring::spin_for_io(host, &mailbox) {
                continue;
            }
            self.wait(host, &mut || {
                if mailbox.has_posts() {
                    return true;
                }
                let mut engine = self.engine.lock();
                let shared = self.shared();
                engine.flush_overflow(&shared);
                engine.cq_ready(&shared) >= want
            });
        }
    }
}

/// The Ring API backend.
pub struct SqPoll {
    /// Every context, by owner pid.
    contexts: Mutex<Option<HashMap<u64, Arc<Context>>>>,
    /// The system ring of each `RingBased` process, by pid: a context
    /// without a poller at `USER_SYSTEM_RING_BASE`.
    system: Mutex<Option<HashMap<u64, Arc<Context>>>>,
    next_id: AtomicU64,
}

/// The single instance the kernel image registers.
pub static BACKEND: SqPoll = SqPoll::new();

impl Default for SqPoll {
    fn default() -> Self {
        Self::new()
    }
}

impl SqPoll {
    /// A backend with no contexts.
    pub const fn new() -> Self {
        Self {
            contexts: Mutex::new(None),
            system: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    fn with_table<R>(&self, f: impl FnOnce(&mut HashMap<u64, Arc<Context>>) -> R) -> R {
        f(self.contexts.lock().get_or_insert_with(HashMap::new))
    }

    fn context(&self, pid: u64) -> Option<Arc<Context>> {
        self.contexts.lock().as_ref()?.get(&pid).cloned()
    }

    fn system_context(&self, pid: u64) -> Option<Arc<Context>> {
        self.system.lock().as_ref()?.get(&pid).cloned()
    }

    /// Every context and system ring, for the timer pass.
    fn all_contexts(&self) -> Vec<Arc<Context>> {
        let mut all = Vec::new();
        for table in [&self.contexts, &self.system] {
            if let Some(t) = table.lock().as_ref() {
                all.extend(t.values().cloned());
            }
        }
        all
    }

    /// A context of `pid` over freshly mapped memory, its header words
    /// initialised for an engine of these sizes.
    fn new_context(
        &self,
        pid: u64,
        mapping: RingMapping,
        sq_entries: u32,
        cq_entries: u32,
        poller: Option<Poller>,
    ) -> Arc<Context> {
        let engine = RingEngine::new(sq_entries, cq_entries);
        engine.init_shared(&mapping.shared());
        let ctx = Arc::new(Context {
            pid,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            mapping,
            engine: Mutex::new(engine),
            waiters: AtomicU32::new(0),
            poller,
        });
        // Finished I/O wakes `ring_enter`'s waiters; with none, the
        // kernel's ring thread (or the poller) posts it.
        ctx.engine
            .lock()
            .mailbox()
            .set_wait_key(ctx.key(QUEUE_WAITERS));
        ctx
    }

    /// `ring_register(CONTEXT_CLOSE, 0, 0)`: ends the caller's context and
    /// unmaps its memory.
    fn close(&self, host: &mut dyn RingHost, arg: u64, nr: u32) -> Result<(), Errno> {
        let pid = host.pid();
        let ctx = self.context(pid).ok_or(ENXIO)?;
        if arg != 0 || nr != 0 {
            return Err(EINVAL);
        }
        let ctx = self.with_table(|t| t.remove(&pid)).unwrap_or(ctx);
        retire(host, &ctx);
        drop(ctx);
        // The poller is gone (joined in `retire`); the timer pass may still
        // hold a clone of the context for a moment, and finds nothing to do
        // in a retired engine. Its mapping keeps the memory until then:
        // only the user's side goes now.
        host.unmap_ring(USER_RING_CONTEXT_BASE)
    }

    /// The poller task of `pid`'s context and how often it woke from sleep
    /// (`None` without an SQPOLL context). For diagnostics and tests.
    pub fn poller_stats(&self, pid: u64) -> Option<(u64, u64)> {
        let ctx = self.context(pid)?;
        let poller = ctx.poller.as_ref()?;
        Some((
            poller.tid.load(Ordering::Acquire),
            poller.wakeups.load(Ordering::Relaxed),
        ))
    }
}

impl RingBackend for SqPoll {
    fn kind(&self) -> BackendKind {
        BackendKind::SqPoll
    }

    /// `ring_setup(params)`.
    fn setup(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno> {
        let [params_ptr, ..] = args.0;
        let pid = host.pid();
        let mut params = RingSetupParams::default();
        {
            let env = host.env(pid).ok_or(EPERM)?;
            // Checked writable up front, so a bad pointer creates nothing.
            env.check_user(params_ptr, PARAMS_SIZE as u64, true)?;
            env.read_user(params_ptr, params.as_mut_bytes())?;
        }
        let config = params::validate(&params, host.cpus())?;
        if self.context(pid).is_some() {
            return Err(EBUSY);
        }
        // EEXIST: the address is taken (a setup whose poller could not be
        // started left its mapping behind): the process has had its context.
        let mapping =
            host.map_ring(USER_RING_CONTEXT_BASE)
                .map_err(|e| if e == EEXIST { EBUSY } else { e })?;
        let poller = config.poller.map(Poller::new);
        let ctx = self.new_context(pid, mapping, config.sq_entries, config.cq_entries, poller);
        if ctx.poller.is_some() && host.cpus() > 1 {
            // The poller posts while the program reaps on another CPU.
            ctx.engine.lock().set_cq_remote(true);
        }
        self.with_table(|t| t.insert(pid, ctx.clone()));
        let mut thread_id = 0;
        if let Some(poller) = &ctx.poller {
            let body_ctx = ctx.clone();
            let name = format!("ring-sqpoll-{pid}");
            let started = host.spawn_thread(
                &name,
                poller.cpu,
                Box::new(move |host: &mut dyn RingHost| poller::run(&body_ctx, host)),
            );
            match started {
                Ok(tid) => {
                    poller.tid.store(tid, Ordering::Release);
                    thread_id = tid;
                }
                Err(e) => {
                    // No poller runs: take the context back and unmap it
                    // (the memory goes with the last clone).
                    self.with_table(|t| t.remove(&pid));
                    drop(ctx);
                    let _ = host.unmap_ring(USER_RING_CONTEXT_BASE);
                    return Err(e);
                }
            }
        }

        params.sq_entries = config.sq_entries;
        params.cq_entries = config.cq_entries;
        params.sq_thread_idle_ms = config.poller.map_or(0, |p| p.idle_ms);
        params.features = features::SINGLE_MMAP
            | features::NODROP
            | features::SUBMIT_STABLE
            | features::RW_CUR_POS;
        params.sq_thread_id = thread_id;
        params.ring_addr = USER_RING_CONTEXT_BASE;
        if let Some(env) = host.env(pid) {
            // Checked writable above; nothing in between can unmap it.
            env.write_user(params_ptr, params.as_bytes())?;
        }
        Ok(0)
    }

    /// `ring_enter(flags, min_complete)`.
    fn enter(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno> {
        let [flags, min_complete, ..] = args.0;
        let flags = u32::try_from(flags).map_err(|_| EINVAL)?;
        if flags & !enter_flags::SUPPORTED != 0 {
            return Err(EINVAL);
        }
        let ctx = if flags & enter_flags::SYSTEM_RING != 0 {
            self.system_context(host.pid())
        } else {
            self.context(host.pid())
        }
        .ok_or(ENXIO)?;
        let getevents = flags & enter_flags::GETEVENTS != 0;
        let want = u32::try_from(min_complete).unwrap_or(u32::MAX);
        let (consumed, wait) = match &ctx.poller {
            None => ctx.submit_inline(host, getevents, want)?,
            Some(poller) => {
                let sq_wait = flags & enter_flags::SQ_WAIT != 0;
                (ctx.ring_poller(host, poller, sq_wait)?, getevents)
            }
        };
        if wait {
            ctx.wait_completions(host, want);
        }
        Ok(u64::from(consumed))
    }

    /// `ring_register(opcode, arg, nr)`.
    fn register(&self, host: &mut dyn RingHost, args: RawArgs) -> Result<u64, Errno> {
        let [opcode, arg, nr, ..] = args.0;
        let opcode = u32::try_from(opcode).map_err(|_| EINVAL)?;
        let nr = u32::try_from(nr).map_err(|_| EINVAL)?;
        let pid = host.pid();
        if opcode == CONTEXT_CLOSE {
            return self.close(host, arg, nr).map(|()| 0);
        }
        let ctx = self.context(pid).ok_or(ENXIO)?;
        let env = host.env(pid).ok_or(EPERM)?;
        let mut engine = ctx.engine.lock();
        engine.register(env, opcode, arg, nr)
    }

    fn setup_system_ring(&self, host: &mut dyn RingHost) -> Result<SystemRing, Errno> {
        let pid = host.pid();
        if pid == 0 {
            return Err(EPERM);
        }
        if self.system_context(pid).is_some() {
            return Err(EBUSY);
        }
        let sq_entries = SYSTEM_RING_ENTRIES;
        let cq_entries = 2 * sq_entries;
        let mapping = host.map_ring(USER_SYSTEM_RING_BASE)?;
        let ctx = self.new_context(pid, mapping, sq_entries, cq_entries, None);
        self.system
            .lock()
            .get_or_insert_with(HashMap::new)
            .insert(pid, ctx);
        Ok(SystemRing {
            addr: USER_SYSTEM_RING_BASE,
            sq_entries,
            cq_entries,
        })
    }

    /// Ring API contexts have no descriptor: nothing is released early.
    fn release(&self, _host: &mut dyn RingHost, _pid: u64, _id: u64) {}

    fn teardown(&self, host: &mut dyn RingHost, pid: u64) {
        let ctx = self.with_table(|t| t.remove(&pid));
        if let Some(ctx) = ctx {
            retire(host, &ctx);
        }
        let system = self.system.lock().as_mut().and_then(|t| t.remove(&pid));
        if let Some(ctx) = system {
            retire(host, &ctx);
        }
    }

    fn poll_timers(&self, host: &mut dyn RingHost) {
        let now = host.now_ns();
        for ctx in self.all_contexts() {
            let mut engine = ctx.engine.lock();
            if engine.mailbox().has_posts() {
                // Finished I/O nobody waited for: post it now.
                let posted = match host.env(ctx.pid) {
                    Some(env) => engine.reap_io(&ctx.shared(), env),
                    None => false,
                };
                if posted {
                    ctx.wake_waiters(host);
                }
            }
            let Some(deadline) = engine.next_deadline() else {
                continue;
            };
            if deadline > now {
                host.arm_timer(deadline);
                continue;
            }
            let Some(env) = host.env(ctx.pid) else {
                continue;
            };
            let posted = engine.poll_timers(&ctx.shared(), env);
            if let Some(next) = engine.next_deadline() {
                host.arm_timer(next);
            }
            drop(engine);
            if posted {
                host.wake(ctx.key(QUEUE_WAITERS));
            }
        }
    }
}

/// Ends a context: stops its poller and waits until the poller is done
/// with ring memory, then drops pending work, registrations and the wait
/// queues.
fn retire(host: &mut dyn RingHost, ctx: &Context) {
    if let Some(poller) = &ctx.poller {
        poller.stop.store(true, Ordering::SeqCst);
        host.wake(ctx.key(QUEUE_POLLER));
        // The owner's address space, ring memory and the page tables the
        // poller runs on included, is freed as soon as teardown returns:
        // wait until the poller is done with the memory, then until it is
        // gone from its CPU.
        let tid = poller.tid.load(Ordering::Acquire);
        if tid != 0 {
            host.wait(ctx.key(QUEUE_EXIT), &mut || {
                poller.stopped.load(Ordering::Acquire)
            });
            host.join_thread(tid);
        }
    }
    {
        let mut engine = ctx.engine.lock();
        if let Some(env) = host.env(ctx.pid) {
            engine.teardown(env);
        }
    }
    host.wake(ctx.key(QUEUE_WAITERS));
    for queue in [QUEUE_WAITERS, QUEUE_POLLER, QUEUE_EXIT] {
        host.forget_wait(ctx.key(queue));
    }
}
