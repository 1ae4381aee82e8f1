//! Process identity, time, scheduling, console output and syscall dispatch.

use abi::errno::{EBADF, ENOSYS};
use abi::syscall as nr;
use alloc::string::String;
use alloc::vec::Vec;
use libuser::test::{Case, TestResult};
use libuser::{check, check_eq, check_err, detail, heap, sys};

use crate::hostile;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("getpid returns a positive pid", getpid),
    ("clock is monotonic and advances across sleep(10 ms)", clock),
    ("yield returns 0", yield_returns_zero),
    ("console write returns the byte count", console_write),
    ("write/close/fsync on bad fds fail with EBADF", bad_fds),
    ("unknown syscall numbers fail with ENOSYS", unknown_syscalls),
    (".bss is zeroed and the 1 MiB heap is mapped and reusable", bss_and_heap),
];

fn getpid() -> TestResult {
    let pid = sys::getpid()?;
    detail!("pid = {pid}");
    check!(pid > 0, "pid {pid} is not positive");
    check!(
        i64::try_from(pid).is_ok(),
        "pid {pid} does not fit wait's i64"
    );
    check_eq!(sys::getpid()?, pid);
    Ok(())
}

fn clock() -> TestResult {
    const TEN_MS: u64 = 10_000_000;
    let mut last = sys::clock_ns()?;
    for _ in 0..1000 {
        let now = sys::clock_ns()?;
        check!(now >= last, "clock went backwards: {last} -> {now}");
        last = now;
    }
    let before = sys::clock_ns()?;
    sys::sleep_ns(TEN_MS)?;
    let after = sys::clock_ns()?;
    let slept = after - before;
    detail!("sleep(10 ms) took {} us", slept / 1000);
    check!(slept >= TEN_MS, "slept only {slept} ns");
    check!(slept < 200 * TEN_MS, "slept {slept} ns, far too long");
    Ok(())
}

fn yield_returns_zero() -> TestResult {
    for _ in 0..10 {
        check_eq!(hostile::syscall(nr::YIELD, [0; 6])?, 0);
    }
    Ok(())
}

fn console_write() -> TestResult {
    let line = b"  (console write test line)\n";
    check_eq!(sys::write(abi::fd::STDOUT, line)?, line.len());
    check_eq!(sys::write(abi::fd::STDERR, line)?, line.len());
    check_eq!(sys::write(abi::fd::STDOUT, b"")?, 0);
    Ok(())
}

fn bad_fds() -> TestResult {
    let unused = abi::syscall::limits::FDS_MAX as u64 - 1;
    for fd in [
        unused,
        abi::syscall::limits::FDS_MAX as u64,
        1 << 32,
        u64::MAX,
    ] {
        check_err!(sys::write(fd, b"x"), EBADF, "write({fd})");
        check_err!(sys::read(fd, &mut [0u8; 4]), EBADF, "read({fd})");
        check_err!(sys::close(fd), EBADF, "close({fd})");
        check_err!(sys::fsync(fd), EBADF, "fsync({fd})");
        check_err!(sys::fstat(fd), EBADF, "fstat({fd})");
        check_err!(sys::lseek(fd, 0, abi::seek::SEEK_SET), EBADF, "lseek({fd})");
    }
    Ok(())
}

fn unknown_syscalls() -> TestResult {
    for number in [9999, 500, 2003, 1 << 32, u64::MAX] {
        let result = hostile::syscall(number, [1, 2, 3, 4, 5, 6]);
        check_err!(result, ENOSYS, "syscall {number:#x}");
    }
    Ok(())
}

/// 64 KiB of `.bss` that nothing writes.
static ZEROED: [u64; 8192] = [0; 8192];

fn bss_and_heap() -> TestResult {
    // `black_box` hides that the static is all zeros, so these are real loads.
    let zeroed = core::hint::black_box(&ZEROED);
    check!(zeroed.iter().all(|&word| word == 0), ".bss is not zeroed");

    let baseline = heap::used();
    for round in 0..20u8 {
        // Touch most of the heap: every page of the region must be mapped.
        let big = alloc::vec![round; 3 * heap::HEAP_SIZE / 4];
        check!(big.iter().all(|&byte| byte == round));
    }
    for round in 0..2000 {
        let mut grown = Vec::new();
        let mut text = String::new();
        for i in 0..(round % 64) {
            grown.push(i);
            text.push('x');
        }
        check_eq!(grown.len(), text.len());
    }
    check_eq!(heap::used(), baseline);
    detail!("heap: {} of {} bytes in use", heap::used(), heap::HEAP_SIZE);
    Ok(())
}
