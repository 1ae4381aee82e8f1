//! SQE flags (links, hardlinks, drain, skip-success, fixed files), unknown
//! opcodes and unsupported flag bits.

use abi::errno::{EBADF, ECANCELED, EINVAL, ETIME};
use abi::io_uring::{op, sqe_flags, Sqe};
use alloc::vec;
use alloc::vec::Vec;
use libuser::async_io::{AsyncContext, AsyncOp};
use libuser::test::TestResult;
use libuser::{check, check_eq, detail, sys};

use crate::raw;
use crate::util::{
    self, collect, contents, elapsed_ms, expect_err, expect_no_more, fd_of, ms, pattern, reap,
    reap_ready, results, run_batch, scratch_file, Res,
};
use crate::{RingCase, Run};

#[rustfmt::skip]
pub const CASES: &[RingCase] = &[
    ("IO_LINK: a chain of successful ops runs in order", link_success, Run::Child),
    ("IO_LINK: a failure cancels the rest of the chain with -ECANCELED", link_failure, Run::Child),
    ("IO_LINK: a short read breaks the chain", link_short_read, Run::Child),
    ("IO_HARDLINK: the chain goes on after a failure", hardlink, Run::Child),
    ("IO_DRAIN: a drained op waits for a pending timeout", drain, Run::Child),
    ("CQE_SKIP_SUCCESS: no CQE on success, a CQE on failure", skip_success, Run::Child),
    ("FIXED_FILE: ops reach files through the registered table", fixed_files, Run::Child),
    ("unknown opcodes complete with -EINVAL; on io_uring each ends its submission, as on Linux", unknown_opcodes, Run::Child),
    ("unsupported SQE flag bits complete with -EINVAL and do nothing", bad_flag_bits, Run::Child),
    ("IOSQE_ASYNC is accepted: the op runs (inline, there are no workers yet)", async_flag, Run::Child),
    ("a chain with a member that fails prep runs nothing: that member gets its error, the others -ECANCELED", chain_fails_at_prep, Run::Child),
    ("CQE_SKIP_SUCCESS in a chain: a failed member's CQE is the only one (liburing skip-cqe.c)", skip_success_chain, Run::Child),
    ("ioprio: a valid priority on READ is accepted; an invalid one, or any on NOP, is -EINVAL; so is a personality", ioprio_and_personality, Run::Child),
];

fn link_success() -> TestResult {
    let (_name, mut file) = scratch_file("rt_link", b"")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let data = pattern(64, 9);
    let mut done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::write(fd, data.clone(), 0, 1).link(),
            AsyncOp::read(fd, vec![0; 64], 0, 2).link(),
            AsyncOp::fsync(fd, 3).link(),
            AsyncOp::nop(4),
        ],
        4,
    )?;
    detail!("{:?}", results(&done));
    let order: Vec<u64> = done.iter().map(|c| c.user_data).collect();
    check_eq!(order, [1, 2, 3, 4]);
    check_eq!(
        (
            done[0].result,
            done[1].result,
            done[2].result,
            done[3].result
        ),
        (64, 64, 0, 0)
    );
    check_eq!(done[1].take_buffer().unwrap_or_default(), data);
    check_eq!(contents(&mut file)?, data);
    Ok(())
}

fn link_failure() -> TestResult {
    let (_name, mut file) = scratch_file("rt_linkfail", b"original")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::nop(1).link(),
            AsyncOp::read(60, vec![0; 8], 0, 2).link(),
            AsyncOp::write(fd, b"CHANGED!".to_vec(), 0, 3).link(),
            AsyncOp::nop(4),
            AsyncOp::nop(5),
        ],
        5,
    )?;
    detail!("{:?}", results(&done));
    let get = |ud| done.iter().find(|c| c.user_data == ud).map(|c| c.result);
    check_eq!(get(1), Some(0));
    check_eq!(get(2), Some(-EBADF));
    check_eq!(get(3), Some(-ECANCELED));
    check_eq!(get(4), Some(-ECANCELED));
    check_eq!(get(5), Some(0));
    check_eq!(contents(&mut file)?, b"original");
    Ok(())
}

fn link_short_read() -> TestResult {
    let (_name, mut file) = scratch_file("rt_linkshort", b"0123456789")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let mut done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::read(fd, vec![0; 100], 0, 1).link(),
            AsyncOp::write(fd, b"XX".to_vec(), 0, 2),
        ],
        2,
    )?;
    detail!("{:?}", results(&done));
    check_eq!(done[0].user_data, 1);
    check_eq!(Res(done[0].result).0, 10);
    check_eq!(done[0].take_buffer().unwrap_or_default(), b"0123456789");
    check_eq!(Res(done[1].result).0, -ECANCELED);
    check_eq!(contents(&mut file)?, b"0123456789");
    // A read that fills its buffer exactly keeps the chain going.
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::read(fd, vec![0; 10], 0, 3).link(),
            AsyncOp::write(fd, b"XX".to_vec(), 0, 4),
        ],
        2,
    )?;
    check_eq!((done[0].result, done[1].result), (10, 2));
    Ok(())
}

