//! MKDIRAT, UNLINKAT, RENAMEAT, FTRUNCATE, and OPENAT/STATX with
//! directories, against the mock's RAM file system tree.

use abi::errno::*;
use abi::io_uring::{op, sqe_flags, Sqe, Statx, AT_REMOVEDIR};
use abi::open_flags::{O_CREAT, O_RDONLY, O_RDWR, O_WRONLY};
use abi::FromBytes;

use super::*;
use crate::ring::ops::AT_FDCWD;
use crate::ring::IoEnv;

const PATH: u64 = MEM + 0x2000;
const PATH2: u64 = MEM + 0x2400;
const STATX_AT: u64 = MEM + 0x3000;

fn put(h: &mut Harness, at: u64, path: &[u8]) {
    h.env.write_user(at, path).unwrap();
    h.env.write_user(at + path.len() as u64, &[0]).unwrap();
}

fn path_sqe(opcode: u8, path: &[u8], h: &mut Harness) -> Sqe {
    put(h, PATH, path);
    Sqe {
        opcode,
        fd: AT_FDCWD,
        addr: PATH,
        user_data: 7,
        ..Sqe::default()
    }
}

fn mkdirat(h: &mut Harness, path: &[u8]) -> i32 {
    let mut sqe = path_sqe(op::MKDIRAT, path, h);
    sqe.len = 0o755;
    h.res(sqe)
}

fn unlinkat(h: &mut Harness, path: &[u8], flags: u32) -> i32 {
    let mut sqe = path_sqe(op::UNLINKAT, path, h);
    sqe.op_flags = flags;
    h.res(sqe)
}

fn renameat(h: &mut Harness, old: &[u8], new: &[u8]) -> i32 {
    let mut sqe = path_sqe(op::RENAMEAT, old, h);
    put(h, PATH2, new);
    sqe.off = PATH2;
    sqe.len = AT_FDCWD as u32;
    h.res(sqe)
}

fn openat(h: &mut Harness, path: &[u8], flags: u64) -> i32 {
    let mut sqe = path_sqe(op::OPENAT, path, h);
    sqe.op_flags = flags as u32;
    h.res(sqe)
}

fn statx(h: &mut Harness, path: &[u8]) -> Result<Statx, i32> {
    let mut sqe = path_sqe(op::STATX, path, h);
    sqe.addr3 = STATX_AT;
    match h.res(sqe) {
        0 => {
            let raw = h.env.peek(STATX_AT, core::mem::size_of::<Statx>()).unwrap();
            Ok(Statx::read_from_bytes(&raw).unwrap())
        }
        e => Err(e),
    }
}

#[test]
fn directory_ops_through_the_ring() {
    let mut h = Harness::new(8, 16);
    assert_eq!(mkdirat(&mut h, b"/d"), 0);
    assert_eq!(mkdirat(&mut h, b"/d"), -EEXIST);
    assert_eq!(mkdirat(&mut h, b"d/e"), 0, "relative paths start at /");
    assert_eq!(mkdirat(&mut h, b"/nope/e"), -ENOENT);
    let fd = openat(&mut h, b"/d/e/f", O_CREAT | O_RDWR);
    assert!(fd >= 0, "{fd}");
    assert_eq!(openat(&mut h, b"/d/e/f/g", O_CREAT | O_RDWR), -ENOTDIR);
    assert_eq!(openat(&mut h, b"/d", O_RDWR), -EISDIR);
    // STATX tells directories from files.
    let st = statx(&mut h, b"/d/e").unwrap();
    assert_eq!(st.mode & 0o170_000, 0o040_000);
    assert_eq!(st.nlink, 2);
    assert_eq!(statx(&mut h, b"/d").unwrap().nlink, 3);
    let st = statx(&mut h, b"/d/e/f").unwrap();
    assert_eq!(st.mode & 0o170_000, 0o100_000);
    // Rename across directories; a directory into its own child is EINVAL.
    assert_eq!(renameat(&mut h, b"/d/e/f", b"/d/g"), 0);
    assert!(h.env.file_data("/d/g").is_some());
    assert!(h.env.file_data("/d/e/f").is_none());
    assert_eq!(renameat(&mut h, b"/d", b"/d/e/inside"), -EINVAL);
    assert_eq!(renameat(&mut h, b"/missing", b"/x"), -ENOENT);
    // UNLINKAT keeps to its kind; AT_REMOVEDIR wants an empty directory.
    assert_eq!(unlinkat(&mut h, b"/d/e", 0), -EISDIR);
    assert_eq!(unlinkat(&mut h, b"/d/g", AT_REMOVEDIR), -ENOTDIR);
    assert_eq!(unlinkat(&mut h, b"/d", AT_REMOVEDIR), -ENOTEMPTY);
    assert_eq!(unlinkat(&mut h, b"/d/g", 0), 0);
    assert_eq!(unlinkat(&mut h, b"/d/e", AT_REMOVEDIR), 0);
    assert_eq!(unlinkat(&mut h, b"/d", AT_REMOVEDIR), 0);
    assert_eq!(statx(&mut h, b"/d").unwrap_err(), -ENOENT);
    // The file is still open: FTRUNCATE works on it.
    let trunc = Sqe {
        opcode: op::FTRUNCATE,
        fd,
        off: 5,
        user_data: 9,
        ..Sqe::default()
    };
    assert_eq!(h.res(trunc), 0);
    let mut negative = trunc;
    negative.off = u64::MAX;
    assert_eq!(h.res(negative), -EINVAL);
}

