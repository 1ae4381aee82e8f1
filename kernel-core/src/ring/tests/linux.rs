//! Linux 6.1's submission semantics, case by case: prep before issue
//! (`io_submit_sqes`, `io_init_req`, `io_submit_fail_init`), which CQEs
//! `CQE_SKIP_SUCCESS` hides (liburing's `test/skip-cqe.c`), `ioprio` and
//! `personality`, `IOSQE_ASYNC`, and what happens to a batch after a
//! failure: how many SQEs are consumed and what `submit` returns.

use abi::errno::*;
use abi::io_uring::{header, ioprio, op, sqe_flags, Sqe};

use super::*;
use crate::ring::IoEnv;

const SKIP: u8 = sqe_flags::CQE_SKIP_SUCCESS;
const LINK: u8 = sqe_flags::IO_LINK;
const HARD: u8 = sqe_flags::IO_HARDLINK;
/// An SQE flag bit no kernel knows: fails prep.
const BAD_FLAG: u8 = 0x80;

/// A WRITE of 4 bytes at `MEM` to `fd` at offset 0.
fn write4(fd: i32, user_data: u64) -> Sqe {
    rw(op::WRITE, fd, MEM, 4, 0, user_data)
}

/// An SQE that preps fine and fails at issue: a READ of a descriptor that
/// is not open (skip-cqe.c's "exec fail" request).
fn exec_fail(user_data: u64) -> Sqe {
    rw(op::READ, 99, MEM, 4, 0, user_data)
}

fn f(sqe: Sqe, flags: u8) -> Sqe {
    with_flags(sqe, flags)
}

/// Pushes `sqes`, submits once, returns what `submit` returned.
fn submit_once(h: &mut Harness, sqes: &[Sqe]) -> u32 {
    for sqe in sqes {
        h.push(*sqe);
    }
    h.submit()
}

#[test]
fn a_chain_with_an_invalid_member_does_not_run_its_head() {
    let mut h = Harness::new(8, 16);
    let fd = h.env.create_file("f", b"").unwrap();
    h.env.write_user(MEM, b"data").unwrap();
    // The WRITE would succeed; the NOP after it has a bad flag.
    let cqes = h.run(&[f(write4(fd, 1), LINK), f(f(nop(2), BAD_FLAG), LINK), nop(3)]);
    assert_eq!(
        cqes,
        [cqe(1, -ECANCELED), cqe(2, -EINVAL), cqe(3, -ECANCELED)]
    );
    assert_eq!(h.env.file_data("f").unwrap(), b"", "the head never ran");
    // Every member that fails prep gets its own error.
    let cqes = h.run(&[
        f(nop(4), LINK),
        f(f(nop(5), BAD_FLAG), LINK),
        f(f(nop(6), BAD_FLAG), LINK),
        nop(7),
    ]);
    assert_eq!(
        cqes,
        [
            cqe(4, -ECANCELED),
            cqe(5, -EINVAL),
            cqe(6, -EINVAL),
            cqe(7, -ECANCELED)
        ]
    );
    // The head itself failing: its own error, the rest cancelled.
    let cqes = h.run(&[f(f(nop(8), BAD_FLAG), LINK), nop(9)]);
    assert_eq!(cqes, [cqe(8, -EINVAL), cqe(9, -ECANCELED)]);
}

#[test]
fn an_error_found_at_issue_runs_the_members_before_it() {
    let mut h = Harness::new(8, 16);
    let fd = h.env.create_file("f", b"").unwrap();
    h.env.write_user(MEM, b"data").unwrap();
    // Linux checks rw_flags and the file at issue: the head runs.
    let mut flagged = rw(op::READ, fd, MEM, 4, 0, 2);
    flagged.op_flags = 1;
    let cqes = h.run(&[f(write4(fd, 1), LINK), f(flagged, LINK), nop(3)]);
    assert_eq!(cqes, [cqe(1, 4), cqe(2, -EOPNOTSUPP), cqe(3, -ECANCELED)]);
    assert_eq!(h.env.file_data("f").unwrap(), b"data");
    let cqes = h.run(&[f(nop(4), LINK), f(exec_fail(5), LINK), nop(6)]);
    assert_eq!(cqes, [cqe(4, 0), cqe(5, -EBADF), cqe(6, -ECANCELED)]);
    // A negative offset is EINVAL at issue too.
    let mut before_start = rw(op::READ, fd, MEM, 4, (-2i64) as u64, 8);
    assert_eq!(h.res(before_start), -EINVAL);
    before_start.flags = LINK;
    let cqes = h.run(&[f(nop(7), LINK), before_start, nop(9)]);
    assert_eq!(cqes, [cqe(7, 0), cqe(8, -EINVAL), cqe(9, -ECANCELED)]);
}

