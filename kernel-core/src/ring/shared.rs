//! The ring memory shared with user space, seen as arrays of atomics.
//!
//! [`RingWords`] is one ring's memory in the fixed layout of
//! `abi::io_uring::ring_layout`: the SQ header page, the CQ header page
//! (1024 `u32` words each, fields at [`abi::io_uring::header`] offsets, the
//! SQ index array at `header::ARRAY`), the SQE array (8 `u64` words per
//! slot) and the CQE array (2 `u64` words per slot), each as large as the
//! largest ring. A [`SharedRing`] is a reference to it: one pointer, whose
//! parts are at fixed offsets, so that making a view is a load, a header
//! word needs no bounds check, and a slot index only a compare with a
//! constant.
//!
//! Invariants the kernel side keeps (the `pub(crate)` accessors the engine
//! uses):
//! - User space may write any word at any time, so the kernel reads each word
//!   once per use and never trusts it: indices are masked or bounds-checked,
//!   and an access outside an array reads as an out-of-range value or is
//!   skipped, never a panic.
//! - An SQE is copied out word by word into a kernel [`Sqe`] before anything
//!   looks at it.
//! - Ordering: SQ `tail` is loaded with `Acquire` (it publishes the SQEs and
//!   array entries before it), SQ `head` stored with `Release`; CQ `head` is
//!   loaded with `Acquire` (user space is done with the slots before it), CQEs
//!   are written before CQ `tail` is stored with `Release`.
//!
//! The `user_*` methods do what user space does (liburing's way) and exist
//! for tests; [`OwnedRing`] owns the memory of a ring for host tests.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use abi::io_uring::{header, ring_layout, Cqe, Sqe};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Words in a ring header page (4 KiB of `u32`).
pub const HEADER_WORDS: usize = 1024;
/// `u64` words per SQE slot.
pub const SQE_WORDS: usize = 8;
/// `u64` words per CQE slot.
pub const CQE_WORDS: usize = 2;
/// SQE slots in the layout (the largest SQ).
pub const SQ_SLOTS: usize = ring_layout::MAX_SQ_ENTRIES as usize;
/// CQE slots in the layout (the largest CQ).
pub const CQ_SLOTS: usize = ring_layout::MAX_CQ_ENTRIES as usize;

/// One ring's memory, in the layout of `abi::io_uring::ring_layout`, as
/// atomic words (user space may write any of them at any time: atomics
/// are valid for any bits and make that no data race).
#[repr(C)]
pub struct RingWords {
    sq_hdr: [AtomicU32; HEADER_WORDS],
    cq_hdr: [AtomicU32; HEADER_WORDS],
    sqes: [[AtomicU64; SQE_WORDS]; SQ_SLOTS],
    cqes: [[AtomicU64; CQE_WORDS]; CQ_SLOTS],
}

const _: () = assert!(
    core::mem::size_of::<RingWords>() == ring_layout::SIZE as usize
        && core::mem::offset_of!(RingWords, sq_hdr) == ring_layout::SQ_HEADER as usize
        && core::mem::offset_of!(RingWords, cq_hdr) == ring_layout::CQ_HEADER as usize
        && core::mem::offset_of!(RingWords, sqes) == ring_layout::SQES as usize
        && core::mem::offset_of!(RingWords, cqes) == ring_layout::CQES as usize
        && header::ARRAY + SQ_SLOTS <= HEADER_WORDS
        && core::mem::align_of::<RingWords>() <= 8,
    "RingWords is not the ring layout"
);

impl RingWords {
    /// A zeroed ring, on the heap (28 KiB).
    pub fn zeroed() -> Box<Self> {
        Box::new(Self {
            sq_hdr: [const { AtomicU32::new(0) }; HEADER_WORDS],
            cq_hdr: [const { AtomicU32::new(0) }; HEADER_WORDS],
            sqes: [const { [const { AtomicU64::new(0) }; SQE_WORDS] }; SQ_SLOTS],
            cqes: [const { [const { AtomicU64::new(0) }; CQE_WORDS] }; CQ_SLOTS],
        })
    }
}

/// A view of one ring's shared memory: a reference, cheap to copy.
#[derive(Clone, Copy)]
pub struct SharedRing<'a> {
    w: &'a RingWords,
}

impl core::fmt::Debug for SharedRing<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedRing")
            .field("words", &(self.w as *const RingWords))
            .finish()
    }
}

