//! Wait queues: a task sleeps on one until an event it cares about happens.

use super::{block_current, current, wake, Task};
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
    /// after every wake-up. The check and the block happen with interrupts
    /// off, so a wake-up between them cannot be lost.
    pub fn wait_until<T>(&self, mut ready: impl FnMut() -> Option<T>) -> T {
        interrupts::without_interrupts(|| loop {
            if let Some(value) = ready() {
                return value;
            }
            self.waiters.lock().push(current());
            block_current();
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
