//! io_uring_register: buffers, files, probe, bad arguments.

use abi::errno::{EBADF, EBUSY, EFAULT, EINVAL, ENXIO, EOVERFLOW};
use abi::io_uring::{op, register, IoVec, Probe, ProbeOp, PROBE_OP_SUPPORTED};
use abi::layout::PAGE_SIZE;
use alloc::vec;
use alloc::vec::Vec;
use libuser::async_io::AsyncContext;
use libuser::test::TestResult;
use libuser::{check, check_eq, check_err, detail};

use crate::raw::{self, bad_places, read_only_places};
use crate::util::{self, fd_of, scratch_file};
use crate::{RingCase, Run};

#[rustfmt::skip]
pub const CASES: &[RingCase] = &[
    ("REGISTER_BUFFERS: twice is EBUSY, UNREGISTER with none is ENXIO, re-register works", buffers, Run::Child),
    ("REGISTER_BUFFERS refuses bad memory (EFAULT) and bad counts", bad_buffers, Run::Child),
    ("REGISTER_BUFFERS: a buffer with an address and length 0 is EFAULT (Linux), a sparse slot is fine", zero_length_buffer, Run::Child),
    ("REGISTER_FILES: twice is EBUSY, UNREGISTER with none is ENXIO, bad arguments fail", files, Run::Child),
    ("REGISTER_PROBE lists exactly the implemented opcodes", probe, Run::Child),
    ("io_uring_register with an unknown opcode fails with EINVAL", unknown_register, Run::Child),
];

fn iovec(buf: &mut [u8]) -> IoVec {
    IoVec {
        base: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
    }
}

fn buffers() -> TestResult {
    let ring = util::ring(8)?;
    let mut a = vec![0u8; 4096];
    let mut b = vec![0u8; 100];
    check_err!(
        ring.unregister_buffers(),
        ENXIO,
        "UNREGISTER_BUFFERS with none"
    );
    ring.register_buffers(&[iovec(&mut a), iovec(&mut b)])?;
    check_err!(
        ring.register_buffers(&[iovec(&mut b)]),
        EBUSY,
        "second REGISTER_BUFFERS"
    );
    ring.unregister_buffers()?;
    check_err!(
        ring.unregister_buffers(),
        ENXIO,
        "second UNREGISTER_BUFFERS"
    );
    ring.register_buffers(&[iovec(&mut b)])?;
    ring.unregister_buffers()?;

    // The context keeps them, and gives them back.
    let mut ctx = AsyncContext::from_ring(ring);
    ctx.register_buffers(vec![vec![1; 10], vec![2; 20]])?;
    check_err!(
        ctx.register_buffers(vec![vec![3; 5]]),
        EBUSY,
        "context: second register"
    );
    check_eq!(ctx.fixed_buffer(1)?, &[2; 20][..]);
    check_err!(ctx.fixed_buffer(2).map(drop), EINVAL, "buffer index 2");
    let back = ctx.unregister_buffers()?;
    check_eq!(back, vec![vec![1; 10], vec![2; 20]]);
    check_err!(
        ctx.unregister_buffers(),
        ENXIO,
        "context: second unregister"
    );
    Ok(())
}

fn bad_buffers() -> TestResult {
    let ring = util::ring(8)?;
    let mut good = vec![0u8; 4096];
    let mut places = Vec::from(bad_places());
    places.extend(read_only_places());
    for bad in &places {
        let iov = [
            iovec(&mut good),
            IoVec {
                base: bad.addr,
                len: 64,
            },
        ];
        let result = ring.register_buffers(&iov);
        if bad.what == "wrapping around" {
            // Linux (io_pin_pages) answers EOVERFLOW for a range that wraps.
            detail!("a buffer range wrapping around: {result:?}");
            check_err!(result, EFAULT | EOVERFLOW, "register a buffer {}", bad.what);
        } else {
            check_err!(result, EFAULT, "register a buffer at {}", bad.what);
        }
    }
    // A range running off the end of mapped memory.
    let stack_top = abi::layout::USER_STACK_TOP;
    let iov = [IoVec {
        base: stack_top - PAGE_SIZE,
        len: 2 * PAGE_SIZE,
    }];
    check_err!(
        ring.register_buffers(&iov),
        EFAULT,
        "register a buffer across the stack top"
    );
    // The iovec array itself unreadable.
    for bad in bad_places() {
        check_err!(
            raw::register_on(&ring, register::REGISTER_BUFFERS, bad.addr, 1),
            EFAULT,
            "iovec array at {}",
            bad.what
        );
    }
    // Counts and sizes.
    check_err!(
        ring.register_buffers(&[]),
        EINVAL,
        "REGISTER_BUFFERS with nr 0"
    );
    let many = vec![iovec(&mut good); register::MAX_BUFFERS as usize + 1];
    check_err!(
        ring.register_buffers(&many),
        EINVAL,
        "{} buffers",
        many.len()
    );
    let huge = [IoVec {
        base: good.as_ptr() as u64,
        len: register::MAX_BUFFER_LEN + 1,
    }];
    let err = ring.register_buffers(&huge);
    detail!("a buffer of 1 GiB + 1: {err:?}");
    check_err!(err, EINVAL | EFAULT, "a buffer of 1 GiB + 1");
    // Nothing was left half registered: a good registration works.
    let max = vec![iovec(&mut good); register::MAX_BUFFERS as usize];
    ring.register_buffers(&max)?;
    ring.unregister_buffers()?;
    detail!(
        "{} bad registrations refused, then {} buffers registered",
        places.len() + 9,
        max.len()
    );
    Ok(())
}

