//! TIMEOUT (relative, count, absolute), TIMEOUT_REMOVE, ASYNC_CANCEL,
//! LINK_TIMEOUT, and sleeping in io_uring_enter(GETEVENTS).

use abi::errno::{ECANCELED, EINVAL, ENOENT, ETIME};
use abi::io_uring::{enter_flags, op, timeout_flags, Sqe, Timespec};
use alloc::format;
use alloc::vec;
use libuser::async_io::AsyncOp;
use libuser::test::TestResult;
use libuser::uring::Ring;
use libuser::{check, check_eq, detail, fs, process, sys};

use crate::raw;
use crate::util::{self, collect, elapsed_ms, expect_no_more, find, ms, ns, reap, results, Res};
use crate::{RingCase, Run, PROGRAM};

#[rustfmt::skip]
pub const CASES: &[RingCase] = &[
    ("a relative TIMEOUT fires with -ETIME after at least its time", relative, Run::Child),
    ("a count TIMEOUT completes with 0 once count completions happened", count, Run::Child),
    ("an ABS TIMEOUT fires at its deadline; one in the past fires at once", absolute, Run::Child),
    ("TIMEOUT_REMOVE cancels a pending timeout (-ECANCELED); a missing one is -ENOENT", timeout_remove, Run::Child),
    ("ASYNC_CANCEL cancels a pending op (-ECANCELED); a missing one is -ENOENT", async_cancel, Run::Child),
    ("LINK_TIMEOUT: the op finishes first, the link timeout gets -ECANCELED", link_timeout_late, Run::Child),
    ("LINK_TIMEOUT: the timer fires first, the op gets -ECANCELED, the timeout -ETIME", link_timeout_fires, Run::Child),
    ("LINK_TIMEOUT without a linked op before it completes with -EINVAL", link_timeout_alone, Run::Child),
    ("GETEVENTS sleeps until min_complete CQEs are there", getevents_sleeps, Run::Child),
    ("GETEVENTS sleeps: another process runs while a ring waits 30 ms", getevents_yields_cpu, Run::Child),
];

fn relative() -> TestResult {
    let mut ctx = util::context()?;
    let start = sys::clock_ns()?;
    ctx.submit(AsyncOp::timeout(ms(20), 0, 0, 1))?;
    ctx.flush()?;
    check!(
        ctx.get_completion().is_none(),
        "the timeout completed at once"
    );
    let done = collect(&mut ctx, 1)?;
    let took = sys::clock_ns()? - start;
    detail!(
        "20 ms timeout: {} after {} us",
        Res(done[0].result),
        took / 1000
    );
    check_eq!(Res(done[0].result).0, -ETIME);
    check!(took >= 20_000_000, "fired after {took} ns");
    check!(took < 2_000_000_000, "fired after {took} ns");
    // A zero timeout fires too.
    let done = crate::util::run_batch(&mut ctx, vec![AsyncOp::timeout(ns(0), 0, 0, 2)], 1)?;
    check_eq!(Res(done[0].result).0, -ETIME);
    Ok(())
}

fn count() -> TestResult {
    let mut ctx = util::context()?;
    let start = sys::clock_ns()?;
    ctx.submit(AsyncOp::timeout(ms(5000), 2, 0, 1))?;
    ctx.submit(AsyncOp::nop(2))?;
    ctx.submit(AsyncOp::nop(3))?;
    let done = collect(&mut ctx, 3)?;
    let took = elapsed_ms(start)?;
    detail!("{:?} after {took} ms", results(&done));
    check_eq!(Res(find(&done, 1)?.result).0, 0);
    check!(took < 1000, "the count timeout took {took} ms");
    // With too few completions it fires as a timer.
    ctx.submit(AsyncOp::timeout(ms(20), 5, 0, 4))?;
    ctx.submit(AsyncOp::nop(5))?;
    let done = collect(&mut ctx, 2)?;
    check_eq!(Res(find(&done, 4)?.result).0, -ETIME);
    expect_no_more(&mut ctx)?;
    Ok(())
}

fn absolute() -> TestResult {
    let mut ctx = util::context()?;
    let deadline = sys::clock_ns()? + 25_000_000;
    ctx.submit(AsyncOp::timeout(ns(deadline), 0, timeout_flags::ABS, 1))?;
    let done = collect(&mut ctx, 1)?;
    let now = sys::clock_ns()?;
    detail!("ABS deadline {deadline}: {} at {now}", Res(done[0].result));
    check_eq!(Res(done[0].result).0, -ETIME);
    check!(now >= deadline, "fired {} ns early", deadline - now);
    check!(
        now - deadline < 2_000_000_000,
        "fired {} ns late",
        now - deadline
    );

    let start = sys::clock_ns()?;
    ctx.submit(AsyncOp::timeout(ns(start / 2), 0, timeout_flags::ABS, 2))?;
    ctx.submit(AsyncOp::timeout(
        Timespec::default(),
        0,
        timeout_flags::ABS,
        3,
    ))?;
    let done = collect(&mut ctx, 2)?;
    let took = elapsed_ms(start)?;
    check_eq!((done[0].result, done[1].result), (-ETIME, -ETIME));
    check!(took < 100, "past deadlines fired after {took} ms");
    Ok(())
}

