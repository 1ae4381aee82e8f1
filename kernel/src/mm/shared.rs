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
use kernel_core::ring::shared::RingWords;

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

/// Shared frames that hold one ring, lent out as the engine's
/// [`RingWords`] (the layout of `abi::io_uring::ring_layout`), borrowed
/// from this object: the kernel's view of a ring, which every `enter`
/// takes. Checked once when made, so that the view itself is a pointer.
pub struct SharedRingWords {
    frames: Arc<SharedFrames>,
}

impl SharedRingWords {
    /// The ring at the start of `frames`; `None` if they are smaller.
    pub fn new(frames: Arc<SharedFrames>) -> Option<Self> {
        (frames.len() >= core::mem::size_of::<RingWords>()).then_some(Self { frames })
    }

    /// The ring's words.
    #[inline(always)]
    pub fn words(&self) -> &RingWords {
        // SAFETY: `new` checked that the frames hold a `RingWords`; they
        // start page-aligned (more than its alignment, 8) in the direct
        // map, and `self` holds them, so they stay allocated while the
        // reference (borrowed from `self`) lives. `RingWords` is made of
        // atomic integers only (`repr(C)`, no padding): valid for any bits,
        // and every access goes through them, so concurrent writers (user
        // space through its mapping, other CPUs) are no data race.
        unsafe { &*(self.frames.virt as *const RingWords) }
    }
}
