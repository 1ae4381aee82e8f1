//! The safe syscall dispatcher.
//!
//! The assembly stub hands over the saved registers at once; here the
//! number selects a handler, the raw arguments are decoded into typed
//! values (user pointers into [`UserSlice`]s), and every error becomes
//! `-errno` in exactly one place, [`ret`].

use crate::arch::syscall::SyscallFrame;
use crate::block::Dir;
use crate::fs::{Begun, BlockFile, File, FileHandle};
use crate::lifecycle;
use crate::process::{Process, UserTask};
use crate::rings::{self, RingCall};
use crate::task;
use crate::usercopy::{read_value, write_value, UserSlice};
use abi::errno::*;
use abi::syscall::limits::{ARGS_MAX, ARG_BYTES_MAX, PATH_MAX};
use abi::syscall::Sysnum;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::size_of;
use core::sync::atomic::Ordering;
use kernel_core::ring::{BackendKind, RawArgs, SyscallMode};

type SysResult = Result<u64, Errno>;

/// Entry from the assembly stub, interrupts off.
pub fn dispatch(frame: &mut SyscallFrame) {
    // The calls that do almost nothing are answered here, without the big
    // match's stack frame; every other call goes through `handle_frame`.
    let value = match frame.rax {
        abi::syscall::GETPID => task::with_current(|t| t.id),
        abi::syscall::CLOCK => crate::time::now_ns(),
        // `io_uring_enter`, the call that runs every ring submission, goes
        // straight to its backend, without the big match's frame. Its
        // number is looked at through `black_box`, so that the compiler
        // does not fold the test into this match (where it would come
        // before getpid's, the number being smaller).
        #[cfg(feature = "iouring")]
        _ if core::hint::black_box(frame.rax) == abi::syscall::IO_URING_ENTER => {
            ring_enter_frame(frame)
        }
        _ => handle_frame(frame),
    };
    // Asked to end while in the kernel (Ctrl-C on the console): the call's
    // result is never seen.
    if let Some(status) = task::pending_kill() {
        lifecycle::exit_current(status);
    }
    frame.rax = value;
    // `sysret` to a non-canonical address would fault in ring 0 with the
    // user's stack; no user page is mapped where that could happen, but the
    // return path does not rely on it.
    if frame.rip >= abi::layout::USER_END {
        lifecycle::exit_current(abi::status::KILLED_BASE + 13);
    }
}

/// The value `rax` returns for `result`: the value, or `-errno`. (The one
/// place where a syscall's error becomes a number; a register, not a
/// `Result` in memory, is what the out-of-line handlers hand back.)
#[inline(always)]
fn ret(result: SysResult) -> u64 {
    match result {
        Ok(value) => value,
        Err(errno) => errno.to_ret() as u64,
    }
}

/// `io_uring_enter`, without the big match's stack frame. Out of line, so
/// that [`dispatch`]'s frame does not grow.
#[cfg(feature = "iouring")]
#[inline(never)]
fn ring_enter_frame(frame: &SyscallFrame) -> u64 {
    ret(rings::iouring_enter(RawArgs([
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ])))
}

/// Every call but the few [`dispatch`] answers itself. Out of line, so
/// that its stack frame is paid only by the calls that need it.
#[inline(never)]
fn handle_frame(frame: &SyscallFrame) -> u64 {
    let args = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    ret(handle(frame.rax, args))
}

