//! The io_uring ABI: submission and completion entries with Linux's layout
//! and numbers, setup parameters, the shared ring layout and the register
//! and enter interfaces. Used by both ring systems (io_uring on syscalls
//! 12-14 and the Ring API on 2000-2002).
//!
//! # Ring memory
//! A ring is mapped into its process at a fixed address
//! ([`crate::layout::USER_IO_URING_BASE`] + `slot * RING_SLOT_STRIDE`) with
//! this layout (the seed report's):
//!
//! | offset   | size   | content                                          |
//! |----------|--------|--------------------------------------------------|
//! | `0x0000` | 4 KiB  | SQ header ([`RingHeader`]) + SQ index array at `+0x40` |
//! | `0x1000` | 4 KiB  | CQ header ([`RingHeader`])                       |
//! | `0x2000` | 16 KiB | up to 256 SQEs of 64 bytes                       |
//! | `0x6000` | 4 KiB  | up to 256 CQEs of 16 bytes                       |
//!
//! User space writes SQEs, then the SQ array entries (indices into the SQE
//! array), then publishes them by storing the SQ `tail` (release). The
//! kernel consumes from SQ `head`. The kernel writes CQEs and publishes them
//! by storing CQ `tail`; user space consumes from CQ `head`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `AT_FDCWD`: the `fd` of OPENAT and STATX for paths relative to the
/// current directory (Linux's value). The file system is flat, so it is the
/// only directory descriptor there is.
pub const AT_FDCWD: i32 = -100;

/// `IORING_OP_*` opcodes (Linux numbering).
pub mod op {
    pub const NOP: u8 = 0;
    pub const READV: u8 = 1;
    pub const WRITEV: u8 = 2;
    pub const FSYNC: u8 = 3;
    pub const READ_FIXED: u8 = 4;
    pub const WRITE_FIXED: u8 = 5;
    pub const TIMEOUT: u8 = 11;
    pub const TIMEOUT_REMOVE: u8 = 12;
    pub const ASYNC_CANCEL: u8 = 14;
    pub const LINK_TIMEOUT: u8 = 15;
    pub const OPENAT: u8 = 18;
    pub const CLOSE: u8 = 19;
    pub const STATX: u8 = 21;
    pub const READ: u8 = 22;
    pub const WRITE: u8 = 23;
    pub const RENAMEAT: u8 = 35;
    pub const UNLINKAT: u8 = 36;
    pub const MKDIRAT: u8 = 37;
    /// Linux 6.9's number.
    pub const FTRUNCATE: u8 = 55;
    /// One past the highest opcode this ABI names (probe table size).
    pub const LAST: u8 = 56;
    /// Every opcode this ABI names.
    pub const ALL: [u8; 19] = [
        NOP,
        READV,
        WRITEV,
        FSYNC,
        READ_FIXED,
        WRITE_FIXED,
        TIMEOUT,
        TIMEOUT_REMOVE,
        ASYNC_CANCEL,
        LINK_TIMEOUT,
        OPENAT,
        CLOSE,
        STATX,
        READ,
        WRITE,
        RENAMEAT,
        UNLINKAT,
        MKDIRAT,
        FTRUNCATE,
    ];
}

/// UNLINKAT's `op_flags` (Linux's `AT_REMOVEDIR`): remove a directory,
/// as `rmdir`.
pub const AT_REMOVEDIR: u32 = 0x200;

/// `IOSQE_*` flags in [`Sqe::flags`].
pub mod sqe_flags {
    /// `fd` indexes the registered file table.
    pub const FIXED_FILE: u8 = 1 << 0;
    /// Issue only after every earlier SQE has completed.
    pub const IO_DRAIN: u8 = 1 << 1;
    /// The next SQE runs only if this one succeeds.
    pub const IO_LINK: u8 = 1 << 2;
    /// Like `IO_LINK`, but the chain goes on even if this one fails.
    pub const IO_HARDLINK: u8 = 1 << 3;
    /// Issue from a worker instead of inline (Linux). Accepted; with no
    /// worker threads yet the SQE is issued inline, which gives the same
    /// result.
    pub const ASYNC: u8 = 1 << 4;
    /// Linux: provided buffers. Not supported here (EINVAL).
    pub const BUFFER_SELECT: u8 = 1 << 5;
    /// Post no CQE if the operation succeeds.
    pub const CQE_SKIP_SUCCESS: u8 = 1 << 6;
    /// Every flag this kernel accepts.
    pub const SUPPORTED: u8 =
        FIXED_FILE | IO_DRAIN | IO_LINK | IO_HARDLINK | ASYNC | CQE_SKIP_SUCCESS;
}

