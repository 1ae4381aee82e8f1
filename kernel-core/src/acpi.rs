//! The little of ACPI the kernel reads: the RSDP, the root table (RSDT or
//! XSDT) and the MADT's list of local APICs, to find the CPUs.
//!
//! Everything here parses bytes the firmware left in memory: every length
//! and offset is checked, a bad checksum or a short table is an error, and
//! nothing panics on any input.

use alloc::vec::Vec;

/// Where the root table is and how wide its entries are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootTable {
    /// 32-bit entries (ACPI 1.0).
    Rsdt(u64),
    /// 64-bit entries (ACPI 2.0+).
    Xsdt(u64),
}

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    BadSignature,
    BadChecksum,
    Truncated,
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Length of an RSDP structure to read (the ACPI 2.0 size).
pub const RSDP_LEN: usize = 36;

/// Parses an RSDP (`bytes` holds at least 20 bytes from its start).
pub fn parse_rsdp(bytes: &[u8]) -> Result<RootTable, AcpiError> {
    let v1 = bytes.get(..20).ok_or(AcpiError::Truncated)?;
    if &v1[..8] != b"RSD PTR " {
        return Err(AcpiError::BadSignature);
    }
    if !checksum_ok(v1) {
        return Err(AcpiError::BadChecksum);
    }
    let revision = v1[15];
    if revision >= 2 {
        if let Some(v2) = bytes.get(..RSDP_LEN) {
            let length = u32_at(v2, 20).unwrap_or(0) as usize;
            let xsdt = u64_at(v2, 24).unwrap_or(0);
            if length >= RSDP_LEN && checksum_ok(v2) && xsdt != 0 {
                return Ok(RootTable::Xsdt(xsdt));
            }
        }
    }
    Ok(RootTable::Rsdt(u64::from(u32_at(v1, 16).unwrap_or(0))))
}

/// Offset of an RSDP in `region` (searched on 16-byte boundaries, as the
/// firmware places it in the BIOS area).
pub fn find_rsdp(region: &[u8]) -> Option<usize> {
    (0..region.len().saturating_sub(20))
        .step_by(16)
        .find(|&at| parse_rsdp(&region[at..]).is_ok())
}

/// Size of the common table header.
pub const HEADER_LEN: usize = 36;

/// The `length` field of a table header (to know how much to read).
pub fn table_length(header: &[u8]) -> Option<usize> {
    u32_at(header, 4).map(|l| l as usize)
}

/// Checks a whole table (`bytes` is exactly `length` long) against
/// `signature` and its checksum.
pub fn check_table<'a>(bytes: &'a [u8], signature: &[u8; 4]) -> Result<&'a [u8], AcpiError> {
    if bytes.len() < HEADER_LEN {
        return Err(AcpiError::Truncated);
    }
    if &bytes[..4] != signature {
        return Err(AcpiError::BadSignature);
    }
    let length = table_length(bytes).ok_or(AcpiError::Truncated)?;
    let table = bytes.get(..length).ok_or(AcpiError::Truncated)?;
    if length < HEADER_LEN {
        return Err(AcpiError::Truncated);
    }
    if !checksum_ok(table) {
        return Err(AcpiError::BadChecksum);
    }
    Ok(table)
}

/// The physical addresses a checked RSDT or XSDT points to.
pub fn root_entries(table: &[u8], root: RootTable) -> Vec<u64> {
    let body = &table[HEADER_LEN.min(table.len())..];
    match root {
        RootTable::Rsdt(_) => body
            .chunks_exact(4)
            .map(|c| u64::from(u32_at(c, 0).unwrap_or(0)))
            .collect(),
        RootTable::Xsdt(_) => body
            .chunks_exact(8)
            .map(|c| u64_at(c, 0).unwrap_or(0))
            .collect(),
    }
}

/// A processor the MADT lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalApic {
    pub processor_id: u8,
    pub apic_id: u8,
    /// Usable now (enabled) or could be brought online.
    pub usable: bool,
}

/// An I/O APIC the MADT lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    /// Physical address of its register window.
    pub address: u64,
    /// The first global system interrupt (GSI) its inputs carry.
    pub gsi_base: u32,
}

/// An interrupt source override: ISA IRQ `source` arrives on `gsi`, with
/// the MPS INTI `flags` (polarity in bits 0-1, trigger mode in bits 2-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOverride {
    pub source: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// How an ISA IRQ reaches the I/O APICs, after the overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaRoute {
    pub gsi: u32,
    /// Active low (ISA's default is active high).
    pub active_low: bool,
    /// Level triggered (ISA's default is edge).
    pub level: bool,
}

/// What the MADT says about interrupt controllers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Madt {
    pub local_apic_address: u64,
    pub cpus: Vec<LocalApic>,
    pub io_apics: Vec<IoApic>,
    pub overrides: Vec<SourceOverride>,
}