fn handle(number: u64, a: [u64; 6]) -> SysResult {
    match Sysnum::try_from(number)? {
        Sysnum::Read => sys_read(a[0], a[1], a[2]),
        Sysnum::Write => sys_write(a[0], a[1], a[2]),
        Sysnum::Close => sys_close(a[0]),
        Sysnum::Lseek => sys_lseek(a[0], a[1] as i64, a[2]),
        Sysnum::Yield => {
            task::yield_now();
            Ok(0)
        }
        Sysnum::GetPid => Ok(task::with_current(|t| t.id)),
        Sysnum::Exit => lifecycle::exit_current(a[0] as i32),
        Sysnum::Fsync | Sysnum::Fdatasync => sys_fsync(a[0]),
        Sysnum::Pread64 => sys_pread(a[0], a[1], a[2], a[3] as i64),
        Sysnum::Pwrite64 => sys_pwrite(a[0], a[1], a[2], a[3] as i64),
        Sysnum::Ftruncate => sys_ftruncate(a[0], a[1] as i64),
        Sysnum::Mkdir => sys_mkdir(a[0], a[1]),
        Sysnum::Rmdir => sys_rmdir(a[0], a[1]),
        Sysnum::Getdents => sys_getdents(a[0], a[1], a[2]),
        Sysnum::Stat => sys_stat(a[0], a[1], a[2]),
        Sysnum::Open => sys_open(abi::io_uring::AT_FDCWD as u64, a[0], a[1], a[2]),
        Sysnum::Openat => sys_open(a[0], a[1], a[2], a[3]),
        Sysnum::Unlink => sys_unlink(a[0], a[1]),
        Sysnum::Spawn => sys_spawn(a[0], a[1], a[2], a[3]),
        Sysnum::Wait => sys_wait(a[0] as i64, a[1]),
        Sysnum::Sleep => {
            task::sleep_ns(a[0]);
            Ok(0)
        }
        Sysnum::Clock => Ok(crate::time::now_ns()),
        Sysnum::Poweroff => lifecycle::shutdown(a[0] as i32),
        Sysnum::SysInfo => sys_sysinfo(a[0]),
        Sysnum::Fstat => sys_fstat(a[0], a[1]),
        Sysnum::TaskInfo => sys_task_info(a[0], a[1]),
        Sysnum::ListFiles => sys_list_files(a[0], a[1], a[2], a[3]),
        Sysnum::TaskList => sys_task_list(a[0], a[1]),
        Sysnum::Rename => sys_rename(a[0], a[1], a[2], a[3]),
        Sysnum::ConsoleMode => sys_console_mode(a[0]),
        Sysnum::ConsoleSetForeground => sys_console_set_foreground(a[0]),
        Sysnum::IoUringSetup => rings::call(BackendKind::IoUring, RingCall::Setup, RawArgs(a)),
        Sysnum::IoUringEnter => rings::call(BackendKind::IoUring, RingCall::Enter, RawArgs(a)),
        Sysnum::IoUringRegister => {
            rings::call(BackendKind::IoUring, RingCall::Register, RawArgs(a))
        }
        Sysnum::RingSetup => rings::call(BackendKind::SqPoll, RingCall::Setup, RawArgs(a)),
        Sysnum::RingEnter => rings::call(BackendKind::SqPoll, RingCall::Enter, RawArgs(a)),
        Sysnum::RingRegister => rings::call(BackendKind::SqPoll, RingCall::Register, RawArgs(a)),
    }
}

/// Runs `f` with the current process's address space.
fn with_space<R>(
    f: impl FnOnce(&crate::arch::paging::AddressSpace) -> Result<R, Errno>,
) -> Result<R, Errno> {
    task::with_current(|t| t.process().with_address_space(f))
}

/// The open file `fd` of the current process.
fn file(fd: u64) -> Result<FileHandle, Errno> {
    task::with_current(|t| t.process().files.lock().get(fd).cloned().ok_or(EBADF))
}

/// Copies a path argument in: 1..=PATH_MAX bytes of UTF-8.
fn user_path(ptr: u64, len: u64) -> Result<String, Errno> {
    if len as usize > PATH_MAX {
        return Err(ENAMETOOLONG);
    }
    let bytes = with_space(|space| UserSlice::new(ptr, len)?.read_vec(space, PATH_MAX as u64))?;
    String::from_utf8(bytes).map_err(|_| EINVAL)
}

/// `ENOSYS` for a process in `SyscallMode::RingBased`: its ordinary I/O
/// goes through its system ring (read, write, open, fsync, close).
fn direct_io() -> Result<(), Errno> {
    match task::with_current(|t| t.process().mode) {
        SyscallMode::Direct => Ok(()),
        SyscallMode::RingBased => Err(ENOSYS),
    }
}