impl<'a> SharedRing<'a> {
    /// A view of the ring in `words`.
    #[inline(always)]
    pub fn new(words: &'a RingWords) -> Self {
        Self { w: words }
    }

    /// Whether the layout holds a ring of `sq_entries` SQ and `cq_entries`
    /// CQ entries (SQ array, SQE and CQE slots).
    pub fn fits(&self, sq_entries: u32, cq_entries: u32) -> bool {
        sq_entries as usize <= SQ_SLOTS && cq_entries as usize <= CQ_SLOTS
    }

    // ---- Raw words (kernel setup, diagnostics, tests that scribble) ----

    /// SQ header word `word` (0 outside the page).
    pub fn sq_header(&self, word: usize) -> u32 {
        load32(&self.w.sq_hdr, word, Ordering::Acquire)
    }

    /// Stores `value` at SQ header word `word` (ignored outside the page).
    pub fn set_sq_header(&self, word: usize, value: u32) {
        store32(&self.w.sq_hdr, word, value);
    }

    /// CQ header word `word` (0 outside the page).
    pub fn cq_header(&self, word: usize) -> u32 {
        load32(&self.w.cq_hdr, word, Ordering::Acquire)
    }

    /// Stores `value` at CQ header word `word` (ignored outside the page).
    pub fn set_cq_header(&self, word: usize, value: u32) {
        store32(&self.w.cq_hdr, word, value);
    }

    /// Stores `value` at word `word` of the SQE array (ignored outside it).
    pub fn set_sqe_word(&self, word: usize, value: u64) {
        if let Some(w) = self.w.sqes.as_flattened().get(word) {
            w.store(value, Ordering::Relaxed);
        }
    }

    /// Number of SQE slots the view holds.
    pub fn sqe_slots(&self) -> usize {
        SQ_SLOTS
    }

    // ---- Kernel side (the engine) ----

    /// SQ tail as user space published it.
    #[inline(always)]
    pub(crate) fn sq_tail(&self) -> u32 {
        self.w.sq_hdr[header::TAIL].load(Ordering::Acquire)
    }

    /// Publishes the kernel's SQ head.
    #[inline(always)]
    pub(crate) fn store_sq_head(&self, head: u32) {
        self.w.sq_hdr[header::HEAD].store(head, Ordering::Release);
    }

    /// SQ array entry at ring position `slot` (already masked with the
    /// SQ's mask; taken modulo the layout's slots, which a masked position
    /// never exceeds, so no bounds check is needed).
    #[inline(always)]
    pub(crate) fn sq_array(&self, slot: u32) -> u32 {
        self.w.sq_hdr[header::ARRAY + (slot as usize & (SQ_SLOTS - 1))].load(Ordering::Relaxed)
    }

    /// Copies SQE slot `index` into kernel memory; `None` outside the view.
    pub(crate) fn read_sqe(&self, index: u32) -> Option<Sqe> {
        let words = self.w.sqes.get(index as usize)?;
        let mut copy = [0u64; SQE_WORDS];
        for (dst, src) in copy.iter_mut().zip(words) {
            *dst = src.load(Ordering::Relaxed);
        }
        Some(Sqe::from_words(copy))
    }

