//! What the boot loader told us, copied out of its structures before any
//! memory is handed out: command line, usable memory, modules.
//!
//! Two protocols lead here: multiboot2 (GRUB, on BIOS or UEFI) and PVH
//! (`qemu -kernel`). Both are reduced to one [`BootInfo`].

use super::{phys_to_virt, DIRECT_MAP_SIZE, MULTIBOOT2_MAGIC, PVH_MAGIC};
use kernel_core::console::text::{Channel, Geometry};

const MAX_REGIONS: usize = 128;
const MAX_MODULES: usize = 8;
const CMDLINE_MAX: usize = 1024;

/// A physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

/// The boot loader's information, copied.
pub struct BootInfo {
    pub protocol: &'static str,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    usable: [PhysRange; MAX_REGIONS],
    usable_len: usize,
    modules: [PhysRange; MAX_MODULES],
    modules_len: usize,
    /// Where the boot loader's own structures were (reserved until copied).
    pub info: PhysRange,
    /// The ACPI root table, if the boot loader handed over the RSDP.
    pub acpi_root: Option<kernel_core::acpi::RootTable>,
    /// A linear RGB framebuffer the boot loader set up (multiboot2 only:
    /// PVH has none): its physical address and layout.
    pub framebuffer: Option<(u64, Geometry)>,
    /// Problems met while reading the information (reported once logging works).
    pub warnings: [Option<&'static str>; 4],
}

impl BootInfo {
    const fn empty(protocol: &'static str) -> Self {
        Self {
            protocol,
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
            usable: [PhysRange { start: 0, end: 0 }; MAX_REGIONS],
            usable_len: 0,
            modules: [PhysRange { start: 0, end: 0 }; MAX_MODULES],
            modules_len: 0,
            info: PhysRange { start: 0, end: 0 },
            acpi_root: None,
            framebuffer: None,
            warnings: [None; 4],
        }
    }

    fn warn(&mut self, message: &'static str) {
        if let Some(slot) = self.warnings.iter_mut().find(|w| w.is_none()) {
            *slot = Some(message);
        }
    }

