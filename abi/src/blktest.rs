//! The kernel's block-driver self test (`blktest=DISK`): which bytes of the
//! disk it writes, and what, so that the build runner can check the image
//! file after the guest powered off. Shared by the kernel and `xtask`.

/// First byte of the disk the test writes (1 MiB: clear of any partition
/// table a real image might have at its start).
pub const OFFSET: u64 = 1 << 20;
/// Bytes it writes from there (11 pages).
pub const LEN: u64 = 11 * 4096;

/// The byte the test writes at disk position `pos`: differs between
/// neighbouring bytes, pages and runs, so a misplaced or repeated page is
/// caught.
pub const fn byte(pos: u64) -> u8 {
    let page = pos / 4096;
    ((pos % 251) as u8) ^ ((page * 37) as u8) ^ 0xA5
}
