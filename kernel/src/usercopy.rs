//! User pointers are claims. [`UserSlice`] is the one checked type through
//! which the kernel reads or writes user memory.
//!
//! A slice is accepted only if it lies wholly in the user half without
//! overflow. A copy walks the page tables once: [`UserSlice::pages`]
//! translates every page the range touches (present, user, and writable for
//! writes) and keeps the translations in a [`UserPages`], through which the
//! bytes then move by the direct map. So a bad page anywhere in the range
//! gives `EFAULT` with nothing copied, and the kernel never takes a fault on
//! user memory. A `UserPages` borrows the address space, and unmapping needs
//! it mutably, so its translations cannot go stale while it lives.
//!
//! User memory is shared with the program, which (or whose SQPOLL poller on
//! another CPU) may write it during the copy: every copy to or from it is a
//! volatile one (`paging::copy_volatile`, each byte moved exactly once) and
//! the kernel never makes a Rust reference to user bytes.
//!
//! Values cross as bytes through zerocopy's traits, which `abi` derives for
//! every struct of the boundary: [`read_value`] and [`write_value`] need no
//! unsafe code of their own.

use crate::arch::paging::{copy_volatile, AddressSpace, PageFlags};
use crate::arch::phys_to_virt;
use crate::mm::shared::SharedFrames;
use abi::errno::{Errno, EFAULT, EINVAL, ENOMEM};
use abi::layout::{PAGE_SIZE, USER_END};
use abi::{FromBytes, Immutable, IntoBytes};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::mem::MaybeUninit;

/// A range of user memory `[addr, addr + len)` that passed the range check.
#[derive(Clone, Copy, Debug)]
pub struct UserSlice {
    addr: u64,
    len: u64,
}

impl UserSlice {
    /// Checks that the range is inside the user half.
    #[inline(always)]
    pub fn new(addr: u64, len: u64) -> Result<Self, Errno> {
        // `addr + len <= USER_END`, asked without the sum (which may
        // overflow): two compares.
        match USER_END.checked_sub(len) {
            Some(room) if addr <= room => Ok(Self { addr, len }),
            _ => Err(EFAULT),
        }
    }

    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The range without its first `n` bytes.
    pub fn skip(&self, n: u64) -> Self {
        let n = n.min(self.len);
        Self {
            addr: self.addr + n,
            len: self.len - n,
        }
    }

    /// The first `len` bytes (`len <= self.len()`).
    pub fn prefix(&self, len: u64) -> Self {
        Self {
            addr: self.addr,
            len: len.min(self.len),
        }
    }

    /// Walks the range page by page, calling `f` with the frame of each
    /// page; stops with `EFAULT` at the first page that is not mapped for
    /// user access (and writable when `write`).
    #[inline(always)]
    fn walk(
        &self,
        space: &AddressSpace,
        write: bool,
        mut f: impl FnMut(u64) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if self.len == 0 {
            return Ok(());
        }
        // No overflow: `addr + len <= USER_END` (`new`), and `len > 0`.
        let last = (self.addr + (self.len - 1)) & !(PAGE_SIZE - 1);
        let mut page = self.addr & !(PAGE_SIZE - 1);
        let need = Self::needs(write);
        loop {
            let (frame, flags) = space.translate(page).ok_or(EFAULT)?;
            if !flags.contains(need) {
                return Err(EFAULT);
            }
            f(frame)?;
            if page == last {
                return Ok(());
            }
            page += PAGE_SIZE;
        }
    }

    /// The flags a page of the range needs: user access, and writable when
    /// `write`.
    #[inline(always)]
    fn needs(write: bool) -> PageFlags {
        if write {
            PageFlags::USER.union(PageFlags::WRITABLE)
        } else {
            PageFlags::USER
        }
    }

    /// Checks that every page of the range is mapped for user access (and
    /// writable when `write`), without copying or keeping anything.
    #[inline(never)]
    pub fn check(&self, space: &AddressSpace, write: bool) -> Result<(), Errno> {
        self.walk(space, write, |_| Ok(()))
    }

