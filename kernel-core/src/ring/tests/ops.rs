//! Every op against [`MockEnv`], success and failure paths.

use abi::errno::*;
use abi::io_uring::{op, register, sqe_flags, Sqe, IOV_MAX, STATX_BASIC};
use abi::open_flags::{O_CREAT, O_RDONLY, O_RDWR, O_WRONLY};

use super::*;
use crate::ring::ops::AT_FDCWD;
use crate::ring::IoEnv;

const BUF: u64 = MEM + 0x100;
const PATH: u64 = MEM + 0x2000;
const IOV: u64 = MEM + 0x3000;

fn read(fd: i32, addr: u64, len: u32, off: u64) -> Sqe {
    rw(op::READ, fd, addr, len, off, 1)
}

fn write(fd: i32, addr: u64, len: u32, off: u64) -> Sqe {
    rw(op::WRITE, fd, addr, len, off, 2)
}

fn put_path(h: &mut Harness, path: &[u8]) {
    h.env.write_user(PATH, path).unwrap();
    h.env.write_user(PATH + path.len() as u64, &[0]).unwrap();
}

fn put_iovecs(h: &mut Harness, iovecs: &[(u64, u64)]) {
    for (i, (base, len)) in iovecs.iter().enumerate() {
        let at = IOV + 16 * i as u64;
        h.env.write_user(at, &base.to_le_bytes()).unwrap();
        h.env.write_user(at + 8, &len.to_le_bytes()).unwrap();
    }
}

#[test]
fn nop() {
    let mut h = Harness::new(4, 8);
    assert_eq!(h.res(super::nop(7)), 0);
    let mut bad = super::nop(8);
    bad.op_flags = 1;
    assert_eq!(h.res(bad), -EINVAL);
}

#[test]
fn read_at_offset_and_at_position() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"0123456789").unwrap();
    assert_eq!(h.res(read(fd, BUF, 4, 3)), 4);
    assert_eq!(h.env.peek(BUF, 4).unwrap(), b"3456");
    assert_eq!(h.env.fd_offset(fd), Some(0), "pread leaves the position");
    // -1: the file position, which moves.
    assert_eq!(h.res(read(fd, BUF, 4, u64::MAX)), 4);
    assert_eq!(h.res(read(fd, BUF, 4, u64::MAX)), 4);
    assert_eq!(h.env.peek(BUF, 4).unwrap(), b"4567");
    assert_eq!(h.env.fd_offset(fd), Some(8));
    // Short at the end of the file; 0 past it.
    assert_eq!(h.res(read(fd, BUF, 4, u64::MAX)), 2);
    assert_eq!(h.res(read(fd, BUF, 4, 100)), 0);
    assert_eq!(h.res(read(fd, BUF, 0, 0)), 0);
}

#[test]
fn read_failures() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"data").unwrap();
    assert_eq!(h.res(read(99, BUF, 4, 0)), -EBADF);
    assert_eq!(h.res(read(-5, BUF, 4, 0)), -EBADF);
    assert_eq!(h.res(read(fd, 0, 4, 0)), -EFAULT);
    assert_eq!(h.res(read(fd, MEM + MEM_LEN as u64 - 2, 4, 0)), -EFAULT);
    assert_eq!(h.res(read(fd, BUF, 4, (-2i64) as u64)), -EINVAL);
    let mut flagged = read(fd, BUF, 4, 0);
    flagged.op_flags = 1;
    assert_eq!(h.res(flagged), -EOPNOTSUPP);
    let w = h.env.open(AT_FDCWD, "f", O_WRONLY as u32).unwrap();
    assert_eq!(h.res(read(w, BUF, 4, 0)), -EBADF);
}

