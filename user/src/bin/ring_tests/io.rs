//! Every I/O op's success path and failure paths: READ/WRITE(V) at offsets
//! and at the current position, fixed buffers, FSYNC, OPENAT/CLOSE, STATX.

use abi::errno::{EBADF, EEXIST, EFAULT, EINVAL, ENOENT};
use abi::io_uring::{IoVec, STATX_BASIC};
use abi::open_flags::{O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY};
use abi::seek::{SEEK_CUR, SEEK_SET};
use alloc::vec;
use alloc::vec::Vec;
use libuser::async_io::{AsyncOp, AT_FDCWD, CURRENT_POSITION};
use libuser::fs::File;
use libuser::test::TestResult;
use libuser::{check, check_eq, check_err, detail, sys};

use crate::raw::{self, bad_destinations, bad_places};
use crate::util::{
    self, collect, contents, expect_err, expect_no_more, fd_of, pattern, run_batch, scratch_file,
    Res, Scratch,
};
use crate::{RingCase, Run};

#[rustfmt::skip]
pub const CASES: &[RingCase] = &[
    ("WRITE then READ at explicit offsets round-trip data and keep the position", rw_offsets, Run::Child),
    ("READ/WRITE at the current position (off = -1) advance it", rw_current, Run::Child),
    ("WRITEV/READV gather and scatter at an offset", vectored_offsets, Run::Child),
    ("WRITEV/READV at the current position advance it", vectored_current, Run::Child),
    ("a READ at end of file is short and truncates the returned buffer; past the end reads 0", short_reads, Run::Child),
    ("READ_FIXED/WRITE_FIXED move data through registered buffers, busy while in flight", fixed_buffers, Run::Child),
    ("FSYNC completes with 0", fsync, Run::Child),
    ("OPENAT creates and opens, CLOSE releases the descriptor, O_EXCL gives -EEXIST", open_close, Run::Child),
    ("STATX agrees with fstat (size, inode)", statx, Run::Child),
    ("OPENAT and STATX of a missing file complete with -ENOENT", missing_files, Run::Child),
    ("ops on bad descriptors complete with -EBADF", bad_fds, Run::Child),
    ("bad buffer pointers complete with -EFAULT and change nothing", bad_buffers, Run::Child),
    ("READ on a write-only fd and WRITE on a read-only fd complete with -EBADF", access_modes, Run::Child),
    ("OPENAT with a bad path pointer gives -EFAULT, unknown flags -EINVAL", bad_open, Run::Child),
    ("fixed buffers: ranges outside the registered buffer and bad indices fail", fixed_out_of_range, Run::Child),
    ("fixed files: a bad index or an empty slot completes with -EBADF", fixed_file_bad, Run::Child),
];

fn rw_offsets() -> TestResult {
    let (_name, mut file) = scratch_file("rt_rwoff", b"")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let a = pattern(100, 1);
    let b = pattern(50, 2);
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::write(fd, a.clone(), 0, 1),
            AsyncOp::write(fd, b.clone(), 200, 2),
        ],
        2,
    )?;
    for c in &done {
        check!(
            c.result == if c.user_data == 1 { 100 } else { 50 },
            "write {}: {}",
            c.user_data,
            Res(c.result)
        );
    }
    check_eq!(file.stat()?.size, 250);
    check_eq!(file.seek(0, SEEK_CUR)?, 0);
    let mut done = run_batch(&mut ctx, vec![AsyncOp::read(fd, vec![0xee; 300], 0, 3)], 1)?;
    check_eq!(Res(done[0].result).0, 250);
    let data = done[0].take_buffer().unwrap_or_default();
    check_eq!(data.len(), 250);
    check!(data[..100] == a[..], "bytes 0..100 differ");
    check!(
        data[100..200].iter().all(|&x| x == 0),
        "the hole is not zeros"
    );
    check!(data[200..] == b[..], "bytes 200..250 differ");
    check_eq!(file.seek(0, SEEK_CUR)?, 0);
    check_eq!(contents(&mut file)?, data);
    detail!("250 bytes written at 0 and 200, read back; position stays 0");
    Ok(())
}

