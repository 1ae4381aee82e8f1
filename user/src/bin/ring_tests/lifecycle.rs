//! Ring lifetimes: closing with work in flight, clean-up when a process
//! exits with rings full of work, and surviving hostile ring memory.

use abi::io_uring::{enter_flags, op, sqe_flags, Sqe, Timespec};
use abi::open_flags::{O_CREAT, O_RDWR, O_TRUNC};
use abi::SysInfo;
use alloc::boxed::Box;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use libuser::async_io::{AsyncContext, AsyncOp};
use libuser::fs::File;
pub use libuser::test::settle;
use libuser::test::{TestResult, HEAP_SLACK};
use libuser::uring::IoUring;
use libuser::{check, check_eq, detail, eprintln, process, sys, Errno};

use crate::util::{elapsed_ms, ms, reap};
use crate::{case_index, raw, run_in_child, RingCase, Run, PROGRAM};

#[rustfmt::skip]
pub const CASES: &[RingCase] = &[
    ("closing a ring with a pending timeout and a waiting chain returns at once", close_pending, Run::Child),
    ("exiting with pending timeouts, overflowed CQEs and registered buffers leaks nothing", cleanup, Run::Parent),
    ("ring_hostile: random ring memory and enter arguments crash nothing, leak nothing", hostile, Run::Parent),
];

/// A timespec that lives until the process exits, for SQEs that may still
/// be pending when their ring is closed.
fn forever(ts: Timespec) -> &'static Timespec {
    Box::leak(Box::new(ts))
}

fn timeout_sqe(ts: &'static Timespec, flags: u8, user_data: u64) -> Sqe {
    Sqe {
        opcode: op::TIMEOUT,
        flags,
        addr: core::ptr::from_ref(ts) as u64,
        len: 1,
        user_data,
        ..Sqe::default()
    }
}

fn nop(user_data: u64) -> Sqe {
    Sqe {
        opcode: op::NOP,
        user_data,
        ..Sqe::default()
    }
}

fn close_pending() -> TestResult {
    let mut ring = IoUring::setup(8, 0)?;
    let ts = forever(ms(10_000));
    raw::push(&mut ring, &timeout_sqe(ts, 0, 1));
    raw::push(&mut ring, &timeout_sqe(ts, sqe_flags::IO_LINK, 2));
    raw::push(&mut ring, &nop(3));
    ring.publish();
    check_eq!(ring.enter(3, 0, 0)?, 3);
    check_eq!(ring.cq_ready(), 0);
    let start = sys::clock_ns()?;
    ring.close()?;
    let took = elapsed_ms(start)?;
    detail!("close took {took} ms");
    check!(took < 500, "close took {took} ms");
    let mut next = IoUring::setup(8, 0)?;
    raw::push(&mut next, &nop(4));
    next.publish();
    check_eq!(next.enter(1, 1, enter_flags::GETEVENTS)?, 1);
    check_eq!(reap(&mut next, 1)?[0].user_data, 4);
    Ok(())
}

/// `ring_tests child-inflight`: leaves two rings full of work and exits
/// without closing anything.
pub fn child_inflight() -> i32 {
    match inflight() {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("ring_tests child-inflight: {err}");
            1
        }
    }
}

/// The file the children read: made once by [`cleanup`], before it
/// measures, so that the children do not create and remove names (the RAM
/// file system's tables may keep the room a new inode took).
const INFLIGHT_FILE: &str = "rt_inflight";

