//! TIMEOUT, TIMEOUT_REMOVE, LINK_TIMEOUT.
//!
//! TIMEOUT: `addr` points at a [`abi::io_uring::Timespec`], `len` must be
//! 1, `off` is the completion count (truncated to 32 bits, as Linux does),
//! `op_flags` may hold `timeout_flags::ABS`. The engine keeps it pending
//! until the deadline (`-ETIME`) or until `off` other completions were
//! posted (0); a count of 0 is a pure timer.
//!
//! TIMEOUT_REMOVE: cancels the pending TIMEOUT whose `user_data` is `addr`.
//! No update flags are supported.
//!
//! LINK_TIMEOUT: like TIMEOUT without a count, for the SQE before it in a
//! link chain; the engine checks its position and arms it.

use abi::errno::Errno;
use abi::errno::EINVAL;
use abi::io_uring::{op, timeout_flags, Sqe};

use super::{deadline, read_timespec, Issue, IssueCtx, OpCaps, OpDef};

pub const TIMEOUT: OpDef = OpDef {
    opcode: op::TIMEOUT,
    name: "TIMEOUT",
    caps: OpCaps::ASYNC,
    prep: prep_timeout,
    issue: issue_timeout,
};

pub const TIMEOUT_REMOVE: OpDef = OpDef {
    opcode: op::TIMEOUT_REMOVE,
    name: "TIMEOUT_REMOVE",
    caps: OpCaps::empty(),
    prep: prep_remove,
    issue: issue_remove,
};

pub const LINK_TIMEOUT: OpDef = OpDef {
    opcode: op::LINK_TIMEOUT,
    name: "LINK_TIMEOUT",
    caps: OpCaps::ASYNC.union(OpCaps::LINK_TIMER),
    prep: prep_link_timeout,
    issue: issue_link_timeout,
};

fn prep_timeout(sqe: &Sqe) -> Result<(), Errno> {
    if sqe.len != 1
        || sqe.buf_index != 0
        || sqe.file_index != 0
        || sqe.op_flags & !timeout_flags::ABS != 0
    {
        return Err(EINVAL);
    }
    Ok(())
}

/// The deadline the SQE's timespec names.
fn sqe_deadline(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Result<u64, Errno> {
    let ts = read_timespec(ctx.env, sqe.addr)?;
    let absolute = sqe.op_flags & timeout_flags::ABS != 0;
    Ok(deadline(ctx.env.now_ns(), ts, absolute))
}

fn issue_timeout(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    match sqe_deadline(ctx, sqe) {
        Ok(deadline_ns) => Issue::Timeout {
            deadline_ns: Some(deadline_ns),
            count: sqe.off as u32,
        },
        Err(errno) => Issue::Done(-errno),
    }
}

fn prep_remove(sqe: &Sqe) -> Result<(), Errno> {
    if sqe.len != 0 || sqe.op_flags != 0 || sqe.buf_index != 0 || sqe.file_index != 0 {
        return Err(EINVAL);
    }
    Ok(())
}

fn issue_remove(_ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    Issue::Cancel {
        target: sqe.addr,
        timeouts_only: true,
    }
}

fn prep_link_timeout(sqe: &Sqe) -> Result<(), Errno> {
    prep_timeout(sqe)?;
    if sqe.off != 0 {
        return Err(EINVAL);
    }
    Ok(())
}

fn issue_link_timeout(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    match sqe_deadline(ctx, sqe) {
        Ok(deadline_ns) => Issue::LinkTimeout { deadline_ns },
        Err(errno) => Issue::Done(-errno),
    }
}
