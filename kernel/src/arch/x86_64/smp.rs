//! Starting the application processors (APs).
//!
//! The CPUs come from the ACPI MADT. Each AP is started with INIT-SIPI-SIPI
//! at a real-mode trampoline copied to physical [`TRAMPOLINE`]; the
//! trampoline goes through protected mode into long mode on the kernel's
//! page tables (whose identity map of low memory still exists at this point
//! of boot) and calls [`ap_main`] on a stack the boot CPU allocated. APs are
//! started one at a time: the trampoline's data block is shared.

use super::bootinfo::BootInfo;
use super::{apic, cpu, gdt, idt, paging, phys_to_virt, syscall};
use alloc::vec::Vec;
use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel_core::acpi;

/// Physical address the trampoline runs at (SIPI vector 0x08).
const TRAMPOLINE: u64 = 0x8000;
/// Size of each AP's first (and idle) stack.
const AP_STACK_SIZE: usize = 64 * 1024;

/// CPUs running (the boot CPU included).
static ONLINE: AtomicUsize = AtomicUsize::new(1);

global_asm!(
    r#"
    .section .boot.text, "ax"
    .code16
    .global ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    lgdt [AP_GDTR_AT]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    /* jmp far 0x08:ap_trampoline_32 (32-bit offset) */
    .byte 0x66, 0xea
    .long ap_trampoline_32 - ap_trampoline_start + {base}
    .word 0x08

    .code32
ap_trampoline_32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr4
    or eax, (1 << 5)
    mov cr4, eax
    mov eax, dword ptr [AP_CR3_AT]
    mov cr3, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16)
    mov cr0, eax
    /* jmp far 0x18:ap_trampoline_64 */
    .byte 0xea
    .long ap_trampoline_64 - ap_trampoline_start + {base}
    .word 0x18

    .code64
ap_trampoline_64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, qword ptr [AP_STACK_AT]
    mov rdi, qword ptr [AP_CPU_AT]
    mov rax, qword ptr [AP_ENTRY_AT]
    xor ebp, ebp
    call rax
2:
    hlt
    jmp 2b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF        /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: data */
    .quad 0x00AF9A000000FFFF        /* 0x18: 64-bit code */
ap_gdtr:
    .short 31
    .long ap_gdt - ap_trampoline_start + {base}
    .balign 8
    .global ap_cr3
ap_cr3:
    .quad 0
    .global ap_stack
ap_stack:
    .quad 0
    .global ap_entry
ap_entry:
    .quad 0
    .global ap_cpu
ap_cpu:
    .quad 0
    .global ap_trampoline_end
ap_trampoline_end:
    /* Where each datum sits once the trampoline is copied to {base}. */
    .set AP_GDTR_AT, ap_gdtr - ap_trampoline_start + {base}
    .set AP_CR3_AT, ap_cr3 - ap_trampoline_start + {base}
    .set AP_STACK_AT, ap_stack - ap_trampoline_start + {base}
    .set AP_CPU_AT, ap_cpu - ap_trampoline_start + {base}
    .set AP_ENTRY_AT, ap_entry - ap_trampoline_start + {base}
    .text
    "#,
    base = const TRAMPOLINE,
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_cr3: u8;
    static ap_stack: u8;
    static ap_entry: u8;
    static ap_cpu: u8;
}

/// The trampoline-page address of a trampoline symbol.
fn in_trampoline(symbol: *const u8) -> *mut u64 {
    let offset = symbol as u64 - core::ptr::addr_of!(ap_trampoline_start) as u64;
    phys_to_virt(TRAMPOLINE + offset) as *mut u64
}

/// The local APIC ids of the usable CPUs the firmware lists (the boot CPU
/// among them), or just the boot CPU if ACPI cannot be read.
fn cpus(boot: &BootInfo) -> Vec<u8> {
    match madt(boot) {
        Ok(madt) => madt
            .cpus
            .iter()
            .filter(|c| c.usable)
            .map(|c| c.apic_id)
            .collect(),
        Err(why) => {
            log::warn!("smp: {why}; running on the boot CPU only");
            Vec::new()
        }
    }
}

/// The ACPI MADT (CPUs, I/O APICs, interrupt source overrides), or why
/// there is none.
pub fn madt(boot: &BootInfo) -> Result<acpi::Madt, &'static str> {
    let root = acpi_root(boot).ok_or("no ACPI tables")?;
    let (addr, signature) = match root {
        acpi::RootTable::Rsdt(a) => (a, b"RSDT"),
        acpi::RootTable::Xsdt(a) => (a, b"XSDT"),
    };
    let table = read_table(addr, signature).ok_or("ACPI root table unreadable")?;
    acpi::root_entries(table, root)
        .into_iter()
        .filter_map(|entry| read_table(entry, b"APIC"))
        .find_map(|madt| acpi::parse_madt(madt).ok())
        .ok_or("no MADT")
}

