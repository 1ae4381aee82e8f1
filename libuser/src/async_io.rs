//! Safe asynchronous I/O over a ring: [`AsyncContext`] queues
//! [`AsyncOp`]s, submits them and hands back [`Completion`]s. The ring is an
//! io_uring ([`AsyncContext::new`]) or the process's Ring API context, with
//! or without SQPOLL ([`AsyncContext::new_ring_api`]); the API is the same.
//!
//! ```ignore
//! use libuser::async_io::{AsyncContext, AsyncOp};
//! let mut ctx = AsyncContext::new()?;            // io_uring_setup(256)
//! ctx.submit(AsyncOp::read(fd, vec![0; 512], 0, 7))?;
//! ctx.submit_and_wait(1)?;                       // io_uring_enter(1, 1, GETEVENTS)
//! let mut c = ctx.get_completion().unwrap();
//! assert_eq!(c.user_data, 7);
//! let data = c.take_buffer().unwrap();           // truncated to c.result bytes
//! ```
//!
//! # Lending memory to the kernel
//!
//! An operation names memory that the kernel reads or writes *when the
//! operation runs*, which may be long after `submit` returned (a read linked
//! behind a timeout, anything behind a drain). So the memory must stay
//! valid, and untouched by the program, until the operation's completion.
//! The safe API guarantees that by ownership:
//!
//! - Every builder that needs memory takes it by value: `read`/`write` move
//!   a `Vec<u8>` in, `readv`/`writev` a `Vec<Vec<u8>>` (the iovec array is
//!   built and kept by the op), `openat`/`statx` copy the path into an owned
//!   NUL-terminated buffer, `statx` allocates its `Statx` destination,
//!   `timeout`/`link_timeout` box their `Timespec`.
//! - The context keeps all of it in its in-flight table from `submit` until
//!   the CQE arrives; [`AsyncContext::get_completion`] gives it back in the
//!   [`Completion`] ([`Completion::take_buffer`] — a read buffer is truncated
//!   to the bytes read — [`Completion::take_buffers`],
//!   [`Completion::statx`]).
//! - Registered ("fixed") buffers are moved into the context by
//!   [`AsyncContext::register_buffers`]; the program reaches them only
//!   through [`AsyncContext::fixed_buffer`] / [`AsyncContext::fixed_buffer_mut`],
//!   which fail with `EBUSY` while any operation using that buffer is in
//!   flight, and [`AsyncContext::unregister_buffers`] gives them back once
//!   none is.
//! - An operation with [`AsyncOp::skip_success`] posts no CQE when it
//!   succeeds, so the context cannot see it end. Its memory comes back only
//!   if it fails, or it is freed when a later operation flagged
//!   [`AsyncOp::drain`] completes (a drained operation starts only after
//!   everything before it finished). Otherwise it stays with the context.
//! - Dropping the context closes the ring (it owns the ring, and an
//!   io_uring's descriptor, which [`crate::sys::close`] refuses with
//!   `EBUSY` while the context lives). A successful close drops the operations still pending
//!   in the kernel, without completions, and unmaps the ring. Their memory
//!   is leaked on purpose all the same, never freed: `drop` cannot see
//!   whether the close succeeded, and after a failed one the kernel may
//!   still run them. Leaking is sound either way.
//!
//! The kernel sees the context's own tokens in `user_data`; the context maps
//! them back, so [`Completion::user_data`] is the caller's value, and
//! [`AsyncOp::cancel`] / [`AsyncOp::timeout_remove`] name their target by the
//! caller's `user_data` (the oldest in-flight operation with it).
//!
//! # What needs `unsafe`
//!
//! The `*_raw` builders ([`AsyncOp::read_raw`] and friends, and
//! [`AsyncOp::from_sqe`]) take plain addresses. They are `unsafe fn`s: the
//! caller promises that the memory stays valid and untouched until the
//! completion (or that the address is one the kernel must refuse, for tests
//! of the kernel's checks). Submitting such an op is then safe. The `unsafe`
//! blocks of this module only push SQEs whose memory the context owns.

use crate::uring::IoUring;
use abi::errno::Errno;
use abi::errno::{EBUSY, EINVAL};
use abi::io_uring::{enter_flags, op, sq_flags, sqe_flags, IoVec, Sqe, Statx, Timespec};
use alloc::boxed::Box;
use alloc::vec::Vec;

pub use abi::io_uring::AT_FDCWD;

/// The `offset` that means "at the file's current position" (`off = -1`).
pub const CURRENT_POSITION: u64 = u64::MAX;

/// Entries of the ring [`AsyncContext::new`] sets up.
pub const DEFAULT_ENTRIES: u32 = 256;

/// A finished operation.
#[derive(Debug)]
pub struct Completion {
    /// The `user_data` the operation was built with.
    pub user_data: u64,
    /// `>= 0` success (bytes moved, new fd, ...), `-errno` failure.
    pub result: i32,
    /// The CQE flags.
    pub flags: u32,
    payload: Payload,
}

/// What a completion gives back.
#[derive(Debug)]
enum Payload {
    None,
    Buffer(Vec<u8>),
    Buffers(Vec<Vec<u8>>),
    Statx(Box<Statx>),
}

impl Completion {
    /// The error, if the operation failed.
    pub fn errno(&self) -> Option<Errno> {
        Errno::from_res(self.result).err()
    }

    /// The buffer of a `read` (truncated to the bytes read when it
    /// succeeded) or a `write` (unchanged). `None` for other ops, or if
    /// already taken.
    pub fn take_buffer(&mut self) -> Option<Vec<u8>> {
        match core::mem::replace(&mut self.payload, Payload::None) {
            Payload::Buffer(buf) => Some(buf),
            other => {
                self.payload = other;
                None
            }
        }
    }

    /// The buffers of a `readv`/`writev` (not truncated: `result` says how
    /// many bytes moved in total). Empty for other ops.
    pub fn take_buffers(&mut self) -> Vec<Vec<u8>> {
        match core::mem::replace(&mut self.payload, Payload::None) {
            Payload::Buffers(bufs) => bufs,
            other => {
                self.payload = other;
                Vec::new()
            }
        }
    }

