//! io_uring_setup: sizes, params, the mapping, slots, bad arguments; the
//! ring descriptor as a descriptor.

use abi::errno::{EBADF, EBUSY, EFAULT, EINVAL, EMFILE, EOPNOTSUPP};
use abi::io_uring::{
    enter_flags, features, header, op, register, ring_layout, setup_flags, IoUringParams, Sqe,
};
use abi::layout::{PAGE_SIZE, USER_IO_URING_BASE};
use alloc::vec::Vec;
use libuser::test::TestResult;
use libuser::uring::{self, IoUring, Queue};
use libuser::{check, check_eq, check_err, detail, fail, sys};

use crate::lifecycle::{compare, settle};
use crate::raw::{self, bad_places, read_only_places};
use crate::util::{reap, scratch_file};
use crate::{RingCase, Run};

#[rustfmt::skip]
pub const CASES: &[RingCase] = &[
    ("setup rounds entries up to a power of two, clamps at 256; CQ = min(2*SQ, 256)", sizes, Run::Child),
    ("setup with CQSIZE: CQ rounded and clamped, smaller than the SQ is EINVAL", cq_size, Run::Child),
    ("setup params: offsets from the mapping base, features, ring words, slot 0 address", params, Run::Child),
    ("a second ring maps at the next slot; a closed ring's slot is reused; rings are separate", slots, Run::Child),
    ("setup with a bad params pointer fails with EFAULT", bad_params_pointer, Run::Child),
    ("setup with entries 0, unknown flags, SQPOLL or nonzero resv fails with EINVAL; IOPOLL works", bad_setup_args, Run::Child),
    ("16 rings open at once: the 17th fails with EMFILE until one is closed", ring_limit, Run::Child),
    ("100 rings set up and closed in a row: each gets slot 0 back, no frames or heap leak", ring_churn, Run::Child),
    ("the ring fd: read/write fail, close works once and unmaps the ring, then enter/register fail with EBADF", ring_fd, Run::Child),
    ("a live IoUring owns its fd: close is EBUSY and the ring keeps working; after ring.close() the fd is EBADF", owned_fd, Run::Child),
    ("enter/register on a descriptor that is not a ring fail (EBADF/EOPNOTSUPP)", not_a_ring, Run::Child),
    ("enter with unknown flags fails with EINVAL and consumes nothing", enter_bad_flags, Run::Child),
];

fn expected_sq(entries: u32) -> u32 {
    u64::from(entries)
        .next_power_of_two()
        .min(u64::from(ring_layout::MAX_SQ_ENTRIES)) as u32
}

fn sizes() -> TestResult {
    for entries in [1, 2, 3, 5, 100, 128, 129, 255, 256, 257, 1000, u32::MAX] {
        let ring = IoUring::setup(entries, 0)?;
        let sq = expected_sq(entries);
        let cq = (2 * sq).min(ring_layout::MAX_CQ_ENTRIES);
        let p = *ring.params();
        check!(
            p.sq_entries == sq && p.cq_entries == cq,
            "entries {entries}: got sq {} cq {}, expected {sq} {cq}",
            p.sq_entries,
            p.cq_entries
        );
        let word = |q, w| ring.header_word(q, w);
        check_eq!(word(Queue::Submission, header::ENTRIES), Some(sq));
        check_eq!(word(Queue::Submission, header::MASK), Some(sq - 1));
        check_eq!(word(Queue::Completion, header::ENTRIES), Some(cq));
        check_eq!(word(Queue::Completion, header::MASK), Some(cq - 1));
        ring.close()?;
    }
    detail!("12 sizes from 1 to u32::MAX");
    Ok(())
}

fn with_cq(sq: u32, cq: u32) -> Result<IoUring, libuser::Errno> {
    IoUring::setup_with_params(
        sq,
        IoUringParams {
            flags: setup_flags::CQSIZE,
            cq_entries: cq,
            ..IoUringParams::default()
        },
    )
}

