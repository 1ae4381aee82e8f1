//! Physical memory that the kernel shares with someone it does not
//! control: user space now (ring pages), a device later (DMA buffers).
//!
//! [`SharedFrames`] owns a run of physically contiguous frames and is held
//! in an `Arc`: every holder (a process's user mapping of it, a ring
//! backend's handle, later a request in flight) keeps one reference, and the
//! frames go back to the allocator when the last one is dropped, never
//! earlier. No holder can free them under another, so no view into them
//! can dangle; whoever unmaps a user mapping only drops that mapping's
//! reference (see `AddressSpace::map_shared`).
//!
//! The kernel reaches the frames through the direct map, as atomic words:
//! the other side may write them at any time.

use super::frames;
use crate::arch::phys_to_virt;
use abi::errno::{Errno, ENOMEM};
use abi::layout::PAGE_SIZE;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64};

/// Contiguous frames, zeroed when allocated, freed with the last reference.
#[derive(Debug)]
pub struct SharedFrames {
    /// Physical address of the first frame.
    base: u64,
    pages: u64,
    /// Size in bytes.
    len: usize,
    /// Direct-map address of the first frame.
    virt: usize,
}

impl SharedFrames {
    /// `pages` fresh zeroed contiguous frames; `ENOMEM` if there are none.
    pub fn alloc_zeroed(pages: u64) -> Result<Arc<Self>, Errno> {
        let len = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(ENOMEM)?;
        let base = frames::alloc_contiguous(pages, 1).ok_or(ENOMEM)?;
        let frames = Self {
            base,
            pages,
            len,
            virt: phys_to_virt(base) as usize,
        };
        // SAFETY: the frames were just allocated, so nothing else refers to
        // them, and the direct map covers them.
        unsafe {
            core::ptr::write_bytes(phys_to_virt(base) as *mut u8, 0, frames.len());
        }
        Ok(Arc::new(frames))
    }

    /// Physical address of the first frame.
    pub fn phys(&self) -> u64 {
        self.base
    }

    /// Number of frames.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Copies `src` into the frames at byte `offset`. Panics if that is
    /// outside them (a kernel bug).
    pub fn write_bytes(&self, offset: usize, src: &[u8]) {
        let end = offset.checked_add(src.len());
        assert!(
            end.is_some_and(|end| end <= self.len),
            "shared frames overrun"
        );
        // SAFETY: the range lies inside the frames, which `self` keeps
        // allocated, in the direct map; a device or user space may touch
        // them too, so the copy is volatile.
        unsafe {
            crate::arch::paging::copy_volatile(
                (self.virt + offset) as *mut u8,
                src.as_ptr(),
                src.len(),
            )
        }
    }

    /// Copies the frames' bytes at `offset` into `dst`. Panics if that is
    /// outside them (a kernel bug).
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) {
        let end = offset.checked_add(dst.len());
        assert!(
            end.is_some_and(|end| end <= self.len),
            "shared frames overrun"
        );
        // SAFETY: as in `write_bytes`.
        unsafe {
            crate::arch::paging::copy_volatile(
                dst.as_mut_ptr(),
                (self.virt + offset) as *const u8,
                dst.len(),
            )
        }
    }
}

impl Drop for SharedFrames {
    fn drop(&mut self) {
        // The last reference: no mapping and no view of the frames is left.
        for i in 0..self.pages {
            frames::free(self.base + i * PAGE_SIZE);
        }
    }
}

/// Regions of shared frames, each a run of 32- or 64-bit atomic words,
/// checked once when made and then lent out, borrowed from this object,
/// for nothing more than a load each: the kernel's views of a ring's
/// parts, which every `enter` takes.
pub struct SharedRegions<const N: usize> {
    /// Held, never read, so that the regions stay allocated while this
    /// lives.
    _frames: Arc<SharedFrames>,
    /// Direct-map address and length in bytes of each region.
    regions: [(usize, usize); N],
}

impl<const N: usize> SharedRegions<N> {
    /// The regions at `(byte offset, byte length)` of `frames`; `None`
    /// unless each lies inside the frames, starts 8-byte aligned and is a
    /// whole number of 8-byte words.
    pub fn new(frames: Arc<SharedFrames>, regions: [(usize, usize); N]) -> Option<Self> {
        let mut checked = [(0, 0); N];
        for (slot, &(offset, len)) in checked.iter_mut().zip(regions.iter()) {
            let end = offset.checked_add(len)?;
            if end > frames.len() || !offset.is_multiple_of(8) || !len.is_multiple_of(8) {
                return None;
            }
            *slot = (frames.virt + offset, len);
        }
        Some(Self {
            _frames: frames,
            regions: checked,
        })
    }

    /// Region `i` as 32-bit atomic words.
    #[inline(always)]
    pub fn u32s(&self, i: usize) -> &[AtomicU32] {
        let (addr, len) = self.regions[i];
        // SAFETY: `new` checked that the region lies inside `_frames`,
        // which `self` holds, so they stay allocated while the slice
        // (borrowed from `self`) lives; it starts 8-byte aligned and is a
        // whole number of words. Atomic integers are valid for any bits,
        // and every access goes through them, so concurrent writers (user
        // space through its mapping, other CPUs) are no data race.
        unsafe { core::slice::from_raw_parts(addr as *const AtomicU32, len / 4) }
    }

    /// Region `i` as 64-bit atomic words.
    #[inline(always)]
    pub fn u64s(&self, i: usize) -> &[AtomicU64] {
        let (addr, len) = self.regions[i];
        // SAFETY: as in `u32s`.
        unsafe { core::slice::from_raw_parts(addr as *const AtomicU64, len / 8) }
    }
}
