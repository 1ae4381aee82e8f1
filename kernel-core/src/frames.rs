//! A physical frame allocator: one bit per 4 KiB frame, in storage the
//! caller provides (the kernel carves it out of physical memory before any
//! heap exists).
//!
//! Frames are named by number (physical address / 4096). The bitmap covers
//! `base_frame..base_frame + nframes`; bit set means in use.
//!
//! Invariants:
//! - `free_count()` always equals the number of clear bits for managed
//!   frames: range operations count the bits they actually change, so
//!   marking a range twice is harmless.
//! - Bits past `nframes` in the last word are always set, so they are never
//!   handed out.
//! - Every word before `hint` is full, so searches start there; [`alloc`]
//!   returns the lowest free frame.
//! - Every word after `top` is full, so [`alloc_highest`] starts there.
//! - Misuse (double free, a frame outside the bitmap) is a [`FrameError`],
//!   never a panic, and changes nothing. Marking memory-map ranges
//!   ([`FrameBitmap::free_range`], [`FrameBitmap::reserve_range`]) is not
//!   misuse when a range reaches past the bitmap: the part outside is
//!   simply not managed and is ignored.
//!
//! [`alloc`]: FrameBitmap::alloc
//! [`alloc_highest`]: FrameBitmap::alloc_highest

use abi::errno::Errno;
use core::fmt;

use abi::errno;

/// Frames kept free for the kernel's own allocations out of `usable`
/// frames of 4 KiB: Linux's `min_free_kbytes`, `sqrt(16 * RAM in KiB)` KiB
/// clamped to 128 KiB..=256 MiB (`mm/page_alloc.c`,
/// `calculate_min_free_kbytes`): 2 MiB for 256 MiB of RAM, 8 MiB for 4 GiB.
/// Memory made on a program's behalf leaves this many frames free, so that
/// the kernel heap can still grow once programs have taken all the rest.
pub const fn reserve_frames(usable: u64) -> u64 {
    let kib = usable.saturating_mul(4);
    let min_free_kib = isqrt(kib.saturating_mul(16));
    let min_free_kib = if min_free_kib < 128 {
        128
    } else if min_free_kib > 256 * 1024 {
        256 * 1024
    } else {
        min_free_kib
    };
    min_free_kib / 4
}

/// The integer square root (the largest `r` with `r * r <= n`).
const fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    // Newton's iteration from above converges down to the root.
    let mut x = n;
    let mut y = x / 2 + x % 2;
    while y < x {
        x = y;
        y = (x + n / x) / 2;
    }
    x
}

/// How many `u64` words of storage a bitmap of `nframes` frames needs.
pub const fn words_for(nframes: u64) -> usize {
    nframes.div_ceil(64) as usize
}

/// Misuse of the frame allocator; every variant is a kernel bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The storage has fewer words than [`words_for`] asks for.
    StorageTooSmall { needed: usize, given: usize },
    /// A frame the bitmap does not cover.
    OutOfRange { frame: u64 },
    /// A run given to [`FrameBitmap::free_contiguous`] that is not wholly
    /// inside the bitmap (or overflows).
    RangeOutOfBounds { start: u64, count: u64 },
    /// Freeing a frame that is already free.
    DoubleFree { frame: u64 },
}

impl FrameError {
    /// `EINVAL` (`ENOMEM` for too little storage); these are kernel bugs and
    /// do not normally reach user space.
    pub fn errno(&self) -> Errno {
        match self {
            FrameError::StorageTooSmall { .. } => errno::ENOMEM,
            _ => errno::EINVAL,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::StorageTooSmall { needed, given } => {
                write!(f, "bitmap needs {needed} words, given {given}")
            }
            FrameError::OutOfRange { frame } => write!(f, "frame {frame:#x} is not managed"),
            FrameError::RangeOutOfBounds { start, count } => {
                write!(f, "frames {start:#x} + {count:#x} are not all managed")
            }
            FrameError::DoubleFree { frame } => write!(f, "frame {frame:#x} freed twice"),
        }
    }
}

/// The allocator. See the module documentation for its invariants.
pub struct FrameBitmap<'a> {
    bits: &'a mut [u64],
    base_frame: u64,
    nframes: u64,
    free: u64,
    hint: usize,
    top: usize,
}

impl fmt::Debug for FrameBitmap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameBitmap")
            .field("base_frame", &self.base_frame)
            .field("nframes", &self.nframes)
            .field("free", &self.free)
            .finish_non_exhaustive()
    }
}

