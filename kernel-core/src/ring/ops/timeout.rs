//! TIMEOUT, TIMEOUT_REMOVE, LINK_TIMEOUT.
//!
//! TIMEOUT: `addr` points at a [`abi::io_uring::Timespec`], `len` must be
//! 1, `off` is the completion count (truncated to 32 bits, as Linux does),
//! `op_flags` may hold `timeout_flags::ABS`. The timespec is read and
//! checked at prep (`EFAULT`, `EINVAL`), as Linux does; the timer starts at
//! issue. The engine keeps it pending until the deadline (`-ETIME`) or
//! until `off` other completions were posted (0); a count of 0 is a pure
//! timer.
//!
//! TIMEOUT_REMOVE: cancels the pending TIMEOUT whose `user_data` is `addr`.
//! No update flags are supported; `FIXED_FILE` is `EINVAL` (Linux).
//!
//! LINK_TIMEOUT: like TIMEOUT without a count, for the SQE before it in a
//! link chain. At prep, after the timespec, its place is checked as Linux
//! does: it must not start a chain or stand alone, nor follow another
//! LINK_TIMEOUT (`EINVAL`). The engine arms it.

use abi::errno::Errno;
use abi::errno::EINVAL;
use abi::io_uring::{op, sqe_flags, timeout_flags, Sqe};

use super::{
    deadline, read_timespec, timespec_ns, Issue, IssueCtx, OpCaps, OpDef, PrepCtx, Prepared,
};

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

/// Linux's `__io_timeout_prep`: the fields, the flags, then the timespec.
fn prep_common(ctx: &PrepCtx<'_>, sqe: &Sqe, link: bool) -> Result<Prepared, Errno> {
    if sqe.len != 1 || sqe.buf_index != 0 || sqe.file_index != 0 {
        return Err(EINVAL);
    }
    if link && sqe.off != 0 {
        return Err(EINVAL);
    }
    if sqe.op_flags & !timeout_flags::ABS != 0 {
        return Err(EINVAL);
    }
    let ts = read_timespec(ctx.env, sqe.addr)?;
    Ok(Prepared::Timeout {
        ns: timespec_ns(ts),
    })
}

fn prep_timeout(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    prep_common(ctx, sqe, false)
}

/// The deadline a prepped timer names: absolute, or from now.
fn sqe_deadline(ctx: &IssueCtx<'_>, sqe: &Sqe, prepared: Prepared) -> Option<u64> {
    match prepared {
        Prepared::Timeout { ns } => {
            let absolute = sqe.op_flags & timeout_flags::ABS != 0;
            Some(deadline(ctx.env.now_ns(), ns, absolute))
        }
        Prepared::Nothing => None,
    }
}

fn issue_timeout(ctx: &mut IssueCtx<'_>, sqe: &Sqe, prepared: Prepared) -> Issue {
    match sqe_deadline(ctx, sqe, prepared) {
        Some(deadline_ns) => Issue::Timeout {
            deadline_ns: Some(deadline_ns),
            count: sqe.off as u32,
        },
        // Not reached: prep always hands over the timespec.
        None => Issue::Done(Err(EINVAL)),
    }
}

fn prep_remove(_ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.flags & sqe_flags::FIXED_FILE != 0
        || sqe.len != 0
        || sqe.op_flags != 0
        || sqe.buf_index != 0
        || sqe.file_index != 0
    {
        return Err(EINVAL);
    }
    Ok(Prepared::Nothing)
}

fn issue_remove(_ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    Issue::Cancel {
        target: sqe.addr,
        timeouts_only: true,
    }
}

fn prep_link_timeout(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    let prepared = prep_common(ctx, sqe, true)?;
    if ctx.head || ctx.after_link_timeout {
        return Err(EINVAL);
    }
    Ok(prepared)
}

fn issue_link_timeout(ctx: &mut IssueCtx<'_>, sqe: &Sqe, prepared: Prepared) -> Issue {
    match sqe_deadline(ctx, sqe, prepared) {
        Some(deadline_ns) => Issue::LinkTimeout { deadline_ns },
        None => Issue::Done(Err(EINVAL)),
    }
}
