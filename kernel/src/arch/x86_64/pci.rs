//! PCI: config-space access, enumeration at boot, BARs mapped uncached,
//! MSI-X and MSI.
//!
//! Config space is reached through ECAM when ACPI has an MCFG table (QEMU
//! `q35`, PCIe machines), each window mapped uncached with
//! [`paging::map_mmio`], and through the legacy ports 0xCF8/0xCFC
//! otherwise (QEMU `pc`, i440fx) and for buses no window covers (segment 0
//! only). [`init`] enumerates every bus by brute force (every device
//! number of every bus a window or the legacy mechanism reaches; bridges
//! need no special case), probes BAR sizes with decoding switched off, and
//! logs one line per function. Drivers then take [`functions`].
//!
//! Device-reported values (capability pointers, BAR sizes, MSI-X table
//! offsets) are checked by `kernel_core::pci` before use; [`Mmio`] checks
//! every offset, because drivers compute some from what the device says.

use super::{cpu, paging, smp, BootInfo};
use abi::errno::{Errno, EINVAL, ENOMEM, ENXIO};
use alloc::vec::Vec;
use kernel_core::pci::{self as logic, command, reg, EcamWindow};
pub use kernel_core::pci::{cap, Bar};
use spin::{Mutex, Once};
use x86_64::instructions::port::Port;

/// How config space is reached.
struct ConfigAccess {
    /// ECAM windows from the MCFG, with the virtual address of each.
    ecam: Vec<(EcamWindow, u64)>,
}

static ACCESS: Once<ConfigAccess> = Once::new();
static FUNCTIONS: Once<Vec<PciFunction>> = Once::new();
/// Serialises the two-step legacy port access.
static PORTS: Mutex<()> = Mutex::new(());

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

/// Where a function is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    segment: u16,
    bus: u8,
    device: u8,
    function: u8,
}

impl Location {
    /// The ECAM address of this function's config space, if a window
    /// covers it.
    fn ecam(&self) -> Option<u64> {
        let access = ACCESS.get()?;
        let (window, virt) = access
            .ecam
            .iter()
            .find(|(w, _)| w.covers(self.segment, self.bus))?;
        Some(virt + logic::ecam_offset(window.start_bus, self.bus, self.device, self.function)?)
    }

    /// The legacy address word, for segment 0 only.
    fn legacy(&self, offset: u16) -> Option<u32> {
        if self.segment != 0 {
            return None;
        }
        logic::legacy_address(self.bus, self.device, self.function, offset)
    }

    fn read(&self, offset: u16, size: u16) -> u32 {
        let ones = if size == 4 {
            u32::MAX
        } else {
            (1 << (8 * size)) - 1
        };
        if !offset.is_multiple_of(size) {
            log::error!("pci: unaligned {size}-byte config read at {offset:#x}");
            return ones;
        }
        if let Some(base) = self.ecam() {
            if offset + size > logic::ECAM_CONFIG_SIZE {
                return ones;
            }
            let addr = base + u64::from(offset);
            // SAFETY: `addr` lies in this function's 4 KiB of an ECAM
            // window mapped uncached by `init` (never unmapped), naturally
            // aligned (checked); a config read has no memory effects.
            return unsafe {
                match size {
                    1 => u32::from(core::ptr::read_volatile(addr as *const u8)),
                    2 => u32::from(core::ptr::read_volatile(addr as *const u16)),
                    _ => core::ptr::read_volatile(addr as *const u32),
                }
            };
        }
        let Some(address) = self.legacy(offset) else {
            return ones;
        };
        let shift = 8 * u32::from(offset & 3);
        x86_64::instructions::interrupts::without_interrupts(|| {
            let _guard = PORTS.lock();
            // SAFETY: the PCI configuration mechanism #1 ports; the lock
            // keeps the address/data pair together. Reads have no memory
            // effects.
            let dword = unsafe {
                Port::<u32>::new(CONFIG_ADDRESS).write(address);
                Port::<u32>::new(CONFIG_DATA).read()
            };
            (dword >> shift) & ones
        })
    }

