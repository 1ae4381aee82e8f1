//! The syscall mode (`syscall=direct|ring`): visible to the program, and
//! the I/O path it implies really taken.
//!
//! The configuration names the mode it boots with (`-- mode=ring` after
//! the kernel parameters), so a kernel that ignored `syscall=` fails here
//! instead of passing the rest of the suite in the other mode.

use abi::errno::{EBADF, EINVAL, ENOSYS, ENXIO};
use abi::io_uring::enter_flags::{GETEVENTS, REGISTERED_RING};
use abi::io_uring::REGISTERED_RINGS_MAX;
use abi::open_flags::{O_CREAT, O_RDWR, O_TRUNC};
use abi::ring_api::enter_flags::SYSTEM_RING;
use abi::syscall::{self as nr, mode};
use core::sync::atomic::{AtomicU64, Ordering};
use libuser::fs::File;
use libuser::test::{settle, Case, TestResult, HEAP_SLACK};
use libuser::uring::{self, Ring};
use libuser::{check, check_eq, check_err, detail, process, sys, sysring};

use crate::files::Scratch;
use crate::hostile;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("the syscall mode is the one booted and visible to the program", mode_visible),
    ("ordinary I/O takes the mode's path (system ring or syscalls)", io_path),
    ("the system ring's doorbells refuse what is not a system ring", system_doorbells),
    ("a scribbled system ring costs only its own process (ring_hostile system), leaks nothing", hostile_system),
];

/// `abi::syscall::mode` value the boot configuration says this is, or
/// `u64::MAX` if it did not say.
static EXPECTED: AtomicU64 = AtomicU64::new(u64::MAX);

/// Takes `mode=direct` or `mode=ring` from the program's arguments.
pub fn expect_from_args(args: &libuser::Args) {
    for arg in args.iter_str() {
        match arg {
            "mode=direct" => EXPECTED.store(mode::DIRECT, Ordering::Relaxed),
            "mode=ring" => EXPECTED.store(mode::RING_BASED, Ordering::Relaxed),
            _ => {}
        }
    }
}

fn mode_name(value: u64) -> &'static str {
    match value {
        mode::DIRECT => "direct",
        mode::RING_BASED => "ring",
        _ => "?",
    }
}

fn mode_visible() -> TestResult {
    let info = sys::sysinfo()?;
    detail!(
        "mode {} (StartInfo {}), system ring {}",
        mode_name(info.syscall_mode),
        mode_name(sysring::mode()),
        if sysring::active() { "in use" } else { "none" }
    );
    check_eq!(sysring::mode(), info.syscall_mode);
    check_eq!(sysring::active(), info.syscall_mode == mode::RING_BASED);
    let expected = EXPECTED.load(Ordering::Relaxed);
    if expected != u64::MAX {
        check_eq!(mode_name(info.syscall_mode), mode_name(expected));
    }
    Ok(())
}

fn io_path() -> TestResult {
    let name = Scratch("t_mode");
    let before = sysring::calls();
    let mut file = File::open(name.0, O_RDWR | O_CREAT | O_TRUNC)?;
    file.write_all(b"ring")?;
    file.fsync()?;
    let fd = file.fd();
    let made = sysring::calls() - before;
    detail!("{made} calls through the system ring");
    if !sysring::active() {
        check_eq!(made, 0);
        return Ok(());
    }
    // open, write, fsync.
    check!(made >= 3, "only {made} calls went through the system ring");
    // The direct calls are refused, and refusing them changes nothing.
    let buf = [0u8; 4];
    let path = name.0;
    let direct = [
        ("read", nr::READ, [fd, buf.as_ptr() as u64, 4, 0, 0, 0]),
        ("write", nr::WRITE, [fd, buf.as_ptr() as u64, 4, 0, 0, 0]),
        (
            "open",
            nr::OPEN,
            [path.as_ptr() as u64, path.len() as u64, 0, 0, 0, 0],
        ),
        ("fsync", nr::FSYNC, [fd, 0, 0, 0, 0, 0]),
        ("close", nr::CLOSE, [fd, 0, 0, 0, 0, 0]),
    ];
    for (what, number, args) in direct {
        check_err!(hostile::syscall(number, args), ENOSYS, "direct {what}");
    }
    check_eq!(file.stat()?.size, 4);
    // A ring descriptor is closed with the direct call (a ring cannot close
    // one), through the system ring it is EBADF.
    let ring = match Ring::setup(1, 0) {
        Err(ENOSYS) => {
            detail!("no io_uring in this kernel: no ring descriptor to close");
            return Ok(());
        }
        ring => ring?,
    };
    let ring_fd = ring.fd();
    check_err!(sys::close(ring_fd), EBADF);
    ring.close()?;
    check_err!(uring::enter(ring_fd, 0, 0, 0), EBADF, "the closed ring");
    Ok(())
}

