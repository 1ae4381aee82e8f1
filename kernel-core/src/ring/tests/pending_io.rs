//! I/O that stays in flight: ops on an asynchronous descriptor (a mock
//! block device) start, stay pending, and complete when the test posts
//! their results to the ring's mailbox, in any order.

use super::*;
use abi::errno::{ECANCELED, EIO, ENOENT, ETIME};
use abi::io_uring::fsync_flags;

/// A harness with one asynchronous descriptor; returns it and the fd.
fn device() -> (Harness, i32) {
    let mut h = Harness::new(64, 128);
    let fd = h.env.create_file("disk", &[0; 4096]).unwrap();
    h.env.make_async(fd);
    (h, fd)
}

impl Harness {
    /// Posts `result` for started I/O `token` and lets the ring reap it.
    fn finish(&mut self, token: u64, result: Result<u32, Errno>) -> bool {
        assert!(self.env.finish_io(token, result), "no I/O {token}");
        let view = self.ring.view();
        let posted = self.engine.reap_io(&view, &mut self.env);
        self.check();
        posted
    }

    fn tokens(&self) -> Vec<u64> {
        self.env.started.iter().map(|s| s.token).collect()
    }
}

fn read(fd: i32, off: u64, user_data: u64) -> Sqe {
    rw(op::READ, fd, MEM, 512, off, user_data)
}

#[test]
fn reads_stay_pending_and_complete_out_of_order() {
    let (mut h, fd) = device();
    let cqes = h.run(&[read(fd, 0, 1), read(fd, 512, 2), read(fd, 1024, 3)]);
    assert!(cqes.is_empty(), "{cqes:?}");
    assert_eq!(h.engine.io_in_flight(), 3);
    assert_eq!(h.engine.pending_ops(), 3);
    let t = h.tokens();
    assert_eq!(t.len(), 3);
    // The device finishes the last first.
    assert!(h.finish(t[2], Ok(512)));
    assert_eq!(h.cqes(), [cqe(3, 512)]);
    assert!(h.finish(t[0], Err(EIO)));
    assert!(h.finish(t[1], Ok(512)));
    assert_eq!(h.cqes(), [cqe(1, -EIO), cqe(2, 512)]);
    assert_eq!(h.engine.io_in_flight(), 0);
    assert_eq!(h.engine.pending_ops(), 0);
}

#[test]
fn a_link_waits_for_the_io_and_a_short_read_breaks_it() {
    let (mut h, fd) = device();
    let cqes = h.run(&[linked(read(fd, 0, 1)), nop(2)]);
    assert!(cqes.is_empty());
    let t = h.tokens();
    h.finish(t[0], Ok(512));
    assert_eq!(h.cqes(), [cqe(1, 512), cqe(2, 0)]);

    // Short: the chain breaks.
    let cqes = h.run(&[linked(read(fd, 0, 3)), nop(4)]);
    assert!(cqes.is_empty());
    let t = h.tokens();
    h.finish(t[0], Ok(100));
    assert_eq!(h.cqes(), [cqe(3, 100), cqe(4, -ECANCELED)]);
}

#[test]
fn a_chain_of_ios_issues_one_after_another() {
    let (mut h, fd) = device();
    // WRITE -> FSYNC, as a durable append does.
    let write = rw(op::WRITE, fd, MEM, 512, 0, 1);
    let fsync = Sqe {
        opcode: op::FSYNC,
        fd,
        op_flags: fsync_flags::DATASYNC,
        user_data: 2,
        ..Sqe::default()
    };
    assert!(h.run(&[linked(write), fsync]).is_empty());
    // Only the write is started; the fsync waits behind it.
    assert_eq!(h.env.started.len(), 1);
    assert!(matches!(h.env.started[0].io, AsyncIo::Write { .. }));
    let t = h.tokens();
    h.finish(t[0], Ok(512));
    assert_eq!(h.cqes(), [cqe(1, 512)]);
    assert_eq!(h.env.started.len(), 1);
    assert_eq!(h.env.started[0].io, AsyncIo::Fsync { datasync: true });
    let t = h.tokens();
    h.finish(t[0], Ok(0));
    assert_eq!(h.cqes(), [cqe(2, 0)]);
}

