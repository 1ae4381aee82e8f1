//! Wait queues: a task sleeps on one until an event it cares about happens.

use super::{current, mark_blocked, schedule, unblock_self, wake, Task};
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;
use x86_64::instructions::interrupts;

/// Tasks waiting for one kind of event, each listed once.
#[derive(Default)]
pub struct WaitQueue {
    waiters: Mutex<Vec<Arc<Task>>>,
}

impl WaitQueue {
    pub const fn new() -> Self {
        Self {
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Blocks the current task until `ready()` returns `Some`, re-checking
    /// after every wake-up. The task registers as blocked before its last
    /// check, so a wake-up from any CPU between the check and the sleep
    /// cannot be lost.
    ///
    /// Registering may need memory (the list grows once, then keeps its
    /// storage). If there is none, the task does not sleep but yields and
    /// checks again, until memory is back or the condition holds: a wait
    /// never panics the kernel for lack of memory.
    pub fn wait_until<T>(&self, mut ready: impl FnMut() -> Option<T>) -> T {
        interrupts::without_interrupts(|| loop {
            if let Some(value) = ready() {
                return value;
            }
            // Blocked and registered before the second check: a waker on
            // another CPU that makes `ready` true from here on finds us.
            mark_blocked();
            let registered = self.register(current());
            if let Some(value) = ready() {
                unblock_self();
                return value;
            }
            if !registered {
                // No waker would find us: stay runnable, give up the CPU.
                unblock_self();
            }
            schedule();
        })
    }

    /// Lists `task` unless it is listed already (a task woken by something
    /// else stays listed until the next `wake_all`). `false` if the list
    /// cannot grow.
    fn register(&self, task: Arc<Task>) -> bool {
        let mut waiters = self.waiters.lock();
        if waiters.iter().any(|t| Arc::ptr_eq(t, &task)) {
            return true;
        }
        if waiters.try_reserve(1).is_err() {
            return false;
        }
        waiters.push(task);
        true
    }

    /// Wakes every waiter; each re-checks its condition. Returns how many
    /// there were.
    pub fn wake_all(&self) -> usize {
        interrupts::without_interrupts(|| {
            let mut waiters = core::mem::take(&mut *self.waiters.lock());
            let woken = waiters.len();
            for task in &waiters {
                wake(task);
            }
            waiters.clear();
            // The list's storage goes back, so the next waiter need not
            // allocate (unless others registered meanwhile).
            let mut list = self.waiters.lock();
            if list.is_empty() {
                core::mem::swap(&mut *list, &mut waiters);
            }
            woken
        })
    }
}
