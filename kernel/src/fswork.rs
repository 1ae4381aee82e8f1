//! The file-system worker: the kernel thread that runs every call into a
//! disk file system (as Linux's io-wq runs what may block).
//!
//! Why a thread of its own:
//! - rsext4 needs more than 40 KiB of stack for ordinary calls
//!   (`fs-ext4/tests/stack.rs`); every other task has 32 KiB. The worker
//!   has [`WORKER_STACK`].
//! - A disk file system sleeps on the disk. A ring op handed here leaves
//!   `io_uring_enter` (and the SQPOLL poller) free to go on; a syscall
//!   sleeps until its job is done, holding no lock.
//!
//! One worker runs the jobs in the order they were queued: calls into one
//! mount are serialised anyway (rsext4 is a `&mut self` API), and FIFO
//! order is what makes a linked WRITE -> FSYNC, or two WRITEs at the file
//! position, happen in submission order. Not done: a worker per mount or
//! per CPU (useful once there are several disks or a file system that can
//! run calls in parallel).
//!
//! A job is a boxed closure. Queueing one is fallible (`ENOMEM` if the
//! queue cannot grow); boxing it is not (as `Arc::new`, see
//! `docs/kernel_rules.md`), it is a few words.

use crate::task::{self, WaitQueue};
use abi::errno::{Errno, ENOMEM};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;

/// The worker's kernel stack: rsext4 needs more than 40 KiB; four times
/// that leaves room for the block layer and interrupts below it.
pub const WORKER_STACK: usize = 256 * 1024;

type Job = Box<dyn FnOnce() + Send>;

static QUEUE: Mutex<VecDeque<Job>> = Mutex::new(VecDeque::new());
/// The worker sleeps here while the queue is empty.
static WORK: WaitQueue = WaitQueue::new();
/// The worker's task id (0 before it started).
static WORKER: AtomicU64 = AtomicU64::new(0);

/// Starts the worker (once, at boot, before any disk is mounted).
pub fn init() -> Result<(), Errno> {
    let tid = task::spawn_kernel_thread_sized("fswork", worker_main, 0, None, 0, WORKER_STACK)?;
    WORKER.store(tid, Ordering::Release);
    Ok(())
}

/// Whether the running task is the worker.
pub fn on_worker() -> bool {
    let worker = WORKER.load(Ordering::Acquire);
    worker != 0 && task::with_current(|t| t.id) == worker
}

/// Queues `job` for the worker; it runs after every job queued before.
pub fn post(job: impl FnOnce() + Send + 'static) -> Result<(), Errno> {
    if WORKER.load(Ordering::Acquire) == 0 {
        return Err(abi::errno::EAGAIN);
    }
    let job: Job = Box::new(job);
    without_interrupts(|| {
        let mut queue = QUEUE.lock();
        queue.try_reserve(1).map_err(|_| ENOMEM)?;
        queue.push_back(job);
        Ok::<(), Errno>(())
    })?;
    WORK.wake_all();
    Ok(())
}

/// Where a job's result waits for the thread that queued it.
struct Reply<R> {
    value: Mutex<Option<R>>,
    ready: WaitQueue,
}

/// Runs `f` on the worker and sleeps until it returned; on the worker
/// itself, runs it at once. `ENOMEM` if it could not be queued.
pub fn call<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, Errno> {
    if on_worker() {
        return Ok(f());
    }
    let reply = Arc::new(Reply {
        value: Mutex::new(None),
        ready: WaitQueue::new(),
    });
    let theirs = reply.clone();
    post(move || {
        let value = f();
        without_interrupts(|| *theirs.value.lock() = Some(value));
        theirs.ready.wake_all();
    })?;
    Ok(reply
        .ready
        .wait_until(|| without_interrupts(|| reply.value.lock().take())))
}

fn worker_main(_: u64) {
    loop {
        let job = WORK.wait_until(|| without_interrupts(|| QUEUE.lock().pop_front()));
        job();
    }
}
