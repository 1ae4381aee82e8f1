//! READ, WRITE, READ_FIXED, WRITE_FIXED: one transfer between a file and a
//! user buffer (`addr`, `len`), at `off` or, with `off == -1`, at the file
//! position. The `_FIXED` forms use registered buffer `buf_index`, and the
//! whole of `[addr, addr + len)` must lie within it (`EFAULT`).
//!
//! The result is the byte count; fewer than `len` is a short transfer
//! ([`Issue::Short`]), which breaks an `IO_LINK` chain as on Linux. `len` is
//! clamped to [`MAX_RW_COUNT`] so the count always fits the result.
//!
//! What is checked when, as in Linux's `io_prep_rw` and `io_read`: at prep
//! `ioprio` (by the engine) and, for the `_FIXED` forms, that `buf_index`
//! names a registered buffer (`EFAULT`); everything else at issue: the
//! registered file, the range within the registered buffer (`EFAULT`),
//! `rw_flags` (none are supported: `EOPNOTSUPP`, as Linux says for unknown
//! ones), the offset (`-1` or a position, else `EINVAL`), then the file.

use abi::errno::{Errno, EFAULT, EINVAL, EOPNOTSUPP};
use abi::io_uring::{op, Sqe};

use super::{Issue, IssueCtx, OpCaps, OpDef, PrepCtx, Prepared};
use crate::ring::env::AsyncIo;

/// Most bytes one transfer moves (Linux's `MAX_RW_COUNT`).
pub const MAX_RW_COUNT: u32 = 0x7fff_f000;

pub const READ: OpDef = OpDef {
    opcode: op::READ,
    name: "READ",
    caps: OpCaps::NEEDS_FILE
        .union(OpCaps::POLLABLE)
        .union(OpCaps::IOPRIO)
        .union(OpCaps::DEVICE_IO),
    prep,
    issue: issue_read,
};

pub const WRITE: OpDef = OpDef {
    opcode: op::WRITE,
    name: "WRITE",
    caps: OpCaps::NEEDS_FILE
        .union(OpCaps::POLLABLE)
        .union(OpCaps::IOPRIO)
        .union(OpCaps::DEVICE_IO),
    prep,
    issue: issue_write,
};

pub const READ_FIXED: OpDef = OpDef {
    opcode: op::READ_FIXED,
    name: "READ_FIXED",
    caps: OpCaps::NEEDS_FILE
        .union(OpCaps::POLLABLE)
        .union(OpCaps::FIXED_BUFFER)
        .union(OpCaps::IOPRIO)
        .union(OpCaps::DEVICE_IO),
    prep: prep_fixed,
    issue: issue_read_fixed,
};

pub const WRITE_FIXED: OpDef = OpDef {
    opcode: op::WRITE_FIXED,
    name: "WRITE_FIXED",
    caps: OpCaps::NEEDS_FILE
        .union(OpCaps::POLLABLE)
        .union(OpCaps::FIXED_BUFFER)
        .union(OpCaps::IOPRIO)
        .union(OpCaps::DEVICE_IO),
    prep: prep_fixed,
    issue: issue_write_fixed,
};

/// Prep of READ and WRITE, READV and WRITEV: nothing beyond the engine's
/// checks (Linux reads the fields and checks `ioprio`).
pub(super) fn prep(_ctx: &PrepCtx<'_>, _sqe: &Sqe) -> Result<Prepared, Errno> {
    Ok(Prepared::Nothing)
}

/// Prep of READ_FIXED and WRITE_FIXED: `buf_index` must name a registered
/// buffer (`EFAULT`).
fn prep_fixed(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if usize::from(sqe.buf_index) >= ctx.buffers {
        return Err(EFAULT);
    }
    Ok(Prepared::Nothing)
}

/// The issue-time checks every read/write op shares: no `rw_flags` are
/// supported (`EOPNOTSUPP`), and the offset is `-1` or a non-negative
/// position (`EINVAL`).
pub(super) fn check_rw(sqe: &Sqe) -> Result<(), Errno> {
    if sqe.op_flags != 0 {
        return Err(EOPNOTSUPP);
    }
    if (sqe.off as i64) < -1 {
        return Err(EINVAL);
    }
    Ok(())
}

/// The offset an SQE asks for: `None` for the file position.
pub(super) fn offset(sqe: &Sqe) -> Option<u64> {
    (sqe.off != u64::MAX).then_some(sqe.off)
}

/// The result of a transfer that asked for `wanted` bytes.
pub(super) fn transferred(result: Result<u32, Errno>, wanted: u32) -> Issue {
    match result {
        // The environment never reports more than asked; clamp anyway.
        Ok(n) => {
            let n = n.min(wanted);
            if n < wanted {
                Issue::Short(n)
            } else {
                Issue::Done(Ok(n))
            }
        }
        Err(errno) => Issue::Done(Err(errno)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

fn transfer(ctx: &mut IssueCtx<'_>, sqe: &Sqe, dir: Dir, fixed: bool) -> Issue {
    let file = match ctx.file(sqe) {
        Ok(file) => file,
        Err(errno) => return Issue::Done(Err(errno)),
    };
    if fixed {
        if let Err(errno) = ctx.fixed_buffer(sqe.buf_index, sqe.addr, u64::from(sqe.len)) {
            return Issue::Done(Err(errno));
        }
    }
    if let Err(errno) = check_rw(sqe) {
        return Issue::Done(Err(errno));
    }
    let len = sqe.len.min(MAX_RW_COUNT);
    let (at, buf) = (offset(sqe), sqe.addr);
    let io = match dir {
        Dir::Read => AsyncIo::Read {
            offset: at,
            buf,
            len,
        },
        Dir::Write => AsyncIo::Write {
            offset: at,
            buf,
            len,
        },
    };
    match ctx.start(file, io) {
        // A clamped request is short of what was asked whatever happens.
        Ok(true) => return Issue::Pending { wanted: sqe.len },
        Ok(false) => {}
        Err(errno) => return Issue::Done(Err(errno)),
    }
    let result = match dir {
        Dir::Read => ctx.env.read(file, at, buf, len),
        Dir::Write => ctx.env.write(file, at, buf, len),
    };
    match transferred(result, len) {
        // Clamped: still short of what was asked.
        Issue::Done(Ok(n)) if len < sqe.len => Issue::Short(n),
        other => other,
    }
}

fn issue_read(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    transfer(ctx, sqe, Dir::Read, false)
}

fn issue_write(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    transfer(ctx, sqe, Dir::Write, false)
}

fn issue_read_fixed(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    transfer(ctx, sqe, Dir::Read, true)
}

fn issue_write_fixed(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    transfer(ctx, sqe, Dir::Write, true)
}