/// The bits of a word from `bit` on, `n` of them (`1 <= n <= 64 - bit`).
fn mask(bit: u64, n: u64) -> u64 {
    if n == 64 {
        !0
    } else {
        ((1 << n) - 1) << bit
    }
}

impl<'a> FrameBitmap<'a> {
    /// A bitmap for frames `base_frame..base_frame + nframes`, all in use.
    /// `bits` needs at least [`words_for`]`(nframes)` words; any beyond that
    /// are left alone.
    pub fn new(bits: &'a mut [u64], base_frame: u64, nframes: u64) -> Result<Self, FrameError> {
        if base_frame.checked_add(nframes).is_none() {
            return Err(FrameError::RangeOutOfBounds {
                start: base_frame,
                count: nframes,
            });
        }
        let needed = words_for(nframes);
        if bits.len() < needed {
            return Err(FrameError::StorageTooSmall {
                needed,
                given: bits.len(),
            });
        }
        let bits = &mut bits[..needed];
        bits.fill(!0);
        Ok(FrameBitmap {
            bits,
            base_frame,
            nframes,
            free: 0,
            hint: 0,
            top: 0,
        })
    }

    /// Frames currently free.
    pub fn free_count(&self) -> u64 {
        self.free
    }

    /// Frames managed, free or not.
    pub fn total(&self) -> u64 {
        self.nframes
    }

    /// The first frame managed.
    pub fn base_frame(&self) -> u64 {
        self.base_frame
    }

    /// Whether `frame` is managed and free.
    pub fn is_free(&self, frame: u64) -> bool {
        self.index(frame)
            .is_some_and(|i| self.bits[(i / 64) as usize] & (1 << (i % 64)) == 0)
    }

    /// The bit index of `frame`, if managed.
    fn index(&self, frame: u64) -> Option<u64> {
        frame
            .checked_sub(self.base_frame)
            .filter(|&i| i < self.nframes)
    }

    /// The managed part of a range, as bit indices `lo..hi` (empty if
    /// none of it is managed).
    fn clamp(&self, start: u64, count: u64) -> (u64, u64) {
        let end = start.saturating_add(count);
        let lo = start.clamp(self.base_frame, self.base_frame + self.nframes) - self.base_frame;
        let hi = end.clamp(self.base_frame, self.base_frame + self.nframes) - self.base_frame;
        (lo, hi)
    }

    /// The bit indices `lo..hi` of a range, if wholly managed.
    fn range(&self, start: u64, count: u64) -> Result<(u64, u64), FrameError> {
        let error = FrameError::RangeOutOfBounds { start, count };
        let lo = start.checked_sub(self.base_frame).ok_or(error)?;
        let hi = lo.checked_add(count).ok_or(error)?;
        if hi > self.nframes {
            return Err(error);
        }
        Ok((lo, hi))
    }

    /// Sets (`used`) or clears bits `lo..hi`; returns how many changed.
    fn update(&mut self, lo: u64, hi: u64, used: bool) -> u64 {
        let mut changed = 0;
        let mut i = lo;
        while i < hi {
            let word = (i / 64) as usize;
            let bit = i % 64;
            let n = (64 - bit).min(hi - i);
            let m = mask(bit, n);
            let old = self.bits[word];
            let new = if used { old | m } else { old & !m };
            changed += u64::from((old ^ new).count_ones());
            self.bits[word] = new;
            i += n;
        }
        if !used && lo < hi {
            self.hint = self.hint.min((lo / 64) as usize);
            self.top = self.top.max(((hi - 1) / 64) as usize);
        }
        changed
    }

    /// The first bit in `lo..hi` that is set (`used`) or clear (`!used`).
    fn find(&self, lo: u64, hi: u64, used: bool) -> Option<u64> {
        let mut i = lo;
        while i < hi {
            let word = (i / 64) as usize;
            let bit = i % 64;
            let n = (64 - bit).min(hi - i);
            let bits = if used {
                self.bits[word]
            } else {
                !self.bits[word]
            };
            let hits = bits & mask(bit, n);
            if hits != 0 {
                return Some(word as u64 * 64 + u64::from(hits.trailing_zeros()));
            }
            i += n;
        }
        None
    }

