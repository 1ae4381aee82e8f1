//! The engine: ring indices, dropped entries, links, drain, skip-success,
//! overflow, timeouts, cancellation, teardown.

use abi::errno::*;
use abi::io_uring::{header, op, sq_flags, sqe_flags, timeout_flags, Sqe};

use super::*;
use crate::ring::IoEnv;
use crate::ring::{MAX_PENDING, OVERFLOW_MAX};

fn bad_read(user_data: u64) -> Sqe {
    rw(op::READ, 99, MEM, 4, 0, user_data)
}

#[test]
fn nop_batch_completes_in_order() {
    let mut h = Harness::new(8, 16);
    let sqes: Vec<Sqe> = (0..8).map(nop).collect();
    let cqes = h.run(&sqes);
    assert_eq!(cqes, (0..8).map(|i| cqe(i, 0)).collect::<Vec<_>>());
    let s = h.engine.stats();
    assert_eq!((s.consumed, s.posted, s.dropped), (8, 8, 0));
    assert_eq!(h.ring.view().sq_header(header::HEAD), 8);
}

#[test]
fn init_shared_writes_the_headers() {
    let h = Harness::new(8, 32);
    let ring = h.ring.clone();
    let v = ring.view();
    assert_eq!(v.sq_header(header::MASK), 7);
    assert_eq!(v.sq_header(header::ENTRIES), 8);
    assert_eq!(v.cq_header(header::MASK), 31);
    assert_eq!(v.cq_header(header::ENTRIES), 32);
    assert_eq!(h.engine.sq_entries(), 8);
    assert_eq!(h.engine.cq_entries(), 32);
    // Sizes are rounded and clamped.
    let e = RingEngine::new(5, 1000);
    assert_eq!((e.sq_entries(), e.cq_entries()), (8, 256));
    let e = RingEngine::new(0, 0);
    assert_eq!((e.sq_entries(), e.cq_entries()), (1, 1));
}

#[test]
fn indices_wrap_around_u32_max() {
    let mut h = Harness::starting_at(8, 16, 0xFFFF_FFF0, 0xFFFF_FFF8);
    let mut next = 0u64;
    for round in 0..10 {
        let n = 1 + round % 8;
        let sqes: Vec<Sqe> = (next..next + n).map(nop).collect();
        let cqes = h.run(&sqes);
        assert_eq!(
            cqes,
            (next..next + n).map(|i| cqe(i, 0)).collect::<Vec<_>>()
        );
        next += n;
    }
    let ring = h.ring.clone();
    let v = ring.view();
    let consumed = next as u32;
    assert_eq!(
        v.sq_header(header::HEAD),
        0xFFFF_FFF0u32.wrapping_add(consumed)
    );
    assert_eq!(
        v.cq_header(header::TAIL),
        0xFFFF_FFF8u32.wrapping_add(consumed)
    );
    assert!(v.sq_header(header::HEAD) < 0x100, "crossed zero");
}

#[test]
fn cq_ready_and_sq_pending_across_the_wrap() {
    let mut h = Harness::starting_at(4, 4, u32::MAX - 1, u32::MAX - 1);
    let ring = h.ring.clone();
    let v = ring.view();
    for i in 0..3 {
        h.push(nop(i));
    }
    assert_eq!(h.engine.sq_pending(&v), 3);
    assert_eq!(h.try_submit(2), Ok(2));
    assert_eq!(h.engine.sq_pending(&v), 1);
    assert_eq!(h.engine.cq_ready(&v), 2);
    assert_eq!(h.submit(), 1);
    assert_eq!(h.engine.cq_ready(&v), 3);
    assert_eq!(v.user_pop_cqe(), Some(cqe(0, 0)));
    assert_eq!(h.engine.cq_ready(&v), 2);
    // A CQ head that makes no sense counts as a full CQ, and an SQ tail
    // far ahead as one ring's worth.
    v.set_cq_header(header::HEAD, 12345);
    assert_eq!(h.engine.cq_ready(&v), 4);
    v.set_sq_header(header::TAIL, 999);
    assert_eq!(h.engine.sq_pending(&v), 4);
}

