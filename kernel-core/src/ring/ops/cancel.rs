//! ASYNC_CANCEL: cancels the pending op whose `user_data` is `addr` (a
//! TIMEOUT or an armed LINK_TIMEOUT: nothing else stays pending here). No
//! cancel flags (`CANCEL_ALL`, by fd...) are supported.

use abi::errno::Errno;
use abi::errno::EINVAL;
use abi::io_uring::{op, Sqe};

use super::{Issue, IssueCtx, OpCaps, OpDef, PrepCtx, Prepared};

pub const ASYNC_CANCEL: OpDef = OpDef {
    opcode: op::ASYNC_CANCEL,
    name: "ASYNC_CANCEL",
    caps: OpCaps::empty(),
    prep,
    issue,
};

fn prep(_ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.off != 0 || sqe.len != 0 || sqe.op_flags != 0 || sqe.file_index != 0 {
        return Err(EINVAL);
    }
    Ok(Prepared::Nothing)
}

fn issue(_ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    Issue::Cancel {
        target: sqe.addr,
        timeouts_only: false,
    }
}
