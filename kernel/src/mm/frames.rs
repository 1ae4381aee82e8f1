//! The physical frame allocator: a bitmap (see `kernel_core::frames`) over
//! the usable RAM of the direct map, built from the boot memory map with the
//! kernel image, the boot information and the modules reserved.

use crate::arch::{phys_to_virt, DIRECT_MAP_SIZE};
use crate::bootinfo::{BootInfo, PhysRange};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel_core::frames::FrameBitmap;
use spin::Mutex;

const FRAME_SIZE: u64 = 4096;
const MAX_FRAMES: usize = (DIRECT_MAP_SIZE / FRAME_SIZE) as usize;

static ALLOCATOR: Mutex<Option<FrameBitmap<'static>>> = Mutex::new(None);
/// Frames of usable RAM that the allocator manages (free or in use).
static USABLE: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
}

/// Builds the allocator. Reserves the first MiB (firmware, PVH tables), the
/// kernel image, the boot information and every module.
pub fn init(boot: &BootInfo) {
    static mut BITS: [u64; MAX_FRAMES / 64] = [0; MAX_FRAMES / 64];
    // SAFETY: `init` runs once, on the boot CPU, before anything else can
    // reach `BITS`; afterwards it is only reached through `ALLOCATOR`.
    let bits: &'static mut [u64] = unsafe { &mut *core::ptr::addr_of_mut!(BITS) };
    let mut bitmap =
        FrameBitmap::new(bits, 0, MAX_FRAMES as u64).expect("the bitmap storage fits MAX_FRAMES");
    for range in boot.usable() {
        let start = range.start.div_ceil(FRAME_SIZE);
        let end = range.end / FRAME_SIZE;
        if end > start {
            bitmap.free_range(start, end - start);
        }
    }
    // Only the addresses of the linker-defined symbols are taken.
    let (kernel_start, kernel_end) = (
        core::ptr::addr_of!(__kernel_phys_start) as u64,
        core::ptr::addr_of!(__kernel_phys_end) as u64,
    );
    let mut reserve = |r: PhysRange| {
        let start = r.start / FRAME_SIZE;
        let end = r.end.div_ceil(FRAME_SIZE);
        if end > start {
            bitmap.reserve_range(start, end - start);
        }
    };
    reserve(PhysRange {
        start: 0,
        end: 0x10_0000,
    });
    reserve(PhysRange {
        start: kernel_start,
        end: kernel_end,
    });
    reserve(boot.info);
    for &module in boot.modules() {
        reserve(module);
    }
    log::info!(
        "memory: {} MiB usable, {} frames free",
        (bitmap.free_count() * FRAME_SIZE) >> 20,
        bitmap.free_count()
    );
    USABLE.store(bitmap.free_count(), Ordering::Relaxed);
    *ALLOCATOR.lock() = Some(bitmap);
}

fn with<R>(f: impl FnOnce(&mut FrameBitmap<'static>) -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut guard = ALLOCATOR.lock();
        f(guard.as_mut().expect("frame allocator used before init"))
    })
}

/// One frame, contents undefined. Returns its physical address.
pub fn alloc() -> Option<u64> {
    with(|b| b.alloc()).map(|frame| frame * FRAME_SIZE)
}

/// One zeroed frame.
pub fn alloc_zeroed() -> Option<u64> {
    let phys = alloc()?;
    // SAFETY: the frame was just allocated, so nothing else refers to it,
    // and the direct map covers it.
    unsafe { core::ptr::write_bytes(phys_to_virt(phys) as *mut u8, 0, FRAME_SIZE as usize) };
    Some(phys)
}

/// `count` physically contiguous frames aligned to `align` frames.
pub fn alloc_contiguous(count: u64, align: u64) -> Option<u64> {
    with(|b| b.alloc_contiguous(count, align)).map(|frame| frame * FRAME_SIZE)
}

/// Returns a frame. Freeing a frame twice is a kernel bug and panics.
pub fn free(phys: u64) {
    if let Err(e) = with(|b| b.free(phys / FRAME_SIZE)) {
        panic!("freeing frame {phys:#x}: {e:?}");
    }
}

/// (free, usable) frames; usable counts RAM the allocator hands out, free
/// or not (frames released after boot, such as the initrd, are not added).
pub fn counts() -> (u64, u64) {
    (with(|b| b.free_count()), USABLE.load(Ordering::Relaxed))
}

/// Returns a range of the boot information to the allocator once it has been
/// copied (e.g. the initrd after the file system took its files).
pub fn release(range: PhysRange) {
    // Only pages wholly inside the range: its edges may share a page with
    // something still in use.
    let start = range.start.div_ceil(FRAME_SIZE);
    let end = range.end / FRAME_SIZE;
    if end > start {
        with(|b| b.free_range(start, end - start));
    }
}