impl Madt {
    /// Where ISA IRQ `irq` arrives: its override if the MADT has one, else
    /// the GSI of the same number, edge triggered and active high.
    pub fn isa_route(&self, irq: u8) -> IsaRoute {
        match self.overrides.iter().find(|o| o.source == irq) {
            Some(o) => IsaRoute {
                gsi: o.gsi,
                // 0b00 conforms to the bus (ISA: high, edge), 0b01 high,
                // 0b11 low; the same for the trigger mode (0b01 edge,
                // 0b11 level).
                active_low: o.flags & 0b11 == 0b11,
                level: (o.flags >> 2) & 0b11 == 0b11,
            },
            None => IsaRoute {
                gsi: u32::from(irq),
                active_low: false,
                level: false,
            },
        }
    }

    /// The I/O APIC whose inputs include `gsi`, and the input's index.
    pub fn io_apic_for(&self, gsi: u32) -> Option<(IoApic, u32)> {
        // The I/O APIC with the highest base at or below `gsi`; how many
        // inputs it has is in its own registers, checked by the driver.
        self.io_apics
            .iter()
            .filter(|a| a.gsi_base <= gsi)
            .max_by_key(|a| a.gsi_base)
            .map(|a| (*a, gsi - a.gsi_base))
    }
}

/// Parses a checked MADT ("APIC") table.
pub fn parse_madt(table: &[u8]) -> Result<Madt, AcpiError> {
    let mut local_apic_address = u64::from(u32_at(table, HEADER_LEN).ok_or(AcpiError::Truncated)?);
    let mut cpus = Vec::new();
    let mut io_apics = Vec::new();
    let mut overrides = Vec::new();
    let mut at = HEADER_LEN + 8;
    while at + 2 <= table.len() {
        let kind = table[at];
        let len = usize::from(table[at + 1]);
        if len < 2 || at + len > table.len() {
            break;
        }
        let entry = &table[at..at + len];
        match kind {
            // Processor Local APIC.
            0 if len >= 8 => {
                let flags = u32_at(entry, 4).unwrap_or(0);
                cpus.push(LocalApic {
                    processor_id: entry[2],
                    apic_id: entry[3],
                    usable: flags & 0b11 != 0,
                });
            }
            // I/O APIC.
            1 if len >= 12 => io_apics.push(IoApic {
                id: entry[2],
                address: u64::from(u32_at(entry, 4).unwrap_or(0)),
                gsi_base: u32_at(entry, 8).unwrap_or(0),
            }),
            // Interrupt source override (bus 0 is ISA, the only one defined).
            2 if len >= 10 => overrides.push(SourceOverride {
                source: entry[3],
                gsi: u32_at(entry, 4).unwrap_or(0),
                flags: u16::from_le_bytes([entry[8], entry[9]]),
            }),
            // Local APIC address override.
            5 if len >= 12 => local_apic_address = u64_at(entry, 4).unwrap_or(local_apic_address),
            _ => {}
        }
        at += len;
    }
    Ok(Madt {
        local_apic_address,
        cpus,
        io_apics,
        overrides,
    })
}