#[test]
fn out_of_range_sq_array_entries_are_dropped() {
    let mut h = Harness::new(4, 8);
    let ring = h.ring.clone();
    let v = ring.view();
    for i in 0..4 {
        h.push(nop(i));
    }
    v.set_sq_header(header::ARRAY + 1, 4);
    v.set_sq_header(header::ARRAY + 3, u32::MAX);
    // As Linux: a dropped entry is consumed, counted in the dropped word,
    // not in the return value, and ends the batch.
    assert_eq!(h.submit(), 1);
    assert_eq!(v.sq_header(header::HEAD), 2);
    assert_eq!(h.cqes(), [cqe(0, 0)]);
    assert_eq!(v.sq_header(header::DROPPED), 1);
    assert_eq!(h.submit(), 1);
    assert_eq!(h.cqes(), [cqe(2, 0)]);
    assert_eq!(v.sq_header(header::DROPPED), 2);
    assert_eq!(h.engine.stats().dropped, 2);
    assert_eq!(v.sq_header(header::HEAD), 4);
    assert_eq!(h.submit(), 0);
}

#[test]
fn a_corrupt_tail_consumes_at_most_one_ring() {
    let mut h = Harness::new(4, 16);
    let ring = h.ring.clone();
    let v = ring.view();
    v.set_sq_header(header::TAIL, 0x8000_0000);
    assert_eq!(h.submit(), 4);
    assert_eq!(h.submit(), 4);
    assert_eq!(h.try_submit(0), Ok(0));
    // Zeroed SQEs are NOPs with user_data 0.
    assert_eq!(h.cqes().len(), 8);
}

#[test]
fn to_submit_limits_the_batch() {
    let mut h = Harness::new(8, 16);
    for i in 0..6 {
        h.push(nop(i));
    }
    assert_eq!(h.try_submit(0), Ok(0));
    assert_eq!(h.try_submit(4), Ok(4));
    assert_eq!(h.try_submit(4), Ok(2));
    assert_eq!(h.try_submit(4), Ok(0));
    assert_eq!(h.cqes().len(), 6);
}

#[test]
fn a_failing_link_cancels_the_rest_of_the_chain() {
    let mut h = Harness::new(8, 16);
    let cqes = h.run(&[
        linked(nop(1)),
        linked(bad_read(2)),
        linked(nop(3)),
        nop(4),
        nop(5),
    ]);
    assert_eq!(
        cqes,
        [
            cqe(1, 0),
            cqe(2, -EBADF),
            cqe(3, -ECANCELED),
            cqe(4, -ECANCELED),
            cqe(5, 0)
        ]
    );
}

#[test]
fn a_short_read_breaks_a_link_but_not_a_hardlink() {
    let mut h = Harness::new(8, 16);
    let fd = h.env.create_file("f", b"12345").unwrap();
    let read = |ud| rw(op::READ, fd, MEM, 10, 0, ud);
    let full = |ud| rw(op::READ, fd, MEM, 5, 0, ud);
    let cqes = h.run(&[linked(full(1)), linked(read(2)), nop(3)]);
    assert_eq!(cqes, [cqe(1, 5), cqe(2, 5), cqe(3, -ECANCELED)]);
    let cqes = h.run(&[with_flags(read(4), sqe_flags::IO_HARDLINK), nop(5)]);
    assert_eq!(cqes, [cqe(4, 5), cqe(5, 0)]);
}

#[test]
fn a_hardlink_chain_goes_on_after_failure() {
    let mut h = Harness::new(8, 16);
    let hard = |s| with_flags(s, sqe_flags::IO_HARDLINK);
    let cqes = h.run(&[hard(bad_read(1)), hard(bad_read(2)), linked(nop(3)), nop(4)]);
    assert_eq!(cqes, [cqe(1, -EBADF), cqe(2, -EBADF), cqe(3, 0), cqe(4, 0)]);
    // An SQE that fails prep fails its whole chain, hard links or not
    // (Linux turns them into plain links): nothing of it issues.
    let cqes = h.run(&[hard(nop(5)), hard(with_flags(nop(6), 0x80)), nop(7), nop(8)]);
    assert_eq!(
        cqes,
        [
            cqe(5, -ECANCELED),
            cqe(6, -EINVAL),
            cqe(7, -ECANCELED),
            cqe(8, 0)
        ]
    );
}

#[test]
fn a_chain_open_at_the_end_of_a_batch_ends_there() {
    let mut h = Harness::new(8, 16);
    assert_eq!(h.run(&[linked(bad_read(1))]), [cqe(1, -EBADF)]);
    assert_eq!(h.run(&[nop(2)]), [cqe(2, 0)]);
}

#[test]
fn skip_success_posts_only_failures() {
    let mut h = Harness::new(8, 16);
    let skip = |s| with_flags(s, sqe_flags::CQE_SKIP_SUCCESS);
    let cqes = h.run(&[skip(nop(1)), skip(bad_read(2)), nop(3)]);
    assert_eq!(cqes, [cqe(2, -EBADF), cqe(3, 0)]);
    assert_eq!(h.engine.stats().skipped, 1);
    // A cancelled chain member is a failure: posted.
    let cqes = h.run(&[linked(bad_read(4)), skip(nop(5))]);
    assert_eq!(cqes, [cqe(4, -EBADF), cqe(5, -ECANCELED)]);
}

