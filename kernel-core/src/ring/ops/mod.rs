//! The op table: what each opcode does, as data.
//!
//! Every op is an [`OpDef`]: its opcode, a name, capability bits, a `prep`
//! that validates the copied SQE when it is submitted and an `issue` that
//! does the work through [`IoEnv`]. Ops live one family per file;
//! [`REGISTRY`] lists them and [`OPS`] is the table indexed by opcode, built
//! from it at compile time. Adding an op is one new file (or one more
//! `OpDef` in a family's file) plus one line in [`REGISTRY`].
//!
//! Prep and issue are apart as on Linux (`io_init_req` and the op's
//! `->prep`, then `->issue`): the engine preps every SQE of a link chain
//! before it issues any of them, so a chain with an invalid member fails
//! as a whole instead of half-running. [`prep_sqe`] does the checks Linux
//! does for every SQE (flags, opcode, `ioprio`, `personality`) and then the
//! op's own; what Linux checks only at issue time (the file, the offset,
//! the bytes of a buffer, `rw_flags`) is checked at issue here too, so a
//! chain whose member fails at issue has run the members before it.
//!
//! Invariants:
//! - `OPS[n]` is `Some(def)` only with `def.opcode == n`, and each opcode is
//!   registered once (checked at compile time).
//! - `prep` only reads the SQE and, through [`PrepCtx`], user memory (a
//!   timespec, a path); `issue` only reaches the machine through
//!   [`IssueCtx`]. Neither panics on any input; errors are [`Errno`]s.
//! - Ops never block: anything that has to wait (a timer) is returned to the
//!   engine as an [`Issue`] variant and the engine keeps it pending.
//! - An opcode `abi` names but the table lacks is "compiled out"
//!   (`EOPNOTSUPP`); any other opcode is unknown (`EINVAL`). PROBE answers
//!   from the table.

use abi::io_uring::{ioprio, op, sqe_flags, Probe, ProbeOp, Sqe, Timespec, PROBE_OP_SUPPORTED};
use abi::syscall::limits::PATH_MAX;
use abi::{FromBytes, Immutable, IntoBytes};

use super::env::{AsyncIo, FileRef, IoEnv, IoTarget, PathOp};
use abi::errno::{Errno, EBADF, EFAULT, EINVAL, ENAMETOOLONG, EOPNOTSUPP};

mod cancel;
mod dirs;
mod fsync;
mod ftruncate;
mod nop;
mod open;
mod rw;
pub mod statx;
mod timeout;
mod vectored;

pub use abi::io_uring::AT_FDCWD;
pub use rw::MAX_RW_COUNT;

bitflags::bitflags! {
    /// What an op needs and how it behaves.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OpCaps: u32 {
        /// Works on a file: `fd` (or a registered file with `FIXED_FILE`).
        const NEEDS_FILE = 1 << 0;
        /// Uses a registered buffer (`buf_index`).
        const FIXED_BUFFER = 1 << 1;
        /// Linux could poll the file instead of blocking (informational).
        const POLLABLE = 1 << 2;
        /// May stay pending after issue (the engine keeps it).
        const ASYNC = 1 << 3;
        /// Arms a timer on the SQE before it in a link chain (LINK_TIMEOUT).
        const LINK_TIMER = 1 << 4;
        /// Takes an I/O priority in `ioprio` (Linux's `io_op_def.ioprio`);
        /// every other op needs it zero.
        const IOPRIO = 1 << 5;
        /// May start I/O that completes later ([`IssueCtx::start`]): the
        /// engine makes room for a pending op before issuing it.
        const DEVICE_IO = 1 << 6;
        /// May run a path-based op where it can sleep ([`IssueCtx::start_path`]).
        const PATH_IO = 1 << 7;
    }
}

