//! Resource leaks across many process lifetimes.

use libuser::test::{settle, Case, TestResult, HEAP_SLACK};
use libuser::{check, check_eq, detail, heap, process, sys};

#[rustfmt::skip]
pub const CASES: &[Case] = &[(
    "200 spawn/exit cycles leak no frames, kernel heap or tasks",
    spawn_cycles,
)];

const WARM_UP: u32 = 5;
const CYCLES: u32 = 200;

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