/// Runs `f` with the current process, looked up once for the whole call.
fn with_process<R>(f: impl FnOnce(&Process) -> Result<R, Errno>) -> Result<R, Errno> {
    task::with_current(|t| f(t.process()))
}

/// The open file `fd` of `process` for read, write and fsync (`None`: no
/// such descriptor), or `ENOSYS` in `RingBased` mode: [`direct_io`] and
/// [`file`] in one look at the process.
fn io_file(process: &Process, fd: u64) -> Result<Option<FileHandle>, Errno> {
    match process.mode {
        SyscallMode::Direct => Ok(process.files.lock().get(fd).cloned()),
        SyscallMode::RingBased => Err(ENOSYS),
    }
}

fn sys_read(fd: u64, buf: u64, len: u64) -> SysResult {
    with_process(|process| {
        let file = io_file(process, fd)?;
        let user = UserSlice::new(buf, len)?;
        let file = file.ok_or(EBADF)?;
        if matches!(*file, File::Console) {
            return read_console(process, user);
        }
        if let File::Block(disk) = &*file {
            return block_transfer(process, disk, Dir::Read, buf, len);
        }
        if let File::Disk(d) = &*file {
            return disk_file_read(process, d, None, user);
        }
        process
            .with_address_space(|space| file.read_to_user(space, None, user))
            .map(|n| n as u64)
    })
}

/// Most bytes one read of the console returns (a cooked line is at most
/// `ldisc::LINE_MAX`).
const CONSOLE_READ_MAX: usize = 1024;

/// A blocking read of the console. It sleeps without holding the address
/// space (which its ring threads may need meanwhile): the destination is
/// checked first, the input taken while sleeping, then copied out.
fn read_console(process: &Process, user: UserSlice) -> SysResult {
    let len = (user.len() as usize).min(CONSOLE_READ_MAX);
    let user = user.prefix(len as u64);
    process.with_address_space(|space| user.check(space, true))?;
    let mut buf = [0u8; CONSOLE_READ_MAX];
    let n = crate::console::read(&mut buf[..len])?;
    process.with_address_space(|space| user.prefix(n as u64).write_from(space, &buf[..n]))?;
    Ok(n as u64)
}

fn sys_console_mode(mode: u64) -> SysResult {
    let mode = kernel_core::console::ldisc::Mode::from_value(mode).ok_or(EINVAL)?;
    let pid = task::with_current(|t| t.id);
    Ok(crate::console::set_mode(pid, mode).value())
}

/// Only the caller itself or one of its children may be named: a process
/// cannot have Ctrl-C kill a stranger.
fn sys_console_set_foreground(pid: u64) -> SysResult {
    if pid != abi::console::NO_FOREGROUND {
        let me = task::current();
        let mine = me.id == pid || me.process().children.lock().iter().any(|c| c.id == pid);
        if !mine {
            return Err(ESRCH);
        }
    }
    crate::console::set_foreground(pid);
    Ok(0)
}

fn sys_write(fd: u64, buf: u64, len: u64) -> SysResult {
    with_process(|process| {
        let file = io_file(process, fd)?;
        let user = UserSlice::new(buf, len)?;
        let file = file.ok_or(EBADF)?;
        if let File::Block(disk) = &*file {
            return block_transfer(process, disk, Dir::Write, buf, len);
        }
        if let File::Disk(d) = &*file {
            return disk_file_write(process, d, None, user);
        }
        process
            .with_address_space(|space| file.write_from_user(space, None, user))
            .map(|n| n as u64)
    })
}

/// pread64/pwrite64: a transfer at `offset`, the file position untouched.
fn positioned(fd: u64, buf: u64, len: u64, offset: i64, dir: Dir) -> SysResult {
    let offset = u64::try_from(offset).map_err(|_| EINVAL)?;
    with_process(|process| {
        let file = io_file(process, fd)?.ok_or(EBADF)?;
        let user = UserSlice::new(buf, len)?;
        match &*file {
            File::Console | File::Ring(_) => return Err(ESPIPE),
            File::Block(disk) => {
                return block_transfer_at(process, disk, dir, Some(offset), buf, len)
            }
            File::Disk(d) => {
                return match dir {
                    Dir::Read => disk_file_read(process, d, Some(offset), user),
                    Dir::Write => disk_file_write(process, d, Some(offset), user),
                }
            }
            _ => {}
        }
        process
            .with_address_space(|space| match dir {
                Dir::Read => file.read_to_user(space, Some(offset), user),
                Dir::Write => file.write_from_user(space, Some(offset), user),
            })
            .map(|n| n as u64)
    })
}

