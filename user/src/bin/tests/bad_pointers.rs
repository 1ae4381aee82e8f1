//! Bad user pointers to every syscall that takes one. Each must fail with
//! `EFAULT` (huge lengths may also say `EINVAL`), quickly, and leave nothing
//! half done. In `SyscallMode::RingBased` read, write and open are checked
//! to be refused as syscalls and then made through the system ring with
//! the same pointers ([`hostile::io`]).

use abi::errno::{E2BIG, ECHILD, EFAULT, EINVAL, ENAMETOOLONG, ENOENT};
use abi::fd::STDOUT;
use abi::open_flags::{O_CREAT, O_RDONLY, O_RDWR, O_TRUNC};
use abi::seek::SEEK_CUR;
use abi::syscall as nr;
use abi::syscall::limits::PATH_MAX;
use abi::{Arg, FileStat, SysInfo};
use alloc::vec;
use alloc::vec::Vec;
use core::mem::size_of;
use core::panic::Location;
use libuser::fs::{self, File};
use libuser::test::{fail_at, Case, TestResult};
use libuser::{check, check_eq, check_err, detail, sys, Errno};

use crate::files::Scratch;
use crate::hostile::{self, at_stack_top, bad_buffers, bad_objects, read_only, Bad};

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("write from bad buffers fails with EFAULT, writes nothing", write_bad),
    ("read into bad or read-only buffers fails with EFAULT, reads nothing", read_bad),
    ("huge lengths (1 << 40) fail with EFAULT or EINVAL, quickly", huge_lengths),
    ("open/unlink with bad path pointers fail with EFAULT, change nothing", paths_bad),
    ("spawn with bad name, args array or Arg pointers fails with EFAULT", spawn_bad),
    ("wait with a bad status pointer fails with EFAULT, child not reaped", wait_bad),
    ("sysinfo/fstat with bad out pointers fail with EFAULT", out_pointers_bad),
    ("mkdir/rmdir/stat/getdents/pread/pwrite with bad pointers fail with EFAULT", vfs_bad),
];

const DATA: &[u8; 64] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Passes if `result` is one of the `allowed` errors; the failure names
/// `what` and the caller's line.
#[track_caller]
fn refused(what: &str, result: Result<u64, Errno>, allowed: &[Errno]) -> TestResult {
    match result {
        Err(errno) if allowed.contains(&errno) => Ok(()),
        other => {
            let expected: Vec<&str> = allowed.iter().map(|e| e.name()).collect();
            let at = Location::caller();
            Err(fail_at(
                at.file(),
                at.line(),
                format_args!("{what}: expected {}, got {other:?}", expected.join(" or ")),
            ))
        }
    }
}

fn scratch_file(name: &'static str, data: &[u8]) -> Result<(Scratch, File), Errno> {
    let scratch = Scratch(name);
    let mut file = File::open(name, O_RDWR | O_CREAT | O_TRUNC)?;
    file.write_all(data)?;
    file.seek(0, abi::seek::SEEK_SET)?;
    Ok((scratch, file))
}

fn write_bad() -> TestResult {
    let (_name, file) = scratch_file("t_badwrite", b"")?;
    for Bad { what, ptr, len } in bad_buffers() {
        let result = hostile::io(nr::WRITE, [file.fd(), ptr, len, 0, 0, 0]);
        refused(what, result, &[EFAULT])?;
        let result = hostile::io(nr::WRITE, [STDOUT, ptr, len, 0, 0, 0]);
        refused(what, result, &[EFAULT])?;
    }
    check_eq!(file.stat()?.size, 0);
    check_eq!(sys::lseek(file.fd(), 0, SEEK_CUR)?, 0);
    Ok(())
}

fn read_bad() -> TestResult {
    let (_name, file) = scratch_file("t_badread", DATA)?;
    for Bad { what, ptr, len } in bad_buffers().into_iter().chain(read_only()) {
        let result = hostile::io(nr::READ, [file.fd(), ptr, len, 0, 0, 0]);
        refused(what, result, &[EFAULT])?;
        let offset = sys::lseek(file.fd(), 0, SEEK_CUR)?;
        check!(
            offset == 0,
            "{what}: the failed read moved the offset to {offset}"
        );
    }
    check!(
        hostile::read_only_data_intact(),
        "the kernel wrote into .rodata"
    );
    let mut back = [0u8; 64];
    check_eq!(sys::read(file.fd(), &mut back)?, DATA.len());
    check_eq!(&back, DATA);
    Ok(())
}

