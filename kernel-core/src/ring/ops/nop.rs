//! NOP: completes at once with 0. The benchmark's baseline, so it does
//! nothing but check that its per-op flags are clear.

use abi::errno::Errno;
use abi::errno::EINVAL;
use abi::io_uring::{op, Sqe};

use super::{Issue, IssueCtx, OpCaps, OpDef};

pub const NOP: OpDef = OpDef {
    opcode: op::NOP,
    name: "NOP",
    caps: OpCaps::empty(),
    prep,
    issue,
};

fn prep(sqe: &Sqe) -> Result<(), Errno> {
    if sqe.op_flags != 0 {
        return Err(EINVAL);
    }
    Ok(())
}

fn issue(_ctx: &mut IssueCtx<'_>, _sqe: &Sqe) -> Issue {
    Issue::Done(0)
}
