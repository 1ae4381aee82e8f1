//! Syscall numbers and their argument conventions.
//!
//! Where a call means what Linux's call of the same number means, it has
//! Linux's x86_64 number (read, write, close, lseek, sched_yield, getpid,
//! exit, fsync, unlink, pread64, pwrite64, fdatasync, ftruncate). Calls
//! whose arguments differ from Linux's (paths are passed as pointer +
//! length, never NUL-terminated) or that Linux lacks have numbers of their
//! own at 1000 and above (the file-system calls at 1030-1049). Numbers 12-14 and 2000-2002 belong
//! to the two ring systems.

/// `read(fd, buf, len) -> bytes read`
pub const READ: u64 = 0;
/// `write(fd, buf, len) -> bytes written`. fds 1 and 2 are the console.
pub const WRITE: u64 = 1;
/// `close(fd) -> 0`
pub const CLOSE: u64 = 3;
/// `lseek(fd, offset: i64, whence) -> new offset`
pub const LSEEK: u64 = 8;
/// `io_uring_setup(entries, params) -> ring fd` (reserved: ring issue)
pub const IO_URING_SETUP: u64 = 12;
/// `io_uring_enter(fd, to_submit, min_complete, flags) -> submitted`
pub const IO_URING_ENTER: u64 = 13;
/// `io_uring_register(fd, opcode, arg, nr_args) -> 0`
pub const IO_URING_REGISTER: u64 = 14;
/// `sched_yield() -> 0`
pub const YIELD: u64 = 24;
/// `getpid() -> pid`
pub const GETPID: u64 = 39;
/// `exit(code: i32) -> !`
pub const EXIT: u64 = 60;
/// `pread64(fd, buf, len, offset) -> bytes read`: reads at `offset`
/// without moving the file position (`ESPIPE` on the console or a ring).
pub const PREAD64: u64 = 17;
/// `pwrite64(fd, buf, len, offset) -> bytes written`: writes at `offset`
/// without moving the file position (with `O_APPEND` the data goes at the
/// end, as on Linux).
pub const PWRITE64: u64 = 18;
/// `fsync(fd) -> 0`
pub const FSYNC: u64 = 74;
/// `fdatasync(fd) -> 0`: as `fsync`, but metadata not needed to read the
/// data back (times) may stay unwritten.
pub const FDATASYNC: u64 = 75;
/// `ftruncate(fd, length: i64) -> 0`: sets a regular file's size (`EINVAL`
/// for a negative length, a descriptor not open for writing, or anything
/// but a regular file).
pub const FTRUNCATE: u64 = 77;

/// `open(path, path_len, flags) -> fd` (flags: [`crate::open_flags`])
pub const OPEN: u64 = 1000;
/// `unlink(path, path_len) -> 0`
pub const UNLINK: u64 = 1001;
/// `spawn(name, name_len, args: *const Arg, nargs) -> pid`: runs the program
/// `name` from the file system as a child of the caller. `args` is the whole
/// argument vector, `argv[0]` included (conventionally the name); with
/// `nargs == 0` the child gets `argv = [name]`.
pub const SPAWN: u64 = 1002;
/// `wait(pid: i64, status: *mut i32) -> pid`: waits for the child `pid`
/// (or any child when `pid == -1`) to end and reaps it. A null `status`
/// means the caller does not want the status (as with Linux's `wait4`).
pub const WAIT: u64 = 1003;
/// `sleep(ns) -> 0`
pub const SLEEP: u64 = 1004;
/// `clock() -> monotonic nanoseconds since boot`
pub const CLOCK: u64 = 1005;
/// `poweroff(code) -> !`: ends the machine; code 0 reports success to the
/// test harness, anything else failure.
pub const POWEROFF: u64 = 1006;
/// `sysinfo(out: *mut SysInfo) -> 0`
pub const SYSINFO: u64 = 1007;
/// `fstat(fd, out: *mut FileStat) -> 0`
pub const FSTAT: u64 = 1008;

/// `task_info(tid, out: *mut TaskInfo) -> 0`: run time and state of any
/// live task (`ESRCH` if there is none with that id).
pub const TASK_INFO: u64 = 1009;

