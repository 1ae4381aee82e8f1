//! PCI logic that needs no hardware: config-space addresses, the
//! capability-list walk, BAR decoding and size probing math, the MSI-X
//! table and PBA locations, and MSI message composition.
//!
//! Config space is device-provided data: a function may report a
//! capability list that loops, points outside the header, or BARs whose
//! probed size makes no sense. Everything here bounds its walks and
//! returns `None` rather than trusting such values; nothing panics on any
//! input. The kernel's `arch::pci` does the port and ECAM accesses and
//! hands the words it read to these functions.

use alloc::vec::Vec;

/// Config-space register offsets of the common header.
pub mod reg {
    pub const VENDOR_ID: u16 = 0x00;
    pub const DEVICE_ID: u16 = 0x02;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const REVISION: u16 = 0x08;
    pub const PROG_IF: u16 = 0x09;
    pub const SUBCLASS: u16 = 0x0A;
    pub const CLASS: u16 = 0x0B;
    pub const HEADER_TYPE: u16 = 0x0E;
    pub const BAR0: u16 = 0x10;
    /// Type 1 (bridge) header: secondary bus number.
    pub const SECONDARY_BUS: u16 = 0x19;
    pub const CAPABILITIES: u16 = 0x34;
    pub const INTERRUPT_LINE: u16 = 0x3C;
    pub const INTERRUPT_PIN: u16 = 0x3D;
}

/// Command register bits.
pub mod command {
    pub const IO_SPACE: u16 = 1 << 0;
    pub const MEMORY_SPACE: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register: the function has a capability list.
pub const STATUS_CAPABILITIES: u16 = 1 << 4;

/// Capability ids.
pub mod cap {
    pub const MSI: u8 = 0x05;
    pub const VENDOR: u8 = 0x09;
    pub const PCIE: u8 = 0x10;
    pub const MSIX: u8 = 0x11;
}

/// Size of the legacy config space (what port access reaches).
pub const LEGACY_CONFIG_SIZE: u16 = 256;
/// Size of a PCIe function's config space (what ECAM reaches).
pub const ECAM_CONFIG_SIZE: u16 = 4096;

/// The 0xCF8 address word for a legacy (mechanism #1) config access to the
/// dword containing `offset`; `None` if the location or offset is out of
/// range.
pub fn legacy_address(bus: u8, device: u8, function: u8, offset: u16) -> Option<u32> {
    if device >= 32 || function >= 8 || offset >= LEGACY_CONFIG_SIZE {
        return None;
    }
    Some(
        0x8000_0000
            | (u32::from(bus) << 16)
            | (u32::from(device) << 11)
            | (u32::from(function) << 8)
            | (u32::from(offset) & 0xFC),
    )
}

/// Byte offset of a function's config space inside an ECAM window whose
/// first bus is `start_bus`; `None` if out of range.
pub fn ecam_offset(start_bus: u8, bus: u8, device: u8, function: u8) -> Option<u64> {
    if device >= 32 || function >= 8 || bus < start_bus {
        return None;
    }
    Some(
        (u64::from(bus - start_bus) << 20)
            | (u64::from(device) << 15)
            | (u64::from(function) << 12),
    )
}

/// Most capabilities a walk visits: a 256-byte config space holds at most
/// (256 - 64) / 4 of them, so a longer list loops.
const MAX_CAPABILITIES: usize = 48;

/// The capabilities of a function as `(id, offset)`, in list order, given
/// a way to read config-space bytes. Stops at the end of the list, at a
/// pointer into the header (below 0x40) or past 0xFF, and at a pointer
/// seen before (a loop), so it ends on any config space.
pub fn capabilities(read8: impl Fn(u16) -> u8) -> Vec<(u8, u16)> {
    let mut found = Vec::new();
    let status = u16::from(read8(reg::STATUS)) | (u16::from(read8(reg::STATUS + 1)) << 8);
    if status & STATUS_CAPABILITIES == 0 {
        return found;
    }
    let mut seen = [false; 256];
    let mut at = u16::from(read8(reg::CAPABILITIES) & 0xFC);
    while (0x40..LEGACY_CONFIG_SIZE - 1).contains(&at) && found.len() < MAX_CAPABILITIES {
        if core::mem::replace(&mut seen[usize::from(at)], true) {
            break;
        }
        let id = read8(at);
        found.push((id, at));
        at = u16::from(read8(at + 1) & 0xFC);
    }
    found
}

/// What a BAR register's low bits say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// An I/O-port range.
    Io,
    /// A memory range below 4 GiB.
    Memory32 { prefetchable: bool },
    /// A memory range anywhere; the next BAR holds the high half.
    Memory64 { prefetchable: bool },
    /// A memory type this code does not know (1M-below legacy type or the
    /// reserved one): not used.
    Unknown,
}

