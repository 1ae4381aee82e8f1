//! Tasks and the scheduler.
//!
//! A task is a kernel stack plus saved context; it is either a kernel thread
//! or the single thread of a user process ([`Process`]). One round-robin run
//! queue, preemption on the timer tick, and [`WaitQueue`]s on which a task
//! sleeps until an event (a child exits, a timer fires, a completion is
//! posted).
//!
//! Locking: the scheduler state is one spin lock taken with interrupts off.
//! It is never held across a context switch. Syscalls run with interrupts
//! off (FMASK), so a syscall is never preempted; user code and kernel
//! threads are. This is a single-CPU scheduler today; the per-CPU block
//! ([`crate::arch::cpu::PerCpu`]) is where a second CPU's `current` goes.

mod process;
mod wait;

pub use process::{exit_current, spawn, wait_child, Process};
pub use wait::WaitQueue;

use crate::arch::{context, cpu, gdt, paging};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use spin::Mutex;
use x86_64::instructions::interrupts;

/// Task identifier; a process's pid is its task's id.
pub type Tid = u64;

/// Size of every task's kernel stack.
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Ready = 0,
    Running = 1,
    Blocked = 2,
    /// Ended; waits to be reaped (its parent's `wait`, or the scheduler).
    Zombie = 3,
}

#[repr(C, align(16))]
struct StackBytes([u8; KERNEL_STACK_SIZE]);

/// A schedulable thread of execution.
pub struct Task {
    pub id: Tid,
    pub name: String,
    /// `None` for the boot CPU's idle task, which runs on the boot stack.
    stack: Option<Box<StackBytes>>,
    /// Saved kernel stack pointer while not running. Touched only by the
    /// scheduler, with interrupts off and the task not running.
    saved_rsp: UnsafeCell<u64>,
    state: AtomicU8,
    /// Monotonic time (ns) of a timed wake-up, or 0.
    wake_at: AtomicU64,
    /// The user process this task runs, if it is not a kernel thread.
    pub process: Option<Process>,
}

// SAFETY: `saved_rsp` is only accessed by the scheduler under its lock with
// interrupts off, when the task is not running (see `schedule`).
unsafe impl Sync for Task {}
// SAFETY: as above; every other field is Send.
unsafe impl Send for Task {}

impl Task {
    fn new(name: String, process: Option<Process>) -> Result<Arc<Self>, i32> {
        let layout = core::alloc::Layout::new::<StackBytes>();
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc::alloc_zeroed(layout) } as *mut StackBytes;
        if raw.is_null() {
            return Err(abi::errno::ENOMEM);
        }
        // SAFETY: `raw` was allocated by the global allocator with the layout
        // of `StackBytes` and is zeroed, a valid value of plain bytes.
        let stack = unsafe { Box::from_raw(raw) };
        Ok(Arc::new(Self {
            id: NEXT_TID.fetch_add(1, Ordering::Relaxed),
            name,
            stack: Some(stack),
            saved_rsp: UnsafeCell::new(0),
            state: AtomicU8::new(State::Ready as u8),
            wake_at: AtomicU64::new(0),
            process,
        }))
    }

    /// Top of the kernel stack (exclusive), 16-byte aligned.
    pub fn stack_top(&self) -> u64 {
        match &self.stack {
            Some(s) => s.0.as_ptr() as u64 + KERNEL_STACK_SIZE as u64,
            None => 0,
        }
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Ready,
            1 => State::Running,
            2 => State::Blocked,
            _ => State::Zombie,
        }
    }

    fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The process, for tasks known to be user tasks.
    pub fn process(&self) -> &Process {
        self.process.as_ref().expect("kernel thread has no process")
    }
}

static NEXT_TID: AtomicU64 = AtomicU64::new(0);

struct Scheduler {
    run_queue: VecDeque<Arc<Task>>,
    current: Option<Arc<Task>>,
    idle: Option<Arc<Task>>,
    /// Tasks blocked with a deadline, checked every tick.
    sleepers: Vec<Arc<Task>>,
    /// Ended tasks nobody will reap; dropped once another task runs.
    dead: Vec<Arc<Task>>,
    /// Every live task (running, ready, blocked, unreaped zombie) by id.
    all: BTreeMap<Tid, Arc<Task>>,
    ticks: u64,
}