    /// Translates every page of the range in one walk (each mapped for user
    /// access, and writable when `write`, else `EFAULT`), for copies that
    /// then need no walk; the translations go into `buf`, which the
    /// caller keeps beside the result. `ENOMEM` if a range of more than
    /// [`INLINE_PAGES`] pages finds no room for its translations.
    ///
    /// Inlined, and the result is four words, so that the walk of a small
    /// range is a few instructions of the caller's with nothing zeroed or
    /// copied: it is on the path of every READ and WRITE.
    #[inline(always)]
    pub fn pages<'a>(
        &self,
        space: &'a AddressSpace,
        write: bool,
        buf: &'a mut FrameBuf,
    ) -> Result<UserPages<'a>, Errno> {
        let in_page = self.addr % PAGE_SIZE;
        if self.len != 0 && self.len <= PAGE_SIZE - in_page {
            // Inside one page (the usual READ or WRITE): one translation,
            // no loop.
            let page = self.addr - in_page;
            let (frame, flags) = space.translate(page).ok_or(EFAULT)?;
            if !flags.contains(Self::needs(write)) {
                return Err(EFAULT);
            }
            return Ok(UserPages {
                addr: self.addr,
                len: self.len,
                // Frames are page-aligned: `|` is the sum.
                direct: phys_to_virt(frame | in_page),
                // Not needed: `direct` serves every copy inside the range
                // (and one outside panics before it looks at frames).
                frames: &[],
                _space: PhantomData,
            });
        }
        let mut n = 0;
        self.walk(space, write, |frame| {
            if n < INLINE_PAGES {
                buf.inline[n] = MaybeUninit::new(frame);
            } else {
                buf.spill(frame)?;
            }
            n += 1;
            Ok(())
        })?;
        let buf: &'a FrameBuf = buf;
        let frames = match &buf.heap {
            Some(heap) => heap,
            // SAFETY: the walk wrote the first `n` entries (at most
            // `INLINE_PAGES`: with more it spilled to the heap); a
            // `MaybeUninit<u64>` has the layout of a `u64`.
            None => unsafe { core::slice::from_raw_parts(buf.inline.as_ptr().cast::<u64>(), n) },
        };
        let direct = match frames {
            // Frames are page-aligned: `|` is the sum.
            [frame] => phys_to_virt(frame | (self.addr % PAGE_SIZE)),
            _ => 0,
        };
        Ok(UserPages {
            addr: self.addr,
            len: self.len,
            direct,
            frames,
            _space: PhantomData,
        })
    }

    /// Translates every page of the range (each mapped for user access,
    /// and writable when `write`, else `EFAULT`) and keeps the frames for
    /// device I/O that outlives this call: see [`PinnedPages`]. `ENOMEM`
    /// if the list of frames finds no memory.
    pub fn pin(&self, space: &AddressSpace, write: bool) -> Result<PinnedPages, Errno> {
        let mut frames = Vec::new();
        let mut shared: Vec<Arc<SharedFrames>> = Vec::new();
        let pages = self.len.div_ceil(PAGE_SIZE) + 1;
        frames
            .try_reserve_exact(usize::try_from(pages).map_err(|_| ENOMEM)?)
            .map_err(|_| ENOMEM)?;
        let mut page = self.addr & !(PAGE_SIZE - 1);
        self.walk(space, write, |frame| {
            frames.push(frame);
            // Not reached without the SHARED bit: private frames are the
            // address space's own.
            if space
                .translate(page)
                .is_some_and(|(_, flags)| flags.contains(PageFlags::SHARED))
            {
                let held = space.shared_frames_at(page).ok_or(EFAULT)?;
                if !shared.iter().any(|f| Arc::ptr_eq(f, &held)) {
                    shared.try_reserve(1).map_err(|_| ENOMEM)?;
                    shared.push(held);
                }
            }
            page += PAGE_SIZE;
            Ok(())
        })?;
        Ok(PinnedPages {
            addr: self.addr,
            len: self.len,
            frames,
            _shared: shared,
        })
    }

    /// Copies the user bytes into `dst` (whose length must equal `len`).
    /// Nothing is copied unless the whole range is readable.
    pub fn read_into(&self, space: &AddressSpace, dst: &mut [u8]) -> Result<(), Errno> {
        assert_eq!(
            dst.len() as u64,
            self.len,
            "UserSlice::read_into length mismatch"
        );
        self.pages(space, false, &mut FrameBuf::new())?
            .read_at(0, dst);
        Ok(())
    }

    /// Copies the user bytes into a new vector, refusing more than `max`.
    pub fn read_vec(&self, space: &AddressSpace, max: u64) -> Result<Vec<u8>, Errno> {
        if self.len > max {
            return Err(EINVAL);
        }
        let mut frames = FrameBuf::new();
        let pages = self.pages(space, false, &mut frames)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(self.len as usize)
            .map_err(|_| abi::errno::ENOMEM)?;
        buf.resize(self.len as usize, 0);
        pages.read_at(0, &mut buf);
        Ok(buf)
    }

    /// Copies `src` (whose length must equal `len`) into user memory.
    /// Nothing is written unless the whole range is writable.
    pub fn write_from(&self, space: &AddressSpace, src: &[u8]) -> Result<(), Errno> {
        assert_eq!(
            src.len() as u64,
            self.len,
            "UserSlice::write_from length mismatch"
        );
        self.pages(space, true, &mut FrameBuf::new())?
            .write_at(0, src);
        Ok(())
    }
}

