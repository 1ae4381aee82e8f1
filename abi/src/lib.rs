//! The user/kernel ABI of this kernel, defined once.
//!
//! Both the kernel and `libuser` depend on this crate; neither side may
//! repeat a number or a layout that lives here. Everything is `no_std`,
//! plain data, `#[repr(C)]` where it crosses the boundary, with its size
//! checked at compile time. Every struct that crosses the boundary derives
//! zerocopy's `FromBytes`/`IntoBytes` (re-exported here), so a layout with
//! padding, or a field that not every bit pattern fits, does not compile,
//! and both sides convert to and from bytes with the derived code instead
//! of decoders written by hand.
//!
//! # Calling convention
//!
//! `syscall` with the number in `rax` and up to six arguments in `rdi`, `rsi`,
//! `rdx`, `r10`, `r8`, `r9` (as on Linux). The result comes back in `rax`: a
//! value `>= 0` is success, a value in `-4095..=-1` is `-errno` (see
//! [`errno`]). `rcx` and `r11` are clobbered by the instruction itself; every
//! other register is preserved.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod blktest;
pub mod console;
pub mod crash_log;
pub mod debug_exit;
pub mod disk_test;
pub mod errno;
pub mod fs_test;
pub mod io_uring;
pub mod ring_api;
pub mod syscall;

pub use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Fixed addresses and sizes of a user address space.
pub mod layout {
    /// First address that is not in the user half (canonical lower half end).
    pub const USER_END: u64 = 0x0000_8000_0000_0000;
    /// Lowest address a user mapping may use; page 0 is never mapped so that
    /// null dereferences fault.
    pub const USER_MIN: u64 = 0x1000;
    /// Where user programs are linked (see `user/linker.ld`).
    pub const USER_IMAGE_BASE: u64 = 0x40_0000;
    /// Top of the initial user stack (exclusive).
    pub const USER_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
    /// Size of the initial user stack, mapped eagerly.
    pub const USER_STACK_SIZE: u64 = 256 * 1024;
    /// Lowest address of the stack region; ELF segments must stay below it.
    pub const USER_STACK_BOTTOM: u64 = USER_STACK_TOP - USER_STACK_SIZE;
    /// Base of the io_uring mapping of a process's first ring (seed layout).
    pub const USER_IO_URING_BASE: u64 = 0x2000_0000_0000;
    /// Base of the Ring API context mapping.
    pub const USER_RING_CONTEXT_BASE: u64 = 0x0000_1000_0000_0000;
    /// Base of the system ring the kernel sets up for a process in
    /// `SyscallMode::RingBased` (see [`crate::StartInfo`]); apart from the
    /// rings the program sets up itself, so it takes none of their slots.
    pub const USER_SYSTEM_RING_BASE: u64 = 0x0000_1800_0000_0000;
    /// Page size.
    pub const PAGE_SIZE: u64 = 4096;
}

/// One argument handed to a spawned program: a byte string in user memory.
///
/// `spawn` takes an array of these; a new process finds its own array (copied
/// into its address space) in `rsi` at entry, with the count in `rdi`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Arg {
    pub ptr: u64,
    pub len: u64,
}
const _: () = assert!(core::mem::size_of::<Arg>() == 16);

/// What a new process finds at entry, besides its arguments: `_start`
/// receives a pointer to this (in its stack page) in `rdx`.
///
/// In `SyscallMode::RingBased` (`mode == syscall::mode::RING_BASED`) the
/// kernel has set up a *system ring* for the process before it runs: a ring
/// of the active backend (`backend`, an `abi::syscall::backend` value) with
/// the io_uring ring layout ([`io_uring::ring_layout`]) at `ring_addr`
/// ([`layout::USER_SYSTEM_RING_BASE`]), `sq_entries`/`cq_entries` big. The
/// process does its ordinary I/O (read, write, open, close, fsync) through
/// it, because those direct syscalls fail with `ENOSYS` in that mode. Its
/// doorbell:
/// - io_uring: `io_uring_enter(0, to_submit, min_complete,
///   flags | io_uring::enter_flags::REGISTERED_RING)`: the system ring is
///   registered ring 0 (as if by Linux's `IORING_REGISTER_RING_FDS`); it
///   has no descriptor.
/// - Ring API: `ring_enter(flags | ring_api::enter_flags::SYSTEM_RING,
///   min_complete)`.
///
/// The system ring takes no descriptor, no io_uring slot and not the
/// process's one Ring API context; it cannot be closed or registered
/// with, and it ends with the process. In `Direct` mode every field but
/// `mode` is zero.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct StartInfo {
    /// `abi::syscall::mode` value of this process.
    pub mode: u64,
    /// `abi::syscall::backend` value of the system ring's ring system.
    pub backend: u64,
    /// User address of the system ring.
    pub ring_addr: u64,
    /// SQ entries of the system ring.
    pub sq_entries: u32,
    /// CQ entries of the system ring.
    pub cq_entries: u32,
}
const _: () = assert!(core::mem::size_of::<StartInfo>() == 32);