#[test]
fn ftruncate_sets_the_size() {
    let mut h = Harness::new(4, 8);
    let fd = openat(&mut h, b"/f", O_CREAT | O_WRONLY);
    let sqe = |fd: i32, len: u64| Sqe {
        opcode: op::FTRUNCATE,
        fd,
        off: len,
        user_data: 3,
        ..Sqe::default()
    };
    assert_eq!(h.res(sqe(fd, 10)), 0);
    assert_eq!(h.env.file_data("f").unwrap(), [0; 10]);
    assert_eq!(h.res(sqe(fd, 3)), 0);
    assert_eq!(h.env.file_data("f").unwrap().len(), 3);
    let ro = openat(&mut h, b"/f", O_RDONLY);
    assert_eq!(h.res(sqe(ro, 0)), -EINVAL, "not open for writing");
    assert_eq!(h.res(sqe(99, 0)), -EBADF);
    let mut bad = sqe(fd, 0);
    bad.addr = 1;
    assert_eq!(h.res(bad), -EINVAL);
    let mut bad = sqe(fd, 0);
    bad.addr3 = 1;
    assert_eq!(h.res(bad), -EINVAL);
}

#[test]
fn prep_failures() {
    let mut h = Harness::new(4, 8);
    // Directory descriptors: a closed one is EBADF, a file ENOTDIR, for
    // relative paths only (an absolute path ignores it, as on Linux).
    let mut sqe = path_sqe(op::MKDIRAT, b"x", &mut h);
    sqe.fd = 3;
    assert_eq!(h.res(sqe), -EBADF);
    let mut sqe = path_sqe(op::RENAMEAT, b"/x", &mut h);
    put(&mut h, PATH2, b"y");
    sqe.off = PATH2;
    sqe.len = 3;
    assert_eq!(h.res(sqe), -EBADF);
    let file = h.env.create_file("/file", b"").unwrap();
    let mut sqe = path_sqe(op::UNLINKAT, b"x", &mut h);
    sqe.fd = file;
    assert_eq!(h.res(sqe), -ENOTDIR);
    let mut sqe = path_sqe(op::MKDIRAT, b"/abs", &mut h);
    sqe.fd = 77;
    assert_eq!(h.res(sqe), 0, "an absolute path ignores the descriptor");
    h.env.fs.rmdir("/abs").unwrap();
    h.env.close(file).unwrap();
    h.env.fs.unlink("/file").unwrap();
    // Fields Linux wants zero, unknown flags, FIXED_FILE, bad paths.
    let mut sqe = path_sqe(op::MKDIRAT, b"/x", &mut h);
    sqe.off = 1;
    assert_eq!(h.res(sqe), -EINVAL);
    let mut sqe = path_sqe(op::UNLINKAT, b"/x", &mut h);
    sqe.op_flags = 1;
    assert_eq!(h.res(sqe), -EINVAL);
    let mut sqe = path_sqe(op::UNLINKAT, b"/x", &mut h);
    sqe.len = 1;
    assert_eq!(h.res(sqe), -EINVAL);
    let mut sqe = path_sqe(op::RENAMEAT, b"/x", &mut h);
    put(&mut h, PATH2, b"/y");
    sqe.off = PATH2;
    sqe.op_flags = 1;
    assert_eq!(h.res(sqe), -EINVAL, "no renameat2 flags");
    let mut sqe = path_sqe(op::MKDIRAT, b"/x", &mut h);
    sqe.flags = sqe_flags::FIXED_FILE;
    assert_eq!(h.res(sqe), -EBADF);
    assert_eq!(mkdirat(&mut h, b""), -ENOENT);
    let mut sqe = path_sqe(op::RENAMEAT, b"/x", &mut h);
    sqe.off = 0xdead_0000;
    assert_eq!(h.res(sqe), -EFAULT);
    let long = [b'a'; 300];
    assert_eq!(mkdirat(&mut h, &long), -ENAMETOOLONG);
    assert_eq!(mkdirat(&mut h, b"/\xff"), -EINVAL);
    assert!(h.env.fs.is_empty(), "nothing was made");
}