fn cq_size() -> TestResult {
    for (cq, want) in [(100, 128), (16, 16), (8, 8), (1000, 256)] {
        let ring = with_cq(8, cq)?;
        check!(
            ring.sq_entries() == 8 && ring.cq_entries() == want,
            "CQSIZE {cq}: got sq {} cq {}, expected 8 {want}",
            ring.sq_entries(),
            ring.cq_entries()
        );
        ring.close()?;
    }
    check_err!(with_cq(8, 4).map(drop), EINVAL, "CQSIZE 4 < 8 SQ entries");
    check_err!(with_cq(8, 0).map(drop), EINVAL, "CQSIZE 0");
    check_err!(
        with_cq(256, 128).map(drop),
        EINVAL,
        "CQSIZE 128 < 256 SQ entries"
    );
    Ok(())
}

fn params() -> TestResult {
    let mut p = IoUringParams::default();
    let fd = raw::setup_fd(32, &mut p)?;
    let ring = IoUring::setup(4, 0)?;
    sys::close_ring(fd)?;
    let sqw = |w: usize| (ring_layout::SQ_HEADER + 4 * w as u64) as u32;
    let cqw = |w: usize| (ring_layout::CQ_HEADER + 4 * w as u64) as u32;
    let (s, c) = (p.sq_off, p.cq_off);
    detail!(
        "fd {fd}: sq {} cq {} features {:#x} base {:#x}",
        p.sq_entries,
        p.cq_entries,
        p.features,
        s.user_addr
    );
    check_eq!((p.sq_entries, p.cq_entries), (32, 64));
    check_eq!(
        (
            s.head,
            s.tail,
            s.ring_mask,
            s.ring_entries,
            s.flags,
            s.dropped
        ),
        (
            sqw(header::HEAD),
            sqw(header::TAIL),
            sqw(header::MASK),
            sqw(header::ENTRIES),
            sqw(header::FLAGS),
            sqw(header::DROPPED)
        )
    );
    check_eq!(u64::from(s.array), ring_layout::SQ_ARRAY);
    check_eq!(
        (
            c.head,
            c.tail,
            c.ring_mask,
            c.ring_entries,
            c.overflow,
            c.flags
        ),
        (
            cqw(header::HEAD),
            cqw(header::TAIL),
            cqw(header::MASK),
            cqw(header::ENTRIES),
            cqw(header::OVERFLOW),
            cqw(header::FLAGS)
        )
    );
    check_eq!(u64::from(c.cqes), ring_layout::CQES);
    let all =
        features::SINGLE_MMAP | features::NODROP | features::SUBMIT_STABLE | features::RW_CUR_POS;
    check_eq!(p.features, all);
    check_eq!(s.user_addr, USER_IO_URING_BASE);
    check_eq!(c.user_addr, USER_IO_URING_BASE);
    check_eq!((p.flags, p.resv), (0, [0; 3]));
    // The second ring of this process: slot 1, same layout.
    let q = ring.params();
    check_eq!(
        q.sq_off.user_addr,
        USER_IO_URING_BASE + ring_layout::RING_SLOT_STRIDE
    );
    let mut same = q.sq_off;
    same.user_addr = s.user_addr;
    check_eq!(same, s);
    let mut same = q.cq_off;
    same.user_addr = c.user_addr;
    check_eq!(same, c);
    // Its words, read through the offsets, start as the contract says.
    let words: Vec<(Queue, usize, u32)> = [
        (Queue::Submission, header::HEAD, 0),
        (Queue::Submission, header::TAIL, 0),
        (Queue::Submission, header::MASK, 3),
        (Queue::Submission, header::ENTRIES, 4),
        (Queue::Submission, header::FLAGS, 0),
        (Queue::Submission, header::DROPPED, 0),
        (Queue::Completion, header::HEAD, 0),
        (Queue::Completion, header::TAIL, 0),
        (Queue::Completion, header::MASK, 7),
        (Queue::Completion, header::ENTRIES, 8),
        (Queue::Completion, header::OVERFLOW, 0),
    ]
    .into();
    for (queue, word, want) in words {
        check!(
            ring.header_word(queue, word) == Some(want),
            "{queue:?} word {word} = {:?}, expected {want}",
            ring.header_word(queue, word)
        );
    }
    Ok(())
}

