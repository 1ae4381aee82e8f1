//! 4-level page tables: the kernel's tables from boot and one address space
//! per process whose lower half is its own and whose upper half is shared.
//!
//! The kernel half is PML4 entries 256..512: the direct map of physical
//! memory (entry 256), the MMIO windows (entry 257, see [`map_mmio`]) and
//! the kernel image (entry 511). The PML4 entries are set up at boot
//! (entry 257 by [`init_mmio`], before the first process) and never changed
//! afterwards, so copying them into a new PML4 shares the whole kernel half
//! for good, including MMIO windows mapped later below entry 257.

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
        /// Write-through (PWT); with `NO_CACHE`, the page is uncached.
        const WRITE_THROUGH = 1 << 3;
        /// Cache disable (PCD).
        const NO_CACHE = 1 << 4;
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

/// PML4 slot of the MMIO windows.
const MMIO_SLOT: usize = 257;
/// Where the MMIO windows start: the first address of [`MMIO_SLOT`].
const MMIO_BASE: u64 = 0xFFFF_8000_0000_0000 | ((MMIO_SLOT as u64) << 39);
/// Bytes of address space for MMIO windows (one PML4 slot).
const MMIO_SPACE: u64 = 1 << 39;
const HUGE_PAGE: u64 = 2 << 20;
/// Largest window one [`map_mmio`] maps: a device reporting a larger BAR
/// cannot make the kernel spend its frames on page tables for it.
const MMIO_WINDOW_MAX: u64 = 1 << 30;

/// The MMIO windows mapped so far: `(phys, len, virt)` each, never unmapped,
/// and the next free address.
struct MmioSpace {
    next: u64,
    windows: Vec<(u64, u64, u64)>,
}

static MMIO: spin::Mutex<MmioSpace> = spin::Mutex::new(MmioSpace {
    next: MMIO_BASE,
    windows: Vec::new(),
});

/// Creates the page-directory-pointer table of the MMIO windows' PML4 slot.
/// Must run before the first process's address space is made (it copies
/// the kernel half's PML4 entries once); [`map_mmio`] refuses to work
/// before. Idempotent.
pub fn init_mmio() -> Result<(), Errno> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _guard = MMIO.lock();
        let entry = &mut table(kernel_pml4())[MMIO_SLOT];
        if *entry & PageFlags::PRESENT.bits() == 0 {
            let pdpt = frames::alloc_zeroed().ok_or(errno::ENOMEM)?;
            *entry = pdpt | (PageFlags::PRESENT | PageFlags::WRITABLE).bits();
        }
        Ok(())
    })
}

/// Maps the device memory `phys..phys + len` into the kernel half,
/// uncached (PCD | PWT), read/write, no execute, and returns the virtual
/// address of `phys`. Works for any physical address the CPU can reach
/// (BARs above 4 GiB too, which the direct map does not cover). Mappings
/// are permanent: a range inside one mapped before returns the same
/// window. Ranges with 2 MiB aligned ends get 2 MiB pages.
///
/// Errors: `EINVAL` for an empty or wrapping range or one over 1 GiB,
/// `ENXIO` before
/// [`init_mmio`], `ENOMEM` when page tables or address space run out.
pub fn map_mmio(phys: u64, len: u64) -> Result<u64, Errno> {
    let end = phys.checked_add(len).ok_or(errno::EINVAL)?;
    if len == 0 || len > MMIO_WINDOW_MAX || end > 1 << 52 {
        return Err(errno::EINVAL);
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut space = MMIO.lock();
        if table(kernel_pml4())[MMIO_SLOT] & PageFlags::PRESENT.bits() == 0 {
            return Err(errno::ENXIO);
        }
        if let Some(&(base, _, virt)) = space
            .windows
            .iter()
            .find(|&&(base, size, _)| base <= phys && end <= base + size)
        {
            return Ok(virt + (phys - base));
        }
        space.windows.try_reserve(1).map_err(|_| errno::ENOMEM)?;
        let huge = phys.is_multiple_of(HUGE_PAGE) && len.is_multiple_of(HUGE_PAGE);
        let first = phys & !(PAGE_SIZE - 1);
        let size = end.div_ceil(PAGE_SIZE) * PAGE_SIZE - first;
        // Each window starts on a 2 MiB boundary so that huge pages fit.
        let virt = space.next.next_multiple_of(HUGE_PAGE);
        let virt_end = virt
            .checked_add(size)
            .filter(|&e| e <= MMIO_BASE + MMIO_SPACE)
            .ok_or(errno::ENOMEM)?;
        let flags = PageFlags::PRESENT
            | PageFlags::WRITABLE
            | PageFlags::NO_CACHE
            | PageFlags::WRITE_THROUGH
            | PageFlags::NO_EXECUTE;
        let step = if huge { HUGE_PAGE } else { PAGE_SIZE };
        let mut offset = 0;
        while offset < size {
            map_kernel_page(virt + offset, first + offset, flags, huge)?;
            offset += step;
        }
        // Pages mapped before a failure stay mapped but unused (the
        // address space is not reused): harmless, and no stale entries
        // exist in any TLB since these addresses were never mapped before.
        space.next = virt_end;
        space.windows.push((first, size, virt));
        Ok(virt + (phys - first))
    })
}

/// Maps one kernel-half page (4 KiB, or 2 MiB when `huge`) at a fresh
/// address `va` inside the MMIO slot, allocating page tables as needed.
fn map_kernel_page(va: u64, phys: u64, flags: PageFlags, huge: bool) -> Result<(), Errno> {
    let mut table_phys = kernel_pml4();
    let last = if huge { 1 } else { 0 };
    for level in (last + 1..=3).rev() {
        let entry = &mut table(table_phys)[index(va, level)];
        if *entry & PageFlags::PRESENT.bits() == 0 {
            let next = frames::alloc_zeroed().ok_or(errno::ENOMEM)?;
            *entry = next | (PageFlags::PRESENT | PageFlags::WRITABLE).bits();
        }
        table_phys = *entry & ADDR_MASK;
    }
    let leaf = &mut table(table_phys)[index(va, last)];
    let huge_bit = if huge {
        PageFlags::HUGE
    } else {
        PageFlags::empty()
    };
    *leaf = phys | (flags | huge_bit).bits();
    Ok(())
}