    /// The `Statx` a `statx` op filled (meaningful when `result == 0`).
    pub fn statx(&self) -> Option<&Statx> {
        match &self.payload {
            Payload::Statx(statx) => Some(statx),
            _ => None,
        }
    }
}

/// Memory an operation lends to the kernel, owned until its completion.
#[derive(Debug)]
enum Lent {
    Nothing,
    ReadInto(Vec<u8>),
    WriteFrom(Vec<u8>),
    Vectored {
        bufs: Vec<Vec<u8>>,
        /// Built from `bufs`; the kernel reads it.
        _iovecs: Vec<IoVec>,
    },
    /// A NUL-terminated path the kernel reads.
    Path {
        _path: Vec<u8>,
    },
    /// Two of them (RENAMEAT).
    Paths {
        _old: Vec<u8>,
        _new: Vec<u8>,
    },
    Statx {
        _path: Vec<u8>,
        out: Box<Statx>,
    },
    /// The kernel reads it at submission; kept until the end anyway.
    Timespec {
        _ts: Box<Timespec>,
    },
    /// Uses registered buffer `index` (tracked as busy).
    Fixed(u16),
}

/// A range of a registered buffer, resolved to an address at submit time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FixedRange {
    index: u16,
    offset: usize,
}

/// One operation, ready to be submitted to an [`AsyncContext`].
#[derive(Debug)]
pub struct AsyncOp {
    sqe: Sqe,
    lent: Lent,
    /// For `cancel`/`timeout_remove`: the caller's `user_data` of the
    /// target, translated to the context's token at submit.
    target: Option<u64>,
    fixed: Option<FixedRange>,
}

fn base_sqe(opcode: u8, fd: i32, user_data: u64) -> Sqe {
    Sqe {
        opcode,
        fd,
        user_data,
        ..Sqe::default()
    }
}

/// A READ or WRITE of `len` bytes at the user address `addr`, lending
/// nothing (the `*_raw` builders' callers answer for the memory).
fn rw_raw(opcode: u8, fd: i32, addr: u64, len: u32, offset: u64, user_data: u64) -> AsyncOp {
    let mut sqe = base_sqe(opcode, fd, user_data);
    sqe.addr = addr;
    sqe.len = len;
    sqe.off = offset;
    AsyncOp::new(sqe, Lent::Nothing)
}

/// `path` as an owned NUL-terminated byte string.
fn c_path(path: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(path.len() + 1);
    bytes.extend_from_slice(path.as_bytes());
    bytes.push(0);
    bytes
}

fn iovecs_of(bufs: &mut [Vec<u8>]) -> Vec<IoVec> {
    bufs.iter_mut()
        .map(|buf| IoVec {
            base: buf.as_mut_ptr() as u64,
            len: buf.len() as u64,
        })
        .collect()
}

impl AsyncOp {
    fn new(sqe: Sqe, lent: Lent) -> AsyncOp {
        AsyncOp {
            sqe,
            lent,
            target: None,
            fixed: None,
        }
    }

    /// The SQE as it stands (before the context fills in its token and any
    /// registered-buffer address).
    pub fn sqe(&self) -> &Sqe {
        &self.sqe
    }

    /// The caller's `user_data`.
    pub fn user_data(&self) -> u64 {
        self.sqe.user_data
    }

    /// `IORING_OP_NOP`.
    pub fn nop(user_data: u64) -> AsyncOp {
        AsyncOp::new(base_sqe(op::NOP, 0, user_data), Lent::Nothing)
    }

    /// `IORING_OP_READ` of `buf.len()` bytes at `offset`
    /// ([`CURRENT_POSITION`] for the file position) into `buf`.
    pub fn read(fd: i32, mut buf: Vec<u8>, offset: u64, user_data: u64) -> AsyncOp {
        let mut sqe = base_sqe(op::READ, fd, user_data);
        sqe.addr = buf.as_mut_ptr() as u64;
        sqe.len = buf.len() as u32;
        sqe.off = offset;
        AsyncOp::new(sqe, Lent::ReadInto(buf))
    }

    /// `IORING_OP_WRITE` of all of `buf` at `offset`.
    pub fn write(fd: i32, buf: Vec<u8>, offset: u64, user_data: u64) -> AsyncOp {
        let mut sqe = base_sqe(op::WRITE, fd, user_data);
        sqe.addr = buf.as_ptr() as u64;
        sqe.len = buf.len() as u32;
        sqe.off = offset;
        AsyncOp::new(sqe, Lent::WriteFrom(buf))
    }

    fn vectored(opcode: u8, fd: i32, mut bufs: Vec<Vec<u8>>, offset: u64, ud: u64) -> AsyncOp {
        let iovecs = iovecs_of(&mut bufs);
        let mut sqe = base_sqe(opcode, fd, ud);
        sqe.addr = iovecs.as_ptr() as u64;
        sqe.len = iovecs.len() as u32;
        sqe.off = offset;
        AsyncOp::new(
            sqe,
            Lent::Vectored {
                bufs,
                _iovecs: iovecs,
            },
        )
    }

    /// `IORING_OP_READV` into `bufs`, in order, at `offset`.
    pub fn readv(fd: i32, bufs: Vec<Vec<u8>>, offset: u64, user_data: u64) -> AsyncOp {
        AsyncOp::vectored(op::READV, fd, bufs, offset, user_data)
    }

    /// `IORING_OP_WRITEV` from `bufs`, in order, at `offset`.
    pub fn writev(fd: i32, bufs: Vec<Vec<u8>>, offset: u64, user_data: u64) -> AsyncOp {
        AsyncOp::vectored(op::WRITEV, fd, bufs, offset, user_data)
    }

    fn fixed_op(
        opcode: u8,
        fd: i32,
        index: u16,
        buf_offset: usize,
        len: u32,
        offset: u64,
        ud: u64,
    ) -> AsyncOp {
        let mut sqe = base_sqe(opcode, fd, ud);
        sqe.len = len;
        sqe.off = offset;
        sqe.buf_index = index;
        AsyncOp {
            fixed: Some(FixedRange {
                index,
                offset: buf_offset,
            }),
            ..AsyncOp::new(sqe, Lent::Fixed(index))
        }
    }

