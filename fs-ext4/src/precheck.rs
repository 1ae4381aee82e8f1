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
use alloc::vec::Vec;

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
    /// The superblock says the journal must be replayed.
    pub needs_recovery: bool,
}

/// Where the inode bitmaps are, to keep their padding bits set (see
/// `device::IoAdapter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeBitmaps {
    /// File-system block size in bytes.
    pub block_size: u32,
    /// Inodes per group: bits at and past this one in a bitmap block are
    /// padding, which e2fsck wants set.
    pub inodes_per_group: u32,
    /// Block numbers of the groups' inode bitmaps, sorted.
    pub blocks: Vec<u64>,
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
    let needs_recovery = incompat & 0x0004 != 0;
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
        needs_recovery,
    })
}

/// The inode bitmaps' locations, read from the group descriptors, or
/// `None` when there is no padding to keep or the descriptors do not make
/// sense (rsext4 then decides what the file system is worth).
pub fn inode_bitmaps<D: BlockDevice>(dev: &mut D) -> Option<InodeBitmaps> {
    let bs = dev.block_size() as u64;
    let mut head = vec![0u8; 2048_usize.div_ceil(bs as usize) * bs as usize];
    dev.read_blocks(0, &mut head).ok()?;
    let sb = &head[1024..2048];
    let log_bs = le32(sb, S_LOG_BLOCK_SIZE);
    if log_bs > 2 {
        return None;
    }
    let fs_bs = 1024u64 << log_bs;
    let ipg = le32(sb, 0x28);
    if ipg == 0 || u64::from(ipg) >= fs_bs * 8 {
        return None; // no padding bits
    }
    let is64 = le32(sb, S_FEATURE_INCOMPAT) & 0x80 != 0;
    let blocks_lo = u64::from(le32(sb, 0x4));
    let blocks_hi = if is64 { u64::from(le32(sb, 0x150)) } else { 0 };
    let blocks = (blocks_hi << 32) | blocks_lo;
    let first_data = u64::from(le32(sb, 0x14));
    let bpg = u64::from(le32(sb, 0x20));
    let desc_size = if is64 { u64::from(le16(sb, 0xFE)) } else { 32 };
    // Without bigalloc (which rsext4 does not write) a group has one
    // bitmap block's worth of blocks: this also bounds the table read.
    if bpg != fs_bs * 8 || !(32..=1024).contains(&desc_size) || blocks <= first_data {
        return None;
    }
    let groups = (blocks - first_data).div_ceil(bpg);
    let fs_blocks_on_device = dev.block_count().checked_mul(bs)? / fs_bs;
    if blocks > fs_blocks_on_device || groups > fs_blocks_on_device {
        return None;
    }
    let gdt_bytes = groups.checked_mul(desc_size)?;
    let gdt_start = (first_data + 1) * fs_bs;
    let first_lba = gdt_start / bs;
    let lbas = (gdt_start % bs + gdt_bytes).div_ceil(bs);
    if first_lba.checked_add(lbas)? > dev.block_count() || gdt_bytes > 1 << 24 {
        return None;
    }
    let mut gdt = Vec::new();
    gdt.try_reserve_exact((lbas * bs) as usize).ok()?;
    gdt.resize((lbas * bs) as usize, 0);
    dev.read_blocks(first_lba, &mut gdt).ok()?;
    let base = (gdt_start % bs) as usize;
    let mut out = Vec::new();
    out.try_reserve_exact(groups as usize).ok()?;
    for g in 0..groups as usize {
        let d = base + g * desc_size as usize;
        let lo = u64::from(le32(&gdt, d + 0x4));
        let hi = if desc_size >= 64 {
            u64::from(le32(&gdt, d + 0x24))
        } else {
            0
        };
        let block = (hi << 32) | lo;
        if block >= blocks {
            return None;
        }
        out.push(block);
    }
    out.sort_unstable();
    Some(InodeBitmaps {
        block_size: fs_bs as u32,
        inodes_per_group: ipg,
        blocks: out,
    })
}