fn rw_current() -> TestResult {
    let (_name, mut file) = scratch_file("rt_rwcur", b"")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let data = pattern(90, 3);
    for (i, chunk) in data.chunks(30).enumerate() {
        let done = run_batch(
            &mut ctx,
            vec![AsyncOp::write(
                fd,
                chunk.to_vec(),
                CURRENT_POSITION,
                i as u64,
            )],
            1,
        )?;
        check_eq!(Res(done[0].result).0, 30);
        check_eq!(file.seek(0, SEEK_CUR)?, 30 * (i as u64 + 1));
    }
    check_eq!(contents(&mut file)?, data);
    file.seek(5, SEEK_SET)?;
    let mut done = run_batch(
        &mut ctx,
        vec![AsyncOp::read(fd, vec![0; 10], CURRENT_POSITION, 9)],
        1,
    )?;
    check_eq!(Res(done[0].result).0, 10);
    check_eq!(done[0].take_buffer().unwrap_or_default(), data[5..15]);
    check_eq!(file.seek(0, SEEK_CUR)?, 15);
    // Linked so they run in order: two reads continue from the position.
    let mut done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::read(fd, vec![0; 20], CURRENT_POSITION, 10).link(),
            AsyncOp::read(fd, vec![0; 20], CURRENT_POSITION, 11),
        ],
        2,
    )?;
    check_eq!(done[0].take_buffer().unwrap_or_default(), data[15..35]);
    check_eq!(done[1].take_buffer().unwrap_or_default(), data[35..55]);
    check_eq!(file.seek(0, SEEK_CUR)?, 55);
    Ok(())
}

fn vectored_offsets() -> TestResult {
    let (_name, mut file) = scratch_file("rt_vecoff", &[b'.'; 40])?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let parts: Vec<Vec<u8>> = vec![b"hello ".to_vec(), b"vectored ".to_vec(), b"world".to_vec()];
    let mut done = run_batch(&mut ctx, vec![AsyncOp::writev(fd, parts.clone(), 10, 1)], 1)?;
    check_eq!(Res(done[0].result).0, 20);
    check_eq!(done[0].take_buffers(), parts);
    let mut want = vec![b'.'; 40];
    want[10..30].copy_from_slice(b"hello vectored world");
    check_eq!(contents(&mut file)?, want);
    check_eq!(file.seek(0, SEEK_CUR)?, 0);

    let mut done = run_batch(
        &mut ctx,
        vec![AsyncOp::readv(
            fd,
            vec![vec![0; 3], vec![0; 7], vec![0; 100]],
            10,
            2,
        )],
        1,
    )?;
    check_eq!(Res(done[0].result).0, 30);
    let bufs = done[0].take_buffers();
    check_eq!(bufs[0], b"hel");
    check_eq!(bufs[1], b"lo vect");
    check_eq!(bufs[2][..20], *b"ored world..........");
    check!(
        bufs[2][20..].iter().all(|&x| x == 0),
        "READV wrote past the data"
    );
    check_eq!(file.seek(0, SEEK_CUR)?, 0);
    Ok(())
}

fn vectored_current() -> TestResult {
    let (_name, mut file) = scratch_file("rt_veccur", b"")?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    for round in 0..2u8 {
        let parts = vec![pattern(5, round), pattern(11, round + 10)];
        let done = run_batch(
            &mut ctx,
            vec![AsyncOp::writev(fd, parts, CURRENT_POSITION, 1)],
            1,
        )?;
        check_eq!(Res(done[0].result).0, 16);
        check_eq!(file.seek(0, SEEK_CUR)?, 16 * (u64::from(round) + 1));
    }
    let all = contents(&mut file)?;
    check_eq!(all.len(), 32);
    file.seek(4, SEEK_SET)?;
    let mut done = run_batch(
        &mut ctx,
        vec![AsyncOp::readv(
            fd,
            vec![vec![0; 8], vec![0; 8]],
            CURRENT_POSITION,
            2,
        )],
        1,
    )?;
    check_eq!(Res(done[0].result).0, 16);
    let bufs = done[0].take_buffers();
    check_eq!(bufs.concat(), all[4..20]);
    check_eq!(file.seek(0, SEEK_CUR)?, 20);
    Ok(())
}

