//! User processes: what a process holds (address space, files, family
//! links). A user task carries its process as its user data, which the
//! scheduler keeps without knowing its type; [`UserTask::process`] names it.
//! The life cycle (spawn, exit, reaping) is in `lifecycle`, above the ring
//! layer, which uses processes as defined here.

use crate::arch::paging::AddressSpace;
use crate::block::InFlight;
use crate::fs::FileHandle;
use crate::mm::shared::SharedFrames;
use crate::task::{Task, WaitQueue};
use abi::errno;
use abi::errno::Errno;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use hashbrown::HashMap;
use kernel_core::fs::FdTable;
use kernel_core::ring::SyscallMode;
use spin::Mutex;

/// A user task's process. The scheduler keeps it as the task's user data
/// (`crate::UserSide`) without looking into it; this names it. (A trait
/// rather than an inherent method, so that each module reaching a process
/// imports this one and the dependency shows.)
pub trait UserTask {
    /// The process of a task known to be a user task.
    fn process(&self) -> &Process;
    /// The process of a user task, `None` for a kernel thread (a load and
    /// a test).
    fn user_process(&self) -> Option<&Process>;
    /// The process of a user task, as a reference of its own.
    fn process_arc(&self) -> Option<Arc<Process>>;
}

impl UserTask for Task {
    #[inline]
    fn process(&self) -> &Process {
        self.user_data().expect("a kernel thread has no process")
    }

    #[inline]
    fn user_process(&self) -> Option<&Process> {
        self.user_data()
    }

    fn process_arc(&self) -> Option<Arc<Process>> {
        self.user_data_arc()
    }
}

/// The user-space part of a task.
pub struct Process {
    pub(crate) root: u64,
    pub(crate) address_space: Mutex<Option<AddressSpace>>,
    pub files: Mutex<FdTable<FileHandle>>,
    /// Files pinned by ring registrations (`REGISTER_FILES`), by token.
    /// Grows fallibly (`ENOMEM`).
    pub pinned: Mutex<HashMap<u64, FileHandle>>,
    pub(crate) parent: Mutex<Option<Weak<Task>>>,
    /// Running and unreaped children, at most `CHILDREN_MAX`.
    pub(crate) children: Mutex<Vec<Arc<Task>>>,
    pub(crate) child_exited: WaitQueue,
    pub(crate) exit_status: Mutex<Option<i32>>,
    /// How this process talks to the kernel.
    pub mode: SyscallMode,
    /// User address of its `abi::StartInfo` (filled in by
    /// `lifecycle::first_entry`).
    pub(crate) start_info: u64,
    /// The first process: its end is the machine's end.
    pub(crate) is_init: bool,
    /// Its device I/O in flight: the address space outlives it.
    pub io: Arc<InFlight>,
    /// It opened a disk at some point (so ring ops must ask whether their
    /// file's I/O completes later).
    pub uses_devices: core::sync::atomic::AtomicBool,
}

impl Process {
    /// Physical address of this process's top-level page table.
    pub fn page_table_root(&self) -> u64 {
        self.root
    }

    /// Runs `f` on the address space, or fails with `EFAULT` once the
    /// process is tearing down.
    pub fn with_address_space<R>(
        &self,
        f: impl FnOnce(&AddressSpace) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        match self.address_space.lock().as_ref() {
            Some(space) => f(space),
            None => Err(errno::EFAULT),
        }
    }
}

impl Process {
    /// Removes the shared mapping [`Process::map_shared`] made at the user
    /// address `addr` and drops the address space's reference to its
    /// frames (freed if no one else holds them). `EFAULT` once the process
    /// is tearing down, `EINVAL` if no shared mapping starts at `addr`.
    pub fn unmap_shared(&self, addr: u64) -> Result<(), Errno> {
        let frames = {
            let mut guard = self.address_space.lock();
            let space = guard.as_mut().ok_or(errno::EFAULT)?;
            space.unmap_shared(addr)?
        };
        drop(frames);
        Ok(())
    }

    /// Maps `pages` fresh zeroed, physically contiguous frames at the user
    /// address `addr` (read/write, no execute) and returns them. The
    /// address space holds them while they are mapped, and the caller
    /// through the returned reference: they are freed when both are gone.
    /// `EEXIST` if any page is already mapped.
    pub fn map_shared(&self, addr: u64, pages: u64) -> Result<Arc<SharedFrames>, Errno> {
        let frames = SharedFrames::alloc_zeroed(pages)?;
        let mut guard = self.address_space.lock();
        let space = guard.as_mut().ok_or(errno::EFAULT)?;
        space.map_shared(addr, frames.clone())?;
        Ok(frames)
    }
}