/// SQ entries of a process's system ring (its CQ has twice as many).
pub const SYSTEM_RING_ENTRIES: u32 = 16;

/// Open flags for `open` (Linux values).
pub mod open_flags {
    pub const O_RDONLY: u64 = 0;
    pub const O_WRONLY: u64 = 1;
    pub const O_RDWR: u64 = 2;
    pub const O_ACCMODE: u64 = 3;
    pub const O_CREAT: u64 = 0o100;
    pub const O_EXCL: u64 = 0o200;
    pub const O_TRUNC: u64 = 0o1000;
    pub const O_APPEND: u64 = 0o2000;
    /// Fail with `ENOTDIR` unless the path names a directory.
    pub const O_DIRECTORY: u64 = 0o200000;
    /// Every flag the kernel understands; anything else is `EINVAL`.
    pub const O_KNOWN: u64 = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_DIRECTORY;
}

/// `whence` values for `lseek` (Linux values).
pub mod seek {
    pub const SEEK_SET: u64 = 0;
    pub const SEEK_CUR: u64 = 1;
    pub const SEEK_END: u64 = 2;
}

/// The well-known file descriptors every process starts with, all on the
/// serial console.
pub mod fd {
    pub const STDIN: u64 = 0;
    pub const STDOUT: u64 = 1;
    pub const STDERR: u64 = 2;
}

/// How a process ended, as reported by `wait`.
///
/// A normal exit reports the code passed to `exit` (any `i32`). A process the
/// kernel killed (a CPU exception in user mode) reports
/// `KILLED_BASE + vector`, which no well-behaved program passes to `exit`.
pub mod status {
    pub const KILLED_BASE: i32 = 0x4000_0000;
    /// A `SyscallMode::RingBased` process the kernel could not give a
    /// system ring (out of memory): it ended before running.
    pub const NO_SYSTEM_RING: i32 = KILLED_BASE + 0x100;
    /// The name of CPU exception `vector` ("page fault"), as the kernel
    /// logs it and a shell reports a killed child; "interrupt" past 31.
    pub const fn exception_name(vector: u8) -> &'static str {
        const NAMES: [&str; 32] = [
            "divide error",
            "debug",
            "NMI",
            "breakpoint",
            "overflow",
            "bound range exceeded",
            "invalid opcode",
            "device not available",
            "double fault",
            "coprocessor segment overrun",
            "invalid TSS",
            "segment not present",
            "stack-segment fault",
            "general protection fault",
            "page fault",
            "reserved (15)",
            "x87 floating-point error",
            "alignment check",
            "machine check",
            "SIMD floating-point error",
            "virtualization exception",
            "control protection",
            "reserved (22)",
            "reserved (23)",
            "reserved (24)",
            "reserved (25)",
            "reserved (26)",
            "reserved (27)",
            "hypervisor injection",
            "VMM communication",
            "security exception",
            "reserved (31)",
        ];
        if (vector as usize) < NAMES.len() {
            NAMES[vector as usize]
        } else {
            "interrupt"
        }
    }

    /// Killed by Ctrl-C on the console as its foreground process (see
    /// `syscall::CONSOLE_SET_FOREGROUND`): `KILLED_BASE + 2`, as a shell
    /// reports SIGINT (2). Vector 2 is the NMI, which never kills a
    /// process, so the value is not ambiguous.
    pub const INTERRUPTED: i32 = KILLED_BASE + 2;
    /// Whether `status` says the process was killed by CPU exception.
    pub const fn killed_by(status: i32) -> Option<u8> {
        if status >= KILLED_BASE && status < KILLED_BASE + 256 {
            Some((status - KILLED_BASE) as u8)
        } else {
            None
        }
    }
}