fn huge_lengths() -> TestResult {
    const HUGE: u64 = 1 << 40;
    const LEN: &[Errno] = &[EFAULT, EINVAL];
    const PATH: &[Errno] = &[EFAULT, EINVAL, ENAMETOOLONG];
    const ARGS: &[Errno] = &[EFAULT, EINVAL, E2BIG];
    let (_name, file) = scratch_file("t_huge", DATA)?;
    let fd = file.fd();
    let mut stack_buf = [0u8; 64];
    let mut heap_buf = vec![0u8; 64];
    let stack = stack_buf.as_mut_ptr() as u64;
    let heap = heap_buf.as_mut_ptr() as u64;
    // Longer than PATH_MAX and without a NUL: too long as pointer + length
    // and as a NUL-terminated name (the system ring's OPENAT).
    let long_name = [b'x'; PATH_MAX + 1];
    let path = long_name.as_ptr() as u64;
    let name = "spin".as_ptr() as u64;
    let args = [Arg { ptr: name, len: 4 }];
    let huge_arg = [Arg {
        ptr: name,
        len: HUGE,
    }];
    let (args, huge_arg) = (args.as_ptr() as u64, huge_arg.as_ptr() as u64);

    #[rustfmt::skip]
    let calls: [(&str, u64, [u64; 6], &[Errno]); 10] = [
        ("console write", nr::WRITE, [STDOUT, stack, HUGE, 0, 0, 0], LEN),
        ("file write from the stack", nr::WRITE, [fd, stack, HUGE, 0, 0, 0], LEN),
        ("file write from the heap", nr::WRITE, [fd, heap, HUGE, 0, 0, 0], LEN),
        ("file read to the stack", nr::READ, [fd, stack, HUGE, 0, 0, 0], LEN),
        ("file read to the heap", nr::READ, [fd, heap, HUGE, 0, 0, 0], LEN),
        ("open path", nr::OPEN, [path, HUGE, O_RDWR | O_CREAT, 0, 0, 0], PATH),
        ("unlink path", nr::UNLINK, [path, HUGE, 0, 0, 0, 0], PATH),
        ("spawn name", nr::SPAWN, [name, HUGE, args, 1, 0, 0], PATH),
        ("spawn nargs", nr::SPAWN, [name, 4, args, HUGE, 0, 0], ARGS),
        ("spawn Arg len", nr::SPAWN, [name, 4, huge_arg, 1, 0, 0], ARGS),
    ];
    let start = sys::clock_ns()?;
    for (what, number, args, allowed) in calls {
        let result = match number {
            nr::READ | nr::WRITE | nr::OPEN => hostile::io(number, args),
            _ => hostile::syscall(number, args),
        };
        refused(what, result, allowed)?;
    }
    let elapsed_ms = (sys::clock_ns()? - start) / 1_000_000;
    detail!("all refused in {elapsed_ms} ms");
    check!(
        elapsed_ms < 1000,
        "took {elapsed_ms} ms: the kernel walks the range"
    );
    check_eq!(file.stat()?.size, DATA.len() as u64);
    check_eq!(sys::lseek(fd, 0, SEEK_CUR)?, 0);
    check_err!(sys::wait(-1), ECHILD);
    check_err!(File::open("t_no_such_name", O_RDONLY), ENOENT);
    Ok(())
}

