//! The seed cases and NOP traffic: batches, user_data, enter's counts,
//! the context's own flushing, index wrap-around.

use abi::io_uring::{enter_flags, header, op, Sqe};
use alloc::vec::Vec;
use libuser::async_io::AsyncOp;
use libuser::test::TestResult;
use libuser::uring::{IoUring, Queue};
use libuser::{check, check_eq, detail, sys};

use crate::util::{self, collect, expect_no_more, reap, Res};
use crate::{raw, RingCase, Run};

/// The seed report's first three cases, in its words.
#[rustfmt::skip]
pub const SEED: &[RingCase] = &[
    ("Ring::setup() - New API (syscall 2002)", crate::ringapi::seed_setup, Run::Child),
    ("AsyncContext::new()", context_new, Run::Child),
    ("Single NOP operation", single_nop, Run::Child),
];

/// The seed's cases after the first, which every backend runs.
pub fn seed_neutral() -> &'static [RingCase] {
    &SEED[1..]
}

#[rustfmt::skip]
pub const CASES: &[RingCase] = &[
    ("NOP batches of 1, 8, 32 and 256 round-trip user_data in order", nop_batches, Run::Child),
    ("AsyncContext::submit flushes by itself when the SQ is full", submit_flushes, Run::Child),
    ("SQ and CQ indices wrap around (3000 NOPs through an 8-entry ring)", wrap_around, Run::Child),
    ("GETEVENTS with min_complete already met returns at once", getevents_met, Run::Child),
];

/// Cases of io_uring's own calling convention (`to_submit`).
#[rustfmt::skip]
pub const IO_URING_CASES: &[RingCase] = &[
    ("enter consumes at most to_submit, and only published SQEs", enter_counts, Run::Child),
];

fn context_new() -> TestResult {
    let ctx = util::context()?;
    detail!("Context created successfully");
    check!(
        ctx.has_available_slots(),
        "a new context has no free SQ slot"
    );
    detail!("Has available slots");
    check_eq!(ctx.ring().sq_entries(), 256);
    check_eq!(ctx.ring().sq_space(), 256);
    check_eq!(ctx.in_flight(), 0);
    Ok(())
}

fn single_nop() -> TestResult {
    let mut ctx = util::context()?;
    ctx.submit(AsyncOp::nop(0x5eed))?;
    detail!("Submitted NOP");
    let ready = ctx.flush()?;
    check!(ready >= 1, "flush returned {ready} completions");
    detail!("Flush returned completions");
    let Some(c) = ctx.get_completion() else {
        libuser::fail!("no completion after flush reported {ready}");
    };
    detail!("Got completion");
    check_eq!(c.user_data, 0x5eed);
    check_eq!(Res(c.result).0, 0);
    check_eq!(c.flags, 0);
    check!(
        ctx.get_completion().is_none(),
        "a second completion for one NOP"
    );
    check_eq!(ctx.in_flight(), 0);
    Ok(())
}

fn nop(user_data: u64) -> Sqe {
    Sqe {
        opcode: op::NOP,
        user_data,
        ..Sqe::default()
    }
}

fn nop_batches() -> TestResult {
    let mut ring = util::ring(256)?;
    for (round, batch) in [1u32, 8, 32, 256].into_iter().enumerate() {
        let user_data = |i: u32| match i {
            0 => u64::MAX,
            1 => 0,
            _ => (u64::from(batch) << 48) ^ u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        };
        for i in 0..batch {
            check!(raw::push(&mut ring, &nop(user_data(i))), "SQ full at {i}");
        }
        ring.publish();
        let submitted = ring.enter(batch, batch, enter_flags::GETEVENTS)?;
        check_eq!(submitted, batch);
        check_eq!(ring.cq_ready(), batch);
        let cqes = reap(&mut ring, batch as usize)?;
        for (i, cqe) in cqes.iter().enumerate() {
            let want = user_data(i as u32);
            check!(
                cqe.user_data == want && cqe.res == 0 && cqe.flags == 0,
                "batch {batch} entry {i}: user_data {:#x} res {} flags {:#x}, expected {want:#x} 0 0",
                cqe.user_data,
                Res(cqe.res),
                cqe.flags
            );
        }
        check_eq!(ring.cq_ready(), 0);
        detail!("round {round}: {batch} NOPs, {submitted} submitted, all CQEs in order");
    }
    check_eq!(ring.sq_dropped(), 0);
    check_eq!(ring.cq_overflow(), 0);
    Ok(())
}

