//! 4-level page tables: the kernel's tables from boot and one address space
//! per process whose lower half is its own and whose upper half is shared.
//!
//! The kernel half is PML4 entries 256..512: the direct map of physical
//! memory (entry 256) and the kernel image (entry 511), both set up at boot
//! and never changed afterwards, so copying those entries into a new PML4
//! shares the whole kernel half for good.

use super::phys_to_virt;
use crate::mm::frames;
use abi::errno;
use abi::errno::Errno;
use bitflags::bitflags;

bitflags! {
    /// Page-table entry bits used by this kernel.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PageFlags: u64 {
        const PRESENT = 1;
        const WRITABLE = 1 << 1;
        const USER = 1 << 2;
        const HUGE = 1 << 7;
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
/// its user half, all freed when it is dropped.
pub struct AddressSpace {
    pml4: u64,
}

impl AddressSpace {
    /// A new address space with an empty user half.
    pub fn new() -> Result<Self, Errno> {
        let pml4 = frames::alloc_zeroed().ok_or(errno::ENOMEM)?;
        let kernel = table(kernel_pml4());
        let new = table(pml4);
        new[KERNEL_HALF..].copy_from_slice(&kernel[KERNEL_HALF..]);
        Ok(Self { pml4 })
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

    /// Removes the mapping of the user page at `va` and returns its frame,
    /// which the caller now owns (and must free only after this returns:
    /// the TLB entry is gone by then). Page tables stay.
    ///
    /// Only this CPU's TLB is flushed, and that is enough: a process has
    /// one thread; the only other tasks that run on its page tables are its
    /// SQPOLL pollers, which reach user memory only through the direct map
    /// (`translate` + `phys_to_virt`), never through user addresses; and
    /// CR3 is reloaded whenever a CPU switches address spaces (no PCID, no
    /// lazy switching), so a CPU that ran this space earlier holds none of
    /// its entries. User threads, PCIDs or lazy TLB switching would each
    /// need a cross-CPU shootdown here.
    pub fn unmap_user(&mut self, va: u64) -> Option<u64> {
        let leaf = &mut table(self.leaf_table(va)?)[index(va, 0)];
        if *leaf & PageFlags::PRESENT.bits() == 0 {
            return None;
        }
        let frame = *leaf & ADDR_MASK;
        *leaf = 0;
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va));
        Some(frame)
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
        } else {
            frames::free(phys);
        }
    }
    frames::free(table_phys);
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // Never free the tables of the address space the CPU is using.
        activate_root(kernel_pml4());
        let root = table(self.pml4);
        for &entry in &root[..KERNEL_HALF] {
            if entry & PageFlags::PRESENT.bits() != 0 {
                free_level(entry & ADDR_MASK, 2);
            }
        }
        frames::free(self.pml4);
    }
}
