//! The x86_64 doorway: everything machine-specific lives below this module
//! and the rest of the kernel uses only what is re-exported here.

pub mod apic;
mod boot;
pub mod bootinfo;
pub mod context;
pub mod cpu;
pub mod framebuffer;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod irq;
pub mod keyboard;
pub mod paging;
#[allow(
    dead_code,
    reason = "the PCI API for drivers; each driver uses part of it"
)]
pub mod pci;
pub mod serial;
pub mod smp;
pub mod syscall;

pub use boot::{MULTIBOOT2_MAGIC, PVH_MAGIC};
pub use bootinfo::{BootInfo, PhysRange};

/// Where all physical memory (the first 4 GiB) is mapped in the kernel half.
pub const PHYS_OFFSET: u64 = 0xFFFF_8000_0000_0000;
/// How much physical memory the direct map covers.
pub const DIRECT_MAP_SIZE: u64 = 4 << 30;

/// The direct-map address of a physical address.
#[inline]
pub const fn phys_to_virt(phys: u64) -> u64 {
    phys + PHYS_OFFSET
}

/// The physical address of a direct-map address.
#[inline]
pub const fn virt_to_phys(virt: u64) -> u64 {
    virt - PHYS_OFFSET
}

unsafe extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
}

/// Where the kernel image (code, data, bss) lies in physical memory.
pub fn kernel_image() -> PhysRange {
    // Only the addresses of the linker-defined symbols are taken.
    PhysRange {
        start: core::ptr::addr_of!(__kernel_phys_start) as u64,
        end: core::ptr::addr_of!(__kernel_phys_end) as u64,
    }
}

/// Defines the kernel's handlers for what the machine starts, under the
/// link names that the entry code of this module calls:
/// - `boot(magic, info) -> !`: the boot CPU, in long mode on the boot stack,
///   with the boot protocol's magic and the physical address of its
///   information;
/// - `ap(cpu) -> !`: application processor `cpu`, once it is set up;
/// - `syscall(&mut SyscallFrame)`: a `syscall` from user mode, interrupts
///   off;
/// - `trap(&mut TrapFrame)`: an interrupt or exception.
///
/// The composition layer (`main.rs`) uses it once. This way arch names no
/// module above it, and the signatures stay here, beside their callers.
macro_rules! entry_points {
    (boot: $boot:path, ap: $ap:path, syscall: $syscall:path, trap: $trap:path $(,)?) => {
        #[allow(unsafe_code, reason = "the link names that arch's entry code calls")]
        const _: () = {
            #[unsafe(no_mangle)]
            extern "C" fn kernel_boot_entry(magic: u32, info: u32) -> ! {
                $boot(magic, info)
            }
            #[unsafe(no_mangle)]
            extern "C" fn kernel_ap_entry(cpu: usize) -> ! {
                $ap(cpu)
            }
            #[unsafe(no_mangle)]
            extern "C" fn kernel_syscall_entry(frame: &mut $crate::arch::syscall::SyscallFrame) {
                $syscall(frame)
            }
            #[unsafe(no_mangle)]
            extern "C" fn kernel_trap_entry(frame: &mut $crate::arch::idt::TrapFrame) {
                $trap(frame)
            }
        };
    };
}
pub(crate) use entry_points;

/// CPU set-up of the boot CPU that needs no memory allocator.
pub fn init_cpu() {
    gdt::init(0);
    idt::init();
    cpu::init(0);
    syscall::init();
}
