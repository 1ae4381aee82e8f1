//! FSYNC: makes a file's data durable. `op_flags` may hold
//! `fsync_flags::DATASYNC` (RAM files have no metadata to spare, so it is
//! the same); `addr`, `buf_index` and `file_index` must be zero (`EINVAL`,
//! as Linux checks at prep). The file is looked up at issue (`EBADF`).

use abi::errno::Errno;
use abi::errno::EINVAL;
use abi::io_uring::{fsync_flags, op, Sqe};

use super::{Issue, IssueCtx, OpCaps, OpDef, PrepCtx, Prepared};
use crate::ring::env::AsyncIo;

pub const FSYNC: OpDef = OpDef {
    opcode: op::FSYNC,
    name: "FSYNC",
    caps: OpCaps::NEEDS_FILE.union(OpCaps::DEVICE_IO),
    prep,
    issue,
};

fn prep(_ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.addr != 0
        || sqe.buf_index != 0
        || sqe.file_index != 0
        || sqe.op_flags & !fsync_flags::DATASYNC != 0
    {
        return Err(EINVAL);
    }
    Ok(Prepared::Nothing)
}

fn issue(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    let datasync = sqe.op_flags & fsync_flags::DATASYNC != 0;
    let file = match ctx.file(sqe) {
        Ok(file) => file,
        Err(errno) => return Issue::Done(Err(errno)),
    };
    match ctx.start(file, AsyncIo::Fsync { datasync }) {
        Ok(true) => return Issue::Pending { wanted: 0 },
        Ok(false) => {}
        Err(errno) => return Issue::Done(Err(errno)),
    }
    let result = ctx.env.fsync(file);
    Issue::Done(result.map(|()| 0))
}