fn hardlink() -> TestResult {
    let (_name, mut file) = scratch_file("rt_hardlink", b"before")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::read(60, vec![0; 8], 0, 1).hardlink(),
            AsyncOp::nop(2).hardlink(),
            AsyncOp::write(fd, b"after!".to_vec(), 0, 3),
        ],
        3,
    )?;
    detail!("{:?}", results(&done));
    let order: Vec<u64> = done.iter().map(|c| c.user_data).collect();
    check_eq!(order, [1, 2, 3]);
    check_eq!(
        (done[0].result, done[1].result, done[2].result),
        (-EBADF, 0, 6)
    );
    check_eq!(contents(&mut file)?, b"after!");
    Ok(())
}

fn drain() -> TestResult {
    let mut ctx = util::context()?;
    let start = sys::clock_ns()?;
    ctx.submit(AsyncOp::timeout(ms(30), 0, 0, 1))?;
    ctx.submit(AsyncOp::nop(2))?;
    ctx.submit(AsyncOp::nop(3).drain())?;
    ctx.flush()?;
    let first = ctx.get_completion();
    check_eq!(
        first.as_ref().map(|c| (c.user_data, c.result)),
        Some((2, 0))
    );
    check!(
        ctx.get_completion().is_none(),
        "something besides the plain NOP completed at once"
    );
    let rest = collect(&mut ctx, 2)?;
    let took = elapsed_ms(start)?;
    detail!("{:?} after {took} ms", results(&rest));
    check_eq!(
        (
            rest[0].user_data,
            rest[0].result,
            rest[1].user_data,
            rest[1].result
        ),
        (1, -ETIME, 3, 0)
    );
    check!(took >= 30, "the drained NOP finished after {took} ms");
    expect_no_more(&mut ctx)?;
    Ok(())
}

fn sqe(opcode: u8, flags: u8, fd: i32, user_data: u64) -> Sqe {
    Sqe {
        opcode,
        flags,
        fd,
        user_data,
        ..Sqe::default()
    }
}

fn skip_success() -> TestResult {
    let mut ring = util::ring(8)?;
    let skip = sqe_flags::CQE_SKIP_SUCCESS;
    for s in [
        sqe(op::NOP, skip, 0, 1),
        sqe(op::NOP, 0, 0, 2),
        sqe(op::FSYNC, skip, 60, 3),
        sqe(op::NOP, skip, 0, 4),
        sqe(op::NOP, 0, 0, 5),
    ] {
        raw::push(&mut ring, &s);
    }
    ring.publish();
    check_eq!(ring.enter(5, 3, abi::io_uring::enter_flags::GETEVENTS)?, 5);
    let got: Vec<(u64, Res)> = reap_ready(&mut ring)?
        .iter()
        .map(|c| (c.user_data, Res(c.res)))
        .collect();
    detail!("{got:?}");
    check_eq!(got.len(), 3);
    check_eq!((got[0].0, got[0].1 .0), (2, 0));
    check_eq!((got[1].0, got[1].1 .0), (3, -EBADF));
    check_eq!((got[2].0, got[2].1 .0), (5, 0));

    // Through the context: the skipped NOP stays in flight until a drain.
    let mut ctx = AsyncContext::from_ring(ring);
    ctx.submit(AsyncOp::nop(10).skip_success())?;
    ctx.submit(AsyncOp::nop(11))?;
    let done = collect(&mut ctx, 1)?;
    check_eq!(done[0].user_data, 11);
    expect_no_more(&mut ctx)?;
    check_eq!(ctx.in_flight(), 1);
    ctx.submit(AsyncOp::nop(12).drain())?;
    let done = collect(&mut ctx, 1)?;
    check_eq!(done[0].user_data, 12);
    check_eq!(ctx.in_flight(), 0);
    Ok(())
}