fn nop_on(ring: &mut IoUring, user_data: u64) -> TestResult {
    let sqe = Sqe {
        opcode: op::NOP,
        user_data,
        ..Sqe::default()
    };
    check!(raw::push(ring, &sqe), "SQ full");
    ring.publish();
    check_eq!(ring.enter(1, 1, enter_flags::GETEVENTS)?, 1);
    Ok(())
}

fn slots() -> TestResult {
    let stride = ring_layout::RING_SLOT_STRIDE;
    let mut a = IoUring::setup(8, 0)?;
    let mut b = IoUring::setup(8, 0)?;
    check_eq!(a.base(), USER_IO_URING_BASE);
    check_eq!(b.base(), USER_IO_URING_BASE + stride);
    check!(a.fd() != b.fd(), "two rings share fd {}", a.fd());
    // A NOP on one ring completes on that ring only.
    nop_on(&mut a, 0xa)?;
    check_eq!((a.cq_ready(), b.cq_ready()), (1, 0));
    nop_on(&mut b, 0xb)?;
    nop_on(&mut b, 0xbb)?;
    check_eq!((a.cq_ready(), b.cq_ready()), (1, 2));
    check_eq!(a.pop_cqe().map(|c| c.user_data), Some(0xa));
    check_eq!(b.pop_cqe().map(|c| c.user_data), Some(0xb));
    a.close()?;
    let mut c = IoUring::setup(8, 0)?;
    detail!("after closing slot 0, the next ring is at {:#x}", c.base());
    check_eq!(c.base(), USER_IO_URING_BASE);
    let d = IoUring::setup(8, 0)?;
    check_eq!(d.base(), USER_IO_URING_BASE + 2 * stride);
    nop_on(&mut c, 0xc)?;
    check_eq!(c.pop_cqe().map(|c| c.user_data), Some(0xc));
    check_eq!(b.pop_cqe().map(|c| c.user_data), Some(0xbb));
    Ok(())
}

fn bad_params_pointer() -> TestResult {
    let mut places = Vec::from(bad_places());
    places.extend(read_only_places());
    for bad in &places {
        check_err!(
            raw::setup_at(8, bad.addr),
            EFAULT,
            "setup(params = {})",
            bad.what
        );
    }
    check!(
        raw::read_only_data_intact(),
        "the kernel wrote into .rodata"
    );
    // After all that, setup still works.
    let ring = IoUring::setup(8, 0)?;
    detail!(
        "{} bad params refused; the next ring is at {:#x}",
        places.len(),
        ring.base()
    );
    Ok(())
}

fn bad_setup_args() -> TestResult {
    check_err!(IoUring::setup(0, 0).map(drop), EINVAL, "setup(entries 0)");
    for flags in [
        setup_flags::SQPOLL,
        setup_flags::SQPOLL | setup_flags::SQ_AFF,
        1 << 5,
        1 << 12,
        1 << 31,
    ] {
        check_err!(
            IoUring::setup(8, flags).map(drop),
            EINVAL,
            "setup(flags {flags:#x})"
        );
    }
    // IOPOLL is accepted (its rings reap device I/O by polling).
    drop(IoUring::setup(8, setup_flags::IOPOLL)?);
    for i in 0..3 {
        let mut p = IoUringParams::default();
        p.resv[i] = 1;
        check_err!(
            IoUring::setup_with_params(8, p).map(drop),
            EINVAL,
            "setup(resv[{i}] = 1)"
        );
    }
    // None of these may have used a slot.
    let ring = IoUring::setup(8, 0)?;
    check_eq!(ring.base(), USER_IO_URING_BASE);
    Ok(())
}