fn short_reads() -> TestResult {
    let data = pattern(100, 4);
    let (_name, file) = scratch_file("rt_short", &data)?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let mut done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::read(fd, vec![0; 64], 90, 1),
            AsyncOp::read(fd, vec![0; 64], 100, 2),
            AsyncOp::read(fd, vec![0; 64], 5000, 3),
            AsyncOp::read(fd, Vec::new(), 0, 4),
        ],
        4,
    )?;
    let got: Vec<(u64, Res)> = done.iter().map(|c| (c.user_data, Res(c.result))).collect();
    detail!("{got:?}");
    check_eq!(
        (
            done[0].result,
            done[1].result,
            done[2].result,
            done[3].result
        ),
        (10, 0, 0, 0)
    );
    check_eq!(done[0].take_buffer().unwrap_or_default(), data[90..]);
    check_eq!(done[1].take_buffer().map(|b| b.len()), Some(0));
    Ok(())
}

fn fixed_buffers() -> TestResult {
    let (_name, mut file) = scratch_file("rt_fixed", &[0u8; 64])?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let source = pattern(4096, 5);
    ctx.register_buffers(vec![source.clone(), vec![0; 4096], vec![0; 100]])?;
    ctx.submit(AsyncOp::write_fixed(fd, 0, 100, 1000, 0, 1))?;
    check_err!(
        ctx.fixed_buffer(0).map(drop),
        abi::errno::EBUSY,
        "buffer 0 while WRITE_FIXED is queued"
    );
    check!(ctx.fixed_buffer(1).is_ok(), "buffer 1 is not in use");
    let done = collect(&mut ctx, 1)?;
    check_eq!(Res(done[0].result).0, 1000);
    check_eq!(contents(&mut file)?[..1000], source[100..1100]);
    check!(
        ctx.fixed_buffer(0).is_ok(),
        "buffer 0 still busy after its completion"
    );

    ctx.submit(AsyncOp::read_fixed(fd, 1, 50, 1000, 0, 2))?;
    ctx.flush()?;
    check_err!(
        ctx.fixed_buffer_mut(1).map(drop),
        abi::errno::EBUSY,
        "buffer 1 before its CQE is taken"
    );
    let done = collect(&mut ctx, 1)?;
    check_eq!(Res(done[0].result).0, 1000);
    let read = ctx.fixed_buffer(1)?;
    check!(
        read[50..1050] == source[100..1100],
        "READ_FIXED data differs"
    );
    check!(
        read[..50].iter().chain(&read[1050..]).all(|&x| x == 0),
        "READ_FIXED wrote outside its range"
    );

    // Through the current position too, and filling the whole small buffer.
    file.seek(10, SEEK_SET)?;
    let done = run_batch(
        &mut ctx,
        vec![AsyncOp::read_fixed(fd, 2, 0, 100, CURRENT_POSITION, 3)],
        1,
    )?;
    check_eq!(Res(done[0].result).0, 100);
    check_eq!(ctx.fixed_buffer(2)?, &source[110..210]);
    check_eq!(file.seek(0, SEEK_CUR)?, 110);
    let back = ctx.unregister_buffers()?;
    check_eq!(back.len(), 3);
    check_eq!(back[0], source);
    Ok(())
}

fn fsync() -> TestResult {
    let (_name, file) = scratch_file("rt_fsync", b"sync me")?;
    let mut ctx = util::context()?;
    let done = run_batch(&mut ctx, vec![AsyncOp::fsync(fd_of(&file), 1)], 1)?;
    check_eq!(Res(done[0].result).0, 0);
    Ok(())
}

