//! Segments: the GDT (kernel and user code/data, the TSS) and the TSS with
//! its interrupt stacks for double faults and NMIs.
//!
//! Selector layout is dictated by `syscall`/`sysret`: STAR names the kernel
//! code selector (data follows it) and a user base from which sysret takes
//! data at +8 and 64-bit code at +16.

use core::cell::UnsafeCell;

pub const KERNEL_CODE: u16 = 0x08;
pub const KERNEL_DATA: u16 = 0x10;
/// STAR user base: sysret uses base+8 for SS and base+16 for CS.
pub const USER_BASE: u16 = 0x10;
pub const USER_DATA: u16 = 0x18 | 3;
pub const USER_CODE: u16 = 0x20 | 3;
const TSS_SELECTOR: u16 = 0x28;

/// IST slot (1-based in the IDT) used by the double-fault handler.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot used by the NMI handler.
pub const IST_NMI: u8 = 2;
const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, packed(4))]
struct TaskStateSegment {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

/// One CPU's segment state. Only written during `init` and through
/// [`set_rsp0`]; the CPU reads it.
struct Segments {
    tss: UnsafeCell<TaskStateSegment>,
    gdt: UnsafeCell<[u64; 7]>,
    ist: UnsafeCell<[IstStack; 2]>,
}

// SAFETY: each CPU touches only its own entry, with interrupts off (init,
// context switch), so there is never a concurrent access.
unsafe impl Sync for Segments {}

// Only used as the initialiser of each element of `SEGMENTS`.
#[allow(clippy::declare_interior_mutable_const)]
const NO_SEGMENTS: Segments = Segments {
    tss: UnsafeCell::new(TaskStateSegment {
        reserved0: 0,
        rsp: [0; 3],
        reserved1: 0,
        ist: [0; 7],
        reserved2: 0,
        reserved3: 0,
        iomap_base: core::mem::size_of::<TaskStateSegment>() as u16,
    }),
    gdt: UnsafeCell::new([0; 7]),
    ist: UnsafeCell::new([IstStack([0; IST_STACK_SIZE]), IstStack([0; IST_STACK_SIZE])]),
};

static SEGMENTS: [Segments; super::cpu::MAX_CPUS] = [const { NO_SEGMENTS }; super::cpu::MAX_CPUS];

/// Loads CPU `cpu`'s GDT and TSS, and reloads every segment register.
pub fn init(cpu: usize) {
    let segments = &SEGMENTS[cpu];
    let tss_addr = segments.tss.get() as u64;
    let tss_limit = (core::mem::size_of::<TaskStateSegment>() - 1) as u64;
    let tss_low = (tss_limit & 0xFFFF)
        | ((tss_addr & 0xFF_FFFF) << 16)
        | (0x89 << 40) // present, 64-bit available TSS
        | (((tss_limit >> 16) & 0xF) << 48)
        | (((tss_addr >> 24) & 0xFF) << 56);
    let tss_high = tss_addr >> 32;
    // SAFETY: runs once per CPU, on that CPU, with interrupts off, before
    // anything else refers to its tables; the descriptors are well formed and the
    // selectors loaded below index them.
    unsafe {
        let ist = &*segments.ist.get();
        let tss = &mut *segments.tss.get();
        let top = |s: &IstStack| s.0.as_ptr() as u64 + IST_STACK_SIZE as u64;
        tss.ist[usize::from(IST_DOUBLE_FAULT - 1)] = top(&ist[0]);
        tss.ist[usize::from(IST_NMI - 1)] = top(&ist[1]);
        *segments.gdt.get() = [
            0,
            0x00AF_9A00_0000_FFFF, // kernel code, 64-bit
            0x00CF_9200_0000_FFFF, // kernel data
            0x00CF_F200_0000_FFFF, // user data (DPL 3)
            0x00AF_FA00_0000_FFFF, // user code, 64-bit (DPL 3)
            tss_low,
            tss_high,
        ];
        let ptr = DescriptorTablePointer {
            limit: (7 * 8 - 1) as u16,
            base: segments.gdt.get() as u64,
        };
        core::arch::asm!(
            "lgdt [{ptr}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            code = in(reg) u64::from(KERNEL_CODE),
            data = in(reg) u64::from(KERNEL_DATA),
            tss = in(reg) u64::from(TSS_SELECTOR),
            tmp = out(reg) _,
        );
    }
}

#[repr(C, packed(2))]
pub struct DescriptorTablePointer {
    pub limit: u16,
    pub base: u64,
}

/// Sets the stack this CPU switches to on an interrupt from user mode.
pub fn set_rsp0(top: u64) {
    let cpu = super::cpu::this().id as usize;
    // SAFETY: called with interrupts off (context switch) on the CPU that
    // owns this TSS, so it cannot be reading it for a privilege change now.
    unsafe {
        let tss = SEGMENTS[cpu].tss.get();
        core::ptr::addr_of_mut!((*tss).rsp).write_unaligned([top, 0, 0]);
    }
}
