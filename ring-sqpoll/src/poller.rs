//! The SQPOLL poller: the body of the kernel thread an SQPOLL context
//! runs, written against `RingHost` alone.
//!
//! Loop: take everything user space published (one engine `submit`, inside
//! `RingHost::atomically`), then look again; once `idle` passed without
//! work, go to sleep on the context's poller queue until the doorbell rings
//! or `teardown` says stop.
//!
//! Between two looks the poller gives its CPU away (`yield_now`) only when
//! another task wants it. With one CPU that is every time: the program
//! runs between two passes. With more it asks the scheduler
//! (`RingHost::cpu_wanted`) every [`CPU_CHECK_NS`] and otherwise spins
//! (`core::hint::spin_loop`), so a program on another CPU sees its CQEs
//! without waiting for two trips through the scheduler.
//!
//! A look that finds the SQ tail where the last pass left the engine with
//! nothing to do (everything consumed, no timer, chain or overflowed CQE
//! waiting) skips the pass: no lock, no interrupt switching, one load. The
//! tail is user memory, so this is only a hint that a pass would find
//! nothing; every decision (consuming, going to sleep) is still made by a
//! pass or by the sleep's own check under the engine lock.
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

/// How often, at most, a spinning poller asks whether another task wants
/// its CPU: about the longest such a task waits for it (the timer tick
/// would preempt the poller anyway, after up to 4 ms).
const CPU_CHECK_NS: u64 = 20_000;

/// Looks at the SQ tail in one spin before the poller reads the clock
/// and may ask for the run queue again.
const SPIN_LOOKS: u32 = 1024;

/// Looks between two `spin_loop` hints. Under QEMU's TCG a PAUSE is no
/// hint but an exit from the translated code through QEMU's global lock
/// (about 115 ns, measured): hinting on every look made a spinning pair
/// of poller and program slower than one that yields.
const LOOKS_PER_PAUSE: u32 = 256;

/// Passes in a row that may skip the bookkeeping (clock, idle time, run
/// queue) while submissions keep coming.
const HOT_PASSES: u32 = 16;

/// The poller thread's body: runs until `teardown` stops it.
pub(crate) fn run(ctx: &Context, host: &mut dyn RingHost) {
    let Some(poller) = ctx.poller.as_ref() else {
        return;
    };
    let shared = ctx.shared();
    // With one CPU, whatever else is ready needs this CPU: yield after
    // every look (at once back when nothing else is ready).
    let one_cpu = host.cpus() == 1;
    let mut last_work = host.now_ns();
    let mut last_check = last_work;
    // Work done since the clock was last read.
    let mut worked = false;
    // Passes since the last bookkeeping.
    let mut hot = 0;
    // The SQ tail at which the last pass left the engine quiet.
    let mut quiet_at: Option<u32> = None;
    while !poller.stop.load(Ordering::Acquire) {
        let outcome = match quiet_at {
            Some(tail) if shared.sq_header(header::TAIL) == tail => Pass::Idle,
            _ => {
                let (outcome, quiet) = pass(ctx, poller, &shared, host, !one_cpu);
                quiet_at = quiet;
                outcome
            }
        };
        worked |= outcome == Pass::Worked;
        // The hot path with a CPU to spare: spin for the next submission.
        if let Some(tail) = quiet_at.filter(|_| !one_cpu && hot < HOT_PASSES) {
            if spin_while_at(&shared, tail) {
                hot += 1;
                continue;
            }
        }
        hot = 0;
        let now = host.now_ns();
        if core::mem::take(&mut worked) {
            last_work = now;
        } else if now.saturating_sub(last_work) >= poller.idle_ns {
            if sleep(ctx, poller, host, outcome == Pass::Blocked) {
                last_work = host.now_ns();
            }
            // Woken, or work came in before it slept: the next look is a
            // full pass.
            quiet_at = None;
            continue;
        }
        if one_cpu {
            host.yield_now();
        } else if now.saturating_sub(last_check) >= CPU_CHECK_NS {
            last_check = now;
            if host.cpu_wanted() {
                host.yield_now();
            }
        } else if quiet_at.is_none() {
            core::hint::spin_loop();
        }
    }
    poller.stopped.store(true, Ordering::Release);
    host.wake(ctx.key(QUEUE_EXIT));
}

/// Looks at the SQ tail until it moves away from `tail`, at most
/// [`SPIN_LOOKS`] times, with a `spin_loop` hint every
/// [`LOOKS_PER_PAUSE`]. Whether it moved.
fn spin_while_at(shared: &SharedRing, tail: u32) -> bool {
    for look in 1..=SPIN_LOOKS {
        if shared.sq_header(header::TAIL) != tail {
            return true;
        }
        if look.is_multiple_of(LOOKS_PER_PAUSE) {
            core::hint::spin_loop();
        }
    }
    false
}

/// Consumes what is published; wakes `ring_enter` sleepers when CQEs were
/// posted (the engine also fires due timers on every submit, so an idle
/// pass may complete work too) or when the engine starts refusing work.
/// With `track_quiet` also returns the SQ tail as read before the submit
/// if the engine was left quiet: everything up to it consumed, no timer,
/// held-back SQE or overflowed CQE waiting, so that another pass finds
/// nothing until the tail moves. (With one CPU the poller yields after
/// every look and the next look nearly always has work: not worth the
/// instructions there.)
fn pass(
    ctx: &Context,
    poller: &Poller,
    shared: &SharedRing,
    host: &mut dyn RingHost,
    track_quiet: bool,
) -> (Pass, Option<u32>) {
    let mut outcome = Pass::Idle;
    let mut posted = false;
    let mut quiet_at = None;
    host.atomically(&mut |host| {
        let mut engine = ctx.engine.lock();
        let Some(env) = host.env(ctx.pid) else {
            return;
        };
        let tail = track_quiet.then(|| shared.sq_header(header::TAIL));
        let before = engine.stats().posted;
        // Finished I/O first: its chains may issue more.
        engine.reap_io(shared, env);
        outcome = match engine.submit(shared, env, u32::MAX) {
            Ok(0) => Pass::Idle,
            Ok(_) => Pass::Worked,
            Err(_) => Pass::Blocked,
        };
        posted = engine.stats().posted != before;
        if let Some(deadline) = engine.next_deadline() {
            host.arm_timer(deadline);
        }
        // With nothing pending the engine consumed up to the tail as it
        // read it, `tail` or later: while the tail stays at `tail` there is
        // nothing new (if it moved meanwhile, the next look just passes).
        quiet_at = tail.filter(|_| {
            outcome != Pass::Blocked
                && engine.sq_pending(shared) == 0
                && engine.pending_ops() == 0
                && shared.sq_header(header::FLAGS) & sq_flags::CQ_OVERFLOW == 0
        });
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
    (outcome, quiet_at)
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