    /// The words of SQE slot `index`, for a look at a few of them (each
    /// loaded once by the caller); `None` outside the view.
    #[inline(always)]
    pub(crate) fn sqe_words(&self, index: u32) -> Option<&'a [AtomicU64; SQE_WORDS]> {
        self.w.sqes.get(index as usize)
    }

    /// The parts of the ring the submission fast path touches, cut to the
    /// ring's size once per batch: the SQ array (`sq_entries` words), the
    /// SQE slots (`sq_entries`) and the CQE slots (`cq_entries`), with the
    /// masks of the two queues (`sq_mask`, `cq_mask`), so that one bounds
    /// check per index is all the loop pays. `None` if the layout is
    /// smaller than that; the general path then does the work.
    #[inline]
    pub(crate) fn batch_view(
        &self,
        sq_entries: u32,
        cq_entries: u32,
        sq_mask: u32,
        cq_mask: u32,
    ) -> Option<BatchView<'a>> {
        let (sq, cq) = (sq_entries as usize, cq_entries as usize);
        let array = self
            .w
            .sq_hdr
            .get(header::ARRAY..header::ARRAY.checked_add(sq)?)?;
        let sqes = self.w.sqes.get(..sq)?;
        let cqes = self.w.cqes.get(..cq)?;
        Some(BatchView {
            array,
            sqes,
            cqes,
            sq_mask,
            cq_mask,
        })
    }

    /// CQ head as user space last stored it.
    #[inline(always)]
    pub(crate) fn cq_head(&self) -> u32 {
        self.w.cq_hdr[header::HEAD].load(Ordering::Acquire)
    }

    /// Writes `cqe` into CQE slot `slot` (already masked with the CQ's
    /// mask; taken modulo the layout's slots, as in `sq_array`).
    #[inline(always)]
    pub(crate) fn write_cqe(&self, slot: u32, cqe: &Cqe) {
        let words = &self.w.cqes[slot as usize & (CQ_SLOTS - 1)];
        for (dst, src) in words.iter().zip(cqe.to_words()) {
            dst.store(src, Ordering::Relaxed);
        }
    }

    /// Publishes the kernel's CQ tail (after the CQEs before it are written).
    #[inline(always)]
    pub(crate) fn store_cq_tail(&self, tail: u32) {
        self.w.cq_hdr[header::TAIL].store(tail, Ordering::Release);
    }

    /// Sets `bits` in the SQ `flags` word, leaving the others alone.
    pub(crate) fn set_sq_flags(&self, bits: u32) {
        self.w.sq_hdr[header::FLAGS].fetch_or(bits, Ordering::Release);
    }

    /// Clears `bits` in the SQ `flags` word, leaving the others alone.
    pub(crate) fn clear_sq_flags(&self, bits: u32) {
        self.w.sq_hdr[header::FLAGS].fetch_and(!bits, Ordering::Release);
    }

    /// Adds one (wrapping) to the SQ `DROPPED` counter.
    pub(crate) fn bump_dropped(&self) {
        self.w.sq_hdr[header::DROPPED].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one (wrapping) to the CQ `OVERFLOW` counter.
    pub(crate) fn bump_cq_overflow(&self) {
        self.w.cq_hdr[header::OVERFLOW].fetch_add(1, Ordering::Relaxed);
    }

    // ---- User side, for tests ----

    /// Queues `sqe` as user space does: writes SQE slot `tail & mask`, points
    /// the SQ array entry at it, then publishes the new tail. Uses the mask
    /// and entries from the header. `false` if the SQ is full.
    pub fn user_push_sqe(&self, sqe: &Sqe) -> bool {
        let entries = self.sq_header(header::ENTRIES);
        let mask = self.sq_header(header::MASK);
        let tail = load32(&self.w.sq_hdr, header::TAIL, Ordering::Relaxed);
        let head = self.sq_header(header::HEAD);
        if tail.wrapping_sub(head) >= entries {
            return false;
        }
        let slot = tail & mask;
        let start = slot as usize * SQE_WORDS;
        for (i, word) in sqe.to_words().into_iter().enumerate() {
            self.set_sqe_word(start + i, word);
        }
        store32(&self.w.sq_hdr, header::ARRAY + slot as usize, slot);
        store32(&self.w.sq_hdr, header::TAIL, tail.wrapping_add(1));
        true
    }

    /// Takes the oldest CQE as user space does; `None` if the CQ is empty.
    pub fn user_pop_cqe(&self) -> Option<Cqe> {
        let head = load32(&self.w.cq_hdr, header::HEAD, Ordering::Relaxed);
        let tail = self.cq_header(header::TAIL);
        if head == tail {
            return None;
        }
        let slot = (head & self.cq_header(header::MASK)) as usize;
        let words = self.w.cqes.get(slot)?;
        let cqe = Cqe::from_words([
            words[0].load(Ordering::Relaxed),
            words[1].load(Ordering::Relaxed),
        ]);
        store32(&self.w.cq_hdr, header::HEAD, head.wrapping_add(1));
        Some(cqe)
    }

    /// Takes every CQE in the CQ, oldest first.
    pub fn user_drain_cqes(&self) -> Vec<Cqe> {
        let mut out = Vec::new();
        // Bounded: at most one ring's worth, however the header is scribbled.
        while out.len() < CQ_SLOTS {
            match self.user_pop_cqe() {
                Some(cqe) => out.push(cqe),
                None => break,
            }
        }
        out
    }
}