fn enter_counts() -> TestResult {
    let mut ring = IoUring::setup(8, 0)?;
    for i in 0..5 {
        raw::push(&mut ring, &nop(i));
    }
    ring.publish();
    check_eq!(ring.enter(2, 0, 0)?, 2);
    check_eq!(ring.header_word(Queue::Submission, header::HEAD), Some(2));
    check_eq!(ring.cq_ready(), 2);
    let more = ring.enter(10, 0, 0)?;
    detail!("enter(10) with 3 published returned {more}");
    check_eq!(more, 3);
    check_eq!(ring.enter(0, 0, 0)?, 0);
    check_eq!(ring.enter(4, 0, 0)?, 0);
    check_eq!(ring.cq_ready(), 5);
    let got: Vec<u64> = reap(&mut ring, 5)?.iter().map(|c| c.user_data).collect();
    check_eq!(got, [0, 1, 2, 3, 4]);

    // Pushed but not published: the kernel must not see them.
    raw::push(&mut ring, &nop(10));
    raw::push(&mut ring, &nop(11));
    check_eq!(ring.enter(2, 0, 0)?, 0);
    check_eq!(ring.cq_ready(), 0);
    ring.publish();
    check_eq!(ring.enter(2, 0, 0)?, 2);
    check_eq!(ring.cq_ready(), 2);
    Ok(())
}

fn submit_flushes() -> TestResult {
    let mut ctx = util::context_with(8)?;
    let total = 20u64;
    for i in 0..total {
        ctx.submit(AsyncOp::nop(1000 + i))?;
        check!(
            ctx.queued() <= 8,
            "{} queued in an 8-entry SQ",
            ctx.queued()
        );
    }
    detail!(
        "after {total} submits: {} queued, {} ready",
        ctx.queued(),
        ctx.completions_ready()
    );
    check!(ctx.completions_ready() > 0, "submit never flushed");
    ctx.flush()?;
    let all = collect(&mut ctx, total as usize)?;
    for (i, c) in all.iter().enumerate() {
        check!(
            c.user_data == 1000 + i as u64 && c.result == 0,
            "completion {i}: user_data {} res {}",
            c.user_data,
            Res(c.result)
        );
    }
    expect_no_more(&mut ctx)?;
    check_eq!(ctx.in_flight(), 0);
    Ok(())
}

fn wrap_around() -> TestResult {
    let mut ring = util::ring(8)?;
    let mut next = 0u64;
    let mut expect = 0u64;
    while next < 3000 {
        let batch = 7.min(3000 - next);
        for _ in 0..batch {
            raw::push(&mut ring, &nop(next));
            next += 1;
        }
        ring.publish();
        check_eq!(
            ring.enter(batch as u32, batch as u32, enter_flags::GETEVENTS)?,
            batch as u32
        );
        for cqe in reap(&mut ring, batch as usize)? {
            check!(
                cqe.user_data == expect && cqe.res == 0,
                "CQE {expect}: user_data {} res {}",
                cqe.user_data,
                Res(cqe.res)
            );
            expect += 1;
        }
    }
    let word = |q, w| ring.header_word(q, w).unwrap_or(u32::MAX);
    detail!(
        "SQ head/tail {}/{}, CQ head/tail {}/{}",
        word(Queue::Submission, header::HEAD),
        word(Queue::Submission, header::TAIL),
        word(Queue::Completion, header::HEAD),
        word(Queue::Completion, header::TAIL)
    );
    check_eq!(word(Queue::Submission, header::HEAD), 3000);
    check_eq!(word(Queue::Submission, header::TAIL), 3000);
    check_eq!(word(Queue::Completion, header::TAIL), 3000);
    check_eq!(word(Queue::Submission, header::MASK), 7);
    check_eq!(word(Queue::Completion, header::MASK), 15);
    Ok(())
}

fn getevents_met() -> TestResult {
    let mut ring = util::ring(8)?;
    for i in 0..4 {
        raw::push(&mut ring, &nop(i));
    }
    ring.publish();
    let start = sys::clock_ns()?;
    check_eq!(ring.enter(4, 4, enter_flags::GETEVENTS)?, 4);
    check_eq!(ring.cq_ready(), 4);
    // Four are ready: waiting for two must not sleep.
    check_eq!(ring.enter(0, 2, enter_flags::GETEVENTS)?, 0);
    check_eq!(ring.enter(0, 4, enter_flags::GETEVENTS)?, 0);
    let took = sys::clock_ns()? - start;
    detail!("three enters took {} us", took / 1000);
    check!(took < 50_000_000, "took {took} ns");
    check_eq!(ring.cq_ready(), 4);
    Ok(())
}
