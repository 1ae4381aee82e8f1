//! Directories and the VFS through syscalls (mkdir, rmdir, getdents, stat,
//! open/rename/unlink with paths, ftruncate, pread/pwrite, fdatasync) and
//! through a ring (MKDIRAT, UNLINKAT, RENAMEAT, FTRUNCATE, OPENAT, STATX).

use abi::errno::{
    Errno, EBADF, EEXIST, EINVAL, EISDIR, ENAMETOOLONG, ENOENT, ENOSYS, ENOTDIR, ENOTEMPTY,
};
use abi::io_uring::{AT_FDCWD, AT_REMOVEDIR, STATX_BASIC};
use abi::open_flags::{O_CREAT, O_DIRECTORY, O_RDONLY, O_RDWR, O_WRONLY};
use alloc::string::String;
use alloc::vec::Vec;
use libuser::async_io::{AsyncContext, AsyncOp};
use libuser::fs::{self, File};
use libuser::test::{Case, TestResult};
use libuser::{check, check_eq, check_err, detail, sys, sysring};

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("mkdir, files inside, getdents lists them, rmdir needs it empty", mkdir_list_rmdir),
    ("paths: . and .., repeated /, ENOTDIR in the middle, long names", paths),
    ("rename across directories, a directory into its child is EINVAL", renames),
    ("ftruncate, pread/pwrite, fdatasync on a file in a directory", file_calls),
    ("directory ops through a ring: MKDIRAT/UNLINKAT/RENAMEAT/FTRUNCATE/STATX", ring_ops),
];

/// A directory tree removed when the case ends, however it ends.
struct Tree(&'static str);

impl Drop for Tree {
    fn drop(&mut self) {
        remove_all(self.0);
    }
}

fn remove_all(path: &str) {
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries {
            let child = alloc::format!("{path}/{}", entry.name);
            if entry.is_dir {
                remove_all(&child);
            } else {
                let _ = sys::unlink(&child);
            }
        }
    }
    let _ = sys::rmdir(path);
}

fn names(path: &str) -> Result<Vec<(String, bool)>, Errno> {
    let mut names: Vec<(String, bool)> = fs::read_dir(path)?
        .into_iter()
        .map(|e| (e.name, e.is_dir))
        .collect();
    names.sort();
    Ok(names)
}

fn mkdir_list_rmdir() -> TestResult {
    let _tree = Tree("/t_dir");
    sys::mkdir("/t_dir")?;
    check_err!(sys::mkdir("/t_dir"), EEXIST);
    sys::mkdir("/t_dir/sub")?;
    fs::write_file("/t_dir/a", b"alpha")?;
    fs::write_file("/t_dir/sub/b", b"beta!")?;
    check_eq!(fs::read_to_vec("/t_dir/sub/b")?, b"beta!");
    check_eq!(
        names("/t_dir")?,
        [(String::from("a"), false), (String::from("sub"), true)]
    );
    let st = sys::stat("/t_dir")?;
    check_eq!(st.kind, abi::file_kind::DIRECTORY);
    check_eq!(st.nlink, 3);
    check_eq!(sys::stat("/t_dir/a")?.size, 5);
    // The root lists the new directory too; list_files still works.
    check!(names("/")?.contains(&(String::from("t_dir"), true)));
    check!(fs::list()?.iter().any(|f| f.name == "t_dir"));
    // Kinds are kept apart.
    check_err!(sys::unlink("/t_dir/sub"), EISDIR);
    check_err!(sys::rmdir("/t_dir/a"), ENOTDIR);
    check_err!(sys::rmdir("/t_dir"), ENOTEMPTY);
    check_err!(File::open("/t_dir", O_RDWR), EISDIR);
    check_err!(File::open("/t_dir/a", O_RDONLY | O_DIRECTORY), ENOTDIR);
    let dir = File::open("/t_dir", O_RDONLY)?;
    let mut buf = [0u8; 64];
    if sysring::active() {
        check_err!(dir.read_at(&mut buf, 0), ENOSYS);
    } else {
        check_err!(dir.read_at(&mut buf, 0), EISDIR);
    }
    let file = File::open("/t_dir/a", O_RDONLY)?;
    check_err!(sys::getdents(file.fd(), &mut buf), ENOTDIR);
    check_err!(sys::getdents(dir.fd(), &mut buf[..8]), EINVAL);
    // One record at a time, then the end; lseek to 0 starts over.
    let mut dir = dir;
    let mut seen = 0;
    loop {
        let n = sys::getdents(dir.fd(), &mut buf)?;
        if n == 0 {
            break;
        }
        seen += fs::Dirents::new(&buf[..n]).count();
    }
    check_eq!(seen, 2);
    dir.seek(0, abi::seek::SEEK_SET)?;
    check!(sys::getdents(dir.fd(), &mut buf)? > 0);
    drop(dir);
    sys::unlink("/t_dir/sub/b")?;
    sys::rmdir("/t_dir/sub")?;
    sys::unlink("/t_dir/a")?;
    sys::rmdir("/t_dir")?;
    check_err!(sys::stat("/t_dir"), ENOENT);
    check_err!(sys::rmdir("/"), abi::errno::EBUSY);
    Ok(())
}