#[test]
fn write_and_its_failures() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"").unwrap();
    h.env.write_user(BUF, b"hello world").unwrap();
    assert_eq!(h.res(write(fd, BUF, 5, u64::MAX)), 5);
    assert_eq!(h.res(write(fd, BUF + 5, 6, u64::MAX)), 6);
    assert_eq!(h.res(write(fd, BUF, 1, 0)), 1);
    assert_eq!(h.env.file_data("f").unwrap(), b"hello world");
    let r = h.env.open(AT_FDCWD, "f", O_RDONLY as u32).unwrap();
    assert_eq!(h.res(write(r, BUF, 1, 0)), -EBADF);
    assert_eq!(h.res(write(fd, 0x10, 1, 0)), -EFAULT);
    assert_eq!(h.res(write(77, BUF, 1, 0)), -EBADF);
}

#[test]
fn readv_and_writev() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"abcdefghij").unwrap();
    put_iovecs(&mut h, &[(BUF, 3), (BUF + 0x10, 0), (BUF + 0x20, 4)]);
    assert_eq!(h.res(rw(op::READV, fd, IOV, 3, 1, 1)), 7);
    assert_eq!(h.env.peek(BUF, 3).unwrap(), b"bcd");
    assert_eq!(h.env.peek(BUF + 0x20, 4).unwrap(), b"efgh");
    // At the position, short at the end of the file.
    assert_eq!(h.res(rw(op::READV, fd, IOV, 3, u64::MAX, 1)), 7);
    assert_eq!(h.res(rw(op::READV, fd, IOV, 3, u64::MAX, 1)), 3);
    assert_eq!(h.env.peek(BUF, 3).unwrap(), b"hij");
    assert_eq!(h.res(rw(op::READV, fd, IOV, 0, 0, 1)), 0);

    let out = h.env.create_file("out", b"").unwrap();
    h.env.write_user(BUF, b"xyz").unwrap();
    h.env.write_user(BUF + 0x20, b"1234").unwrap();
    assert_eq!(h.res(rw(op::WRITEV, out, IOV, 3, u64::MAX, 2)), 7);
    assert_eq!(h.res(rw(op::WRITEV, out, IOV, 1, 0, 2)), 3);
    assert_eq!(h.env.file_data("out").unwrap(), b"xyz1234");
}

#[test]
fn vectored_failures() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"abcdefghij").unwrap();
    put_iovecs(&mut h, &[(BUF, 3), (0x10, 4)]);
    // A bad buffer anywhere fails the whole op before anything moves.
    assert_eq!(h.res(rw(op::READV, fd, IOV, 2, 0, 1)), -EFAULT);
    assert_eq!(h.env.peek(BUF, 3).unwrap(), [0, 0, 0]);
    // The iovec array itself is unreadable.
    assert_eq!(h.res(rw(op::READV, fd, 0x10, 1, 0, 1)), -EFAULT);
    assert_eq!(h.res(rw(op::READV, fd, u64::MAX - 8, 1, 0, 1)), -EFAULT);
    // Too many iovecs, a negative length, bad fd.
    assert_eq!(h.res(rw(op::READV, fd, IOV, IOV_MAX + 1, 0, 1)), -EINVAL);
    put_iovecs(&mut h, &[(BUF, u64::MAX)]);
    assert_eq!(h.res(rw(op::WRITEV, fd, IOV, 1, 0, 1)), -EINVAL);
    put_iovecs(&mut h, &[(BUF, 1)]);
    assert_eq!(h.res(rw(op::WRITEV, 42, IOV, 1, 0, 1)), -EBADF);
    let mut flagged = rw(op::WRITEV, fd, IOV, 1, 0, 1);
    flagged.op_flags = 4;
    assert_eq!(h.res(flagged), -EOPNOTSUPP);
}

#[test]
fn fsync() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"").unwrap();
    let sync = |fd| Sqe {
        opcode: op::FSYNC,
        fd,
        user_data: 3,
        ..Sqe::default()
    };
    assert_eq!(h.res(sync(fd)), 0);
    assert_eq!(h.env.fsyncs, 1);
    assert_eq!(h.res(sync(9)), -EBADF);
    let mut bad = sync(fd);
    bad.addr = 1;
    assert_eq!(h.res(bad), -EINVAL);
    let mut datasync = sync(fd);
    datasync.op_flags = abi::io_uring::fsync_flags::DATASYNC;
    assert_eq!(h.res(datasync), 0);
    assert_eq!(h.env.fsyncs, 2);
    let mut bad = sync(fd);
    bad.op_flags = 2;
    assert_eq!(h.res(bad), -EINVAL);
}