/// Pages whose translations a [`UserPages`] keeps without allocating: a
/// 4 KiB transfer touches at most two.
pub const INLINE_PAGES: usize = 8;

/// Room for the translations [`UserSlice::pages`] makes: inline for up to
/// [`INLINE_PAGES`] pages, on the heap for more. Kept by the caller (it is
/// not part of the result, so that a walk returns four words).
pub struct FrameBuf {
    /// The first [`INLINE_PAGES`] frames; as many as the walk found are
    /// written, the others never read (nor zeroed: for the usual one page
    /// that would cost more than the walk).
    inline: [MaybeUninit<u64>; INLINE_PAGES],
    /// All the frames, once there are more than [`INLINE_PAGES`].
    heap: Option<Vec<u64>>,
}

impl FrameBuf {
    #[inline(always)]
    pub fn new() -> Self {
        Self {
            inline: [MaybeUninit::uninit(); INLINE_PAGES],
            heap: None,
        }
    }

    /// Adds the frame of page [`INLINE_PAGES`] or later.
    #[cold]
    #[inline(never)]
    fn spill(&mut self, frame: u64) -> Result<(), Errno> {
        let heap = match &mut self.heap {
            Some(heap) => heap,
            None => {
                // Grown as the walk goes, so a huge claimed range that is
                // not mapped fails with EFAULT, not ENOMEM.
                let mut heap = Vec::new();
                heap.try_reserve(2 * INLINE_PAGES).map_err(|_| ENOMEM)?;
                // SAFETY: the walk filled the inline room before it
                // spilled; `MaybeUninit<u64>` has the layout of `u64`.
                let inline = unsafe {
                    core::slice::from_raw_parts(self.inline.as_ptr().cast::<u64>(), INLINE_PAGES)
                };
                heap.extend_from_slice(inline);
                self.heap.insert(heap)
            }
        };
        heap.try_reserve(1).map_err(|_| ENOMEM)?;
        heap.push(frame);
        Ok(())
    }
}

impl Default for FrameBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// A user range whose pages were all translated and checked by one walk
/// ([`UserSlice::pages`]). It borrows the address space, so the mappings
/// cannot change while it lives, and copies through it cannot fail.
#[derive(Clone, Copy)]
pub struct UserPages<'s> {
    addr: u64,
    len: u64,
    /// The direct-map address of the first byte when the range lies in
    /// one page, else 0.
    direct: u64,
    /// The frame of each page of the range, in order.
    frames: &'s [u64],
    _space: PhantomData<&'s AddressSpace>,
}

