//! Tasks and the scheduler.
//!
//! A task is a kernel stack plus saved context; it is either a kernel thread
//! or a user task, whose user side (the process) belongs to a higher layer:
//! the scheduler keeps it ([`Task::user_data`], of the type the crate root
//! names) and knows nothing of files, rings or process life cycle. One round-robin run
//! queue, preemption on the timer tick, and [`WaitQueue`]s on which a task
//! sleeps until an event (a child exits, a timer fires, a completion is
//! posted).
//!
//! Locking: the scheduler state is one spin lock taken with interrupts off.
//! It is never held across a context switch. Syscalls run with interrupts
//! off (FMASK), so a syscall is never preempted; user code and kernel
//! threads are.
//!
//! Several CPUs share the run queue. A task switched away from stays
//! `on_cpu` until the next task on that CPU has finished the switch
//! ([`after_switch`]); no CPU picks a task that is still `on_cpu`, and an
//! ended task is reaped or freed only after that point. Wake-ups change a
//! task's state with a compare-and-swap (`Blocked` -> `Ready`), so a waker
//! on another CPU and the sleeper re-checking its condition cannot both
//! queue it. A CPU that goes idle halts; a wake-up sends it an IPI.
//!
//! # Bounds
//! Live tasks are bounded kernel-wide ([`init_limits`], from RAM, as
//! Linux's `threads-max`): each holds a [`TaskSlot`], taken before
//! anything of the task is allocated (`EAGAIN` past the bound). Taking a
//! slot also makes room in the scheduler's tables (task table, run queue,
//! sleepers) for every live task (`ENOMEM` if they cannot grow), so
//! starting, waking, queueing and sleeping never allocate: a task already
//! running never needs memory to be scheduled.

mod stats;
#[allow(
    unsafe_code,
    reason = "the context switch and the per-CPU current task"
)]
mod switch;
mod wait;

pub use stats::{cpus, ids, info, is_live};
pub use switch::{schedule, with_current};
pub use wait::WaitQueue;

use crate::arch::context::{KernelStack, Start, KERNEL_STACK_SIZE};
use crate::arch::cpu::MAX_CPUS;
use crate::arch::idt::TrapFrame;
use crate::arch::{apic, cpu, gdt, paging};
use abi::errno::{Errno, EAGAIN, ENOMEM};
use abi::layout::PAGE_SIZE;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hash::{BuildHasher, Hasher};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use hashbrown::HashMap;
use kernel_core::quota::Quota;
use spin::Mutex;
use x86_64::instructions::interrupts;

/// Task identifier; a process's pid is its task's id.
pub type Tid = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Ready = 0,
    Running = 1,
    Blocked = 2,
    /// Ended; waits to be reaped (its parent's `wait`, or the scheduler).
    Zombie = 3,
}

/// A schedulable thread of execution.
pub struct Task {
    pub id: Tid,
    pub name: String,
    /// `None` for a CPU's idle task, which runs on the stack the CPU came
    /// up on.
    stack: Option<KernelStack>,
    /// Saved kernel stack pointer while not running.
    saved_rsp: switch::SavedRsp,
    state: AtomicU8,
    /// Monotonic time (ns) of a timed wake-up, or 0.
    wake_at: AtomicU64,
    /// It is in `Scheduler::sleepers` (at most once).
    in_sleepers: AtomicBool,
    /// Its context is live on a CPU (running, or switched away from but not
    /// yet saved): no other CPU may pick it.
    on_cpu: AtomicBool,
    /// CPUs it may run on (bit per CPU index).
    affinity: AtomicU64,
    /// Nanoseconds run on a CPU, up to its last switch away (see `stats`).
    run_ns: AtomicU64,
    /// Times a CPU switched to it.
    switches: AtomicU64,
    /// The page-table root it runs on, 0 for the kernel's. A user task's is
    /// its process's; an SQPOLL poller (a kernel thread) runs on its
    /// process's too, so switching between the two reloads no CR3. Whoever
    /// sets it keeps that address space alive until the task has ended and
    /// is off its CPU.
    space_root: AtomicU64,
    /// An exit status someone asked it to end with (0: none): a user task
    /// is ended by the layer above at its next return to user mode
    /// ([`pending_kill`]); interruptible waits give up early.
    kill: AtomicI32,
    /// What it runs when it starts.
    entry: Entry,
    /// A user task's user side (the process), a higher layer's type.
    user: Option<UserData>,
    /// Its place among the live tasks, given back when it is freed; `None`
    /// for a CPU's idle task, which is not counted.
    _slot: Option<TaskSlot>,
}