fn openat_sqe(flags: u64) -> Sqe {
    Sqe {
        opcode: op::OPENAT,
        fd: AT_FDCWD,
        addr: PATH,
        op_flags: flags as u32,
        user_data: 4,
        ..Sqe::default()
    }
}

#[test]
fn openat() {
    let mut h = Harness::new(4, 8);
    h.env.fs.insert("exists", b"x".to_vec()).unwrap();
    put_path(&mut h, b"/exists");
    let fd = h.res(openat_sqe(O_RDONLY));
    assert_eq!(fd, 0);
    assert_eq!(h.res(read(fd, BUF, 1, 0)), 1);
    put_path(&mut h, b"new");
    assert_eq!(h.res(openat_sqe(O_RDONLY)), -ENOENT);
    assert_eq!(h.res(openat_sqe(O_CREAT | O_RDWR)), 1);
    assert!(h.env.file_data("new").is_some());
    assert_eq!(h.res(openat_sqe(0o4000_0000)), -EINVAL, "unknown open flag");
    put_path(&mut h, b"");
    assert_eq!(h.res(openat_sqe(O_RDONLY)), -ENOENT);
}

#[test]
fn openat_failures() {
    let mut h = Harness::new(4, 8);
    put_path(&mut h, b"f");
    let mut other_dir = openat_sqe(O_CREAT);
    other_dir.fd = 3;
    assert_eq!(h.res(other_dir), -EBADF);
    assert_eq!(
        h.res(with_flags(openat_sqe(O_CREAT), sqe_flags::FIXED_FILE)),
        -EBADF
    );
    let mut bad = openat_sqe(O_CREAT);
    bad.file_index = 1;
    assert_eq!(h.res(bad), -EINVAL);
    let mut bad = openat_sqe(O_CREAT);
    bad.addr = 8;
    assert_eq!(h.res(bad), -EFAULT);
    h.env.write_user(PATH, &[b'a'; 300]).unwrap();
    assert_eq!(h.res(openat_sqe(O_CREAT)), -ENAMETOOLONG);
    h.env.write_user(PATH, b"\xc3\x28\0").unwrap();
    assert_eq!(h.res(openat_sqe(O_CREAT)), -EINVAL);
}

#[test]
fn close() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"").unwrap();
    let close = |fd| Sqe {
        opcode: op::CLOSE,
        fd,
        user_data: 5,
        ..Sqe::default()
    };
    assert_eq!(h.res(close(fd)), 0);
    assert_eq!(h.env.open_fds(), 0);
    assert_eq!(h.res(close(fd)), -EBADF, "double close");
    assert_eq!(h.res(close(-1)), -EBADF);
    let mut bad = close(0);
    bad.addr = 1;
    assert_eq!(h.res(bad), -EINVAL);
    let mut bad = close(0);
    bad.file_index = 1;
    assert_eq!(h.res(bad), -EINVAL);
    assert_eq!(h.res(with_flags(close(0), sqe_flags::FIXED_FILE)), -EBADF);
}

fn statx(out: u64) -> Sqe {
    Sqe {
        opcode: op::STATX,
        fd: AT_FDCWD,
        addr: PATH,
        len: STATX_BASIC,
        addr3: out,
        user_data: 6,
        ..Sqe::default()
    }
}

