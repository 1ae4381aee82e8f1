//! The global allocator: a first-fit free list over a fixed region in `.bss`.
//!
//! There is no heap syscall, so every program gets [`HEAP_SIZE`] bytes up
//! front. Invariants of a [`FreeList`]:
//! - Free blocks ("holes") form a singly linked list sorted by address; each
//!   hole starts with a [`Hole`] header naming its size.
//! - No two holes touch: a freed block is merged with the holes on either
//!   side, so a program that frees what it allocates never fragments the
//!   region for good and can loop forever.
//! - Every block (hole or allocation) is a multiple of [`UNIT`] bytes at a
//!   `UNIT`-aligned address, so the pieces left over when an allocation is
//!   cut out of a hole are always big enough to hold a header.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ptr::null_mut;

/// Bytes of heap every program gets.
pub const HEAP_SIZE: usize = 1 << 20;

/// Size and alignment granularity of every block.
const UNIT: usize = size_of::<Hole>();

/// The header at the start of every free block.
#[repr(C, align(16))]
struct Hole {
    size: usize,
    next: *mut Hole,
}

/// A sorted, coalescing list of holes in one memory region.
pub struct FreeList {
    head: *mut Hole,
    used: usize,
}

// SAFETY: a `FreeList` owns its region exclusively (see `init`); moving it
// to another thread moves that ownership with it.
unsafe impl Send for FreeList {}

impl FreeList {
    /// A list with no memory; every allocation fails until [`Self::init`].
    pub const fn empty() -> Self {
        FreeList {
            head: null_mut(),
            used: 0,
        }
    }

    /// Hands the list `size` bytes at `base`, all free.
    ///
    /// # Safety
    ///
    /// `base` must be `UNIT`-aligned (16) and valid for reads and writes of
    /// `size` bytes for as long as the list is used, nothing else may touch
    /// those bytes except through the list's allocations, and the list must
    /// be empty.
    pub unsafe fn init(&mut self, base: *mut u8, size: usize) {
        debug_assert!(self.head.is_null() && (base as usize).is_multiple_of(UNIT));
        let size = size - size % UNIT;
        if size >= UNIT {
            let hole = base.cast::<Hole>();
            // SAFETY: the caller gives us `size >= UNIT` aligned bytes at `base`.
            unsafe {
                hole.write(Hole {
                    size,
                    next: null_mut(),
                })
            };
            self.head = hole;
        }
    }

    /// Bytes currently allocated (rounded up to whole units).
    pub fn used(&self) -> usize {
        self.used
    }

    /// Number of holes; one after everything is freed.
    pub fn holes(&self) -> usize {
        let mut count = 0;
        let mut hole = self.head;
        while !hole.is_null() {
            count += 1;
            // SAFETY: every hole in the list is a valid header (invariant).
            hole = unsafe { (*hole).next };
        }
        count
    }

    /// The block size and alignment used for `layout`.
    fn block(layout: Layout) -> Option<(usize, usize)> {
        let size = layout.size().max(1).checked_next_multiple_of(UNIT)?;
        Some((size, layout.align().max(UNIT)))
    }

    /// First-fit allocation; null when no hole is big enough.
    pub fn allocate(&mut self, layout: Layout) -> *mut u8 {
        let Some((size, align)) = Self::block(layout) else {
            return null_mut();
        };
        let mut link: *mut *mut Hole = &raw mut self.head;
        // SAFETY: `link` points at `self.head` or at the `next` field of a
        // hole in the list, and every hole is a valid header inside the
        // region given to `init` (invariants), so reading and rewriting them
        // is sound. Pieces written below lie inside the hole they come from,
        // at `UNIT`-aligned addresses, and are at least `UNIT` bytes because
        // all sizes and addresses are multiples of `UNIT`.
        unsafe {
            while !(*link).is_null() {
                let hole = *link;
                let start = hole as usize;
                let end = start + (*hole).size;
                let Some(at) = start.checked_next_multiple_of(align) else {
                    break;
                };
                if at
                    .checked_add(size)
                    .is_some_and(|alloc_end| alloc_end <= end)
                {
                    let alloc_end = at + size;
                    let mut rest = (*hole).next;
                    if alloc_end < end {
                        let back = hole.byte_add(alloc_end - start);
                        back.write(Hole {
                            size: end - alloc_end,
                            next: rest,
                        });
                        rest = back;
                    }
                    if at > start {
                        hole.write(Hole {
                            size: at - start,
                            next: rest,
                        });
                        rest = hole;
                    }
                    *link = rest;
                    self.used += size;
                    return hole.cast::<u8>().add(at - start);
                }
                link = &raw mut (*hole).next;
            }
        }
        null_mut()
    }