#[test]
fn drain_waits_for_io_in_flight() {
    let (mut h, fd) = device();
    let drained = with_flags(nop(2), sqe_flags::IO_DRAIN);
    assert!(h.run(&[read(fd, 0, 1), drained]).is_empty());
    let t = h.tokens();
    h.finish(t[0], Ok(512));
    assert_eq!(h.cqes(), [cqe(1, 512), cqe(2, 0)]);
}

#[test]
fn cancel_does_not_find_started_io_which_completes_once() {
    let (mut h, fd) = device();
    assert!(h.run(&[read(fd, 0, 1)]).is_empty());
    assert_eq!(h.res(cancel(op::ASYNC_CANCEL, 1, 9)), -ENOENT);
    let t = h.tokens();
    h.finish(t[0], Ok(512));
    assert_eq!(h.cqes(), [cqe(1, 512)]);
    // Posting again for the same token finds nothing.
    assert!(!h.env.finish_io(t[0], Ok(512)));
}

#[test]
fn a_link_timeout_on_started_io_fires_without_cancelling_it() {
    let (mut h, fd) = device();
    h.put_timespec(TS, 1, 0);
    assert!(h
        .run(&[linked(read(fd, 0, 1)), link_timeout(TS, 2)])
        .is_empty());
    assert!(h.advance(2 * SEC));
    assert_eq!(h.cqes(), [cqe(2, -ENOENT)]);
    let t = h.tokens();
    h.finish(t[0], Ok(512));
    assert_eq!(h.cqes(), [cqe(1, 512)]);

    // The I/O first: the timer is cancelled.
    assert!(h
        .run(&[linked(read(fd, 0, 3)), link_timeout(TS, 4)])
        .is_empty());
    let t = h.tokens();
    h.finish(t[0], Ok(512));
    assert_eq!(h.cqes(), [cqe(3, 512), cqe(4, -ECANCELED)]);
    assert!(!h.advance(2 * SEC));
}

#[test]
fn count_timeouts_count_io_completions() {
    let (mut h, fd) = device();
    h.put_timespec(TS, 100, 0);
    assert!(h.run(&[timeout(TS, 1, 7), read(fd, 0, 1)]).is_empty());
    let t = h.tokens();
    h.finish(t[0], Ok(512));
    assert_eq!(h.cqes(), [cqe(1, 512), cqe(7, 0)]);
    // And a pure timer still fires by time.
    assert!(h.run(&[timeout(TS, 0, 8)]).is_empty());
    assert!(h.advance(101 * SEC));
    assert_eq!(h.cqes(), [cqe(8, -ETIME)]);
}

#[test]
fn completions_overflow_and_are_not_lost() {
    let mut h = Harness::new(8, 8);
    let fd = h.env.create_file("disk", &[0; 4096]).unwrap();
    h.env.make_async(fd);
    for round in 0..3u64 {
        let sqes: Vec<Sqe> = (0..8).map(|i| read(fd, 0, round * 8 + i)).collect();
        assert!(h.run(&sqes).is_empty());
    }
    // 24 in flight on an 8-entry CQ: finish them all before user space
    // takes any.
    for t in h.tokens() {
        let _ = h.env.finish_io(t, Ok(512));
    }
    let view = h.ring.view();
    assert!(h.engine.reap_io(&view, &mut h.env));
    h.check();
    let cqes = h.cqes();
    assert_eq!(cqes.len(), 24);
    let mut seen: Vec<u64> = cqes.iter().map(|c| c.user_data).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..24).collect::<Vec<_>>());
}

#[test]
fn teardown_with_io_in_flight_drops_the_ops_and_late_results_are_harmless() {
    let (mut h, fd) = device();
    assert!(h.run(&[read(fd, 0, 1), read(fd, 512, 2)]).is_empty());
    let t = h.tokens();
    h.engine.teardown(&mut h.env);
    h.check();
    assert_eq!(h.engine.io_in_flight(), 0);
    // The device finishes afterwards: the posts land in the mailbox (which
    // the I/O holds) and a later reap finds nothing of theirs.
    assert!(!h.finish(t[0], Ok(512)));
    assert!(!h.finish(t[1], Ok(512)));
    assert!(h.cqes().is_empty());
    assert_eq!(h.engine.memory(), 0);
}

