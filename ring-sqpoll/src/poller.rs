//! The SQPOLL poller: the body of the kernel thread an SQPOLL context
//! runs, written against `RingHost` alone.
//!
//! Loop: take everything user space published (one engine `submit`, inside
//! `RingHost::atomically`); after work, or while the idle time has not run
//! out, give the CPU away (`yield_now`) and look again, so a program on the
//! same CPU runs between two passes; once `idle` passed without work, go to
//! sleep on the context's poller queue until the doorbell rings or
//! `teardown` says stop.
//!
//! Going to sleep without losing a submission (the wake-up race): with the
//! engine lock held the poller clears the doorbell, sets `NEED_WAKEUP` in
//! the SQ flags, issues a full fence and reads the SQ tail once more. If
//! anything was published it clears the bit and carries on. Otherwise it
//! sleeps, and user space, which stores its tail, fences and then reads the
//! flags, is bound to see `NEED_WAKEUP` and ring the doorbell (which sets
//! the doorbell flag the sleep waits for, so a ring between the check and
//! the sleep is not lost either). On waking it clears `NEED_WAKEUP`.
//!
//! A full overflow backlog makes the engine refuse work (`EBUSY`). The
//! poller then counts as idle even with SQEs published, may sleep with
//! them there, and relies on the doorbell: user space must reap and call
//! `ring_enter`, which it does anyway to get the overflowed CQEs.
//!
//! The poller's last act on ring memory is in its last pass; it then sets
//! `stopped` and wakes `teardown`, which is waiting for exactly that.

use super::{Context, Poller, QUEUE_EXIT, QUEUE_POLLER};
use abi::io_uring::{header, sq_flags};
use core::sync::atomic::{fence, Ordering};
use kernel_core::ring::{RingHost, SharedRing};

/// What one pass over the SQ found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// It consumed SQEs.
    Worked,
    /// Nothing was published.
    Idle,
    /// The engine refused work (full overflow backlog).
    Blocked,
}

/// The poller thread's body: runs until `teardown` stops it.
pub(crate) fn run(ctx: &Context, host: &mut dyn RingHost) {
    let Some(poller) = ctx.poller.as_ref() else {
        return;
    };
    let mut last_work = host.now_ns();
    while !poller.stop.load(Ordering::Acquire) {
        let outcome = pass(ctx, poller, host);
        if outcome == Pass::Worked {
            last_work = host.now_ns();
            host.yield_now();
            continue;
        }
        if host.now_ns().saturating_sub(last_work) < poller.idle_ns {
            host.yield_now();
            continue;
        }
        if sleep(ctx, poller, host, outcome == Pass::Blocked) {
            last_work = host.now_ns();
        }
    }
    poller.stopped.store(true, Ordering::Release);
    host.wake(ctx.key(QUEUE_EXIT));
}

/// Consumes what is published; wakes `ring_enter` sleepers when CQEs were
/// posted (the engine also fires due timers on every submit, so an idle
/// pass may complete work too) or when the engine starts refusing work.
fn pass(ctx: &Context, poller: &Poller, host: &mut dyn RingHost) -> Pass {
    let mut outcome = Pass::Idle;
    let mut posted = false;
    host.atomically(&mut |host| {
        let mut engine = ctx.engine.lock();
        let shared = ctx.shared();
        let Some(env) = host.env(ctx.pid) else {
            return;
        };
        let before = engine.stats().posted;
        outcome = match engine.submit(&shared, env, u32::MAX) {
            Ok(0) => Pass::Idle,
            Ok(_) => Pass::Worked,
            Err(_) => Pass::Blocked,
        };
        posted = engine.stats().posted != before;
        if let Some(deadline) = engine.next_deadline() {
            host.arm_timer(deadline);
        }
    });
    let newly_blocked = match outcome {
        Pass::Blocked => !poller.blocked.swap(true, Ordering::AcqRel),
        _ => {
            poller.blocked.store(false, Ordering::Release);
            false
        }
    };
    if posted || newly_blocked || outcome == Pass::Worked {
        ctx.wake_waiters(host);
    }
    outcome
}

/// Sets `bits` and clears `clear` in the SQ flags word. Called with the
/// engine lock held, so it cannot race the engine's own flag updates.
fn update_flags(shared: &SharedRing, set: u32, clear: u32) {
    let flags = shared.sq_header(header::FLAGS);
    shared.set_sq_header(header::FLAGS, (flags | set) & !clear);
}

/// Goes to sleep unless work was published meanwhile (see the module
/// docs). `blocked`: sleep even with SQEs published. Returns whether it
/// slept.
fn sleep(ctx: &Context, poller: &Poller, host: &mut dyn RingHost, blocked: bool) -> bool {
    let mut armed = false;
    host.atomically(&mut |_| {
        let engine = ctx.engine.lock();
        let shared = ctx.shared();
        poller.doorbell.store(false, Ordering::SeqCst);
        update_flags(&shared, sq_flags::NEED_WAKEUP, 0);
        // Pairs with user space's fence between its tail store and its
        // flags load: one of the two sees the other's store.
        fence(Ordering::SeqCst);
        armed = blocked || engine.sq_pending(&shared) == 0;
        if !armed {
            update_flags(&shared, 0, sq_flags::NEED_WAKEUP);
        }
    });
    if !armed {
        return false;
    }
    host.wait(ctx.key(QUEUE_POLLER), &mut || {
        poller.stop.load(Ordering::Acquire) || poller.doorbell.swap(false, Ordering::AcqRel)
    });
    poller.wakeups.fetch_add(1, Ordering::Relaxed);
    host.atomically(&mut |_| {
        let _engine = ctx.engine.lock();
        update_flags(&ctx.shared(), 0, sq_flags::NEED_WAKEUP);
    });
    true
}