/// The ring cut to its size for one batch of the submission fast path
/// ([`SharedRing::batch_view`]). The same hostile-memory rules hold: every
/// word is loaded once, positions are masked, SQE indices checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchView<'a> {
    /// The SQ array, `sq_entries` words.
    array: &'a [AtomicU32],
    /// The SQE slots, `sq_entries` of them.
    sqes: &'a [[AtomicU64; SQE_WORDS]],
    /// The CQE slots, `cq_entries` of them.
    cqes: &'a [[AtomicU64; CQE_WORDS]],
    sq_mask: u32,
    cq_mask: u32,
}

impl<'a> BatchView<'a> {
    /// The view with the SQ array and the CQE slots cut to their mask + 1
    /// entries (the same lengths: the masks are the sizes minus one), in a
    /// form the compiler can see, so that a masked position needs no
    /// bounds check in a loop in the same function. `None` if a mask does
    /// not fit its slice.
    #[inline(always)]
    pub(crate) fn masked(&self) -> Option<BatchView<'a>> {
        Some(BatchView {
            array: self.array.get(..=self.sq_mask as usize)?,
            cqes: self.cqes.get(..=self.cq_mask as usize)?,
            ..*self
        })
    }

    /// The words of the SQE whose index the SQ array holds at ring
    /// position `position` (masked); `None` if that index is past the
    /// ring.
    #[inline(always)]
    pub(crate) fn sqe_at(&self, position: u32) -> Option<&'a [AtomicU64; SQE_WORDS]> {
        let index = self.array.get((position & self.sq_mask) as usize)?;
        self.sqes.get(index.load(Ordering::Relaxed) as usize)
    }

    /// Stores once into each cache line of the CQE slots at ring positions
    /// `first..first + n` (masked), back to back, before a batch fills
    /// them. The slots are free (the caller checked the CQ has room for
    /// them), so what is stored (a zero `res`/`flags` word) is never read:
    /// the batch overwrites it before it publishes the CQ tail. Why: when
    /// the program reading the CQ runs on another CPU, these lines sit in
    /// that CPU's cache, and the batch's own CQE stores (eight per line,
    /// in order) would each wait in the store buffer for their line to
    /// move; one store per line issues all the moves together. See
    /// [`super::engine::RingEngine::set_cq_remote`].
    #[inline(always)]
    pub(crate) fn warm_cqes(&self, first: u32, n: u32) {
        const PER_LINE: u32 = 64 / (CQE_WORDS as u32 * 8);
        let mut i = 0;
        while i < n {
            let position = first.wrapping_add(i);
            if let Some(slot) = self.cqes.get((position & self.cq_mask) as usize) {
                slot[1].store(0, Ordering::Relaxed);
            }
            // To the first slot of the next line. (The CQE array starts on a
            // page, so lines hold the slots 4k..4k+3 of the layout; a CQ of
            // fewer than four entries wraps inside one line, and storing
            // into it again costs nothing more.)
            i += PER_LINE - (position & (PER_LINE - 1));
        }
    }

    /// Writes a CQE with no flags at ring position `position` (masked).
    #[inline(always)]
    pub(crate) fn write_cqe(&self, position: u32, user_data: u64, res: i32) {
        if let Some(slot) = self.cqes.get((position & self.cq_mask) as usize) {
            let words = Cqe {
                user_data,
                res,
                flags: 0,
            }
            .to_words();
            slot[0].store(words[0], Ordering::Relaxed);
            slot[1].store(words[1], Ordering::Relaxed);
        }
    }
}

fn load32(words: &[AtomicU32], word: usize, order: Ordering) -> u32 {
    words.get(word).map_or(0, |w| w.load(order))
}

fn store32(words: &[AtomicU32], word: usize, value: u32) {
    if let Some(w) = words.get(word) {
        w.store(value, Ordering::Release);
    }
}

/// The memory of one ring, owned: for host tests (here and in the backend
/// crates), where no user mapping exists.
pub struct OwnedRing {
    words: Box<RingWords>,
}

impl core::fmt::Debug for OwnedRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OwnedRing").finish_non_exhaustive()
    }
}

impl OwnedRing {
    /// Zeroed memory for a ring of up to `sq_entries` SQ and `cq_entries`
    /// CQ entries (the engine's `init_shared` fills in the header). The
    /// memory is the whole layout, whatever the sizes.
    pub fn new(sq_entries: u32, cq_entries: u32) -> Self {
        debug_assert!(sq_entries as usize <= SQ_SLOTS && cq_entries as usize <= CQ_SLOTS);
        Self {
            words: RingWords::zeroed(),
        }
    }