#[test]
fn a_timespec_is_read_at_prep() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 0, 1_000);
    // A TIMEOUT whose timespec is unreadable fails the chain before its
    // head runs; one with a negative field likewise (EINVAL).
    let cqes = h.run(&[f(nop(1), LINK), f(timeout(0x10, 0, 2), LINK), nop(3)]);
    assert_eq!(
        cqes,
        [cqe(1, -ECANCELED), cqe(2, -EFAULT), cqe(3, -ECANCELED)]
    );
    h.put_timespec(TS + 16, -1, 0);
    let cqes = h.run(&[f(nop(4), LINK), timeout(TS + 16, 0, 5)]);
    assert_eq!(cqes, [cqe(4, -ECANCELED), cqe(5, -EINVAL)]);
    // The timer itself starts at issue.
    assert_eq!(h.run(&[timeout(TS, 0, 6)]), []);
    assert!(h.advance(1_000));
    assert_eq!(h.cqes(), [cqe(6, -ETIME)]);
}

#[test]
fn a_lone_sqe_that_fails_prep_ends_the_batch() {
    let mut h = Harness::new(8, 16);
    let ring = h.ring.clone();
    let v = ring.view();
    // io_submit_sqes stops at the failed SQE: it is consumed and counted,
    // what follows stays in the SQ.
    assert_eq!(
        submit_once(&mut h, &[nop(1), f(nop(2), BAD_FLAG), nop(3), nop(4)]),
        2
    );
    assert_eq!(h.cqes(), [cqe(1, 0), cqe(2, -EINVAL)]);
    assert_eq!(v.sq_header(header::HEAD), 2);
    assert_eq!(h.engine.sq_pending(&v), 2);
    assert_eq!(h.submit(), 2);
    assert_eq!(h.cqes(), [cqe(3, 0), cqe(4, 0)]);
    // An SQE that fails at issue does not end it.
    assert_eq!(submit_once(&mut h, &[exec_fail(5), nop(6)]), 2);
    assert_eq!(h.cqes(), [cqe(5, -EBADF), cqe(6, 0)]);
    // Unknown opcodes fail prep: one per submit.
    let mut unknown = nop(7);
    unknown.opcode = 200;
    let mut unknown2 = unknown;
    unknown2.user_data = 8;
    assert_eq!(submit_once(&mut h, &[unknown, unknown2]), 1);
    assert_eq!(h.submit(), 1);
    assert_eq!(h.cqes(), [cqe(7, -EINVAL), cqe(8, -EINVAL)]);
}

#[test]
fn a_chain_ends_the_batch_only_if_its_last_member_failed_prep() {
    let mut h = Harness::new(8, 16);
    let ring = h.ring.clone();
    let v = ring.view();
    // A middle member fails: the chain completes, the batch goes on.
    assert_eq!(
        submit_once(
            &mut h,
            &[
                f(nop(1), LINK),
                f(f(nop(2), BAD_FLAG), LINK),
                nop(3),
                nop(4)
            ]
        ),
        4
    );
    assert_eq!(
        h.cqes(),
        [
            cqe(1, -ECANCELED),
            cqe(2, -EINVAL),
            cqe(3, -ECANCELED),
            cqe(4, 0)
        ]
    );
    // The last member fails: the batch ends after the chain.
    assert_eq!(
        submit_once(&mut h, &[f(nop(5), LINK), f(nop(6), BAD_FLAG), nop(7)]),
        2
    );
    assert_eq!(h.cqes(), [cqe(5, -ECANCELED), cqe(6, -EINVAL)]);
    assert_eq!(h.engine.sq_pending(&v), 1);
    assert_eq!(h.submit(), 1);
    assert_eq!(h.cqes(), [cqe(7, 0)]);
    // A failed chain still open at the end of the batch ends there.
    assert_eq!(submit_once(&mut h, &[f(f(nop(8), BAD_FLAG), LINK)]), 1);
    assert_eq!(h.cqes(), [cqe(8, -EINVAL)]);
    assert_eq!(h.run(&[nop(9)]), [cqe(9, 0)]);
}

#[test]
fn a_dropped_entry_ends_an_open_chain_with_the_batch() {
    let mut h = Harness::new(4, 8);
    let ring = h.ring.clone();
    let v = ring.view();
    for sqe in [f(nop(1), LINK), f(nop(2), LINK), nop(3)] {
        h.push(sqe);
    }
    v.set_sq_header(header::ARRAY + 2, 99);
    assert_eq!(h.submit(), 2);
    assert_eq!(h.cqes(), [cqe(1, 0), cqe(2, 0)]);
    assert_eq!(v.sq_header(header::DROPPED), 1);
}