    fn write(&self, offset: u16, size: u16, value: u32) {
        if !offset.is_multiple_of(size) {
            log::error!("pci: unaligned {size}-byte config write at {offset:#x}");
            return;
        }
        if let Some(base) = self.ecam() {
            if offset + size > logic::ECAM_CONFIG_SIZE {
                return;
            }
            let addr = base + u64::from(offset);
            // SAFETY: as in `read`; writing a device's config register
            // changes what the device does, which the caller (a driver
            // owning the function) intends.
            unsafe {
                match size {
                    1 => core::ptr::write_volatile(addr as *mut u8, value as u8),
                    2 => core::ptr::write_volatile(addr as *mut u16, value as u16),
                    _ => core::ptr::write_volatile(addr as *mut u32, value),
                }
            }
            return;
        }
        let Some(address) = self.legacy(offset) else {
            return;
        };
        let port = CONFIG_DATA + (offset & 3);
        x86_64::instructions::interrupts::without_interrupts(|| {
            let _guard = PORTS.lock();
            // SAFETY: as in `read`; a byte or word write to 0xCFC + n
            // writes exactly those bytes of the dword.
            unsafe {
                Port::<u32>::new(CONFIG_ADDRESS).write(address);
                match size {
                    1 => Port::<u8>::new(port).write(value as u8),
                    2 => Port::<u16>::new(port).write(value as u16),
                    _ => Port::<u32>::new(port).write(value),
                }
            }
        });
    }
}

/// One PCI function found at boot.
#[derive(Debug, Clone)]
pub struct PciFunction {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    pub vendor_id: u16,
    pub device_id: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub revision: u8,
    /// Header type without the multi-function bit (0 device, 1 bridge).
    pub header_type: u8,
    /// What the firmware wrote into the interrupt-line register (the
    /// legacy IRQ on `pc`), and which INTx pin (1 = INTA, 0 none).
    pub interrupt_line: u8,
    pub interrupt_pin: u8,
    bars: [Option<Bar>; 6],
}

impl PciFunction {
    fn location(&self) -> Location {
        Location {
            segment: self.segment,
            bus: self.bus,
            device: self.device,
            function: self.function,
        }
    }

    /// A config-space byte; all ones past the reachable space (256 bytes
    /// through ports, 4096 through ECAM).
    pub fn read_config_u8(&self, offset: u16) -> u8 {
        self.location().read(offset, 1) as u8
    }

    /// A config-space word (2-byte aligned, else all ones and a log line).
    pub fn read_config_u16(&self, offset: u16) -> u16 {
        self.location().read(offset, 2) as u16
    }

    /// A config-space dword (4-byte aligned, else all ones and a log line).
    pub fn read_config_u32(&self, offset: u16) -> u32 {
        self.location().read(offset, 4)
    }

    /// Writes a config-space byte (ignored past the reachable space).
    pub fn write_config_u8(&self, offset: u16, value: u8) {
        self.location().write(offset, 1, u32::from(value));
    }

    /// Writes a config-space word (2-byte aligned, else ignored).
    pub fn write_config_u16(&self, offset: u16, value: u16) {
        self.location().write(offset, 2, u32::from(value));
    }

    /// Writes a config-space dword (4-byte aligned, else ignored).
    pub fn write_config_u32(&self, offset: u16, value: u32) {
        self.location().write(offset, 4, value);
    }

    /// The capabilities, `(id, offset)`, in list order (loops and wild
    /// pointers end the walk).
    pub fn capabilities(&self) -> Vec<(u8, u16)> {
        logic::capabilities(|at| self.read_config_u8(at))
    }

    /// The offset of the first capability with `id`.
    pub fn find_capability(&self, id: u8) -> Option<u16> {
        self.capabilities()
            .into_iter()
            .find(|&(found, _)| found == id)
            .map(|(_, at)| at)
    }

    /// BAR `n` (0..=5) as probed at boot; `None` if not implemented. A
    /// 64-bit BAR is reported at its first index, the second is `None`.
    pub fn bar(&self, n: usize) -> Option<Bar> {
        self.bars.get(n).copied().flatten()
    }