fn paths_bad() -> TestResult {
    for Bad { what, ptr, len } in bad_buffers() {
        let result = hostile::io(nr::OPEN, [ptr, len, O_RDWR | O_CREAT, 0, 0, 0]);
        refused(what, result, &[EFAULT])?;
        refused(
            what,
            hostile::syscall(nr::UNLINK, [ptr, len, 0, 0, 0, 0]),
            &[EFAULT],
        )?;
    }

    // A name whose first bytes are readable: a kernel that copied what it
    // could and went on would create or remove `t_half`.
    let half = "t_half";
    let open = |addr| hostile::io(nr::OPEN, [addr, 16, O_RDWR | O_CREAT, 0, 0, 0]);
    refused(
        "open of a name running off the stack",
        at_stack_top(half.as_bytes(), open),
        &[EFAULT],
    )?;
    check_err!(File::open(half, O_RDONLY), ENOENT);

    let _cleanup = Scratch(half);
    fs::write_file(half, DATA)?;
    let unlink = |addr| hostile::syscall(nr::UNLINK, [addr, 16, 0, 0, 0, 0]);
    refused(
        "unlink of a name running off the stack",
        at_stack_top(half.as_bytes(), unlink),
        &[EFAULT],
    )?;
    check_eq!(fs::read_to_vec(half)?, DATA);
    Ok(())
}

fn arg_bytes(arg: Arg) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&arg.ptr.to_le_bytes());
    bytes[8..].copy_from_slice(&arg.len.to_le_bytes());
    bytes
}

fn spawn_bad() -> TestResult {
    let spin = "spin";
    let name = spin.as_ptr() as u64;
    let name_len = spin.len() as u64;
    let good = Arg {
        ptr: name,
        len: name_len,
    };
    let good_args = [good];
    let args_ptr = good_args.as_ptr() as u64;

    for Bad { what, ptr, len } in bad_buffers() {
        let result = hostile::syscall(nr::SPAWN, [ptr, len, args_ptr, 1, 0, 0]);
        refused(&alloc::format!("name: {what}"), result, &[EFAULT])?;
        let args = [good, Arg { ptr, len }];
        let result = hostile::syscall(nr::SPAWN, [name, name_len, args.as_ptr() as u64, 2, 0, 0]);
        refused(&alloc::format!("second Arg: {what}"), result, &[EFAULT])?;
    }
    let array_size = 2 * size_of::<Arg>() as u64;
    for Bad { what, ptr, .. } in bad_objects(array_size, false) {
        let result = hostile::syscall(nr::SPAWN, [name, name_len, ptr, 2, 0, 0]);
        refused(&alloc::format!("args array: {what}"), result, &[EFAULT])?;
    }

    let spawn_named = |addr| hostile::syscall(nr::SPAWN, [addr, 16, args_ptr, 1, 0, 0]);
    let result = at_stack_top(spin.as_bytes(), spawn_named);
    refused("name running off the stack", result, &[EFAULT])?;
    let spawn_with = |addr| hostile::syscall(nr::SPAWN, [name, name_len, addr, 2, 0, 0]);
    let result = at_stack_top(&arg_bytes(good), spawn_with);
    refused("args array running off the stack", result, &[EFAULT])?;

    check_err!(sys::wait(-1), ECHILD);
    Ok(())
}

fn wait_bad() -> TestResult {
    let pid = sys::spawn("spin", &["spin", "7"])?;
    // A null status pointer is allowed (the caller does not want the status),
    // as with Linux's wait4; every other bad pointer is refused.
    let bad = bad_objects(size_of::<i32>() as u64, true);
    for Bad { what, ptr, .. } in bad.into_iter().filter(|b| b.ptr != 0) {
        refused(
            what,
            hostile::syscall(nr::WAIT, [pid, ptr, 0, 0, 0, 0]),
            &[EFAULT],
        )?;
        let any = (-1i64) as u64;
        let result = hostile::syscall(nr::WAIT, [any, ptr, 0, 0, 0, 0]);
        refused(&alloc::format!("any child, {what}"), result, &[EFAULT])?;
    }
    // Misaligned and running off the stack: refusing it as unaligned is fine too.
    let result = hostile::syscall(nr::WAIT, [pid, abi::layout::USER_STACK_TOP - 2, 0, 0, 0, 0]);
    refused("off the top of the stack", result, &[EFAULT, EINVAL])?;
    check!(
        hostile::read_only_data_intact(),
        "the kernel wrote into .rodata"
    );

    check_eq!(sys::wait(pid as i64)?, (pid, 7));
    check_err!(sys::wait(-1), ECHILD);

    let pid = sys::spawn("spin", &["spin", "3"])?;
    let reaped = hostile::syscall(nr::WAIT, [pid, 0, 0, 0, 0, 0]);
    check_eq!(reaped, Ok(pid));
    check_err!(sys::wait(-1), ECHILD);
    Ok(())
}

