//! The layout and byte pattern of the disk test (`blk_tests`), shared by
//! the program that writes a disk in the guest and the runner that checks
//! the image file on the host after the guest powered off.
//!
//! Regions of a test disk (at least [`MIN_DISK`] bytes):
//! - `FINAL`: written last, whole, with [`pattern`]`(SEED_FINAL, offset)`;
//! - `KILLED`: written by a child process that exits with its writes still
//!   in flight, with `pattern(SEED_KILLED, offset)`;
//! - `SCRATCH`: random-offset rounds, not checked from the host.

/// Smallest disk the test runs on.
pub const MIN_DISK: u64 = 64 << 20;
/// `[start, end)` of the region written last.
pub const FINAL: (u64, u64) = (0, 4 << 20);
/// `[start, end)` of the region the killed child writes.
pub const KILLED: (u64, u64) = (48 << 20, (48 << 20) + 64 * 4096);
/// `[start, end)` of the random-offset rounds.
pub const SCRATCH: (u64, u64) = (8 << 20, 40 << 20);
/// Seeds of the regions' patterns.
pub const SEED_FINAL: u64 = 0x2026_1203;
pub const SEED_KILLED: u64 = 0x0bad_cafe;

/// splitmix64: the next value of the sequence whose state is `state`.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The byte at disk offset `offset` of a region written with `seed`: one
/// splitmix64 value per 8 bytes, so every word of every sector differs.
pub fn pattern(seed: u64, offset: u64) -> u8 {
    let mut state = seed ^ (offset / 8).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let word = splitmix64(&mut state);
    (word >> ((offset % 8) * 8)) as u8
}

/// Fills `buf` with the pattern of the bytes from disk offset `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = pattern(seed, offset + i as u64);
    }
}

/// The first offset in `buf` (holding the bytes from `offset`) that is not
/// the pattern, if any.
pub fn mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<u64> {
    buf.iter()
        .enumerate()
        .find(|&(i, &b)| b != pattern(seed, offset + i as u64))
        .map(|(i, _)| offset + i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_varies_and_repeats() {
        let mut a = [0u8; 4096];
        let mut b = [0u8; 4096];
        fill(SEED_FINAL, 4096, &mut a);
        fill(SEED_FINAL, 4096, &mut b);
        assert_eq!(a, b);
        assert_eq!(mismatch(SEED_FINAL, 4096, &a), None);
        fill(SEED_FINAL, 8192, &mut b);
        assert_ne!(a, b);
        fill(SEED_KILLED, 4096, &mut b);
        assert_ne!(a, b);
        b[100] ^= 1;
        assert_ne!(mismatch(SEED_KILLED, 4096, &b), None);
        // Not a constant run within a sector.
        assert!(a[..512].windows(2).any(|w| w[0] != w[1]));
        assert!(FINAL.1 <= SCRATCH.0 && SCRATCH.1 <= KILLED.0 && KILLED.1 <= MIN_DISK);
    }
}