#[test]
fn statx_fills_the_struct() {
    let mut h = Harness::new(4, 8);
    let inode = h.env.fs.insert("f", vec![7; 1000]).unwrap();
    put_path(&mut h, b"f");
    assert_eq!(h.res(statx(BUF)), 0);
    let raw = h.env.peek(BUF, 64).unwrap();
    let u32_at = |i: usize| u32::from_le_bytes(raw[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().unwrap());
    assert_eq!(u32_at(0), STATX_BASIC);
    assert_eq!(u32_at(4), 4096);
    assert_eq!(u32_at(16), 1, "nlink");
    assert_eq!(u16::from_le_bytes([raw[28], raw[29]]), 0o100644);
    assert_eq!(u64_at(32), inode.ino());
    assert_eq!(u64_at(40), 1000);
    assert_eq!(u64_at(48), 2, "512-byte blocks");
}

#[test]
fn statx_failures() {
    let mut h = Harness::new(4, 8);
    h.env.fs.insert("f", vec![]).unwrap();
    put_path(&mut h, b"missing");
    assert_eq!(h.res(statx(BUF)), -ENOENT);
    put_path(&mut h, b"f");
    assert_eq!(h.res(statx(0x20)), -EFAULT);
    let mut bad = statx(BUF);
    bad.fd = 0;
    assert_eq!(h.res(bad), -EBADF);
    let mut bad = statx(BUF);
    bad.addr = 0;
    assert_eq!(h.res(bad), -EFAULT);
    let mut bad = statx(BUF);
    bad.buf_index = 1;
    assert_eq!(h.res(bad), -EINVAL);
}

#[test]
fn timeout_prep_failures() {
    let mut h = Harness::new(4, 8);
    h.put_timespec(TS, 1, 0);
    let mut bad = timeout(TS, 0, 1);
    bad.len = 2;
    assert_eq!(h.res(bad), -EINVAL);
    let mut bad = timeout(TS, 0, 1);
    bad.op_flags = 2;
    assert_eq!(h.res(bad), -EINVAL);
    assert_eq!(h.res(timeout(0x8, 0, 1)), -EFAULT);
    h.put_timespec(TS, 0, 1_000_000_000);
    assert_eq!(h.res(timeout(TS, 0, 1)), -EINVAL);
    h.put_timespec(TS, -1, 0);
    assert_eq!(h.res(timeout(TS, 0, 1)), -EINVAL);
    let mut bad = cancel(op::TIMEOUT_REMOVE, 1, 2);
    bad.len = 1;
    assert_eq!(h.res(bad), -EINVAL);
    let mut bad = cancel(op::ASYNC_CANCEL, 1, 2);
    bad.op_flags = 1;
    assert_eq!(h.res(bad), -EINVAL);
    assert_eq!(h.engine.pending_ops(), 0);
}

#[test]
fn bad_flags_and_opcodes() {
    let mut h = Harness::new(4, 8);
    for flag in [sqe_flags::BUFFER_SELECT, 0x80] {
        assert_eq!(h.res(with_flags(super::nop(1), flag)), -EINVAL);
    }
    // IOSQE_ASYNC asks for a worker; the op runs inline and succeeds.
    assert_eq!(h.res(with_flags(super::nop(1), sqe_flags::ASYNC)), 0);
    for opcode in [6u8, 13, op::LAST, 255] {
        let mut sqe = super::nop(2);
        sqe.opcode = opcode;
        assert_eq!(h.res(sqe), -EINVAL, "opcode {opcode}");
    }
    // FIXED_FILE on an op without a file is ignored.
    assert_eq!(h.res(with_flags(super::nop(3), sqe_flags::FIXED_FILE)), 0);
}

fn put_buffers(h: &mut Harness, iovecs: &[(u64, u64)]) -> Result<u64, Errno> {
    put_iovecs(h, iovecs);
    h.engine.register(
        &mut h.env,
        register::REGISTER_BUFFERS,
        IOV,
        iovecs.len() as u32,
    )
}

#[test]
fn fixed_buffers() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"0123456789").unwrap();
    assert_eq!(
        put_buffers(&mut h, &[(BUF, 8), (0, 0), (BUF + 0x100, 16)]),
        Ok(0)
    );
    let fixed = |opcode, addr, len, index| {
        let mut sqe = rw(opcode, fd, addr, len, 0, 9);
        sqe.buf_index = index;
        sqe
    };
    assert_eq!(h.res(fixed(op::READ_FIXED, BUF, 8, 0)), 8);
    assert_eq!(h.env.peek(BUF, 8).unwrap(), b"01234567");
    assert_eq!(h.res(fixed(op::READ_FIXED, BUF + 4, 4, 0)), 4);
    assert_eq!(
        h.res(fixed(op::READ_FIXED, BUF + 0x100, 16, 2)),
        10,
        "short: EOF"
    );
    // Outside the buffer, an empty slot, no such slot.
    assert_eq!(h.res(fixed(op::READ_FIXED, BUF + 4, 5, 0)), -EFAULT);
    assert_eq!(h.res(fixed(op::READ_FIXED, BUF - 1, 2, 0)), -EFAULT);
    assert_eq!(h.res(fixed(op::READ_FIXED, BUF, 1, 1)), -EFAULT);
    assert_eq!(h.res(fixed(op::READ_FIXED, BUF, 1, 3)), -EFAULT);
    assert_eq!(h.res(fixed(op::READ_FIXED, u64::MAX, 2, 0)), -EFAULT);

    h.env.write_user(BUF, b"ABCD").unwrap();
    assert_eq!(h.res(fixed(op::WRITE_FIXED, BUF, 4, 0)), 4);
    assert_eq!(h.env.file_data("f").unwrap(), b"ABCD456789");
    assert_eq!(h.res(fixed(op::WRITE_FIXED, BUF, 9, 0)), -EFAULT);

    // Unregistered: every fixed op faults.
    assert_eq!(
        h.engine
            .register(&mut h.env, register::UNREGISTER_BUFFERS, 0, 0),
        Ok(0)
    );
    assert_eq!(h.res(fixed(op::READ_FIXED, BUF, 1, 0)), -EFAULT);
}