    /// The view the engine and the `user_*` helpers work on.
    pub fn view(&self) -> SharedRing<'_> {
        SharedRing::new(&self.words)
    }

    /// [`SharedRing::user_push_sqe`] on this ring.
    pub fn push_sqe(&self, sqe: &Sqe) -> bool {
        self.view().user_push_sqe(sqe)
    }

    /// [`SharedRing::user_pop_cqe`] on this ring.
    pub fn pop_cqe(&self) -> Option<Cqe> {
        self.view().user_pop_cqe()
    }
}

impl super::RingMemory for OwnedRing {
    fn view(&self) -> SharedRing<'_> {
        OwnedRing::view(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_checks_every_part() {
        let ring = OwnedRing::new(8, 16);
        assert!(ring.view().fits(8, 16));
        assert!(ring.view().fits(SQ_SLOTS as u32, CQ_SLOTS as u32));
        assert!(!ring.view().fits(SQ_SLOTS as u32 * 2, 16));
        assert!(!ring.view().fits(8, CQ_SLOTS as u32 * 2));
    }

    #[test]
    fn out_of_range_access_never_panics() {
        let ring = OwnedRing::new(1, 1);
        let view = ring.view();
        assert_eq!(view.sq_tail(), 0);
        assert_eq!(view.sq_array(0), 0);
        // Positions past the layout wrap (the engine masks them first).
        view.set_sq_header(header::ARRAY + 3, 9);
        assert_eq!(view.sq_array(SQ_SLOTS as u32 + 3), 9);
        assert_eq!(view.sq_array(u32::MAX), 0);
        assert!(view.read_sqe(SQ_SLOTS as u32 - 1).is_some());
        assert_eq!(view.read_sqe(SQ_SLOTS as u32), None);
        assert_eq!(view.read_sqe(u32::MAX), None);
        assert!(view.sqe_words(u32::MAX).is_none());
        view.write_cqe(u32::MAX, &Cqe::default());
        view.write_cqe(CQ_SLOTS as u32, &Cqe::default());
        assert_eq!(view.cq_header(header::TAIL), 0, "no header word written");
        view.set_sqe_word(usize::MAX, 1);
        view.set_sq_header(usize::MAX, 1);
        view.set_cq_header(HEADER_WORDS, 1);
        assert_eq!(view.sq_header(usize::MAX), 0);
        assert_eq!(view.cq_header(HEADER_WORDS), 0);
        view.bump_dropped();
        view.bump_cq_overflow();
        view.set_sq_flags(1);
        assert_eq!(view.sq_header(header::DROPPED), 1);
        assert_eq!(view.cq_header(header::OVERFLOW), 1);
        // Entries 0 in the header: the SQ counts as full.
        assert!(!view.user_push_sqe(&Sqe::default()));
        assert_eq!(view.user_pop_cqe(), None);
        // A scribbled tail: draining stops after one ring's worth.
        view.store_cq_tail(u32::MAX);
        assert_eq!(view.user_drain_cqes().len(), CQ_SLOTS);
    }

    #[test]
    fn sqe_round_trips_through_ring_memory() {
        let ring = OwnedRing::new(4, 8);
        let view = ring.view();
        view.set_sq_header(header::ENTRIES, 4);
        view.set_sq_header(header::MASK, 3);
        let sqe = Sqe {
            opcode: 22,
            flags: 0x45,
            ioprio: 0xbeef,
            fd: -100,
            off: u64::MAX,
            addr: 0x1234_5678_9abc_def0,
            len: 4096,
            op_flags: 0x8000_0001,
            user_data: 0xfeed_face_cafe_f00d,
            buf_index: 513,
            personality: 7,
            file_index: -1,
            addr3: 99,
            pad: 0xffff_0000_ffff_0000,
        };
        for i in 0..4 {
            let mut s = sqe;
            s.user_data = i;
            assert!(view.user_push_sqe(&s));
        }
        assert!(!view.user_push_sqe(&sqe), "full at 4 entries");
        assert_eq!(view.sq_tail(), 4);
        for pos in 0..4 {
            let index = view.sq_array(pos);
            assert_eq!(index, pos);
            let mut want = sqe;
            want.user_data = u64::from(pos);
            assert_eq!(view.read_sqe(index), Some(want));
        }
    }

    #[test]
    fn cqe_write_and_pop() {
        let ring = OwnedRing::new(1, 2);
        let view = ring.view();
        view.set_cq_header(header::MASK, 1);
        let a = Cqe {
            user_data: 1,
            res: -22,
            flags: 3,
        };
        view.write_cqe(0, &a);
        view.store_cq_tail(1);
        assert_eq!(view.user_pop_cqe(), Some(a));
        assert_eq!(view.user_pop_cqe(), None);
        assert_eq!(view.cq_head(), 1);
    }

    #[test]
    fn warm_cqes_stores_once_per_line_and_only_in_the_range() {
        const MARK: u64 = 0x5a5a;
        let ring = OwnedRing::new(4, 16);
        let view = ring.view();
        let fill = || {
            for slot in &view.w.cqes {
                slot[0].store(MARK, Ordering::Relaxed);
                slot[1].store(MARK, Ordering::Relaxed);
            }
        };
        let stored = || -> Vec<usize> {
            let mut out = Vec::new();
            for (i, slot) in view.w.cqes.iter().enumerate() {
                assert_eq!(slot[0].load(Ordering::Relaxed), MARK, "slot {i} word 0");
                if slot[1].load(Ordering::Relaxed) != MARK {
                    out.push(i);
                }
            }
            out
        };
        let batch = view.batch_view(4, 16, 3, 15).unwrap().masked().unwrap();
        // Positions 2..11: lines of slots 0-3, 4-7, 8-11, once each.
        fill();
        batch.warm_cqes(2, 9);
        assert_eq!(stored(), [2, 4, 8]);
        // Positions 14..21 wrap at 16: slots 14, 15, 0..5.
        fill();
        batch.warm_cqes(14, 8);
        assert_eq!(stored(), [0, 4, 14]);
        // Nothing for an empty range; never past the CQ's own slots.
        fill();
        batch.warm_cqes(5, 0);
        assert!(stored().is_empty());
        batch.warm_cqes(u32::MAX, 40);
        assert!(stored().iter().all(|&slot| slot < 16));
    }

    #[test]
    fn batch_view_masks_positions_and_checks_indices() {
        let ring = OwnedRing::new(4, 8);
        let view = ring.view();
        assert!(
            view.batch_view(SQ_SLOTS as u32 * 2, 8, 7, 7).is_none(),
            "SQ larger than the layout"
        );
        assert!(
            view.batch_view(4, CQ_SLOTS as u32 * 2, 3, 15).is_none(),
            "CQ larger than the layout"
        );
        let batch = view.batch_view(4, 8, 3, 7).unwrap().masked().unwrap();
        // Position 6 is slot 2 (masked); its array entry names SQE 1.
        view.set_sq_header(header::ARRAY + 2, 1);
        view.set_sqe_word(SQE_WORDS + 4, 0xfeed);
        let words = batch.sqe_at(6).unwrap();
        assert_eq!(words[4].load(Ordering::Relaxed), 0xfeed);
        // An index past the ring is refused, whatever the position.
        view.set_sq_header(header::ARRAY + 3, 4);
        assert!(batch.sqe_at(3).is_none());
        view.set_sq_header(header::ARRAY + 3, u32::MAX);
        assert!(batch.sqe_at(u32::MAX).is_none());
        // CQ position 9 is slot 1.
        batch.write_cqe(9, 7, -5);
        view.set_cq_header(header::MASK, 7);
        view.set_cq_header(header::HEAD, 1);
        view.store_cq_tail(2);
        let want = Cqe {
            user_data: 7,
            res: -5,
            flags: 0,
        };
        assert_eq!(view.user_pop_cqe(), Some(want));
        // A mask past its slice gives no masked view.
        let wide = view.batch_view(4, 8, 7, 7).unwrap();
        assert!(wide.masked().is_none());
    }

    #[test]
    fn flags_bits_are_set_and_cleared_alone() {
        let ring = OwnedRing::new(1, 1);
        let view = ring.view();
        view.set_sq_header(header::FLAGS, 0b101);
        view.set_sq_flags(0b010);
        assert_eq!(view.sq_header(header::FLAGS), 0b111);
        view.clear_sq_flags(0b010);
        assert_eq!(view.sq_header(header::FLAGS), 0b101);
    }
}