    /// `IORING_OP_READ_FIXED`: `len` bytes at file `offset` into registered
    /// buffer `index`, starting `buf_offset` bytes into it. The kernel checks
    /// that the range lies inside the buffer (`-EFAULT` otherwise).
    pub fn read_fixed(
        fd: i32,
        index: u16,
        buf_offset: usize,
        len: u32,
        offset: u64,
        user_data: u64,
    ) -> AsyncOp {
        AsyncOp::fixed_op(
            op::READ_FIXED,
            fd,
            index,
            buf_offset,
            len,
            offset,
            user_data,
        )
    }

    /// `IORING_OP_WRITE_FIXED`: like [`AsyncOp::read_fixed`], the other way.
    pub fn write_fixed(
        fd: i32,
        index: u16,
        buf_offset: usize,
        len: u32,
        offset: u64,
        user_data: u64,
    ) -> AsyncOp {
        AsyncOp::fixed_op(
            op::WRITE_FIXED,
            fd,
            index,
            buf_offset,
            len,
            offset,
            user_data,
        )
    }

    /// `IORING_OP_FSYNC`.
    pub fn fsync(fd: i32, user_data: u64) -> AsyncOp {
        AsyncOp::new(base_sqe(op::FSYNC, fd, user_data), Lent::Nothing)
    }

    /// `IORING_OP_OPENAT` of `path` relative to `dirfd` (normally
    /// [`AT_FDCWD`]) with `flags` from [`abi::open_flags`]; the result is the
    /// new descriptor.
    pub fn openat(dirfd: i32, path: &str, flags: u64, user_data: u64) -> AsyncOp {
        let path = c_path(path);
        let mut sqe = base_sqe(op::OPENAT, dirfd, user_data);
        sqe.addr = path.as_ptr() as u64;
        sqe.op_flags = flags as u32;
        AsyncOp::new(sqe, Lent::Path { _path: path })
    }

    /// `IORING_OP_MKDIRAT`: creates the directory `path` relative to
    /// `dirfd` (normally [`AT_FDCWD`]).
    pub fn mkdirat(dirfd: i32, path: &str, mode: u32, user_data: u64) -> AsyncOp {
        let path = c_path(path);
        let mut sqe = base_sqe(op::MKDIRAT, dirfd, user_data);
        sqe.addr = path.as_ptr() as u64;
        sqe.len = mode;
        AsyncOp::new(sqe, Lent::Path { _path: path })
    }

    /// `IORING_OP_UNLINKAT`: removes the file `path`, or with
    /// [`abi::io_uring::AT_REMOVEDIR`] in `flags` the empty directory.
    pub fn unlinkat(dirfd: i32, path: &str, flags: u32, user_data: u64) -> AsyncOp {
        let path = c_path(path);
        let mut sqe = base_sqe(op::UNLINKAT, dirfd, user_data);
        sqe.addr = path.as_ptr() as u64;
        sqe.op_flags = flags;
        AsyncOp::new(sqe, Lent::Path { _path: path })
    }

    /// `IORING_OP_RENAMEAT`: renames `old` (relative to `olddirfd`) to
    /// `new` (relative to `newdirfd`); `flags` are `renameat2`'s.
    pub fn renameat(
        olddirfd: i32,
        old: &str,
        newdirfd: i32,
        new: &str,
        flags: u32,
        user_data: u64,
    ) -> AsyncOp {
        let old = c_path(old);
        let new = c_path(new);
        let mut sqe = base_sqe(op::RENAMEAT, olddirfd, user_data);
        sqe.addr = old.as_ptr() as u64;
        sqe.off = new.as_ptr() as u64;
        sqe.len = newdirfd as u32;
        sqe.op_flags = flags;
        AsyncOp::new(
            sqe,
            Lent::Paths {
                _old: old,
                _new: new,
            },
        )
    }

    /// `IORING_OP_FTRUNCATE`: sets the size of the file at `fd` to `len`.
    pub fn ftruncate(fd: i32, len: u64, user_data: u64) -> AsyncOp {
        let mut sqe = base_sqe(op::FTRUNCATE, fd, user_data);
        sqe.off = len;
        AsyncOp::new(sqe, Lent::Nothing)
    }

    /// `IORING_OP_CLOSE` of `fd`. A ring descriptor cannot be closed this
    /// way (`-EBADF`, as on Linux), so the op is safe for any `fd`.
    pub fn close(fd: i32, user_data: u64) -> AsyncOp {
        AsyncOp::new(base_sqe(op::CLOSE, fd, user_data), Lent::Nothing)
    }

    /// `IORING_OP_STATX` of `path` relative to `dirfd`, with statx `flags`
    /// and field `mask`; the completion carries the `Statx`.
    pub fn statx(dirfd: i32, path: &str, flags: u32, mask: u32, user_data: u64) -> AsyncOp {
        let path = c_path(path);
        let mut out = Box::new(Statx::default());
        let mut sqe = base_sqe(op::STATX, dirfd, user_data);
        sqe.addr = path.as_ptr() as u64;
        sqe.len = mask;
        sqe.op_flags = flags;
        sqe.addr3 = &raw mut *out as u64;
        AsyncOp::new(sqe, Lent::Statx { _path: path, out })
    }

    /// `IORING_OP_TIMEOUT`: completes with `-ETIME` when `ts` passes
    /// (relative, or absolute with [`abi::io_uring::timeout_flags::ABS`] in
    /// `flags`), or with 0 once `count` other completions happened
    /// (`count == 0`: a pure timer).
    pub fn timeout(ts: Timespec, count: u64, flags: u32, user_data: u64) -> AsyncOp {
        let ts = Box::new(ts);
        let mut sqe = base_sqe(op::TIMEOUT, 0, user_data);
        sqe.addr = &raw const *ts as u64;
        sqe.len = 1;
        sqe.off = count;
        sqe.op_flags = flags;
        AsyncOp::new(sqe, Lent::Timespec { _ts: ts })
    }

