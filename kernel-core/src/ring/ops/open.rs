//! OPENAT and CLOSE: descriptors of the ring owner.
//!
//! OPENAT: `addr` a NUL-terminated path, `op_flags` the `abi::open_flags`;
//! the result is the new descriptor. As on Linux the path is copied at prep
//! (`EFAULT`, `ENAMETOOLONG`, `ENOENT` if empty) and `FIXED_FILE` or a
//! `buf_index` fail there (`EBADF`, `EINVAL`); `fd` is the directory a
//! relative path starts from ([`AT_FDCWD`]: `/`, there being no working
//! directory; else an open directory, `EBADF`/`ENOTDIR` at issue), and the
//! flags are checked at issue (`EINVAL`). Paths: `docs/vfs.md`. Installing into the registered file
//! table (`file_index`) is not supported (`EINVAL`). The path is read again
//! at issue, checked again, and must be UTF-8 (`EINVAL`).
//!
//! CLOSE: closes `fd`; closing a registered-file slot is not supported
//! (`file_index != 0` is `EINVAL`, `FIXED_FILE` is `EBADF`, as on Linux).

use abi::errno::{Errno, EBADF, EINVAL, ENOENT};
use abi::io_uring::{op, sqe_flags, Sqe};

use super::{
    done_or_pending, read_path, user_path, Issue, IssueCtx, OpCaps, OpDef, PathOp, PrepCtx,
    Prepared, PATH_BUF,
};

pub const OPENAT: OpDef = OpDef {
    opcode: op::OPENAT,
    name: "OPENAT",
    caps: OpCaps::PATH_IO,
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

fn prep_openat(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.buf_index != 0 {
        return Err(EINVAL);
    }
    if sqe.flags & sqe_flags::FIXED_FILE != 0 {
        return Err(EBADF);
    }
    let mut buf = [0u8; PATH_BUF];
    if read_path(ctx.env, sqe.addr, &mut buf)? == 0 {
        return Err(ENOENT);
    }
    if sqe.file_index != 0 {
        return Err(EINVAL);
    }
    Ok(Prepared::Nothing)
}

fn issue_openat(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    let mut buf = [0u8; PATH_BUF];
    let result = user_path(ctx.env, sqe.addr, &mut buf).and_then(|path| {
        let op = PathOp::Open {
            dirfd: sqe.fd,
            path,
            flags: sqe.op_flags,
        };
        if ctx.start_path(op)? {
            return Ok(None);
        }
        ctx.env
            .open(sqe.fd, path, sqe.op_flags)
            .map(|fd| Some(fd as u32))
    });
    done_or_pending(result)
}

fn prep_close(_ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
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
    Ok(Prepared::Nothing)
}

fn issue_close(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    Issue::Done(ctx.env.close(sqe.fd).map(|()| 0))
}