    /// Marks `count` frames from `start` free (usable memory from the
    /// memory map). Only the part of the range the bitmap covers is touched;
    /// frames already free stay free and are not counted twice. Returns how
    /// many frames became free.
    pub fn free_range(&mut self, start: u64, count: u64) -> u64 {
        let (lo, hi) = self.clamp(start, count);
        let changed = self.update(lo, hi, false);
        self.free += changed;
        changed
    }

    /// Marks `count` frames from `start` in use (the kernel image, the
    /// bitmap itself, boot modules). Only the part of the range the bitmap
    /// covers is touched; idempotent. Returns how many frames stopped being
    /// free.
    pub fn reserve_range(&mut self, start: u64, count: u64) -> u64 {
        let (lo, hi) = self.clamp(start, count);
        let changed = self.update(lo, hi, true);
        self.free -= changed;
        changed
    }

    /// Takes the lowest free frame.
    pub fn alloc(&mut self) -> Option<u64> {
        for word in self.hint..self.bits.len() {
            let bits = self.bits[word];
            if bits != !0 {
                let bit = u64::from((!bits).trailing_zeros());
                self.bits[word] = bits | 1 << bit;
                self.free -= 1;
                self.hint = word;
                return Some(self.base_frame + word as u64 * 64 + bit);
            }
        }
        self.hint = self.bits.len();
        None
    }

    /// Takes the highest free frame. For frames kept for good (the heap's
    /// slab pages): taken from the top, they gather there instead of
    /// splitting the low runs that [`FrameBitmap::alloc_contiguous`] finds.
    pub fn alloc_highest(&mut self) -> Option<u64> {
        let top = self.top.min(self.bits.len().checked_sub(1)?);
        for word in (self.hint..=top).rev() {
            let bits = self.bits[word];
            if bits != !0 {
                let bit = 63 - u64::from((!bits).leading_zeros());
                self.bits[word] = bits | 1 << bit;
                self.free -= 1;
                self.top = word;
                return Some(self.base_frame + word as u64 * 64 + bit);
            }
        }
        // Every word is full (those before `hint` and after `top` were).
        self.top = 0;
        None
    }

    /// Takes the lowest run of `count` free frames whose first frame number
    /// is a multiple of `align_frames` (a power of two; 1 for none). `None`
    /// if there is no such run, or if `count` is 0 or `align_frames` is not
    /// a power of two.
    pub fn alloc_contiguous(&mut self, count: u64, align_frames: u64) -> Option<u64> {
        if count == 0 || !align_frames.is_power_of_two() || count > self.free {
            return None;
        }
        let end = self.base_frame + self.nframes;
        let first_candidate = self.base_frame + self.hint as u64 * 64;
        let mut start = first_candidate.checked_next_multiple_of(align_frames)?;
        loop {
            if start.checked_add(count)? > end {
                return None;
            }
            let lo = start - self.base_frame;
            match self.find(lo, lo + count, true) {
                Some(used) => {
                    start = (self.base_frame + used + 1).checked_next_multiple_of(align_frames)?;
                }
                None => {
                    self.update(lo, lo + count, true);
                    self.free -= count;
                    return Some(start);
                }
            }
        }
    }

    /// Gives back one frame. Freeing a free frame or one outside the bitmap
    /// is an error and changes nothing.
    pub fn free(&mut self, frame: u64) -> Result<(), FrameError> {
        let i = self.index(frame).ok_or(FrameError::OutOfRange { frame })?;
        if self.is_free(frame) {
            return Err(FrameError::DoubleFree { frame });
        }
        self.free += self.update(i, i + 1, false);
        Ok(())
    }

    /// Gives back a run from [`alloc_contiguous`](Self::alloc_contiguous).
    /// If any frame of it is already free, nothing changes and the first
    /// such frame is reported as a double free.
    pub fn free_contiguous(&mut self, start: u64, count: u64) -> Result<(), FrameError> {
        let (lo, hi) = self.range(start, count)?;
        if let Some(free) = self.find(lo, hi, false) {
            return Err(FrameError::DoubleFree {
                frame: self.base_frame + free,
            });
        }
        self.free += self.update(lo, hi, false);
        Ok(())
    }
}