/// Where the ACPI root table is: from the boot information, or found in
/// the BIOS area.
pub(super) fn acpi_root(boot: &BootInfo) -> Option<acpi::RootTable> {
    boot.acpi_root.or_else(|| {
        // Not handed over: look in the BIOS area, where the firmware keeps it.
        // SAFETY: 0xE0000..0x100000 is in the direct map and read-only here.
        let bios =
            unsafe { core::slice::from_raw_parts(phys_to_virt(0xE_0000) as *const u8, 0x2_0000) };
        let at = acpi::find_rsdp(bios)?;
        acpi::parse_rsdp(&bios[at..]).ok()
    })
}

/// A checked ACPI table at physical `addr`, if it has `signature`.
pub(super) fn read_table(addr: u64, signature: &[u8; 4]) -> Option<&'static [u8]> {
    const MAX_TABLE: usize = 64 * 1024;
    if addr == 0 || addr + MAX_TABLE as u64 > super::DIRECT_MAP_SIZE {
        return None;
    }
    // SAFETY: in the direct map (checked); firmware tables are not freed
    // (their memory is not in the usable map).
    let header =
        unsafe { core::slice::from_raw_parts(phys_to_virt(addr) as *const u8, acpi::HEADER_LEN) };
    let length = acpi::table_length(header)?;
    if !(acpi::HEADER_LEN..=MAX_TABLE).contains(&length) {
        return None;
    }
    // SAFETY: as above, `length` bytes checked to fit the direct map.
    let table = unsafe { core::slice::from_raw_parts(phys_to_virt(addr) as *const u8, length) };
    acpi::check_table(table, signature).ok()
}

/// Starts every other usable CPU, up to `wanted` CPUs in all. Returns how
/// many are online. Must run before the boot identity map is removed.
pub fn start_aps(boot: &BootInfo, wanted: usize) -> usize {
    let me = apic::id();
    let others: Vec<u8> = cpus(boot).into_iter().filter(|&id| id != me).collect();
    let wanted = wanted.min(cpu::MAX_CPUS);
    if others.is_empty() || wanted <= 1 {
        return ONLINE.load(Ordering::Acquire);
    }
    // SAFETY: the trampoline page is below 1 MiB, reserved from the frame
    // allocator, and nothing else uses it; the copy fits in it.
    unsafe {
        let start = core::ptr::addr_of!(ap_trampoline_start);
        let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
        assert!(
            len as u64 <= abi::layout::PAGE_SIZE,
            "AP trampoline larger than a page"
        );
        core::ptr::copy_nonoverlapping(start, phys_to_virt(TRAMPOLINE) as *mut u8, len);
        in_trampoline(core::ptr::addr_of!(ap_cr3)).write_volatile(paging::kernel_pml4());
        in_trampoline(core::ptr::addr_of!(ap_entry)).write_volatile(ap_main as *const () as u64);
    }
    for &apic_id in &others {
        let index = ONLINE.load(Ordering::Acquire);
        if index >= wanted {
            break;
        }
        let stack = alloc::vec![0u8; AP_STACK_SIZE].leak();
        let top = (stack.as_ptr() as u64 + AP_STACK_SIZE as u64) & !15;
        // SAFETY: the data block of the copied trampoline; the previous AP
        // is past reading it (it is online).
        unsafe {
            in_trampoline(core::ptr::addr_of!(ap_stack)).write_volatile(top);
            in_trampoline(core::ptr::addr_of!(ap_cpu)).write_volatile(index as u64);
        }
        apic::send_ipi(apic_id, 0x4500); // INIT, assert
        apic::delay_us(10_000);
        for _ in 0..2 {
            apic::send_ipi(apic_id, 0x4600 | (TRAMPOLINE >> 12) as u32); // STARTUP
            apic::delay_us(200);
        }
        // Wait up to 100 ms for it to check in.
        let mut waited = 0;
        while ONLINE.load(Ordering::Acquire) == index && waited < 1000 {
            apic::delay_us(100);
            waited += 1;
        }
        if ONLINE.load(Ordering::Acquire) == index {
            log::warn!("smp: CPU with APIC id {apic_id} did not start");
        }
    }
    let online = ONLINE.load(Ordering::Acquire);
    log::info!("smp: {online} CPU(s) online");
    online
}

/// CPUs running.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// First Rust code of an AP, on its own stack, interrupts off.
extern "C" fn ap_main(index: u64) -> ! {
    let index = index as usize;
    gdt::init(index);
    idt::load();
    cpu::init(index);
    syscall::init();
    apic::init_ap();
    cpu::set_apic_id(apic::id());
    ONLINE.fetch_add(1, Ordering::AcqRel);
    kernel_ap_entry(index)
}

unsafe extern "C" {
    /// The kernel's entry for an application processor that is set up
    /// (defined by [`super::entry_points`]).
    safe fn kernel_ap_entry(cpu: usize) -> !;
}
