//! STATX: metadata of the file at a path. `fd` is the directory a relative
//! path starts from ([`AT_FDCWD`]: `/`; else an open directory, `EBADF` or
//! `ENOTDIR` at issue as on Linux), `addr` the path (copied at
//! prep: `EFAULT`, `ENAMETOOLONG`, `ENOENT` if empty; read again at issue), `op_flags` the `AT_*` lookup
//! flags (accepted and ignored: there are no links to follow), `len` the
//! wanted mask (everything in `STATX_BASIC` is always filled), `addr3` the
//! [`Statx`] to fill. Only the 64-byte `abi` subset of Linux's 256-byte
//! `struct statx` is written.

use abi::errno::{Errno, EBADF, EINVAL, ENOENT};
use abi::io_uring::{op, sqe_flags, Sqe, Statx, STATX_BASIC};

#[cfg(doc)]
use super::AT_FDCWD;
use super::{
    done_or_pending, read_path, user_path, write_user_value, Issue, IssueCtx, OpCaps, OpDef,
    PathOp, PrepCtx, Prepared, PATH_BUF,
};

/// `S_IFREG | 0644`: a regular file anyone may read. Belongs in `abi` with
/// the other mode bits once it has some.
const MODE_REGULAR_0644: u16 = 0o100_644;
/// `S_IFDIR | 0755`: a directory.
const MODE_DIR_0755: u16 = 0o040_755;
/// Block size reported.
const BLKSIZE: u32 = 4096;

pub const STATX: OpDef = OpDef {
    opcode: op::STATX,
    name: "STATX",
    caps: OpCaps::PATH_IO,
    prep,
    issue,
};

fn prep(ctx: &PrepCtx<'_>, sqe: &Sqe) -> Result<Prepared, Errno> {
    if sqe.buf_index != 0 || sqe.file_index != 0 {
        return Err(EINVAL);
    }
    if sqe.flags & sqe_flags::FIXED_FILE != 0 {
        return Err(EBADF);
    }
    let mut buf = [0u8; PATH_BUF];
    if read_path(ctx.env, sqe.addr, &mut buf)? == 0 {
        return Err(ENOENT);
    }
    Ok(Prepared::Nothing)
}

/// What STATX reports for `stat` (also for the host, when it ran the op
/// elsewhere: [`PathOp::Statx`]).
pub fn statx_of(stat: &abi::Stat) -> Statx {
    Statx {
        mask: STATX_BASIC,
        blksize: BLKSIZE,
        nlink: stat.nlink,
        mode: if stat.kind == abi::file_kind::DIRECTORY {
            MODE_DIR_0755
        } else {
            MODE_REGULAR_0644
        },
        ino: stat.ino,
        size: stat.size,
        blocks: stat.size.div_ceil(512),
        ..Statx::default()
    }
}

fn statx(ctx: &mut IssueCtx<'_>, sqe: &Sqe) -> Result<Option<u32>, Errno> {
    let mut buf = [0u8; PATH_BUF];
    let path = user_path(ctx.env, sqe.addr, &mut buf)?;
    let op = PathOp::Statx {
        dirfd: sqe.fd,
        path,
        out: sqe.addr3,
    };
    if ctx.start_path(op)? {
        return Ok(None);
    }
    let stat = ctx.env.stat(sqe.fd, path)?;
    write_user_value(ctx.env, sqe.addr3, &statx_of(&stat))?;
    Ok(Some(0))
}

fn issue(ctx: &mut IssueCtx<'_>, sqe: &Sqe, _prepared: Prepared) -> Issue {
    done_or_pending(statx(ctx, sqe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_the_struct_layout() {
        let st = Statx {
            mask: 0x0403_0201,
            blksize: 0x0807_0605,
            attributes: 0x100f_0e0d_0c0b_0a09,
            nlink: 0x1413_1211,
            uid: 0x1817_1615,
            gid: 0x1c1b_1a19,
            mode: 0x1e1d,
            spare0: 0x201f,
            ino: 0x2827_2625_2423_2221,
            size: 0x302f_2e2d_2c2b_2a29,
            blocks: 0x3837_3635_3433_3231,
            attributes_mask: 0x403f_3e3d_3c3b_3a39,
        };
        let bytes = abi::IntoBytes::as_bytes(&st);
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(usize::from(*b), i + 1, "byte {i}");
        }
        assert_eq!(core::mem::offset_of!(Statx, ino), 32);
        assert_eq!(core::mem::offset_of!(Statx, attributes_mask), 56);
    }
}