fn paths() -> TestResult {
    let _tree = Tree("/t_paths");
    sys::mkdir("/t_paths")?;
    sys::mkdir("t_paths/x")?;
    fs::write_file("//t_paths///x/./f", b"f")?;
    check_eq!(fs::read_to_vec("/t_paths/x/../x/f")?, b"f");
    check_eq!(fs::read_to_vec("/../../t_paths/x/f")?, b"f");
    check_err!(File::open("/t_paths/x/f/g", O_RDONLY), ENOTDIR);
    check_err!(File::open("/t_paths/x/f/", O_RDONLY), ENOTDIR);
    check_err!(File::open("/t_paths/nope/f", O_CREAT | O_WRONLY), ENOENT);
    check_err!(File::open("", O_RDONLY), ENOENT);
    check_err!(File::open("/t_paths/a\0b", O_CREAT | O_WRONLY), EINVAL);
    let long = "n".repeat(256);
    check_err!(sys::mkdir(&long), ENAMETOOLONG);
    let slashes = "/".repeat(4096);
    check_err!(sys::stat(&slashes), ENAMETOOLONG);
    check_eq!(sys::stat(&slashes[..200])?.kind, abi::file_kind::DIRECTORY);
    check_err!(sys::mkdir("/t_paths/x/f/d"), ENOTDIR);
    // openat: relative to a directory descriptor (direct mode: in ring
    // mode `open` goes through the ring, whose OPENAT is tested below).
    if !sysring::active() {
        let dir = File::open("/t_paths/x", O_RDONLY)?;
        let fd = sys::openat(dir.fd() as i32, "f", O_RDONLY)?;
        sys::close(fd)?;
        let fd = sys::openat(dir.fd() as i32, "../x/new", O_CREAT | O_WRONLY)?;
        sys::close(fd)?;
        check_eq!(sys::stat("/t_paths/x/new")?.size, 0);
        let file = File::open("/t_paths/x/f", O_RDONLY)?;
        check_err!(sys::openat(file.fd() as i32, "f", O_RDONLY), ENOTDIR);
        check_err!(sys::openat(999, "f", O_RDONLY), EBADF);
        let fd = sys::openat(999, "/t_paths/x/f", O_RDONLY)?;
        sys::close(fd)?;
        let fd = sys::openat(AT_FDCWD, "t_paths/x/f", O_RDONLY)?;
        sys::close(fd)?;
    }
    check_err!(sys::mkdir("/"), EEXIST);
    Ok(())
}