fn inflight() -> Result<(), Errno> {
    let file = File::open(INFLIGHT_FILE, O_RDWR)?;
    let fd = file.fd() as i32;

    // Ring A, raw: registered buffers and files, a pending timeout, a chain
    // waiting behind another, and a CQ overflowing into the kernel's list.
    let mut a = IoUring::setup(8, 0)?;
    let mut bufs = vec![vec![0u8; 16 * 1024], vec![0u8; 8 * 1024]];
    let iov: Vec<_> = bufs
        .iter_mut()
        .map(|b| abi::io_uring::IoVec {
            base: b.as_mut_ptr() as u64,
            len: b.len() as u64,
        })
        .collect();
    a.register_buffers(&iov)?;
    a.register_files(&[fd, -1, fd])?;
    let ts = forever(ms(10_000));
    raw::push(&mut a, &timeout_sqe(ts, 0, 1));
    raw::push(&mut a, &timeout_sqe(ts, sqe_flags::IO_LINK, 2));
    raw::push(&mut a, &nop(3));
    a.publish();
    a.enter(3, 0, 0)?;
    for round in 0..6 {
        for i in 0..8 {
            raw::push(&mut a, &nop(100 + round * 8 + i));
        }
        a.publish();
        a.enter(8, 0, 0)?;
    }

    // Ring B, through the context: a read waiting behind a timeout, and
    // registered buffers.
    let mut ctx = AsyncContext::new()?;
    ctx.register_buffers(vec![vec![1; 4096], vec![2; 4096]])?;
    ctx.submit(AsyncOp::timeout(ms(10_000), 0, 0, 1).link())?;
    ctx.submit(AsyncOp::read(fd, vec![0; 4096], 0, 2))?;
    ctx.submit(AsyncOp::timeout(ms(20_000), 0, 0, 3))?;
    ctx.flush()?;

    // Exit with all of it live: the kernel must clean up.
    core::mem::forget(bufs);
    core::mem::forget(a);
    core::mem::forget(ctx);
    core::mem::forget(file);
    Ok(())
}

pub fn compare(before: &SysInfo, after: &SysInfo) -> TestResult {
    compare_within(before, after, 0)
}

/// [`compare`], allowing the free frame count to drop by `frame_slack`:
/// for runs whose timing varies (SQPOLL), where the kernel heap's slab
/// caches, which keep the frames they carve, may reach a new high-water
/// mark. The heap's bytes in use must still come back.
pub fn compare_within(before: &SysInfo, after: &SysInfo, frame_slack: u64) -> TestResult {
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
    check!(
        after.free_frames + frame_slack >= before.free_frames,
        "free frames went from {} to {} (allowed: down by at most {frame_slack})",
        before.free_frames,
        after.free_frames
    );
    let grown = after.heap_used.saturating_sub(before.heap_used);
    check!(grown <= HEAP_SLACK, "kernel heap grew by {grown} bytes");
    check_eq!(after.tasks, before.tasks);
    Ok(())
}

fn run_inflight_child() -> TestResult {
    let status = process::run(PROGRAM, &[PROGRAM, "child-inflight"])?;
    check!(
        status == 0,
        "child-inflight ended with {}",
        process::describe(status)
    );
    Ok(())
}

fn cleanup() -> TestResult {
    const WARM_UP: u32 = 2;
    const ROUNDS: u32 = 10;
    drop(File::open(INFLIGHT_FILE, O_RDWR | O_CREAT | O_TRUNC)?);
    for _ in 0..WARM_UP {
        run_inflight_child()?;
    }
    let before = settle()?;
    let start = sys::clock_ns()?;
    for _ in 0..ROUNDS {
        run_inflight_child()?;
    }
    detail!("{ROUNDS} children in {} ms", elapsed_ms(start)?);
    let after = settle()?;
    let result = compare(&before, &after);
    sys::unlink(INFLIGHT_FILE)?;
    result
}

fn run_hostile(seed: u32) -> TestResult {
    let seed = format!("{seed}");
    let start = sys::clock_ns()?;
    let status = process::run("ring_hostile", &["ring_hostile", &seed])?;
    detail!(
        "ring_hostile {seed}: {} after {} ms",
        process::describe(status),
        elapsed_ms(start)?
    );
    check!(
        status == 0,
        "ring_hostile {seed} ended with {}",
        process::describe(status)
    );
    Ok(())
}

fn hostile() -> TestResult {
    // The kernel's slab caches keep the frames they carve, so each seed
    // runs once first to bring them to its high-water mark; the same
    // seeds then run again and must not take a single frame more.
    const SEEDS: [u32; 3] = [1, 2, 3];
    for seed in SEEDS {
        run_hostile(seed)?;
    }
    let before = settle()?;
    for seed in SEEDS {
        run_hostile(seed)?;
    }
    let after = settle()?;
    compare(&before, &after)?;
    // The kernel still does ring I/O.
    let Some(index) = case_index("Single NOP operation") else {
        libuser::fail!("no NOP case to rerun");
    };
    run_in_child(index)?;
    detail!("a NOP on a new ring still completes");
    Ok(())
}