#[test]
fn drain_waits_for_a_pending_timeout() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 1, 0);
    let drained = with_flags(nop(3), sqe_flags::IO_DRAIN);
    let cqes = h.run(&[
        timeout(TS, 0, 1),
        nop(2),
        drained,
        nop(4),
        linked(nop(5)),
        nop(6),
    ]);
    assert_eq!(
        cqes,
        [cqe(2, 0)],
        "the drained SQE and everything after wait"
    );
    assert_eq!(h.engine.pending_ops(), 5);
    // More SQEs queue behind it.
    assert_eq!(h.run(&[nop(7)]), []);
    assert!(h.advance(SEC));
    assert_eq!(
        h.cqes(),
        [
            cqe(1, -ETIME),
            cqe(3, 0),
            cqe(4, 0),
            cqe(5, 0),
            cqe(6, 0),
            cqe(7, 0)
        ]
    );
    assert_eq!(h.engine.pending_ops(), 0);
}

#[test]
fn drain_with_nothing_pending_runs_at_once() {
    let mut h = Harness::new(8, 16);
    let drained = with_flags(nop(2), sqe_flags::IO_DRAIN);
    assert_eq!(
        h.run(&[nop(1), drained, nop(3)]),
        [cqe(1, 0), cqe(2, 0), cqe(3, 0)]
    );
}

#[test]
fn the_sqe_after_a_drained_one_waits_for_it() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 1, 0);
    let drained_timeout = with_flags(timeout(TS, 0, 1), sqe_flags::IO_DRAIN);
    assert_eq!(h.run(&[drained_timeout, nop(2)]), []);
    h.advance(SEC);
    assert_eq!(h.cqes(), [cqe(1, -ETIME), cqe(2, 0)]);
}

#[test]
fn overflow_delivers_in_order() {
    let mut h = Harness::new(4, 4);
    let ring = h.ring.clone();
    let v = ring.view();
    for i in 0..4 {
        h.push(nop(i));
    }
    h.submit();
    for i in 4..8 {
        h.push(nop(i));
    }
    h.submit();
    assert_eq!(h.engine.cq_ready(&v), 4);
    assert_ne!(v.sq_header(header::FLAGS) & sq_flags::CQ_OVERFLOW, 0);
    assert_eq!(v.cq_header(header::OVERFLOW), 4);
    assert_eq!(h.engine.stats().overflowed, 4);
    // Make room for two; the flush moves the oldest two.
    assert_eq!(v.user_pop_cqe(), Some(cqe(0, 0)));
    assert_eq!(v.user_pop_cqe(), Some(cqe(1, 0)));
    h.engine.flush_overflow(&v);
    assert_eq!(h.engine.cq_ready(&v), 4);
    assert_ne!(v.sq_header(header::FLAGS) & sq_flags::CQ_OVERFLOW, 0);
    // A new completion does not jump ahead of the overflowed ones.
    h.push(nop(8));
    h.submit();
    let all = h.cqes();
    assert_eq!(all, (2..9).map(|i| cqe(i, 0)).collect::<Vec<_>>());
    assert_eq!(v.sq_header(header::FLAGS) & sq_flags::CQ_OVERFLOW, 0);
    // Other flag bits are left alone.
    v.set_sq_header(header::FLAGS, sq_flags::NEED_WAKEUP);
    h.run(&[nop(9)]);
    assert_eq!(v.sq_header(header::FLAGS), sq_flags::NEED_WAKEUP);
}

#[test]
fn submit_refuses_at_the_overflow_bound() {
    let mut h = Harness::new(256, 16);
    let ring = h.ring.clone();
    let v = ring.view();
    let mut posted = 0u64;
    while (h.engine.stats().overflowed as usize) < OVERFLOW_MAX {
        for _ in 0..256 {
            h.push(nop(posted));
            posted += 1;
        }
        h.submit();
    }
    h.push(nop(posted));
    let head = v.sq_header(header::HEAD);
    assert_eq!(h.try_submit(1), Err(EBUSY));
    assert_eq!(v.sq_header(header::HEAD), head, "nothing consumed");
    assert_eq!(h.engine.sq_pending(&v), 1);
    // Completions are never dropped: all of them arrive, in order.
    let all = h.cqes();
    assert_eq!(all.len() as u64, posted);
    assert!(all.iter().enumerate().all(|(i, c)| c.user_data == i as u64));
    assert_eq!(h.try_submit(1), Ok(1));
    assert_eq!(h.cqes(), [cqe(posted, 0)]);
}

