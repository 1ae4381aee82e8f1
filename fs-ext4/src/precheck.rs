//! Checks on the superblock made before rsext4 sees the disk.
//!
//! They decide between "not ext4" (not mounted, `EINVAL`), "ext4 with
//! features this driver cannot handle" (not mounted, `EOPNOTSUPP`, or
//! mounted read-only when only writing is affected), and "go ahead". The
//! feature masks are rsext4 0.9's own (`src/superblock/features.rs`),
//! repeated here because the crate keeps them private; a newer rsext4 that
//! learns more features only makes these checks stricter than needed.

use crate::device::BlockDevice;
use abi::errno::{Errno, EINVAL, EOPNOTSUPP};
use alloc::vec;

/// Superblock offsets (bytes from the start of the superblock).
const S_LOG_BLOCK_SIZE: usize = 0x18;
const S_MAGIC: usize = 0x38;
const S_FEATURE_INCOMPAT: usize = 0x60;
const S_FEATURE_RO_COMPAT: usize = 0x64;

const EXT4_MAGIC: u16 = 0xEF53;

/// INCOMPAT features rsext4 0.9 reads and writes: FILETYPE, RECOVER,
/// EXTENTS, 64BIT, MMP, FLEX_BG, CSUM_SEED.
pub const SUPPORTED_INCOMPAT: u32 = 0x0002 | 0x0004 | 0x0040 | 0x0080 | 0x0100 | 0x0200 | 0x2000;
/// RO_COMPAT features rsext4 0.9 writes: SPARSE_SUPER, LARGE_FILE,
/// HUGE_FILE, GDT_CSUM, DIR_NLINK, EXTRA_ISIZE, METADATA_CSUM, PROJECT.
pub const SUPPORTED_RO_COMPAT: u32 =
    0x0001 | 0x0002 | 0x0008 | 0x0010 | 0x0020 | 0x0040 | 0x0400 | 0x2000;

/// What the superblock allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precheck {
    /// Mount read-only: the file system has features this driver may read
    /// but must not write.
    pub read_only: bool,
    /// The file system's block size in bytes.
    pub block_size: u32,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the primary superblock from `dev` and checks it.
pub fn check<D: BlockDevice>(dev: &mut D) -> Result<Precheck, Errno> {
    let bs = dev.block_size() as usize;
    if bs != 512 && bs != 4096 {
        log::warn!("ext4: device block size {bs} is neither 512 nor 4096");
        return Err(EINVAL);
    }
    // The superblock is bytes 1024..2048.
    let blocks = 2048_usize.div_ceil(bs);
    if dev.block_count() < blocks as u64 {
        log::warn!("ext4: device too small for a superblock");
        return Err(EINVAL);
    }
    let mut buf = vec![0u8; blocks * bs];
    dev.read_blocks(0, &mut buf)?;
    let check = check_superblock(&buf[1024..2048])?;
    if check.block_size < bs as u32 {
        log::warn!(
            "ext4: file system blocks of {} bytes on a device with {bs}-byte blocks: not mounted",
            check.block_size
        );
        return Err(EINVAL);
    }
    Ok(check)
}

/// Checks a primary superblock (1024 bytes).
pub fn check_superblock(sb: &[u8]) -> Result<Precheck, Errno> {
    if sb.len() < 1024 {
        return Err(EINVAL);
    }
    if le16(sb, S_MAGIC) != EXT4_MAGIC {
        log::warn!("ext4: no ext2/3/4 superblock (bad magic): not mounted");
        return Err(EINVAL);
    }
    let log_bs = le32(sb, S_LOG_BLOCK_SIZE);
    if log_bs > 2 {
        log::warn!("ext4: block size 1024 << {log_bs} is not supported: not mounted");
        return Err(EOPNOTSUPP);
    }
    let incompat = le32(sb, S_FEATURE_INCOMPAT);
    if incompat & !SUPPORTED_INCOMPAT != 0 {
        log::warn!(
            "ext4: incompatible features {:#x} are not supported: not mounted",
            incompat & !SUPPORTED_INCOMPAT
        );
        return Err(EOPNOTSUPP);
    }
    let ro_compat = le32(sb, S_FEATURE_RO_COMPAT);
    let read_only = ro_compat & !SUPPORTED_RO_COMPAT != 0;
    if read_only {
        log::warn!(
            "ext4: features {:#x} can be read but not written: mounting read-only",
            ro_compat & !SUPPORTED_RO_COMPAT
        );
    }
    Ok(Precheck {
        read_only,
        block_size: 1024 << log_bs,
    })
}