impl From<FrameError> for Errno {
    fn from(e: FrameError) -> Errno {
        e.errno()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn alloc_highest_takes_from_the_top_and_keeps_the_low_runs() {
        let mut storage = [0u64; 4];
        // 200 frames from 1000; the last word's bits past 200 stay used.
        let mut map = FrameBitmap::new(&mut storage, 1000, 200).unwrap();
        map.free_range(1000, 200);
        assert_eq!(map.alloc_highest(), Some(1199));
        assert_eq!(map.alloc_highest(), Some(1198));
        assert_eq!(map.alloc(), Some(1000));
        check(&map);
        // A frame freed above the top is found again.
        map.free(1199).unwrap();
        assert_eq!(map.alloc_highest(), Some(1199));
        // The low run is whole.
        assert_eq!(map.alloc_contiguous(190, 1), Some(1001));
        check(&map);
        let mut taken = Vec::new();
        while let Some(frame) = map.alloc_highest() {
            taken.push(frame);
        }
        assert_eq!(taken, (1191..1198).rev().collect::<Vec<_>>());
        assert_eq!(map.free_count(), 0);
        assert_eq!(map.alloc_highest(), None);
        // Freed after running dry: found again from the top and the bottom.
        map.free(1100).unwrap();
        map.free(1150).unwrap();
        assert_eq!(map.alloc_highest(), Some(1150));
        assert_eq!(map.alloc_highest(), Some(1100));
        assert_eq!(map.alloc_highest(), None);
        check(&map);
    }

    #[test]
    fn isqrt_is_the_floor_of_the_root() {
        for n in 0..10_000u64 {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "isqrt({n}) = {r}");
        }
        assert_eq!(isqrt(u64::MAX), u64::from(u32::MAX));
    }

    #[test]
    fn reserve_follows_linux_min_free_kbytes() {
        const MIB: u64 = 256; // frames
                              // sqrt(16 * 262144 KiB) = 2048 KiB for 256 MiB.
        assert_eq!(reserve_frames(256 * MIB), 2048 / 4);
        // 4 GiB: 8192 KiB.
        assert_eq!(reserve_frames(4096 * MIB), 8192 / 4);
        // Tiny machines keep at least 128 KiB, huge ones at most 256 MiB.
        assert_eq!(reserve_frames(0), 128 / 4);
        assert_eq!(reserve_frames(64), 128 / 4);
        assert_eq!(reserve_frames(u64::MAX), 256 * MIB);
    }

    /// Checks the free count against the bits.
    fn check(map: &FrameBitmap<'_>) {
        let counted = (map.base_frame..map.base_frame + map.nframes)
            .filter(|&f| map.is_free(f))
            .count() as u64;
        assert_eq!(counted, map.free_count());
        for word in &map.bits[..map.hint.min(map.bits.len())] {
            assert_eq!(*word, !0, "a word before the hint has a free frame");
        }
        let tail = map.nframes % 64;
        if tail != 0 {
            assert_eq!(map.bits.last().unwrap() >> tail, !0 >> tail);
        }
    }

    #[test]
    fn storage_and_range_checks() {
        assert_eq!(words_for(0), 0);
        assert_eq!(words_for(1), 1);
        assert_eq!(words_for(64), 1);
        assert_eq!(words_for(65), 2);
        let mut small = [0u64; 1];
        assert_eq!(
            FrameBitmap::new(&mut small, 0, 65).unwrap_err(),
            FrameError::StorageTooSmall {
                needed: 2,
                given: 1
            }
        );
        assert_eq!(
            FrameBitmap::new(&mut small, u64::MAX, 2).unwrap_err(),
            FrameError::RangeOutOfBounds {
                start: u64::MAX,
                count: 2
            }
        );
        // Empty bitmap.
        let mut none: [u64; 0] = [];
        let mut map = FrameBitmap::new(&mut none, 5, 0).unwrap();
        assert_eq!(map.alloc(), None);
        assert_eq!(map.alloc_contiguous(1, 1), None);
        assert_eq!(map.free_range(5, 0), 0);
        assert_eq!(map.free_range(0, 100), 0);
        assert_eq!(map.free(5), Err(FrameError::OutOfRange { frame: 5 }));
    }

    #[test]
    fn starts_all_used() {
        let mut storage = [0u64; 4];
        let mut map = FrameBitmap::new(&mut storage, 0, 200).unwrap();
        assert_eq!(map.total(), 200);
        assert_eq!(map.free_count(), 0);
        assert_eq!(map.alloc(), None);
        check(&map);
    }

