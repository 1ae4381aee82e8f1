//! Per-task CPU time: the scheduler charges each run slice to the task that
//! ran it when a CPU switches away ([`account_switch`]); [`info`] reports a
//! task's total (the `task_info` syscall), so a test can show that an idle
//! SQPOLL poller burns no CPU.
//!
//! Invariants: `Scheduler::slice_start[cpu]` is when `cpu` switched to the
//! task it runs now; a task's `run_ns` holds every finished slice, so its
//! CPU time is `run_ns` plus, while it runs, now minus its slice start.
//! Time spent in interrupt handlers counts for the task they interrupted.

use super::{Scheduler, State, Task, Tid, SCHED};
use abi::errno::Errno;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use x86_64::instructions::interrupts;

/// Number of CPUs that run tasks (valid CPU numbers are below it).
pub fn cpus() -> u32 {
    crate::arch::smp::online() as u32
}

/// Whether task `tid` still exists: not yet ended, or ended but still on
/// its CPU or unreaped.
pub fn is_live(tid: Tid) -> bool {
    interrupts::without_interrupts(|| SCHED.lock().all.contains_key(&tid))
}

/// Called by `schedule` with its lock held when CPU `cpu` switches from
/// `current` to `next`: the slice that ends goes to `current`.
pub(super) fn account_switch(s: &mut Scheduler, cpu: usize, current: &Task, next: &Task) {
    let now = crate::time::now_ns();
    let slice = now.saturating_sub(s.slice_start[cpu]);
    current.run_ns.fetch_add(slice, Ordering::Relaxed);
    s.slice_start[cpu] = now;
    next.switches.fetch_add(1, Ordering::Relaxed);
}

/// What `task_info` reports about task `tid`; `ESRCH` if no live task (an
/// unreaped zombie counts) has that id.
pub fn info(tid: Tid) -> Result<abi::TaskInfo, Errno> {
    interrupts::without_interrupts(|| {
        let s = SCHED.lock();
        let task = s.all.get(&tid).ok_or(abi::errno::ESRCH)?;
        let mut run_ns = task.run_ns.load(Ordering::Relaxed);
        let running_on = s
            .current
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| Arc::ptr_eq(c, task)));
        if let Some(cpu) = running_on {
            run_ns += crate::time::now_ns().saturating_sub(s.slice_start[cpu]);
        }
        let mut name = [0u8; 16];
        let len = task.name.len().min(name.len());
        name[..len].copy_from_slice(&task.name.as_bytes()[..len]);
        Ok(abi::TaskInfo {
            tid,
            run_ns,
            switches: task.switches.load(Ordering::Relaxed),
            state: match task.state() {
                State::Ready => abi::syscall::task_state::READY,
                State::Running => abi::syscall::task_state::RUNNING,
                State::Blocked => abi::syscall::task_state::BLOCKED,
                State::Zombie => abi::syscall::task_state::ZOMBIE,
            },
            kernel_thread: u32::from(!task.is_user()),
            name,
        })
    })
}

/// The ids of live tasks (unreaped zombies included), ascending, at most
/// `max` of them, and how many live tasks there are. The list is reserved
/// fallibly before the scheduler's lock is taken (`ENOMEM`), big enough
/// for every task the bound allows, so nothing allocates under the lock.
pub fn ids(max: usize) -> Result<(alloc::vec::Vec<Tid>, usize), Errno> {
    let room = usize::try_from(super::max()).unwrap_or(usize::MAX);
    let mut ids = alloc::vec::Vec::new();
    ids.try_reserve_exact(room)
        .map_err(|_| abi::errno::ENOMEM)?;
    let total = interrupts::without_interrupts(|| {
        let s = SCHED.lock();
        ids.extend(s.all.keys().copied().take(room));
        s.all.len()
    });
    ids.sort_unstable();
    ids.truncate(max);
    Ok((ids, total))
}