#[test]
fn relative_timeout() {
    let mut h = Harness::new(4, 8);
    h.env.set_now(1000);
    h.put_timespec(TS, 2, 500);
    assert_eq!(h.run(&[timeout(TS, 0, 1)]), []);
    assert_eq!(h.engine.next_deadline(), Some(1000 + 2 * SEC + 500));
    assert!(!h.advance(2 * SEC + 499));
    assert_eq!(h.engine.pending_ops(), 1);
    assert!(h.advance(1));
    assert_eq!(h.cqes(), [cqe(1, -ETIME)]);
    assert_eq!(h.engine.next_deadline(), None);
    assert!(!h.advance(SEC), "nothing left to fire");
}

#[test]
fn absolute_timeout() {
    let mut h = Harness::new(4, 8);
    h.env.set_now(5 * SEC);
    h.put_timespec(TS, 7, 0);
    let mut abs = timeout(TS, 0, 1);
    abs.op_flags = timeout_flags::ABS;
    assert_eq!(h.run(&[abs]), []);
    assert_eq!(h.engine.next_deadline(), Some(7 * SEC));
    assert!(h.advance(2 * SEC));
    assert_eq!(h.cqes(), [cqe(1, -ETIME)]);
    // A deadline already past fires at submit.
    h.put_timespec(TS, 1, 0);
    assert_eq!(h.run(&[abs]), [cqe(1, -ETIME)]);
    h.put_timespec(TS, 0, 0);
    assert_eq!(h.run(&[timeout(TS, 0, 2)]), [cqe(2, -ETIME)]);
}

#[test]
fn timers_fire_in_deadline_order() {
    let mut h = Harness::new(4, 8);
    h.put_timespec(TS, 3, 0);
    h.put_timespec(TS + 16, 1, 0);
    h.put_timespec(TS + 32, 2, 0);
    h.run(&[
        timeout(TS, 0, 1),
        timeout(TS + 16, 0, 2),
        timeout(TS + 32, 0, 3),
    ]);
    assert_eq!(h.engine.next_deadline(), Some(SEC));
    assert!(h.advance(10 * SEC));
    assert_eq!(h.cqes(), [cqe(2, -ETIME), cqe(3, -ETIME), cqe(1, -ETIME)]);
}

#[test]
fn count_timeout() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 10, 0);
    assert_eq!(h.run(&[timeout(TS, 2, 1), nop(2)]), [cqe(2, 0)]);
    assert_eq!(h.engine.pending_ops(), 1);
    // Skipped CQEs do not count.
    let skip = with_flags(nop(3), sqe_flags::CQE_SKIP_SUCCESS);
    assert_eq!(h.run(&[skip]), []);
    assert_eq!(h.engine.pending_ops(), 1);
    assert_eq!(h.run(&[nop(4), nop(5)]), [cqe(4, 0), cqe(1, 0), cqe(5, 0)]);
    assert_eq!(h.engine.pending_ops(), 0);
    // With no count reached, the deadline wins.
    h.run(&[timeout(TS, 5, 6)]);
    h.advance(10 * SEC);
    assert_eq!(h.cqes(), [cqe(6, -ETIME)]);
}

#[test]
fn timeout_completions_do_not_count() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 10, 0);
    h.put_timespec(TS + 16, 0, 0);
    let cqes = h.run(&[timeout(TS, 1, 1), timeout(TS + 16, 0, 2)]);
    assert_eq!(cqes, [cqe(2, -ETIME)]);
    assert_eq!(h.engine.pending_ops(), 1);
    assert_eq!(h.run(&[nop(3)]), [cqe(3, 0), cqe(1, 0)]);
}

#[test]
fn timeout_remove() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 10, 0);
    h.run(&[timeout(TS, 0, 1)]);
    let cqes = h.run(&[cancel(op::TIMEOUT_REMOVE, 1, 2)]);
    assert_eq!(cqes, [cqe(1, -ECANCELED), cqe(2, 0)]);
    assert_eq!(
        h.run(&[cancel(op::TIMEOUT_REMOVE, 1, 3)]),
        [cqe(3, -ENOENT)]
    );
    assert_eq!(h.engine.pending_ops(), 0);
    assert!(!h.advance(20 * SEC));
}