impl UserPages<'_> {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The direct-map address of `[offset, offset + len)` of the range if
    /// that lies inside the range and the range in one page (a READ or
    /// WRITE of up to a page that does not cross one: the usual one), else
    /// `None`. No panics on this path: the general one checks again.
    #[inline(always)]
    fn one_piece(&self, offset: u64, len: usize) -> Option<u64> {
        let len = len as u64;
        if self.direct == 0 || offset > self.len || len > self.len - offset {
            return None;
        }
        // No overflow: the range lies in one page of the direct map.
        Some(self.direct + offset)
    }

    /// Calls `f(direct-map address, offset into the buffer, length)` for
    /// each piece of `[offset, offset + len)` of the range that lies in one
    /// page. Panics if that is not inside the range (a kernel bug).
    fn pieces(&self, offset: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) {
        let end = offset.checked_add(len as u64);
        assert!(
            end.is_some_and(|end| end <= self.len),
            "user copy of {len} bytes at {offset} outside a range of {}",
            self.len
        );
        let frames = self.frames;
        let first_page = self.addr / PAGE_SIZE;
        let mut at = self.addr + offset;
        let mut done = 0;
        while done < len {
            let in_page = at % PAGE_SIZE;
            let take = ((PAGE_SIZE - in_page) as usize).min(len - done);
            let frame = frames[(at / PAGE_SIZE - first_page) as usize];
            f(phys_to_virt(frame + in_page), done, take);
            done += take;
            at += take as u64;
        }
    }

    /// Copies the user bytes at `offset` into `dst`. Inlined for a copy
    /// inside one page; the others take [`UserPages::pieces`].
    #[inline(always)]
    pub fn read_at(&self, offset: u64, dst: &mut [u8]) {
        match self.one_piece(offset, dst.len()) {
            // SAFETY: as in `read_at_pieces`, for the one piece.
            Some(user) => unsafe { copy_piece(dst.as_mut_ptr(), user as *const u8, dst.len()) },
            // SAFETY: the fields of `self`.
            None => unsafe { read_at_pieces(self.addr, self.len, self.frames, offset, dst) },
        }
    }

    /// Copies `src` into the user bytes at `offset`. Inlined for a copy
    /// inside one page; the others take [`UserPages::pieces`].
    #[inline(always)]
    pub fn write_at(&self, offset: u64, src: &[u8]) {
        match self.one_piece(offset, src.len()) {
            // SAFETY: as in `write_at_pieces`, for the one piece.
            Some(user) => unsafe { copy_piece(user as *mut u8, src.as_ptr(), src.len()) },
            // SAFETY: the fields of `self`.
            None => unsafe { write_at_pieces(self.addr, self.len, self.frames, offset, src) },
        }
    }
}

/// The general [`UserPages::read_at`], with the pages' fields as
/// arguments: the inlined fast path then keeps them in registers (no
/// struct made in memory for this cold call).
///
/// # Safety
/// `addr`, `len` and `frames` are those of a [`UserPages`] alive for the
/// call.
#[inline(never)]
unsafe fn read_at_pieces(addr: u64, len: u64, frames: &[u64], offset: u64, dst: &mut [u8]) {
    let pages = UserPages {
        addr,
        len,
        direct: 0,
        frames,
        _space: PhantomData,
    };
    let base = dst.as_mut_ptr();
    pages.pieces(offset, dst.len(), |user, at, n| {
        // SAFETY: `user..user + n` lies in a frame mapped for user
        // access in the borrowed address space (checked by the walk),
        // which the direct map covers; `at + n <= dst.len()`. User
        // space may write the bytes meanwhile: the copy is volatile.
        unsafe { copy_volatile(base.add(at), user as *const u8, n) }
    });
}

/// The general [`UserPages::write_at`], with the pages' fields as
/// arguments: the inlined fast path then keeps them in registers (no
/// struct made in memory for this cold call).
///
/// # Safety
/// `addr`, `len` and `frames` are those of a [`UserPages`] alive for the
/// call.
#[inline(never)]
unsafe fn write_at_pieces(addr: u64, len: u64, frames: &[u64], offset: u64, src: &[u8]) {
    let pages = UserPages {
        addr,
        len,
        direct: 0,
        frames,
        _space: PhantomData,
    };
    let base = src.as_ptr();
    pages.pieces(offset, src.len(), |user, at, n| {
        // SAFETY: `user..user + n` lies in a frame mapped writable for
        // user access (checked by the walk) in the direct map;
        // `at + n <= src.len()`; kernel and user memory do not overlap.
        unsafe { copy_volatile(user as *mut u8, base.add(at), n) }
    });
}