/// A submission queue entry, 64 bytes, Linux's `struct io_uring_sqe`.
/// Unions are flattened to their most common name.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Sqe {
    pub opcode: u8,
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    /// File offset (`-1` = current position), or `addr2`; for TIMEOUT the
    /// completion count.
    pub off: u64,
    /// Buffer, iovec array, path or timespec address; for TIMEOUT_REMOVE and
    /// ASYNC_CANCEL the target's `user_data`.
    pub addr: u64,
    pub len: u32,
    /// Per-op flags: `rw_flags`, `fsync_flags`, `open_flags`,
    /// `timeout_flags`, `statx_flags`...
    pub op_flags: u32,
    pub user_data: u64,
    /// Registered buffer index for READ_FIXED/WRITE_FIXED.
    pub buf_index: u16,
    pub personality: u16,
    /// `file_index` / `splice_fd_in`.
    pub file_index: i32,
    /// STATX: the `struct statx` destination.
    pub addr3: u64,
    pub pad: u64,
}
const _: () = assert!(core::mem::size_of::<Sqe>() == 64);
const _: () = assert!(core::mem::offset_of!(Sqe, off) == 8);
const _: () = assert!(core::mem::offset_of!(Sqe, addr) == 16);
const _: () = assert!(core::mem::offset_of!(Sqe, len) == 24);
const _: () = assert!(core::mem::offset_of!(Sqe, op_flags) == 28);
const _: () = assert!(core::mem::offset_of!(Sqe, user_data) == 32);
const _: () = assert!(core::mem::offset_of!(Sqe, buf_index) == 40);
const _: () = assert!(core::mem::offset_of!(Sqe, file_index) == 44);
const _: () = assert!(core::mem::offset_of!(Sqe, addr3) == 48);

impl Sqe {
    /// The entry as eight little-endian words (how it sits in ring memory).
    pub fn to_words(&self) -> [u64; 8] {
        zerocopy::transmute!(*self)
    }

    /// Decodes an entry from eight words (the inverse of [`Sqe::to_words`]).
    pub fn from_words(w: [u64; 8]) -> Self {
        zerocopy::transmute!(w)
    }
}

/// A completion queue entry, 16 bytes, Linux's `struct io_uring_cqe`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Cqe {
    pub user_data: u64,
    /// Result: `>= 0` success, `-errno` failure.
    pub res: i32,
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<Cqe>() == 16);

impl Cqe {
    /// The entry as two little-endian words (how it sits in ring memory).
    pub fn to_words(&self) -> [u64; 2] {
        zerocopy::transmute!(*self)
    }

    /// Decodes an entry from two words (the inverse of [`Cqe::to_words`]).
    pub fn from_words(w: [u64; 2]) -> Self {
        zerocopy::transmute!(w)
    }
}

/// Word offsets (in `u32`s) of the fields of a ring header page.
pub mod header {
    pub const HEAD: usize = 0;
    pub const TAIL: usize = 1;
    pub const MASK: usize = 2;
    pub const ENTRIES: usize = 3;
    pub const FLAGS: usize = 4;
    /// SQ: SQEs dropped because their SQ array index was out of range.
    pub const DROPPED: usize = 5;
    /// CQ: completions that waited in the kernel overflow list.
    pub const OVERFLOW: usize = 6;
    /// SQ page: start of the SQ index array (`u32` per entry).
    pub const ARRAY: usize = 16;
}

/// The header at the start of the SQ and CQ pages, as a struct view.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RingHeader {
    pub head: u32,
    pub tail: u32,
    pub mask: u32,
    pub entries: u32,
    pub flags: u32,
    pub dropped: u32,
    pub overflow: u32,
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<RingHeader>() == 32);

/// Byte offsets of the parts of a ring mapping.
pub mod ring_layout {
    pub const SQ_HEADER: u64 = 0x0000;
    pub const CQ_HEADER: u64 = 0x1000;
    pub const SQ_ARRAY: u64 = SQ_HEADER + 4 * super::header::ARRAY as u64;
    pub const SQES: u64 = 0x2000;
    pub const CQES: u64 = 0x6000;
    /// Size of one ring mapping.
    pub const SIZE: u64 = 0x7000;
    /// Most SQ entries the layout holds.
    pub const MAX_SQ_ENTRIES: u32 = 256;
    /// Most CQ entries the layout holds.
    pub const MAX_CQ_ENTRIES: u32 = 256;
    /// Distance between the fixed addresses of a process's rings.
    pub const RING_SLOT_STRIDE: u64 = 0x10_0000;
    /// Rings one process may have.
    pub const MAX_RINGS_PER_PROCESS: u64 = 16;
}

/// SQ header `flags` bits.
pub mod sq_flags {
    /// The SQPOLL poller sleeps: call enter with `SQ_WAKEUP` to wake it.
    pub const NEED_WAKEUP: u32 = 1 << 0;
    /// The CQ overflowed: completions wait in the kernel.
    pub const CQ_OVERFLOW: u32 = 1 << 1;
}