#[test]
fn ioprio_and_personality() {
    let mut h = Harness::new(8, 16);
    let fd = h.env.create_file("f", b"abcd").unwrap();
    let prio = |class: u16, level: u16| (class << ioprio::CLASS_SHIFT) | level;
    let read_with = |value: u16| {
        let mut sqe = rw(op::READ, fd, MEM, 4, 0, 1);
        sqe.ioprio = value;
        sqe
    };
    // The read ops take a valid priority (and ignore it).
    for value in [
        0,
        prio(ioprio::CLASS_BE, 0),
        prio(ioprio::CLASS_BE, 7),
        prio(ioprio::CLASS_RT, 3),
        prio(ioprio::CLASS_IDLE, 0),
        prio(ioprio::CLASS_IDLE, 99),
    ] {
        assert_eq!(h.res(read_with(value)), 4, "ioprio {value:#x}");
    }
    for value in [
        prio(ioprio::CLASS_NONE, 1),
        prio(ioprio::CLASS_BE, 8),
        prio(ioprio::CLASS_RT, 0x1fff),
        prio(4, 0),
        prio(7, 0),
    ] {
        assert_eq!(h.res(read_with(value)), -EINVAL, "ioprio {value:#x}");
    }
    // Ops without a priority need it zero.
    let mut sqe = nop(2);
    sqe.ioprio = 1;
    assert_eq!(h.res(sqe), -EINVAL);
    let mut sqe = timeout(TS, 0, 3);
    sqe.ioprio = prio(ioprio::CLASS_BE, 0);
    assert_eq!(h.res(sqe), -EINVAL);
    // No personality can be registered.
    let mut sqe = nop(4);
    sqe.personality = 1;
    assert_eq!(h.res(sqe), -EINVAL);
    // In a chain, an ioprio error fails the whole chain.
    let mut bad = read_with(prio(5, 0));
    bad.user_data = 6;
    let cqes = h.run(&[f(nop(5), LINK), bad]);
    assert_eq!(cqes, [cqe(5, -ECANCELED), cqe(6, -EINVAL)]);
}

#[test]
fn async_is_accepted_and_runs_inline() {
    let mut h = Harness::new(8, 16);
    let fd = h.env.create_file("f", b"").unwrap();
    h.env.write_user(MEM, b"data").unwrap();
    let cqes = h.run(&[
        f(nop(1), sqe_flags::ASYNC),
        f(f(write4(fd, 2), sqe_flags::ASYNC), LINK),
        f(nop(3), sqe_flags::ASYNC),
    ]);
    assert_eq!(cqes, [cqe(1, 0), cqe(2, 4), cqe(3, 0)]);
    assert_eq!(h.env.file_data("f").unwrap(), b"data");
}

// ---- liburing test/skip-cqe.c ----

const LINK_SIZE: u64 = 6;

#[test]
fn skip_cqe_link_success() {
    let mut h = Harness::new(16, 32);
    for (size, skip_last) in [(1, false), (1, true), (LINK_SIZE, false), (LINK_SIZE, true)] {
        let sqes: Vec<Sqe> = (0..size)
            .map(|i| {
                if i != size - 1 || skip_last {
                    f(nop(i), LINK | SKIP)
                } else {
                    nop(i)
                }
            })
            .collect();
        let cqes = h.run(&sqes);
        if skip_last {
            assert_eq!(cqes, [], "size {size}");
        } else {
            assert_eq!(cqes, [cqe(size - 1, 0)], "size {size}");
        }
    }
}

#[test]
fn skip_cqe_link_fail() {
    let mut h = Harness::new(16, 32);
    for fail in [LINK_SIZE / 2, LINK_SIZE - 1] {
        let sqes: Vec<Sqe> = (0..LINK_SIZE)
            .map(|i| {
                let sqe = if i == fail { exec_fail(i) } else { nop(i) };
                if i != LINK_SIZE - 1 {
                    f(sqe, LINK | SKIP)
                } else {
                    sqe
                }
            })
            .collect();
        // Only the failed member's CQE: the members it cancelled post
        // nothing, the last one (without the flag) included.
        assert_eq!(h.run(&sqes), [cqe(fail, -EBADF)], "fail at {fail}");
    }
}