    /// Maps memory BAR `n` uncached, whole. `ENXIO` for a missing, I/O or
    /// unassigned (address 0) BAR.
    pub fn map_bar(&self, n: usize) -> Result<Mmio, Errno> {
        let bar = self.bar(n).ok_or(ENXIO)?;
        if !bar.mmio || bar.phys == 0 {
            return Err(ENXIO);
        }
        Mmio::map(bar.phys, bar.size)
    }

    /// Maps `len` bytes at `offset` inside memory BAR `n` uncached (a
    /// register block a capability points to). `EINVAL` if the range is
    /// empty or not inside the BAR, `ENXIO` as for [`PciFunction::map_bar`].
    pub fn map_bar_range(&self, n: usize, offset: u64, len: u64) -> Result<Mmio, Errno> {
        let bar = self.bar(n).ok_or(ENXIO)?;
        if !bar.mmio || bar.phys == 0 {
            return Err(ENXIO);
        }
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if len == 0 || end > bar.size {
            return Err(EINVAL);
        }
        Mmio::map(bar.phys + offset, len)
    }

    /// Turns on memory-space decoding and bus mastering (DMA) and turns off
    /// INTx (drivers use MSI-X or MSI).
    pub fn enable_bus_master(&self) {
        let cmd = self.read_config_u16(reg::COMMAND);
        self.write_config_u16(
            reg::COMMAND,
            cmd | command::MEMORY_SPACE | command::BUS_MASTER | command::INTX_DISABLE,
        );
    }

    /// The function's MSI-X capability with its vector table mapped; `None`
    /// if it has none or its table does not fit its BAR.
    pub fn msix(&self) -> Option<Msix> {
        let cap = self.find_capability(cap::MSIX)?;
        let control = self.read_config_u16(cap + 2);
        let entries = logic::msix_table_size(control);
        let table = logic::msix_location(self.read_config_u32(cap + 4))?;
        let bar = self.bar(usize::from(table.bar))?;
        if !bar.mmio || bar.phys == 0 || !logic::msix_table_fits(table, entries, bar.size) {
            log::warn!(
                "pci {}: MSI-X table ({entries} entries at BAR {} + {:#x}) outside its BAR",
                self.name(),
                table.bar,
                table.offset
            );
            return None;
        }
        let bytes = u64::from(entries) * u64::from(logic::MSIX_ENTRY_SIZE);
        let mmio = Mmio::map(bar.phys + u64::from(table.offset), bytes).ok()?;
        Some(Msix {
            location: self.location(),
            cap,
            entries,
            table: mmio,
        })
    }

    /// Enables plain MSI with one message, `vector` on the local APIC
    /// `apic_id`, for a function that has no MSI-X. `ENXIO` without an MSI
    /// capability.
    pub fn enable_msi(&self, vector: u8, apic_id: u8) -> Result<(), Errno> {
        let cap = self.find_capability(cap::MSI).ok_or(ENXIO)?;
        let control = self.read_config_u16(cap + 2);
        let message = logic::msi_message(vector, apic_id);
        self.write_config_u32(cap + 4, message.address as u32);
        if control & logic::msi::ADDRESS_64 != 0 {
            self.write_config_u32(cap + 8, (message.address >> 32) as u32);
        }
        self.write_config_u16(cap + logic::msi::data_offset(control), message.data as u16);
        let control = (control & !logic::msi::MULTIPLE_ENABLE_MASK) | logic::msi::ENABLE;
        self.write_config_u16(cap + 2, control);
        Ok(())
    }

    /// `bb:dd.f`, with the segment in front when it is not 0.
    pub fn name(&self) -> alloc::string::String {
        if self.segment == 0 {
            alloc::format!("{:02x}:{:02x}.{}", self.bus, self.device, self.function)
        } else {
            alloc::format!(
                "{:04x}:{:02x}:{:02x}.{}",
                self.segment,
                self.bus,
                self.device,
                self.function
            )
        }
    }
}