#[test]
fn async_cancel_hit_and_miss() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 10, 0);
    h.run(&[timeout(TS, 0, 1), timeout(TS, 0, 2)]);
    let cqes = h.run(&[cancel(op::ASYNC_CANCEL, 2, 3)]);
    assert_eq!(cqes, [cqe(2, -ECANCELED), cqe(3, 0)]);
    assert_eq!(h.run(&[cancel(op::ASYNC_CANCEL, 99, 4)]), [cqe(4, -ENOENT)]);
    assert_eq!(h.engine.pending_ops(), 1);
    // Cancelling a timeout releases the chain behind it (cancelled, as the
    // timeout failed).
    h.run(&[linked(timeout(TS, 0, 5)), nop(6)]);
    let cqes = h.run(&[cancel(op::ASYNC_CANCEL, 5, 7)]);
    assert_eq!(cqes, [cqe(5, -ECANCELED), cqe(7, 0), cqe(6, -ECANCELED)]);
}

#[test]
fn a_chain_waits_behind_a_timeout() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 10, 0);
    // The count is reached by another SQE; the chain then goes on.
    let cqes = h.run(&[linked(timeout(TS, 1, 1)), linked(nop(2)), nop(3), nop(4)]);
    assert_eq!(cqes, [cqe(4, 0), cqe(1, 0), cqe(2, 0), cqe(3, 0)]);
    // The deadline passes: -ETIME breaks an IO_LINK chain...
    h.run(&[linked(timeout(TS, 0, 5)), nop(6)]);
    h.advance(10 * SEC);
    assert_eq!(h.cqes(), [cqe(5, -ETIME), cqe(6, -ECANCELED)]);
    // ...but not a hard one.
    h.run(&[
        with_flags(timeout(TS, 0, 7), sqe_flags::IO_HARDLINK),
        nop(8),
    ]);
    h.advance(10 * SEC);
    assert_eq!(h.cqes(), [cqe(7, -ETIME), cqe(8, 0)]);
}

#[test]
fn a_chain_can_block_twice() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 1, 0);
    h.put_timespec(TS + 16, 2, 0);
    let hard = |s| with_flags(s, sqe_flags::IO_HARDLINK);
    h.run(&[
        hard(timeout(TS, 0, 1)),
        hard(timeout(TS + 16, 0, 2)),
        nop(3),
    ]);
    h.advance(SEC);
    assert_eq!(h.cqes(), [cqe(1, -ETIME)]);
    assert_eq!(
        h.engine.next_deadline(),
        Some(3 * SEC),
        "armed when reached"
    );
    h.advance(2 * SEC);
    assert_eq!(h.cqes(), [cqe(2, -ETIME), cqe(3, 0)]);
}

#[test]
fn link_timeout_fires_first() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 10, 0);
    h.put_timespec(TS + 16, 1, 0);
    let cqes = h.run(&[
        linked(timeout(TS, 0, 1)),
        linked(link_timeout(TS + 16, 2)),
        nop(3),
    ]);
    assert_eq!(cqes, []);
    assert_eq!(h.engine.next_deadline(), Some(SEC));
    assert_eq!(h.engine.pending_ops(), 3);
    h.advance(SEC);
    assert_eq!(
        h.cqes(),
        [cqe(1, -ECANCELED), cqe(2, -ETIME), cqe(3, -ECANCELED)]
    );
    assert_eq!(h.engine.pending_ops(), 0);
}

#[test]
fn link_timeout_loses_to_its_op() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 1, 0);
    h.put_timespec(TS + 16, 10, 0);
    let hard = with_flags(timeout(TS, 0, 1), sqe_flags::IO_HARDLINK);
    h.run(&[hard, linked(link_timeout(TS + 16, 2)), nop(3)]);
    h.advance(SEC);
    assert_eq!(h.cqes(), [cqe(1, -ETIME), cqe(2, -ECANCELED), cqe(3, 0)]);
    // A count-completed op cancels its link timeout too.
    h.run(&[linked(timeout(TS + 16, 1, 4)), link_timeout(TS + 16, 5)]);
    assert_eq!(h.run(&[nop(6)]), [cqe(6, 0), cqe(4, 0), cqe(5, -ECANCELED)]);
    assert_eq!(h.engine.next_deadline(), None);
}

#[test]
fn link_timeout_after_an_op_that_completed_at_once() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 1, 0);
    let cqes = h.run(&[linked(nop(1)), linked(link_timeout(TS, 2)), nop(3)]);
    assert_eq!(cqes, [cqe(1, 0), cqe(2, -ECANCELED), cqe(3, 0)]);
    let cqes = h.run(&[linked(bad_read(4)), linked(link_timeout(TS, 5)), nop(6)]);
    assert_eq!(
        cqes,
        [cqe(4, -EBADF), cqe(5, -ECANCELED), cqe(6, -ECANCELED)]
    );
    assert_eq!(h.engine.pending_ops(), 0);
}