/// Live tasks (kernel threads and user tasks; not the CPUs' idle tasks),
/// one per [`TaskSlot`]; the limit is set by [`init_limits`].
static TASKS: Quota = Quota::new(0);

/// Kernel stacks may take at most this share of RAM: the bound on tasks is
/// RAM / (`TASKS_RAM_SHARE` * stack size), Linux's default `threads-max`
/// (`kernel/fork.c`, `set_max_threads`), 1024 tasks for 256 MiB.
const TASKS_RAM_SHARE: u64 = 8;
/// Fewest tasks any machine allows (Linux: `MIN_THREADS`, 20).
const TASKS_MIN: u64 = 32;
/// Most tasks any machine allows: the run queue and the sleepers are
/// searched one by one (at every switch, every tick).
const TASKS_CAP: u64 = 4096;

/// Sets the bound on live tasks: `tasks_max` (the boot parameter) if
/// given, else from the usable RAM, RAM / (8 * `KERNEL_STACK_SIZE`); in
/// both cases within `TASKS_MIN..=TASKS_CAP`. Called at boot, once the
/// frame allocator is up and before the first task is made.
pub fn init_limits(tasks_max: Option<u32>) {
    let (_, usable) = crate::mm::frames::counts();
    let from_ram = usable * PAGE_SIZE / (TASKS_RAM_SHARE * KERNEL_STACK_SIZE as u64);
    let wanted = tasks_max.map_or(from_ram, u64::from);
    let max = wanted.clamp(TASKS_MIN, TASKS_CAP);
    if tasks_max.is_some() && max != wanted {
        log::warn!("tasks: {wanted} is outside {TASKS_MIN}..={TASKS_CAP}; using {max}");
    }
    TASKS.set_limit(max as usize);
    // Room for all of them now: the tables never grow later, nor split
    // the free memory with a table kept for good.
    interrupts::without_interrupts(|| SCHED.lock().make_room(max as usize))
        .expect("room for the scheduler's tables at boot");
    log::info!("tasks: at most {max} live");
}

/// A place among the live tasks, taken before a task is made: while it
/// exists, it counts toward the bound, and the scheduler's tables have
/// room for its task. Released when dropped (with the task it went into).
pub struct TaskSlot(());

impl TaskSlot {
    /// Takes a place among the live tasks: `EAGAIN` at the bound (as
    /// Linux's `fork` past `threads-max`); then grows the scheduler's
    /// tables to hold every live task: `ENOMEM` if they cannot.
    pub fn take() -> Result<Self, Errno> {
        TASKS.try_charge_or(1, EAGAIN)?;
        let slot = TaskSlot(());
        interrupts::without_interrupts(|| SCHED.lock().make_room(TASKS.used()))?;
        Ok(slot)
    }
}

impl Drop for TaskSlot {
    fn drop(&mut self) {
        TASKS.uncharge(1);
    }
}

/// The user side of a user task: a higher layer's type (the process),
/// which the scheduler only keeps and hands back. The type is chosen where
/// the layers are composed (`crate::UserSide`, in main.rs), not here: the
/// scheduler names it and never looks inside. Being concrete, reaching it
/// is a load; as `dyn Any` it was a downcast (a virtual `type_id` call and
/// a 128-bit compare) on every syscall that needs the process,
/// `io_uring_enter` among them.
pub type UserData = Arc<crate::UserSide>;

/// What a task runs when it starts, once it has finished its first switch.
#[derive(Clone, Copy)]
enum Entry {
    /// A CPU's idle task: it was running before it was a task.
    Idle,
    /// A kernel thread: the function and its argument.
    Thread(fn(u64), u64),
    /// A user task: `prepare` runs before its first entry to user mode;
    /// `ended` is called with the task once it has ended and is off its CPU
    /// (whoever reaps it then calls [`forget`]).
    User { prepare: fn(), ended: fn(Arc<Task>) },
}