    /// `IORING_OP_TIMEOUT_REMOVE` of the in-flight timeout built with
    /// `target` as its `user_data`.
    pub fn timeout_remove(target: u64, user_data: u64) -> AsyncOp {
        let mut sqe = base_sqe(op::TIMEOUT_REMOVE, 0, user_data);
        sqe.addr = target;
        AsyncOp {
            target: Some(target),
            ..AsyncOp::new(sqe, Lent::Nothing)
        }
    }

    /// `IORING_OP_ASYNC_CANCEL` of the in-flight op built with `target` as
    /// its `user_data`.
    pub fn cancel(target: u64, user_data: u64) -> AsyncOp {
        let mut sqe = base_sqe(op::ASYNC_CANCEL, 0, user_data);
        sqe.addr = target;
        AsyncOp {
            target: Some(target),
            ..AsyncOp::new(sqe, Lent::Nothing)
        }
    }

    /// `IORING_OP_LINK_TIMEOUT`: bounds the op before it, which must carry
    /// [`AsyncOp::link`].
    pub fn link_timeout(ts: Timespec, flags: u32, user_data: u64) -> AsyncOp {
        let mut op = AsyncOp::timeout(ts, 0, flags, user_data);
        op.sqe.opcode = op::LINK_TIMEOUT;
        op
    }

    /// `IORING_OP_READ` into `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// The `len` bytes at `ptr` must stay valid for writes and not be used
    /// otherwise until the completion, or be an address the kernel must
    /// refuse (the completion then carries `-EFAULT`).
    pub unsafe fn read_raw(
        fd: i32,
        ptr: *mut u8,
        len: u32,
        offset: u64,
        user_data: u64,
    ) -> AsyncOp {
        rw_raw(op::READ, fd, ptr as u64, len, offset, user_data)
    }

    /// `IORING_OP_WRITE` from `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// The bytes must stay valid for reads until the completion, or be an
    /// address the kernel must refuse.
    pub unsafe fn write_raw(
        fd: i32,
        ptr: *const u8,
        len: u32,
        offset: u64,
        user_data: u64,
    ) -> AsyncOp {
        rw_raw(op::WRITE, fd, ptr as u64, len, offset, user_data)
    }

    /// `IORING_OP_READV` / `IORING_OP_WRITEV` (`write`) with an iovec array
    /// of `count` entries at `iovecs`.
    ///
    /// # Safety
    ///
    /// The array and every buffer it names must stay valid (buffers for
    /// writes when reading) until the completion, or be refused by the
    /// kernel.
    pub unsafe fn vectored_raw(
        write: bool,
        fd: i32,
        iovecs: *const IoVec,
        count: u32,
        offset: u64,
        user_data: u64,
    ) -> AsyncOp {
        let opcode = if write { op::WRITEV } else { op::READV };
        let mut sqe = base_sqe(opcode, fd, user_data);
        sqe.addr = iovecs as u64;
        sqe.len = count;
        sqe.off = offset;
        AsyncOp::new(sqe, Lent::Nothing)
    }

    /// `IORING_OP_READ_FIXED` / `WRITE_FIXED` (`write`) with a plain address,
    /// which the kernel must check against registered buffer `index`.
    ///
    /// # Safety
    ///
    /// The range must stay valid and unused until the completion, or lie
    /// outside the registered buffer (the kernel must then refuse it).
    pub unsafe fn fixed_raw(
        write: bool,
        fd: i32,
        index: u16,
        ptr: *mut u8,
        len: u32,
        offset: u64,
        user_data: u64,
    ) -> AsyncOp {
        let opcode = if write {
            op::WRITE_FIXED
        } else {
            op::READ_FIXED
        };
        let mut sqe = base_sqe(opcode, fd, user_data);
        sqe.addr = ptr as u64;
        sqe.len = len;
        sqe.off = offset;
        sqe.buf_index = index;
        AsyncOp::new(sqe, Lent::Nothing)
    }

    /// Any SQE, submitted as it is except that the context substitutes its
    /// token for `user_data` (and gives `sqe.user_data` back in the
    /// completion). Addresses in it are not translated.
    ///
    /// # Safety
    ///
    /// Every address the SQE names must satisfy
    /// [`IoUring::push_sqe`](crate::uring::IoUring::push_sqe)'s contract.
    pub unsafe fn from_sqe(sqe: Sqe) -> AsyncOp {
        AsyncOp::new(sqe, Lent::Nothing)
    }

    /// Adds `IOSQE_IO_LINK`: the next op runs only if this one succeeds.
    pub fn link(self) -> AsyncOp {
        self.with_flags(sqe_flags::IO_LINK)
    }

    /// Adds `IOSQE_IO_HARDLINK`: the next op runs after this one, whatever
    /// its result.
    pub fn hardlink(self) -> AsyncOp {
        self.with_flags(sqe_flags::IO_HARDLINK)
    }

    /// Adds `IOSQE_IO_DRAIN`: starts only after every earlier op finished.
    pub fn drain(self) -> AsyncOp {
        self.with_flags(sqe_flags::IO_DRAIN)
    }

    /// Adds `IOSQE_CQE_SKIP_SUCCESS`: no completion if it succeeds (see the
    /// module docs for what happens to lent memory then).
    pub fn skip_success(self) -> AsyncOp {
        self.with_flags(sqe_flags::CQE_SKIP_SUCCESS)
    }

    /// Adds `IOSQE_FIXED_FILE`: `fd` is an index into the registered files.
    pub fn fixed_file(self) -> AsyncOp {
        self.with_flags(sqe_flags::FIXED_FILE)
    }

    /// ORs raw `IOSQE_*` bits into the SQE flags (tests of unsupported
    /// bits). None of them changes which memory the op names.
    pub fn with_flags(mut self, flags: u8) -> AsyncOp {
        self.sqe.flags |= flags;
        self
    }
}

/// An operation between submit and completion.
#[derive(Debug)]
struct Slot {
    /// The caller's `user_data`.
    user_data: u64,
    /// Submission order.
    seq: u64,
    /// `CQE_SKIP_SUCCESS`: may end without a CQE.
    skip_success: bool,
    /// `IO_DRAIN`: its CQE proves every earlier op finished.
    drain: bool,
    lent: Lent,
}