static SCHED: Mutex<Scheduler> = Mutex::new(Scheduler {
    run_queue: VecDeque::new(),
    current: None,
    idle: None,
    sleepers: Vec::new(),
    dead: Vec::new(),
    all: BTreeMap::new(),
    ticks: 0,
});

/// Makes the running boot context the idle task of the boot CPU.
pub fn init() {
    let idle = Arc::new(Task {
        id: NEXT_TID.fetch_add(1, Ordering::Relaxed),
        name: String::from("idle"),
        stack: None,
        saved_rsp: UnsafeCell::new(0),
        state: AtomicU8::new(State::Running as u8),
        wake_at: AtomicU64::new(0),
        process: None,
    });
    let mut s = SCHED.lock();
    cpu::this()
        .current_task
        .store(Arc::as_ptr(&idle) as u64, Ordering::Relaxed);
    s.idle = Some(idle.clone());
    s.current = Some(idle);
}

/// Runs `f` on the task running on this CPU, without the scheduler lock or
/// a reference count (the syscall fast path).
pub fn with_current<R>(f: impl FnOnce(&Task) -> R) -> R {
    let ptr = cpu::this().current_task.load(Ordering::Relaxed) as *const Task;
    assert!(!ptr.is_null(), "scheduler not initialised");
    // SAFETY: the scheduler stores the address of the task it switches to
    // (kept alive by `Scheduler::current` while it runs) before switching;
    // `f` runs on that task, which cannot be freed while it is running.
    f(unsafe { &*ptr })
}

/// The task running on this CPU.
pub fn current() -> Arc<Task> {
    interrupts::without_interrupts(|| {
        SCHED
            .lock()
            .current
            .clone()
            .expect("scheduler not initialised")
    })
}

/// Number of live tasks, including unreaped zombies.
pub fn count() -> u64 {
    interrupts::without_interrupts(|| SCHED.lock().all.len() as u64)
}

fn enqueue(task: Arc<Task>) {
    interrupts::without_interrupts(|| {
        let mut s = SCHED.lock();
        s.all.insert(task.id, task.clone());
        s.run_queue.push_back(task);
    });
}

/// Entry of every kernel thread (called from the context-switch trampoline).
pub extern "C" fn kernel_thread_main(entry: u64, arg: u64) -> ! {
    after_switch();
    interrupts::enable();
    // SAFETY: `entry` was produced from a `fn(u64)` in `spawn_kernel_thread`.
    let f: fn(u64) = unsafe { core::mem::transmute::<usize, fn(u64)>(entry as usize) };
    f(arg);
    interrupts::disable();
    let me = current();
    me.set_state(State::Zombie);
    interrupts::without_interrupts(|| {
        let mut s = SCHED.lock();
        s.all.remove(&me.id);
        s.dead.push(me);
    });
    schedule();
    unreachable!("a dead kernel thread was scheduled");
}

/// Starts a kernel thread running `f(arg)`.
pub fn spawn_kernel_thread(name: &str, f: fn(u64), arg: u64) -> Result<Tid, i32> {
    let task = Task::new(String::from(name), None)?;
    // SAFETY: the stack is fresh and owned by `task`; its top is aligned.
    let rsp = unsafe {
        context::initial_stack(
            task.stack_top(),
            context::Start::KernelThread {
                entry: f as usize as u64,
                arg,
            },
        )
    };
    // SAFETY: the task is not running and not yet visible to the scheduler.
    unsafe { *task.saved_rsp.get() = rsp };
    let id = task.id;
    enqueue(task);
    Ok(id)
}

/// Work a task does right after it is switched to: drop tasks that ended.
fn after_switch() {
    let dead = interrupts::without_interrupts(|| {
        let mut s = SCHED.lock();
        let current = s.current.clone();
        let mut keep = Vec::new();
        let mut dead = Vec::new();
        for task in s.dead.drain(..) {
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &task)) {
                keep.push(task);
            } else {
                dead.push(task);
            }
        }
        s.dead = keep;
        dead
    });
    drop(dead);
}

