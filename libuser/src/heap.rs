//! The global allocator: [`talc`] over a fixed region in `.bss`.
//!
//! There is no heap syscall (no `brk` or `mmap` yet), so every program gets
//! [`HEAP_SIZE`] bytes up front: a zeroed static array, which costs nothing
//! in the ELF file, handed to the allocator the first time it needs memory
//! (talc's `Claim` source). Allocation fails (null, so `alloc` reports it)
//! once the region is full; freed blocks merge with free neighbours, so a
//! program that frees what it allocates never fragments the region for
//! good and can loop forever.
//!
//! Why talc: libuser used to hand-write this allocator (a first-fit list of
//! holes merged on free), and both talc and `linked_list_allocator` are that
//! design, maintained and tested beyond what one crate's unit tests do.
//! talc fits best: its `Claim` source takes the static region in the
//! allocator's `const` initialiser, so nothing has to run in `_start` and
//! there is no first-use check of our own; it frees in constant time
//! (boundary tags) where a sorted hole list walks; its counters give
//! [`used`]; and its lock is any `lock_api` mutex, here spin's, already a
//! dependency. Processes are single-threaded, so the lock is only ever
//! contended by a panic inside the allocator.
#![allow(unsafe_code)]

use talc::source::Claim;
use talc::TalcLock;

/// Bytes of heap every program gets.
pub const HEAP_SIZE: usize = 1 << 20;

/// The allocator: talc behind spin's mutex, over a region it claims on
/// first use.
type Heap = TalcLock<spin::Mutex<()>, Claim>;

/// The memory behind the global allocator. All zero, so it lands in `.bss`.
/// Only its address is ever taken, once, below.
static mut REGION: [u8; HEAP_SIZE] = [0; HEAP_SIZE];

#[cfg_attr(not(test), global_allocator)]
static HEAP: Heap = Heap::new(
    // SAFETY: `REGION` is valid for the life of the program and nothing but
    // this allocator reaches it: it is private to this module and this is
    // the only place that takes its address, so no one else mutates it.
    unsafe { Claim::array(&raw mut REGION) },
);

/// Bytes of the program heap handed out and not yet freed (the sum of the
/// requested sizes).
pub fn used() -> usize {
    HEAP.lock().counters().allocated_bytes
}

/// Bytes of the program heap not handed out (some hold the allocator's own
/// bookkeeping, and the rest may be fragmented).
pub fn free() -> usize {
    HEAP_SIZE - used()
}

#[cfg(test)]
mod tests {
    //! The allocator as libuser configures it ([`Heap`], claiming its
    //! region on first use), over a test arena instead of `REGION`: the
    //! properties the programs rely on.
    use super::*;
    use alloc::vec::Vec;
    use core::alloc::{GlobalAlloc, Layout};

    const ARENA: usize = 64 * 1024;

