//! READV, WRITEV: a transfer between a file and the user buffers of an
//! iovec array (`addr`, `len` = number of iovecs, at most `IOV_MAX`), at
//! `off` or at the file position (`off == -1`).
//!
//! The iovec array is read twice, both times from user memory and without a
//! heap copy: first to validate it whole (readable array, each buffer user
//! memory, `EINVAL` for a length that is negative as `ssize_t`; the total is
//! clamped to [`MAX_RW_COUNT`] as on Linux), then to transfer. If user space
//! changes it in between, the second pass still checks every copy and never
//! moves more than the first pass counted. A transfer stops at the first
//! short piece; an error after some bytes moved returns those bytes.

use abi::errno::{Errno, EFAULT, EINVAL};
use abi::io_uring::{op, IoVec, Sqe, IOV_MAX};

use super::rw::{offset, prep as prep_rw, MAX_RW_COUNT};
use super::{read_user_value, Issue, IssueCtx, OpCaps, OpDef};
use crate::ring::env::IoEnv;

pub const READV: OpDef = OpDef {
    opcode: op::READV,
    name: "READV",
    caps: OpCaps::NEEDS_FILE.union(OpCaps::POLLABLE),
    prep,
    issue: issue_readv,
};

pub const WRITEV: OpDef = OpDef {
    opcode: op::WRITEV,
    name: "WRITEV",
    caps: OpCaps::NEEDS_FILE.union(OpCaps::POLLABLE),
    prep,
    issue: issue_writev,
};

fn prep(sqe: &Sqe) -> Result<(), Errno> {
    prep_rw(sqe)?;
    if sqe.len > IOV_MAX {
        return Err(EINVAL);
    }
    Ok(())
}

fn read_iovec(env: &dyn IoEnv, array: u64, index: u32) -> Result<IoVec, Errno> {
    let size = core::mem::size_of::<IoVec>() as u64;
    let addr = array.checked_add(u64::from(index) * size).ok_or(EFAULT)?;
    read_user_value(env, addr)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

/// Pass 1: the total the transfer will move, after checking every iovec.
fn validate(env: &dyn IoEnv, sqe: &Sqe, dir: Dir) -> Result<u64, Errno> {
    let mut total = 0u64;
    for i in 0..sqe.len {
        let iov = read_iovec(env, sqe.addr, i)?;
        if iov.len > i64::MAX as u64 {
            return Err(EINVAL);
        }
        let len = iov.len.min(u64::from(MAX_RW_COUNT) - total);
        // Reading from the file writes user memory.
        env.check_user(iov.base, len, dir == Dir::Read)?;
        total += len;
    }
    Ok(total)
}

fn vectored(ctx: &mut IssueCtx<'_>, sqe: &Sqe, dir: Dir) -> Issue {
    let file = match ctx.file(sqe) {
        Ok(file) => file,
        Err(errno) => return Issue::Done(-errno),
    };
    let total = match validate(ctx.env, sqe, dir) {
        Ok(total) => total,
        Err(errno) => return Issue::Done(-errno),
    };
    let mut done = 0u64;
    let mut error = None;
    for i in 0..sqe.len {
        if done >= total {
            break;
        }
        let iov = match read_iovec(ctx.env, sqe.addr, i) {
            Ok(iov) => iov,
            Err(errno) => {
                error = Some(errno);
                break;
            }
        };
        // At most MAX_RW_COUNT, so it fits a u32.
        let len = iov.len.min(total - done) as u32;
        if len == 0 {
            continue;
        }
        let at = offset(sqe).map(|o| o.saturating_add(done));
        let result = match dir {
            Dir::Read => ctx.env.read(file, at, iov.base, len),
            Dir::Write => ctx.env.write(file, at, iov.base, len),
        };
        match result {
            Ok(n) => {
                let n = n.min(len);
                done += u64::from(n);
                if n < len {
                    break;
                }
            }
            Err(errno) => {
                error = Some(errno);
                break;
            }
        }
    }
    match error {
        Some(errno) if done == 0 => Issue::Done(-errno),
        // done <= total <= MAX_RW_COUNT fits an i32.
        _ if done < total => Issue::Short(done as i32),
        _ => Issue::Done(done as i32),
    }
}

fn issue_readv(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    vectored(ctx, sqe, Dir::Read)
}

fn issue_writev(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    vectored(ctx, sqe, Dir::Write)
}