/// Decodes the kind of a BAR from its register value.
pub fn bar_kind(low: u32) -> BarKind {
    if low & 1 != 0 {
        return BarKind::Io;
    }
    let prefetchable = low & 0x8 != 0;
    match (low >> 1) & 0b11 {
        0 => BarKind::Memory32 { prefetchable },
        2 => BarKind::Memory64 { prefetchable },
        _ => BarKind::Unknown,
    }
}

/// A decoded base address register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Base address: physical for memory, a port number for I/O.
    pub phys: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// Memory (true) or I/O ports (false).
    pub mmio: bool,
    pub prefetchable: bool,
}

/// Decodes a BAR from its value (`low`, and `high` for the upper half of a
/// 64-bit BAR, else 0) and what it read back after all ones were written
/// (`probe_low`, `probe_high`). `None` for an unimplemented BAR (size 0),
/// an unknown type, or sizes that are not a power of two, or a range that
/// wraps around the address space.
pub fn decode_bar(low: u32, high: u32, probe_low: u32, probe_high: u32) -> Option<Bar> {
    let kind = bar_kind(low);
    let (phys, mask, mmio, prefetchable) = match kind {
        BarKind::Io => {
            // I/O BARs decode 16 bits in practice, and some read back with
            // their upper half clear: only the low half's answer counts.
            let mask = u64::from(probe_low & !0x3) | 0xFFFF_FFFF_FFFF_0000;
            (u64::from(low & !0x3), mask, false, false)
        }
        BarKind::Memory32 { prefetchable } => {
            let mask = u64::from(probe_low & !0xF) | 0xFFFF_FFFF_0000_0000;
            (u64::from(low & !0xF), mask, true, prefetchable)
        }
        BarKind::Memory64 { prefetchable } => {
            let phys = (u64::from(high) << 32) | u64::from(low & !0xF);
            let mask = (u64::from(probe_high) << 32) | u64::from(probe_low & !0xF);
            (phys, mask, true, prefetchable)
        }
        BarKind::Unknown => return None,
    };
    // The writable address bits read back as ones; the size is the lowest
    // one.
    if mask == 0 || mask == 0xFFFF_FFFF_0000_0000 || mask == 0xFFFF_FFFF_FFFF_0000 {
        return None;
    }
    let size = (!mask).wrapping_add(1);
    if !size.is_power_of_two() || phys.checked_add(size).is_none() {
        return None;
    }
    Some(Bar {
        phys,
        size,
        mmio,
        prefetchable,
    })
}

/// Where an MSI-X structure (the vector table or the PBA) lives: in which
/// BAR, at which offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixLocation {
    pub bar: u8,
    pub offset: u32,
}

/// Decodes a Table Offset/BIR or PBA Offset/BIR register; `None` for a
/// BAR indicator past BAR 5.
pub fn msix_location(register: u32) -> Option<MsixLocation> {
    let bar = (register & 0x7) as u8;
    (bar < 6).then_some(MsixLocation {
        bar,
        offset: register & !0x7,
    })
}

/// Bytes per MSI-X table entry.
pub const MSIX_ENTRY_SIZE: u32 = 16;
/// MSI-X message control: enable.
pub const MSIX_ENABLE: u16 = 1 << 15;
/// MSI-X message control: mask every vector of the function.
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// MSI-X vector control: this entry is masked.
pub const MSIX_ENTRY_MASKED: u32 = 1;

/// Entries in the MSI-X table, from the message control register.
pub fn msix_table_size(control: u16) -> u16 {
    (control & 0x7FF) + 1
}

/// Whether `entries` MSI-X entries at `location` fit in a BAR of
/// `bar_size` bytes.
pub fn msix_table_fits(location: MsixLocation, entries: u16, bar_size: u64) -> bool {
    let bytes = u64::from(entries) * u64::from(MSIX_ENTRY_SIZE);
    u64::from(location.offset)
        .checked_add(bytes)
        .is_some_and(|end| end <= bar_size)
}