/// A function's MSI-X vector table.
pub struct Msix {
    location: Location,
    /// Offset of the capability in config space.
    cap: u16,
    entries: u16,
    table: Mmio,
}

impl Msix {
    /// Entries in the vector table.
    pub fn table_size(&self) -> u16 {
        self.entries
    }

    /// Points entry `entry` at `vector` on the local APIC `apic_id`
    /// (leaving its mask bit as it is). `EINVAL` for an entry past the
    /// table.
    pub fn set(&self, entry: u16, vector: u8, apic_id: u8) -> Result<(), Errno> {
        let at = self.entry_offset(entry)?;
        let message = logic::msi_message(vector, apic_id);
        self.table.write32(at, message.address as u32);
        self.table.write32(at + 4, (message.address >> 32) as u32);
        self.table.write32(at + 8, message.data);
        Ok(())
    }

    /// Masks (`true`) or unmasks entry `entry`. `EINVAL` past the table.
    pub fn mask(&self, entry: u16, masked: bool) -> Result<(), Errno> {
        let at = self.entry_offset(entry)? + 12;
        let control = self.table.read32(at);
        let control = if masked {
            control | logic::MSIX_ENTRY_MASKED
        } else {
            control & !logic::MSIX_ENTRY_MASKED
        };
        self.table.write32(at, control);
        Ok(())
    }

    /// Enables MSI-X for the function (and clears its function mask).
    /// Entries stay as masked as they are.
    pub fn enable(&self) {
        let control = self.location.read(self.cap + 2, 2) as u16;
        let control = (control | logic::MSIX_ENABLE) & !logic::MSIX_FUNCTION_MASK;
        self.location.write(self.cap + 2, 2, u32::from(control));
    }

    /// Disables MSI-X for the function.
    pub fn disable(&self) {
        let control = self.location.read(self.cap + 2, 2) as u16;
        self.location
            .write(self.cap + 2, 2, u32::from(control & !logic::MSIX_ENABLE));
    }

    fn entry_offset(&self, entry: u16) -> Result<usize, Errno> {
        if entry >= self.entries {
            return Err(EINVAL);
        }
        Ok(usize::from(entry) * logic::MSIX_ENTRY_SIZE as usize)
    }
}

/// The local APIC id of the CPU that queue `queue` of a device should
/// interrupt: queues spread round robin over the online CPUs.
pub fn target_apic_id(queue: usize) -> u8 {
    let cpus = smp::online().max(1);
    cpu::apic_id_of(queue % cpus)
}

/// A window of device registers, mapped uncached for good. Cloning shares
/// the window. Every access checks its offset: one outside the window or
/// not naturally aligned touches nothing, logs an error, and reads all
/// ones (as a missing device would) or writes nothing.
#[derive(Debug, Clone)]
pub struct Mmio {
    virt: u64,
    len: usize,
    phys: u64,
}

impl Mmio {
    /// Maps `len` bytes of device memory at `phys` uncached.
    pub fn map(phys: u64, len: u64) -> Result<Mmio, Errno> {
        let len_usize = usize::try_from(len).map_err(|_| ENOMEM)?;
        let virt = paging::map_mmio(phys, len)?;
        Ok(Mmio {
            virt,
            len: len_usize,
            phys,
        })
    }

    /// Bytes in the window.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: windows are not empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Physical address of the window.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// A sub-window of `len` bytes at `off` (virtio's capability
    /// structures inside a BAR); `EINVAL` if it is not inside.
    pub fn slice(&self, off: usize, len: usize) -> Result<Mmio, Errno> {
        if len == 0 || !self.contains(off, len) {
            return Err(EINVAL);
        }
        Ok(Mmio {
            virt: self.virt + off as u64,
            len,
            phys: self.phys + off as u64,
        })
    }

