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
}

impl SharedFrames {
    /// `pages` fresh zeroed contiguous frames; `ENOMEM` if there are none.
    pub fn alloc_zeroed(pages: u64) -> Result<Arc<Self>, Errno> {
        let len = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(ENOMEM)?;
        let base = frames::alloc_contiguous(pages, 1).ok_or(ENOMEM)?;
        let frames = Self { base, pages, len };
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

    /// `count` 32-bit atomic words from byte `offset`; `None` unless the
    /// range is inside the frames and 4-byte aligned.
    #[inline]
    pub fn atomic_u32s_at(&self, offset: usize, count: usize) -> Option<&[AtomicU32]> {
        self.part(offset, count)
    }

    /// `count` 64-bit atomic words from byte `offset`; `None` unless the
    /// range is inside the frames and 8-byte aligned.
    #[inline]
    pub fn atomic_u64s_at(&self, offset: usize, count: usize) -> Option<&[AtomicU64]> {
        self.part(offset, count)
    }

    /// `count` atomics of type `A` (only `AtomicU32`/`AtomicU64` reach
    /// here) from byte `offset`, checked to lie inside and aligned.
    #[inline]
    fn part<A>(&self, offset: usize, count: usize) -> Option<&[A]> {
        let size = count.checked_mul(core::mem::size_of::<A>())?;
        let end = offset.checked_add(size)?;
        if end > self.len || !offset.is_multiple_of(core::mem::align_of::<A>()) {
            return None;
        }
        // SAFETY: `offset..end` lies inside the `len` bytes from `base`,
        // frames this object owns, in the direct map, allocated while
        // `self` (borrowed for the slice's lifetime) lives; the start is
        // aligned for `A` (the frames are page-aligned). `A` is an atomic
        // integer (the two callers above), valid for any bits, and every
        // access goes through it, so concurrent writers (user space
        // through its mapping, other CPUs) are no data race.
        Some(unsafe {
            core::slice::from_raw_parts(
                (phys_to_virt(self.base) as usize + offset) as *const A,
                count,
            )
        })
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