/// skip-cqe.c's `test_ltimeout_cancel`: a chain of `nr` NOPs (all linked,
/// all but the last skip-success), a skip-success LINK_TIMEOUT after member
/// `tout`, member `fail` (if any) failing at issue. Exactly one CQE: the
/// last member's success, or the failure.
fn ltimeout_cancel(nr: u64, tout: u64, fail: Option<u64>) {
    let mut h = Harness::new(16, 32);
    h.put_timespec(TS, 1, 0);
    let mut sqes = Vec::new();
    for i in 0..nr {
        let sqe = if Some(i) == fail {
            exec_fail(i)
        } else {
            nop(i)
        };
        let mut flags = LINK;
        if i != nr - 1 {
            flags |= SKIP;
        }
        sqes.push(f(sqe, flags));
        if i == tout {
            sqes.push(f(link_timeout(TS, u64::MAX), LINK | SKIP));
        }
    }
    let want = match fail {
        Some(i) => cqe(i, -EBADF),
        None => cqe(nr - 1, 0),
    };
    assert_eq!(h.run(&sqes), [want], "nr {nr} tout {tout} fail {fail:?}");
    assert_eq!(h.engine.pending_ops(), 0);
}

#[test]
fn skip_cqe_ltimeout_cancel() {
    let mid = LINK_SIZE / 2;
    ltimeout_cancel(1, 0, None);
    ltimeout_cancel(LINK_SIZE, mid, None);
    ltimeout_cancel(LINK_SIZE, LINK_SIZE - 1, None);
    ltimeout_cancel(LINK_SIZE, mid, Some(mid));
    ltimeout_cancel(LINK_SIZE, mid, Some(mid - 1));
    ltimeout_cancel(LINK_SIZE, mid, Some(mid + 1));
}

/// skip-cqe.c's `test_ltimeout_fire`, with a TIMEOUT standing in for the
/// read that never completes: the link timer fires, the target is
/// cancelled (always posted: a failure), the timer's own -ETIME is hidden
/// by its skip flag.
#[test]
fn skip_cqe_ltimeout_fire() {
    for (skip_main, skip_tout) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut h = Harness::new(8, 16);
        h.put_timespec(TS, 10, 0);
        h.put_timespec(TS + 16, 0, 1_000_000);
        let main = f(timeout(TS, 0, 0), LINK | if skip_main { SKIP } else { 0 });
        let tout = f(link_timeout(TS + 16, 1), if skip_tout { SKIP } else { 0 });
        assert_eq!(submit_once(&mut h, &[main, tout]), 2);
        h.advance(1_000_000);
        let mut want = vec![cqe(0, -ECANCELED)];
        if !skip_tout {
            want.push(cqe(1, -ETIME));
        }
        assert_eq!(h.cqes(), want, "skip main {skip_main} tout {skip_tout}");
    }
}

/// skip-cqe.c's `test_hardlink`: seven hardlinked NOPs, member `fail`
/// failing at issue, member `skip` skip-success. Every CQE but the skipped
/// success, in order.
#[test]
fn skip_cqe_hardlink() {
    let nr = 7;
    for fail in [0, 3, 6] {
        for skip in [0, 3, 6] {
            for hardlink_last in [false, true] {
                let mut h = Harness::new(16, 32);
                let sqes: Vec<Sqe> = (0..nr)
                    .map(|i| {
                        let mut sqe = if i == fail { exec_fail(i) } else { nop(i) };
                        if i != nr - 1 || hardlink_last {
                            sqe.flags |= HARD;
                        }
                        if i == skip {
                            sqe.flags |= SKIP;
                        }
                        sqe
                    })
                    .collect();
                let want: Vec<_> = (0..nr)
                    .filter(|&i| i != skip || i == fail)
                    .map(|i| cqe(i, if i == fail { -EBADF } else { 0 }))
                    .collect();
                assert_eq!(h.run(&sqes), want, "fail {fail} skip {skip}");
            }
        }
    }
}

