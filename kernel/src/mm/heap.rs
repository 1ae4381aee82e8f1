//! The kernel heap (`alloc`, `hashbrown`).
//!
//! Small objects (up to 2 KiB) come from per-size-class free lists; a class
//! that runs dry carves a fresh frame into blocks. Blocks are aligned to
//! their size, so any alignment up to the class size holds. Larger objects
//! are whole runs of contiguous frames straight from the frame allocator and
//! go back to it when freed. Slab frames stay with their class once carved
//! (the caches reach a steady size; the leak tests warm them up first).
//!
//! # When memory runs out
//! `alloc` returns null when no frame (or no run of frames) is left. A
//! fallible allocation (`Vec::try_reserve`, `String::try_reserve_exact`,
//! `HashMap::try_reserve`) turns that into an error, which a request path
//! returns as `ENOMEM`. An infallible one (`Box::new`, `Vec::push` past the
//! capacity, `Arc::new`) calls `alloc::alloc::handle_alloc_error`, which
//! without an `alloc_error_handler` (unstable) panics: "memory allocation
//! of N bytes failed", and a kernel panic stops the machine. So:
//! - every allocation made on behalf of a user request is fallible, or is
//!   a small bounded one (an `Arc` per open file or inode, which cannot be
//!   made fallibly on stable Rust) behind a bound that keeps the heap from
//!   running out;
//! - what users can make the kernel hold is bounded by quotas set here at
//!   boot ([`init_limits`]): ring engine memory (`RING_MEMORY`) and the RAM
//!   file system's size (`crate::fs`), each a fraction of RAM, and by
//!   bounds on tasks (`crate::task::init_limits`) and on each process's
//!   children (`abi::syscall::limits::CHILDREN_MAX`), so the heap always
//!   has room for the kernel's own infallible allocations;
//! - frames for what programs hold outside the heap (address spaces, ring
//!   pages) leave a reserve that only the heap takes ([`frames`]): once
//!   processes have taken all the rest, the heap can still grow.
//!
//! The heap cannot tell whom an allocation is for, so a fallible request
//! path (a file's bytes, ring requests) may also take the reserve, within
//! its quota: quotas and reserve together, not either alone, keep the
//! kernel's own allocations served.

use crate::arch::{phys_to_virt, virt_to_phys};
use crate::mm::frames;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

const PAGE: usize = abi::layout::PAGE_SIZE as usize;
const CLASSES: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];

struct FreeBlock {
    next: *mut FreeBlock,
}

struct Classes {
    heads: [*mut FreeBlock; CLASSES.len()],
}

// SAFETY: the free-list pointers point into frames owned by the heap and are
// only touched under the `Mutex`.
unsafe impl Send for Classes {}

/// The global allocator.
pub struct KernelHeap {
    classes: Mutex<Classes>,
    used: AtomicU64,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    classes: Mutex::new(Classes {
        heads: [core::ptr::null_mut(); CLASSES.len()],
    }),
    used: AtomicU64::new(0),
};

/// The share of usable RAM that ring engines together may hold for their
/// users (pending requests, overflowed CQEs, registered tables); past it a
/// request gets `-ENOMEM`.
const RING_MEMORY_DIVISOR: u64 = 8;
/// The disk file systems' page cache may hold this fraction of RAM.
const PAGE_CACHE_DIVISOR: u64 = 8;

/// Sets the quotas on what users can make the kernel heap hold, from the
/// amount of usable RAM. Called once the frame allocator is up.
pub fn init_limits() {
    let (_, usable) = frames::counts();
    let ring = usable * PAGE as u64 / RING_MEMORY_DIVISOR;
    kernel_core::ring::RING_MEMORY.set_limit(usize::try_from(ring).unwrap_or(usize::MAX));
    let cache = usable * PAGE as u64 / PAGE_CACHE_DIVISOR;
    kernel_core::vfs::cache::PAGE_CACHE.set_limit(usize::try_from(cache).unwrap_or(usize::MAX));
    log::info!(
        "heap: ring requests may hold {} MiB, the page cache {} MiB",
        ring >> 20,
        cache >> 20
    );
}

/// Bytes currently handed out (rounded to block or page size).
pub fn used_bytes() -> u64 {
    HEAP.used.load(Ordering::Relaxed)
}

fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align());
    CLASSES.iter().position(|&c| c >= size)
}

fn pages_of(layout: Layout) -> u64 {
    layout.size().div_ceil(PAGE) as u64
}

// SAFETY: blocks handed out are unique until freed, sized and aligned for
// the layout (class blocks are aligned to the class size, page runs to
// pages or more), and `dealloc` receives the same layout.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        x86_64::instructions::interrupts::without_interrupts(|| {
            if let Some(class) = class_of(layout) {
                let mut classes = self.classes.lock();
                if classes.heads[class].is_null() {
                    let Some(frame) = frames::alloc_for_heap() else {
                        return core::ptr::null_mut();
                    };
                    let base = phys_to_virt(frame) as usize;
                    let size = CLASSES[class];
                    let mut head = core::ptr::null_mut::<FreeBlock>();
                    for offset in (0..PAGE).step_by(size).rev() {
                        let block = (base + offset) as *mut FreeBlock;
                        // SAFETY: `block` lies in the fresh frame, aligned
                        // to `size` >= 16, and nothing else uses it.
                        unsafe { block.write(FreeBlock { next: head }) };
                        head = block;
                    }
                    classes.heads[class] = head;
                }
                let block = classes.heads[class];
                // SAFETY: a non-null head is a free block of this class.
                classes.heads[class] = unsafe { (*block).next };
                self.used
                    .fetch_add(CLASSES[class] as u64, Ordering::Relaxed);
                block as *mut u8
            } else {
                let pages = pages_of(layout);
                let align = (layout.align() / PAGE).max(1) as u64;
                match frames::alloc_contiguous_for_heap(pages, align) {
                    Some(phys) => {
                        self.used.fetch_add(pages * PAGE as u64, Ordering::Relaxed);
                        phys_to_virt(phys) as *mut u8
                    }
                    None => core::ptr::null_mut(),
                }
            }
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        x86_64::instructions::interrupts::without_interrupts(|| {
            if let Some(class) = class_of(layout) {
                let mut classes = self.classes.lock();
                let block = ptr as *mut FreeBlock;
                // SAFETY: `ptr` came from `alloc` with this layout, so it is
                // a block of this class that the caller no longer uses.
                unsafe {
                    block.write(FreeBlock {
                        next: classes.heads[class],
                    })
                };
                classes.heads[class] = block;
                self.used
                    .fetch_sub(CLASSES[class] as u64, Ordering::Relaxed);
            } else {
                let pages = pages_of(layout);
                let phys = virt_to_phys(ptr as u64);
                for page in 0..pages {
                    frames::free(phys + page * PAGE as u64);
                }
                self.used.fetch_sub(pages * PAGE as u64, Ordering::Relaxed);
            }
        })
    }
}