/// `io_uring_enter` flags.
pub mod enter_flags {
    pub const GETEVENTS: u32 = 1 << 0;
    pub const SQ_WAKEUP: u32 = 1 << 1;
    pub const SQ_WAIT: u32 = 1 << 2;
    /// `fd` is an index into the caller's registered rings, not a
    /// descriptor (Linux's `IORING_ENTER_REGISTERED_RING`): its low 32
    /// bits, below [`super::REGISTERED_RINGS_MAX`] (else `EINVAL`). The
    /// only slot ever filled is 0, with the system ring of a process in
    /// `SyscallMode::RingBased` (`crate::StartInfo`); an empty slot is
    /// `EBADF`, as on Linux.
    pub const REGISTERED_RING: u32 = 1 << 4;
    pub const SUPPORTED: u32 = GETEVENTS | SQ_WAKEUP | SQ_WAIT | REGISTERED_RING;
}

/// Slots of a process's registered-ring table (Linux's
/// `IO_RINGFD_REG_MAX`); see [`enter_flags::REGISTERED_RING`].
pub const REGISTERED_RINGS_MAX: u32 = 16;

/// `io_uring_setup` flags (`IoUringParams::flags`).
pub mod setup_flags {
    /// Reap completions by polling the device (no interrupts), from
    /// `io_uring_enter` with GETEVENTS.
    pub const IOPOLL: u32 = 1 << 0;
    pub const SQPOLL: u32 = 1 << 1;
    pub const SQ_AFF: u32 = 1 << 2;
    pub const CQSIZE: u32 = 1 << 3;
    pub const CLAMP: u32 = 1 << 4;
}

/// `IoUringParams::features` bits this kernel reports.
pub mod features {
    /// One mapping holds both rings.
    pub const SINGLE_MMAP: u32 = 1 << 0;
    /// Completions are never dropped (overflow list).
    pub const NODROP: u32 = 1 << 1;
    /// Data for an SQE is read when it is submitted.
    pub const SUBMIT_STABLE: u32 = 1 << 2;
    /// `off == -1` means the current file position.
    pub const RW_CUR_POS: u32 = 1 << 3;
}

/// `struct io_sqring_offsets`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SqRingOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub flags: u32,
    pub dropped: u32,
    pub array: u32,
    pub resv1: u32,
    /// Here: the user address of the whole ring mapping.
    pub user_addr: u64,
}