/// One op.
#[derive(Debug)]
pub struct OpDef {
    pub opcode: u8,
    pub name: &'static str,
    pub caps: OpCaps,
    /// Validates the copied SQE when it is submitted, before anything of
    /// its chain issues: what Linux's `->prep` checks, no more.
    pub prep: fn(&PrepCtx<'_>, &Sqe) -> Result<Prepared, Errno>,
    /// Does it, with what `prep` found. Synchronous ops return
    /// [`Issue::Done`].
    pub issue: fn(&mut IssueCtx<'_>, &Sqe, Prepared) -> Issue,
}

/// What `prep` hands to `issue` besides the SQE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prepared {
    /// Nothing: `issue` reads the SQE.
    #[default]
    Nothing,
    /// TIMEOUT, LINK_TIMEOUT: the timespec, read and checked at prep, in
    /// nanoseconds (relative or absolute as the SQE's flags say).
    Timeout { ns: u64 },
}

/// What an op may look at while it is prepped.
pub struct PrepCtx<'a> {
    /// The machine, to read user memory.
    pub env: &'a dyn IoEnv,
    /// Registered buffers (the table's length).
    pub buffers: usize,
    /// The SQE starts a chain or stands alone: no SQE before it in a chain.
    pub head: bool,
    /// The SQE before it in its chain is a LINK_TIMEOUT.
    pub after_link_timeout: bool,
}

/// What issuing an op produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issue {
    /// Finished: a value (at most `i32::MAX`: a byte count, a descriptor,
    /// 0) or an error. The engine turns it into the CQE's `res` when it
    /// posts it, the one place an error becomes `-errno`.
    Done(Result<u32, Errno>),
    /// Finished, but moved fewer bytes than asked: the count is posted and
    /// an `IO_LINK` chain breaks, as on failure.
    Short(u32),
    /// A pending timer (TIMEOUT): complete with `-ETIME` at `deadline_ns`
    /// (never, if `None`), or with 0 once `count` other completions were
    /// posted (`count` 0: a pure timer).
    Timeout {
        deadline_ns: Option<u64>,
        count: u32,
    },
    /// LINK_TIMEOUT: a timer for the op before it in the chain.
    LinkTimeout { deadline_ns: u64 },
    /// I/O started through [`IssueCtx::start`] and completing later: the
    /// engine keeps the op pending until the host posts its result to the
    /// ring's mailbox; fewer than `wanted` bytes is a short transfer.
    Pending { wanted: u32 },
    /// Cancel the pending op whose `user_data` is `target` (only TIMEOUTs if
    /// `timeouts_only`); the engine completes it with `-ECANCELED` and this
    /// op with 0, or this op with `-ENOENT`.
    Cancel { target: u64, timeouts_only: bool },
}

/// `Issue::Pending { wanted }` for an op whose result is a value (a
/// descriptor, or 0), not a byte count: posted as it is, never short.
pub const PENDING_VALUE: u32 = u32::MAX;

/// The outcome of an op that may hand its work to the host
/// ([`IssueCtx::start_path`]): `Ok(None)` if it did (pending), else done.
pub(crate) fn done_or_pending(result: Result<Option<u32>, Errno>) -> Issue {
    match result {
        Ok(None) => Issue::Pending {
            wanted: PENDING_VALUE,
        },
        Ok(Some(value)) => Issue::Done(Ok(value)),
        Err(e) => Issue::Done(Err(e)),
    }
}

/// The CQE `res` of a finished op: the value, or `-errno`.
#[inline(always)]
pub fn cqe_res(result: Result<u32, Errno>) -> i32 {
    match result {
        Ok(value) => i32::try_from(value).unwrap_or(i32::MAX),
        Err(errno) => -errno,
    }
}

/// What an op may use while it is issued.
pub struct IssueCtx<'a> {
    /// The machine.
    pub env: &'a mut dyn IoEnv,
    files: &'a [Option<u64>],
    buffers: &'a [Option<(u64, u64)>],
    /// Where I/O started by this op reports (only for `DEVICE_IO` ops).
    io: Option<IoTarget<'a>>,
}

