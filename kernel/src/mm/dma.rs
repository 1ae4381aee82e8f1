//! Memory a device reads and writes by DMA: queues, descriptor rings,
//! command and status blocks, bounce buffers.
//!
//! A [`DmaBuffer`] is physically contiguous, page-aligned, zeroed frames
//! below 4 GiB (the frame allocator hands out only direct-mapped frames),
//! owned through an `Arc<SharedFrames>`: the frames are freed when the
//! buffer and every clone of [`DmaBuffer::frames`] are gone, never earlier.
//! A driver must stop the device from using a buffer (reset it, or wait
//! for the request that names it) before dropping it.
//!
//! The device writes this memory behind the compiler's back, so every
//! access is an atomic load or store (plain `mov` on x86; DMA is cache
//! coherent there) or a volatile copy, each word read once. Loads are
//! `Acquire` and stores `Release`; a driver that needs a store to be seen
//! before a later load (virtio's event suppression) adds a
//! `fence(SeqCst)`.
//!
//! # Offsets
//! Offsets are bytes from the start of the buffer. An access that does not
//! lie inside the buffer, or is not naturally aligned, is a driver bug
//! (possibly one where a device-reported value went unchecked): it never
//! touches memory, logs an error, and a read returns all ones (what a
//! missing device answers), a write does nothing. It does not panic: a
//! device must not be able to stop the kernel. Drivers check any offset
//! they compute from device data with [`DmaBuffer::contains`] first.

use super::shared::SharedFrames;
use crate::arch::phys_to_virt;
use abi::errno::{Errno, EINVAL, ENOMEM};
use abi::layout::PAGE_SIZE;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Zeroed, physically contiguous memory for a device.
#[derive(Debug)]
pub struct DmaBuffer {
    frames: Arc<SharedFrames>,
    /// Direct-map address of the first byte.
    virt: usize,
}

impl DmaBuffer {
    /// At least `bytes` (rounded up to whole pages) of zeroed, contiguous,
    /// page-aligned memory. `EINVAL` for zero bytes, `ENOMEM` when no such
    /// run of frames is free outside the kernel's reserve.
    pub fn alloc(bytes: usize) -> Result<Self, Errno> {
        if bytes == 0 {
            return Err(EINVAL);
        }
        let pages = (bytes as u64).div_ceil(PAGE_SIZE);
        let frames = SharedFrames::alloc_zeroed(pages).map_err(|_| ENOMEM)?;
        let virt = phys_to_virt(frames.phys()) as usize;
        Ok(Self { frames, virt })
    }

    /// Physical (bus) address of the first byte.
    pub fn phys(&self) -> u64 {
        self.frames.phys()
    }

    /// Size in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Never true: a buffer has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frames, to keep them alive elsewhere (a request in flight).
    pub fn frames(&self) -> &Arc<SharedFrames> {
        &self.frames
    }

    /// Whether `len` bytes at `off` lie inside the buffer.
    pub fn contains(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len())
    }

    /// The address of a naturally aligned `size`-byte word at `off`, if it
    /// lies inside; logs the driver bug otherwise.
    fn word(&self, off: usize, size: usize) -> Option<usize> {
        if self.contains(off, size) && off.is_multiple_of(size) {
            Some(self.virt + off)
        } else {
            log::error!(
                "dma: {size}-byte access at offset {off:#x} outside a {:#x}-byte buffer or unaligned",
                self.len()
            );
            None
        }
    }

    pub fn read_u8(&self, off: usize) -> u8 {
        match self.word(off, 1) {
            // SAFETY: `word` checked that the byte lies inside the frames,
            // which `self` keeps allocated; atomics are valid for any bits
            // and make the device's concurrent writes no data race.
            Some(addr) => unsafe { AtomicU8::from_ptr(addr as *mut u8) }.load(Ordering::Acquire),
            None => u8::MAX,
        }
    }

    pub fn read_u16(&self, off: usize) -> u16 {
        match self.word(off, 2) {
            // SAFETY: as in `read_u8`; `word` also checked the alignment.
            Some(addr) => unsafe { AtomicU16::from_ptr(addr as *mut u16) }.load(Ordering::Acquire),
            None => u16::MAX,
        }
    }

    pub fn read_u32(&self, off: usize) -> u32 {
        match self.word(off, 4) {
            // SAFETY: as in `read_u16`.
            Some(addr) => unsafe { AtomicU32::from_ptr(addr as *mut u32) }.load(Ordering::Acquire),
            None => u32::MAX,
        }
    }

    pub fn read_u64(&self, off: usize) -> u64 {
        match self.word(off, 8) {
            // SAFETY: as in `read_u16`.
            Some(addr) => unsafe { AtomicU64::from_ptr(addr as *mut u64) }.load(Ordering::Acquire),
            None => u64::MAX,
        }
    }

    pub fn write_u8(&self, off: usize, value: u8) {
        if let Some(addr) = self.word(off, 1) {
            // SAFETY: as in `read_u8`.
            unsafe { AtomicU8::from_ptr(addr as *mut u8) }.store(value, Ordering::Release);
        }
    }

    pub fn write_u16(&self, off: usize, value: u16) {
        if let Some(addr) = self.word(off, 2) {
            // SAFETY: as in `read_u16`.
            unsafe { AtomicU16::from_ptr(addr as *mut u16) }.store(value, Ordering::Release);
        }
    }

    pub fn write_u32(&self, off: usize, value: u32) {
        if let Some(addr) = self.word(off, 4) {
            // SAFETY: as in `read_u16`.
            unsafe { AtomicU32::from_ptr(addr as *mut u32) }.store(value, Ordering::Release);
        }
    }

    pub fn write_u64(&self, off: usize, value: u64) {
        if let Some(addr) = self.word(off, 8) {
            // SAFETY: as in `read_u16`.
            unsafe { AtomicU64::from_ptr(addr as *mut u64) }.store(value, Ordering::Release);
        }
    }

    /// Copies `buf.len()` bytes at `off` into `buf` (a volatile copy: the
    /// device may be writing). `EINVAL` if the range is not inside.
    pub fn read_bytes(&self, off: usize, buf: &mut [u8]) -> Result<(), Errno> {
        if !self.contains(off, buf.len()) {
            return Err(EINVAL);
        }
        // SAFETY: the source range lies inside the frames `self` keeps
        // allocated; `buf` is a distinct, writable kernel slice.
        unsafe {
            crate::arch::paging::copy_volatile(
                buf.as_mut_ptr(),
                (self.virt + off) as *const u8,
                buf.len(),
            )
        };
        Ok(())
    }

    /// Copies `bytes` into the buffer at `off`. `EINVAL` if the range is
    /// not inside.
    pub fn write_bytes(&self, off: usize, bytes: &[u8]) -> Result<(), Errno> {
        if !self.contains(off, bytes.len()) {
            return Err(EINVAL);
        }
        // SAFETY: the destination lies inside the frames `self` keeps
        // allocated; `bytes` is a distinct kernel slice.
        unsafe {
            crate::arch::paging::copy_volatile(
                (self.virt + off) as *mut u8,
                bytes.as_ptr(),
                bytes.len(),
            )
        };
        Ok(())
    }

    /// Sets `len` bytes at `off` to zero. `EINVAL` if not inside.
    pub fn zero(&self, off: usize, len: usize) -> Result<(), Errno> {
        if !self.contains(off, len) {
            return Err(EINVAL);
        }
        for at in off..off + len {
            // SAFETY: inside the frames (checked above).
            unsafe { AtomicU8::from_ptr((self.virt + at) as *mut u8) }.store(0, Ordering::Relaxed);
        }
        Ok(())
    }
}