impl Task {
    /// A task that starts at `start` on a fresh kernel stack, not yet
    /// queued ([`start`]), in `slot`. `ENOMEM` if the stack would take
    /// frames kept for the heap (see `mm::frames`), or there is no room
    /// for it.
    fn new(
        slot: TaskSlot,
        name: String,
        start: Start,
        entry: Entry,
        space_root: u64,
        user: Option<UserData>,
        stack_size: usize,
    ) -> Result<Arc<Self>, Errno> {
        // The stack, the task and its name; the `Arc` cannot be made
        // fallibly, so this asks for room first (one frame for the rest).
        let stack_size = stack_size.max(KERNEL_STACK_SIZE);
        crate::mm::frames::headroom(stack_size as u64 / PAGE_SIZE + 1)?;
        let mut stack = KernelStack::with_size(stack_size)?;
        let rsp = stack.prepare(start);
        Ok(Arc::new(Self {
            id: NEXT_TID.fetch_add(1, Ordering::Relaxed),
            name,
            stack: Some(stack),
            saved_rsp: switch::SavedRsp::new(rsp),
            state: AtomicU8::new(State::Ready as u8),
            wake_at: AtomicU64::new(0),
            in_sleepers: AtomicBool::new(false),
            on_cpu: AtomicBool::new(false),
            affinity: AtomicU64::new(u64::MAX),
            run_ns: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            space_root: AtomicU64::new(space_root),
            kill: AtomicI32::new(0),
            entry,
            user,
            _slot: Some(slot),
        }))
    }

    /// A user task for `user` (the process), on the page tables at
    /// `space_root`, not yet queued ([`start`]), in `slot`. It calls
    /// `prepare` when it first runs, then enters user mode with `frame`;
    /// once it has ended and is off its CPU, `ended` is called with it.
    pub fn new_user(
        slot: TaskSlot,
        name: &str,
        user: UserData,
        space_root: u64,
        frame: TrapFrame,
        prepare: fn(),
        ended: fn(Arc<Task>),
    ) -> Result<Arc<Self>, Errno> {
        let start = Start::TrapReturn {
            prepare: user_task_main,
            frame,
        };
        let entry = Entry::User { prepare, ended };
        Self::new(
            slot,
            String::from(name),
            start,
            entry,
            space_root,
            Some(user),
            KERNEL_STACK_SIZE,
        )
    }

    /// The user side of a user task (`None` for a kernel thread).
    #[inline(always)]
    pub fn user_data(&self) -> Option<&crate::UserSide> {
        self.user.as_deref()
    }

    /// The user side of a user task, as a reference of its own (for
    /// holders that may outlive a borrow of the task).
    pub fn user_data_arc(&self) -> Option<UserData> {
        self.user.clone()
    }

    /// Whether it is a user task (not a kernel thread).
    pub fn is_user(&self) -> bool {
        self.user.is_some()
    }

    /// The page-table root it runs on (0: the kernel's).
    pub fn space_root(&self) -> u64 {
        self.space_root.load(Ordering::Relaxed)
    }

    /// Top of the kernel stack (exclusive), 16-byte aligned; 0 for an idle
    /// task.
    fn stack_top(&self) -> u64 {
        self.stack.as_ref().map_or(0, KernelStack::top)
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Ready,
            1 => State::Running,
            2 => State::Blocked,
            _ => State::Zombie,
        }
    }

    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// `from` -> `to` if the state is `from`; whether it was.
    fn change_state(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether its context is still live on a CPU.
    pub fn on_cpu(&self) -> bool {
        self.on_cpu.load(Ordering::Acquire)
    }

    fn may_run_on(&self, cpu: usize) -> bool {
        self.affinity.load(Ordering::Relaxed) & (1 << cpu) != 0
    }
}

static NEXT_TID: AtomicU64 = AtomicU64::new(0);

/// Hashes task ids for the task table. Ids are distinct counts, so one
/// multiplication by the golden ratio (Fibonacci hashing) spreads them
/// over every bit of the hash.
#[derive(Clone, Copy, Default)]
struct TidHash;

impl BuildHasher for TidHash {
    type Hasher = TidHasher;
    fn build_hasher(&self) -> TidHasher {
        TidHasher(0)
    }
}