fn system_doorbells() -> TestResult {
    // io_uring's registered ring 0 is the system ring, and there is no
    // other; the Ring API's SYSTEM_RING flag reaches it or says ENXIO.
    let index_one = uring::enter(1, 0, 0, GETEVENTS | REGISTERED_RING);
    let past_table = uring::enter(
        u64::from(REGISTERED_RINGS_MAX),
        0,
        0,
        GETEVENTS | REGISTERED_RING,
    );
    let backend = sys::sysinfo()?.ring_backend;
    let system = sysring::active();
    let io_uring = uring::enter(0, 0, 0, REGISTERED_RING);
    let ring_api = uring::ring_enter(SYSTEM_RING, 0);
    detail!("registered ring 0: {io_uring:?}, ring_enter(SYSTEM_RING): {ring_api:?}");
    // Empty slots and slots past the table, as on Linux (ENOSYS in a kernel
    // without io_uring).
    check_err!(index_one, EBADF | ENOSYS, "registered ring 1");
    check_err!(past_table, EINVAL | ENOSYS, "registered ring 16");
    match (system, backend) {
        (true, nr::backend::IO_URING) => {
            check_eq!(io_uring, Ok(0));
            check_err!(ring_api, ENXIO | ENOSYS);
        }
        (true, nr::backend::RING_API) => {
            check_eq!(ring_api, Ok(0));
            check_err!(io_uring, EBADF | ENOSYS);
        }
        _ => {
            check_err!(io_uring, EBADF | ENOSYS);
            check_err!(ring_api, ENXIO | ENOSYS);
        }
    }
    Ok(())
}

/// Runs `ring_hostile SEED 2000 system` and checks it exited 0.
fn run_hostile(seed: u32) -> TestResult {
    let seed = alloc::format!("{seed}");
    let status = process::run("ring_hostile", &["ring_hostile", &seed, "2000", "system"])?;
    check!(
        status == 0,
        "ring_hostile {seed} system ended with {}",
        process::describe(status)
    );
    Ok(())
}

fn hostile_system() -> TestResult {
    if !sysring::active() {
        // Without a system ring the child checks that both of its
        // doorbells are refused (exit 2 if one answers).
        run_hostile(1)?;
        detail!("direct mode: no system ring to attack; its doorbells are refused");
        return Ok(());
    }
    // Each seed runs once first, to bring the kernel's slab caches to their
    // high-water mark; the same seeds must then take nothing more.
    const SEEDS: [u32; 3] = [1, 2, 3];
    for seed in SEEDS {
        run_hostile(seed)?;
    }
    let before = settle()?;
    for seed in SEEDS {
        run_hostile(seed)?;
    }
    let after = settle()?;
    detail!(
        "3 x 2000 rounds on the system ring; free frames {} -> {}, kernel heap {} -> {}, tasks {} -> {}",
        before.free_frames,
        after.free_frames,
        before.heap_used,
        after.heap_used,
        before.tasks,
        after.tasks
    );
    check_eq!(after.free_frames, before.free_frames);
    let grown = after.heap_used.saturating_sub(before.heap_used);
    check!(grown <= HEAP_SLACK, "kernel heap grew by {grown} bytes");
    check_eq!(after.tasks, before.tasks);
    // This process's own system ring is untouched and still works.
    let name = Scratch("t_mode_after");
    libuser::fs::write_file(name.0, b"still")?;
    check_eq!(libuser::fs::read_to_vec(name.0)?, b"still");
    Ok(())
}
