//! What a ring backend needs from the kernel: [`RingHost`].
//!
//! Backends are separate crates that cannot see the kernel's processes,
//! memory or scheduler; the kernel hands them a `&mut dyn RingHost` on every
//! call. The engine's file and user-memory work goes through the
//! [`IoEnv`] the host provides for the ring's owner.
//!
//! A backend may also run work of its own on a kernel thread
//! ([`RingHost::spawn_thread`], the SQPOLL poller): the thread gets a host
//! with no caller, gives the CPU away with [`RingHost::yield_now`] (or
//! spins while [`RingHost::cpu_wanted`] says no other task wants it), sleeps
//! on wait queues with [`RingHost::wait`], and takes ring locks only inside
//! [`RingHost::atomically`], because syscalls take the same locks with
//! interrupts off and a thread preempted while holding one would stall them
//! on a single CPU.

use super::{BackendKind, IoEnv, SharedRing};
use abi::errno::Errno;
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::any::Any;
use core::sync::atomic::{AtomicU32, AtomicU64};

/// A backend's ring object as the kernel's file table holds it; the
/// backend downcasts it back.
pub type RingObject = Arc<dyn Any + Send + Sync>;

/// The kernel's views of one mapped ring (the layout of
/// `abi::io_uring::ring_layout`), as disjoint atomic slices.
///
/// The memory is owned by the owner process's address space and stays
/// valid until that address space is torn down, which the kernel does only
/// after `RingBackend::teardown` for the process has returned; backends
/// therefore must not keep views past teardown.
#[derive(Clone, Copy)]
pub struct RingViews {
    /// SQ header page: 1024 words.
    pub sq_hdr: &'static [AtomicU32],
    /// CQ header page: 1024 words.
    pub cq_hdr: &'static [AtomicU32],
    /// SQE slots: 8 words each.
    pub sqes: &'static [AtomicU64],
    /// CQE slots: 2 words each.
    pub cqes: &'static [AtomicU64],
}

impl RingViews {
    /// The engine's view.
    pub fn shared(&self) -> SharedRing<'static> {
        SharedRing::new(self.sq_hdr, self.cq_hdr, self.sqes, self.cqes)
    }
}

/// What a backend runs on a kernel thread of its own: called once, with
/// that thread's host; the thread ends when it returns.
pub type ThreadBody = Box<dyn FnOnce(&mut dyn RingHost) + Send>;

/// Kernel services for ring backends. "The caller" is the process whose
/// syscall is being served (none when the kernel's timer thread or a
/// backend's own thread calls).
pub trait RingHost {
    /// The calling process's id (0 when there is none).
    fn pid(&self) -> u64;
    /// Monotonic nanoseconds.
    fn now_ns(&self) -> u64;
    /// The I/O environment of process `pid` (files, user memory); `None` if
    /// it no longer exists.
    fn env(&mut self, pid: u64) -> Option<&mut dyn IoEnv>;
    /// Maps a ring (`ring_layout::SIZE` bytes) at user address `addr` in the
    /// caller and returns the kernel's views of it.
    fn map_ring(&mut self, addr: u64) -> Result<RingViews, Errno>;
    /// Unmaps and frees the ring mapped at `addr` in the caller (a mapping
    /// `map_ring` made). The backend must have dropped every view of it:
    /// the frames are reused at once.
    fn unmap_ring(&mut self, addr: u64) -> Result<(), Errno>;
    /// Installs a descriptor for ring `id` (whose object is `ring`) in the
    /// caller's file table; closing its last copy calls
    /// `RingBackend::release(id)`.
    fn install_fd(&mut self, kind: BackendKind, id: u64, ring: RingObject) -> Result<i32, Errno>;
    /// The ring object behind the caller's descriptor `fd`: `EBADF` if there
    /// is no such descriptor, `EOPNOTSUPP` if it is not a ring of `kind`.
    fn ring_of_fd(&mut self, kind: BackendKind, fd: i32) -> Result<RingObject, Errno>;
    /// Sleeps the caller on the wait queue `key` until `ready()` holds
    /// (checked with interrupts off, so no wake-up is lost).
    fn wait(&mut self, key: u64, ready: &mut dyn FnMut() -> bool);
    /// Wakes every sleeper on `key`.
    fn wake(&mut self, key: u64);
    /// Drops the wait queue `key` (the ring is gone).
    fn forget_wait(&mut self, key: u64);
    /// Asks for `RingBackend::poll_timers` at or soon after `deadline` (ns).
    fn arm_timer(&mut self, deadline: u64);
    /// Number of CPUs that run tasks (valid CPU numbers are below it).
    fn cpus(&self) -> u32;
    /// Starts a kernel thread named `name` that runs `body` with a host of
    /// its own (no caller: `pid()` is 0, `env(pid)` reaches any live
    /// process), only on CPU `cpu` if given (`EINVAL` if that CPU runs no
    /// tasks). Returns the thread's task id. The thread is scheduled like
    /// any task and may be preempted outside [`RingHost::atomically`].
    ///
    /// It runs on the caller's page tables, so switching between the caller
    /// and the thread costs no address-space switch. The caller's address
    /// space must therefore outlive it: the backend stops the thread and
    /// [`RingHost::join_thread`]s it in `teardown` at the latest.
    fn spawn_thread(
        &mut self,
        name: &str,
        cpu: Option<u32>,
        body: ThreadBody,
    ) -> Result<u64, Errno>;
    /// Returns once thread `tid` has ended and no CPU runs on its stack or
    /// its page tables any more (the backend told it to end first).
    fn join_thread(&mut self, tid: u64);
    /// Gives the CPU to another ready task, if there is one; returns when
    /// this task runs again.
    fn yield_now(&mut self);
    /// Whether another task is ready to run on the CPU running the caller,
    /// so that [`RingHost::yield_now`] would hand the CPU over. A thread
    /// that polls may spin (`core::hint::spin_loop`) while this is false and
    /// yields once it is true. Costs a look at the run queue: ask every few
    /// microseconds, not on every spin.
    fn cpu_wanted(&self) -> bool;
    /// Runs `f` without preemption and with interrupts off on this CPU (a
    /// no-op wrapper in a syscall, which already runs so). Kernel threads
    /// take ring locks only in here; `f` must not sleep.
    fn atomically(&mut self, f: &mut dyn FnMut(&mut dyn RingHost));
}
