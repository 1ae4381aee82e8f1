//! 4-level page tables: the kernel's tables from boot and one address space
//! per process whose lower half is its own and whose upper half is shared.
//!
//! The kernel half is PML4 entries 256..512: the direct map of physical
//! memory (entry 256) and the kernel image (entry 511), both set up at boot
//! and never changed afterwards, so copying those entries into a new PML4
//! shares the whole kernel half for good.

use super::phys_to_virt;
use crate::mm::frames;
use crate::mm::shared::SharedFrames;
use abi::errno;
use abi::errno::Errno;
use abi::layout::PAGE_SIZE;
use alloc::sync::Arc;
use alloc::vec::Vec;
use bitflags::bitflags;

bitflags! {
    /// Page-table entry bits used by this kernel.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PageFlags: u64 {
        const PRESENT = 1;
        const WRITABLE = 1 << 1;
        const USER = 1 << 2;
        const HUGE = 1 << 7;
        /// Software bit (ignored by the MMU): the leaf's frame is not the
        /// address space's but [`SharedFrames`] it holds a reference to.
        const SHARED = 1 << 9;
        const NO_EXECUTE = 1 << 63;
    }
}

const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
const ENTRIES: usize = 512;
/// First PML4 slot of the kernel half.
const KERNEL_HALF: usize = 256;

unsafe extern "C" {
    static boot_pml4: [u64; ENTRIES];
}

/// Physical address of the kernel's own PML4 (the boot one).
pub fn kernel_pml4() -> u64 {
    // `boot_pml4` lives in the identity-linked boot section, so its link
    // address is its physical one.
    core::ptr::addr_of!(boot_pml4) as u64
}

fn table(phys: u64) -> &'static mut [u64; ENTRIES] {
    // SAFETY: callers pass the physical address of a page-table frame that
    // this module allocated (or the boot PML4); the direct map covers it and
    // page tables are only modified with the owning structure borrowed
    // mutably, so no other reference to this frame is live.
    unsafe { &mut *(phys_to_virt(phys) as *mut [u64; ENTRIES]) }
}

/// Drops the identity mapping of the first 4 GiB that boot needed.
pub fn remove_identity_map() {
    table(kernel_pml4())[0] = 0;
    flush_all();
}

/// Flushes the whole TLB of this CPU (non-global entries).
pub fn flush_all() {
    let (frame, flags) = x86_64::registers::control::Cr3::read_raw();
    // SAFETY: reloading CR3 with its own value changes no mapping.
    unsafe { x86_64::registers::control::Cr3::write_raw(frame, flags) };
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * level)) & 0x1FF) as usize
}

/// A process's address space: its PML4 and the page tables and frames of
/// its user half, all freed when it is dropped. Frames mapped with
/// [`AddressSpace::map_shared`] are not its own: it holds a reference to
/// them for as long as they are mapped and drops it after the mapping is
/// gone.
pub struct AddressSpace {
    pml4: u64,
    /// Shared mappings: user address and the frames mapped there.
    shared: Vec<(u64, Arc<SharedFrames>)>,
}

impl AddressSpace {
    /// A new address space with an empty user half.
    pub fn new() -> Result<Self, Errno> {
        let pml4 = frames::alloc_zeroed().ok_or(errno::ENOMEM)?;
        let kernel = table(kernel_pml4());
        let new = table(pml4);
        new[KERNEL_HALF..].copy_from_slice(&kernel[KERNEL_HALF..]);
        Ok(Self {
            pml4,
            shared: Vec::new(),
        })
    }

    /// Physical address of the PML4 (the CR3 value).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    /// Maps the user page at `va` to the frame `phys`. Takes ownership of
    /// the frame: it is freed with the address space.
    pub fn map_user(&mut self, va: u64, phys: u64, flags: PageFlags) -> Result<(), Errno> {
        debug_assert!(va < abi::layout::USER_END && va.is_multiple_of(4096));
        let mut table_phys = self.pml4;
        for level in (1..=3).rev() {
            let entry = &mut table(table_phys)[index(va, level)];
            if *entry & PageFlags::PRESENT.bits() == 0 {
                let next = frames::alloc_zeroed().ok_or(errno::ENOMEM)?;
                *entry = next | (PageFlags::PRESENT | PageFlags::WRITABLE | PageFlags::USER).bits();
            }
            table_phys = *entry & ADDR_MASK;
        }
        let leaf = &mut table(table_phys)[index(va, 0)];
        if *leaf & PageFlags::PRESENT.bits() != 0 {
            return Err(errno::EEXIST);
        }
        *leaf = phys | (flags | PageFlags::PRESENT | PageFlags::USER).bits();
        Ok(())
    }