/// A token no slot ever has: the target of a cancel that names nothing.
const NO_TARGET: u64 = u64::MAX;

/// The in-flight table: a slab of [`Slot`]s addressed by tokens
/// `generation << 32 | index`, so a stale or forged token never matches a
/// reused slot. Keeps the busy count of each registered buffer.
#[derive(Debug, Default)]
struct InFlight {
    slots: Vec<(u32, Option<Slot>)>,
    free: Vec<u32>,
    next_seq: u64,
    live: usize,
    fixed_busy: Vec<u32>,
}

impl InFlight {
    fn insert(&mut self, user_data: u64, flags: u8, lent: Lent) -> u64 {
        if let Lent::Fixed(index) = lent {
            if let Some(busy) = self.fixed_busy.get_mut(usize::from(index)) {
                *busy += 1;
            }
        }
        let slot = Slot {
            user_data,
            seq: self.next_seq,
            skip_success: flags & sqe_flags::CQE_SKIP_SUCCESS != 0,
            drain: flags & sqe_flags::IO_DRAIN != 0,
            lent,
        };
        self.next_seq += 1;
        self.live += 1;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1) as u32
            }
        };
        let entry = &mut self.slots[index as usize];
        // Generations stay below u32::MAX, so no token equals NO_TARGET.
        entry.0 = if entry.0 >= u32::MAX - 1 {
            0
        } else {
            entry.0 + 1
        };
        entry.1 = Some(slot);
        (u64::from(entry.0) << 32) | u64::from(index)
    }

    /// Removes and returns the slot `token` names, if it is live.
    fn take(&mut self, token: u64) -> Option<Slot> {
        let index = token as u32;
        let generation = (token >> 32) as u32;
        let entry = self.slots.get_mut(index as usize)?;
        if entry.0 != generation || entry.1.is_none() {
            return None;
        }
        let slot = entry.1.take()?;
        self.free.push(index);
        self.live -= 1;
        self.release_fixed(&slot.lent);
        if slot.drain {
            self.release_skipped_before(slot.seq);
        }
        Some(slot)
    }

    fn release_fixed(&mut self, lent: &Lent) {
        if let Lent::Fixed(index) = *lent {
            if let Some(busy) = self.fixed_busy.get_mut(usize::from(index)) {
                *busy = busy.saturating_sub(1);
            }
        }
    }

    /// A drained op completed: every op before it finished, including
    /// skip-success ones that posted nothing. Frees their memory.
    fn release_skipped_before(&mut self, seq: u64) {
        let mut done = Vec::new();
        for (index, (_, entry)) in self.slots.iter_mut().enumerate() {
            if entry
                .as_ref()
                .is_some_and(|s| s.skip_success && s.seq < seq)
            {
                done.push((index as u32, entry.take()));
            }
        }
        for (index, slot) in done {
            self.free.push(index);
            self.live -= 1;
            if let Some(slot) = slot {
                self.release_fixed(&slot.lent);
            }
        }
    }

    /// The token of the oldest live op with the caller's `user_data`.
    fn token_of(&self, user_data: u64) -> Option<u64> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, (generation, slot))| {
                let slot = slot.as_ref().filter(|s| s.user_data == user_data)?;
                Some((slot.seq, (u64::from(*generation) << 32) | index as u64))
            })
            .min()
            .map(|(_, token)| token)
    }

    fn fixed_busy(&self, index: usize) -> bool {
        self.fixed_busy.get(index).is_some_and(|&busy| busy > 0)
    }

    fn any_fixed_busy(&self) -> bool {
        self.fixed_busy.iter().any(|&busy| busy > 0)
    }

    /// Forgets every live slot's memory without freeing it (the kernel may
    /// still use it).
    fn leak_all(&mut self) {
        for (_, entry) in &mut self.slots {
            if let Some(slot) = entry.take() {
                core::mem::forget(slot);
            }
        }
        self.live = 0;
    }
}

/// Turns a finished slot and its CQE into the caller's completion.
fn finish(slot: Slot, result: i32, flags: u32) -> Completion {
    let payload = match slot.lent {
        Lent::ReadInto(mut buf) => {
            if let Ok(n) = usize::try_from(result) {
                buf.truncate(n);
            }
            Payload::Buffer(buf)
        }
        Lent::WriteFrom(buf) => Payload::Buffer(buf),
        Lent::Vectored { bufs, .. } => Payload::Buffers(bufs),
        Lent::Statx { out, .. } => Payload::Statx(out),
        Lent::Nothing
        | Lent::Path { .. }
        | Lent::Paths { .. }
        | Lent::Timespec { .. }
        | Lent::Fixed(_) => Payload::None,
    };
    Completion {
        user_data: slot.user_data,
        result,
        flags,
        payload,
    }
}

/// An io_uring with ownership tracking: see the module docs.
pub struct AsyncContext {
    ring: IoUring,
    in_flight: InFlight,
    /// Registered buffers, owned here while registered.
    fixed: Vec<Vec<u8>>,
    /// CQEs whose `user_data` named no in-flight op.
    stray: u32,
}

impl AsyncContext {
    /// A context on a new ring of [`DEFAULT_ENTRIES`] entries.
    pub fn new() -> Result<AsyncContext, Errno> {
        AsyncContext::with_entries(DEFAULT_ENTRIES)
    }

    /// A context on a new ring of `entries` entries.
    pub fn with_entries(entries: u32) -> Result<AsyncContext, Errno> {
        IoUring::setup(entries, 0).map(AsyncContext::from_ring)
    }

    /// A context on the process's Ring API context (syscalls 2000-2002) of
    /// [`DEFAULT_ENTRIES`] entries, with a kernel SQ poller if `sqpoll`.
    /// A process has one such context: a second is `EBUSY`.
    pub fn new_ring_api(sqpoll: bool) -> Result<AsyncContext, Errno> {
        AsyncContext::ring_api_with_entries(DEFAULT_ENTRIES, sqpoll)
    }