fn renames() -> TestResult {
    let _tree = Tree("/t_mv");
    sys::mkdir("/t_mv")?;
    sys::mkdir("/t_mv/a")?;
    sys::mkdir("/t_mv/b")?;
    fs::write_file("/t_mv/a/f", b"moving")?;
    let ino = sys::stat("/t_mv/a/f")?.ino;
    sys::rename("/t_mv/a/f", "/t_mv/b/g")?;
    check_err!(sys::stat("/t_mv/a/f"), ENOENT);
    check_eq!(sys::stat("/t_mv/b/g")?.ino, ino);
    check_eq!(fs::read_to_vec("/t_mv/b/g")?, b"moving");
    // A directory moves with its contents, but not into itself.
    check_err!(sys::rename("/t_mv/b", "/t_mv/b/inside"), EINVAL);
    sys::rename("/t_mv/b", "/t_mv/a/b2")?;
    check_eq!(fs::read_to_vec("/t_mv/a/b2/g")?, b"moving");
    check_eq!(fs::read_to_vec("/t_mv/a/b2/../b2/g")?, b"moving");
    check_err!(sys::rename("/t_mv/a/b2/g", "/t_mv/a"), EISDIR);
    check_err!(sys::rename("/t_mv/a", "/t_mv/a/b2/g"), EINVAL);
    Ok(())
}

fn file_calls() -> TestResult {
    let _tree = Tree("/t_fcalls");
    sys::mkdir("/t_fcalls")?;
    let mut file = File::open("/t_fcalls/f", O_CREAT | O_RDWR)?;
    file.write_all(b"0123456789")?;
    file.set_len(4)?;
    check_eq!(file.stat()?.size, 4);
    file.set_len(6)?;
    check_eq!(fs::read_to_vec("/t_fcalls/f")?, b"0123\0\0");
    check_err!(sys::ftruncate(file.fd(), u64::MAX), EINVAL);
    file.sync_data()?;
    file.fsync()?;
    let ro = File::open("/t_fcalls/f", O_RDONLY)?;
    check_err!(ro.set_len(0), EINVAL);
    check_err!(sys::ftruncate(999, 0), EBADF);
    let dir = File::open("/t_fcalls", O_RDONLY)?;
    check_err!(dir.set_len(0), EINVAL);
    dir.fsync()?;
    if sysring::active() {
        // Positioned I/O goes through the ring in this mode.
        let mut one = [0u8; 1];
        check_err!(ro.read_at(&mut one, 0), ENOSYS);
        detail!("ring mode: pread/pwrite are ENOSYS");
        return Ok(());
    }
    let pos = file.seek(0, abi::seek::SEEK_CUR)?;
    check_eq!(file.write_at(b"AB", 1)?, 2);
    let mut buf = [0u8; 6];
    check_eq!(ro.read_at(&mut buf, 0)?, 6);
    check_eq!(&buf, b"0AB3\0\0");
    // The position did not move.
    check_eq!(file.seek(0, abi::seek::SEEK_CUR)?, pos);
    check_eq!(ro.read_at(&mut buf, 100)?, 0);
    check_err!(sys::pread(ro.fd(), &mut buf, u64::MAX), EINVAL);
    check_err!(sys::pread(0, &mut buf, 0), abi::errno::ESPIPE);
    Ok(())
}

/// Submits `op` and waits for its result.
fn run(ring: &mut AsyncContext, op: AsyncOp) -> Result<i32, Errno> {
    ring.submit(op)?;
    ring.submit_and_wait(1)?;
    Ok(ring.wait_completion()?.result)
}