#[test]
fn link_timeout_out_of_place() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 1, 0);
    // Not after a linked SQE.
    assert_eq!(h.run(&[link_timeout(TS, 1)]), [cqe(1, -EINVAL)]);
    assert_eq!(
        h.run(&[nop(2), link_timeout(TS, 3)]),
        [cqe(2, 0), cqe(3, -EINVAL)]
    );
    // After another link timeout: the chain fails at prep, whole.
    let cqes = h.run(&[
        linked(nop(4)),
        with_flags(link_timeout(TS, 5), sqe_flags::IO_HARDLINK),
        link_timeout(TS, 6),
    ]);
    assert_eq!(
        cqes,
        [cqe(4, -ECANCELED), cqe(5, -ECANCELED), cqe(6, -EINVAL)]
    );
    // A bad link timeout behind a TIMEOUT fails the chain before the
    // TIMEOUT is armed.
    let mut bad = link_timeout(TS, 8);
    bad.off = 1;
    h.put_timespec(TS + 16, 1, 0);
    let hard = with_flags(timeout(TS + 16, 0, 7), sqe_flags::IO_HARDLINK);
    assert_eq!(
        h.run(&[hard, linked(bad), nop(9)]),
        [cqe(7, -ECANCELED), cqe(8, -EINVAL), cqe(9, -ECANCELED)]
    );
    assert_eq!(h.engine.pending_ops(), 0);
}

#[test]
fn async_cancel_of_a_link_timeout() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 10, 0);
    h.run(&[linked(timeout(TS, 0, 1)), link_timeout(TS, 2)]);
    assert_eq!(h.engine.pending_ops(), 2);
    // TIMEOUT_REMOVE only finds timeouts.
    assert_eq!(
        h.run(&[cancel(op::TIMEOUT_REMOVE, 2, 3)]),
        [cqe(3, -ENOENT)]
    );
    let cqes = h.run(&[cancel(op::ASYNC_CANCEL, 2, 4)]);
    assert_eq!(cqes, [cqe(2, -ECANCELED), cqe(4, 0)]);
    assert_eq!(h.engine.pending_ops(), 1);
    h.advance(10 * SEC);
    assert_eq!(h.cqes(), [cqe(1, -ETIME)]);
}

#[test]
fn pending_ops_are_bounded() {
    let mut h = Harness::new(256, 256);
    h.put_timespec(TS, 1000, 0);
    let mut ud = 0;
    while h.engine.pending_ops() < MAX_PENDING {
        for _ in 0..256 {
            h.push(timeout(TS, 0, ud));
            ud += 1;
        }
        h.submit();
    }
    assert_eq!(h.engine.pending_ops(), MAX_PENDING);
    assert_eq!(h.cqes(), []);
    // One more pending op, a drained SQE: EBUSY (and the rest of the
    // chain is cancelled).
    let cqes = h.run(&[linked(timeout(TS, 0, ud)), nop(ud + 3)]);
    assert_eq!(cqes, [cqe(ud, -EBUSY), cqe(ud + 3, -ECANCELED)]);
    // Synchronous ops still run.
    assert_eq!(h.run(&[nop(ud + 2)]), [cqe(ud + 2, 0)]);
    let drained = with_flags(nop(ud + 1), sqe_flags::IO_DRAIN);
    assert_eq!(h.run(&[drained]), [cqe(ud + 1, -EBUSY)]);
    // The SQE after a drained one waits for everything too: EBUSY as well.
    assert_eq!(h.run(&[nop(ud + 4)]), [cqe(ud + 4, -EBUSY)]);
    assert_eq!(h.engine.pending_ops(), MAX_PENDING);
    h.engine.teardown(&mut h.env);
    assert_eq!(h.engine.pending_ops(), 0);
    assert_eq!(h.engine.next_deadline(), None);
}

#[test]
fn teardown_leaves_nothing_pending() {
    let mut h = Harness::new(8, 4);
    h.put_timespec(TS, 10, 0);
    let fd = h.env.create_file("f", b"").unwrap();
    h.env.write_user(MEM, &fd.to_le_bytes()).unwrap();
    h.engine
        .register(&mut h.env, abi::io_uring::register::REGISTER_FILES, MEM, 1)
        .unwrap();
    // Four CQEs in the CQ, four in the overflow list.
    for i in 0..8 {
        h.push(nop(10 + i));
    }
    h.submit();
    for sqe in [
        linked(timeout(TS, 0, 1)),
        link_timeout(TS, 2),
        with_flags(nop(3), sqe_flags::IO_DRAIN),
        nop(4),
    ] {
        h.push(sqe);
    }
    h.submit();
    assert_eq!(h.engine.pending_ops(), 4);
    assert_eq!(h.engine.stats().overflowed, 4);
    h.engine.teardown(&mut h.env);
    assert_eq!(h.engine.pending_ops(), 0);
    assert_eq!(h.engine.next_deadline(), None);
    assert_eq!(h.env.pinned_files(), 0);
    assert!(!h.advance(100 * SEC));
    // The ring still works afterwards.
    let _ = h.cqes();
    assert_eq!(h.run(&[nop(99)]), [cqe(99, 0)]);
}