fn open_close() -> TestResult {
    let name = Scratch("rt_openat");
    let _ = sys::unlink(name.0);
    let mut ctx = util::context()?;
    let done = run_batch(
        &mut ctx,
        vec![AsyncOp::openat(AT_FDCWD, name.0, O_RDWR | O_CREAT, 1)],
        1,
    )?;
    let fd = done[0].result;
    detail!("OPENAT(O_CREAT) -> fd {}", Res(fd));
    check!(fd >= 3, "OPENAT returned {}", Res(fd));
    check_eq!(sys::write(fd as u64, b"opened by the ring")?, 18);
    check_eq!(sys::fstat(fd as u64)?.size, 18);

    let done = run_batch(&mut ctx, vec![AsyncOp::close(fd, 2)], 1)?;
    check_eq!(Res(done[0].result).0, 0);
    check_err!(sys::write(fd as u64, b"x"), EBADF, "write after CLOSE");
    let done = run_batch(&mut ctx, vec![AsyncOp::close(fd, 3)], 1)?;
    check_eq!(Res(done[0].result).0, -EBADF);

    let mut done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::openat(AT_FDCWD, name.0, O_RDONLY, 4).link(),
            AsyncOp::read(fd, vec![0; 64], 0, 5),
        ],
        2,
    )?;
    check_eq!(Res(done[0].result).0, fd);
    check_eq!(
        done[1].take_buffer().unwrap_or_default(),
        b"opened by the ring"
    );
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::openat(AT_FDCWD, name.0, O_RDWR | O_CREAT | O_EXCL, 6),
            AsyncOp::close(fd, 7),
        ],
        2,
    )?;
    check_eq!(Res(done[0].result).0, -EEXIST);
    check_eq!(Res(done[1].result).0, 0);
    Ok(())
}

fn statx() -> TestResult {
    let (name, file) = scratch_file("rt_statx", &pattern(1234, 6))?;
    let stat = file.stat()?;
    let mut ctx = util::context()?;
    let done = run_batch(
        &mut ctx,
        vec![AsyncOp::statx(AT_FDCWD, name.0, 0, STATX_BASIC, 1)],
        1,
    )?;
    check_eq!(Res(done[0].result).0, 0);
    let Some(st) = done[0].statx() else {
        libuser::fail!("no statx in the completion");
    };
    detail!(
        "statx: mask {:#x} size {} ino {} nlink {} mode {:#o} blocks {}; fstat size {} ino {}",
        st.mask,
        st.size,
        st.ino,
        st.nlink,
        st.mode,
        st.blocks,
        stat.size,
        stat.ino
    );
    check_eq!((st.size, st.ino), (stat.size, stat.ino));
    check!(st.mask != 0, "statx mask is 0");
    Ok(())
}

fn missing_files() -> TestResult {
    let mut ctx = util::context()?;
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::openat(AT_FDCWD, "rt_no_such_file", O_RDONLY, 1),
            AsyncOp::statx(AT_FDCWD, "rt_no_such_file", 0, STATX_BASIC, 2),
            AsyncOp::openat(AT_FDCWD, "", O_RDONLY, 3),
        ],
        3,
    )?;
    check_eq!(Res(done[0].result).0, -ENOENT);
    check_eq!(Res(done[1].result).0, -ENOENT);
    check_eq!(Res(done[2].result).0, -ENOENT);
    Ok(())
}

fn bad_fds() -> TestResult {
    let mut ctx = util::context()?;
    let unused = abi::syscall::limits::FDS_MAX as i32 - 1;
    for fd in [unused, 64, 1000, -1, AT_FDCWD, i32::MIN] {
        let done = run_batch(
            &mut ctx,
            vec![
                AsyncOp::read(fd, vec![0; 8], 0, 1),
                AsyncOp::write(fd, vec![1; 8], 0, 2),
                AsyncOp::readv(fd, vec![vec![0; 8]], 0, 3),
                AsyncOp::writev(fd, vec![vec![1; 8]], 0, 4),
                AsyncOp::fsync(fd, 5),
                AsyncOp::close(fd, 6),
                AsyncOp::read(fd, vec![0; 8], CURRENT_POSITION, 7),
            ],
            7,
        )?;
        for c in &done {
            expect_err(
                &alloc::format!("op {} on fd {fd}", c.user_data),
                c.result,
                &[EBADF],
            )?;
        }
    }
    Ok(())
}