/// Parses a checked MCFG table ("MCFG"): the ECAM windows of PCI Express
/// config space, one per segment group and bus range. Entries whose bus
/// range is inverted or whose base is zero or not 1 MiB aligned are
/// skipped; a trailing partial entry is ignored.
pub fn parse_mcfg(table: &[u8]) -> Vec<crate::pci::EcamWindow> {
    // The header, then 8 reserved bytes, then 16-byte entries.
    const ENTRIES_AT: usize = HEADER_LEN + 8;
    const ENTRY_LEN: usize = 16;
    let body = table.get(ENTRIES_AT..).unwrap_or(&[]);
    body.chunks_exact(ENTRY_LEN)
        .filter_map(|entry| {
            let base = u64_at(entry, 0)?;
            let segment = u16::from_le_bytes([entry[8], entry[9]]);
            let (start_bus, end_bus) = (entry[10], entry[11]);
            (base != 0 && base % (1 << 20) == 0 && start_bus <= end_bus).then_some(
                crate::pci::EcamWindow {
                    base,
                    segment,
                    start_bus,
                    end_bus,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        bytes[at] = 0u8.wrapping_sub(sum);
    }

    fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; RSDP_LEN];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = revision;
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        r[20..24].copy_from_slice(&(RSDP_LEN as u32).to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut r[..20], 8);
        fix_checksum(&mut r, 32);
        r
    }

    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER_LEN];
        t[..4].copy_from_slice(signature);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
        t
    }

    #[test]
    fn rsdp_versions_and_errors() {
        assert_eq!(parse_rsdp(&rsdp(0, 0x1234, 0)), Ok(RootTable::Rsdt(0x1234)));
        assert_eq!(
            parse_rsdp(&rsdp(2, 0x1234, 0x5678)),
            Ok(RootTable::Xsdt(0x5678))
        );
        let mut bad = rsdp(0, 1, 0);
        bad[16] ^= 1;
        assert_eq!(parse_rsdp(&bad), Err(AcpiError::BadChecksum));
        assert_eq!(parse_rsdp(b"RSD PTR"), Err(AcpiError::Truncated));
        assert_eq!(parse_rsdp(&[0u8; 40]), Err(AcpiError::BadSignature));
    }

    #[test]
    fn rsdp_is_found_on_a_16_byte_boundary() {
        let mut region = vec![0u8; 256];
        region[64..64 + RSDP_LEN].copy_from_slice(&rsdp(0, 7, 0));
        assert_eq!(find_rsdp(&region), Some(64));
        assert_eq!(find_rsdp(&[0u8; 100]), None);
    }

    #[test]
    fn madt_lists_processors() {
        let mut body = Vec::new();
        body.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for (id, flags) in [(0u8, 1u32), (1, 1), (2, 0), (3, 2)] {
            body.extend_from_slice(&[0, 8, id, id]);
            body.extend_from_slice(&flags.to_le_bytes());
        }
        // An I/O APIC (id 4 at 0xFEC00000, GSIs from 0), then QEMU's
        // overrides: IRQ 0 -> GSI 2, IRQ 9 -> GSI 9 level, active high.
        body.extend_from_slice(&[1, 12, 4, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]);
        body.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0]);
        body.extend_from_slice(&[2, 10, 0, 4, 20, 0, 0, 0, 0x0F, 0]);
        let t = table(b"APIC", &body);
        let t = check_table(&t, b"APIC").unwrap();
        let madt = parse_madt(t).unwrap();
        assert_eq!(madt.local_apic_address, 0xFEE0_0000);
        assert_eq!(
            madt.io_apics,
            [IoApic {
                id: 4,
                address: 0xFEC0_0000,
                gsi_base: 0
            }]
        );
        let route = |gsi, active_low, level| IsaRoute {
            gsi,
            active_low,
            level,
        };
        assert_eq!(madt.isa_route(1), route(1, false, false));
        assert_eq!(madt.isa_route(0), route(2, false, false));
        assert_eq!(madt.isa_route(9), route(9, false, true));
        assert_eq!(madt.isa_route(4), route(20, true, true));
        assert_eq!(madt.io_apic_for(20).map(|(_, pin)| pin), Some(20));
        let none = Madt {
            io_apics: Vec::new(),
            ..madt.clone()
        };
        assert_eq!(none.io_apic_for(1), None);
        let usable: Vec<u8> = madt
            .cpus
            .iter()
            .filter(|c| c.usable)
            .map(|c| c.apic_id)
            .collect();
        assert_eq!(usable, [0, 1, 3]);
    }

    #[test]
    fn mcfg_lists_ecam_windows() {
        let mut body = vec![0u8; 8];
        let entry = |base: u64, segment: u16, start: u8, end: u8| {
            let mut e = Vec::new();
            e.extend_from_slice(&base.to_le_bytes());
            e.extend_from_slice(&segment.to_le_bytes());
            e.extend_from_slice(&[start, end, 0, 0, 0, 0]);
            e
        };
        body.extend(entry(0xB000_0000, 0, 0, 255));
        body.extend(entry(0x40_0000_0000, 1, 0x10, 0x1F));
        body.extend(entry(0xC000_0000, 2, 9, 3)); // inverted: skipped
        body.extend(entry(0xC000_1000, 3, 0, 0)); // unaligned: skipped
        body.extend_from_slice(&[1, 2, 3]); // a partial entry
        let t = table(b"MCFG", &body);
        let windows = parse_mcfg(check_table(&t, b"MCFG").unwrap());
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].base, 0xB000_0000);
        assert_eq!((windows[0].start_bus, windows[0].end_bus), (0, 255));
        assert_eq!(windows[1].segment, 1);
        assert_eq!(windows[1].base, 0x40_0000_0000);
        assert!(parse_mcfg(&t[..40]).is_empty());
        assert!(parse_mcfg(&[]).is_empty());
    }

    #[test]
    fn malformed_tables_never_panic() {
        let t = table(b"APIC", &[0u8; 8]);
        assert!(check_table(&t, b"APIC").is_ok());
        assert_eq!(check_table(&t, b"XSDT"), Err(AcpiError::BadSignature));
        assert_eq!(check_table(&t[..20], b"APIC"), Err(AcpiError::Truncated));
        // Entries with silly lengths stop the walk.
        let mut body = vec![0u8; 8];
        body.extend_from_slice(&[0, 0, 1, 1, 0, 0, 0, 0, 0, 255]);
        let t = table(b"APIC", &body);
        assert!(parse_madt(check_table(&t, b"APIC").unwrap())
            .unwrap()
            .cpus
            .is_empty());
        let mut seed = 12345u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = parse_rsdp(&bytes);
            let _ = find_rsdp(&bytes);
            let _ = check_table(&bytes, b"APIC");
            let _ = parse_madt(&bytes);
            let _ = parse_mcfg(&bytes);
            let _ = root_entries(&bytes, RootTable::Xsdt(0));
        }
        let rsdt = table(b"RSDT", &[1, 0, 0, 0, 2, 0, 0, 0, 9]);
        assert_eq!(root_entries(&rsdt, RootTable::Rsdt(0)), [1, 2]);
    }
}