struct TidHasher(u64);

impl Hasher for TidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The scheduler's state. Invariant: each table has room for every live
/// task ([`TaskSlot::take`] grows them before a task is made, and none
/// shrinks), and holds each task at most once, so no push or insert here
/// ever allocates.
struct Scheduler {
    run_queue: VecDeque<Arc<Task>>,
    /// The task running on each CPU.
    current: [Option<Arc<Task>>; MAX_CPUS],
    /// Each CPU's idle task (never queued).
    idle: [Option<Arc<Task>>; MAX_CPUS],
    /// The task each CPU just switched away from, finished by `after_switch`.
    prev: [Option<Arc<Task>>; MAX_CPUS],
    /// Tasks blocked with a deadline, checked every tick.
    sleepers: Vec<Arc<Task>>,
    /// Every live task (running, ready, blocked, unreaped zombie) by id,
    /// except the idle tasks.
    all: HashMap<Tid, Arc<Task>, TidHash>,
    ticks: u64,
    /// When each CPU switched to the task it runs (ns): that task's
    /// current slice of CPU time starts there.
    slice_start: [u64; MAX_CPUS],
}

impl Scheduler {
    /// Grows every table to hold `tasks` tasks.
    fn make_room(&mut self, tasks: usize) -> Result<(), Errno> {
        self.all
            .try_reserve(tasks.saturating_sub(self.all.len()))
            .map_err(|_| ENOMEM)?;
        self.run_queue
            .try_reserve(tasks.saturating_sub(self.run_queue.len()))
            .map_err(|_| ENOMEM)?;
        self.sleepers
            .try_reserve(tasks.saturating_sub(self.sleepers.len()))
            .map_err(|_| ENOMEM)
    }
}

static SCHED: Mutex<Scheduler> = Mutex::new(Scheduler {
    run_queue: VecDeque::new(),
    current: [const { None }; MAX_CPUS],
    idle: [const { None }; MAX_CPUS],
    prev: [const { None }; MAX_CPUS],
    sleepers: Vec::new(),
    all: HashMap::with_hasher(TidHash),
    ticks: 0,
    slice_start: [0; MAX_CPUS],
});

/// Context switches into a task other than idle, per CPU (for the log).
static SWITCHES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Context switches to a non-idle task on each online CPU.
pub fn switches_per_cpu() -> Vec<u64> {
    SWITCHES[..crate::arch::smp::online()]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect()
}

/// CPUs halted in their idle loop, woken by an IPI when work arrives.
static IDLE_CPUS: AtomicU64 = AtomicU64::new(0);

fn this_cpu() -> usize {
    cpu::this().id as usize
}

/// Makes the running boot context the idle task of the boot CPU.
pub fn init() {
    become_idle(0);
}

/// Makes the running context CPU `cpu`'s idle task.
fn become_idle(cpu_index: usize) {
    let idle = Arc::new(Task {
        id: NEXT_TID.fetch_add(1, Ordering::Relaxed),
        name: alloc::format!("idle{cpu_index}"),
        stack: None,
        saved_rsp: switch::SavedRsp::new(0),
        state: AtomicU8::new(State::Running as u8),
        wake_at: AtomicU64::new(0),
        in_sleepers: AtomicBool::new(false),
        on_cpu: AtomicBool::new(true),
        affinity: AtomicU64::new(1 << cpu_index),
        run_ns: AtomicU64::new(0),
        switches: AtomicU64::new(0),
        space_root: AtomicU64::new(0),
        kill: AtomicI32::new(0),
        entry: Entry::Idle,
        user: None,
        _slot: None,
    });
    interrupts::without_interrupts(|| {
        let mut s = SCHED.lock();
        cpu::this()
            .current_task
            .store(Arc::as_ptr(&idle) as u64, Ordering::Relaxed);
        s.idle[cpu_index] = Some(idle.clone());
        s.current[cpu_index] = Some(idle);
        s.slice_start[cpu_index] = crate::time::now_ns();
    });
}

/// An application processor joins the scheduler and runs its idle loop.
pub fn ap_idle(cpu_index: usize) -> ! {
    become_idle(cpu_index);
    idle_loop()
}