fn fixed_files() -> TestResult {
    let (_a, fa) = scratch_file("rt_fixa", b"")?;
    let (_b, fb) = scratch_file("rt_fixb", b"file b contents")?;
    let mut ctx = util::context()?;
    ctx.register_files(&[-1, fd_of(&fa), fd_of(&fb)])?;
    let mut done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::write(1, b"via slot 1".to_vec(), 0, 1).fixed_file(),
            AsyncOp::read(2, vec![0; 32], 0, 2).fixed_file(),
            AsyncOp::fsync(1, 3).fixed_file(),
        ],
        3,
    )?;
    detail!("{:?}", results(&done));
    check_eq!(
        (done[0].result, done[1].result, done[2].result),
        (10, 15, 0)
    );
    check_eq!(
        done[1].take_buffer().unwrap_or_default(),
        b"file b contents"
    );
    check_eq!(libuser::fs::read_to_vec("rt_fixa")?, b"via slot 1");
    // The registered file outlives its descriptor.
    let fd = fa.fd();
    drop(fa);
    check!(sys::fstat(fd).is_err(), "fd {fd} still open");
    let done = run_batch(
        &mut ctx,
        vec![AsyncOp::write(1, b"!".to_vec(), 10, 4).fixed_file()],
        1,
    )?;
    check_eq!(Res(done[0].result).0, 1);
    check_eq!(libuser::fs::read_to_vec("rt_fixa")?, b"via slot 1!");
    ctx.unregister_files()?;
    let done = run_batch(
        &mut ctx,
        vec![AsyncOp::read(2, vec![0; 4], 0, 5).fixed_file()],
        1,
    )?;
    check_eq!(Res(done[0].result).0, -EBADF);
    drop(fb);
    Ok(())
}

fn unknown_opcodes() -> TestResult {
    let mut ring = util::ring(16)?;
    let opcodes = [6u8, 7, 8, 9, 10, 13, 16, 17, 20, op::LAST, 100, 255];
    for (i, &opcode) in opcodes.iter().enumerate() {
        raw::push(&mut ring, &sqe(opcode, 0, 0, 0x0c0d_e000 + i as u64));
    }
    ring.publish();
    let n = opcodes.len() as u32;
    // io_uring stops a submission at an SQE that fails prep (that one
    // counted) and does not wait then, as Linux does: one SQE per enter.
    // The Ring API's doorbell takes everything published.
    let mut consumed = 0;
    let mut enters = 0;
    while consumed < n {
        let got = ring.enter(n - consumed, n, abi::io_uring::enter_flags::GETEVENTS)?;
        check!(
            got > 0,
            "enter consumed nothing with {} published",
            n - consumed
        );
        if util::backend() == util::Backend::IoUring {
            check_eq!(got, 1);
        }
        consumed += got;
        enters += 1;
    }
    detail!("{n} SQEs taken in {enters} enters");
    check_eq!(ring.sq_pending(), 0);
    for (i, cqe) in reap(&mut ring, opcodes.len())?.iter().enumerate() {
        check_eq!(cqe.user_data, 0x0c0d_e000 + i as u64);
        expect_err(&alloc::format!("opcode {}", opcodes[i]), cqe.res, &[EINVAL])?;
    }
    detail!("opcodes {opcodes:?}: all -EINVAL");
    Ok(())
}

fn bad_flag_bits() -> TestResult {
    let (_name, mut file) = scratch_file("rt_flagbits", b"keep")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    for bit in [sqe_flags::BUFFER_SELECT, 1 << 7] {
        check_eq!(bit & sqe_flags::SUPPORTED, 0);
        let done = run_batch(
            &mut ctx,
            vec![
                AsyncOp::nop(1).with_flags(bit),
                AsyncOp::write(fd, b"gone".to_vec(), 0, 2).with_flags(bit),
                AsyncOp::nop(3),
            ],
            3,
        )?;
        let get = |ud| done.iter().find(|c| c.user_data == ud).map(|c| c.result);
        check!(
            get(1) == Some(-EINVAL) && get(2) == Some(-EINVAL) && get(3) == Some(0),
            "flag {bit:#x}: {:?}",
            results(&done)
        );
    }
    check_eq!(contents(&mut file)?, b"keep");
    Ok(())
}

fn async_flag() -> TestResult {
    check!(
        sqe_flags::SUPPORTED & sqe_flags::ASYNC != 0,
        "IOSQE_ASYNC is not among the supported flags"
    );
    let (_name, mut file) = scratch_file("rt_async", b"")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::nop(1).with_flags(sqe_flags::ASYNC),
            AsyncOp::write(fd, b"async".to_vec(), 0, 2)
                .with_flags(sqe_flags::ASYNC)
                .link(),
            AsyncOp::fsync(fd, 3).with_flags(sqe_flags::ASYNC),
        ],
        3,
    )?;
    detail!("{:?}", results(&done));
    let get = |ud| done.iter().find(|c| c.user_data == ud).map(|c| c.result);
    check_eq!((get(1), get(2), get(3)), (Some(0), Some(5), Some(0)));
    check_eq!(contents(&mut file)?, b"async");
    Ok(())
}