    /// [`AsyncContext::new_ring_api`] with `entries` entries.
    ///
    /// Every call works as on io_uring: [`AsyncContext::flush`] and
    /// [`AsyncContext::submit_and_wait`] return once the kernel consumed
    /// what was queued (under SQPOLL by waiting for the poller with
    /// `SQ_WAIT`, one syscall, which on one CPU is what lets the poller
    /// run). `libuser::ring_io::Ring` submits without syscalls instead.
    pub fn ring_api_with_entries(entries: u32, sqpoll: bool) -> Result<AsyncContext, Errno> {
        let params = abi::ring_api::RingSetupParams {
            sq_entries: entries,
            flags: if sqpoll {
                abi::ring_api::setup_flags::SQPOLL
            } else {
                0
            },
            ..Default::default()
        };
        IoUring::setup_ring_api(params).map(|(ring, _)| AsyncContext::from_ring(ring))
    }

    /// A context over an existing ring that has nothing in flight.
    pub fn from_ring(ring: IoUring) -> AsyncContext {
        AsyncContext {
            ring,
            in_flight: InFlight::default(),
            fixed: Vec::new(),
            stray: 0,
        }
    }

    /// The ring, for reading its counters and params.
    pub fn ring(&self) -> &IoUring {
        &self.ring
    }

    /// Whether [`AsyncContext::submit`] can queue without flushing first.
    pub fn has_available_slots(&self) -> bool {
        self.ring.sq_space() > 0
    }

    /// Operations submitted whose completion has not been taken yet
    /// (including skip-success ones not known to be done).
    pub fn in_flight(&self) -> usize {
        self.in_flight.live
    }

    /// Operations queued in the SQ but not yet consumed by the kernel.
    pub fn queued(&self) -> u32 {
        self.ring.sq_pending()
    }

    /// Completions that carried a `user_data` naming no in-flight op (a
    /// kernel bug); they are returned with the raw value as `user_data`.
    pub fn stray_completions(&self) -> u32 {
        self.stray
    }

    /// Queues `op`. If the SQ is full it first submits what is queued
    /// (`io_uring_enter(queued, 0, 0)`). On error the op is not queued and
    /// its memory is dropped.
    pub fn submit(&mut self, op: AsyncOp) -> Result<(), Errno> {
        if self.ring.sq_space() == 0 {
            self.flush()?;
            if self.ring.sq_space() == 0 {
                return Err(EBUSY);
            }
        }
        let AsyncOp {
            mut sqe,
            lent,
            target,
            fixed,
        } = op;
        if let Some(target) = target {
            sqe.addr = self.in_flight.token_of(target).unwrap_or(NO_TARGET);
        }
        if let Some(range) = fixed {
            // An index the context did not register gets address 0, which
            // no registered buffer can contain: the kernel refuses it.
            sqe.addr = match self.fixed.get(usize::from(range.index)) {
                Some(buf) => (buf.as_ptr() as u64).saturating_add(range.offset as u64),
                None => 0,
            };
        }
        let token = self.in_flight.insert(sqe.user_data, sqe.flags, lent);
        sqe.user_data = token;
        // SAFETY: every address in `sqe` is memory the in-flight table now
        // owns until this token's completion (or a drain proves it done), a
        // registered buffer whose busy count that table holds, an address
        // from an `unsafe` raw builder whose caller promised validity, or 0.
        let pushed = unsafe { self.ring.push_sqe(&sqe) };
        debug_assert!(pushed, "SQ space was checked");
        Ok(())
    }

    /// Publishes and submits everything queued: `io_uring_enter(queued, 0,
    /// 0)`. Returns how many completions are now ready in the CQ.
    pub fn flush(&mut self) -> Result<u32, Errno> {
        self.ring.publish();
        self.ring.enter(self.ring.sq_pending(), 0, 0)?;
        Ok(self.ring.cq_ready())
    }

    /// Submits everything queued and sleeps until at least `n` completions
    /// are ready: `io_uring_enter(queued, n, GETEVENTS)`. Returns how many
    /// are ready.
    pub fn submit_and_wait(&mut self, n: u32) -> Result<u32, Errno> {
        self.ring.publish();
        self.ring
            .enter(self.ring.sq_pending(), n, enter_flags::GETEVENTS)?;
        Ok(self.ring.cq_ready())
    }

    /// Completions ready in the CQ.
    pub fn completions_ready(&self) -> u32 {
        self.ring.cq_ready()
    }

    /// The next completion, if one is ready. When the CQ is empty but the
    /// kernel holds overflowed completions, asks for them first.
    pub fn get_completion(&mut self) -> Option<Completion> {
        let cqe = match self.ring.pop_cqe() {
            Some(cqe) => cqe,
            None => {
                if self.ring.sq_flags() & sq_flags::CQ_OVERFLOW == 0 {
                    return None;
                }
                self.ring.enter(0, 0, enter_flags::GETEVENTS).ok()?;
                self.ring.pop_cqe()?
            }
        };
        match self.in_flight.take(cqe.user_data) {
            Some(slot) => Some(finish(slot, cqe.res, cqe.flags)),
            None => {
                self.stray += 1;
                Some(Completion {
                    user_data: cqe.user_data,
                    result: cqe.res,
                    flags: cqe.flags,
                    payload: Payload::None,
                })
            }
        }
    }

    /// The next completion, sleeping for it if none is ready (submits what
    /// is queued first).
    pub fn wait_completion(&mut self) -> Result<Completion, Errno> {
        loop {
            if let Some(c) = self.get_completion() {
                return Ok(c);
            }
            self.submit_and_wait(1)?;
        }
    }

    /// Registers `buffers` for READ_FIXED/WRITE_FIXED; the context owns them
    /// until [`AsyncContext::unregister_buffers`]. On error they are dropped.
    pub fn register_buffers(&mut self, mut buffers: Vec<Vec<u8>>) -> Result<(), Errno> {
        let iovecs = iovecs_of(&mut buffers);
        self.ring.register_buffers(&iovecs)?;
        self.in_flight.fixed_busy = alloc::vec![0; buffers.len()];
        self.fixed = buffers;
        Ok(())
    }