/// Gives the CPU to the next ready task (or idle). Returns when this task is
/// scheduled again. The caller sets its state first: a `Running` task goes
/// back to the run queue, a `Blocked` or `Zombie` one does not.
pub fn schedule() {
    let were_enabled = interrupts::are_enabled();
    interrupts::disable();
    let switch = {
        let mut s = SCHED.lock();
        let current = s.current.take().expect("scheduler not initialised");
        let idle = s.idle.clone().expect("no idle task");
        let is_idle = Arc::ptr_eq(&current, &idle);
        if current.state() == State::Running {
            current.set_state(State::Ready);
            if !is_idle {
                s.run_queue.push_back(current.clone());
            }
        }
        let next = s.run_queue.pop_front().unwrap_or(idle);
        next.set_state(State::Running);
        if Arc::ptr_eq(&next, &current) {
            s.current = Some(next);
            None
        } else {
            let top = next.stack_top();
            if top != 0 {
                gdt::set_rsp0(top);
                cpu::set_kernel_rsp(top);
            }
            match &next.process {
                Some(p) => p.activate(),
                None => paging::activate_root(paging::kernel_pml4()),
            }
            cpu::this()
                .current_task
                .store(Arc::as_ptr(&next) as u64, Ordering::Relaxed);
            let save = current.saved_rsp.get();
            // SAFETY: `next` is not running (it was queued or idle), so its
            // saved stack pointer is stable.
            let next_rsp = unsafe { *next.saved_rsp.get() };
            s.current = Some(next);
            // `current` stays alive through the run queue, its parent, the
            // task table or the dead list, whichever applies.
            Some((save, next_rsp))
        }
    };
    if let Some((save, next_rsp)) = switch {
        // SAFETY: interrupts are off, the lock is released, `save` belongs to
        // the task being switched away from, which stays allocated (see
        // above), and `next_rsp` was saved by `switch` or `initial_stack`.
        unsafe { context::switch(save, next_rsp) };
        after_switch();
    }
    if were_enabled {
        interrupts::enable();
    }
}

/// Gives up the CPU voluntarily.
pub fn yield_now() {
    schedule();
}

/// Blocks the current task until [`wake`] (its state must already be set up
/// by the caller's wait queue, with interrupts off).
fn block_current() {
    current().set_state(State::Blocked);
    schedule();
}

/// Makes a blocked task ready again.
pub fn wake(task: &Arc<Task>) {
    interrupts::without_interrupts(|| {
        if task.state() == State::Blocked {
            task.set_state(State::Ready);
            task.wake_at.store(0, Ordering::Relaxed);
            let mut s = SCHED.lock();
            s.run_queue.push_back(task.clone());
        }
    });
}

/// Sleeps the current task for at least `ns` nanoseconds.
pub fn sleep_ns(ns: u64) {
    let deadline = crate::time::now_ns().saturating_add(ns);
    interrupts::without_interrupts(|| loop {
        if crate::time::now_ns() >= deadline {
            break;
        }
        let me = current();
        me.wake_at.store(deadline.max(1), Ordering::Relaxed);
        SCHED.lock().sleepers.push(me);
        block_current();
    });
}

/// Timer tick: wakes sleepers whose time has come and preempts the running
/// task. Called from the timer interrupt with interrupts off.
pub fn tick() {
    let now = crate::time::now_ns();
    let woken: Vec<Arc<Task>> = {
        let mut s = SCHED.lock();
        s.ticks += 1;
        let mut woken = Vec::new();
        s.sleepers.retain(|t| {
            let at = t.wake_at.load(Ordering::Relaxed);
            if at != 0 && at <= now {
                woken.push(t.clone());
                false
            } else {
                at != 0
            }
        });
        woken
    };
    for task in &woken {
        wake(task);
    }
    crate::rings::tick(now);
    schedule();
}

/// The boot CPU's idle loop: runs ready tasks, halts when there are none.
pub fn idle_loop() -> ! {
    loop {
        interrupts::disable();
        let ready = !SCHED.lock().run_queue.is_empty();
        if ready {
            schedule();
        } else {
            interrupts::enable_and_hlt();
        }
    }
}

/// The live (not yet ended) user process `pid`.
pub fn find_process(pid: Tid) -> Option<Arc<Task>> {
    interrupts::without_interrupts(|| SCHED.lock().all.get(&pid).cloned())
        .filter(|t| t.process.is_some() && t.state() != State::Zombie)
}

/// Removes a reaped or dead task from the task table.
fn forget(id: Tid) {
    interrupts::without_interrupts(|| {
        SCHED.lock().all.remove(&id);
    });
}

/// Hands an ended task to the scheduler to drop once it no longer runs.
fn bury(task: Arc<Task>) {
    interrupts::without_interrupts(|| {
        let mut s = SCHED.lock();
        s.all.remove(&task.id);
        s.dead.push(task);
    });
}