#[test]
fn without_room_new_io_fails_with_enomem_and_nothing_starts() {
    let (mut q, quota) = Harness::with_quota(64, 128, 4096);
    let qfd = q.env.create_file("disk", &[0; 4096]).unwrap();
    q.env.make_async(qfd);
    // The quota runs out first: -ENOMEM, nothing started, nothing lost.
    let mut results = Vec::new();
    for i in 0..64u64 {
        q.push(read(qfd, 0, i));
    }
    q.submit();
    results.extend(q.cqes());
    assert!(!results.is_empty(), "a 4 KiB quota holds fewer than 64 ops");
    assert!(results.iter().all(|c| c.res == -abi::errno::ENOMEM));
    let started = q.env.started.len();
    assert_eq!(started + results.len(), 64);
    for t in q.tokens() {
        q.finish(t, Ok(512));
    }
    assert_eq!(q.cqes().len(), started);
    assert_eq!(quota.used(), q.engine.memory());
}

#[test]
fn iopoll_rings_ask_for_polled_queues() {
    let (mut h, fd) = device();
    h.engine.set_iopoll(true);
    assert!(h.run(&[read(fd, 0, 1)]).is_empty());
    assert!(h.env.started[0].polled);
    let t = h.tokens();
    h.finish(t[0], Ok(512));
    assert_eq!(h.cqes(), [cqe(1, 512)]);
}

#[test]
fn synchronous_files_still_complete_inline() {
    let (mut h, _) = device();
    let fd = h.env.create_file("plain", b"hello").unwrap();
    let cqes = h.run(&[rw(op::READ, fd, MEM, 5, 0, 1)]);
    assert_eq!(cqes, [cqe(1, 5)]);
    assert!(h.env.started.is_empty());
    assert_eq!(h.engine.memory(), 0);
}

/// Path ops when a sleeping file system is mounted: handed to the host
/// (its worker) and pending until it posts; links wait for them.
#[test]
fn path_ops_are_handed_off_and_complete_through_the_mailbox() {
    let mut h = Harness::new(64, 128);
    h.env.punt_paths = true;
    let path = MEM + 2048;
    crate::ring::IoEnv::write_user(&mut h.env, path, b"/disk/x\0").unwrap();
    let open = Sqe {
        opcode: op::OPENAT,
        fd: abi::io_uring::AT_FDCWD,
        addr: path,
        user_data: 1,
        ..Sqe::default()
    };
    let mkdir = Sqe {
        opcode: op::MKDIRAT,
        fd: abi::io_uring::AT_FDCWD,
        addr: path,
        user_data: 2,
        ..Sqe::default()
    };
    assert!(h.run(&[linked(mkdir), open]).is_empty());
    // Only the MKDIRAT was handed off; the OPENAT waits behind it.
    assert_eq!(h.env.started_paths.len(), 1);
    assert_eq!(h.env.started_paths[0].0, "mkdir /disk/x");
    let t = h.env.started_paths[0].1.token;
    assert!(h.env.finish_path(t, Ok(0)));
    let view = h.ring.view();
    h.engine.reap_io(&view, &mut h.env);
    assert_eq!(h.cqes(), [cqe(2, 0)]);
    assert_eq!(h.env.started_paths[0].0, "open /disk/x");
    let t = h.env.started_paths[0].1.token;
    h.env.finish_path(t, Ok(7));
    let view = h.ring.view();
    h.engine.reap_io(&view, &mut h.env);
    assert_eq!(h.cqes(), [cqe(1, 7)]);
    assert_eq!(h.engine.pending_ops(), 0);
    h.check();
}

#[test]
fn path_ops_run_synchronously_when_nothing_sleeps() {
    let mut h = Harness::new(64, 128);
    let path = MEM + 2048;
    crate::ring::IoEnv::write_user(&mut h.env, path, b"d\0").unwrap();
    let mkdir = Sqe {
        opcode: op::MKDIRAT,
        fd: abi::io_uring::AT_FDCWD,
        addr: path,
        user_data: 2,
        ..Sqe::default()
    };
    assert_eq!(h.run(&[mkdir]), [cqe(2, 0)]);
    assert!(h.env.started_paths.is_empty());
}