    #[test]
    fn extra_storage_is_left_alone() {
        let mut storage = [0x1234u64; 4];
        FrameBitmap::new(&mut storage, 0, 64).unwrap();
        assert_eq!(storage, [!0, 0x1234, 0x1234, 0x1234]);
    }

    #[test]
    fn alloc_all_then_free_all() {
        let mut storage = vec![0u64; words_for(1000)];
        let base = 0x100;
        let mut map = FrameBitmap::new(&mut storage, base, 1000).unwrap();
        map.free_range(base, 1000);
        assert_eq!(map.free_count(), 1000);
        check(&map);

        let frames: Vec<u64> = core::iter::from_fn(|| map.alloc()).collect();
        assert_eq!(frames.len(), 1000);
        // Lowest first, each once, all in range.
        assert_eq!(frames, (base..base + 1000).collect::<Vec<_>>());
        assert_eq!(map.free_count(), 0);
        assert_eq!(map.alloc(), None);
        check(&map);

        for &frame in frames.iter().rev() {
            map.free(frame).unwrap();
        }
        assert_eq!(map.free_count(), 1000);
        check(&map);
        // And again, now that the hint has moved around.
        assert_eq!(core::iter::from_fn(|| map.alloc()).count(), 1000);
    }

    #[test]
    fn bits_past_the_end_are_never_handed_out() {
        let mut storage = [0u64; 2];
        let mut map = FrameBitmap::new(&mut storage, 0, 70).unwrap();
        map.free_range(0, 70);
        let frames: Vec<u64> = core::iter::from_fn(|| map.alloc()).collect();
        assert_eq!(frames.len(), 70);
        assert!(frames.iter().all(|&f| f < 70));
        check(&map);
        assert_eq!(map.alloc_contiguous(1, 1), None);
    }

    #[test]
    fn ranges_are_idempotent_and_counted() {
        let mut storage = [0u64; 4];
        let mut map = FrameBitmap::new(&mut storage, 0, 256).unwrap();
        assert_eq!(map.free_range(10, 100), 100);
        assert_eq!(map.free_range(50, 100), 40, "overlaps: only 40 new");
        assert_eq!(map.free_count(), 140);
        assert_eq!(map.free_range(10, 140), 0);
        assert_eq!(map.free_count(), 140);
        check(&map);

        assert_eq!(map.reserve_range(0, 20), 10, "10 of these were free");
        assert_eq!(map.free_count(), 130);
        assert_eq!(map.reserve_range(0, 20), 0);
        assert_eq!(map.free_count(), 130);
        assert_eq!(map.reserve_range(60, 64), 64, "crosses a word boundary");
        assert_eq!(map.free_count(), 66);
        assert!(!map.is_free(60) && !map.is_free(123) && map.is_free(124));
        check(&map);

        // Zero-length ranges are fine anywhere inside or at the end.
        map.free_range(256, 0);
        map.reserve_range(0, 0);
        assert_eq!(map.free_count(), 66);

        // A reserved frame cannot be allocated.
        let got: Vec<u64> = core::iter::from_fn(|| map.alloc()).collect();
        assert_eq!(got.len(), 66);
        assert!(got
            .iter()
            .all(|&f| (20..60).contains(&f) || (124..150).contains(&f)));
    }

    #[test]
    fn ranges_are_clamped_to_the_bitmap() {
        let mut storage = [0u64; 2];
        let base = 1000;
        let mut map = FrameBitmap::new(&mut storage, base, 100).unwrap();
        // Entirely outside: nothing happens.
        assert_eq!(map.free_range(0, 5), 0);
        assert_eq!(map.free_range(0, base), 0);
        assert_eq!(map.free_range(base + 100, 1), 0);
        assert_eq!(map.free_range(u64::MAX, u64::MAX), 0);
        assert_eq!(map.free_count(), 0);
        // Straddling either end: the managed part is used.
        assert_eq!(map.free_range(base - 10, 15), 5);
        assert_eq!(map.free_range(base + 95, 50), 5);
        assert_eq!(map.free_count(), 10);
        assert!(map.is_free(base) && map.is_free(base + 99));
        assert_eq!(map.reserve_range(0, base + 1), 1);
        assert_eq!(map.reserve_range(base + 99, u64::MAX), 1);
        assert_eq!(map.free_count(), 8);
        // Covering everything, with an overflowing count.
        assert_eq!(map.free_range(0, u64::MAX), 92);
        assert_eq!(map.free_count(), 100);
        check(&map);
        assert_eq!(map.reserve_range(base, u64::MAX), 100);
        assert_eq!(map.free_count(), 0);
        check(&map);
    }

