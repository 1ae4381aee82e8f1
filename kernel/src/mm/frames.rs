//! The physical frame allocator: a bitmap (see `kernel_core::frames`) over
//! the usable RAM of the direct map, built from the boot memory map with the
//! kernel image, the boot information and the modules reserved.
//!
//! # The reserve
//! A few frames ([`kernel_core::frames::reserve_frames`], Linux's
//! `min_free_kbytes`: 2 MiB of 256 MiB) are kept for the kernel heap. Frames
//! made on a program's behalf (its address space and pages, ring pages:
//! [`alloc_zeroed`], [`alloc_filled`], [`alloc_contiguous`]) are refused
//! once only the reserve is left, and requests that need many
//! ([`headroom`]) are refused before they start. Only the heap
//! ([`alloc_for_heap`], [`alloc_contiguous_for_heap`]) takes the last
//! frames: when programs have taken everything else, the kernel's own
//! allocations, which cannot fail gracefully (`Arc::new`, a wait queue
//! growing), still find room.

use crate::arch::{phys_to_virt, BootInfo, PhysRange, DIRECT_MAP_SIZE};
use abi::errno;
use abi::errno::Errno;
use abi::layout::PAGE_SIZE;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel_core::frames::FrameBitmap;
use spin::Mutex;

const MAX_FRAMES: usize = (DIRECT_MAP_SIZE / PAGE_SIZE) as usize;

static ALLOCATOR: Mutex<Option<FrameBitmap<'static>>> = Mutex::new(None);
/// Frames of usable RAM that the allocator manages (free or in use).
static USABLE: AtomicU64 = AtomicU64::new(0);
/// Frames only the heap may take (see the module docs), set by [`init`].
static RESERVE: AtomicU64 = AtomicU64::new(0);

/// The bitmap's storage, handed out once.
fn bitmap_storage() -> &'static mut [u64] {
    static mut BITS: [u64; MAX_FRAMES / 64] = [0; MAX_FRAMES / 64];
    static TAKEN: AtomicBool = AtomicBool::new(false);
    assert!(
        !TAKEN.swap(true, Ordering::AcqRel),
        "the frame allocator is initialised once"
    );
    // SAFETY: the swap above lets exactly one caller past, so this is the
    // only reference to `BITS` ever made, and nothing else names `BITS`.
    unsafe { &mut *core::ptr::addr_of_mut!(BITS) }
}

/// A boot module (the initrd) whose frames the allocator keeps reserved
/// until [`release_module`] takes it back: until then its bytes can be read.
/// Only [`init`] makes these, one per module it reserved.
pub struct BootModule {
    range: PhysRange,
}

impl BootModule {
    /// The module's contents.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the range lies in the direct map (the boot information
        // keeps only such modules) and `init` reserved its frames, which
        // stay reserved until `release_module` consumes `self`, so no
        // allocation can hand them out while this borrow lives.
        unsafe {
            core::slice::from_raw_parts(
                phys_to_virt(self.range.start) as *const u8,
                (self.range.end - self.range.start) as usize,
            )
        }
    }
}

/// Builds the allocator. Reserves the first MiB (firmware, PVH tables), the
/// kernel image, the boot information and every module, and returns the
/// modules. Panics if called twice.
pub fn init(boot: &BootInfo) -> Vec<BootModule> {
    let mut bitmap = FrameBitmap::new(bitmap_storage(), 0, MAX_FRAMES as u64)
        .expect("the bitmap storage fits MAX_FRAMES");
    for range in boot.usable() {
        let start = range.start.div_ceil(PAGE_SIZE);
        let end = range.end / PAGE_SIZE;
        if end > start {
            bitmap.free_range(start, end - start);
        }
    }
    let mut reserve = |r: PhysRange| {
        let start = r.start / PAGE_SIZE;
        let end = r.end.div_ceil(PAGE_SIZE);
        if end > start {
            bitmap.reserve_range(start, end - start);
        }
    };
    reserve(PhysRange {
        start: 0,
        end: 0x10_0000,
    });
    reserve(crate::arch::kernel_image());
    reserve(boot.info);
    for &module in boot.modules() {
        reserve(module);
    }
    let reserve = kernel_core::frames::reserve_frames(bitmap.free_count());
    log::info!(
        "memory: {} MiB usable, {} frames free, {} kept for the kernel heap",
        (bitmap.free_count() * PAGE_SIZE) >> 20,
        bitmap.free_count(),
        reserve
    );
    USABLE.store(bitmap.free_count(), Ordering::Relaxed);
    RESERVE.store(reserve, Ordering::Relaxed);
    *ALLOCATOR.lock() = Some(bitmap);
    // The heap works from here on.
    boot.modules()
        .iter()
        .map(|&range| BootModule { range })
        .collect()
}