fn sys_pread(fd: u64, buf: u64, len: u64, offset: i64) -> SysResult {
    positioned(fd, buf, len, offset, Dir::Read)
}

fn sys_pwrite(fd: u64, buf: u64, len: u64, offset: i64) -> SysResult {
    positioned(fd, buf, len, offset, Dir::Write)
}

fn sys_ftruncate(fd: u64, len: i64) -> SysResult {
    let len = u64::try_from(len).map_err(|_| EINVAL)?;
    file(fd)?.truncate(len)?;
    Ok(0)
}

fn sys_mkdir(path: u64, len: u64) -> SysResult {
    let path = user_path(path, len)?;
    crate::fs::mkdir(None, &path)?;
    Ok(0)
}

fn sys_rmdir(path: u64, len: u64) -> SysResult {
    let path = user_path(path, len)?;
    crate::fs::rmdir(None, &path)?;
    Ok(0)
}

fn sys_stat(path: u64, len: u64, out: u64) -> SysResult {
    let path = user_path(path, len)?;
    // Check the destination first, so the answer is never half-written.
    with_space(|space| UserSlice::new(out, size_of::<abi::Stat>() as u64)?.check(space, true))?;
    let stat = crate::fs::stat(None, &path)?;
    with_space(|space| write_value(space, out, &stat))?;
    Ok(0)
}

fn sys_getdents(fd: u64, buf: u64, len: u64) -> SysResult {
    let file = file(fd)?;
    let user = UserSlice::new(buf, len)?;
    with_space(|space| user.check(space, true))?;
    let mut records = Vec::new();
    let size = len.min(LIST_CHUNK) as usize;
    records.try_reserve_exact(size).map_err(|_| ENOMEM)?;
    records.resize(size, 0);
    let n = file.read_dir(&mut records)?;
    with_space(|space| user.prefix(n as u64).write_from(space, &records[..n]))?;
    Ok(n as u64)
}

/// read/pread of a file on a disk file system. The file system sleeps
/// (on the worker), so this holds no lock meanwhile: the destination is
/// checked, the data read into the kernel, then copied out.
fn disk_file_read(
    process: &Process,
    file: &crate::fs::DiskFile,
    offset: Option<u64>,
    user: UserSlice,
) -> SysResult {
    let user = user.prefix(user.len().min(crate::fs::IO_CHUNK));
    process.with_address_space(|space| user.check(space, true))?;
    let mut data = Vec::new();
    data.try_reserve_exact(user.len() as usize)
        .map_err(|_| ENOMEM)?;
    data.resize(user.len() as usize, 0);
    let n = file.read(offset, &mut data)?;
    process.with_address_space(|space| user.prefix(n as u64).write_from(space, &data[..n]))?;
    Ok(n as u64)
}

/// write/pwrite of a file on a disk file system: the source is copied in
/// under the address-space lock, then written with no lock held.
fn disk_file_write(
    process: &Process,
    file: &crate::fs::DiskFile,
    offset: Option<u64>,
    user: UserSlice,
) -> SysResult {
    let user = user.prefix(user.len().min(crate::fs::IO_CHUNK));
    let data = process.with_address_space(|space| user.read_vec(space, crate::fs::IO_CHUNK))?;
    file.write(offset, &data).map(|n| n as u64)
}

/// read/write on a disk: starts the transfer under the address-space lock,
/// then sleeps (with interrupts on) until the device is done.
fn block_transfer(process: &Process, disk: &BlockFile, dir: Dir, buf: u64, len: u64) -> SysResult {
    block_transfer_at(process, disk, dir, None, buf, len)
}