fn ring_limit() -> TestResult {
    let max = ring_layout::MAX_RINGS_PER_PROCESS;
    let mut rings = Vec::new();
    for slot in 0..max {
        let ring = IoUring::setup(1, 0)?;
        check_eq!(
            ring.base(),
            USER_IO_URING_BASE + slot * ring_layout::RING_SLOT_STRIDE
        );
        rings.push(ring);
    }
    let err = IoUring::setup(1, 0).map(drop);
    detail!("ring {} of one process: {:?}", max + 1, err);
    check_err!(err, EMFILE, "ring {}", max + 1);
    // Closing one gives its slot back, and only its slot.
    let third = rings.remove(2);
    let base = third.base();
    third.close()?;
    let ring = IoUring::setup(1, 0)?;
    check_eq!(ring.base(), base);
    rings.push(ring);
    check_err!(
        IoUring::setup(1, 0).map(drop),
        EMFILE,
        "ring {} after closing one and opening one",
        max + 1
    );
    // The others still work, the new one too.
    nop_on(&mut rings[0], 1)?;
    nop_on(&mut rings[13], 2)?;
    if let Some(ring) = rings.last_mut() {
        nop_on(ring, 3)?;
    }
    Ok(())
}

fn ring_churn() -> TestResult {
    // Warm up the kernel heap's caches with one cycle first.
    IoUring::setup(8, 0)?.close()?;
    let before = settle()?;
    for round in 0..100 {
        let mut ring = IoUring::setup(8, 0)?;
        if ring.base() != USER_IO_URING_BASE {
            fail!("round {round}: a ring at {:#x}, not slot 0", ring.base());
        }
        nop_on(&mut ring, round)?;
        check_eq!(ring.pop_cqe().map(|c| c.user_data), Some(round));
        ring.close()?;
    }
    let after = settle()?;
    compare(&before, &after)?;
    // Every slot is free: the whole bound can be open at once.
    let rings: Vec<IoUring> = (0..ring_layout::MAX_RINGS_PER_PROCESS)
        .map(|_| IoUring::setup(1, 0))
        .collect::<Result<_, _>>()?;
    check_eq!(rings.len() as u64, ring_layout::MAX_RINGS_PER_PROCESS);
    Ok(())
}

fn ring_fd() -> TestResult {
    let mut ring = IoUring::setup(8, 0)?;
    let fd = ring.fd();
    let mut buf = [0u8; 8];
    check_err!(sys::read(fd, &mut buf), EINVAL | EBADF, "read(ring fd)");
    check_err!(sys::write(fd, b"x"), EINVAL | EBADF, "write(ring fd)");
    nop_on(&mut ring, 7)?;
    // The end of the mapping is unused CQE space: a syscall may write
    // there while the ring lives.
    let pid = sys::getpid()?;
    let end_of_mapping = ring.base() + ring_layout::SIZE - 64;
    raw::task_info_at(pid, end_of_mapping)?;
    let mapped = sys::sysinfo()?;
    // The `IoUring` owns the descriptor: it gives it up (and its views of
    // the ring with it) before the descriptor is closed under it.
    check_eq!(ring.into_raw_fd(), Some(fd));
    sys::close_ring(fd)?;
    let freed = sys::sysinfo()?;
    check_err!(sys::close_ring(fd), EBADF, "second close(ring fd)");
    check_err!(uring::enter(fd, 0, 0, 0), EBADF, "enter after close");
    check_err!(
        uring::enter(fd, 1, 1, enter_flags::GETEVENTS),
        EBADF,
        "enter(GETEVENTS) after close"
    );
    check_err!(
        raw::register(fd, register::REGISTER_PROBE, 0, 256),
        EBADF,
        "register(PROBE) after close"
    );
    check_err!(
        raw::register(fd, register::UNREGISTER_BUFFERS, 0, 0),
        EBADF,
        "register(UNREGISTER_BUFFERS) after close"
    );
    // The mapping went with the descriptor, and its memory with it: a
    // syscall that writes into it now gets EFAULT.
    check_err!(
        raw::task_info_at(pid, end_of_mapping),
        EFAULT,
        "a write into the closed ring's memory"
    );
    check!(
        freed.free_frames >= mapped.free_frames + ring_layout::SIZE / PAGE_SIZE,
        "closing the ring freed {} frames, not its {} pages",
        freed.free_frames.saturating_sub(mapped.free_frames),
        ring_layout::SIZE / PAGE_SIZE
    );
    // The descriptor number is free again.
    let (_name, file) = scratch_file("rt_ringfd", b"data")?;
    detail!("ring fd {fd}; the next open got fd {}", file.fd());
    check_eq!(file.fd(), fd);
    Ok(())
}

