//! The scheduler's unsafe core: the saved stack pointer of a task that is
//! not running ([`SavedRsp`]), the switch from one task to another
//! ([`schedule`]), and the lock-free look at the running task
//! ([`with_current`]). Which task runs next is decided in the parent
//! module ([`super::pick_next`]); this module trusts what it returns.

use super::{after_switch, pick_next, Switch, Task};
use crate::arch::{context, cpu};
use core::cell::UnsafeCell;
use x86_64::instructions::interrupts;

/// A task's kernel stack pointer while it is not running.
///
/// Written only by [`context::switch`] on the CPU switching away from the
/// task, and read only by the CPU that switches to it, which the scheduler
/// lets happen only once the task is off its old CPU (`Task::on_cpu`).
pub(super) struct SavedRsp(UnsafeCell<u64>);

// SAFETY: see the type's documentation: the scheduler's `on_cpu` hand-over
// orders the one write (on the old CPU) before the one read (on the new).
unsafe impl Sync for SavedRsp {}

impl SavedRsp {
    /// The stack pointer of a context that has not run yet (0 for a task
    /// that is running already, such as a CPU's idle task).
    pub(super) const fn new(rsp: u64) -> Self {
        Self(UnsafeCell::new(rsp))
    }

    /// Where `switch` stores the stack pointer when the task is switched away.
    pub(super) fn slot(&self) -> *mut u64 {
        self.0.get()
    }
}

/// Gives the CPU to the next ready task (or idle). Returns when this task is
/// scheduled again. The caller sets its state first: a `Running` task goes
/// back to the run queue, a `Blocked` or `Zombie` one does not.
pub fn schedule() {
    let were_enabled = interrupts::are_enabled();
    interrupts::disable();
    if let Some(Switch { save, next }) = pick_next() {
        // SAFETY: `pick_next` made `next` this CPU's current task and
        // returns the saved stack pointer of a task that was not live on
        // any CPU (`on_cpu` was false when picked; its switch away had
        // completed and stored the pointer), so the read sees a stable
        // value. The scheduler keeps `next` allocated while it runs.
        let next_rsp = unsafe { *next };
        // SAFETY: interrupts are off and the scheduler lock is released;
        // `save` is the slot of the task being switched away from, which
        // the scheduler keeps allocated (and `on_cpu`) until the next task
        // has finished the switch in `after_switch`; `next_rsp` was saved
        // by `switch` or made by `KernelStack::prepare`.
        unsafe { context::switch(save, next_rsp) };
        after_switch();
    }
    if were_enabled {
        interrupts::enable();
    }
}

/// Runs `f` on the task running on this CPU, without the scheduler lock or
/// a reference count (the syscall fast path).
///
/// Sound with interrupts on too: the pointer is read with one instruction
/// ([`cpu::current_task`]), so even a task moved to another CPU around the
/// read gets its own address; and a running task is not freed.
#[inline]
pub fn with_current<R>(f: impl FnOnce(&Task) -> R) -> R {
    let ptr = cpu::current_task() as *const Task;
    assert!(!ptr.is_null(), "scheduler not initialised");
    // SAFETY: the scheduler stores the address of the task it switches to
    // (kept alive by `Scheduler::current` while it runs) before switching;
    // the read above happened while this task ran on that CPU, and `f`
    // runs on this task, which cannot be freed while it is running.
    f(unsafe { &*ptr })
}