/// `list_files(after, after_len, buf, buf_len) -> bytes`: lists `/` (its
/// files and directories, a directory with size 0) the way `getdents`
/// lists a directory; [`GETDENTS`] lists any directory. Fills `buf` with
/// [`crate::DirEntry`] records, in byte order of their names, of the files
/// whose names sort strictly after the `after_len` bytes at `after` (an
/// empty `after` starts at the first file), as many whole records as fit,
/// and returns how many bytes it wrote; 0 means there are no more. To list
/// everything, call again with the last name returned as `after`.
/// `EINVAL` if `buf_len` cannot hold the next record (a buffer of
/// [`crate::DIRENT_MAX`] bytes always can).
pub const LIST_FILES: u64 = 1020;

/// `task_list(out: *mut u64, max) -> count`: writes the ids of up to `max`
/// live tasks (kernel threads and processes, unreaped zombies included) to
/// `out`, in ascending order, and returns how many live tasks there are
/// (which may be more than `max`; `max == 0` only counts them). Each id
/// can then be asked with [`TASK_INFO`]. At most
/// [`limits::TASK_LIST_MAX`] ids are written per call.
pub const TASK_LIST: u64 = 1021;

/// `rename(old, old_len, new, new_len) -> 0`: gives the file `old` the name
/// `new`, replacing any file called `new` (as POSIX `rename`: open handles
/// of either file stay valid). `ENOENT` if `old` does not exist.
pub const RENAME: u64 = 1022;

/// `mkdir(path, path_len, mode) -> 0`: creates a directory (`mode` is
/// accepted and ignored: there are no permissions). `EEXIST` if the name
/// exists, `ENOENT`/`ENOTDIR` if a directory on the way is missing or a
/// file. Path rules: `docs/vfs.md`.
pub const MKDIR: u64 = 1030;
/// `rmdir(path, path_len) -> 0`: removes an empty directory (`ENOTEMPTY`
/// otherwise, `ENOTDIR` for a file, `EBUSY` for a mount point or `/`,
/// `EINVAL` for a last component `.`).
pub const RMDIR: u64 = 1031;
/// `getdents(fd, buf, buf_len) -> bytes`: reads the directory open at `fd`
/// (opened with `open`, read-only) from its position, as Linux's
/// `getdents64`: fills `buf` with [`crate::Dirent`] records, as many whole
/// ones as fit, and moves the position past them; 0 at the end. `EINVAL`
/// if `buf_len` cannot hold the next record ([`crate::DIRENT_MAX`] bytes
/// always can), `ENOTDIR` if `fd` is not a directory. `.` and `..` are
/// not listed. `lseek(fd, 0, SEEK_SET)` starts over.
pub const GETDENTS: u64 = 1032;
/// `stat(path, path_len, out: *mut Stat) -> 0`: metadata of the file or
/// directory at `path`.
pub const STAT: u64 = 1033;
/// `openat(dirfd: i32, path, path_len, flags) -> fd`: [`OPEN`] with a
/// relative `path` starting at the directory open at `dirfd` (`EBADF` if
/// none, `ENOTDIR` if a file), or at `/` for `AT_FDCWD` (-100); an
/// absolute path ignores `dirfd`.
pub const OPENAT: u64 = 1034;

/// `console_mode(mode) -> previous mode`: [`crate::console::MODE_COOKED`]
/// or [`crate::console::MODE_RAW`] for the console's input (`EINVAL` for
/// anything else). The mode belongs to the console, not to the caller.
pub const CONSOLE_MODE: u64 = 1010;
/// `console_set_foreground(pid) -> 0`: names the process that Ctrl-C
/// interrupts (cooked mode): it is killed with
/// [`crate::status::INTERRUPTED`]. `pid` must be the caller or one of its
/// children (`ESRCH` otherwise), or [`crate::console::NO_FOREGROUND`].
pub const CONSOLE_SET_FOREGROUND: u64 = 1011;

/// `ring_enter(flags, min_complete) -> consumed`: the Ring API doorbell
/// (see [`crate::ring_api`]).
pub const RING_ENTER: u64 = 2000;
/// `ring_register(opcode, arg, nr) -> 0` (see [`crate::ring_api`]).
pub const RING_REGISTER: u64 = 2001;
/// `ring_setup(params: *mut RingSetupParams) -> 0` (see [`crate::ring_api`]).
pub const RING_SETUP: u64 = 2002;

/// Declares [`Sysnum`] from the constants above, so that each number is
/// written once.
macro_rules! sysnums {
    ($($variant:ident = $number:ident),* $(,)?) => {
        /// A syscall number the kernel knows, decoded from `rax` before
        /// dispatch (`Sysnum::try_from(rax)`; an unknown number is
        /// `ENOSYS`), so that the dispatcher matches on a closed set.
        #[repr(u64)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Sysnum {
            $($variant = $number),*
        }

        impl Sysnum {
            /// Every syscall, in the order declared.
            pub const ALL: &'static [Sysnum] = &[$(Sysnum::$variant),*];
        }

        impl TryFrom<u64> for Sysnum {
            type Error = crate::errno::Errno;

            fn try_from(number: u64) -> Result<Sysnum, Self::Error> {
                match number {
                    $($number => Ok(Sysnum::$variant),)*
                    _ => Err(crate::errno::ENOSYS),
                }
            }
        }
    };
}

