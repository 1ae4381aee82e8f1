//! The ring backends compiled into this image, and the active one.
//!
//! This is the only module that names a concrete backend: each Cargo feature
//! adds one to [`BACKENDS`]; the `ring=` boot parameter picks the active one
//! among them. Everything else goes through `&dyn RingBackend`.

mod host;
mod timer;

pub use timer::tick;

use abi::errno::Errno;
use host::KernelHost;
use kernel_core::bootparam::BootConfig;
use kernel_core::ring::{BackendKind, RawArgs, RingBackend, SystemRing};
use spin::Once;

/// Every backend compiled in, in order of preference.
pub(crate) const BACKENDS: &[&'static dyn RingBackend] = &[
    #[cfg(feature = "iouring")]
    &ring_iouring::BACKEND,
    #[cfg(feature = "sqpoll")]
    &ring_sqpoll::BACKEND,
];

static ACTIVE: Once<Option<&'static dyn RingBackend>> = Once::new();

/// Chooses the active backend from the boot configuration.
pub fn init(config: &BootConfig) {
    let chosen = match config.ring {
        Some(kind) => match find(kind) {
            Some(backend) => Some(backend),
            None => {
                let fallback = BACKENDS.first().copied();
                log::error!(
                    "ring={}: that backend is not compiled into this kernel; using {}",
                    kind.name(),
                    fallback.map_or("none", |b| b.kind().name())
                );
                fallback
            }
        },
        None => BACKENDS.first().copied(),
    };
    let names: alloc::vec::Vec<&str> = BACKENDS.iter().map(|b| b.kind().name()).collect();
    log::info!(
        "rings: compiled in [{}], active {}",
        names.join(", "),
        chosen.map_or("none", |b| b.kind().name())
    );
    ACTIVE.call_once(|| chosen);
    timer::start();
}

fn find(kind: BackendKind) -> Option<&'static dyn RingBackend> {
    backend(kind)
}

/// The backend that serves `kind`'s syscalls, if it is compiled in.
#[inline]
pub fn backend(kind: BackendKind) -> Option<&'static dyn RingBackend> {
    match kind {
        #[cfg(feature = "iouring")]
        BackendKind::IoUring => Some(&ring_iouring::BACKEND),
        #[cfg(feature = "sqpoll")]
        BackendKind::SqPoll => Some(&ring_sqpoll::BACKEND),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The backend chosen at boot (`SysInfo::ring_backend` reports it).
pub fn active() -> Option<&'static dyn RingBackend> {
    ACTIVE.get().copied().flatten()
}

/// Sets up the calling process's system ring (`SyscallMode::RingBased`)
/// in the active backend. Returns the backend's `abi::syscall::backend`
/// value and the ring.
pub fn setup_system_ring() -> Result<(u64, SystemRing), Errno> {
    let backend = active().ok_or(abi::errno::ENOSYS)?;
    let ring = KernelHost::with_current(|host| backend.setup_system_ring(host))?;
    Ok((backend_value(Some(backend.kind())), ring))
}

/// The `abi::syscall::backend` value of `kind` (`NONE` for `None`).
pub fn backend_value(kind: Option<BackendKind>) -> u64 {
    match kind {
        None => abi::syscall::backend::NONE,
        Some(BackendKind::IoUring) => abi::syscall::backend::IO_URING,
        Some(BackendKind::SqPoll) => abi::syscall::backend::RING_API,
    }
}

/// Called (in interrupt context too) after a device posted a result to a
/// ring's mailbox whose waiters sleep on `key`: wakes them, or, if nobody
/// waits, the ring thread, which posts the CQE.
pub fn io_posted(key: u64) {
    if host::wake_key(key) == 0 {
        timer::kick();
    }
}

/// Releases every ring the process `pid` holds, in every backend. Called
/// when the process ends, before its address space goes.
pub fn teardown(pid: u64) {
    KernelHost::with_current(|host| {
        for backend in BACKENDS {
            backend.teardown(host, pid);
        }
    });
}

/// The guard a ring descriptor holds (`fs::RingDescriptor`): dropped with
/// the last handle, it releases the ring in its backend.
struct RingRelease {
    kind: BackendKind,
    pid: u64,
    id: u64,
}

impl Drop for RingRelease {
    fn drop(&mut self) {
        if let Some(backend) = backend(self.kind) {
            KernelHost::with_current(|host| backend.release(host, self.pid, self.id));
        }
    }
}

/// Routes a ring syscall to the backend of its family.
pub fn call(kind: BackendKind, op: RingCall, args: RawArgs) -> Result<u64, Errno> {
    let backend = backend(kind).ok_or(abi::errno::ENOSYS)?;
    KernelHost::with_current(|host| match op {
        RingCall::Setup => backend.setup(host, args),
        RingCall::Enter => backend.enter(host, args),
        RingCall::Register => backend.register(host, args),
    })
}

/// `io_uring_enter`, the call that runs every submission: what [`call`]
/// does for it, with the backend known at compile time.
#[cfg(feature = "iouring")]
#[inline]
pub fn iouring_enter(args: RawArgs) -> Result<u64, Errno> {
    KernelHost::with_current(|host| ring_iouring::BACKEND.enter_in(host, args))
}

/// Which of a ring system's three calls.
pub enum RingCall {
    Setup,
    Enter,
    Register,
}