    /// Runs `f` on a fresh [`Heap`] over a zeroed arena of [`ARENA`] bytes.
    fn with_heap(f: impl FnOnce(&Heap)) {
        let mut arena = [0u8; ARENA];
        // SAFETY: the arena outlives the heap (declared before it) and is
        // only reached through the heap from here on.
        let heap = Heap::new(unsafe { Claim::array(&raw mut arena) });
        f(&heap);
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    fn alloc(heap: &Heap, l: Layout) -> *mut u8 {
        // SAFETY: every layout the tests use has a non-zero size.
        unsafe { heap.alloc(l) }
    }

    /// # Safety
    ///
    /// `p` came from [`alloc`] on `heap` with `l` and is freed only once.
    unsafe fn dealloc(heap: &Heap, p: *mut u8, l: Layout) {
        // SAFETY: passed on to the caller.
        unsafe { heap.dealloc(p, l) }
    }

    /// (bytes in use, free blocks)
    fn state(heap: &Heap) -> (usize, usize) {
        let talc = heap.lock();
        let counters = talc.counters();
        (counters.allocated_bytes, counters.fragment_count)
    }

    #[test]
    fn frees_merge_back_into_one_hole() {
        with_heap(|heap| {
            let layouts: Vec<Layout> = (1..40).map(|i| layout(i * 7, 1 << (i % 8))).collect();
            let ptrs: Vec<*mut u8> = layouts.iter().map(|&l| alloc(heap, l)).collect();
            for (&p, l) in ptrs.iter().zip(&layouts) {
                assert!(!p.is_null());
                assert_eq!(p as usize % l.align(), 0);
            }
            assert_eq!(state(heap).0, layouts.iter().map(Layout::size).sum());
            // Free every other block, then the rest, in reverse.
            for (i, (&p, &l)) in ptrs.iter().zip(&layouts).enumerate() {
                if i % 2 == 0 {
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { dealloc(heap, p, l) };
                }
            }
            for (i, (&p, &l)) in ptrs.iter().zip(&layouts).enumerate().rev() {
                if i % 2 == 1 {
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { dealloc(heap, p, l) };
                }
            }
            assert_eq!(state(heap), (0, 1));
        });
    }

    #[test]
    fn blocks_do_not_overlap_and_keep_their_contents() {
        with_heap(|heap| {
            let blocks: Vec<(*mut u8, Layout)> = (0..50)
                .map(|i| {
                    let l = layout(1 + i * 3, 1 << (i % 7));
                    let p = alloc(heap, l);
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
                unsafe { dealloc(heap, p, l) };
            }
            assert_eq!(state(heap), (0, 1));
        });
    }

    #[test]
    fn exhaustion_returns_null_and_recovers() {
        with_heap(|heap| {
            let l = layout(1000, 8);
            let fill = || {
                let mut ptrs = Vec::new();
                loop {
                    let p = alloc(heap, l);
                    if p.is_null() {
                        return ptrs;
                    }
                    ptrs.push(p);
                }
            };
            let first = fill();
            // Bookkeeping takes little: most of the arena was handed out.
            assert!(first.len() * l.size() >= ARENA * 9 / 10, "{}", first.len());
            for &p in &first {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { dealloc(heap, p, l) };
            }
            assert_eq!(state(heap), (0, 1));
            // The region is one hole again: as much fits as the first time,
            // and so does one block of most of it.
            let again = fill();
            assert_eq!(again.len(), first.len());
            for p in again {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { dealloc(heap, p, l) };
            }
            let whole = layout(ARENA * 9 / 10, 16);
            let p = alloc(heap, whole);
            assert!(!p.is_null(), "the whole region is one hole again");
            // SAFETY: allocated just above.
            unsafe { dealloc(heap, p, whole) };
        });
    }

    #[test]
    fn a_long_alloc_free_loop_never_runs_out() {
        with_heap(|heap| {
            let mut live: Vec<(*mut u8, Layout)> = Vec::new();
            let mut seed = 12345u32;
            for _ in 0..100_000 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if live.len() < 20 && !seed.is_multiple_of(3) {
                    let l = layout((seed >> 8) as usize % 2000 + 1, 1 << ((seed >> 4) % 7));
                    let p = alloc(heap, l);
                    assert!(!p.is_null());
                    live.push((p, l));
                } else if !live.is_empty() {
                    let (p, l) = live.swap_remove(seed as usize % live.len());
                    // SAFETY: allocated above with this layout, freed once.
                    unsafe { dealloc(heap, p, l) };
                }
            }
            for (p, l) in live {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { dealloc(heap, p, l) };
            }
            assert_eq!(state(heap), (0, 1));
        });
    }

    #[test]
    fn the_program_heap_starts_empty_and_counts_what_it_hands_out() {
        // On the host `HEAP` is not the global allocator, so only these
        // calls touch it.
        assert_eq!((used(), free()), (0, HEAP_SIZE));
        let l = layout(100, 8);
        let p = alloc(&HEAP, l);
        assert!(!p.is_null());
        assert_eq!((used(), free()), (100, HEAP_SIZE - 100));
        // SAFETY: allocated just above.
        unsafe { dealloc(&HEAP, p, l) };
        assert_eq!(used(), 0);
    }
}