/// The task running on this CPU.
pub fn current() -> Arc<Task> {
    interrupts::without_interrupts(|| {
        SCHED.lock().current[this_cpu()]
            .clone()
            .expect("scheduler not initialised")
    })
}

/// The most live tasks allowed ([`init_limits`]).
pub fn max() -> u64 {
    TASKS.limit() as u64
}

/// Number of live tasks, including unreaped zombies.
pub fn count() -> u64 {
    interrupts::without_interrupts(|| SCHED.lock().all.len() as u64)
}

/// Queues a new task to run. Allocates nothing: its slot made room.
pub fn start(task: Arc<Task>) {
    interrupts::without_interrupts(|| {
        let mut s = SCHED.lock();
        s.all.insert(task.id, task.clone());
        s.run_queue.push_back(task);
    });
    kick_idle_cpu();
}

/// Wakes one halted CPU (if any other is halted) to look at the run queue.
fn kick_idle_cpu() {
    let me = this_cpu();
    let idle = IDLE_CPUS.load(Ordering::Acquire) & !(1 << me);
    if idle != 0 {
        let target = idle.trailing_zeros() as usize;
        apic::send_ipi(
            cpu::apic_id_of(target),
            u32::from(crate::arch::idt::RESCHEDULE_VECTOR),
        );
    }
}

/// Where every kernel thread starts (at its first switch).
extern "C" fn kernel_thread_main() -> ! {
    after_switch();
    let Entry::Thread(f, arg) = with_current(|t| t.entry) else {
        unreachable!("a kernel thread has work");
    };
    interrupts::enable();
    f(arg);
    interrupts::disable();
    // `after_switch` on the next task forgets it once it is off this CPU.
    with_current(|t| t.set_state(State::Zombie));
    schedule();
    unreachable!("a dead kernel thread was scheduled");
}

/// Where every user task starts (at its first switch), before it enters
/// user mode through the trap exit path.
extern "C" fn user_task_main() {
    after_switch();
    if let Entry::User { prepare, .. } = with_current(|t| t.entry) {
        prepare();
    }
}

/// Starts a kernel thread running `f(arg)`.
pub fn spawn_kernel_thread(name: &str, f: fn(u64), arg: u64) -> Result<Tid, Errno> {
    spawn_kernel_thread_on(name, f, arg, None)
}

/// Starts a kernel thread running `f(arg)`, only on CPU `cpu` if given
/// (and that CPU is online).
pub fn spawn_kernel_thread_on(
    name: &str,
    f: fn(u64),
    arg: u64,
    cpu: Option<usize>,
) -> Result<Tid, Errno> {
    spawn_kernel_thread_in(name, f, arg, cpu, 0)
}

/// [`spawn_kernel_thread_on`], running on the page tables at `space_root`
/// (0: the kernel's). The caller keeps that address space alive until the
/// thread has ended and is off its CPU ([`is_live`] turns false).
pub fn spawn_kernel_thread_in(
    name: &str,
    f: fn(u64),
    arg: u64,
    cpu: Option<usize>,
    space_root: u64,
) -> Result<Tid, Errno> {
    spawn_kernel_thread_sized(name, f, arg, cpu, space_root, KERNEL_STACK_SIZE)
}

/// [`spawn_kernel_thread_in`] with a kernel stack of `stack_size` bytes
/// (at least [`KERNEL_STACK_SIZE`]), for threads that run deep code (the
/// file-system worker).
pub fn spawn_kernel_thread_sized(
    name: &str,
    f: fn(u64),
    arg: u64,
    cpu: Option<usize>,
    space_root: u64,
    stack_size: usize,
) -> Result<Tid, Errno> {
    if cpu.is_some_and(|cpu| cpu >= crate::arch::smp::online()) {
        return Err(abi::errno::EINVAL);
    }
    let task = Task::new(
        TaskSlot::take()?,
        String::from(name),
        Start::Call(kernel_thread_main),
        Entry::Thread(f, arg),
        space_root,
        None,
        stack_size,
    )?;
    if let Some(cpu) = cpu {
        task.affinity.store(1 << cpu, Ordering::Relaxed);
    }
    let id = task.id;
    start(task);
    Ok(id)
}