    /// Unregisters the buffers and gives them back; `EBUSY` (nothing
    /// changed) while an op using one is in flight.
    pub fn unregister_buffers(&mut self) -> Result<Vec<Vec<u8>>, Errno> {
        if self.in_flight.any_fixed_busy() {
            return Err(EBUSY);
        }
        self.ring.unregister_buffers()?;
        self.in_flight.fixed_busy.clear();
        Ok(core::mem::take(&mut self.fixed))
    }

    /// Registered buffer `index`; `EINVAL` if there is none, `EBUSY` while
    /// an op using it is in flight.
    pub fn fixed_buffer(&self, index: usize) -> Result<&[u8], Errno> {
        if self.in_flight.fixed_busy(index) {
            return Err(EBUSY);
        }
        self.fixed.get(index).map(Vec::as_slice).ok_or(EINVAL)
    }

    /// Registered buffer `index` for writing; errors as
    /// [`AsyncContext::fixed_buffer`].
    pub fn fixed_buffer_mut(&mut self, index: usize) -> Result<&mut [u8], Errno> {
        if self.in_flight.fixed_busy(index) {
            return Err(EBUSY);
        }
        self.fixed
            .get_mut(index)
            .map(Vec::as_mut_slice)
            .ok_or(EINVAL)
    }

    /// Registers descriptors (`-1` = empty slot) for [`AsyncOp::fixed_file`].
    pub fn register_files(&mut self, fds: &[i32]) -> Result<(), Errno> {
        self.ring.register_files(fds)
    }

    /// Unregisters the files.
    pub fn unregister_files(&mut self) -> Result<(), Errno> {
        self.ring.unregister_files()
    }

    /// The opcodes the kernel reports as supported, ascending.
    pub fn probe(&self) -> Result<Vec<u8>, Errno> {
        self.ring.probe().map(|report| report.supported())
    }
}