    #[test]
    fn free_contiguous_range_errors_change_nothing() {
        let mut storage = [0u64; 2];
        let base = 1000;
        let mut map = FrameBitmap::new(&mut storage, base, 100).unwrap();
        for (start, count) in [
            (base - 1, 1),
            (base + 99, 2),
            (base + 100, 1),
            (0, 5),
            (base, u64::MAX),
            (u64::MAX, 1),
        ] {
            let err = FrameError::RangeOutOfBounds { start, count };
            assert_eq!(map.free_contiguous(start, count), Err(err));
        }
        assert_eq!(map.free_count(), 0);
        check(&map);
    }

    #[test]
    fn double_free_and_out_of_range() {
        let mut storage = [0u64; 1];
        let mut map = FrameBitmap::new(&mut storage, 16, 32).unwrap();
        map.free_range(16, 32);
        let frame = map.alloc().unwrap();
        assert_eq!(frame, 16);
        map.free(frame).unwrap();
        assert_eq!(map.free(frame), Err(FrameError::DoubleFree { frame }));
        assert_eq!(map.free_count(), 32);
        // Never allocated at all.
        assert_eq!(map.free(40), Err(FrameError::DoubleFree { frame: 40 }));
        for frame in [0, 15, 48, u64::MAX] {
            assert_eq!(map.free(frame), Err(FrameError::OutOfRange { frame }));
            assert!(!map.is_free(frame));
        }
        assert_eq!(map.free_count(), 32);
        check(&map);
    }

    #[test]
    fn lowest_frame_first_after_free() {
        let mut storage = [0u64; 4];
        let mut map = FrameBitmap::new(&mut storage, 0, 256).unwrap();
        map.free_range(0, 256);
        for _ in 0..200 {
            map.alloc().unwrap();
        }
        map.free(3).unwrap();
        map.free(130).unwrap();
        assert_eq!(map.alloc(), Some(3));
        assert_eq!(map.alloc(), Some(130));
        assert_eq!(map.alloc(), Some(200));
        check(&map);
    }

    #[test]
    fn contiguous_with_alignment() {
        let mut storage = [0u64; 8];
        let base = 3; // not aligned: alignment is of absolute frame numbers
        let mut map = FrameBitmap::new(&mut storage, base, 500).unwrap();
        map.free_range(base, 500);

        assert_eq!(map.alloc_contiguous(4, 1), Some(3));
        assert_eq!(map.alloc_contiguous(4, 8), Some(8));
        assert_eq!(map.alloc_contiguous(1, 1), Some(7));
        assert_eq!(map.alloc_contiguous(100, 64), Some(64));
        assert_eq!(map.alloc_contiguous(1, 512), None, "512 is past the end");
        assert_eq!(map.alloc_contiguous(2, 256), Some(256));
        assert_eq!(map.free_count(), 500 - 4 - 4 - 1 - 100 - 2);
        check(&map);

        // A hole too small is skipped.
        map.free(9).unwrap();
        map.free(10).unwrap();
        assert_eq!(map.alloc_contiguous(3, 1), Some(12));
        assert_eq!(map.alloc_contiguous(2, 1), Some(9));
        check(&map);

        // Freeing a run gives it all back; with the never-used frames below
        // it, the lowest aligned fit now starts at 32.
        map.free_contiguous(64, 100).unwrap();
        assert_eq!(map.alloc_contiguous(100, 32), Some(32));
        // 132..256 and 258..503 are free: aligned 64-frame runs fit at 192,
        // 320 and 384; one at 448 would run past the end.
        assert_eq!(map.alloc_contiguous(64, 64), Some(192));
        assert_eq!(map.alloc_contiguous(64, 64), Some(320));
        assert_eq!(map.alloc_contiguous(64, 64), Some(384));
        assert_eq!(map.alloc_contiguous(64, 64), None);
        check(&map);
    }