impl<'a> IssueCtx<'a> {
    /// A context over the ring's registered `files` (pin tokens) and
    /// `buffers` (`(addr, len)`).
    pub fn new(
        env: &'a mut dyn IoEnv,
        files: &'a [Option<u64>],
        buffers: &'a [Option<(u64, u64)>],
    ) -> Self {
        Self {
            env,
            files,
            buffers,
            io: None,
        }
    }

    /// The same, for an op that may start I/O reporting to `io`.
    pub fn with_io(mut self, io: IoTarget<'a>) -> Self {
        self.io = Some(io);
        self
    }

    /// Starts `io` on `file` if the file's I/O completes later: `Ok(true)`
    /// and the op returns [`Issue::Pending`]; `Ok(false)` for a file whose
    /// I/O is synchronous. Only ops with [`OpCaps::DEVICE_IO`] may start
    /// I/O; for any other this is `Ok(false)`.
    pub fn start(&mut self, file: FileRef, io: AsyncIo) -> Result<bool, Errno> {
        match self.io {
            Some(target) => self.env.start(file, io, target),
            None => Ok(false),
        }
    }

    /// Runs the path-based `op` where it may sleep, if the host wants to:
    /// `Ok(true)` and the op returns [`Issue::Pending`]; `Ok(false)` to run
    /// it synchronously. Only ops with [`OpCaps::PATH_IO`] get a target;
    /// for any other this is `Ok(false)`.
    pub fn start_path(&mut self, op: PathOp<'_>) -> Result<bool, Errno> {
        match self.io {
            Some(target) => self.env.start_path(op, target),
            None => Ok(false),
        }
    }

    /// The file `sqe` names: `fd`, or with `FIXED_FILE` the registered file
    /// at index `fd` (`EBADF` if out of range or empty).
    pub fn file(&self, sqe: &Sqe) -> Result<FileRef, Errno> {
        if sqe.flags & sqe_flags::FIXED_FILE == 0 {
            return Ok(FileRef::Fd(sqe.fd));
        }
        let index = usize::try_from(sqe.fd).map_err(|_| EBADF)?;
        match self.files.get(index) {
            Some(Some(token)) => Ok(FileRef::Pinned(*token)),
            _ => Err(EBADF),
        }
    }

    /// `Ok` if registered buffer `index` exists and `[addr, addr + len)`
    /// lies within it; `EFAULT` otherwise.
    pub fn fixed_buffer(&self, index: u16, addr: u64, len: u64) -> Result<(), Errno> {
        let Some(Some((base, size))) = self.buffers.get(usize::from(index)) else {
            return Err(EFAULT);
        };
        let end = addr.checked_add(len).ok_or(EFAULT)?;
        if addr < *base || end > base.saturating_add(*size) {
            return Err(EFAULT);
        }
        Ok(())
    }
}

