//! FSYNC: makes a file's data durable. No `fsync_flags` are supported
//! (`abi` names none; Linux's `IORING_FSYNC_DATASYNC` would belong there).

use abi::errno::Errno;
use abi::errno::EINVAL;
use abi::io_uring::{op, Sqe};

use super::{Issue, IssueCtx, OpCaps, OpDef};

pub const FSYNC: OpDef = OpDef {
    opcode: op::FSYNC,
    name: "FSYNC",
    caps: OpCaps::NEEDS_FILE,
    prep,
    issue,
};

fn prep(sqe: &Sqe) -> Result<(), Errno> {
    if sqe.addr != 0 || sqe.buf_index != 0 || sqe.file_index != 0 || sqe.op_flags != 0 {
        return Err(EINVAL);
    }
    Ok(())
}

fn issue(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Issue {
    let result = ctx.file(sqe).and_then(|file| ctx.env.fsync(file));
    Issue::from_result(result.map(|()| 0))
}