fn bad_buffers() -> TestResult {
    let data = pattern(256, 7);
    let (_name, mut file) = scratch_file("rt_badbuf", &data)?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    let mut count = 0;
    for bad in bad_destinations() {
        let mut ops = vec![
            raw::read_at(fd, bad.addr, 64, 0, 1),
            raw::read_at(fd, bad.addr, 64, CURRENT_POSITION, 2),
        ];
        // A valid iovec array naming the bad buffer, and a bad array.
        let iov = vec![IoVec {
            base: bad.addr,
            len: 64,
        }];
        ops.push(raw::vectored_at(false, fd, iov.as_ptr() as u64, 1, 3));
        if bad.what.starts_with("read-only") {
            // Fine to write from: only check it is not written to.
        } else {
            ops.push(raw::write_at(fd, bad.addr, 64, 0, 4));
            ops.push(raw::vectored_at(true, fd, iov.as_ptr() as u64, 1, 5));
            ops.push(raw::vectored_at(false, fd, bad.addr, 1, 6));
            ops.push(raw::vectored_at(true, fd, bad.addr, 1, 7));
        }
        let n = ops.len();
        let done = run_batch(&mut ctx, ops, n)?;
        drop(iov);
        for c in &done {
            expect_err(
                &alloc::format!("op {} with {}", c.user_data, bad.what),
                c.result,
                &[EFAULT],
            )?;
        }
        count += n;
    }
    detail!("{count} ops with bad buffers, all -EFAULT");
    check!(
        raw::read_only_data_intact(),
        "the kernel wrote into .rodata"
    );
    check_eq!(file.seek(0, SEEK_CUR)?, 0);
    check_eq!(contents(&mut file)?, data);
    Ok(())
}

fn access_modes() -> TestResult {
    let (name, _file) = scratch_file("rt_modes", b"0123456789")?;
    let wo = File::open(name.0, O_WRONLY)?;
    let ro = File::open(name.0, O_RDONLY)?;
    let mut ctx = util::context()?;
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::read(fd_of(&wo), vec![0; 4], 0, 1),
            AsyncOp::readv(fd_of(&wo), vec![vec![0; 4]], 0, 2),
            AsyncOp::write(fd_of(&ro), vec![b'x'; 4], 0, 3),
            AsyncOp::writev(fd_of(&ro), vec![vec![b'x'; 4]], 0, 4),
        ],
        4,
    )?;
    for c in &done {
        expect_err(&alloc::format!("op {}", c.user_data), c.result, &[EBADF])?;
    }
    check_eq!(libuser::fs::read_to_vec(name.0)?, b"0123456789");
    Ok(())
}

fn bad_open() -> TestResult {
    let mut ctx = util::context()?;
    for bad in bad_places() {
        let sqe = abi::io_uring::Sqe {
            opcode: abi::io_uring::op::OPENAT,
            fd: AT_FDCWD,
            addr: bad.addr,
            op_flags: O_RDONLY as u32,
            user_data: 1,
            ..Default::default()
        };
        let done = run_batch(&mut ctx, vec![raw::op(sqe)], 1)?;
        expect_err(
            &alloc::format!("OPENAT path at {}", bad.what),
            done[0].result,
            &[EFAULT],
        )?;
    }
    let name = Scratch("rt_badflags");
    let done = run_batch(
        &mut ctx,
        vec![AsyncOp::openat(AT_FDCWD, name.0, O_CREAT | 0x4000_0000, 2)],
        1,
    )?;
    check_eq!(Res(done[0].result).0, -EINVAL);
    check_err!(
        sys::open(name.0, O_RDONLY),
        ENOENT,
        "the file OPENAT refused to create"
    );
    Ok(())
}