fn timeout_remove() -> TestResult {
    let mut ctx = util::context()?;
    let start = sys::clock_ns()?;
    ctx.submit(AsyncOp::timeout(ms(10_000), 0, 0, 1))?;
    ctx.flush()?;
    ctx.submit(AsyncOp::timeout_remove(1, 2))?;
    let done = collect(&mut ctx, 2)?;
    detail!("{:?} after {} ms", results(&done), elapsed_ms(start)?);
    check_eq!(Res(find(&done, 1)?.result).0, -ECANCELED);
    check_eq!(Res(find(&done, 2)?.result).0, 0);
    check!(elapsed_ms(start)? < 1000, "removal took too long");
    // Nothing left to remove: the same target, a never-used one, a fired one.
    ctx.submit(AsyncOp::timeout(ns(0), 0, 0, 3))?;
    let fired = collect(&mut ctx, 1)?;
    check_eq!(Res(fired[0].result).0, -ETIME);
    let mut ring_level = Ring::setup(8, 0)?;
    let done = crate::util::run_batch(
        &mut ctx,
        vec![
            AsyncOp::timeout_remove(1, 4),
            AsyncOp::timeout_remove(0xdead, 5),
        ],
        2,
    )?;
    check_eq!((done[0].result, done[1].result), (-ENOENT, -ENOENT));
    // And with raw user_data: a NOP is not a timeout; a fired timeout is gone.
    let remove = |target| Sqe {
        opcode: op::TIMEOUT_REMOVE,
        addr: target,
        user_data: target.wrapping_add(100),
        ..Sqe::default()
    };
    raw::push(
        &mut ring_level,
        &Sqe {
            opcode: op::NOP,
            user_data: 7,
            ..Sqe::default()
        },
    );
    raw::push(&mut ring_level, &remove(7));
    raw::push(&mut ring_level, &remove(u64::MAX));
    ring_level.publish();
    check_eq!(ring_level.enter(3, 3, enter_flags::GETEVENTS)?, 3);
    let cqes = reap(&mut ring_level, 3)?;
    check_eq!((cqes[1].user_data, cqes[1].res), (107, -ENOENT));
    check_eq!(cqes[2].res, -ENOENT);
    expect_no_more(&mut ctx)?;
    Ok(())
}

fn async_cancel() -> TestResult {
    let mut ctx = util::context()?;
    let start = sys::clock_ns()?;
    ctx.submit(AsyncOp::timeout(ms(10_000), 0, 0, 1))?;
    ctx.submit(AsyncOp::timeout(ms(10_000), 0, 0, 2))?;
    ctx.flush()?;
    ctx.submit(AsyncOp::cancel(2, 3))?;
    let done = collect(&mut ctx, 2)?;
    detail!("{:?}", results(&done));
    check_eq!(Res(find(&done, 2)?.result).0, -ECANCELED);
    check_eq!(Res(find(&done, 3)?.result).0, 0);
    let done = crate::util::run_batch(
        &mut ctx,
        vec![AsyncOp::cancel(2, 4), AsyncOp::cancel(0xbeef, 5)],
        2,
    )?;
    check_eq!((done[0].result, done[1].result), (-ENOENT, -ENOENT));
    ctx.submit(AsyncOp::cancel(1, 6))?;
    let done = collect(&mut ctx, 2)?;
    check_eq!(Res(find(&done, 1)?.result).0, -ECANCELED);
    check_eq!(Res(find(&done, 6)?.result).0, 0);
    check!(
        elapsed_ms(start)? < 1000,
        "cancelling took {} ms",
        elapsed_ms(start)?
    );
    expect_no_more(&mut ctx)?;
    check_eq!(ctx.in_flight(), 0);
    Ok(())
}

fn link_timeout_late() -> TestResult {
    let mut ctx = util::context()?;
    let start = sys::clock_ns()?;
    let done = crate::util::run_batch(
        &mut ctx,
        vec![
            AsyncOp::nop(1).link(),
            AsyncOp::link_timeout(ms(1000), 0, 2),
        ],
        2,
    )?;
    let took = elapsed_ms(start)?;
    detail!("{:?} after {took} ms", results(&done));
    check_eq!(Res(find(&done, 1)?.result).0, 0);
    check_eq!(Res(find(&done, 2)?.result).0, -ECANCELED);
    check!(took < 500, "took {took} ms");
    Ok(())
}

fn link_timeout_fires() -> TestResult {
    let mut ctx = util::context()?;
    let start = sys::clock_ns()?;
    let done = crate::util::run_batch(
        &mut ctx,
        vec![
            AsyncOp::timeout(ms(10_000), 0, 0, 1).link(),
            AsyncOp::link_timeout(ms(20), 0, 2),
        ],
        2,
    )?;
    let took = elapsed_ms(start)?;
    detail!("{:?} after {took} ms", results(&done));
    check_eq!(Res(find(&done, 1)?.result).0, -ECANCELED);
    check_eq!(Res(find(&done, 2)?.result).0, -ETIME);
    check!((20..5000).contains(&took), "took {took} ms");
    Ok(())
}

