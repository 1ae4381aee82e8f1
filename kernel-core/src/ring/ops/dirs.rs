//! MKDIRAT, UNLINKAT, RENAMEAT: directory operations by path, with Linux's
//! opcodes and SQE fields.
//!
//! Paths are NUL-terminated at `addr` (RENAMEAT's new path at `off`, Linux's
//! `addr2`), copied at prep (`EFAULT`, `ENAMETOOLONG`, `ENOENT` if empty)
//! and read again at issue (`EINVAL` unless UTF-8). Directory descriptors
//! (`fd`, RENAMEAT's new one in `len`) say where a relative path starts:
//! [`AT_FDCWD`] is `/` (there is no working directory yet), anything else
//! must be an open directory (`EBADF`, `ENOTDIR` at issue). `FIXED_FILE` is
//! `EBADF` at prep, as on Linux.
//!
//! - MKDIRAT: `len` is the mode (accepted and ignored: no permissions);
//!   `off`, `op_flags`, `buf_index`, `file_index` must be zero.
//! - UNLINKAT: `op_flags` may hold [`AT_REMOVEDIR`] (then it is `rmdir`);
//!   `off`, `len`, `buf_index`, `file_index` must be zero.
//! - RENAMEAT: `op_flags` are Linux's `renameat2` flags, none supported
//!   (`EINVAL`); `buf_index`, `file_index` must be zero.
//!
//! These finish inline: the RAM file system never sleeps. A file system
//! that may sleep (`FileSystem::might_sleep`) will have them run on a
//! worker thread instead (`docs/vfs.md`).

use abi::errno::{Errno, EBADF, EINVAL, ENOENT};
use abi::io_uring::{op, sqe_flags, Sqe, AT_REMOVEDIR};

#[cfg(doc)]
use super::AT_FDCWD;
use super::{
    done_or_pending, read_path, user_path, Issue, IssueCtx, OpCaps, OpDef, PathOp, PrepCtx,
    Prepared, PATH_BUF,
};
use crate::ring::env::IoEnv;

pub const MKDIRAT: OpDef = OpDef {
    opcode: op::MKDIRAT,
    name: "MKDIRAT",
    caps: OpCaps::PATH_IO,
    prep: prep_mkdirat,
    issue: issue_mkdirat,
};

pub const UNLINKAT: OpDef = OpDef {
    opcode: op::UNLINKAT,
    name: "UNLINKAT",
    caps: OpCaps::PATH_IO,
    prep: prep_unlinkat,
    issue: issue_unlinkat,
};

pub const RENAMEAT: OpDef = OpDef {
    opcode: op::RENAMEAT,
    name: "RENAMEAT",
    caps: OpCaps::PATH_IO,
    prep: prep_renameat,
    issue: issue_renameat,
};

/// Checks at prep that the path at `addr` can be read and is not empty.
fn prep_path(env: &dyn IoEnv, addr: u64) -> Result<(), Errno> {
    let mut buf = [0u8; PATH_BUF];
    if read_path(env, addr, &mut buf)? == 0 {
        return Err(ENOENT);
    }
    Ok(())
}

fn no_fixed(sqe: &Sqe) -> Result<(), Errno> {
    if sqe.flags & sqe_flags::FIXED_FILE != 0 {
        return Err(EBADF);
    }
    Ok(())
}

fn prep_mkdirat(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.off != 0 || sqe.op_flags != 0 || sqe.buf_index != 0 || sqe.file_index != 0 {
        return Err(EINVAL);
    }
    no_fixed(sqe)?;
    prep_path(ctx.env, sqe.addr)?;
    Ok(Prepared::Nothing)
}

fn issue_mkdirat(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    let mut buf = [0u8; PATH_BUF];
    let result = user_path(ctx.env, sqe.addr, &mut buf).and_then(|path| {
        if ctx.start_path(PathOp::Mkdir {
            dirfd: sqe.fd,
            path,
        })? {
            return Ok(None);
        }
        ctx.env.mkdir(sqe.fd, path).map(|()| Some(0))
    });
    done_or_pending(result)
}

fn prep_unlinkat(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.off != 0
        || sqe.len != 0
        || sqe.buf_index != 0
        || sqe.file_index != 0
        || sqe.op_flags & !AT_REMOVEDIR != 0
    {
        return Err(EINVAL);
    }
    no_fixed(sqe)?;
    prep_path(ctx.env, sqe.addr)?;
    Ok(Prepared::Nothing)
}

fn issue_unlinkat(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    let dir = sqe.op_flags & AT_REMOVEDIR != 0;
    let mut buf = [0u8; PATH_BUF];
    let result = user_path(ctx.env, sqe.addr, &mut buf).and_then(|path| {
        if ctx.start_path(PathOp::Unlink {
            dirfd: sqe.fd,
            path,
            dir,
        })? {
            return Ok(None);
        }
        ctx.env.unlink(sqe.fd, path, dir).map(|()| Some(0))
    });
    done_or_pending(result)
}

fn prep_renameat(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.buf_index != 0 || sqe.file_index != 0 || sqe.op_flags != 0 {
        return Err(EINVAL);
    }
    no_fixed(sqe)?;
    prep_path(ctx.env, sqe.addr)?;
    prep_path(ctx.env, sqe.off)?;
    Ok(Prepared::Nothing)
}

fn issue_renameat(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    let mut old = [0u8; PATH_BUF];
    let mut new = [0u8; PATH_BUF];
    let result = user_path(ctx.env, sqe.addr, &mut old).and_then(|old| {
        let new = user_path(ctx.env, sqe.off, &mut new)?;
        let op = PathOp::Rename {
            olddirfd: sqe.fd,
            old,
            newdirfd: sqe.len as i32,
            new,
        };
        if ctx.start_path(op)? {
            return Ok(None);
        }
        ctx.env
            .rename(sqe.fd, old, sqe.len as i32, new)
            .map(|()| Some(0))
    });
    done_or_pending(result)
}