fn with<R>(f: impl FnOnce(&mut FrameBitmap<'static>) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut guard = ALLOCATOR.lock();
        f(guard.as_mut().expect("frame allocator used before init"))
    })
}

/// One frame for the kernel heap's slab caches, contents undefined, the
/// reserve included. Returns its physical address. The caches keep their
/// frames for good, so they come from the top of memory: gathered there,
/// they do not split the runs that large allocations (a file's bytes, a
/// kernel stack) need.
pub fn alloc_for_heap() -> Option<u64> {
    with(|b| b.alloc_highest()).map(|frame| frame * PAGE_SIZE)
}

/// `count` physically contiguous frames for the kernel heap, aligned to
/// `align` frames, the reserve included.
pub fn alloc_contiguous_for_heap(count: u64, align: u64) -> Option<u64> {
    with(|b| b.alloc_contiguous(count, align)).map(|frame| frame * PAGE_SIZE)
}

/// Frames kept for the kernel heap.
pub fn reserve() -> u64 {
    RESERVE.load(Ordering::Relaxed)
}

/// Whether `count` frames can be taken without touching the reserve. An
/// early answer for a request that will need them (a spawn): it does not
/// set them aside, and each frame is refused again at the reserve.
/// `ENOMEM` if not.
pub fn headroom(count: u64) -> Result<(), Errno> {
    let free = with(|b| b.free_count());
    if free >= count.saturating_add(reserve()) {
        Ok(())
    } else {
        Err(errno::ENOMEM)
    }
}

/// One frame on a program's behalf, contents undefined; `None` if only the
/// reserve is left.
fn alloc_outside_reserve() -> Option<u64> {
    let reserve = reserve();
    with(|b| {
        if b.free_count() > reserve {
            b.alloc()
        } else {
            None
        }
    })
    .map(|frame| frame * PAGE_SIZE)
}

/// One zeroed frame on a program's behalf (`None` if only the reserve is
/// left).
pub fn alloc_zeroed() -> Option<u64> {
    let phys = alloc_outside_reserve()?;
    // SAFETY: the frame was just allocated, so nothing else refers to it,
    // and the direct map covers it.
    unsafe { core::ptr::write_bytes(phys_to_virt(phys) as *mut u8, 0, PAGE_SIZE as usize) };
    Some(phys)
}

/// One frame on a program's behalf holding `bytes` at `offset` and zeros
/// elsewhere (`None` if only the reserve is left). Panics if they do not
/// fit in the frame (callers split their data by page).
pub fn alloc_filled(offset: usize, bytes: &[u8]) -> Option<u64> {
    let end = offset.checked_add(bytes.len());
    assert!(
        end.is_some_and(|end| end <= PAGE_SIZE as usize),
        "{} bytes at offset {offset} do not fit in a frame",
        bytes.len()
    );
    let phys = alloc_zeroed()?;
    // SAFETY: the frame was just allocated, so nothing else refers to it;
    // the direct map covers it, and `offset..offset + bytes.len()` lies in
    // it (asserted above).
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (phys_to_virt(phys) as *mut u8).add(offset),
            bytes.len(),
        )
    };
    Some(phys)
}

/// `count` physically contiguous frames on a program's behalf, aligned to
/// `align` frames; `None` if they would reach into the reserve.
pub fn alloc_contiguous(count: u64, align: u64) -> Option<u64> {
    let reserve = reserve();
    with(|b| {
        if b.free_count() >= count.saturating_add(reserve) {
            b.alloc_contiguous(count, align)
        } else {
            None
        }
    })
    .map(|frame| frame * PAGE_SIZE)
}

/// Returns a frame. Freeing a frame twice is a kernel bug and panics.
pub fn free(phys: u64) {
    if let Err(e) = with(|b| b.free(phys / PAGE_SIZE)) {
        panic!("freeing frame {phys:#x}: {e:?}");
    }
}

/// (free, usable) frames; usable counts RAM the allocator hands out, free
/// or not (frames released after boot, such as the initrd, are not added).
pub fn counts() -> (u64, u64) {
    (with(|b| b.free_count()), USABLE.load(Ordering::Relaxed))
}

/// Returns a boot module's frames to the allocator once its contents have
/// been copied (the initrd, after the file system took its files).
pub fn release_module(module: BootModule) {
    // Only pages wholly inside the range: its edges may share a page with
    // something still in use.
    let start = module.range.start.div_ceil(PAGE_SIZE);
    let end = module.range.end / PAGE_SIZE;
    if end > start {
        with(|b| b.free_range(start, end - start));
    }
}
