//! READ, WRITE, READ_FIXED, WRITE_FIXED: one transfer between a file and a
//! user buffer (`addr`, `len`), at `off` or, with `off == -1`, at the file
//! position. The `_FIXED` forms use registered buffer `buf_index`, and the
//! whole of `[addr, addr + len)` must lie within it (`EFAULT`).
//!
//! The result is the byte count; fewer than `len` is a short transfer
//! ([`Issue::Short`]), which breaks an `IO_LINK` chain as on Linux. `len` is
//! clamped to [`MAX_RW_COUNT`] so the count always fits the result.

use abi::errno::{Errno, EINVAL, EOPNOTSUPP};
use abi::io_uring::{op, Sqe};

use super::{Issue, IssueCtx, OpCaps, OpDef};
use crate::ring::env::FileRef;

/// Most bytes one transfer moves (Linux's `MAX_RW_COUNT`).
pub const MAX_RW_COUNT: u32 = 0x7fff_f000;

pub const READ: OpDef = OpDef {
    opcode: op::READ,
    name: "READ",
    caps: OpCaps::NEEDS_FILE.union(OpCaps::POLLABLE),
    prep,
    issue: issue_read,
};

pub const WRITE: OpDef = OpDef {
    opcode: op::WRITE,
    name: "WRITE",
    caps: OpCaps::NEEDS_FILE.union(OpCaps::POLLABLE),
    prep,
    issue: issue_write,
};

pub const READ_FIXED: OpDef = OpDef {
    opcode: op::READ_FIXED,
    name: "READ_FIXED",
    caps: OpCaps::NEEDS_FILE
        .union(OpCaps::POLLABLE)
        .union(OpCaps::FIXED_BUFFER),
    prep,
    issue: issue_read_fixed,
};

pub const WRITE_FIXED: OpDef = OpDef {
    opcode: op::WRITE_FIXED,
    name: "WRITE_FIXED",
    caps: OpCaps::NEEDS_FILE
        .union(OpCaps::POLLABLE)
        .union(OpCaps::FIXED_BUFFER),
    prep,
    issue: issue_write_fixed,
};

/// Shared by every read/write op, vectored ones included: no `rw_flags`
/// are supported (`EOPNOTSUPP`, as Linux says for unknown ones), and the
/// offset is `-1` or a non-negative position (`EINVAL`).
pub(super) fn prep(sqe: &Sqe) -> Result<(), Errno> {
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
                Issue::Short(n as i32)
            } else {
                Issue::Done(n as i32)
            }
        }
        Err(errno) => Issue::Done(-errno),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

fn transfer(ctx: &mut IssueCtx<'_>, sqe: &Sqe, dir: Dir, fixed: bool) -> Issue {
    let len = sqe.len.min(MAX_RW_COUNT);
    if fixed {
        if let Err(errno) = ctx.fixed_buffer(sqe.buf_index, sqe.addr, u64::from(sqe.len)) {
            return Issue::Done(-errno);
        }
    }
    let file: FileRef = match ctx.file(sqe) {
        Ok(file) => file,
        Err(errno) => return Issue::Done(-errno),
    };
    let result = match dir {
        Dir::Read => ctx.env.read(file, offset(sqe), sqe.addr, len),
        Dir::Write => ctx.env.write(file, offset(sqe), sqe.addr, len),
    };
    match transferred(result, len) {
        // Clamped: still short of what was asked.
        Issue::Done(n) if len < sqe.len => Issue::Short(n),
        other => other,
    }
}

fn issue_read(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    transfer(ctx, sqe, Dir::Read, false)
}

fn issue_write(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    transfer(ctx, sqe, Dir::Write, false)
}

fn issue_read_fixed(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    transfer(ctx, sqe, Dir::Read, true)
}

fn issue_write_fixed(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    transfer(ctx, sqe, Dir::Write, true)
}
