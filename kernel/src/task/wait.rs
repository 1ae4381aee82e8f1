//! Wait queues: a task sleeps on one until an event it cares about happens.

use super::{current, mark_blocked, schedule, unblock_self, wake, Task};
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;
use x86_64::instructions::interrupts;

/// Tasks waiting for one kind of event.
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
    pub fn wait_until<T>(&self, mut ready: impl FnMut() -> Option<T>) -> T {
        interrupts::without_interrupts(|| loop {
            if let Some(value) = ready() {
                return value;
            }
            // Blocked and registered before the second check: a waker on
            // another CPU that makes `ready` true from here on finds us.
            mark_blocked();
            self.waiters.lock().push(current());
            if let Some(value) = ready() {
                unblock_self();
                return value;
            }
            schedule();
        })
    }

    /// Wakes every waiter; each re-checks its condition.
    pub fn wake_all(&self) {
        let waiters = interrupts::without_interrupts(|| core::mem::take(&mut *self.waiters.lock()));
        for task in &waiters {
            wake(task);
        }
    }
}