/// Preps one SQE the way Linux's `io_init_req` does, in its order: the
/// opcode (unknown: `EINVAL`), the flags (`EINVAL` for any this kernel does
/// not accept), `ioprio` (must be 0 unless the op takes one, then a valid
/// class and level), `personality` (none can be registered: must be 0),
/// an op `abi` names but this kernel lacks (`EOPNOTSUPP`), then the op's
/// own `prep`. Returns the op and what its prep found.
#[inline(always)]
pub fn prep_sqe(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<(&'static OpDef, Prepared), Errno> {
    let def = match lookup(sqe.opcode) {
        Lookup::Known(def) => Some(def),
        Lookup::CompiledOut => None,
        Lookup::Unknown => return Err(EINVAL),
    };
    if sqe.flags & !sqe_flags::SUPPORTED != 0 {
        return Err(EINVAL);
    }
    let Some(def) = def else {
        return Err(EOPNOTSUPP);
    };
    if sqe.ioprio != 0 {
        if !def.caps.contains(OpCaps::IOPRIO) {
            return Err(EINVAL);
        }
        check_ioprio(sqe.ioprio)?;
    }
    if sqe.personality != 0 {
        return Err(EINVAL);
    }
    Ok((def, (def.prep)(ctx, sqe)?))
}

/// Issues a prepped SQE.
#[inline(always)]
pub fn issue_sqe(ctx: &mut IssueCtx<'_>, sqe: &Sqe, prepared: Prepared) -> Issue {
    match lookup(sqe.opcode) {
        Lookup::Known(def) => (def.issue)(ctx, sqe, prepared),
        // Not reached: only prepped SQEs are issued.
        Lookup::CompiledOut => Issue::Done(Err(EOPNOTSUPP)),
        Lookup::Unknown => Issue::Done(Err(EINVAL)),
    }
}

/// Linux's `ioprio_check_cap`: class NONE with level 0, RT or BE with a
/// level below `ioprio::NR_LEVELS`, IDLE with any; anything else is
/// `EINVAL`. There is no privilege model here, so RT is allowed as for
/// root. The priority is accepted and has no effect (no I/O scheduler).
fn check_ioprio(value: u16) -> Result<(), Errno> {
    let class = value >> ioprio::CLASS_SHIFT;
    let level = value & ((1 << ioprio::CLASS_SHIFT) - 1);
    let ok = match class {
        ioprio::CLASS_NONE => level == 0,
        ioprio::CLASS_RT | ioprio::CLASS_BE => level < ioprio::NR_LEVELS,
        ioprio::CLASS_IDLE => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(EINVAL)
    }
}

/// Every op this kernel implements. One line per op.
pub const REGISTRY: &[&OpDef] = &[
    &nop::NOP,
    &vectored::READV,
    &vectored::WRITEV,
    &fsync::FSYNC,
    &rw::READ_FIXED,
    &rw::WRITE_FIXED,
    &timeout::TIMEOUT,
    &timeout::TIMEOUT_REMOVE,
    &cancel::ASYNC_CANCEL,
    &timeout::LINK_TIMEOUT,
    &open::OPENAT,
    &open::CLOSE,
    &statx::STATX,
    &rw::READ,
    &rw::WRITE,
    &dirs::RENAMEAT,
    &dirs::UNLINKAT,
    &dirs::MKDIRAT,
    &ftruncate::FTRUNCATE,
];

/// Number of opcodes `abi` knows (`op::LAST`).
pub const TABLE_LEN: usize = op::LAST as usize;

/// The op table, indexed by opcode.
pub static OPS: [Option<&'static OpDef>; TABLE_LEN] = build_table(REGISTRY);

const fn build_table(registry: &[&'static OpDef]) -> [Option<&'static OpDef>; TABLE_LEN] {
    let mut table: [Option<&'static OpDef>; TABLE_LEN] = [None; TABLE_LEN];
    let mut i = 0;
    while i < registry.len() {
        let def = registry[i];
        let slot = def.opcode as usize;
        assert!(slot < TABLE_LEN, "opcode beyond op::LAST");
        assert!(table[slot].is_none(), "opcode registered twice");
        table[slot] = Some(def);
        i += 1;
    }
    table
}

/// Every opcode `abi` names (an opcode it names but the table lacks is
/// "compiled out").
const ABI_OPCODES: [u8; op::ALL.len()] = op::ALL;

/// What an opcode is to this kernel.
#[derive(Clone, Copy, Debug)]
pub enum Lookup {
    /// Implemented.
    Known(&'static OpDef),
    /// Named by `abi` but not in the table: `EOPNOTSUPP`.
    CompiledOut,
    /// Not an opcode: `EINVAL`.
    Unknown,
}

/// The op for `opcode`.
#[inline]
pub fn lookup(opcode: u8) -> Lookup {
    classify(&OPS, opcode)
}

fn classify(table: &[Option<&'static OpDef>], opcode: u8) -> Lookup {
    match table.get(usize::from(opcode)) {
        Some(Some(def)) => Lookup::Known(def),
        _ if ABI_OPCODES.contains(&opcode) => Lookup::CompiledOut,
        _ => Lookup::Unknown,
    }
}

/// Fills `out` with one [`ProbeOp`] per opcode from 0 (as many as fit, at
/// most [`TABLE_LEN`]) and returns the header: `last_op` is the highest
/// opcode `abi` knows, `ops_len` how many entries were filled.
pub fn probe(out: &mut [ProbeOp]) -> Probe {
    let n = out.len().min(TABLE_LEN);
    for (opcode, entry) in out[..n].iter_mut().enumerate() {
        let supported = matches!(lookup(opcode as u8), Lookup::Known(_));
        *entry = ProbeOp {
            op: opcode as u8,
            flags: if supported { PROBE_OP_SUPPORTED } else { 0 },
            ..ProbeOp::default()
        };
    }
    Probe {
        last_op: op::LAST - 1,
        ops_len: n as u8,
        ..Probe::default()
    }
}

// ---- Helpers shared by op families ----

/// Reads one `T` from user memory at `addr` (its bytes as the derived
/// `abi` layout says); `EFAULT` if any of it is not readable.
pub(crate) fn read_user_value<T: FromBytes + IntoBytes>(
    env: &dyn IoEnv,
    addr: u64,
) -> Result<T, Errno> {
    let mut value = T::new_zeroed();
    env.read_user(addr, value.as_mut_bytes())?;
    Ok(value)
}

/// Writes `value` to user memory at `addr`; `EFAULT` (nothing written) if
/// any of it is not writable.
pub(crate) fn write_user_value<T: IntoBytes + Immutable>(
    env: &mut dyn IoEnv,
    addr: u64,
    value: &T,
) -> Result<(), Errno> {
    env.write_user(addr, value.as_bytes())
}

/// Reads a [`Timespec`] from user memory and checks it (`sec >= 0`,
/// `0 <= nsec < 1e9`, else `EINVAL`).
fn read_timespec(env: &dyn IoEnv, addr: u64) -> Result<Timespec, Errno> {
    let ts: Timespec = read_user_value(env, addr)?;
    if ts.sec < 0 || !(0..1_000_000_000).contains(&ts.nsec) {
        return Err(EINVAL);
    }
    Ok(ts)
}

/// A checked timespec in nanoseconds (saturating).
fn timespec_ns(ts: Timespec) -> u64 {
    // sec >= 0 and 0 <= nsec < 1e9 were checked.
    (ts.sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.nsec as u64)
}

/// The deadline `ns` names: absolute, or from `now`.
fn deadline(now: u64, ns: u64, absolute: bool) -> u64 {
    if absolute {
        ns
    } else {
        now.saturating_add(ns)
    }
}

/// Room for a path and its NUL.
const PATH_BUF: usize = PATH_MAX + 1;
/// Bytes copied per `read_user` call while looking for the NUL.
const PATH_CHUNK: usize = 64;
const PAGE: u64 = abi::layout::PAGE_SIZE;

/// Copies the NUL-terminated path at `addr` into `buf` and returns its
/// length (without the NUL). Copies in chunks that never cross a page, so a
/// path ending just before an unmapped page is fine; `EFAULT` if a byte
/// before the NUL is unreadable, `ENAMETOOLONG` if no NUL comes within
/// `PATH_MAX + 1` bytes.
fn read_path(env: &dyn IoEnv, addr: u64, buf: &mut [u8; PATH_BUF]) -> Result<usize, Errno> {
    let mut done = 0usize;
    while done < PATH_BUF {
        let at = addr.checked_add(done as u64).ok_or(EFAULT)?;
        let to_page_end = (PAGE - at % PAGE) as usize;
        let n = (PATH_BUF - done).min(PATH_CHUNK).min(to_page_end);
        let chunk = &mut buf[done..done + n];
        if env.read_user(at, chunk).is_err() {
            // Part of the chunk may still be readable (a smaller mapping
            // granule): go byte by byte up to the fault or the NUL.
            for (i, byte) in chunk.iter_mut().enumerate() {
                let mut one = [0u8];
                env.read_user(at + i as u64, &mut one)?;
                if one[0] == 0 {
                    return Ok(done + i);
                }
                *byte = one[0];
            }
            return Err(EFAULT);
        }
        if let Some(nul) = chunk.iter().position(|&b| b == 0) {
            return Ok(done + nul);
        }
        done += n;
    }
    Err(ENAMETOOLONG)
}

/// The path at `addr` as UTF-8 (`EINVAL` if it is not), in `buf`.
fn user_path<'b>(
    env: &dyn IoEnv,
    addr: u64,
    buf: &'b mut [u8; PATH_BUF],
) -> Result<&'b str, Errno> {
    let len = read_path(env, addr, buf)?;
    core::str::from_utf8(&buf[..len]).map_err(|_| EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::MockEnv;

    #[test]
    fn table_is_indexed_by_opcode() {
        for (i, slot) in OPS.iter().enumerate() {
            if let Some(def) = slot {
                assert_eq!(usize::from(def.opcode), i, "{}", def.name);
            }
        }
        for &opcode in &ABI_OPCODES {
            assert!(
                matches!(lookup(opcode), Lookup::Known(_)),
                "opcode {opcode} is named by abi and implemented"
            );
        }
        assert_eq!(REGISTRY.len(), ABI_OPCODES.len());
    }

    #[test]
    fn unknown_and_compiled_out() {
        for opcode in [6u8, 7, 13, 16, 20, op::LAST, 200, 255] {
            assert!(matches!(lookup(opcode), Lookup::Unknown), "{opcode}");
        }
        // An abi opcode the table lacks is compiled out.
        let empty: [Option<&'static OpDef>; TABLE_LEN] = [None; TABLE_LEN];
        assert!(matches!(classify(&empty, op::READ), Lookup::CompiledOut));
        assert!(matches!(classify(&empty, 6), Lookup::Unknown));
        assert!(matches!(classify(&empty, 255), Lookup::Unknown));
    }

    #[test]
    fn probe_answers_from_the_table() {
        let mut out = [ProbeOp::default(); 64];
        let header = probe(&mut out);
        assert_eq!(header.last_op, op::LAST - 1);
        assert_eq!(usize::from(header.ops_len), TABLE_LEN);
        for (i, entry) in out[..TABLE_LEN].iter().enumerate() {
            assert_eq!(usize::from(entry.op), i);
            let want = ABI_OPCODES.contains(&(i as u8));
            assert_eq!(entry.flags == PROBE_OP_SUPPORTED, want, "op {i}");
        }
        assert_eq!(out[TABLE_LEN], ProbeOp::default(), "nothing past the table");
        let mut few = [ProbeOp::default(); 3];
        assert_eq!(probe(&mut few).ops_len, 3);
        assert_eq!(probe(&mut []).ops_len, 0);
    }

    #[test]
    fn fixed_file_and_buffer_checks() {
        let mut env = MockEnv::new(0x1000, 16);
        let files = [Some(7), None];
        let buffers = [Some((0x1000, 0x100)), None];
        let ctx = IssueCtx::new(&mut env, &files, &buffers);
        let mut sqe = Sqe {
            fd: 5,
            ..Sqe::default()
        };
        assert_eq!(ctx.file(&sqe), Ok(FileRef::Fd(5)));
        sqe.flags = sqe_flags::FIXED_FILE;
        sqe.fd = 0;
        assert_eq!(ctx.file(&sqe), Ok(FileRef::Pinned(7)));
        for fd in [1, 2, -1, i32::MAX, i32::MIN] {
            sqe.fd = fd;
            assert_eq!(ctx.file(&sqe), Err(EBADF), "fd {fd}");
        }
        assert_eq!(ctx.fixed_buffer(0, 0x1000, 0x100), Ok(()));
        assert_eq!(ctx.fixed_buffer(0, 0x10ff, 1), Ok(()));
        assert_eq!(ctx.fixed_buffer(0, 0x1100, 0), Ok(()));
        assert_eq!(ctx.fixed_buffer(0, 0x10ff, 2), Err(EFAULT));
        assert_eq!(ctx.fixed_buffer(0, 0xfff, 1), Err(EFAULT));
        assert_eq!(ctx.fixed_buffer(0, u64::MAX, 2), Err(EFAULT));
        assert_eq!(ctx.fixed_buffer(1, 0x1000, 1), Err(EFAULT));
        assert_eq!(ctx.fixed_buffer(2, 0x1000, 1), Err(EFAULT));
        assert_eq!(ctx.fixed_buffer(u16::MAX, 0x1000, 1), Err(EFAULT));
    }

    #[test]
    fn paths_are_read_up_to_the_nul() {
        // Memory ends at 0x3000: a page boundary.
        let mut env = MockEnv::new(0x1000, 0x2000);
        let mut buf = [0u8; PATH_BUF];
        env.write_user(0x1000, b"/hello\0junk").unwrap();
        assert_eq!(user_path(&env, 0x1000, &mut buf), Ok("/hello"));
        // A path right at the end of memory.
        env.write_user(0x2ffc, b"abc\0").unwrap();
        assert_eq!(user_path(&env, 0x2ffc, &mut buf), Ok("abc"));
        // No NUL before memory ends.
        env.write_user(0x2ffc, b"abcd").unwrap();
        assert_eq!(user_path(&env, 0x2ffc, &mut buf), Err(EFAULT));
        assert_eq!(user_path(&env, 0, &mut buf), Err(EFAULT));
        assert_eq!(user_path(&env, u64::MAX, &mut buf), Err(EFAULT));
        // Exactly PATH_MAX bytes is fine, one more is too long.
        let long = [b'x'; PATH_MAX];
        env.write_user(0x1100, &long).unwrap();
        env.write_user(0x1100 + PATH_MAX as u64, &[0]).unwrap();
        assert_eq!(
            user_path(&env, 0x1100, &mut buf).map(str::len),
            Ok(PATH_MAX)
        );
        env.write_user(0x1100 + PATH_MAX as u64, b"y\0").unwrap();
        assert_eq!(user_path(&env, 0x1100, &mut buf), Err(ENAMETOOLONG));
        // Not UTF-8.
        env.write_user(0x1000, b"\xff\0").unwrap();
        assert_eq!(user_path(&env, 0x1000, &mut buf), Err(EINVAL));
    }

    #[test]
    fn path_fault_inside_a_chunk() {
        // Memory ends mid-page, so a whole chunk faults but bytes before
        // the end are readable.
        let mut env = MockEnv::new(0x1000, 0x10);
        let mut buf = [0u8; PATH_BUF];
        env.write_user(0x100a, b"ab\0").unwrap();
        assert_eq!(user_path(&env, 0x100a, &mut buf), Ok("ab"));
        env.write_user(0x100a, b"abcdef").unwrap();
        assert_eq!(user_path(&env, 0x100a, &mut buf), Err(EFAULT));
    }

    #[test]
    fn timespecs() {
        let mut env = MockEnv::new(0x1000, 0x100);
        let put = |env: &mut MockEnv, sec: i64, nsec: i64| {
            env.write_user(0x1000, &sec.to_le_bytes()).unwrap();
            env.write_user(0x1008, &nsec.to_le_bytes()).unwrap();
        };
        put(&mut env, 1, 5);
        assert_eq!(
            read_timespec(&env, 0x1000),
            Ok(Timespec { sec: 1, nsec: 5 })
        );
        for (sec, nsec) in [(-1, 0), (0, -1), (0, 1_000_000_000), (i64::MIN, i64::MAX)] {
            put(&mut env, sec, nsec);
            assert_eq!(read_timespec(&env, 0x1000), Err(EINVAL));
        }
        assert_eq!(read_timespec(&env, 0x10f8), Err(EFAULT));
        let ts = Timespec { sec: 2, nsec: 3 };
        assert_eq!(deadline(10, timespec_ns(ts), false), 2_000_000_013);
        assert_eq!(deadline(10, timespec_ns(ts), true), 2_000_000_003);
        let huge = Timespec {
            sec: i64::MAX,
            nsec: 999_999_999,
        };
        assert_eq!(timespec_ns(huge), u64::MAX);
        assert_eq!(deadline(10, timespec_ns(huge), false), u64::MAX);
    }
}