#[test]
fn register_buffers_errors() {
    let mut h = Harness::new(4, 8);
    let unregister = |h: &mut Harness, arg, nr| {
        h.engine
            .register(&mut h.env, register::UNREGISTER_BUFFERS, arg, nr)
    };
    assert_eq!(unregister(&mut h, 0, 0), Err(ENXIO), "nothing registered");
    assert_eq!(put_buffers(&mut h, &[]), Err(EINVAL));
    assert_eq!(
        h.engine.register(
            &mut h.env,
            register::REGISTER_BUFFERS,
            IOV,
            register::MAX_BUFFERS + 1
        ),
        Err(EINVAL)
    );
    assert_eq!(put_buffers(&mut h, &[(0, 1)]), Err(EFAULT));
    assert_eq!(put_buffers(&mut h, &[(0x10, 1)]), Err(EFAULT));
    assert_eq!(
        put_buffers(&mut h, &[(BUF, register::MAX_BUFFER_LEN + 1)]),
        Err(EFAULT)
    );
    assert_eq!(put_buffers(&mut h, &[(u64::MAX, 2)]), Err(EOVERFLOW));
    assert_eq!(
        h.engine
            .register(&mut h.env, register::REGISTER_BUFFERS, 8, 1),
        Err(EFAULT)
    );
    assert_eq!(put_buffers(&mut h, &[(BUF, 1)]), Ok(0));
    assert_eq!(put_buffers(&mut h, &[(BUF, 1)]), Err(EBUSY));
    assert_eq!(unregister(&mut h, 1, 0), Err(EINVAL));
    assert_eq!(unregister(&mut h, 0, 0), Ok(0));
    assert_eq!(unregister(&mut h, 0, 0), Err(ENXIO));
    assert_eq!(h.engine.register(&mut h.env, 99, 0, 0), Err(EINVAL));
}

fn put_files(h: &mut Harness, fds: &[i32]) -> Result<u64, Errno> {
    for (i, fd) in fds.iter().enumerate() {
        h.env
            .write_user(IOV + 4 * i as u64, &fd.to_le_bytes())
            .unwrap();
    }
    h.engine
        .register(&mut h.env, register::REGISTER_FILES, IOV, fds.len() as u32)
}

