//! Ring timeouts fire even when their process is not in a syscall: the
//! timer tick notices that the earliest armed deadline has passed and wakes
//! the `ring-timer` kernel thread, which lets every backend fire its expired
//! timeouts (posting CQEs, waking waiters, issuing what was linked behind).

use super::{host::KernelHost, BACKENDS};
use crate::task::{self, WaitQueue};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x86_64::instructions::interrupts;

/// The earliest deadline (ns) any ring asked for; `u64::MAX` when none.
static EARLIEST: AtomicU64 = AtomicU64::new(u64::MAX);
static DUE: AtomicBool = AtomicBool::new(false);
/// Finished I/O waits in a mailbox that nobody sleeps on.
static IO_DUE: AtomicBool = AtomicBool::new(false);
static THREAD: WaitQueue = WaitQueue::new();

/// Asks for a timer pass at or after `deadline`.
pub fn arm(deadline: u64) {
    EARLIEST.fetch_min(deadline, Ordering::AcqRel);
}

/// Asks for a pass of the ring thread at the next tick: finished I/O
/// that nobody sleeps for. A program that enters again soon reaps it
/// itself first (every enter does); the pass is for one that only
/// watches its CQ, as Linux's task work runs at the task's next return
/// to user mode. Deferred to the tick so that a burst of completions
/// costs one pass, not a thread switch each.
pub fn kick() {
    IO_DUE.store(true, Ordering::Release);
}

/// Called on every timer tick with interrupts off.
pub fn tick(now: u64) {
    if IO_DUE.swap(false, Ordering::AcqRel) {
        DUE.store(true, Ordering::Release);
        THREAD.wake_all();
    }
    if now >= EARLIEST.load(Ordering::Acquire) {
        EARLIEST.store(u64::MAX, Ordering::Release);
        DUE.store(true, Ordering::Release);
        THREAD.wake_all();
    }
}

/// Starts the `ring-timer` thread.
pub fn start() {
    if let Err(e) = task::spawn_kernel_thread("ring-timer", run, 0) {
        log::error!(
            "rings: cannot start the timer thread: {}; ring timeouts fire only on enter",
            e
        );
    }
}

fn run(_: u64) {
    loop {
        THREAD.wait_until(|| DUE.swap(false, Ordering::AcqRel).then_some(()));
        // Backends lock their rings; the syscall path takes the same locks
        // with interrupts off, so this pass must not be preempted midway.
        interrupts::without_interrupts(|| {
            let mut host = KernelHost::system();
            for backend in BACKENDS {
                backend.poll_timers(&mut host);
            }
        });
    }
}