sysnums! {
    Read = READ,
    Write = WRITE,
    Close = CLOSE,
    Lseek = LSEEK,
    IoUringSetup = IO_URING_SETUP,
    IoUringEnter = IO_URING_ENTER,
    IoUringRegister = IO_URING_REGISTER,
    Yield = YIELD,
    GetPid = GETPID,
    Exit = EXIT,
    Fsync = FSYNC,
    Pread64 = PREAD64,
    Pwrite64 = PWRITE64,
    Fdatasync = FDATASYNC,
    Ftruncate = FTRUNCATE,
    Mkdir = MKDIR,
    Rmdir = RMDIR,
    Getdents = GETDENTS,
    Stat = STAT,
    Openat = OPENAT,
    Open = OPEN,
    Unlink = UNLINK,
    Spawn = SPAWN,
    Wait = WAIT,
    Sleep = SLEEP,
    Clock = CLOCK,
    Poweroff = POWEROFF,
    SysInfo = SYSINFO,
    Fstat = FSTAT,
    TaskInfo = TASK_INFO,
    ListFiles = LIST_FILES,
    TaskList = TASK_LIST,
    Rename = RENAME,
    ConsoleMode = CONSOLE_MODE,
    ConsoleSetForeground = CONSOLE_SET_FOREGROUND,
    RingEnter = RING_ENTER,
    RingRegister = RING_REGISTER,
    RingSetup = RING_SETUP,
}

/// Limits the kernel enforces on syscall arguments.
pub mod limits {
    /// Longest path or program name, in bytes (Linux allows 4096; paths
    /// are copied onto kernel stacks here, so they stay short).
    pub const PATH_MAX: usize = 255;
    /// Longest component of a path (a file or directory name), as Linux's
    /// `NAME_MAX`.
    pub const NAME_MAX: usize = 255;
    /// Most arguments `spawn` accepts.
    pub const ARGS_MAX: usize = 32;
    /// Total bytes of all arguments `spawn` accepts.
    pub const ARG_BYTES_MAX: usize = 4096;
    /// Most open file descriptors per process.
    pub const FDS_MAX: usize = 64;
    /// Most children a process may have at once, running or ended but not
    /// yet reaped by `wait`; past it `spawn` fails with `EAGAIN` (as
    /// Linux's `fork` does at `RLIMIT_NPROC`). Every process holds at
    /// least its user stack and its image (some 1.5 MiB for the test
    /// programs), so one parent cannot take more than a bounded share of
    /// memory by itself.
    pub const CHILDREN_MAX: usize = 64;
    /// Most task ids one `task_list` call writes.
    pub const TASK_LIST_MAX: usize = 4096;
}

/// `SysInfo::syscall_mode` values.
pub mod mode {
    pub const DIRECT: u64 = 0;
    pub const RING_BASED: u64 = 1;
}

/// `SysInfo::ring_backend` values: the `ring=` choice.
pub mod backend {
    /// No ring backend is compiled in.
    pub const NONE: u64 = 0;
    /// io_uring, syscalls 12-14 (`ring=iouring`).
    pub const IO_URING: u64 = 1;
    /// The Ring API with SQPOLL, syscalls 2000-2002 (`ring=sqpoll`).
    pub const RING_API: u64 = 2;
}

/// `TaskInfo::state` values.
pub mod task_state {
    pub const READY: u32 = 0;
    pub const RUNNING: u32 = 1;
    pub const BLOCKED: u32 = 2;
    /// Ended, not yet reaped.
    pub const ZOMBIE: u32 = 3;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysnum_round_trips_and_refuses_unknown_numbers() {
        for &call in Sysnum::ALL {
            assert_eq!(Sysnum::try_from(call as u64), Ok(call));
        }
        assert_eq!(Sysnum::try_from(IO_URING_ENTER), Ok(Sysnum::IoUringEnter));
        for unknown in [2, 15, 999, 1999, 2003, u64::MAX] {
            assert_eq!(Sysnum::try_from(unknown), Err(crate::errno::ENOSYS));
        }
    }
}