/// Work a task does right after it is switched to (or, first of all, when it
/// starts): the task this CPU left is now off it; if it ended, it can be
/// reaped or freed.
fn after_switch() {
    let prev = interrupts::without_interrupts(|| SCHED.lock().prev[this_cpu()].take());
    let Some(prev) = prev else { return };
    prev.on_cpu.store(false, Ordering::Release);
    if prev.state() == State::Zombie {
        match prev.entry {
            // Whoever reaps it is told.
            Entry::User { ended, .. } => ended(prev),
            // A kernel thread: gone once off the CPU.
            Entry::Thread(..) | Entry::Idle => forget(prev.id),
        }
    }
}

/// What [`schedule`] switches: where the running task's stack pointer is
/// to be saved, and where the next task's was saved.
struct Switch {
    save: *mut u64,
    next: *mut u64,
}

/// The scheduling decision of [`schedule`], made with interrupts off: picks
/// the task this CPU runs next. `None` if the running task goes on.
/// Otherwise the picked task was not live on any CPU (`on_cpu` false) and
/// is now this CPU's current task (`on_cpu`, its page tables and kernel
/// stack loaded), and the task switched away from stays allocated and
/// `on_cpu` in `Scheduler::prev` until [`after_switch`].
fn pick_next() -> Option<Switch> {
    let cpu_index = this_cpu();
    let mut s = SCHED.lock();
    let current = s.current[cpu_index]
        .take()
        .expect("scheduler not initialised");
    let idle = s.idle[cpu_index].clone().expect("no idle task");
    let is_idle = Arc::ptr_eq(&current, &idle);
    let requeue = current.change_state(State::Running, State::Ready) && !is_idle;
    // The first queued task that may run here and is not still live on
    // another CPU.
    let pick = s
        .run_queue
        .iter()
        .position(|t| !t.on_cpu() && t.may_run_on(cpu_index));
    let next = match pick.and_then(|i| s.run_queue.remove(i)) {
        Some(next) => next,
        None if requeue => current.clone(),
        None => idle,
    };
    next.set_state(State::Running);
    if Arc::ptr_eq(&next, &current) {
        s.current[cpu_index] = Some(next);
        return None;
    }
    if requeue {
        s.run_queue.push_back(current.clone());
    }
    stats::account_switch(&mut s, cpu_index, &current, &next);
    next.on_cpu.store(true, Ordering::Release);
    if next.stack.is_some() {
        SWITCHES[cpu_index].fetch_add(1, Ordering::Relaxed);
    }
    let top = next.stack_top();
    if top != 0 {
        gdt::set_rsp0(top);
        cpu::set_kernel_rsp(top);
    }
    match next.space_root() {
        0 => paging::activate_root(paging::kernel_pml4()),
        root => paging::activate_root(root),
    }
    cpu::this()
        .current_task
        .store(Arc::as_ptr(&next) as u64, Ordering::Relaxed);
    let switch = Switch {
        save: current.saved_rsp.slot(),
        next: next.saved_rsp.slot(),
    };
    s.current[cpu_index] = Some(next);
    // `current` stays allocated (and `on_cpu`) until the next task on this
    // CPU has finished the switch in `after_switch`.
    s.prev[cpu_index] = Some(current);
    Some(switch)
}

/// Gives up the CPU voluntarily.
pub fn yield_now() {
    schedule();
}

/// Whether a task other than the running one is queued and may run on
/// this CPU: it would get the CPU if the running task yielded. For kernel
/// threads that spin only while no one else wants their CPU (the SQPOLL
/// poller).
pub fn cpu_wanted() -> bool {
    interrupts::without_interrupts(|| {
        let cpu_index = this_cpu();
        SCHED
            .lock()
            .run_queue
            .iter()
            .any(|t| t.may_run_on(cpu_index))
    })
}

/// Marks the current task blocked (interrupts off). The caller registers
/// it where a waker will find it first, re-checks its condition, and then
/// calls [`schedule`] (or [`unblock_self`] if the condition already holds).
fn mark_blocked() {
    with_current(|t| t.set_state(State::Blocked));
}