#[test]
fn skip_success_on_a_failed_member_hides_what_it_cancels() {
    let mut h = Harness::new(8, 16);
    // The failing member has no skip flag: the cancelled ones post, with
    // or without their own.
    let cqes = h.run(&[f(exec_fail(1), LINK), f(nop(2), LINK | SKIP), nop(3)]);
    assert_eq!(
        cqes,
        [cqe(1, -EBADF), cqe(2, -ECANCELED), cqe(3, -ECANCELED)]
    );
    // A chain failed at prep counts as failed by its first member.
    let cqes = h.run(&[f(nop(4), LINK | SKIP), f(f(nop(5), BAD_FLAG), LINK), nop(6)]);
    assert_eq!(cqes, [cqe(4, -ECANCELED)]);
    assert_eq!(h.engine.stats().skipped, 2);
    // A short transfer is a failure: shown, even with the flag.
    let fd = h.env.create_file("f", b"ab").unwrap();
    let short = f(rw(op::READ, fd, MEM, 4, 0, 7), LINK | SKIP);
    assert_eq!(h.run(&[short, nop(8)]), [cqe(7, 2)]);
    // A TIMEOUT that completes by count is a success, one that expires a
    // failure.
    h.put_timespec(TS, 1, 0);
    let counted = f(timeout(TS, 1, 9), SKIP);
    assert_eq!(h.run(&[counted, nop(10)]), [cqe(10, 0)]);
    assert_eq!(h.run(&[f(timeout(TS, 0, 11), SKIP)]), []);
    h.advance(SEC);
    assert_eq!(h.cqes(), [cqe(11, -ETIME)]);
}

#[test]
fn a_link_timeout_after_a_failed_member_follows_its_own_flag() {
    let mut h = Harness::new(8, 16);
    h.put_timespec(TS, 1, 0);
    // The failed member hides what it cancels, but not the LINK_TIMEOUT
    // armed on it (its own completion, without the flag).
    let cqes = h.run(&[
        f(exec_fail(1), LINK | SKIP),
        f(link_timeout(TS, 2), LINK),
        nop(3),
    ]);
    assert_eq!(cqes, [cqe(1, -EBADF), cqe(2, -ECANCELED)]);
    // And the other way round.
    let cqes = h.run(&[
        f(exec_fail(4), LINK),
        f(link_timeout(TS, 5), LINK | SKIP),
        nop(6),
    ]);
    assert_eq!(cqes, [cqe(4, -EBADF), cqe(6, -ECANCELED)]);
}

#[test]
fn vectored_members_import_their_iovecs_at_prep() {
    let mut h = Harness::new(8, 16);
    let fd = h.env.create_file("f", b"abcd").unwrap();
    let iov = MEM + 0x100;
    h.env.write_user(iov, &MEM.to_le_bytes()).unwrap();
    h.env.write_user(iov + 8, &4u64.to_le_bytes()).unwrap();
    let readv = |addr: u64, n: u32, user_data| Sqe {
        opcode: op::READV,
        fd,
        addr,
        len: n,
        user_data,
        ..Sqe::default()
    };
    // As the head (or alone) the array is read at issue.
    assert_eq!(h.res(readv(0x10, 1, 1)), -EFAULT);
    let cqes = h.run(&[f(readv(0x10, 1, 2), LINK), nop(3)]);
    assert_eq!(cqes, [cqe(2, -EFAULT), cqe(3, -ECANCELED)]);
    // Behind a head, at prep: the head does not run.
    let cqes = h.run(&[f(nop(4), LINK), f(readv(0x10, 1, 5), LINK), nop(6)]);
    assert_eq!(
        cqes,
        [cqe(4, -ECANCELED), cqe(5, -EFAULT), cqe(6, -ECANCELED)]
    );
    let cqes = h.run(&[f(nop(7), LINK), readv(iov, abi::io_uring::IOV_MAX + 1, 8)]);
    assert_eq!(cqes, [cqe(7, -ECANCELED), cqe(8, -EINVAL)]);
    // A good one runs.
    let cqes = h.run(&[f(nop(9), LINK), readv(iov, 1, 10)]);
    assert_eq!(cqes, [cqe(9, 0), cqe(10, 4)]);
}

#[test]
fn a_path_is_copied_at_prep() {
    let mut h = Harness::new(8, 16);
    let path = MEM + 0x200;
    h.env.write_user(path, b"\0").unwrap();
    let openat = |addr, user_data| Sqe {
        opcode: op::OPENAT,
        fd: crate::ring::ops::AT_FDCWD,
        addr,
        user_data,
        ..Sqe::default()
    };
    for (addr, errno) in [(0x10, EFAULT), (path, ENOENT)] {
        let cqes = h.run(&[f(nop(1), LINK), openat(addr, 2)]);
        assert_eq!(cqes, [cqe(1, -ECANCELED), cqe(2, -errno)]);
    }
    // The directory is checked at issue.
    h.env.write_user(path, b"x\0").unwrap();
    let mut other_dir = openat(path, 4);
    other_dir.fd = 3;
    let cqes = h.run(&[f(nop(3), LINK), other_dir]);
    assert_eq!(cqes, [cqe(3, 0), cqe(4, -EBADF)]);
}
