//! OPENAT and CLOSE: descriptors of the ring owner.
//!
//! OPENAT: `fd` is the directory and must be [`AT_FDCWD`] (`EBADF`; the
//! file system is flat), `addr` a NUL-terminated path, `op_flags` the
//! `abi::open_flags`; the result is the new descriptor. Installing into the
//! registered file table (`file_index`) is not supported (`EINVAL`).
//!
//! CLOSE: closes `fd`; closing a registered-file slot is not supported
//! (`file_index != 0` is `EINVAL`, `FIXED_FILE` is `EBADF`, as on Linux).

use abi::errno::{Errno, EBADF, EINVAL};
use abi::io_uring::{op, sqe_flags, Sqe};

use super::{user_path, Issue, IssueCtx, OpCaps, OpDef, AT_FDCWD, PATH_BUF};

pub const OPENAT: OpDef = OpDef {
    opcode: op::OPENAT,
    name: "OPENAT",
    caps: OpCaps::empty(),
    prep: prep_openat,
    issue: issue_openat,
};

pub const CLOSE: OpDef = OpDef {
    opcode: op::CLOSE,
    name: "CLOSE",
    caps: OpCaps::empty(),
    prep: prep_close,
    issue: issue_close,
};

fn prep_openat(sqe: &Sqe) -> Result<(), Errno> {
    if sqe.buf_index != 0 || sqe.file_index != 0 {
        return Err(EINVAL);
    }
    if sqe.flags & sqe_flags::FIXED_FILE != 0 || sqe.fd != AT_FDCWD {
        return Err(EBADF);
    }
    Ok(())
}

fn issue_openat(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    let mut buf = [0u8; PATH_BUF];
    let result =
        user_path(ctx.env, sqe.addr, &mut buf).and_then(|path| ctx.env.open(path, sqe.op_flags));
    Issue::from_result(result)
}

fn prep_close(sqe: &Sqe) -> Result<(), Errno> {
    if sqe.off != 0
        || sqe.addr != 0
        || sqe.len != 0
        || sqe.op_flags != 0
        || sqe.buf_index != 0
        || sqe.file_index != 0
    {
        return Err(EINVAL);
    }
    if sqe.flags & sqe_flags::FIXED_FILE != 0 {
        return Err(EBADF);
    }
    Ok(())
}

fn issue_close(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    Issue::from_result(ctx.env.close(sqe.fd).map(|()| 0))
}