/// `copy_volatile` for the one-piece copies of [`UserPages`]: when the
/// destination and the length are multiples of 8 (a page-aligned READ or
/// WRITE of whole words, the usual one), only the quadword move, without
/// the head and tail arithmetic; else `copy_volatile`. Each byte still
/// moves exactly once, through `asm!` the compiler cannot split or repeat.
///
/// # Safety
/// As `copy_volatile`: `src..src + len` readable, `dst..dst + len`
/// writable, both mapped for the whole copy, not overlapping.
#[inline(always)]
unsafe fn copy_piece(dst: *mut u8, src: *const u8, len: usize) {
    if (dst as usize | len) & 7 == 0 {
        // SAFETY: the caller guarantees both ranges; `8 * (len / 8) ==
        // len`. The direction flag is clear on entry to `asm!` (Rust's
        // ABI) and `rep movs` leaves it so.
        unsafe {
            core::arch::asm!(
                "rep movsq",
                inout("rcx") len / 8 => _,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags),
            );
        }
    } else {
        // SAFETY: the caller's guarantees are `copy_volatile`'s.
        unsafe { copy_volatile(dst, src, len) }
    }
}

/// A user range translated for device I/O, owning its frame list so that
/// it can outlive the call that made it (the I/O finishes later, in an
/// interrupt).
///
/// Frames of shared mappings (ring memory) are held here by reference, so
/// they stay allocated until this is dropped. The process's own frames are
/// freed only with its address space, and the caller keeps that from
/// happening while the I/O is in flight: a process's exit waits until its
/// I/O in flight is done (`block::InFlight`) before it drops the address
/// space. (Nothing else unmaps private pages today; an `munmap` must wait
/// for the same count.)
pub struct PinnedPages {
    addr: u64,
    len: u64,
    frames: Vec<u64>,
    _shared: Vec<Arc<SharedFrames>>,
}

impl PinnedPages {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The user address of the first byte.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Calls `f(physical address, offset into the range, length)` for each
    /// piece of `[offset, offset + len)` that lies in one page. Panics if
    /// that is not inside the range (a kernel bug).
    pub fn pieces(&self, offset: u64, len: u64, mut f: impl FnMut(u64, u64, u64)) {
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.len),
            "pinned range of {} bytes has no [{offset}, +{len})",
            self.len
        );
        let first_page = self.addr / PAGE_SIZE;
        let mut at = self.addr + offset;
        let mut done = 0;
        while done < len {
            let in_page = at % PAGE_SIZE;
            let take = (PAGE_SIZE - in_page).min(len - done);
            let frame = self.frames[(at / PAGE_SIZE - first_page) as usize];
            f(frame + in_page, done, take);
            done += take;
            at += take;
        }
    }

    /// Copies the user bytes at `offset` into `dst`.
    pub fn read_at(&self, offset: u64, dst: &mut [u8]) {
        let base = dst.as_mut_ptr();
        self.pieces(offset, dst.len() as u64, |phys, at, n| {
            // SAFETY: the frame is one of the range's, kept allocated as
            // the type's doc says, and the direct map covers it; the piece
            // lies in it and `at + n <= dst.len()`. The copy is volatile:
            // the program may write its buffer meanwhile.
            unsafe {
                copy_volatile(
                    base.add(at as usize),
                    phys_to_virt(phys) as *const u8,
                    n as usize,
                )
            }
        });
    }

    /// Copies `src` into the user bytes at `offset`.
    pub fn write_at(&self, offset: u64, src: &[u8]) {
        let base = src.as_ptr();
        self.pieces(offset, src.len() as u64, |phys, at, n| {
            // SAFETY: as in `read_at`; the frames were checked writable
            // when a write was asked for (`pin(.., true)`), which is the
            // only way a caller gets to write back into them.
            unsafe {
                copy_volatile(
                    phys_to_virt(phys) as *mut u8,
                    base.add(at as usize),
                    n as usize,
                )
            }
        });
    }
}

/// Reads one `T` from user memory.
pub fn read_value<T: FromBytes + IntoBytes>(space: &AddressSpace, addr: u64) -> Result<T, Errno> {
    let mut value = T::new_zeroed();
    let bytes = value.as_mut_bytes();
    UserSlice::new(addr, bytes.len() as u64)?.read_into(space, bytes)?;
    Ok(value)
}

/// Writes one `T` to user memory.
pub fn write_value<T: IntoBytes + Immutable>(
    space: &AddressSpace,
    addr: u64,
    value: &T,
) -> Result<(), Errno> {
    let bytes = value.as_bytes();
    UserSlice::new(addr, bytes.len() as u64)?.write_from(space, bytes)
}
