//! FTRUNCATE (Linux 6.9): sets the size of the file at `fd` to `off`.
//! `addr`, `len`, `op_flags`, `buf_index`, `file_index` and `addr3` must be
//! zero (`EINVAL` at prep, as Linux). At issue: `EBADF` without a file,
//! `EINVAL` for a negative length, a file not open for writing, or
//! anything but a regular file.

use abi::errno::{Errno, EINVAL};
use abi::io_uring::{op, Sqe};

use super::{done_or_pending, Issue, IssueCtx, OpCaps, OpDef, PathOp, PrepCtx, Prepared};

pub const FTRUNCATE: OpDef = OpDef {
    opcode: op::FTRUNCATE,
    name: "FTRUNCATE",
    caps: OpCaps::NEEDS_FILE.union(OpCaps::PATH_IO),
    prep,
    issue,
};

fn prep(_ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.addr != 0
        || sqe.len != 0
        || sqe.op_flags != 0
        || sqe.buf_index != 0
        || sqe.file_index != 0
        || sqe.addr3 != 0
    {
        return Err(EINVAL);
    }
    Ok(Prepared::Nothing)
}

fn issue(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    let result = (|| {
        let file = ctx.file(sqe)?;
        if (sqe.off as i64) < 0 {
            return Err(EINVAL);
        }
        if ctx.start_path(PathOp::Ftruncate { file, len: sqe.off })? {
            return Ok(None);
        }
        ctx.env.ftruncate(file, sqe.off).map(|()| Some(0))
    })();
    done_or_pending(result)
}