    /// Returns a block to the list, merging it with its neighbours.
    ///
    /// # Safety
    ///
    /// `ptr` must have come from [`Self::allocate`] on this list with the
    /// same `layout`, and not have been freed since.
    pub unsafe fn deallocate(&mut self, ptr: *mut u8, layout: Layout) {
        let Some((size, _)) = Self::block(layout) else {
            return;
        };
        let start = ptr as usize;
        let mut prev: *mut Hole = null_mut();
        let mut next = self.head;
        // SAFETY: the block at `ptr` is `size` bytes of the region, aligned
        // and no longer in use (caller), so it can hold a header; `prev` and
        // `next` are holes of the list (invariant). The list stays sorted
        // because `prev < ptr < next`, and touching neighbours are merged.
        unsafe {
            while !next.is_null() && (next as usize) < start {
                prev = next;
                next = (*next).next;
            }
            let node = ptr.cast::<Hole>();
            node.write(Hole { size, next });
            if !next.is_null() && start + size == next as usize {
                (*node).size += (*next).size;
                (*node).next = (*next).next;
            }
            if prev.is_null() {
                self.head = node;
            } else if prev as usize + (*prev).size == start {
                (*prev).size += (*node).size;
                (*prev).next = (*node).next;
            } else {
                (*prev).next = node;
            }
        }
        self.used -= size;
    }
}

/// The memory behind the global allocator.
#[repr(C, align(4096))]
struct Region(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the bytes are only reached through `HEAP`'s mutex.
unsafe impl Sync for Region {}

/// All zero, so it lands in `.bss` and costs nothing in the file.
static REGION: Region = Region(UnsafeCell::new([0; HEAP_SIZE]));

/// The global allocator: a [`FreeList`] over [`REGION`], set up on first use.
struct Heap {
    list: spin::Mutex<Option<FreeList>>,
}

impl Heap {
    const fn new() -> Self {
        Heap {
            list: spin::Mutex::new(None),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut FreeList) -> R) -> R {
        let mut slot = self.list.lock();
        let list = slot.get_or_insert_with(|| {
            let mut list = FreeList::empty();
            // SAFETY: `REGION` is page-aligned, `HEAP_SIZE` bytes, and only
            // this list (created once, under the lock) ever touches it.
            unsafe { list.init(REGION.0.get().cast(), HEAP_SIZE) };
            list
        });
        f(list)
    }
}

// SAFETY: `allocate` returns blocks of at least `layout.size()` bytes at
// `layout.align()` that no other live allocation overlaps, or null; the lock
// serialises all access to the list.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with(|list| list.allocate(layout))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `GlobalAlloc` callers pass a block this allocator returned,
        // with its layout.
        self.with(|list| unsafe { list.deallocate(ptr, layout) })
    }
}

#[cfg_attr(not(test), global_allocator)]
static HEAP: Heap = Heap::new();

/// Bytes of the program heap in use.
pub fn used() -> usize {
    HEAP.with(|list| list.used())
}