    /// The page table (level 0) that holds the entry of the user address
    /// `va`, if every level above it is present.
    fn leaf_table(&self, va: u64) -> Option<u64> {
        if va >= abi::layout::USER_END {
            return None;
        }
        let mut table_phys = self.pml4;
        for level in (1..=3).rev() {
            let entry = table(table_phys)[index(va, level)];
            if entry & PageFlags::PRESENT.bits() == 0 {
                return None;
            }
            table_phys = entry & ADDR_MASK;
        }
        Some(table_phys)
    }

    /// Maps `frames` at the user address `va` (page-aligned), read/write,
    /// no execute. The address space keeps a reference to them until
    /// [`AddressSpace::unmap_shared`] or its end, and never frees them
    /// itself. `EEXIST` if any page of the range is mapped already; on any
    /// error nothing is mapped.
    pub fn map_shared(&mut self, va: u64, frames: Arc<SharedFrames>) -> Result<(), Errno> {
        let pages = frames.pages();
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| va.checked_add(len))
            .ok_or(errno::EFAULT)?;
        if end > abi::layout::USER_END {
            return Err(errno::EFAULT);
        }
        if (0..pages).any(|i| self.translate(va + i * PAGE_SIZE).is_some()) {
            return Err(errno::EEXIST);
        }
        self.shared.try_reserve(1).map_err(|_| errno::ENOMEM)?;
        let flags = PageFlags::WRITABLE | PageFlags::NO_EXECUTE | PageFlags::SHARED;
        for i in 0..pages {
            let page = va + i * PAGE_SIZE;
            if let Err(e) = self.map_user(page, frames.phys() + i * PAGE_SIZE, flags) {
                for done in 0..i {
                    self.clear_leaf(va + done * PAGE_SIZE);
                }
                return Err(e);
            }
        }
        self.shared.push((va, frames));
        Ok(())
    }

    /// Removes the shared mapping that [`AddressSpace::map_shared`] made at
    /// `va` and returns the address space's reference to its frames (which
    /// the caller drops, freeing them if it was the last). User space can
    /// no longer reach them when this returns. `EINVAL` if no shared
    /// mapping starts at `va`.
    pub fn unmap_shared(&mut self, va: u64) -> Result<Arc<SharedFrames>, Errno> {
        let index = self
            .shared
            .iter()
            .position(|(at, _)| *at == va)
            .ok_or(errno::EINVAL)?;
        let (_, frames) = self.shared.swap_remove(index);
        for i in 0..frames.pages() {
            self.clear_leaf(va + i * PAGE_SIZE);
        }
        Ok(frames)
    }

    /// Clears the leaf entry of the user page at `va`, if present, and
    /// flushes it from the TLB. Page tables stay.
    ///
    /// Only this CPU's TLB is flushed, and that is enough: a process has
    /// one thread, and this runs in it (its syscalls, or its exit); the
    /// only other tasks that run on its page tables are its SQPOLL pollers,
    /// which reach user memory only through the direct map (`translate` +
    /// `phys_to_virt`), never through user addresses; and CR3 is reloaded
    /// whenever a CPU switches address spaces (no PCID, no lazy switching),
    /// so a CPU that ran this space earlier holds none of its entries. User
    /// threads, PCIDs or lazy TLB switching would each need a cross-CPU
    /// shootdown here.
    fn clear_leaf(&mut self, va: u64) {
        let Some(table_phys) = self.leaf_table(va) else {
            return;
        };
        let leaf = &mut table(table_phys)[index(va, 0)];
        if *leaf & PageFlags::PRESENT.bits() != 0 {
            *leaf = 0;
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va));
        }
    }

    /// The shared frames mapped over the user address `va` (a mapping
    /// [`AddressSpace::map_shared`] made), to hold while a device works on
    /// them.
    pub fn shared_frames_at(&self, va: u64) -> Option<Arc<SharedFrames>> {
        self.shared
            .iter()
            .find(|(at, frames)| va >= *at && va - at < frames.pages() * PAGE_SIZE)
            .map(|(_, frames)| frames.clone())
    }

    /// The frame and flags of the user page containing `va`, if mapped.
    pub fn translate(&self, va: u64) -> Option<(u64, PageFlags)> {
        let leaf = table(self.leaf_table(va)?)[index(va, 0)];
        if leaf & PageFlags::PRESENT.bits() == 0 {
            return None;
        }
        Some((leaf & ADDR_MASK, PageFlags::from_bits_truncate(leaf)))
    }
}