fn link_timeout_alone() -> TestResult {
    let mut ctx = util::context()?;
    let done = crate::util::run_batch(
        &mut ctx,
        vec![
            AsyncOp::link_timeout(ms(10), 0, 1),
            AsyncOp::nop(2),
            AsyncOp::link_timeout(ms(10), 0, 3),
        ],
        3,
    )?;
    detail!("{:?}", results(&done));
    check_eq!(Res(find(&done, 1)?.result).0, -EINVAL);
    check_eq!(Res(find(&done, 2)?.result).0, 0);
    check_eq!(Res(find(&done, 3)?.result).0, -EINVAL);
    Ok(())
}

fn timeout_sqe(ts: &Timespec, user_data: u64) -> Sqe {
    Sqe {
        opcode: op::TIMEOUT,
        addr: core::ptr::from_ref(ts) as u64,
        len: 1,
        user_data,
        ..Sqe::default()
    }
}

fn getevents_sleeps() -> TestResult {
    let mut ring = util::ring(8)?;
    let t20 = ms(20);
    raw::push(&mut ring, &timeout_sqe(&t20, 1));
    ring.publish();
    let start = sys::clock_ns()?;
    check_eq!(ring.enter(1, 1, enter_flags::GETEVENTS)?, 1);
    let took = sys::clock_ns()? - start;
    detail!(
        "enter(1, 1, GETEVENTS) on a 20 ms timeout returned after {} us",
        took / 1000
    );
    check!(took >= 20_000_000, "returned after {took} ns");
    check_eq!(ring.cq_ready(), 1);
    let cqe = reap(&mut ring, 1)?[0];
    check_eq!((cqe.user_data, cqe.res), (1, -ETIME));

    // min_complete 2: the first timer alone must not end the wait.
    let (t10, t40) = (ms(10), ms(40));
    raw::push(&mut ring, &timeout_sqe(&t10, 2));
    raw::push(&mut ring, &timeout_sqe(&t40, 3));
    ring.publish();
    let start = sys::clock_ns()?;
    check_eq!(ring.enter(2, 2, enter_flags::GETEVENTS)?, 2);
    let took = sys::clock_ns()? - start;
    detail!(
        "enter(2, 2, GETEVENTS) on 10 and 40 ms timeouts returned after {} us",
        took / 1000
    );
    check!(took >= 40_000_000, "returned after {took} ns");
    check_eq!(ring.cq_ready(), 2);
    let cqes = reap(&mut ring, 2)?;
    check_eq!((cqes[0].user_data, cqes[1].user_data), (2, 3));
    Ok(())
}

const CLOCK_FILE: &str = "ring_tests.clock";

/// `ring_tests child-clock MS`: spins on the clock for MS milliseconds,
/// yielding, and records when it first and last ran and how often.
pub fn child_clock(ms_arg: Option<&str>) -> i32 {
    let run_ms: u64 = ms_arg.and_then(|m| m.parse().ok()).unwrap_or(50);
    let Ok(first) = sys::clock_ns() else { return 1 };
    let mut last = first;
    let mut rounds = 0u64;
    while last - first < run_ms * 1_000_000 {
        let _ = sys::yield_now();
        last = sys::clock_ns().unwrap_or(u64::MAX);
        rounds += 1;
    }
    let record = format!("{first} {last} {rounds}");
    if fs::write_file(CLOCK_FILE, record.as_bytes()).is_err() {
        return 1;
    }
    0
}

fn getevents_yields_cpu() -> TestResult {
    let _ = sys::unlink(CLOCK_FILE);
    let mut ring = util::ring(8)?;
    let t30 = ms(30);
    let pid = process::spawn(PROGRAM, &[PROGRAM, "child-clock", "10"])?;
    raw::push(&mut ring, &timeout_sqe(&t30, 1));
    ring.publish();
    let start = sys::clock_ns()?;
    check_eq!(ring.enter(1, 1, enter_flags::GETEVENTS)?, 1);
    let end = sys::clock_ns()?;
    let status = process::wait(pid)?;
    check_eq!(status, 0);
    let record = fs::read_to_vec(CLOCK_FILE)?;
    let _ = sys::unlink(CLOCK_FILE);
    let text = core::str::from_utf8(&record).unwrap_or("");
    let mut fields = text.split(' ').map(|f| f.parse::<u64>().unwrap_or(0));
    let (first, last, rounds) = (
        fields.next().unwrap_or(0),
        fields.next().unwrap_or(0),
        fields.next().unwrap_or(0),
    );
    detail!(
        "ring waited {} us; the other process ran from +{} us to +{} us ({rounds} rounds)",
        (end - start) / 1000,
        first.saturating_sub(start) as i64 / 1000,
        last.saturating_sub(start) as i64 / 1000
    );
    check_eq!(reap(&mut ring, 1)?[0].res, -ETIME);
    check!(
        end - start >= 30_000_000,
        "the wait ended after {} ns",
        end - start
    );
    check!(
        rounds > 0 && first < end,
        "the other process did not run during the wait ({first}..{last} vs {start}..{end})"
    );
    Ok(())
}