    #[test]
    fn contiguous_edge_cases() {
        let mut storage = [0u64; 2];
        let mut map = FrameBitmap::new(&mut storage, 0, 128).unwrap();
        map.free_range(0, 128);
        assert_eq!(map.alloc_contiguous(0, 1), None);
        assert_eq!(map.alloc_contiguous(1, 0), None);
        assert_eq!(map.alloc_contiguous(1, 3), None);
        assert_eq!(map.alloc_contiguous(129, 1), None);
        assert_eq!(map.alloc_contiguous(u64::MAX, 1), None);
        assert_eq!(map.alloc_contiguous(1, 1 << 63), Some(0));
        assert_eq!(map.alloc_contiguous(1, 1 << 63), None);
        assert_eq!(map.free_count(), 127);
        // Exactly everything that is left, across the word boundary.
        assert_eq!(map.alloc_contiguous(127, 1), Some(1));
        assert_eq!(map.free_count(), 0);
        check(&map);
        map.free_contiguous(0, 128).unwrap();
        assert_eq!(map.alloc_contiguous(128, 128), Some(0));
        check(&map);

        // Near the top of the frame number space.
        let mut storage = [0u64; 1];
        let base = u64::MAX - 10;
        let mut map = FrameBitmap::new(&mut storage, base, 10).unwrap();
        map.free_range(base, 10);
        assert_eq!(map.alloc_contiguous(2, 1 << 62), None);
        assert_eq!(map.alloc_contiguous(10, 1), Some(base));
        assert_eq!(map.alloc(), None);
    }

    #[test]
    fn free_contiguous_double_free_changes_nothing() {
        let mut storage = [0u64; 1];
        let mut map = FrameBitmap::new(&mut storage, 0, 64).unwrap();
        map.free_range(0, 64);
        let run = map.alloc_contiguous(8, 8).unwrap();
        map.free(run + 5).unwrap();
        let before = map.free_count();
        assert_eq!(
            map.free_contiguous(run, 8),
            Err(FrameError::DoubleFree { frame: run + 5 })
        );
        assert_eq!(map.free_count(), before);
        assert!(!map.is_free(run));
        check(&map);
    }

    #[test]
    fn matches_a_simple_model() {
        const N: u64 = 300;
        let mut storage = [0u64; 5];
        let mut map = FrameBitmap::new(&mut storage, 7, N).unwrap();
        let mut model = vec![false; N as usize]; // true = free
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..20_000 {
            let frame = 7 + next(N);
            let count = next(12);
            let op = next(6);
            match op {
                0 => {
                    let lo = (frame - 7) as usize;
                    let hi = (lo + count as usize).min(N as usize);
                    let newly = model[lo..hi].iter().filter(|&&free| !free).count();
                    assert_eq!(map.free_range(frame, count), newly as u64);
                    model[lo..hi].fill(true);
                }
                1 => {
                    let lo = (frame - 7) as usize;
                    let hi = (lo + count as usize).min(N as usize);
                    let newly = model[lo..hi].iter().filter(|&&free| free).count();
                    assert_eq!(map.reserve_range(frame, count), newly as u64);
                    model[lo..hi].fill(false);
                }
                2 => {
                    let expected = model.iter().position(|&free| free);
                    let got = map.alloc();
                    assert_eq!(got, expected.map(|i| i as u64 + 7));
                    if let Some(i) = expected {
                        model[i] = false;
                    }
                }
                3 => {
                    let was_free = model[(frame - 7) as usize];
                    let result = map.free(frame);
                    if was_free {
                        assert_eq!(result, Err(FrameError::DoubleFree { frame }));
                    } else {
                        assert!(result.is_ok());
                        model[(frame - 7) as usize] = true;
                    }
                }
                _ => {
                    let count = count + 1;
                    let align = 1 << next(5);
                    let expected =
                        (7..=7 + N - count)
                            .filter(|start| start % align == 0)
                            .find(|&start| {
                                model[(start - 7) as usize..][..count as usize]
                                    .iter()
                                    .all(|&free| free)
                            });
                    assert_eq!(map.alloc_contiguous(count, align), expected);
                    if let Some(start) = expected {
                        model[(start - 7) as usize..][..count as usize].fill(false);
                    }
                }
            }
            assert_eq!(
                map.free_count(),
                model.iter().filter(|&&free| free).count() as u64
            );
        }
        check(&map);
    }

    #[test]
    fn errors_display_and_errno() {
        let err = FrameError::DoubleFree { frame: 0x10 };
        assert_eq!(alloc::format!("{err}"), "frame 0x10 freed twice");
        assert_eq!(err.errno(), errno::EINVAL);
        assert_eq!(
            FrameError::StorageTooSmall {
                needed: 1,
                given: 0
            }
            .errno(),
            errno::ENOMEM
        );
    }
}