    /// Whether `len` bytes at `off` lie inside the window.
    pub fn contains(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len)
    }

    fn addr(&self, off: usize, size: usize) -> Option<u64> {
        if self.contains(off, size) && off.is_multiple_of(size) {
            Some(self.virt + off as u64)
        } else {
            log::error!(
                "mmio: {size}-byte access at offset {off:#x} outside the {:#x}-byte window at {:#x}",
                self.len,
                self.phys
            );
            None
        }
    }

    pub fn read8(&self, off: usize) -> u8 {
        match self.addr(off, 1) {
            // SAFETY: `addr` checked the access lies inside the window,
            // which `map` mapped uncached for good; device registers have
            // no Rust-visible memory semantics.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u8) },
            None => u8::MAX,
        }
    }

    pub fn read16(&self, off: usize) -> u16 {
        match self.addr(off, 2) {
            // SAFETY: as in `read8`, naturally aligned (checked).
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u16) },
            None => u16::MAX,
        }
    }

    pub fn read32(&self, off: usize) -> u32 {
        match self.addr(off, 4) {
            // SAFETY: as in `read16`.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
            None => u32::MAX,
        }
    }

    pub fn read64(&self, off: usize) -> u64 {
        match self.addr(off, 8) {
            // SAFETY: as in `read16`.
            Some(a) => unsafe { core::ptr::read_volatile(a as *const u64) },
            None => u64::MAX,
        }
    }

    pub fn write8(&self, off: usize, value: u8) {
        if let Some(a) = self.addr(off, 1) {
            // SAFETY: as in `read8`.
            unsafe { core::ptr::write_volatile(a as *mut u8, value) }
        }
    }

    pub fn write16(&self, off: usize, value: u16) {
        if let Some(a) = self.addr(off, 2) {
            // SAFETY: as in `read16`.
            unsafe { core::ptr::write_volatile(a as *mut u16, value) }
        }
    }

    pub fn write32(&self, off: usize, value: u32) {
        if let Some(a) = self.addr(off, 4) {
            // SAFETY: as in `read16`.
            unsafe { core::ptr::write_volatile(a as *mut u32, value) }
        }
    }

    pub fn write64(&self, off: usize, value: u64) {
        if let Some(a) = self.addr(off, 8) {
            // SAFETY: as in `read16`.
            unsafe { core::ptr::write_volatile(a as *mut u64, value) }
        }
    }
}

/// The functions [`init`] found, in bus order (empty before it).
pub fn functions() -> &'static [PciFunction] {
    FUNCTIONS.get().map(Vec::as_slice).unwrap_or(&[])
}

/// Finds config space (MCFG, else ports), enumerates every function and
/// logs one line each. Must run after the heap works and before the first
/// process (it creates the MMIO windows' page-table slot). Once.
pub fn init(boot: &BootInfo) {
    if let Err(e) = paging::init_mmio() {
        log::error!("pci: cannot set up MMIO mappings: {e}");
    }
    ACCESS.call_once(|| ConfigAccess {
        ecam: ecam_windows(boot),
    });
    FUNCTIONS.call_once(enumerate);
}

/// The MCFG's ECAM windows, each mapped.
fn ecam_windows(boot: &BootInfo) -> Vec<(EcamWindow, u64)> {
    let mut mapped = Vec::new();
    let Some(root) = smp::acpi_root(boot) else {
        return mapped;
    };
    let (addr, signature) = match root {
        kernel_core::acpi::RootTable::Rsdt(a) => (a, b"RSDT"),
        kernel_core::acpi::RootTable::Xsdt(a) => (a, b"XSDT"),
    };
    let Some(table) = smp::read_table(addr, signature) else {
        return mapped;
    };
    let Some(mcfg) = kernel_core::acpi::root_entries(table, root)
        .into_iter()
        .find_map(|entry| smp::read_table(entry, b"MCFG"))
    else {
        log::info!("pci: no MCFG; config space through ports 0xCF8/0xCFC");
        return mapped;
    };
    for window in kernel_core::acpi::parse_mcfg(mcfg) {
        match paging::map_mmio(window.base, window.bytes()) {
            Ok(virt) => {
                log::info!(
                    "pci: ECAM segment {} buses {:02x}-{:02x} at {:#x}",
                    window.segment,
                    window.start_bus,
                    window.end_bus,
                    window.base
                );
                mapped.push((window, virt));
            }
            Err(e) => log::warn!("pci: cannot map ECAM at {:#x}: {e}", window.base),
        }
    }
    mapped
}