/// An MSI or MSI-X message: what the device writes where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// The message that raises `vector` (fixed delivery, edge triggered) on
/// the local APIC `apic_id` (physical destination mode).
pub fn msi_message(vector: u8, apic_id: u8) -> MsiMessage {
    MsiMessage {
        address: 0xFEE0_0000 | (u64::from(apic_id) << 12),
        data: u32::from(vector),
    }
}

/// MSI message control bits.
pub mod msi {
    pub const ENABLE: u16 = 1 << 0;
    /// Multiple Message Enable (bits 4..=6): 0 means one vector.
    pub const MULTIPLE_ENABLE_MASK: u16 = 0b111 << 4;
    pub const ADDRESS_64: u16 = 1 << 7;
    /// Offset of the data register from the capability for 32-bit and
    /// 64-bit address layouts.
    pub const fn data_offset(control: u16) -> u16 {
        if control & ADDRESS_64 != 0 {
            0x0C
        } else {
            0x08
        }
    }
}

/// What ACPI's MCFG says about one ECAM window (see `crate::acpi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamWindow {
    /// Physical base of the window (bus `start_bus`, device 0, function 0).
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl EcamWindow {
    /// Bytes the window covers (1 MiB per bus).
    pub fn bytes(&self) -> u64 {
        (u64::from(self.end_bus.saturating_sub(self.start_bus)) + 1) << 20
    }

    /// Whether the window covers `segment`/`bus`.
    pub fn covers(&self, segment: u16, bus: u8) -> bool {
        segment == self.segment && (self.start_bus..=self.end_bus).contains(&bus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space_with(caps: &[(u16, u8, u8)]) -> [u8; 256] {
        let mut space = [0u8; 256];
        space[usize::from(reg::STATUS)] = STATUS_CAPABILITIES as u8;
        if let Some(&(first, _, _)) = caps.first() {
            space[usize::from(reg::CAPABILITIES)] = first as u8;
        }
        for &(at, id, next) in caps {
            space[usize::from(at)] = id;
            space[usize::from(at) + 1] = next;
        }
        space
    }

    fn walk(space: &[u8; 256]) -> Vec<(u8, u16)> {
        capabilities(|at| space.get(usize::from(at)).copied().unwrap_or(0xFF))
    }

    #[test]
    fn capability_list_in_order() {
        let space = space_with(&[
            (0x40, cap::MSIX, 0x50),
            (0x50, cap::VENDOR, 0x84),
            (0x84, 5, 0),
        ]);
        assert_eq!(
            walk(&space),
            [(cap::MSIX, 0x40), (cap::VENDOR, 0x50), (cap::MSI, 0x84)]
        );
    }

    #[test]
    fn no_capability_bit_no_walk() {
        let mut space = space_with(&[(0x40, cap::MSIX, 0)]);
        space[usize::from(reg::STATUS)] = 0;
        assert!(walk(&space).is_empty());
    }

    #[test]
    fn hostile_lists_end() {
        // A loop.
        let space = space_with(&[(0x40, 1, 0x50), (0x50, 2, 0x40)]);
        assert_eq!(walk(&space), [(1, 0x40), (2, 0x50)]);
        // A self loop.
        let space = space_with(&[(0x60, 1, 0x60)]);
        assert_eq!(walk(&space), [(1, 0x60)]);
        // A pointer into the header.
        let space = space_with(&[(0x40, 1, 0x10)]);
        assert_eq!(walk(&space), [(1, 0x40)]);
        // Low bits of pointers are reserved and ignored.
        let space = space_with(&[(0x40, 1, 0x53), (0x50, 2, 0)]);
        assert_eq!(walk(&space), [(1, 0x40), (2, 0x50)]);
        // A reader that answers all ones (a missing function).
        assert!(capabilities(|_| 0xFF).len() <= MAX_CAPABILITIES);
        // Random config spaces always end.
        let mut seed = 0x1234_5678u32;
        for _ in 0..500 {
            let mut space = [0u8; 256];
            for b in space.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *b = seed as u8;
            }
            let caps = walk(&space);
            assert!(caps.len() <= MAX_CAPABILITIES);
            assert!(caps.iter().all(|&(_, at)| (0x40..0xFF).contains(&at)));
        }
    }

    #[test]
    fn bar_32bit_memory() {
        // 16 KiB non-prefetchable at 0xFEBD_0000.
        let bar = decode_bar(0xFEBD_0000, 0, 0xFFFF_C000, 0).unwrap();
        assert_eq!(
            bar,
            Bar {
                phys: 0xFEBD_0000,
                size: 0x4000,
                mmio: true,
                prefetchable: false
            }
        );
    }

    #[test]
    fn bar_64bit_memory_above_4g() {
        // 16 KiB prefetchable 64-bit at 0x8_0000_0000.
        let low = 0x0000_000C; // type 64-bit, prefetchable
        let bar = decode_bar(low, 0x8, 0xFFFF_C00C, 0xFFFF_FFFF).unwrap();
        assert_eq!(bar.phys, 0x8_0000_0000);
        assert_eq!(bar.size, 0x4000);
        assert!(bar.mmio && bar.prefetchable);
        // A 64-bit BAR of 8 GiB: the size lives in the high half.
        let bar = decode_bar(0x4, 0x4, 0x0000_000C, 0xFFFF_FFFE).unwrap();
        assert_eq!(bar.size, 8 << 30);
        assert_eq!(bar.phys, 0x4_0000_0000);
    }

    #[test]
    fn bar_io() {
        let bar = decode_bar(0xC041, 0, 0xFFFF_FFE1, 0).unwrap();
        assert_eq!(bar.phys, 0xC040);
        assert_eq!(bar.size, 32);
        assert!(!bar.mmio);
        // Some I/O BARs read back with the upper 16 bits clear.
        assert_eq!(decode_bar(0xC041, 0, 0x0000_FFE1, 0).unwrap().size, 32);
    }

    #[test]
    fn bad_bars_are_refused() {
        // Unimplemented: reads back zero.
        assert_eq!(decode_bar(0, 0, 0, 0), None);
        // Reserved memory type.
        assert_eq!(decode_bar(0x6, 0, 0xFFFF_FFF6, 0), None);
        // Not a power of two (holes in the writable bits).
        assert_eq!(decode_bar(0x1000_0000, 0, 0xF0F0_0000, 0), None);
        // Wraps past the top of the address space.
        assert_eq!(
            decode_bar(0xFFFF_0004, 0xFFFF_FFFF, 0xFFFE_0004, 0xFFFF_FFFF),
            None
        );
        // Anything at all decodes without panicking.
        let mut seed = 99u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let _ = decode_bar(seed as u32, (seed >> 32) as u32, (seed >> 7) as u32, 0);
        }
    }

    #[test]
    fn msix_table_and_pba() {
        assert_eq!(
            msix_location(0x0000_2000),
            Some(MsixLocation {
                bar: 0,
                offset: 0x2000
            })
        );
        assert_eq!(
            msix_location(0x0000_3004),
            Some(MsixLocation {
                bar: 4,
                offset: 0x3000
            })
        );
        assert_eq!(msix_location(0x0000_3006), None);
        assert_eq!(msix_location(0x0000_3007), None);
        assert_eq!(msix_table_size(0x0040), 65);
        assert_eq!(msix_table_size(0xC000), 1);
        assert_eq!(msix_table_size(0xFFFF), 2048);
        let at = msix_location(0x2000).unwrap();
        assert!(msix_table_fits(at, 65, 0x4000));
        assert!(!msix_table_fits(at, 2048, 0x4000));
        let at = msix_location(0xFFFF_FFF8).unwrap();
        assert!(!msix_table_fits(at, 2048, 1 << 32));
    }

    #[test]
    fn msi_messages() {
        let m = msi_message(0x41, 3);
        assert_eq!(m.address, 0xFEE0_3000);
        assert_eq!(m.data, 0x41);
        assert_eq!(msi::data_offset(0), 8);
        assert_eq!(msi::data_offset(msi::ADDRESS_64), 12);
    }

    #[test]
    fn config_addresses() {
        assert_eq!(legacy_address(0, 4, 0, 0x10), Some(0x8000_2010));
        assert_eq!(legacy_address(1, 31, 7, 0xFF), Some(0x8001_FFFC));
        assert_eq!(legacy_address(0, 32, 0, 0), None);
        assert_eq!(legacy_address(0, 0, 8, 0), None);
        assert_eq!(legacy_address(0, 0, 0, 0x100), None);
        assert_eq!(
            ecam_offset(0, 1, 2, 3),
            Some((1 << 20) | (2 << 15) | (3 << 12))
        );
        assert_eq!(ecam_offset(4, 3, 0, 0), None);
        let w = EcamWindow {
            base: 0xB000_0000,
            segment: 0,
            start_bus: 0,
            end_bus: 255,
        };
        assert_eq!(w.bytes(), 256 << 20);
        assert!(w.covers(0, 255) && !w.covers(1, 0));
    }
}