/// `struct io_cqring_offsets`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CqRingOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub overflow: u32,
    pub cqes: u32,
    pub flags: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_uring_params`, 120 bytes. Offsets here are from the start of
/// the ring mapping (`sq_off.user_addr`), not mmap offsets.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct IoUringParams {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: SqRingOffsets,
    pub cq_off: CqRingOffsets,
}
const _: () = assert!(core::mem::size_of::<IoUringParams>() == 120);

impl IoUringParams {
    /// Sets `sq_off`/`cq_off` for a ring mapped at `base` with the layout of
    /// [`ring_layout`] (offsets from the mapping base, `user_addr` = base).
    pub fn set_offsets(&mut self, base: u64) {
        let sq = |word: usize| (ring_layout::SQ_HEADER + 4 * word as u64) as u32;
        let cq = |word: usize| (ring_layout::CQ_HEADER + 4 * word as u64) as u32;
        self.sq_off = SqRingOffsets {
            head: sq(header::HEAD),
            tail: sq(header::TAIL),
            ring_mask: sq(header::MASK),
            ring_entries: sq(header::ENTRIES),
            flags: sq(header::FLAGS),
            dropped: sq(header::DROPPED),
            array: ring_layout::SQ_ARRAY as u32,
            resv1: 0,
            user_addr: base,
        };
        self.cq_off = CqRingOffsets {
            head: cq(header::HEAD),
            tail: cq(header::TAIL),
            ring_mask: cq(header::MASK),
            ring_entries: cq(header::ENTRIES),
            overflow: cq(header::OVERFLOW),
            cqes: ring_layout::CQES as u32,
            flags: cq(header::FLAGS),
            resv1: 0,
            user_addr: base,
        };
    }
}

#[cfg(test)]
mod params_tests {
    use super::*;
    use zerocopy::{FromBytes, IntoBytes};

    #[test]
    fn entries_sit_in_ring_words_as_on_linux() {
        let sqe = Sqe {
            opcode: 0x11,
            flags: 0x22,
            ioprio: 0x3344,
            fd: -2,
            len: 0x5566_7788,
            op_flags: 0x99aa_bbcc,
            buf_index: 0x0102,
            personality: 0x0304,
            file_index: 0x0506_0708,
            user_data: 42,
            ..Sqe::default()
        };
        let w = sqe.to_words();
        assert_eq!(w[0], 0xffff_fffe_3344_2211);
        assert_eq!(w[3], 0x99aa_bbcc_5566_7788);
        assert_eq!(w[4], 42);
        assert_eq!(w[5], 0x0506_0708_0304_0102);
        assert_eq!(Sqe::from_words(w), sqe);
        let cqe = Cqe {
            user_data: 7,
            res: -22,
            flags: 3,
        };
        assert_eq!(cqe.to_words(), [7, 0x0000_0003_ffff_ffea]);
        assert_eq!(Cqe::from_words(cqe.to_words()), cqe);
    }

    #[test]
    fn params_bytes_round_trip_with_linux_offsets() {
        let mut p = IoUringParams {
            sq_entries: 8,
            cq_entries: 16,
            flags: setup_flags::CQSIZE,
            ..Default::default()
        };
        p.set_offsets(crate::layout::USER_IO_URING_BASE);
        let bytes = p.as_bytes();
        assert_eq!(IoUringParams::read_from_bytes(bytes), Ok(p));
        // user_addr sits at byte 72 (sq) and 112 (cq) as in Linux's struct.
        assert_eq!(
            u64::from_le_bytes(bytes[72..80].try_into().unwrap()),
            crate::layout::USER_IO_URING_BASE
        );
        assert_eq!(
            u64::from_le_bytes(bytes[112..120].try_into().unwrap()),
            crate::layout::USER_IO_URING_BASE
        );
        assert_eq!(p.sq_off.array as u64, ring_layout::SQ_ARRAY);
        assert_eq!(p.cq_off.cqes as u64, ring_layout::CQES);
    }
}

/// `io_uring_register` opcodes.
pub mod register {
    pub const REGISTER_BUFFERS: u32 = 0;
    pub const UNREGISTER_BUFFERS: u32 = 1;
    pub const REGISTER_FILES: u32 = 2;
    pub const UNREGISTER_FILES: u32 = 3;
    pub const REGISTER_PROBE: u32 = 8;
    /// Most registered buffers per ring.
    pub const MAX_BUFFERS: u32 = 1024;
    /// Most registered files per ring.
    pub const MAX_FILES: u32 = 1024;
    /// Largest registered buffer.
    pub const MAX_BUFFER_LEN: u64 = 1 << 30;
}

/// `struct iovec`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct IoVec {
    pub base: u64,
    pub len: u64,
}
const _: () = assert!(core::mem::size_of::<IoVec>() == 16);

/// Most iovecs one READV/WRITEV takes (Linux's UIO_MAXIOV).
pub const IOV_MAX: u32 = 1024;

/// `struct __kernel_timespec`, for TIMEOUT and LINK_TIMEOUT.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

/// I/O priorities (`Sqe::ioprio` of the read and write ops), Linux's
/// `IOPRIO_PRIO_VALUE(class, level)`: the class in the top three bits.
pub mod ioprio {
    /// Bits below the class.
    pub const CLASS_SHIFT: u16 = 13;
    /// No class: the task's default (level must be 0).
    pub const CLASS_NONE: u16 = 0;
    /// Real time.
    pub const CLASS_RT: u16 = 1;
    /// Best effort.
    pub const CLASS_BE: u16 = 2;
    /// Idle.
    pub const CLASS_IDLE: u16 = 3;
    /// Levels of the RT and BE classes (0 is the highest).
    pub const NR_LEVELS: u16 = 8;
}

/// FSYNC `op_flags`.
pub mod fsync_flags {
    /// Only the data, not the metadata (`fdatasync`).
    pub const DATASYNC: u32 = 1 << 0;
}

/// TIMEOUT `op_flags`.
pub mod timeout_flags {
    /// The timespec is an absolute monotonic time.
    pub const ABS: u32 = 1 << 0;
}

/// `struct io_uring_probe_op`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ProbeOp {
    pub op: u8,
    pub resv: u8,
    /// `PROBE_OP_SUPPORTED` when the kernel supports the opcode.
    pub flags: u16,
    pub resv2: u32,
}
pub const PROBE_OP_SUPPORTED: u16 = 1;

/// `struct io_uring_probe` header; `ops_len` [`ProbeOp`]s follow it.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Probe {
    /// Highest opcode the kernel knows.
    pub last_op: u8,
    /// Number of [`ProbeOp`] entries filled in.
    pub ops_len: u8,
    pub resv: u16,
    pub resv2: [u32; 3],
}
const _: () = assert!(core::mem::size_of::<Probe>() == 16);

/// The `struct statx` subset STATX fills (Linux layout of the first fields).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Statx {
    pub mask: u32,
    pub blksize: u32,
    pub attributes: u64,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u16,
    pub spare0: u16,
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub attributes_mask: u64,
}
const _: () = assert!(core::mem::size_of::<Statx>() == 64);
/// `statx.mask` bits filled.
pub const STATX_BASIC: u32 = 0x7ff;