/// Bytes of the program heap not in use (possibly fragmented).
pub fn free() -> usize {
    HEAP_SIZE - used()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[repr(C, align(4096))]
    struct Arena([u8; 64 * 1024]);

    fn with_list(f: impl FnOnce(&mut FreeList, usize)) {
        let mut arena = Arena([0; 64 * 1024]);
        let mut list = FreeList::empty();
        let size = arena.0.len();
        // SAFETY: the arena outlives the list and is only used through it.
        unsafe { list.init(arena.0.as_mut_ptr(), size) };
        f(&mut list, size);
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn frees_merge_back_into_one_hole() {
        with_list(|list, _| {
            let layouts: Vec<Layout> = (1..40).map(|i| layout(i * 7, 1 << (i % 8))).collect();
            let ptrs: Vec<*mut u8> = layouts.iter().map(|&l| list.allocate(l)).collect();
            for (&p, l) in ptrs.iter().zip(&layouts) {
                assert!(!p.is_null());
                assert_eq!(p as usize % l.align(), 0);
            }
            // Free every other block, then the rest, in reverse.
            for (i, (&p, &l)) in ptrs.iter().zip(&layouts).enumerate() {
                if i % 2 == 0 {
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { list.deallocate(p, l) };
                }
            }
            for (i, (&p, &l)) in ptrs.iter().zip(&layouts).enumerate().rev() {
                if i % 2 == 1 {
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { list.deallocate(p, l) };
                }
            }
            assert_eq!(list.used(), 0);
            assert_eq!(list.holes(), 1);
        });
    }

    #[test]
    fn blocks_do_not_overlap_and_keep_their_contents() {
        with_list(|list, _| {
            let blocks: Vec<(*mut u8, Layout)> = (0..50)
                .map(|i| {
                    let l = layout(1 + i * 3, 1 << (i % 7));
                    let p = list.allocate(l);
                    assert!(!p.is_null());
                    // SAFETY: `p` is a fresh block of `l.size()` bytes.
                    unsafe { p.write_bytes(i as u8, l.size()) };
                    (p, l)
                })
                .collect();
            for (i, &(p, l)) in blocks.iter().enumerate() {
                // SAFETY: still allocated; written above.
                let bytes = unsafe { core::slice::from_raw_parts(p, l.size()) };
                assert!(bytes.iter().all(|&b| b == i as u8));
                // SAFETY: allocated above with this layout, freed once.
                unsafe { list.deallocate(p, l) };
            }
            assert_eq!(list.holes(), 1);
        });
    }

    #[test]
    fn exhaustion_returns_null_and_recovers() {
        with_list(|list, size| {
            let l = layout(1000, 8);
            let mut ptrs = Vec::new();
            loop {
                let p = list.allocate(l);
                if p.is_null() {
                    break;
                }
                ptrs.push(p);
            }
            assert_eq!(ptrs.len(), size / 1008);
            for p in ptrs {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { list.deallocate(p, l) };
            }
            let whole = layout(size, 16);
            let p = list.allocate(whole);
            assert!(!p.is_null(), "the whole region is one hole again");
            // SAFETY: allocated just above.
            unsafe { list.deallocate(p, whole) };
        });
    }

    #[test]
    fn a_long_alloc_free_loop_never_runs_out() {
        with_list(|list, _| {
            let mut live: Vec<(*mut u8, Layout)> = Vec::new();
            let mut seed = 12345u32;
            for _ in 0..100_000 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if live.len() < 20 && !seed.is_multiple_of(3) {
                    let l = layout((seed >> 8) as usize % 2000 + 1, 1 << ((seed >> 4) % 7));
                    let p = list.allocate(l);
                    assert!(!p.is_null());
                    live.push((p, l));
                } else if !live.is_empty() {
                    let (p, l) = live.swap_remove(seed as usize % live.len());
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { list.deallocate(p, l) };
                }
            }
            for (p, l) in live {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { list.deallocate(p, l) };
            }
            assert_eq!((list.used(), list.holes()), (0, 1));
        });
    }
}
