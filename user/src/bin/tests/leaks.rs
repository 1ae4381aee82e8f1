//! Resource leaks across many process lifetimes.

use abi::SysInfo;
use libuser::test::{Case, TestResult};
use libuser::{check, check_eq, detail, heap, process, sys, Errno};

#[rustfmt::skip]
pub const CASES: &[Case] = &[(
    "200 spawn/exit cycles leak no frames, kernel heap or tasks",
    spawn_cycles,
)];

const WARM_UP: u32 = 5;
const CYCLES: u32 = 200;
/// How much the kernel heap may grow over all cycles (caches, a table
/// reaching a new capacity); a leak of even 50 bytes a cycle is more.
pub const HEAP_SLACK: u64 = 8 * 1024;

fn cycle(i: u32) -> TestResult {
    let code = (i % 100) as i32;
    let arg = alloc::format!("{code}");
    let status = process::run("spin", &["spin", &arg])?;
    check!(
        status == code,
        "cycle {i}: spin {code} ended with {}",
        process::describe(status)
    );
    Ok(())
}

/// Lets the kernel finish any deferred clean-up, then reads the counters.
///
/// A reaped child's last reference (its kernel stack, its task) may still
/// be dropped on the CPU it last ran on, a moment after `wait` returned:
/// with several CPUs the counters are read until two readings 1 ms apart
/// agree (at most 100 times), so the figures compared are at rest.
pub fn settle() -> Result<SysInfo, Errno> {
    let counters = |i: &SysInfo| (i.free_frames, i.heap_used, i.tasks);
    let mut last = sys::sysinfo()?;
    for _ in 0..100 {
        for _ in 0..4 {
            sys::yield_now()?;
        }
        sys::sleep_ns(1_000_000)?;
        let now = sys::sysinfo()?;
        if counters(&now) == counters(&last) {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn spawn_cycles() -> TestResult {
    for i in 0..WARM_UP {
        cycle(i)?;
    }
    let before = settle()?;
    let our_heap = heap::used();
    let start = sys::clock_ns()?;
    for i in 0..CYCLES {
        cycle(i)?;
    }
    let elapsed_ms = (sys::clock_ns()? - start) / 1_000_000;
    let after = settle()?;

    detail!("{CYCLES} cycles in {elapsed_ms} ms");
    detail!(
        "free frames: {} before, {} after",
        before.free_frames,
        after.free_frames
    );
    detail!(
        "kernel heap: {} bytes before, {} after",
        before.heap_used,
        after.heap_used
    );
    detail!("tasks: {} before, {} after", before.tasks, after.tasks);
    check_eq!(after.free_frames, before.free_frames);
    let grown = after.heap_used.saturating_sub(before.heap_used);
    check!(grown <= HEAP_SLACK, "kernel heap grew by {grown} bytes");
    check_eq!(after.tasks, before.tasks);
    check_eq!(heap::used(), our_heap);
    Ok(())
}