/// The NOP fast path hands over to the general path at the first SQE it
/// does not take (a flagged NOP, a bad one, another op) and when the CQ is
/// full, and the CQEs come out in submission order either way.
#[test]
fn nop_fast_path_hands_over_in_order() {
    let mut h = Harness::new(16, 8);
    let fd = h.env.create_file("f", b"abcd").unwrap();
    let mut bad = nop(3);
    bad.op_flags = 1;
    let sqes = [
        nop(1),
        nop(2),
        bad,
        rw(op::READ, fd, MEM, 4, 0, 4),
        nop(5),
        with_flags(nop(6), sqe_flags::IO_DRAIN),
        nop(7),
        nop(8),
        nop(9),
        nop(10),
    ];
    for sqe in &sqes {
        h.push(*sqe);
    }
    // A lone SQE that fails prep ends the batch (Linux): the rest goes in
    // the next submit. 10 CQEs for an 8-entry CQ: the last two overflow
    // through the general path and come out after the others.
    assert_eq!(h.submit(), 3);
    assert_eq!(h.submit(), 7);
    let cqes = h.cqes();
    let got: Vec<(u64, i32)> = cqes.iter().map(|c| (c.user_data, c.res)).collect();
    assert_eq!(
        got,
        [
            (1, 0),
            (2, 0),
            (3, -abi::errno::EINVAL),
            (4, 4),
            (5, 0),
            (6, 0),
            (7, 0),
            (8, 0),
            (9, 0),
            (10, 0)
        ]
    );
    assert_eq!(h.engine.stats().overflowed, 2);
}

/// With the CQ's reader on another CPU (`set_cq_remote`) a batch first
/// stores into the CQE lines it will fill: only into free slots, so CQEs
/// the program has not reaped yet (here READs, whose `res` a stray store
/// would zero) keep their values, and the CQEs come out as without it,
/// across wraps of the CQ and a full one.
#[test]
fn cq_remote_batches_leave_unreaped_cqes_alone() {
    let run = |remote: bool| -> Vec<(u64, i32)> {
        let mut h = Harness::new(16, 8);
        h.engine.set_cq_remote(remote);
        let fd = h.env.create_file("f", b"abcdabcdabcdabcdabcdabcd").unwrap();
        let mut got = Vec::new();
        let mut user_data = 0;
        for round in 0..6 {
            // Three READs left unreaped, then NOPs up to (and once past)
            // the CQ's size.
            for _ in 0..3 {
                user_data += 1;
                h.push(rw(op::READ, fd, MEM, 1, u64::MAX, user_data));
            }
            assert_eq!(h.submit(), 3);
            let nops = if round == 5 { 7 } else { 2 + round };
            for _ in 0..nops {
                user_data += 1;
                h.push(nop(user_data));
            }
            h.submit();
            got.extend(h.cqes().iter().map(|c| (c.user_data, c.res)));
        }
        got
    };
    let remote = run(true);
    assert_eq!(remote, run(false));
    // Every READ kept its result.
    let reads = remote.iter().filter(|&&(_, res)| res == 1).count();
    assert_eq!(reads, 18, "{remote:?}");
}

/// READ and WRITE on the fast path: their checks, and a full CQ that hands
/// over to the general path without running any SQE twice (each read at
/// the file position moves it exactly once).
#[test]
fn read_write_fast_path_checks_and_runs_each_once() {
    let mut h = Harness::new(16, 8);
    let fd = h.env.create_file("f", b"0123456789abcdef").unwrap();
    let mut bad_flags = rw(op::WRITE, fd, MEM, 1, 0, 100);
    bad_flags.op_flags = 1;
    let bad_off = rw(op::READ, fd, MEM, 1, (-5i64) as u64, 101);
    h.push(bad_flags);
    h.push(bad_off);
    assert_eq!(h.submit(), 2);
    let got: Vec<(u64, i32)> = h.cqes().iter().map(|c| (c.user_data, c.res)).collect();
    assert_eq!(
        got,
        [(100, -abi::errno::EOPNOTSUPP), (101, -abi::errno::EINVAL)]
    );
    // Ten 1-byte reads at the file position into an 8-entry CQ.
    for i in 0..10u64 {
        h.push(rw(op::READ, fd, MEM + i, 1, u64::MAX, i));
    }
    assert_eq!(h.submit(), 10);
    let cqes = h.cqes();
    assert_eq!(cqes.len(), 10);
    assert!(cqes
        .iter()
        .enumerate()
        .all(|(i, c)| c.user_data == i as u64 && c.res == 1));
    assert_eq!(h.env.fd_offset(fd), Some(10));
    assert_eq!(h.env.peek(MEM, 10).unwrap(), b"0123456789");
    // A write through the fast path lands in the file.
    h.env.write_user(MEM, b"XY").unwrap();
    assert_eq!(h.res(rw(op::WRITE, fd, MEM, 2, 0, 7)), 2);
    assert_eq!(&h.env.file_data("f").unwrap()[..4], b"XY23");
}