impl Drop for AsyncContext {
    fn drop(&mut self) {
        // The ring is closed when `ring` drops, which ends what was
        // submitted only if the close succeeds, and `drop` cannot tell:
        // never free memory the kernel may touch.
        self.in_flight.leak_all();
        if self.in_flight.any_fixed_busy() {
            core::mem::forget(core::mem::take(&mut self.fixed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::io_uring::timeout_flags;
    use alloc::vec;

    #[test]
    fn read_and_write_lend_their_buffers() {
        let op = AsyncOp::read(5, vec![0; 100], 4096, 7);
        let ptr = match &op.lent {
            Lent::ReadInto(buf) => buf.as_ptr() as u64,
            other => panic!("{other:?}"),
        };
        let s = op.sqe();
        assert_eq!(
            (s.opcode, s.fd, s.addr, s.len, s.off),
            (op::READ, 5, ptr, 100, 4096)
        );
        assert_eq!((s.user_data, s.flags, s.op_flags), (7, 0, 0));

        let op = AsyncOp::write(3, vec![1, 2, 3], CURRENT_POSITION, 9);
        let s = op.sqe();
        assert_eq!((s.opcode, s.len, s.off), (op::WRITE, 3, u64::MAX));
        assert!(matches!(&op.lent, Lent::WriteFrom(b) if b.as_ptr() as u64 == s.addr));
    }

    #[test]
    fn vectored_ops_build_an_iovec_array_of_their_buffers() {
        let op = AsyncOp::readv(4, vec![vec![0; 10], vec![0; 20], vec![0; 5]], 8, 1);
        let s = *op.sqe();
        assert_eq!((s.opcode, s.len, s.off), (op::READV, 3, 8));
        let Lent::Vectored { bufs, _iovecs: iov } = &op.lent else {
            panic!()
        };
        assert_eq!(iov.as_ptr() as u64, s.addr);
        for (buf, v) in bufs.iter().zip(iov) {
            assert_eq!((v.base, v.len), (buf.as_ptr() as u64, buf.len() as u64));
        }
        assert_eq!(AsyncOp::writev(4, vec![], 0, 1).sqe().opcode, op::WRITEV);
    }

    #[test]
    fn path_ops_pass_nul_terminated_paths() {
        let op = AsyncOp::openat(AT_FDCWD, "some/file", 0o102, 3);
        let s = *op.sqe();
        assert_eq!((s.opcode, s.fd, s.op_flags), (op::OPENAT, -100, 0o102));
        let Lent::Path { _path: path } = &op.lent else {
            panic!()
        };
        assert_eq!(path.as_slice(), b"some/file\0");
        assert_eq!(path.as_ptr() as u64, s.addr);

        let op = AsyncOp::statx(AT_FDCWD, "f", 0x100, abi::io_uring::STATX_BASIC, 4);
        let s = *op.sqe();
        assert_eq!((s.opcode, s.len, s.op_flags), (op::STATX, 0x7ff, 0x100));
        let Lent::Statx { _path, out } = &op.lent else {
            panic!()
        };
        assert_eq!(_path.as_slice(), b"f\0");
        assert_eq!(s.addr, _path.as_ptr() as u64);
        assert_eq!(s.addr3, &raw const **out as u64);
    }

    #[test]
    fn timeouts_carry_a_timespec_count_and_flags() {
        let ts = Timespec { sec: 1, nsec: 5 };
        let op = AsyncOp::timeout(ts, 3, timeout_flags::ABS, 11);
        let s = *op.sqe();
        assert_eq!((s.opcode, s.len, s.off, s.op_flags), (op::TIMEOUT, 1, 3, 1));
        let Lent::Timespec { _ts: boxed } = &op.lent else {
            panic!()
        };
        assert_eq!(**boxed, ts);
        assert_eq!(s.addr, &raw const **boxed as u64);

        let op = AsyncOp::link_timeout(ts, 0, 12);
        assert_eq!((op.sqe().opcode, op.sqe().off), (op::LINK_TIMEOUT, 0));
        let op = AsyncOp::timeout_remove(77, 13);
        assert_eq!(
            (op.sqe().opcode, op.sqe().addr, op.target),
            (op::TIMEOUT_REMOVE, 77, Some(77))
        );
        let op = AsyncOp::cancel(78, 14);
        assert_eq!((op.sqe().opcode, op.target), (op::ASYNC_CANCEL, Some(78)));
    }

    #[test]
    fn simple_ops_and_flag_modifiers() {
        assert_eq!(
            AsyncOp::nop(5).sqe(),
            &Sqe {
                user_data: 5,
                ..Sqe::default()
            }
        );
        let s = *AsyncOp::fsync(6, 1).sqe();
        assert_eq!((s.opcode, s.fd), (op::FSYNC, 6));
        let s = *AsyncOp::close(7, 1).sqe();
        assert_eq!((s.opcode, s.fd), (op::CLOSE, 7));
        let op = AsyncOp::nop(0).link().drain().skip_success().fixed_file();
        assert_eq!(
            op.sqe().flags,
            sqe_flags::IO_LINK
                | sqe_flags::IO_DRAIN
                | sqe_flags::CQE_SKIP_SUCCESS
                | sqe_flags::FIXED_FILE
        );
        assert_eq!(
            AsyncOp::nop(0).hardlink().sqe().flags,
            sqe_flags::IO_HARDLINK
        );
        assert_eq!(AsyncOp::nop(0).with_flags(0x80).sqe().flags, 0x80);
    }

    #[test]
    fn fixed_ops_name_a_registered_range() {
        let op = AsyncOp::read_fixed(3, 2, 100, 50, 4096, 1);
        let s = *op.sqe();
        assert_eq!(
            (s.opcode, s.buf_index, s.len, s.off),
            (op::READ_FIXED, 2, 50, 4096)
        );
        assert_eq!(
            op.fixed,
            Some(FixedRange {
                index: 2,
                offset: 100
            })
        );
        assert_eq!(
            AsyncOp::write_fixed(3, 0, 0, 1, 0, 1).sqe().opcode,
            op::WRITE_FIXED
        );
    }

    #[test]
    fn in_flight_slots_come_back_once_per_token() {
        let mut table = InFlight::default();
        let a = table.insert(100, 0, Lent::ReadInto(vec![9; 8]));
        let b = table.insert(100, 0, Lent::Nothing);
        assert_ne!(a, b);
        assert_eq!(table.live, 2);
        assert_eq!(
            table.token_of(100),
            Some(a),
            "the oldest op with that user_data"
        );
        assert_eq!(table.token_of(5), None);

        let slot = table.take(a).unwrap();
        assert_eq!(slot.user_data, 100);
        assert!(table.take(a).is_none(), "a token completes once");
        // The slot is reused with a new generation: the old token stays dead.
        let c = table.insert(200, 0, Lent::Nothing);
        assert_eq!(c as u32, a as u32);
        assert_ne!(c, a);
        assert!(table.take(a).is_none());
        assert!(table.take(NO_TARGET).is_none());
        assert!(table.take(12345).is_none());
        assert_eq!(table.take(c).unwrap().user_data, 200);
        assert_eq!(table.take(b).unwrap().user_data, 100);
        assert_eq!(table.live, 0);
    }

    #[test]
    fn a_completed_drain_releases_earlier_skip_success_ops() {
        let mut table = InFlight {
            fixed_busy: vec![0; 2],
            ..InFlight::default()
        };
        let skipped = table.insert(1, sqe_flags::CQE_SKIP_SUCCESS, Lent::Fixed(1));
        let pending = table.insert(2, 0, Lent::Nothing);
        assert!(table.fixed_busy(1));
        let drain = table.insert(3, sqe_flags::IO_DRAIN, Lent::Nothing);
        let later = table.insert(4, sqe_flags::CQE_SKIP_SUCCESS, Lent::Nothing);
        assert_eq!(table.live, 4);
        table.take(drain).unwrap();
        assert!(!table.fixed_busy(1), "the skipped op is known done");
        assert!(table.take(skipped).is_none());
        assert_eq!(
            table.live, 2,
            "ops without skip_success or after the drain stay"
        );
        assert!(table.take(pending).is_some());
        assert!(table.take(later).is_some());
    }

    #[test]
    fn fixed_buffers_are_busy_while_used() {
        let mut table = InFlight {
            fixed_busy: vec![0; 3],
            ..InFlight::default()
        };
        let a = table.insert(1, 0, Lent::Fixed(2));
        let b = table.insert(2, 0, Lent::Fixed(2));
        assert!(table.fixed_busy(2) && !table.fixed_busy(0) && table.any_fixed_busy());
        table.take(a);
        assert!(table.fixed_busy(2));
        table.take(b);
        assert!(!table.any_fixed_busy());
        // An index that was never registered is not tracked.
        let c = table.insert(3, 0, Lent::Fixed(9));
        assert!(!table.any_fixed_busy());
        table.take(c);
    }

    #[test]
    fn completions_return_what_was_lent() {
        let slot = |lent| Slot {
            user_data: 42,
            seq: 0,
            skip_success: false,
            drain: false,
            lent,
        };
        let mut c = finish(slot(Lent::ReadInto(vec![7; 100])), 10, 0);
        assert_eq!((c.user_data, c.result), (42, 10));
        assert_eq!(
            c.take_buffer().unwrap().len(),
            10,
            "truncated to the bytes read"
        );
        assert!(c.take_buffer().is_none());

        let mut c = finish(slot(Lent::ReadInto(vec![7; 100])), -14, 0);
        assert_eq!(c.errno(), Some(abi::errno::EFAULT));
        assert_eq!(
            c.take_buffer().unwrap().len(),
            100,
            "failure keeps the length"
        );

        let mut c = finish(slot(Lent::WriteFrom(vec![1; 30])), 5, 0);
        assert_eq!(c.take_buffer().unwrap().len(), 30);

        let mut c = finish(
            slot(Lent::Vectored {
                bufs: vec![vec![1], vec![2, 2]],
                _iovecs: vec![],
            }),
            3,
            0,
        );
        assert!(c.take_buffer().is_none());
        assert_eq!(c.take_buffers(), vec![vec![1], vec![2, 2]]);

        let out = Box::new(Statx {
            size: 99,
            ..Statx::default()
        });
        let c = finish(
            slot(Lent::Statx {
                _path: vec![0],
                out,
            }),
            0,
            0,
        );
        assert_eq!(c.statx().unwrap().size, 99);
        assert!(finish(slot(Lent::Nothing), 0, 0).statx().is_none());
    }
}