#[test]
fn fixed_files() {
    let mut h = Harness::new(4, 8);
    let fd = h.env.create_file("f", b"0123456789").unwrap();
    assert_eq!(put_files(&mut h, &[-1, fd]), Ok(0));
    assert_eq!(h.env.pinned_files(), 1);
    let fixed_read = |index, off| with_flags(read(index, BUF, 2, off), sqe_flags::FIXED_FILE);
    assert_eq!(h.res(fixed_read(1, 4)), 2);
    assert_eq!(h.env.peek(BUF, 2).unwrap(), b"45");
    // The registered file outlives its descriptor.
    h.env.close(fd).unwrap();
    assert_eq!(h.res(read(fd, BUF, 2, 0)), -EBADF);
    assert_eq!(h.res(fixed_read(1, 0)), 2);
    // Empty slot, out of range, negative.
    assert_eq!(h.res(fixed_read(0, 0)), -EBADF);
    assert_eq!(h.res(fixed_read(2, 0)), -EBADF);
    assert_eq!(h.res(fixed_read(-1, 0)), -EBADF);
    let fixed_sync = Sqe {
        opcode: op::FSYNC,
        fd: 1,
        flags: sqe_flags::FIXED_FILE,
        ..Sqe::default()
    };
    assert_eq!(h.res(fixed_sync), 0);

    assert_eq!(put_files(&mut h, &[-1]), Err(EBUSY));
    assert_eq!(
        h.engine
            .register(&mut h.env, register::UNREGISTER_FILES, 0, 0),
        Ok(0)
    );
    assert_eq!(h.env.pinned_files(), 0);
    assert_eq!(h.res(fixed_read(1, 0)), -EBADF);
    assert_eq!(
        h.engine
            .register(&mut h.env, register::UNREGISTER_FILES, 0, 0),
        Err(ENXIO)
    );
}

#[test]
fn register_files_errors_unpin_what_they_pinned() {
    let mut h = Harness::new(4, 8);
    let a = h.env.create_file("a", b"").unwrap();
    assert_eq!(put_files(&mut h, &[a, a, 40]), Err(EBADF));
    assert_eq!(h.env.pinned_files(), 0);
    assert_eq!(put_files(&mut h, &[]), Err(EINVAL));
    assert_eq!(
        h.engine.register(
            &mut h.env,
            register::REGISTER_FILES,
            IOV,
            register::MAX_FILES + 1
        ),
        Err(EINVAL)
    );
    assert_eq!(
        h.engine
            .register(&mut h.env, register::REGISTER_FILES, 4, 2),
        Err(EFAULT)
    );
    assert_eq!(put_files(&mut h, &[a]), Ok(0));
    h.engine.teardown(&mut h.env);
    assert_eq!(h.env.pinned_files(), 0, "teardown unpins");
}

#[test]
fn register_probe() {
    let mut h = Harness::new(4, 8);
    let probe_at = MEM + 0x4000;
    let r = h
        .engine
        .register(&mut h.env, register::REGISTER_PROBE, probe_at, 256);
    assert_eq!(r, Ok(0));
    let raw = h
        .env
        .peek(probe_at, 16 + 8 * op::LAST as usize + 8)
        .unwrap();
    assert_eq!(raw[0], op::LAST - 1, "last_op");
    assert_eq!(raw[1], op::LAST, "ops_len");
    for i in 0..op::LAST as usize {
        let entry = &raw[16 + 8 * i..24 + 8 * i];
        assert_eq!(usize::from(entry[0]), i);
        let supported = u16::from_le_bytes([entry[2], entry[3]]) == 1;
        let named = op::ALL.contains(&(i as u8));
        assert_eq!(supported, named, "op {i}");
    }
    assert_eq!(&raw[16 + 8 * op::LAST as usize..], &[0; 8], "nothing past");
    // Not zeroed: EINVAL (it is filled now).
    assert_eq!(
        h.engine
            .register(&mut h.env, register::REGISTER_PROBE, probe_at, 4),
        Err(EINVAL)
    );
    let fresh = MEM + 0x5000;
    assert_eq!(
        h.engine
            .register(&mut h.env, register::REGISTER_PROBE, fresh, 2),
        Ok(0)
    );
    assert_eq!(h.env.peek(fresh, 2).unwrap(), [op::LAST - 1, 2]);
    assert_eq!(
        h.engine
            .register(&mut h.env, register::REGISTER_PROBE, 0, 2),
        Err(EFAULT)
    );
}