fn zero_length_buffer() -> TestResult {
    let ring = util::ring(8)?;
    let mut good = vec![0u8; 4096];
    let empty = IoVec {
        base: good.as_ptr() as u64,
        len: 0,
    };
    check_err!(
        ring.register_buffers(&[iovec(&mut good), empty]),
        EFAULT,
        "a buffer of length 0"
    );
    // Nothing stayed registered; a sparse slot (no address, no length) is
    // allowed.
    let sparse = IoVec { base: 0, len: 0 };
    ring.register_buffers(&[iovec(&mut good), sparse])?;
    ring.unregister_buffers()?;
    Ok(())
}

fn files() -> TestResult {
    let (_name, file) = scratch_file("rt_regfiles", b"x")?;
    let ring = util::ring(8)?;
    let fd = fd_of(&file);
    check_err!(ring.unregister_files(), ENXIO, "UNREGISTER_FILES with none");
    ring.register_files(&[fd, -1, fd])?;
    check_err!(ring.register_files(&[fd]), EBUSY, "second REGISTER_FILES");
    ring.unregister_files()?;
    check_err!(ring.unregister_files(), ENXIO, "second UNREGISTER_FILES");

    for bad in bad_places() {
        check_err!(
            raw::register_on(&ring, register::REGISTER_FILES, bad.addr, 2),
            EFAULT,
            "fd array at {}",
            bad.what
        );
    }
    check_err!(ring.register_files(&[]), EINVAL, "REGISTER_FILES with nr 0");
    let many = vec![-1; register::MAX_FILES as usize + 1];
    check_err!(ring.register_files(&many), EINVAL, "{} files", many.len());
    let unused = abi::syscall::limits::FDS_MAX as i32 - 1;
    check_err!(
        ring.register_files(&[fd, unused]),
        EBADF,
        "a closed fd in the table"
    );
    check_err!(ring.register_files(&[-2]), EBADF, "fd -2 in the table");
    // All refused; a good one still works.
    ring.register_files(&[-1, fd])?;
    ring.unregister_files()?;
    Ok(())
}

/// What the kernel implements: every opcode `abi` names.
const IMPLEMENTED: [u8; op::ALL.len()] = op::ALL;

#[repr(C)]
struct SmallProbe {
    header: Probe,
    ops: [ProbeOp; 4],
    guard: [ProbeOp; 4],
}

fn probe() -> TestResult {
    let ring = util::ring(8)?;
    let report = ring.probe()?;
    detail!(
        "last_op {}, {} entries, supported {:?}",
        report.last_op,
        report.ops.len(),
        report.supported()
    );
    check_eq!(report.supported(), IMPLEMENTED);
    check_eq!(report.last_op, op::LAST - 1);
    check_eq!(report.ops.len(), usize::from(op::LAST));
    for (i, entry) in report.ops.iter().enumerate() {
        check_eq!(usize::from(entry.op), i);
        check_eq!(entry.flags & !PROBE_OP_SUPPORTED, 0);
    }
    // With room for only 4 entries, the kernel fills 4 and no more.
    let mut small = SmallProbe {
        header: Probe::default(),
        ops: [ProbeOp::default(); 4],
        guard: [ProbeOp {
            resv2: 0xdead_beef,
            ..ProbeOp::default()
        }; 4],
    };
    raw::register_on(
        &ring,
        register::REGISTER_PROBE,
        core::ptr::from_mut(&mut small) as u64,
        4,
    )?;
    check_eq!(small.header.ops_len, 4);
    check!(
        small.ops.iter().all(|o| o.flags == PROBE_OP_SUPPORTED),
        "ops 0..4 are all implemented"
    );
    check!(
        small
            .guard
            .iter()
            .all(|o| o.resv2 == 0xdead_beef && o.flags == 0),
        "the kernel wrote past nr entries"
    );
    for bad in bad_places().into_iter().chain([raw::read_only_zeros()]) {
        check_err!(
            raw::register_on(&ring, register::REGISTER_PROBE, bad.addr, 4),
            EFAULT,
            "probe at {}",
            bad.what
        );
    }
    // As on Linux, the probe must come in zeroed: read-only memory that is
    // not zero is refused before anything is written.
    for bad in read_only_places() {
        check_err!(
            raw::register_on(&ring, register::REGISTER_PROBE, bad.addr, 4),
            EINVAL,
            "probe at {} (not zeroed)",
            bad.what
        );
    }
    let mut dirty = SmallProbe {
        header: Probe {
            resv: 1,
            ..Probe::default()
        },
        ops: [ProbeOp::default(); 4],
        guard: [ProbeOp::default(); 4],
    };
    check_err!(
        raw::register_on(
            &ring,
            register::REGISTER_PROBE,
            core::ptr::from_mut(&mut dirty) as u64,
            4
        ),
        EINVAL,
        "probe with a nonzero reserved field"
    );
    check!(
        raw::read_only_zeros_intact(),
        "the kernel wrote into read-only zeros"
    );
    check!(
        raw::read_only_data_intact(),
        "the kernel wrote into .rodata"
    );
    Ok(())
}

fn unknown_register() -> TestResult {
    let ring = util::ring(8)?;
    for opcode in [4, 5, 6, 7, 9, 10, 100, 1 << 31, u32::MAX] {
        check_err!(
            raw::register_on(&ring, opcode, 0, 0),
            EINVAL,
            "register opcode {opcode:#x}"
        );
    }
    Ok(())
}