    /// The kernel command line (lossy: invalid UTF-8 is cut at the first
    /// bad byte, with a warning).
    pub fn cmdline(&self) -> &str {
        let bytes = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Usable RAM within the direct map.
    pub fn usable(&self) -> &[PhysRange] {
        &self.usable[..self.usable_len]
    }

    /// Boot modules (the first one is the initrd).
    pub fn modules(&self) -> &[PhysRange] {
        &self.modules[..self.modules_len]
    }

    fn set_cmdline(&mut self, bytes: &[u8]) {
        let len = bytes.len().min(CMDLINE_MAX);
        if len < bytes.len() {
            self.warn("command line longer than 1024 bytes was cut");
        }
        self.cmdline[..len].copy_from_slice(&bytes[..len]);
        self.cmdline_len = len;
    }

    fn add_usable(&mut self, start: u64, end: u64) {
        let end = end.min(DIRECT_MAP_SIZE);
        if start >= end {
            return;
        }
        if self.usable_len == MAX_REGIONS {
            self.warn("too many memory regions; the rest is ignored");
            return;
        }
        self.usable[self.usable_len] = PhysRange { start, end };
        self.usable_len += 1;
    }

    fn add_module(&mut self, start: u64, end: u64) {
        if end <= start || end > DIRECT_MAP_SIZE {
            self.warn("a boot module outside the first 4 GiB was ignored");
            return;
        }
        if self.modules_len == MAX_MODULES {
            self.warn("too many boot modules; the rest are ignored");
            return;
        }
        self.modules[self.modules_len] = PhysRange { start, end };
        self.modules_len += 1;
    }
}

/// Reads the boot information handed over with `magic` at `info_phys`.
/// Returns `None` for an unknown protocol.
pub fn read(magic: u32, info_phys: u64) -> Option<BootInfo> {
    match magic {
        MULTIBOOT2_MAGIC => Some(read_multiboot2(info_phys)),
        PVH_MAGIC => Some(read_pvh(info_phys)),
        _ => None,
    }
}

/// Reads a NUL-terminated string of at most `CMDLINE_MAX` bytes.
fn c_string(phys: u64) -> &'static [u8] {
    if phys == 0 || phys >= DIRECT_MAP_SIZE - CMDLINE_MAX as u64 {
        return &[];
    }
    // SAFETY: `phys` lies in the direct map (checked above), which maps all
    // of the first 4 GiB; the boot loader put a string there.
    let bytes =
        unsafe { core::slice::from_raw_parts(phys_to_virt(phys) as *const u8, CMDLINE_MAX) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(0);
    &bytes[..len]
}

fn read_multiboot2(info_phys: u64) -> BootInfo {
    use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};
    let mut info = BootInfo::empty("multiboot2");
    // SAFETY: GRUB passed `info_phys` in ebx together with the multiboot2
    // magic; the structure is in the first 4 GiB, which the direct map covers.
    let mbi = match unsafe {
        BootInformation::load(phys_to_virt(info_phys) as *const BootInformationHeader)
    } {
        Ok(mbi) => mbi,
        Err(_) => {
            info.warn("multiboot2 information is malformed");
            return info;
        }
    };
    info.info = PhysRange {
        start: info_phys,
        end: info_phys + mbi.total_size() as u64,
    };
    if let Some(tag) = mbi.command_line_tag() {
        match tag.cmdline() {
            Ok(s) => info.set_cmdline(s.as_bytes()),
            Err(_) => info.warn("multiboot2 command line is not valid UTF-8"),
        }
    }
    match mbi.memory_map_tag() {
        Some(map) => {
            for area in map.memory_areas() {
                if area.typ() == MemoryAreaType::Available {
                    info.add_usable(area.start_address(), area.end_address());
                }
            }
        }
        None => info.warn("multiboot2 information has no memory map"),
    }
    if let Some(tag) = mbi.rsdp_v2_tag() {
        info.acpi_root = Some(kernel_core::acpi::RootTable::Xsdt(tag.xsdt_address() as u64));
    } else if let Some(tag) = mbi.rsdp_v1_tag() {
        info.acpi_root = Some(kernel_core::acpi::RootTable::Rsdt(tag.rsdt_address() as u64));
    }
    match mbi.framebuffer_tag() {
        Some(Ok(tag)) => match tag.buffer_type() {
            Ok(multiboot2::FramebufferType::RGB { red, green, blue }) => {
                let channel = |f: multiboot2::FramebufferField| Channel {
                    shift: f.position,
                    bits: f.size,
                };
                info.framebuffer = Some((
                    tag.address(),
                    Geometry {
                        width: tag.width() as usize,
                        height: tag.height() as usize,
                        pitch: tag.pitch() as usize,
                        bits_per_pixel: tag.bpp(),
                        red: channel(red),
                        green: channel(green),
                        blue: channel(blue),
                    },
                ));
            }
            _ => info.warn("the boot loader's framebuffer is not RGB (text or indexed): not used"),
        },
        Some(Err(_)) => info.warn("the boot loader's framebuffer has an unknown type: not used"),
        None => {}
    }
    for module in mbi.module_tags() {
        info.add_module(
            u64::from(module.start_address()),
            u64::from(module.end_address()),
        );
    }
    info
}

/// `struct hvm_start_info` (version 1) from Xen's `arch-x86/hvm/start_info.h`.
#[repr(C)]
struct HvmStartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct HvmModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct HvmMemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

const E820_RAM: u32 = 1;

fn read_pvh(info_phys: u64) -> BootInfo {
    let mut info = BootInfo::empty("pvh");
    let size = core::mem::size_of::<HvmStartInfo>() as u64;
    if info_phys == 0 || info_phys + size > DIRECT_MAP_SIZE {
        info.warn("PVH start info is out of range");
        return info;
    }
    // SAFETY: the PVH loader passed this address in ebx; it is in the direct
    // map (checked) and holds a `hvm_start_info`.
    let start =
        unsafe { core::ptr::read_unaligned(phys_to_virt(info_phys) as *const HvmStartInfo) };
    info.info = PhysRange {
        start: info_phys,
        end: info_phys + size,
    };
    if start.magic != PVH_MAGIC {
        info.warn("PVH start info has a bad magic");
        return info;
    }
    info.set_cmdline(c_string(start.cmdline_paddr));
    if start.rsdp_paddr != 0
        && start.rsdp_paddr + kernel_core::acpi::RSDP_LEN as u64 <= DIRECT_MAP_SIZE
    {
        // SAFETY: in the direct map (checked); the loader put an RSDP there.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                phys_to_virt(start.rsdp_paddr) as *const u8,
                kernel_core::acpi::RSDP_LEN,
            )
        };
        info.acpi_root = kernel_core::acpi::parse_rsdp(bytes).ok();
    }
    for i in 0..u64::from(start.nr_modules.min(MAX_MODULES as u32)) {
        let at = start.modlist_paddr + i * core::mem::size_of::<HvmModlistEntry>() as u64;
        if at + 32 > DIRECT_MAP_SIZE {
            break;
        }
        // SAFETY: in the direct map (checked); the loader wrote the list.
        let module =
            unsafe { core::ptr::read_unaligned(phys_to_virt(at) as *const HvmModlistEntry) };
        info.add_module(module.paddr, module.paddr.saturating_add(module.size));
    }
    if start.version >= 1 && start.memmap_paddr != 0 {
        for i in 0..u64::from(start.memmap_entries.min(MAX_REGIONS as u32 * 2)) {
            let at = start.memmap_paddr + i * core::mem::size_of::<HvmMemmapEntry>() as u64;
            if at + 24 > DIRECT_MAP_SIZE {
                break;
            }
            // SAFETY: in the direct map (checked); the loader wrote the map.
            let entry =
                unsafe { core::ptr::read_unaligned(phys_to_virt(at) as *const HvmMemmapEntry) };
            if entry.kind == E820_RAM {
                info.add_usable(entry.addr, entry.addr.saturating_add(entry.size));
            }
        }
    } else {
        info.warn("PVH start info has no memory map");
    }
    info
}