/// Undoes [`mark_blocked`] when the condition turned true before sleeping.
/// If a waker got there first the task is already queued: it then goes
/// through the scheduler once, which is harmless.
fn unblock_self() {
    if !with_current(|t| t.change_state(State::Blocked, State::Running)) {
        schedule();
    }
}

/// Makes a blocked task ready again.
pub fn wake(task: &Arc<Task>) {
    let woken = interrupts::without_interrupts(|| {
        if task.change_state(State::Blocked, State::Ready) {
            task.wake_at.store(0, Ordering::Relaxed);
            SCHED.lock().run_queue.push_back(task.clone());
            true
        } else {
            false
        }
    });
    if woken {
        kick_idle_cpu();
    }
}

/// Asks `task` to end with exit `status` (not 0): it is woken if it
/// sleeps, and the layer that returns it to user mode ends it there
/// (see [`pending_kill`]). Safe in interrupt handlers.
pub fn request_kill(task: &Arc<Task>, status: i32) {
    if status != 0 {
        task.kill.store(status, Ordering::Release);
        wake(task);
    }
}

/// The exit status the current task was asked to end with, if any.
pub fn pending_kill() -> Option<i32> {
    match with_current(|t| t.kill.load(Ordering::Acquire)) {
        0 => None,
        status => Some(status),
    }
}

/// Sleeps the current task for at least `ns` nanoseconds, or until it is
/// asked to end ([`request_kill`]).
pub fn sleep_ns(ns: u64) {
    let deadline = crate::time::now_ns().saturating_add(ns);
    interrupts::without_interrupts(|| loop {
        if crate::time::now_ns() >= deadline || pending_kill().is_some() {
            break;
        }
        let me = current();
        me.wake_at.store(deadline.max(1), Ordering::Relaxed);
        mark_blocked();
        {
            let mut s = SCHED.lock();
            // Once at most (a task woken early may still be listed).
            if !me.in_sleepers.swap(true, Ordering::Relaxed) {
                s.sleepers.push(me);
            }
        }
        if crate::time::now_ns() >= deadline {
            unblock_self();
        } else {
            schedule();
        }
    });
}

/// Timer tick at `now` (ns): wakes sleepers whose time has come (as
/// [`wake`] does, without allocating) and drops those woken otherwise.
/// Called from the timer interrupt with interrupts off, which then
/// preempts the running task with [`schedule`].
pub fn tick(now: u64) {
    let mut woken = 0;
    {
        let mut s = SCHED.lock();
        s.ticks += 1;
        let Scheduler {
            sleepers,
            run_queue,
            ..
        } = &mut *s;
        sleepers.retain(|t| {
            let at = t.wake_at.load(Ordering::Relaxed);
            if at != 0 && at > now {
                return true;
            }
            t.in_sleepers.store(false, Ordering::Relaxed);
            if at != 0 && t.change_state(State::Blocked, State::Ready) {
                t.wake_at.store(0, Ordering::Relaxed);
                run_queue.push_back(t.clone());
                woken += 1;
            }
            false
        });
    }
    for _ in 0..woken {
        kick_idle_cpu();
    }
}

/// A CPU's idle loop: runs ready tasks, halts when there are none.
pub fn idle_loop() -> ! {
    let bit = 1 << this_cpu();
    loop {
        interrupts::disable();
        let ready = {
            let s = SCHED.lock();
            let cpu_index = this_cpu();
            s.run_queue.iter().any(|t| t.may_run_on(cpu_index))
        };
        if ready {
            schedule();
        } else {
            IDLE_CPUS.fetch_or(bit, Ordering::AcqRel);
            interrupts::enable_and_hlt();
            IDLE_CPUS.fetch_and(!bit, Ordering::AcqRel);
        }
    }
}

/// The reschedule IPI: another CPU queued work.
pub fn reschedule_ipi() {
    schedule();
}

/// The live (not yet ended) user task `pid`.
pub fn find_user(pid: Tid) -> Option<Arc<Task>> {
    interrupts::without_interrupts(|| SCHED.lock().all.get(&pid).cloned())
        .filter(|t| t.is_user() && t.state() != State::Zombie)
}

/// Removes a reaped or dead task from the task table.
pub fn forget(id: Tid) {
    interrupts::without_interrupts(|| {
        SCHED.lock().all.remove(&id);
    });
}