fn fixed_out_of_range() -> TestResult {
    let (_name, mut file) = scratch_file("rt_fixoob", &pattern(512, 8))?;
    let fd = fd_of(&file);
    let mut ctx = util::context()?;
    // Fixed ops before anything is registered.
    let done = run_batch(&mut ctx, vec![AsyncOp::read_fixed(fd, 0, 0, 16, 0, 1)], 1)?;
    detail!(
        "READ_FIXED with nothing registered: {}",
        Res(done[0].result)
    );
    expect_err(
        "READ_FIXED with no buffers",
        done[0].result,
        &[EFAULT, EINVAL],
    )?;

    ctx.register_buffers(vec![vec![0; 4096], vec![0; 256]])?;
    let base0 = ctx.fixed_buffer(0)?.as_ptr() as u64;
    let base1 = ctx.fixed_buffer(1)?.as_ptr() as u64;
    let ops = vec![
        AsyncOp::read_fixed(fd, 0, 4000, 200, 0, 10), // runs off the end
        AsyncOp::read_fixed(fd, 0, 4096, 1, 0, 11),   // starts at the end
        AsyncOp::write_fixed(fd, 1, 200, 100, 0, 12), // runs off the end
        raw::fixed_at(false, fd, 0, base0 - 1, 16, 13), // starts before
        raw::fixed_at(false, fd, 1, base0, 16, 14),   // buffer 0's memory, index 1
        raw::fixed_at(true, fd, 0, base1, 16, 15),    // buffer 1's memory, index 0
        raw::fixed_at(false, fd, 0, base0 + 4000, u32::MAX, 16),
    ];
    let done = run_batch(&mut ctx, ops, 7)?;
    for c in &done {
        expect_err(
            &alloc::format!("fixed op {}", c.user_data),
            c.result,
            &[EFAULT],
        )?;
    }
    let done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::read_fixed(fd, 2, 0, 16, 0, 20),
            raw::fixed_at(false, fd, 2, base0, 16, 21),
            raw::fixed_at(false, fd, u16::MAX, base0, 16, 22),
        ],
        3,
    )?;
    for c in &done {
        detail!(
            "fixed op {} with a bad index: {}",
            c.user_data,
            Res(c.result)
        );
        expect_err(
            &alloc::format!("fixed op {}", c.user_data),
            c.result,
            &[EFAULT, EINVAL],
        )?;
    }
    check!(
        ctx.fixed_buffer(0)?.iter().all(|&x| x == 0),
        "buffer 0 was written"
    );
    check!(
        ctx.fixed_buffer(1)?.iter().all(|&x| x == 0),
        "buffer 1 was written"
    );
    check_eq!(contents(&mut file)?, pattern(512, 8));
    Ok(())
}

fn fixed_file_bad() -> TestResult {
    let (_name, file) = scratch_file("rt_fixfile", b"data")?;
    let mut ctx = util::context()?;
    let done = run_batch(
        &mut ctx,
        vec![AsyncOp::read(0, vec![0; 4], 0, 1).fixed_file()],
        1,
    )?;
    check_eq!(Res(done[0].result).0, -EBADF);
    ctx.register_files(&[fd_of(&file), -1])?;
    let mut done = run_batch(
        &mut ctx,
        vec![
            AsyncOp::read(0, vec![0; 4], 0, 2).fixed_file(),
            AsyncOp::read(1, vec![0; 4], 0, 3).fixed_file(),
            AsyncOp::read(2, vec![0; 4], 0, 4).fixed_file(),
            AsyncOp::read(-1, vec![0; 4], 0, 5).fixed_file(),
            AsyncOp::write(1000, vec![0; 4], 0, 6).fixed_file(),
        ],
        5,
    )?;
    check_eq!(Res(done[0].result).0, 4);
    check_eq!(done[0].take_buffer().unwrap_or_default(), b"data");
    for c in &done[1..] {
        expect_err(
            &alloc::format!("fixed file op {}", c.user_data),
            c.result,
            &[EBADF],
        )?;
    }
    expect_no_more(&mut ctx)?;
    Ok(())
}