fn chain_fails_at_prep() -> TestResult {
    let (_name, mut file) = scratch_file("rt_prepfail", b"original")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    // The WRITE would succeed; the NOP after it has an unknown flag bit.
    // Linux preps the whole chain before issuing any of it.
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::write(fd, b"CHANGED!".to_vec(), 0, 1).link(),
            AsyncOp::nop(2).with_flags(1 << 7).link(),
            AsyncOp::nop(3),
            AsyncOp::nop(4),
        ],
        4,
    )?;
    detail!("{:?}", results(&done));
    let get = |ud| done.iter().find(|c| c.user_data == ud).map(|c| c.result);
    check_eq!(get(1), Some(-ECANCELED));
    check_eq!(get(2), Some(-EINVAL));
    check_eq!(get(3), Some(-ECANCELED));
    check_eq!(get(4), Some(0));
    check_eq!(contents(&mut file)?, b"original");
    // An error Linux finds only at issue (a descriptor that is not open)
    // lets the members before it run.
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::write(fd, b"CHANGED!".to_vec(), 0, 5).link(),
            AsyncOp::read(60, vec![0; 4], 0, 6).link(),
            AsyncOp::nop(7),
        ],
        3,
    )?;
    detail!("{:?}", results(&done));
    let get = |ud| done.iter().find(|c| c.user_data == ud).map(|c| c.result);
    check_eq!(
        (get(5), get(6), get(7)),
        (Some(8), Some(-EBADF), Some(-ECANCELED))
    );
    check_eq!(contents(&mut file)?, b"CHANGED!");
    Ok(())
}

fn skip_success_chain() -> TestResult {
    let mut ring = util::ring(16)?;
    let skip = sqe_flags::CQE_SKIP_SUCCESS;
    let link = sqe_flags::IO_LINK;
    // skip-cqe.c's test_link_fail: six linked skip-success NOPs but the
    // last, the middle one failing at issue (FSYNC of a descriptor that is
    // not open): only its CQE, not the cancelled ones', the last included.
    for fail in [3u64, 5] {
        for i in 0..6u64 {
            let mut s = if i == fail {
                sqe(op::FSYNC, 0, 60, i)
            } else {
                sqe(op::NOP, 0, 0, i)
            };
            if i != 5 {
                s.flags = link | skip;
            }
            raw::push(&mut ring, &s);
        }
        ring.publish();
        check_eq!(ring.enter(6, 1, abi::io_uring::enter_flags::GETEVENTS)?, 6);
        let got: Vec<(u64, Res)> = reap_ready(&mut ring)?
            .iter()
            .map(|c| (c.user_data, Res(c.res)))
            .collect();
        detail!("failing member {fail}: {got:?}");
        check_eq!(got.len(), 1);
        check_eq!((got[0].0, got[0].1 .0), (fail, -EBADF));
    }
    // test_link_success: all skip-success, all succeed: nothing at all.
    for i in 0..6u64 {
        raw::push(&mut ring, &sqe(op::NOP, link | skip, 0, 10 + i));
    }
    ring.publish();
    check_eq!(ring.enter(6, 0, 0)?, 6);
    check_eq!(reap_ready(&mut ring)?.len(), 0);
    Ok(())
}

fn ioprio_and_personality() -> TestResult {
    use abi::io_uring::ioprio;
    let (_name, file) = scratch_file("rt_ioprio", b"abcd")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let prio = |class: u16, level: u16| (class << ioprio::CLASS_SHIFT) | level;
    let read = |value: u16, user_data| Sqe {
        opcode: op::READ,
        fd,
        // The kernel refuses these before touching the buffer, or reads
        // into it: a static the case does not otherwise use.
        addr: core::ptr::addr_of!(SINK) as u64,
        len: 0,
        ioprio: value,
        user_data,
        ..Sqe::default()
    };
    let mut ops = Vec::new();
    for (i, value) in [0, prio(ioprio::CLASS_BE, 7), prio(ioprio::CLASS_IDLE, 3)]
        .into_iter()
        .enumerate()
    {
        ops.push(raw::op(read(value, i as u64)));
    }
    for (i, value) in [
        prio(ioprio::CLASS_BE, 8),
        prio(ioprio::CLASS_NONE, 1),
        prio(5, 0),
    ]
    .into_iter()
    .enumerate()
    {
        ops.push(raw::op(read(value, 10 + i as u64)));
    }
    let mut nop = sqe(op::NOP, 0, 0, 20);
    nop.ioprio = 1;
    ops.push(raw::op(nop));
    let mut personal = sqe(op::NOP, 0, 0, 21);
    personal.personality = 1;
    ops.push(raw::op(personal));
    let done = run_batch(&mut ctx, ops, 8)?;
    detail!("{:?}", results(&done));
    let get = |ud| done.iter().find(|c| c.user_data == ud).map(|c| c.result);
    for ud in 0..3 {
        check_eq!(get(ud), Some(0));
    }
    for ud in [10, 11, 12, 20, 21] {
        check_eq!(get(ud), Some(-EINVAL));
    }
    Ok(())
}

/// Never read or written by the case itself.
static SINK: [u8; 8] = [0; 8];
