//! NOP: completes at once with 0. The benchmark's baseline, so it does
//! nothing but check that its per-op flags are clear (Linux 6.1 ignores
//! them; later kernels refuse them with `EINVAL`, as here).

use abi::errno::Errno;
use abi::errno::EINVAL;
use abi::io_uring::{op, Sqe};

use super::{Issue, IssueCtx, OpCaps, OpDef, PrepCtx, Prepared};

pub const NOP: OpDef = OpDef {
    opcode: op::NOP,
    name: "NOP",
    caps: OpCaps::empty(),
    prep,
    issue,
};

fn prep(_ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.op_flags != 0 {
        return Err(EINVAL);
    }
    Ok(Prepared::Nothing)
}

fn issue(_ctx: &mut IssueCtx<'_>, _sqe: &Sqe, _prepared: Prepared) -> Issue {
    Issue::Done(Ok(0))
}