/// [`block_transfer`] at `offset` (`None`: the file position).
fn block_transfer_at(
    process: &Process,
    disk: &BlockFile,
    dir: Dir,
    offset: Option<u64>,
    buf: u64,
    len: u64,
) -> SysResult {
    let len = len.min(crate::fs::IO_CHUNK);
    let begun = process
        .with_address_space(|space| disk.begin(space, dir, offset, buf, len, process.io.guard()))?;
    match begun {
        Begun::Done(n) => Ok(u64::from(n)),
        Begun::Wait(wait) => Ok(u64::from(wait.wait()?)),
    }
}

fn sys_close(fd: u64) -> SysResult {
    let me = task::current();
    let process = me.process();
    let mut files = process.files.lock();
    // A ring cannot close a ring descriptor (as on Linux), so in RingBased
    // mode `close` stays the way to close those, and only those (no such
    // descriptor is EBADF, as ever).
    if process.mode == SyscallMode::RingBased
        && matches!(files.get(fd).map(|f| &**f), Some(f) if !matches!(f, crate::fs::File::Ring { .. }))
    {
        return Err(ENOSYS);
    }
    let handle = files.remove(fd).map_err(|e| e.errno());
    drop(files);
    let handle = handle?;
    drop(handle);
    Ok(0)
}

fn sys_lseek(fd: u64, offset: i64, whence: u64) -> SysResult {
    file(fd)?.lseek(offset, whence)
}

fn sys_fsync(fd: u64) -> SysResult {
    let (file, guard) = with_process(|process| Ok((io_file(process, fd)?, process.io.guard())))?;
    let file = file.ok_or(EBADF)?;
    if let File::Block(disk) = &*file {
        return disk.disk.flush_sync(Some(guard)).map(|()| 0);
    }
    file.fsync().map(|()| 0)
}

/// open and openat (`dirfd` is `AT_FDCWD` for open).
fn sys_open(dirfd: u64, path: u64, len: u64, flags: u64) -> SysResult {
    direct_io()?;
    if flags & !abi::open_flags::O_KNOWN != 0 {
        return Err(EINVAL);
    }
    let name = user_path(path, len)?;
    let dirfd = dirfd as i32;
    let at = if dirfd == abi::io_uring::AT_FDCWD || name.starts_with('/') {
        None
    } else {
        Some(file(u64::try_from(dirfd).map_err(|_| EBADF)?)?.dir_loc()?)
    };
    let file = crate::fs::open_at(at, &name, flags)?;
    let me = task::current();
    if file.completes_later() {
        me.process().uses_devices.store(true, Ordering::Relaxed);
    }
    let fd = me
        .process()
        .files
        .lock()
        .insert(file)
        .map_err(|e| e.errno())?;
    Ok(fd)
}

fn sys_unlink(path: u64, len: u64) -> SysResult {
    let name = user_path(path, len)?;
    crate::fs::unlink(None, &name)?;
    Ok(0)
}

fn sys_fstat(fd: u64, out: u64) -> SysResult {
    let stat = file(fd)?.stat();
    with_space(|space| write_value(space, out, &stat))?;
    Ok(0)
}

fn sys_spawn(name: u64, name_len: u64, args: u64, nargs: u64) -> SysResult {
    let name = user_path(name, name_len)?;
    if nargs as usize > ARGS_MAX {
        return Err(E2BIG);
    }
    // Every allocation here is fallible (ENOMEM) and bounded by ARGS_MAX
    // and ARG_BYTES_MAX.
    let argv: Vec<Vec<u8>> = with_space(|space| {
        let mut total = 0usize;
        let mut argv = Vec::new();
        argv.try_reserve_exact(nargs.max(1) as usize)
            .map_err(|_| ENOMEM)?;
        for i in 0..nargs {
            let arg: abi::Arg = read_value(space, args.checked_add(i * 16).ok_or(EFAULT)?)?;
            total = total.saturating_add(arg.len as usize);
            if total > ARG_BYTES_MAX {
                return Err(E2BIG);
            }
            argv.push(UserSlice::new(arg.ptr, arg.len)?.read_vec(space, ARG_BYTES_MAX as u64)?);
        }
        if argv.is_empty() {
            let mut arg0 = Vec::new();
            arg0.try_reserve_exact(name.len()).map_err(|_| ENOMEM)?;
            arg0.extend_from_slice(name.as_bytes());
            argv.push(arg0);
        }
        Ok(argv)
    })?;
    let mut refs: Vec<&[u8]> = Vec::new();
    refs.try_reserve_exact(argv.len()).map_err(|_| ENOMEM)?;
    refs.extend(argv.iter().map(Vec::as_slice));
    let me = task::current();
    let child = lifecycle::spawn(&name, &refs, Some(&me), me.process().mode)?;
    Ok(child.id)
}

