//! Memory the engine holds for its user: charged to a quota, refused with
//! `-ENOMEM` past it, returned when freed and at teardown. (The heap's own
//! refusals take the same paths: every allocation is fallible.)

use abi::errno::*;
use abi::io_uring::{header, register, sq_flags, sqe_flags};

use super::*;
use crate::ring::IoEnv;

#[test]
fn pending_timeouts_stop_at_the_quota() {
    let (mut h, quota) = Harness::with_quota(64, 64, 16 * 1024);
    h.put_timespec(TS, 1, 0);
    let mut armed = 0;
    let mut refused = None;
    for ud in 0..1000u64 {
        h.push(timeout(TS, 0, ud));
        h.submit();
        match h.cqes().as_slice() {
            [] => armed += 1,
            [c] => {
                assert_eq!(*c, cqe(ud, -ENOMEM));
                refused = Some(ud);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(refused.is_some() && armed > 10, "armed {armed}");
    assert_eq!(h.engine.pending_ops(), armed);
    assert!(quota.used() <= quota.limit());
    assert_eq!(quota.used(), h.engine.memory());
    // A chain behind a refused TIMEOUT is cancelled; synchronous ops and
    // SQEs that need no memory still run.
    let cqes = h.run(&[linked(timeout(TS, 0, 5000)), nop(5001)]);
    assert_eq!(cqes, [cqe(5000, -ENOMEM), cqe(5001, -ECANCELED)]);
    assert_eq!(h.run(&[nop(5002)]), [cqe(5002, 0)]);
    // Everything comes back as the timers fire.
    h.advance(SEC);
    assert_eq!(h.cqes().len(), armed);
    assert_eq!(h.engine.memory(), 0);
    assert_eq!(quota.used(), 0);
    // And the ring works as before.
    assert_eq!(h.run(&[timeout(TS, 0, 6000)]), []);
    h.engine.teardown(&mut h.env);
    assert_eq!(quota.used(), 0);
}

#[test]
fn held_chain_members_and_drain_stop_at_the_quota() {
    let (mut h, quota) = Harness::with_quota(256, 256, 24 * 1024);
    h.put_timespec(TS, 1, 0);
    // One TIMEOUT with a long chain behind it: members wait until the
    // quota is spent, then the rest of the chain gets ENOMEM, cancelled.
    let mut chain = vec![linked(timeout(TS, 0, 0))];
    chain.extend((1..200).map(|i| linked(nop(i))));
    chain.push(nop(200));
    let cqes = h.run(&chain);
    let (first, rest) = cqes.split_first().expect("a refusal");
    assert_eq!(first.res, -ENOMEM, "{cqes:?}");
    assert!(rest.iter().all(|c| c.res == -ECANCELED));
    let held = h.engine.pending_ops();
    assert!(held > 10 && held < 200, "held {held}");
    assert_eq!(quota.used(), h.engine.memory());
    // Drained SQEs need room too.
    let drained = with_flags(nop(300), sqe_flags::IO_DRAIN);
    let cqes = h.run(&[drained]);
    assert_eq!(cqes, [cqe(300, -ENOMEM)]);
    h.advance(SEC);
    let cqes = h.cqes();
    assert_eq!(cqes[0], cqe(0, -ETIME));
    assert_eq!(cqes.len(), held);
    // Only the staging room for chains stays charged.
    assert!(h.engine.memory() > 0);
    h.engine.teardown(&mut h.env);
    assert_eq!(quota.used(), 0);
}

#[test]
fn a_chain_that_cannot_be_assembled_fails_with_enomem() {
    // Too small for the staging room of a 256-entry ring.
    let (mut h, quota) = Harness::with_quota(256, 256, 1024);
    let cqes = h.run(&[linked(nop(1)), linked(nop(2)), nop(3), nop(4)]);
    assert_eq!(
        cqes,
        [
            cqe(1, -ENOMEM),
            cqe(2, -ECANCELED),
            cqe(3, -ECANCELED),
            cqe(4, 0)
        ]
    );
    assert_eq!(quota.used(), 0);
    // With skip-success on the first, the cancelled ones are hidden.
    let skip = sqe_flags::CQE_SKIP_SUCCESS;
    let cqes = h.run(&[with_flags(linked(nop(5)), skip), nop(6), nop(7)]);
    assert_eq!(cqes, [cqe(5, -ENOMEM), cqe(7, 0)]);
    // Lone SQEs need nothing.
    assert_eq!(h.run(&[nop(8)]), [cqe(8, 0)]);
}

#[test]
fn overflowed_cqes_past_the_quota_are_lost_and_counted() {
    let (mut h, quota) = Harness::with_quota(16, 4, 64);
    let ring = h.ring.clone();
    let v = ring.view();
    for i in 0..16 {
        h.push(nop(i));
    }
    assert_eq!(h.submit(), 16);
    // 4 in the CQ, 4 overflowed (64 bytes), 8 lost.
    let s = h.engine.stats();
    assert_eq!((s.overflowed, s.lost), (4, 8));
    assert_eq!(v.cq_header(header::OVERFLOW), 12);
    assert_ne!(v.sq_header(header::FLAGS) & sq_flags::CQ_OVERFLOW, 0);
    assert_eq!(quota.used(), 64);
    let got: Vec<u64> = h.cqes().iter().map(|c| c.user_data).collect();
    assert_eq!(got, [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(quota.used(), 0);
    assert_eq!(v.sq_header(header::FLAGS) & sq_flags::CQ_OVERFLOW, 0);
}

#[test]
fn registered_tables_are_charged() {
    let (mut h, quota) = Harness::with_quota(8, 8, 4096);
    for i in 0..64u64 {
        let at = MEM + 0x3000 + 16 * i;
        h.env.write_user(at, &(MEM + 0x100).to_le_bytes()).unwrap();
        h.env.write_user(at + 8, &16u64.to_le_bytes()).unwrap();
    }
    let reg = |h: &mut Harness, op, arg, nr| h.engine.register(&mut h.env, op, arg, nr);
    // 64 buffers fit, 1024 do not (and take nothing).
    assert_eq!(
        reg(&mut h, register::REGISTER_BUFFERS, MEM + 0x3000, 1024),
        Err(ENOMEM)
    );
    assert_eq!(quota.used(), 0);
    assert_eq!(
        reg(&mut h, register::REGISTER_BUFFERS, MEM + 0x3000, 64),
        Ok(0)
    );
    let buffers = quota.used();
    assert!(buffers > 0);
    // Files: the table and the kernel's references.
    let fd = h.env.create_file("f", b"").unwrap();
    for i in 0..64u64 {
        h.env
            .write_user(MEM + 0x5000 + 4 * i, &fd.to_le_bytes())
            .unwrap();
    }
    assert_eq!(
        reg(&mut h, register::REGISTER_FILES, MEM + 0x5000, 64),
        Err(ENOMEM)
    );
    assert_eq!(h.env.pinned_files(), 0);
    assert_eq!(
        reg(&mut h, register::REGISTER_FILES, MEM + 0x5000, 8),
        Ok(0)
    );
    assert!(quota.used() > buffers);
    assert_eq!(reg(&mut h, register::UNREGISTER_BUFFERS, 0, 0), Ok(0));
    assert_eq!(reg(&mut h, register::UNREGISTER_FILES, 0, 0), Ok(0));
    assert_eq!(quota.used(), 0);
    assert_eq!(
        reg(&mut h, register::REGISTER_FILES, MEM + 0x5000, 8),
        Ok(0)
    );
    h.engine.teardown(&mut h.env);
    assert_eq!(quota.used(), 0);
    assert_eq!(h.env.pinned_files(), 0);
}

#[test]
fn a_dropped_engine_returns_its_charge() {
    let (mut h, quota) = Harness::with_quota(8, 8, usize::MAX);
    h.put_timespec(TS, 100, 0);
    h.run(&[linked(timeout(TS, 0, 1)), nop(2), nop(3)]);
    assert!(quota.used() > 0);
    drop(h);
    assert_eq!(quota.used(), 0);
}

#[test]
fn registering_a_buffer_of_length_zero_is_efault() {
    let mut h = Harness::new(4, 8);
    let iov = MEM + 0x3000;
    h.env.write_user(iov, &(MEM + 0x100).to_le_bytes()).unwrap();
    h.env.write_user(iov + 8, &0u64.to_le_bytes()).unwrap();
    assert_eq!(
        h.engine
            .register(&mut h.env, register::REGISTER_BUFFERS, iov, 1),
        Err(EFAULT)
    );
    // A sparse slot (no address, no length) is still fine.
    h.env.write_user(iov, &0u64.to_le_bytes()).unwrap();
    assert_eq!(
        h.engine
            .register(&mut h.env, register::REGISTER_BUFFERS, iov, 1),
        Ok(0)
    );
}