/// Copies `len` bytes from `src` to `dst` where one side is memory that
/// someone else may write meanwhile (user pages, which the program or an
/// SQPOLL poller on another CPU touches during the copy). One `rep movs`
/// sequence reads and writes each byte exactly once, and, being `asm!`, is
/// opaque to the compiler, which can neither drop, repeat nor split the
/// accesses as it may for plain memory it believes no one else writes:
/// the volatile copy Asterinas' `VmReader`/`VmWriter` make (also with
/// `rep movs`). As fast as `memcpy`, which uses the same instructions: the
/// destination is aligned to 8 bytes, then quadwords move, then the tail.
///
/// # Safety
/// `src..src + len` must be readable and `dst..dst + len` writable, both
/// mapped for the whole copy, and the ranges must not overlap. Bytes that
/// another party writes during the copy may arrive as either value.
#[inline]
pub unsafe fn copy_volatile(dst: *mut u8, src: *const u8, len: usize) {
    let head = (dst as usize).wrapping_neg() & 7;
    let head = head.min(len);
    let words = (len - head) / 8;
    let tail = (len - head) % 8;
    // SAFETY: the caller guarantees both ranges; `head + 8 * words + tail
    // == len`, so the three moves stay inside them. The direction flag is
    // clear on entry to `asm!` (Rust's ABI) and `rep movs` leaves it so.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            "mov rcx, {words}",
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            words = in(reg) words,
            tail = in(reg) tail,
            inout("rcx") head => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
}

/// Loads `root` into CR3 unless it is already there.
pub fn activate_root(root: u64) {
    let (current, _) = x86_64::registers::control::Cr3::read_raw();
    if current.start_address().as_u64() != root {
        // SAFETY: `root` is a PML4 whose kernel half is the shared kernel
        // half, so the code and stack in use stay mapped.
        unsafe {
            x86_64::registers::control::Cr3::write_raw(
                x86_64::structures::paging::PhysFrame::containing_address(x86_64::PhysAddr::new(
                    root,
                )),
                0,
            )
        };
    }
}

fn free_level(table_phys: u64, level: u32) {
    for &entry in table(table_phys).iter() {
        if entry & PageFlags::PRESENT.bits() == 0 {
            continue;
        }
        let phys = entry & ADDR_MASK;
        if level > 0 {
            free_level(phys, level - 1);
        } else if entry & PageFlags::SHARED.bits() == 0 {
            // Shared frames are not the address space's: its reference
            // goes with `AddressSpace::shared`, after the tables.
            frames::free(phys);
        }
    }
    frames::free(table_phys);
}

impl Drop for AddressSpace {
    /// Frees the user half's tables and own frames, then (when the fields
    /// drop) its references to shared frames: no mapping of them is left
    /// by then, and this CPU no longer runs on these tables.
    fn drop(&mut self) {
        // Never free the tables of the address space the CPU is using (an
        // exiting process's own). Any other stays loaded: a spawn that
        // fails drops the child's half-built space in the parent's
        // syscall, which returns to the parent's user half.
        let (current, _) = x86_64::registers::control::Cr3::read_raw();
        if current.start_address().as_u64() == self.pml4 {
            activate_root(kernel_pml4());
        }
        let root = table(self.pml4);
        for &entry in &root[..KERNEL_HALF] {
            if entry & PageFlags::PRESENT.bits() != 0 {
                free_level(entry & ADDR_MASK, 2);
            }
        }
        frames::free(self.pml4);
    }
}
