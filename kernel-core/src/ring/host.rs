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

use super::engine::RingEngine;
use super::{BackendKind, IoEnv, SharedRing};
use abi::errno::Errno;
use alloc::boxed::Box;
use alloc::sync::Arc;

/// A ring that a file descriptor names, as the kernel's file table holds
/// it ([`RingHost::install_fd`], [`RingHost::ring_of_fd`]).
///
/// Its type is the engine's, not the backend's: every `io_uring_enter`
/// goes from the descriptor to this, and a concrete type needs no type
/// check on the way (a `dyn Any` downcast was a virtual `type_id` call and
/// a 128-bit compare, about 25 instructions per enter). What is specific
/// to a backend stays in the backend's own tables, by `id`; the fields
/// here are what every descriptor-backed ring has.
pub struct FdRing {
    /// The process that set the ring up.
    pub pid: u64,
    /// Which of the backend's mapping places it occupies (`None` for one
    /// at a fixed address).
    pub slot: Option<u32>,
    /// The ring's memory.
    pub mapping: RingMapping,
    /// Its submission and completion state.
    pub engine: RingEngine,
    /// The wait-queue key its CQ waiters sleep on.
    pub wait_key: u64,
}

/// The kernel file table's handle on a ring ([`FdRing`], behind its lock).
pub type RingObject = Arc<spin::Mutex<FdRing>>;

/// Memory that holds one ring in the layout of
/// `abi::io_uring::ring_layout` and stays valid for as long as this object
/// lives: the kernel's shared frames, or a host test's
/// [`OwnedRing`](super::OwnedRing).
pub trait RingMemory: Send + Sync {
    /// The engine's view of the memory. It borrows `self`, so no view
    /// outlives the memory.
    fn view(&self) -> SharedRing<'_>;
}

/// A backend's handle on the memory of one mapped ring.
///
/// The memory is reference-counted: each clone of the handle holds it, and
/// so does the owner's user mapping while it exists (the host's side of
/// [`RingHost::map_ring`]). It is freed only when the last of them is gone,
/// so a view ([`RingMapping::shared`], which borrows the handle) can never
/// point into freed memory, whatever a backend does and in whatever order
/// its threads drop their clones. Unmapping the user's side
/// ([`RingHost::unmap_ring`]) takes the memory away from user space at
/// once; backend threads still holding a clone go on working on memory
/// that nobody else sees until they drop it.
///
/// A view cannot outlive its handle:
///
/// ```compile_fail
/// use kernel_core::ring::{mock_ring_mapping, RingMapping};
/// let live = Default::default();
/// let mapping: RingMapping = mock_ring_mapping(&live);
/// let view = mapping.shared();
/// drop(mapping);
/// view.sq_header(0);
/// ```
#[derive(Clone)]
pub struct RingMapping {
    memory: Arc<dyn RingMemory>,
}

impl RingMapping {
    /// A handle on `memory`.
    pub fn new(memory: Arc<dyn RingMemory>) -> Self {
        Self { memory }
    }

    /// The engine's view of the ring, valid while this handle is borrowed.
    #[inline]
    pub fn shared(&self) -> SharedRing<'_> {
        self.memory.view()
    }
}

impl core::fmt::Debug for RingMapping {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RingMapping")
            .field("holders", &Arc::strong_count(&self.memory))
            .finish()
    }
}

/// A [`RingHost`] as a trait object, from a concrete host or from one
/// already: lets a backend's hot call be generic over the host (so that a
/// kernel calling it with its own host type pays no virtual call per host
/// service) while its slow paths take `&mut dyn RingHost`.
pub trait AsDynHost: RingHost {
    /// `self` as `&mut dyn RingHost`.
    fn as_dyn(&mut self) -> &mut dyn RingHost;
}

impl<T: RingHost> AsDynHost for T {
    #[inline(always)]
    fn as_dyn(&mut self) -> &mut dyn RingHost {
        self
    }
}

impl AsDynHost for dyn RingHost + '_ {
    #[inline(always)]
    fn as_dyn(&mut self) -> &mut dyn RingHost {
        self
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
    /// The calling process's environment: `env(pid())`, which a host
    /// serving a syscall may have ready (every enter asks for it).
    #[inline]
    fn caller_env(&mut self) -> Option<&mut dyn IoEnv> {
        let pid = self.pid();
        self.env(pid)
    }
    /// Maps fresh zeroed memory for a ring (`ring_layout::SIZE` bytes) at
    /// user address `addr` in the caller and returns the backend's handle on
    /// it. The user mapping holds the memory too: it stays until
    /// [`RingHost::unmap_ring`] or the end of the caller's address space.
    /// `EEXIST` if anything is mapped there already.
    fn map_ring(&mut self, addr: u64) -> Result<RingMapping, Errno>;
    /// Removes the caller's user mapping of the ring at `addr` (one that
    /// `map_ring` made); user space can no longer reach the memory when this
    /// returns. The memory itself is freed once every [`RingMapping`] clone
    /// is dropped too, so a backend may call this while its threads or its
    /// timer pass still hold one. Only the caller's own mappings: from a
    /// thread with no caller it fails (`EPERM`) and the mapping stays until
    /// the owner's address space ends.
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
    /// Polls the devices' polled queues once (for `IORING_SETUP_IOPOLL`
    /// rings): finished I/O is posted to its rings' mailboxes. Returns
    /// whether anything finished.
    fn poll_io(&mut self) -> bool {
        false
    }
    /// Polls every device queue once, interrupting ones too (a waiter about
    /// to sleep for device I/O looks first: under emulation a halted CPU
    /// wakes slowly). Returns whether anything finished.
    fn poll_io_all(&mut self) -> bool {
        false
    }
}