fn owned_fd() -> TestResult {
    let mut ring = IoUring::setup(8, 0)?;
    let fd = ring.fd();
    // Closing the descriptor would unmap the ring under `ring`: every safe
    // close refuses it and leaves it open.
    check_err!(
        sys::close_ring(fd),
        EBUSY,
        "close_ring(fd of a live IoUring)"
    );
    check_err!(sys::close(fd), EBUSY, "close(fd of a live IoUring)");
    check_err!(
        sys::raw::close(fd),
        EBUSY,
        "raw::close(fd of a live IoUring)"
    );
    check!(sys::raw::ring_fd_owned(fd), "fd {fd} not marked as owned");
    // Still open and mapped: a NOP goes round, its CQE read from the ring.
    nop_on(&mut ring, 0xb5)?;
    check_eq!(ring.pop_cqe().map(|c| c.user_data), Some(0xb5));
    // A ring descriptor no IoUring owns (a raw setup's) closes as ever.
    let mut p = IoUringParams::default();
    let unowned = raw::setup_fd(8, &mut p)?;
    check!(
        !sys::raw::ring_fd_owned(unowned),
        "raw setup's fd {unowned} marked as owned"
    );
    sys::close_ring(unowned)?;
    // The IoUring closes its own descriptor, which ends the ownership.
    ring.close()?;
    check!(
        !sys::raw::ring_fd_owned(fd),
        "fd {fd} still owned after close"
    );
    check_err!(sys::close_ring(fd), EBADF, "close_ring after ring.close()");
    check_err!(uring::enter(fd, 0, 0, 0), EBADF, "enter after ring.close()");
    // The number goes to the next ring, owned again; `into_raw_fd` hands
    // it out, and then it is the caller's to close, once.
    let next = IoUring::setup(8, 0)?;
    detail!("ring fd {fd}; the next ring got fd {}", next.fd());
    check_eq!(next.fd(), fd);
    check_err!(
        sys::close_ring(fd),
        EBUSY,
        "close_ring(fd of the next ring)"
    );
    check_eq!(next.into_raw_fd(), Some(fd));
    sys::close_ring(fd)?;
    check_err!(
        sys::close_ring(fd),
        EBADF,
        "second close_ring after into_raw_fd"
    );
    Ok(())
}

fn not_a_ring() -> TestResult {
    let (_name, file) = scratch_file("rt_notring", b"data")?;
    for fd in [abi::fd::STDOUT, file.fd()] {
        check_err!(
            uring::enter(fd, 0, 0, 0),
            EBADF | EOPNOTSUPP,
            "enter(fd {fd})"
        );
        check_err!(
            raw::register(fd, register::UNREGISTER_FILES, 0, 0),
            EBADF | EOPNOTSUPP,
            "register(fd {fd})"
        );
    }
    let unused = abi::syscall::limits::FDS_MAX as u64 - 1;
    for fd in [
        unused,
        abi::syscall::limits::FDS_MAX as u64,
        1 << 32,
        u64::MAX,
    ] {
        check_err!(uring::enter(fd, 0, 0, 0), EBADF, "enter(fd {fd:#x})");
        check_err!(
            raw::register(fd, register::UNREGISTER_FILES, 0, 0),
            EBADF,
            "register(fd {fd:#x})"
        );
    }
    Ok(())
}

fn enter_bad_flags() -> TestResult {
    let mut ring = IoUring::setup(8, 0)?;
    let sqe = Sqe {
        opcode: op::NOP,
        user_data: 5,
        ..Sqe::default()
    };
    raw::push(&mut ring, &sqe);
    ring.publish();
    // 1 << 3 is Linux's EXT_ARG, not implemented; 1 << 4 (REGISTERED_RING) is known.
    for flags in [1 << 3, 1 << 5, 1 << 31, u32::MAX] {
        check_err!(ring.enter(1, 0, flags), EINVAL, "enter(flags {flags:#x})");
        check_eq!(ring.sq_pending(), 1);
        check_eq!(ring.cq_ready(), 0);
    }
    check_eq!(ring.enter(1, 1, enter_flags::GETEVENTS)?, 1);
    check_eq!(reap(&mut ring, 1)?[0].user_data, 5);
    Ok(())
}