fn ring_ops() -> TestResult {
    let _tree = Tree("/t_ring");
    let mut ring = match sys::sysinfo()?.ring_backend {
        abi::syscall::backend::RING_API => AsyncContext::new_ring_api(true)?,
        abi::syscall::backend::IO_URING => AsyncContext::new()?,
        _ => {
            // A kernel built without ring backends (`no-rings`).
            check_err!(AsyncContext::new().map(drop), ENOSYS);
            detail!("no ring backend: nothing to test");
            return Ok(());
        }
    };
    let neg = |e: Errno| -e;
    check_eq!(
        run(&mut ring, AsyncOp::mkdirat(AT_FDCWD, "/t_ring", 0o755, 1))?,
        0
    );
    check_eq!(
        run(&mut ring, AsyncOp::mkdirat(AT_FDCWD, "/t_ring", 0o755, 2))?,
        neg(EEXIST)
    );
    check_eq!(
        run(&mut ring, AsyncOp::mkdirat(AT_FDCWD, "/t_ring/d", 0o755, 3))?,
        0
    );
    let fd = run(
        &mut ring,
        AsyncOp::openat(AT_FDCWD, "/t_ring/d/f", O_CREAT | O_RDWR, 4),
    )?;
    check!(fd >= 0, "OPENAT in a directory: {fd}");
    check_eq!(run(&mut ring, AsyncOp::ftruncate(fd, 1000, 5))?, 0);
    check_eq!(sys::stat("/t_ring/d/f")?.size, 1000);
    // Relative to a directory descriptor; a file there is ENOTDIR.
    let dir = File::open("/t_ring/d", O_RDONLY)?;
    let dirfd = dir.fd() as i32;
    check_eq!(
        run(&mut ring, AsyncOp::mkdirat(dirfd, "sub", 0o755, 20))?,
        0
    );
    check_eq!(sys::stat("/t_ring/d/sub")?.kind, abi::file_kind::DIRECTORY);
    check_eq!(
        run(
            &mut ring,
            AsyncOp::renameat(dirfd, "sub", AT_FDCWD, "t_ring/sub2", 0, 21)
        )?,
        0
    );
    check_eq!(
        run(&mut ring, AsyncOp::mkdirat(fd, "x", 0o755, 22))?,
        neg(ENOTDIR)
    );
    check_eq!(
        run(&mut ring, AsyncOp::mkdirat(999, "x", 0o755, 23))?,
        neg(EBADF)
    );
    let inner = run(&mut ring, AsyncOp::openat(dirfd, "../sub2", O_RDONLY, 24))?;
    check!(inner >= 0, "OPENAT relative to a directory: {inner}");
    check_eq!(run(&mut ring, AsyncOp::close(inner, 25))?, 0);
    check_eq!(
        run(
            &mut ring,
            AsyncOp::unlinkat(dirfd, "../sub2", AT_REMOVEDIR, 26)
        )?,
        0
    );
    drop(dir);
    ring.submit(AsyncOp::statx(AT_FDCWD, "/t_ring/d", 0, STATX_BASIC, 6))?;
    ring.submit_and_wait(1)?;
    let done = ring.wait_completion()?;
    check_eq!(done.result, 0);
    let statx = done.statx().copied().unwrap_or_default();
    check_eq!(statx.mode & 0o170_000, 0o040_000);
    check_eq!(
        run(
            &mut ring,
            AsyncOp::renameat(AT_FDCWD, "/t_ring/d/f", AT_FDCWD, "/t_ring/g", 0, 7)
        )?,
        0
    );
    check_eq!(sys::stat("/t_ring/g")?.size, 1000);
    check_eq!(
        run(
            &mut ring,
            AsyncOp::renameat(AT_FDCWD, "/t_ring", AT_FDCWD, "/t_ring/d/x", 0, 8)
        )?,
        neg(EINVAL)
    );
    check_eq!(
        run(&mut ring, AsyncOp::unlinkat(AT_FDCWD, "/t_ring/d", 0, 9))?,
        neg(EISDIR)
    );
    check_eq!(
        run(
            &mut ring,
            AsyncOp::unlinkat(AT_FDCWD, "/t_ring", AT_REMOVEDIR, 10)
        )?,
        neg(ENOTEMPTY)
    );
    check_eq!(
        run(&mut ring, AsyncOp::unlinkat(AT_FDCWD, "/t_ring/g", 0, 11))?,
        0
    );
    check_eq!(
        run(
            &mut ring,
            AsyncOp::unlinkat(AT_FDCWD, "/t_ring/d", AT_REMOVEDIR, 12)
        )?,
        0
    );
    check_eq!(
        run(
            &mut ring,
            AsyncOp::unlinkat(AT_FDCWD, "/t_ring", AT_REMOVEDIR, 13)
        )?,
        0
    );
    check_err!(sys::stat("/t_ring"), ENOENT);
    check_eq!(run(&mut ring, AsyncOp::close(fd, 14))?, 0);
    Ok(())
}