fn sys_wait(pid: i64, status: u64) -> SysResult {
    // Check the status pointer before reaping, so a bad pointer loses no child.
    if status != 0 {
        with_space(|space| UserSlice::new(status, 4)?.check(space, true))?;
    }
    let (child, code) = lifecycle::wait_child(pid)?;
    if status != 0 {
        with_space(|space| write_value(space, status, &code))?;
    }
    Ok(child)
}

fn sys_sysinfo(out: u64) -> SysResult {
    let (free, total) = crate::mm::frames::counts();
    let me = task::current();
    let info = abi::SysInfo {
        free_frames: free,
        total_frames: total,
        heap_used: crate::mm::heap::used_bytes(),
        tasks: task::count(),
        cpus: crate::arch::smp::online() as u64,
        syscall_mode: lifecycle::mode_value(me.process().mode),
        ring_backend: rings::backend_value(rings::active().map(|b| b.kind())),
        reserved_frames: crate::mm::frames::reserve(),
        tasks_max: task::max(),
    };
    with_space(|space| write_value(space, out, &info))?;
    Ok(0)
}

fn sys_task_info(tid: u64, out: u64) -> SysResult {
    // Check the destination first, so the answer is never half-written.
    with_space(|space| UserSlice::new(out, size_of::<abi::TaskInfo>() as u64)?.check(space, true))?;
    let info = task::info(tid)?;
    with_space(|space| write_value(space, out, &info))?;
    Ok(0)
}

/// Most bytes of records one `list_files` call produces: a bigger buffer
/// is filled only this far (a short count, as `getdents` may return).
const LIST_CHUNK: u64 = 16 * 1024;

fn sys_list_files(after: u64, after_len: u64, buf: u64, len: u64) -> SysResult {
    if after_len as usize > PATH_MAX {
        return Err(ENAMETOOLONG);
    }
    let user = UserSlice::new(buf, len)?;
    let after = with_space(|space| {
        user.check(space, true)?;
        UserSlice::new(after, after_len)?.read_vec(space, PATH_MAX as u64)
    })?;
    let mut records = Vec::new();
    let size = len.min(LIST_CHUNK) as usize;
    records.try_reserve_exact(size).map_err(|_| ENOMEM)?;
    records.resize(size, 0);
    let n = crate::fs::list_after(&after, &mut records)?;
    with_space(|space| user.prefix(n as u64).write_from(space, &records[..n]))?;
    Ok(n as u64)
}

fn sys_task_list(out: u64, max: u64) -> SysResult {
    let max = max.min(abi::syscall::limits::TASK_LIST_MAX as u64);
    let user = UserSlice::new(out, max.checked_mul(8).ok_or(EFAULT)?)?;
    // Check the destination first, so the answer is never half-written.
    with_space(|space| user.check(space, true))?;
    let (ids, total) = task::ids(max as usize)?;
    let bytes: Vec<u8> = {
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(ids.len() * 8).map_err(|_| ENOMEM)?;
        for id in &ids {
            bytes.extend_from_slice(&id.to_ne_bytes());
        }
        bytes
    };
    with_space(|space| user.prefix(bytes.len() as u64).write_from(space, &bytes))?;
    Ok(total as u64)
}

fn sys_rename(old: u64, old_len: u64, new: u64, new_len: u64) -> SysResult {
    let old = user_path(old, old_len)?;
    let new = user_path(new, new_len)?;
    crate::fs::rename(None, &old, None, &new)?;
    Ok(0)
}