/// System-wide counters read with [`syscall::SYSINFO`]; tests use them to
/// find leaks.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SysInfo {
    /// Physical frames free in the frame allocator.
    pub free_frames: u64,
    /// Physical frames managed in total.
    pub total_frames: u64,
    /// Bytes currently allocated from the kernel heap.
    pub heap_used: u64,
    /// Live tasks (kernel threads, processes, unreaped zombies).
    pub tasks: u64,
    /// Number of CPUs running.
    pub cpus: u64,
    /// `abi::syscall::mode` value of the calling process.
    pub syscall_mode: u64,
    /// The ring backend chosen at boot (`ring=`): an
    /// `abi::syscall::backend` value. Both ring systems answer their own
    /// syscalls whatever this says; it tells programs (the ring test suite)
    /// which one this boot is about.
    pub ring_backend: u64,
    /// Free frames that only the kernel heap may take: memory made on a
    /// program's behalf is refused (`ENOMEM`) once no more are free.
    pub reserved_frames: u64,
    /// The most live tasks the kernel allows (the `tasks_max` boot
    /// parameter, or derived from RAM); `spawn` past it fails with
    /// `EAGAIN`.
    pub tasks_max: u64,
}
const _: () = assert!(core::mem::size_of::<SysInfo>() == 72);

/// One task as [`syscall::TASK_INFO`] reports it.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TaskInfo {
    /// Task id (a process's pid is its task's id).
    pub tid: u64,
    /// Nanoseconds the task has run on a CPU: the scheduler adds each run
    /// slice when it switches away (for the calling task, its current
    /// slice up to now is included).
    pub run_ns: u64,
    /// Times the scheduler switched to it.
    pub switches: u64,
    /// An `abi::syscall::task_state` value.
    pub state: u32,
    /// 1 for a kernel thread (an SQPOLL poller, the ring timer), 0 for a
    /// user process.
    pub kernel_thread: u32,
    /// The task's name, truncated, NUL-padded.
    pub name: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<TaskInfo>() == 48);

/// Metadata returned by `fstat`-like calls and (later) `STATX`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct FileStat {
    pub size: u64,
    pub ino: u64,
}
const _: () = assert!(core::mem::size_of::<FileStat>() == 16);

/// The head of one record [`syscall::LIST_FILES`] writes: the file's name
/// (`name_len` bytes, not NUL-terminated) follows it, and the next record
/// starts `reclen` bytes after this one's start (a multiple of 8, so every
/// head is aligned).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Bytes from this record's start to the next one's.
    pub reclen: u32,
    /// Bytes of the name after the head.
    pub name_len: u32,
}
const _: () = assert!(core::mem::size_of::<DirEntry>() == 24);

impl DirEntry {
    /// The `reclen` of a record whose name is `name_len` bytes: the head
    /// and the name, rounded up to 8.
    pub const fn record_len(name_len: usize) -> usize {
        (core::mem::size_of::<DirEntry>() + name_len + 7) & !7
    }
}

/// What kind of file a [`Dirent`] or [`Stat`] describes (the `d_type`
/// values of Linux's `getdents64`).
pub mod file_kind {
    /// A regular file (`DT_REG`).
    pub const REGULAR: u8 = 8;
    /// A directory (`DT_DIR`).
    pub const DIRECTORY: u8 = 4;
}

/// The head of one record [`syscall::GETDENTS`] writes: the name
/// (`name_len` bytes, not NUL-terminated) follows it, and the next record
/// starts `reclen` bytes after this one's start (a multiple of 8). The
/// same size as [`DirEntry`], so [`DirEntry::record_len`] applies.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Dirent {
    /// Inode number (within its file system).
    pub ino: u64,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Bytes from this record's start to the next one's.
    pub reclen: u16,
    /// Bytes of the name after the head.
    pub name_len: u16,
    /// [`file_kind`].
    pub kind: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<Dirent>() == 24);

/// What [`syscall::STAT`] writes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Stat {
    pub ino: u64,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// [`file_kind`].
    pub kind: u8,
    pub _pad: [u8; 3],
    /// Names the file has (1; a directory's 2 + its subdirectories).
    pub nlink: u32,
}
const _: () = assert!(core::mem::size_of::<Stat>() == 24);

/// The longest record [`syscall::LIST_FILES`] writes (a name of
/// `PATH_MAX` bytes): a buffer this big always takes the next one.
pub const DIRENT_MAX: usize = DirEntry::record_len(syscall::limits::PATH_MAX);
