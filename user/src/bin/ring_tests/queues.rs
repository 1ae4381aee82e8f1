//! Queue edge cases: CQ overflow and its delivery order, the bound on the
//! overflow backlog, dropped SQ entries.

use abi::errno::EBUSY;
use abi::io_uring::{enter_flags, header, op, sq_flags, Cqe, Sqe};
use alloc::vec::Vec;
use libuser::test::TestResult;
use libuser::uring::{IoUring, Queue};
use libuser::{check, check_eq, check_err, detail};

use crate::raw;
use crate::util::{self, Res};
use crate::{RingCase, Run};

#[rustfmt::skip]
pub const CASES: &[RingCase] = &[
    ("CQ overflow: CQ_OVERFLOW set, overflow counted, every completion delivered in order", overflow, Run::Child),
    ("overflowed completions are delivered by enter with and without GETEVENTS", overflow_delivery, Run::Child),
    ("the overflow backlog is bounded: enter fails with EBUSY at 4096, nothing is lost", overflow_bound, Run::Child),
    ("an out-of-range SQ array index is dropped and counted; on io_uring it ends the submission uncounted (Linux), the rest runs on the next", dropped, Run::Child),
];

fn nop(user_data: u64) -> Sqe {
    Sqe {
        opcode: op::NOP,
        user_data,
        ..Sqe::default()
    }
}

/// Pushes `n` NOPs numbered from `*next` and submits them without waiting.
fn submit_nops(ring: &mut IoUring, next: &mut u64, n: u32) -> Result<u32, libuser::Errno> {
    for _ in 0..n {
        raw::push(ring, &nop(*next));
        *next += 1;
    }
    ring.publish();
    ring.enter(n, 0, 0)
}

/// Pops everything, asking the kernel for overflowed CQEs whenever the CQ
/// runs dry, until `n` CQEs are in; checks they are numbered in order from
/// `*expect`.
fn drain_in_order(ring: &mut IoUring, expect: &mut u64, n: u64, getevents: bool) -> TestResult {
    let end = *expect + n;
    let mut dry = 0;
    while *expect < end {
        match ring.pop_cqe() {
            Some(Cqe { user_data, res, .. }) => {
                check!(
                    user_data == *expect && res == 0,
                    "CQE {}: got user_data {user_data} res {}",
                    *expect,
                    Res(res)
                );
                *expect += 1;
                dry = 0;
            }
            None => {
                dry += 1;
                check!(dry < 3, "no CQE {} of {end} even after enter", *expect);
                let flags = if getevents { enter_flags::GETEVENTS } else { 0 };
                ring.enter(0, 0, flags)?;
            }
        }
    }
    Ok(())
}

fn overflow() -> TestResult {
    let mut ring = util::ring(8)?;
    check_eq!(ring.cq_entries(), 16);
    let mut next = 0;
    for _ in 0..5 {
        check_eq!(submit_nops(&mut ring, &mut next, 8)?, 8);
    }
    let flags = ring.sq_flags();
    detail!(
        "40 NOPs, nothing reaped: CQ holds {}, SQ flags {flags:#x}, overflow counter {}",
        ring.cq_ready(),
        ring.cq_overflow()
    );
    check_eq!(ring.cq_ready(), 16);
    check!(
        flags & sq_flags::CQ_OVERFLOW != 0,
        "CQ_OVERFLOW not set: flags {flags:#x}"
    );
    check_eq!(ring.cq_overflow(), 24);
    // New work queues up behind the overflowed completions.
    check_eq!(submit_nops(&mut ring, &mut next, 1)?, 1);
    let mut expect = 0;
    drain_in_order(&mut ring, &mut expect, 41, false)?;
    ring.enter(0, 0, 0)?;
    check_eq!(ring.cq_ready(), 0);
    check_eq!(ring.sq_flags() & sq_flags::CQ_OVERFLOW, 0);
    detail!(
        "all 41 reaped in order; overflow counter now {}",
        ring.cq_overflow()
    );
    Ok(())
}