/// Every function on every bus that config access reaches.
fn enumerate() -> Vec<PciFunction> {
    // (segment, first bus, last bus) ranges to scan.
    let mut ranges: Vec<(u16, u8, u8)> = ACCESS
        .get()
        .map(|a| {
            a.ecam
                .iter()
                .map(|(w, _)| (w.segment, w.start_bus, w.end_bus))
                .collect()
        })
        .unwrap_or_default();
    if !ranges.iter().any(|&(segment, _, _)| segment == 0) {
        ranges.push((0, 0, 255));
    }
    let mut found = Vec::new();
    for (segment, first, last) in ranges {
        for bus in first..=last {
            for device in 0..32 {
                let location = Location {
                    segment,
                    bus,
                    device,
                    function: 0,
                };
                if location.read(reg::VENDOR_ID, 2) == 0xFFFF {
                    continue;
                }
                let multi = location.read(reg::HEADER_TYPE, 1) & 0x80 != 0;
                for function in 0..if multi { 8 } else { 1 } {
                    let location = Location {
                        function,
                        ..location
                    };
                    if let Some(f) = probe(location) {
                        log::info!(
                            "pci {} {:04x}:{:04x} class {:02x}.{:02x}.{:02x}",
                            f.name(),
                            f.vendor_id,
                            f.device_id,
                            f.class,
                            f.subclass,
                            f.prog_if
                        );
                        log::debug!(
                            "pci {}: capabilities {:x?}, BARs {:x?}",
                            f.name(),
                            f.capabilities(),
                            f.bars
                        );
                        found.push(f);
                    }
                }
            }
        }
    }
    found
}

/// Reads a present function's header and sizes its BARs.
fn probe(location: Location) -> Option<PciFunction> {
    let vendor_id = location.read(reg::VENDOR_ID, 2) as u16;
    if vendor_id == 0xFFFF {
        return None;
    }
    let header_type = (location.read(reg::HEADER_TYPE, 1) & 0x7F) as u8;
    let mut function = PciFunction {
        segment: location.segment,
        bus: location.bus,
        device: location.device,
        function: location.function,
        vendor_id,
        device_id: location.read(reg::DEVICE_ID, 2) as u16,
        class: location.read(reg::CLASS, 1) as u8,
        subclass: location.read(reg::SUBCLASS, 1) as u8,
        prog_if: location.read(reg::PROG_IF, 1) as u8,
        revision: location.read(reg::REVISION, 1) as u8,
        header_type,
        interrupt_line: location.read(reg::INTERRUPT_LINE, 1) as u8,
        interrupt_pin: location.read(reg::INTERRUPT_PIN, 1) as u8,
        bars: [None; 6],
    };
    let count = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    if count > 0 {
        // Size the BARs with decoding off, so that the all-ones probe
        // value never decodes as an address.
        let cmd = location.read(reg::COMMAND, 2) as u16;
        location.write(
            reg::COMMAND,
            2,
            u32::from(cmd & !(command::IO_SPACE | command::MEMORY_SPACE)),
        );
        let mut n = 0;
        while n < count {
            let at = reg::BAR0 + 4 * n as u16;
            let low = location.read(at, 4);
            let wide = matches!(logic::bar_kind(low), logic::BarKind::Memory64 { .. });
            let probe_low = probe_register(location, at, low);
            let (high, probe_high) = if wide && n + 1 < count {
                let high = location.read(at + 4, 4);
                (high, probe_register(location, at + 4, high))
            } else {
                (0, 0)
            };
            function.bars[n] = logic::decode_bar(low, high, probe_low, probe_high);
            n += if wide { 2 } else { 1 };
        }
        location.write(reg::COMMAND, 2, u32::from(cmd));
    }
    Some(function)
}

/// Writes all ones to a BAR register, reads what sticks, restores it.
fn probe_register(location: Location, at: u16, value: u32) -> u32 {
    location.write(at, 4, u32::MAX);
    let probed = location.read(at, 4);
    location.write(at, 4, value);
    probed
}