/// A batch of one SQE (the engine's lone-SQE path) does what the batch
/// path does: a bad SQ array entry is dropped, counted; a READ with bad
/// `op_flags` or offset fails its checks whatever its file (on an
/// asynchronous one too, starting nothing, as the general path's
/// issue-time checks); a good READ on an asynchronous file goes to the
/// general path and stays pending; a plain NOP into a full CQ goes to the
/// general path and overflows.
#[test]
fn a_batch_of_one_takes_the_same_paths() {
    let mut h = Harness::new(4, 4);
    let ring = h.ring.clone();
    let v = ring.view();
    h.push(nop(1));
    v.set_sq_header(header::ARRAY, 4);
    assert_eq!(h.submit(), 0);
    assert_eq!(v.sq_header(header::DROPPED), 1);
    assert_eq!(h.cqes(), []);

    let fd = h.env.create_file("dev", b"abcd").unwrap();
    h.env.make_async(fd);
    let mut bad_flags = rw(op::READ, fd, MEM, 4, 0, 2);
    bad_flags.op_flags = 1;
    assert_eq!(h.res(bad_flags), -EOPNOTSUPP);
    assert_eq!(h.res(rw(op::WRITE, fd, MEM, 4, (-2i64) as u64, 3)), -EINVAL);
    assert!(h.env.started.is_empty());
    h.push(rw(op::READ, fd, MEM, 4, 0, 4));
    assert_eq!(h.submit(), 1);
    assert_eq!(h.env.started.len(), 1);
    assert_eq!(h.engine.pending_ops(), 1);
    assert_eq!(h.cqes(), []);

    // A sync file on the lone path, then four NOPs fill the CQ and a fifth
    // overflows; all come out in order.
    let file = h.env.create_file("f", b"xyz").unwrap();
    assert_eq!(h.res(rw(op::READ, file, MEM, 3, 0, 5)), 3);
    for i in 0..5 {
        h.push(nop(10 + i));
        assert_eq!(h.submit(), 1);
    }
    assert_eq!(h.engine.stats().overflowed, 1);
    let got: Vec<u64> = h.cqes().iter().map(|c| c.user_data).collect();
    assert_eq!(got, [10, 11, 12, 13, 14]);
    h.engine.teardown(&mut h.env);
}

/// Runs of READs and NOPs in one batch (the fast path's two leaf loops)
/// hand over to each other in order, and a READ on an asynchronous file
/// in the middle hands the rest to the general path.
#[test]
fn read_and_nop_runs_hand_over_in_order() {
    let mut h = Harness::new(16, 16);
    let file = h.env.create_file("f", b"0123456789").unwrap();
    let dev = h.env.create_file("dev", b"").unwrap();
    h.env.make_async(dev);
    let sqes = [
        rw(op::READ, file, MEM, 2, 0, 1),
        rw(op::READ, file, MEM + 2, 2, 2, 2),
        nop(3),
        nop(4),
        rw(op::READ, file, MEM + 4, 2, 4, 5),
        rw(op::READ, dev, MEM + 8, 2, 0, 6),
        nop(7),
        rw(op::READ, file, MEM + 6, 2, 6, 8),
    ];
    for sqe in &sqes {
        h.push(*sqe);
    }
    assert_eq!(h.submit(), 8);
    let got: Vec<(u64, i32)> = h.cqes().iter().map(|c| (c.user_data, c.res)).collect();
    assert_eq!(
        got,
        [(1, 2), (2, 2), (3, 0), (4, 0), (5, 2), (7, 0), (8, 2)]
    );
    assert_eq!(h.env.peek(MEM, 8).unwrap(), b"01234567");
    assert_eq!(h.env.started.len(), 1);
    h.engine.teardown(&mut h.env);
}