fn overflow_delivery() -> TestResult {
    let mut ring = util::ring(2)?;
    check_eq!(ring.cq_entries(), 4);
    let mut next = 0;
    for _ in 0..5 {
        check_eq!(submit_nops(&mut ring, &mut next, 2)?, 2);
    }
    check_eq!(ring.cq_ready(), 4);
    // min_complete already met by the CQ: returns at once.
    check_eq!(ring.enter(0, 4, enter_flags::GETEVENTS)?, 0);
    let mut expect = 0;
    for round in 0..3 {
        let n = if round == 2 { 2 } else { 4 };
        drain_in_order(&mut ring, &mut expect, n, round % 2 == 0)?;
    }
    check_eq!(ring.cq_ready(), 0);
    ring.enter(0, 0, enter_flags::GETEVENTS)?;
    check_eq!(ring.cq_ready(), 0);
    check_eq!(ring.sq_flags() & sq_flags::CQ_OVERFLOW, 0);
    Ok(())
}

fn overflow_bound() -> TestResult {
    let mut ring = util::ring(256)?;
    let (sq, cq) = (ring.sq_entries(), ring.cq_entries());
    check_eq!((sq, cq), (256, 256));
    let mut next = 0;
    let mut rounds = 0;
    let busy = loop {
        let head = ring.header_word(Queue::Submission, header::HEAD);
        match submit_nops(&mut ring, &mut next, 256) {
            Ok(n) => {
                check_eq!(n, 256);
                rounds += 1;
                check!(
                    rounds <= 17,
                    "round {rounds} still accepted: the backlog is unbounded"
                );
            }
            Err(err) => {
                check_eq!(ring.header_word(Queue::Submission, header::HEAD), head);
                break err;
            }
        }
    };
    detail!(
        "{rounds} rounds of 256 accepted, then {busy}; CQ {} ready, overflow counter {}",
        ring.cq_ready(),
        ring.cq_overflow()
    );
    check_err!(Err::<(), _>(busy), EBUSY, "enter with a full backlog");
    check_eq!(rounds, 17);
    check_eq!(ring.sq_pending(), 256);
    let mut expect = 0;
    drain_in_order(&mut ring, &mut expect, 17 * 256, false)?;
    // The refused batch is still queued and goes through now. On io_uring
    // it waits for an enter that submits it; the Ring API's doorbell (and
    // its poller) take it as soon as the backlog has room, which is while
    // the drain above rings.
    let consumed = ring.enter(256, 256, enter_flags::GETEVENTS)?;
    if util::backend() == util::Backend::IoUring {
        check_eq!(consumed, 256);
    }
    check_eq!(ring.sq_pending(), 0);
    drain_in_order(&mut ring, &mut expect, 256, false)?;
    check_eq!(ring.sq_flags() & sq_flags::CQ_OVERFLOW, 0);
    detail!("all {expect} completions reaped in order");
    Ok(())
}

fn dropped() -> TestResult {
    let mut ring = util::ring(8)?;
    for (round, bad) in [8u32, u32::MAX].into_iter().enumerate() {
        let base = 10 * round as u64;
        let tail = ring
            .header_word(Queue::Submission, header::TAIL)
            .unwrap_or(0);
        for i in 1..=3 {
            raw::push(&mut ring, &nop(base + i));
        }
        raw::set_sq_array(&ring, tail + 1, bad);
        ring.publish();
        let ret = ring.enter(3, 0, 0)?;
        let mut got = Vec::new();
        while let Some(cqe) = ring.pop_cqe() {
            got.push((cqe.user_data, Res(cqe.res)));
        }
        detail!(
            "array index {bad:#x} between two NOPs: enter returned {ret}, dropped {}, CQEs {got:?}",
            ring.sq_dropped()
        );
        check_eq!(ring.sq_dropped(), round as u32 + 1);
        if util::backend() == util::Backend::IoUring {
            // Linux's io_submit_sqes: the first NOP, then the dropped entry
            // ends the batch without being counted; the last NOP waits.
            check_eq!(ret, 1);
            check_eq!(
                ring.header_word(Queue::Submission, header::HEAD),
                Some(tail + 2)
            );
            check_eq!(ring.enter(1, 0, 0)?, 1);
            while let Some(cqe) = ring.pop_cqe() {
                got.push((cqe.user_data, Res(cqe.res)));
            }
        } else {
            // The doorbell takes everything published.
            check!(ret == 2 || ret == 3, "enter returned {ret}");
        }
        check_eq!(
            ring.header_word(Queue::Submission, header::HEAD),
            Some(tail + 3)
        );
        let ids: Vec<u64> = got.iter().map(|(ud, _)| *ud).collect();
        check_eq!(ids, [base + 1, base + 3]);
        check!(got.iter().all(|(_, r)| r.0 == 0), "a NOP failed");
    }
    Ok(())
}