fn out_pointers_bad() -> TestResult {
    for Bad { what, ptr, .. } in bad_objects(size_of::<SysInfo>() as u64, true) {
        let result = hostile::syscall(nr::SYSINFO, [ptr, 0, 0, 0, 0, 0]);
        refused(&alloc::format!("sysinfo: {what}"), result, &[EFAULT])?;
    }
    let (_name, file) = scratch_file("t_badstat", DATA)?;
    for Bad { what, ptr, .. } in bad_objects(size_of::<FileStat>() as u64, true) {
        let result = hostile::syscall(nr::FSTAT, [file.fd(), ptr, 0, 0, 0, 0]);
        refused(&alloc::format!("fstat: {what}"), result, &[EFAULT])?;
    }
    check!(
        hostile::read_only_data_intact(),
        "the kernel wrote into .rodata"
    );
    let info = sys::sysinfo()?;
    check!(
        info.free_frames <= info.total_frames && info.cpus >= 1,
        "odd sysinfo: {info:?}"
    );
    check_eq!(file.stat()?.size, DATA.len() as u64);
    Ok(())
}

fn vfs_bad() -> TestResult {
    let dir = "/t_vfsbad";
    let _cleanup = DirScratch(dir);
    sys::mkdir(dir)?;
    let stat_out = |ptr| {
        hostile::syscall(
            nr::STAT,
            [dir.as_ptr() as u64, dir.len() as u64, ptr, 0, 0, 0],
        )
    };
    for Bad { what, ptr, len } in bad_buffers() {
        for call in [nr::MKDIR, nr::RMDIR, nr::STAT] {
            let result = hostile::syscall(call, [ptr, len, 0x1000, 0, 0, 0]);
            refused(&alloc::format!("{call}: {what}"), result, &[EFAULT])?;
        }
    }
    for Bad { what, ptr, .. } in bad_objects(size_of::<abi::Stat>() as u64, true) {
        refused(
            &alloc::format!("stat out: {what}"),
            stat_out(ptr),
            &[EFAULT],
        )?;
    }
    // A name running off the stack makes nothing.
    let mkdir = |addr| hostile::syscall(nr::MKDIR, [addr, 16, 0, 0, 0, 0]);
    refused(
        "mkdir of a name running off the stack",
        at_stack_top(b"t_halfdir", mkdir),
        &[EFAULT],
    )?;
    check_err!(sys::stat("t_halfdir"), ENOENT);
    // getdents into bad buffers moves nothing: the listing is still whole.
    let listing = File::open(dir, O_RDONLY)?;
    fs::write_file("/t_vfsbad/f", DATA)?;
    for Bad { what, ptr, len } in bad_buffers().into_iter().chain(read_only()) {
        let result = hostile::syscall(nr::GETDENTS, [listing.fd(), ptr, len, 0, 0, 0]);
        refused(&alloc::format!("getdents: {what}"), result, &[EFAULT])?;
    }
    let mut buf = [0u8; 256];
    check!(
        sys::getdents(listing.fd(), &mut buf)? > 0,
        "the cursor moved on a fault"
    );
    if libuser::sysring::active() {
        return Ok(());
    }
    let file = File::open("/t_vfsbad/f", O_RDWR)?;
    for Bad { what, ptr, len } in bad_buffers() {
        let result = hostile::syscall(nr::PWRITE64, [file.fd(), ptr, len, 0, 0, 0]);
        refused(&alloc::format!("pwrite: {what}"), result, &[EFAULT])?;
    }
    for Bad { what, ptr, len } in bad_buffers().into_iter().chain(read_only()) {
        let result = hostile::syscall(nr::PREAD64, [file.fd(), ptr, len, 0, 0, 0]);
        refused(&alloc::format!("pread: {what}"), result, &[EFAULT])?;
    }
    check_eq!(fs::read_to_vec("/t_vfsbad/f")?, DATA);
    Ok(())
}

/// A directory (with at most the file `f` in it) removed when the case
/// ends.
struct DirScratch(&'static str);

impl Drop for DirScratch {
    fn drop(&mut self) {
        let _ = sys::unlink(&alloc::format!("{}/f", self.0));
        let _ = sys::rmdir(self.0);
    }
}
