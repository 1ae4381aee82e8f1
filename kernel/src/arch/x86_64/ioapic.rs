//! The I/O APICs: where legacy (ISA) device interrupts such as the
//! keyboard's (IRQ 1) and COM1's (IRQ 4) enter, routed to a vector of
//! [`super::irq`] on the boot CPU's local APIC.
//!
//! Which I/O APICs exist and how ISA IRQs map onto their inputs (the
//! interrupt source overrides) comes from the ACPI MADT. A machine without
//! one (no ACPI, or a MADT listing no I/O APIC) has no routed legacy
//! interrupts: [`route_isa`] says so, and the caller polls instead.

use super::phys_to_virt;
use kernel_core::acpi::Madt;
use spin::Mutex;

const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const MASKED: u64 = 1 << 16;
const LEVEL: u64 = 1 << 15;
const ACTIVE_LOW: u64 = 1 << 13;

/// The MADT's interrupt controllers, kept from [`init`].
static MADT: Mutex<Option<Madt>> = Mutex::new(None);

/// One I/O APIC's register window (`address` is physical).
struct Window(u64);

impl Window {
    fn read(&self, reg: u32) -> u32 {
        let base = phys_to_virt(self.0) as *mut u32;
        // SAFETY: `base` is the direct-map address of an I/O APIC's
        // register window (from the MADT, checked to lie in the direct map
        // in `init`): IOREGSEL at +0, IOWIN at +0x10. The lock on `MADT`,
        // held by every caller, keeps the select-then-access pair whole.
        unsafe {
            core::ptr::write_volatile(base, reg);
            core::ptr::read_volatile(base.byte_add(0x10))
        }
    }

    fn write(&self, reg: u32, value: u32) {
        let base = phys_to_virt(self.0) as *mut u32;
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile(base, reg);
            core::ptr::write_volatile(base.byte_add(0x10), value);
        }
    }

    /// Number of redirection entries (inputs).
    fn inputs(&self) -> u32 {
        ((self.read(REG_VERSION) >> 16) & 0xff) + 1
    }

    fn set_entry(&self, pin: u32, value: u64) {
        // Masked while it changes, so a half-written entry never fires.
        self.write(REG_REDIRECTION + 2 * pin, MASKED as u32);
        self.write(REG_REDIRECTION + 2 * pin + 1, (value >> 32) as u32);
        self.write(REG_REDIRECTION + 2 * pin, value as u32);
    }
}

/// Keeps the MADT's I/O APICs and masks every input of each. Returns how
/// many I/O APICs were found.
pub fn init(madt: Madt) -> usize {
    let mut kept = madt;
    kept.io_apics.retain(|a| {
        let ok = a.address != 0 && a.address + 0x20 <= super::DIRECT_MAP_SIZE;
        if !ok {
            log::warn!(
                "ioapic: id {} at {:#x} is out of reach; ignored",
                a.id,
                a.address
            );
        }
        ok
    });
    for apic in &kept.io_apics {
        let window = Window(apic.address);
        let inputs = window.inputs();
        for pin in 0..inputs {
            window.set_entry(pin, MASKED);
        }
        log::info!(
            "ioapic: id {} at {:#x}, GSIs {}..{}",
            apic.id,
            apic.address,
            apic.gsi_base,
            apic.gsi_base + inputs
        );
    }
    let count = kept.io_apics.len();
    *MADT.lock() = Some(kept);
    count
}

/// Routes ISA IRQ `irq` (after the MADT's overrides) to `vector` on the
/// CPU with local APIC id `apic_id`, and unmasks it.
pub fn route_isa(irq: u8, vector: u8, apic_id: u8) -> Result<(), &'static str> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let guard = MADT.lock();
        let madt = guard.as_ref().ok_or("no MADT: no I/O APIC known")?;
        let route = madt.isa_route(irq);
        let (apic, pin) = madt
            .io_apic_for(route.gsi)
            .ok_or("no I/O APIC serves its GSI")?;
        let window = Window(apic.address);
        if pin >= window.inputs() {
            return Err("its GSI is past the I/O APIC's inputs");
        }
        let mut entry = u64::from(vector) | (u64::from(apic_id) << 56);
        if route.level {
            entry |= LEVEL;
        }
        if route.active_low {
            entry |= ACTIVE_LOW;
        }
        window.set_entry(pin, entry);
        log::info!(
            "ioapic: ISA IRQ {irq} -> GSI {} -> vector {vector} on APIC {apic_id}{}{}",
            route.gsi,
            if route.level { ", level" } else { "" },
            if route.active_low { ", active low" } else { "" }
        );
        Ok(())
    })
}
