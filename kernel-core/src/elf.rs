//! Checking a static ELF64 x86_64 executable and turning it into a load plan.
//!
//! [`parse_exec`] reads only the ELF header and program headers and returns
//! an [`ExecImage`]: the entry point and the `PT_LOAD` segments to map. The
//! image is untrusted (it comes from a file user space can write), so every
//! field is checked with checked arithmetic and a malformed image is an
//! [`ElfError`], never a panic.
//!
//! Invariants of a returned [`ExecImage`]:
//! - There is at least one segment, and every segment has `mem_size > 0`
//!   (empty `PT_LOAD`s are checked, then left out of the plan).
//! - Each segment's file bytes `file_offset..file_offset + file_size` lie
//!   inside the image that was checked, and `file_size <= mem_size`.
//! - Each segment lies in `USER_MIN..USER_STACK_BOTTOM`, and
//!   `vaddr % PAGE_SIZE == file_offset % PAGE_SIZE`.
//! - No two segments touch the same page; together they span at most
//!   [`MAX_IMAGE_PAGES`] pages.
//! - `entry` lies inside a segment with [`SegmentFlags::EXEC`].

use abi::errno::Errno;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use abi::errno;
use abi::layout::{PAGE_SIZE, USER_MIN, USER_STACK_BOTTOM};

/// The most pages all segments of an image may span together: 64 MiB.
pub const MAX_IMAGE_PAGES: u64 = 16384;
/// The most program headers an image may have.
pub const MAX_PHDRS: usize = 16;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

bitflags::bitflags! {
    /// Access a segment needs; the bits are ELF's `PF_*` values.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SegmentFlags: u32 {
        const EXEC = 1;
        const WRITE = 2;
        const READ = 4;
    }
}

/// One `PT_LOAD` segment: map `mem_size` bytes at `vaddr`, the first
/// `file_size` of them copied from the image at `file_offset`, the rest zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub mem_size: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub flags: SegmentFlags,
}

impl Segment {
    /// The address of the first page the segment touches and how many pages
    /// it touches.
    pub fn page_range(&self) -> (u64, u64) {
        let first = self.vaddr & !(PAGE_SIZE - 1);
        // Cannot overflow for a checked segment: vaddr + mem_size is at most
        // USER_STACK_BOTTOM, which is page aligned.
        let end = (self.vaddr + self.mem_size).next_multiple_of(PAGE_SIZE);
        (first, (end - first) / PAGE_SIZE)
    }

    /// The segment's bytes in the image it was parsed from:
    /// `&image[seg.file_range()]`. Valid (in range) for that image only.
    pub fn file_range(&self) -> Range<usize> {
        // Both ends were checked to be within the image, hence fit a usize.
        self.file_offset as usize..(self.file_offset + self.file_size) as usize
    }

    /// Whether `addr` is inside the segment.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.vaddr && addr - self.vaddr < self.mem_size
    }
}

/// What the loader needs from a checked executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecImage {
    /// Where execution starts.
    pub entry: u64,
    /// The segments to map, in program header order.
    pub segments: Vec<Segment>,
}

impl ExecImage {
    /// Pages the segments span in total (at most [`MAX_IMAGE_PAGES`]).
    pub fn total_pages(&self) -> u64 {
        self.segments.iter().map(|s| s.page_range().1).sum()
    }
}

/// Why an image is not a loadable executable. `index` is the position of
/// the offending program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header.
    Truncated,
    /// Does not start with `\x7fELF`.
    BadMagic,
    /// Not ELFCLASS64.
    NotElf64,
    /// Not little endian.
    NotLittleEndian,
    /// `EI_VERSION` or `e_version` is not `EV_CURRENT`.
    BadVersion,
    /// `e_type` is not `ET_EXEC` (shared objects and PIEs included).
    NotExecutable { e_type: u16 },
    /// `e_machine` is not x86_64.
    WrongMachine { machine: u16 },
    /// `e_phentsize` is not 56.
    BadPhentsize { size: u16 },
    /// `e_phnum` is 0 or more than [`MAX_PHDRS`].
    BadPhnum { count: u16 },
    /// The program header table does not fit in the file.
    PhdrsOutOfFile,
    /// No `PT_LOAD` program header.
    NoLoadSegment,
    /// A `PT_INTERP` or `PT_DYNAMIC` header: dynamic linking is unsupported.
    Dynamic,
    /// `p_filesz > p_memsz`.
    FileSizeExceedsMemSize { index: usize },
    /// `p_offset + p_filesz` is past the end of the file.
    SegmentOutOfFile { index: usize },
    /// `p_vaddr + p_memsz` overflows.
    AddressOverflow { index: usize },
    /// Below `USER_MIN`, or reaching the stack or the kernel half.
    OutsideUserRange { index: usize },
    /// `p_vaddr` and `p_offset` differ modulo the page size.
    Misaligned { index: usize },
    /// `p_align` is neither 0 nor a power of two.
    BadAlignment { index: usize },
    /// Two segments share a page.
    Overlapping { first: usize, second: usize },
    /// The segments span more than [`MAX_IMAGE_PAGES`] pages.
    TooLarge { pages: u64 },
    /// The entry point is not inside an executable segment.
    EntryNotExecutable { entry: u64 },
}

impl ElfError {
    /// The errno `spawn` reports: `E2BIG` for an image too large to load,
    /// `ENOEXEC` for everything else.
    pub fn errno(&self) -> Errno {
        match self {
            ElfError::TooLarge { .. } => errno::E2BIG,
            _ => errno::ENOEXEC,
        }
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Truncated => f.write_str("shorter than an ELF header"),
            ElfError::BadMagic => f.write_str("not an ELF file"),
            ElfError::NotElf64 => f.write_str("not ELF64"),
            ElfError::NotLittleEndian => f.write_str("not little endian"),
            ElfError::BadVersion => f.write_str("unknown ELF version"),
            ElfError::NotExecutable { e_type } => {
                write!(f, "e_type {e_type} is not ET_EXEC (static executable)")
            }
            ElfError::WrongMachine { machine } => write!(f, "e_machine {machine} is not x86_64"),
            ElfError::BadPhentsize { size } => write!(f, "program header size {size}, not 56"),
            ElfError::BadPhnum { count } => {
                write!(f, "{count} program headers, not 1..={MAX_PHDRS}")
            }
            ElfError::PhdrsOutOfFile => f.write_str("program headers outside the file"),
            ElfError::NoLoadSegment => f.write_str("no PT_LOAD segment"),
            ElfError::Dynamic => f.write_str("dynamically linked"),
            ElfError::FileSizeExceedsMemSize { index } => {
                write!(f, "segment {index}: file size exceeds memory size")
            }
            ElfError::SegmentOutOfFile { index } => {
                write!(f, "segment {index}: data outside the file")
            }
            ElfError::AddressOverflow { index } => {
                write!(f, "segment {index}: address overflows")
            }
            ElfError::OutsideUserRange { index } => {
                write!(f, "segment {index}: outside the user image range")
            }
            ElfError::Misaligned { index } => {
                write!(
                    f,
                    "segment {index}: address and offset differ within a page"
                )
            }
            ElfError::BadAlignment { index } => {
                write!(f, "segment {index}: alignment is not a power of two")
            }
            ElfError::Overlapping { first, second } => {
                write!(f, "segments {first} and {second} share a page")
            }
            ElfError::TooLarge { pages } => {
                write!(f, "{pages} pages, more than {MAX_IMAGE_PAGES}")
            }
            ElfError::EntryNotExecutable { entry } => {
                write!(f, "entry {entry:#x} is not in an executable segment")
            }
        }
    }
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    let mut raw = [0; 2];
    raw.copy_from_slice(&bytes[offset..offset + 2]);
    u16::from_le_bytes(raw)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut raw = [0; 4];
    raw.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut raw = [0; 8];
    raw.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(raw)
}

/// Checks `image` and returns its load plan.
pub fn parse_exec(image: &[u8]) -> Result<ExecImage, ElfError> {
    // From here on every fixed-offset read is within these 64 bytes.
    let header = image.get(..EHDR_SIZE).ok_or(ElfError::Truncated)?;
    if header[..4] != ELF_MAGIC {
        return Err(ElfError::BadMagic);
    }
    if header[4] != ELFCLASS64 {
        return Err(ElfError::NotElf64);
    }
    if header[5] != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian);
    }
    if header[6] != EV_CURRENT || u32_at(header, 20) != u32::from(EV_CURRENT) {
        return Err(ElfError::BadVersion);
    }
    let e_type = u16_at(header, 16);
    if e_type != ET_EXEC {
        return Err(ElfError::NotExecutable { e_type });
    }
    let machine = u16_at(header, 18);
    if machine != EM_X86_64 {
        return Err(ElfError::WrongMachine { machine });
    }
    let entry = u64_at(header, 24);
    let phoff = u64_at(header, 32);
    let phentsize = u16_at(header, 54);
    if usize::from(phentsize) != PHDR_SIZE {
        return Err(ElfError::BadPhentsize { size: phentsize });
    }
    let phnum = u16_at(header, 56);
    if phnum == 0 || usize::from(phnum) > MAX_PHDRS {
        return Err(ElfError::BadPhnum { count: phnum });
    }
    let phdrs = usize::try_from(phoff)
        .ok()
        .and_then(|start| Some(start..start.checked_add(usize::from(phnum) * PHDR_SIZE)?))
        .and_then(|range| image.get(range))
        .ok_or(ElfError::PhdrsOutOfFile)?;

    let mut segments = Vec::new();
    // Program header index of each segment, for error reports.
    let mut indices = Vec::new();
    let mut saw_load = false;
    for (index, phdr) in phdrs.chunks_exact(PHDR_SIZE).enumerate() {
        match u32_at(phdr, 0) {
            PT_LOAD => {}
            PT_INTERP | PT_DYNAMIC => return Err(ElfError::Dynamic),
            _ => continue,
        }
        saw_load = true;
        let segment = check_load(image, index, phdr)?;
        if segment.mem_size > 0 {
            segments.push(segment);
            indices.push(index);
        }
    }
    if !saw_load {
        return Err(ElfError::NoLoadSegment);
    }

    for (i, a) in segments.iter().enumerate() {
        let (a_start, a_pages) = a.page_range();
        for (j, b) in segments.iter().enumerate().skip(i + 1) {
            let (b_start, b_pages) = b.page_range();
            if a_start < b_start + b_pages * PAGE_SIZE && b_start < a_start + a_pages * PAGE_SIZE {
                return Err(ElfError::Overlapping {
                    first: indices[i],
                    second: indices[j],
                });
            }
        }
    }

    let image = ExecImage { entry, segments };
    let pages = image.total_pages();
    if pages > MAX_IMAGE_PAGES {
        return Err(ElfError::TooLarge { pages });
    }
    if !image
        .segments
        .iter()
        .any(|s| s.flags.contains(SegmentFlags::EXEC) && s.contains(entry))
    {
        return Err(ElfError::EntryNotExecutable { entry });
    }
    Ok(image)
}

/// Checks one `PT_LOAD` program header (56 bytes) against the image.
fn check_load(image: &[u8], index: usize, phdr: &[u8]) -> Result<Segment, ElfError> {
    let flags = SegmentFlags::from_bits_truncate(u32_at(phdr, 4));
    let file_offset = u64_at(phdr, 8);
    let vaddr = u64_at(phdr, 16);
    let file_size = u64_at(phdr, 32);
    let mem_size = u64_at(phdr, 40);
    let align = u64_at(phdr, 48);

    if file_size > mem_size {
        return Err(ElfError::FileSizeExceedsMemSize { index });
    }
    match file_offset.checked_add(file_size) {
        Some(end) if end <= image.len() as u64 => {}
        _ => return Err(ElfError::SegmentOutOfFile { index }),
    }
    let end = vaddr
        .checked_add(mem_size)
        .ok_or(ElfError::AddressOverflow { index })?;
    if vaddr < USER_MIN || end > USER_STACK_BOTTOM {
        return Err(ElfError::OutsideUserRange { index });
    }
    if vaddr % PAGE_SIZE != file_offset % PAGE_SIZE {
        return Err(ElfError::Misaligned { index });
    }
    if align != 0 && !align.is_power_of_two() {
        return Err(ElfError::BadAlignment { index });
    }
    Ok(Segment {
        vaddr,
        mem_size,
        file_offset,
        file_size,
        flags,
    })
}

impl From<ElfError> for Errno {
    fn from(e: ElfError) -> Errno {
        e.errno()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::layout::USER_IMAGE_BASE;
    use alloc::vec;

    const R: u32 = 4;
    const W: u32 = 2;
    const X: u32 = 1;

    /// A program header as the test writes it.
    #[derive(Clone, Copy)]
    struct Ph {
        p_type: u32,
        flags: u32,
        offset: u64,
        vaddr: u64,
        filesz: u64,
        memsz: u64,
        align: u64,
    }

    fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
        Ph {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            filesz,
            memsz,
            align: PAGE_SIZE,
        }
    }

    /// Header fields the tests change.
    struct Hdr {
        class: u8,
        data: u8,
        version: u8,
        e_type: u16,
        machine: u16,
        e_version: u32,
        entry: u64,
        phoff: u64,
        phentsize: u16,
        phnum: Option<u16>,
    }

    impl Default for Hdr {
        fn default() -> Self {
            Hdr {
                class: ELFCLASS64,
                data: ELFDATA2LSB,
                version: EV_CURRENT,
                e_type: ET_EXEC,
                machine: EM_X86_64,
                e_version: 1,
                entry: USER_IMAGE_BASE + 0x1000,
                phoff: EHDR_SIZE as u64,
                phentsize: PHDR_SIZE as u16,
                phnum: None,
            }
        }
    }

    /// An image: header, program headers right after it, and the file
    /// extended with a recognisable pattern up to the end of the furthest
    /// segment's file bytes.
    fn build(hdr: &Hdr, phdrs: &[Ph]) -> Vec<u8> {
        let mut image = vec![0u8; EHDR_SIZE];
        image[..4].copy_from_slice(&ELF_MAGIC);
        image[4] = hdr.class;
        image[5] = hdr.data;
        image[6] = hdr.version;
        image[16..18].copy_from_slice(&hdr.e_type.to_le_bytes());
        image[18..20].copy_from_slice(&hdr.machine.to_le_bytes());
        image[20..24].copy_from_slice(&hdr.e_version.to_le_bytes());
        image[24..32].copy_from_slice(&hdr.entry.to_le_bytes());
        image[32..40].copy_from_slice(&hdr.phoff.to_le_bytes());
        image[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
        image[54..56].copy_from_slice(&hdr.phentsize.to_le_bytes());
        let phnum = hdr.phnum.unwrap_or(phdrs.len() as u16);
        image[56..58].copy_from_slice(&phnum.to_le_bytes());
        for ph in phdrs {
            let mut raw = [0u8; PHDR_SIZE];
            raw[0..4].copy_from_slice(&ph.p_type.to_le_bytes());
            raw[4..8].copy_from_slice(&ph.flags.to_le_bytes());
            raw[8..16].copy_from_slice(&ph.offset.to_le_bytes());
            raw[16..24].copy_from_slice(&ph.vaddr.to_le_bytes());
            raw[24..32].copy_from_slice(&ph.vaddr.to_le_bytes());
            raw[32..40].copy_from_slice(&ph.filesz.to_le_bytes());
            raw[40..48].copy_from_slice(&ph.memsz.to_le_bytes());
            raw[48..56].copy_from_slice(&ph.align.to_le_bytes());
            image.extend_from_slice(&raw);
        }
        let end = phdrs
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .filter_map(|ph| ph.offset.checked_add(ph.filesz))
            .filter(|&end| end < 1 << 20)
            .max()
            .unwrap_or(0) as usize;
        while image.len() < end {
            image.push(image.len() as u8);
        }
        image
    }

    /// A typical static program: text, read-only data, data + bss.
    fn valid_phdrs() -> Vec<Ph> {
        let base = USER_IMAGE_BASE;
        vec![
            Ph {
                p_type: 0x6474_e551, // PT_GNU_STACK: ignored
                flags: R | W,
                offset: 0,
                vaddr: 0,
                filesz: 0,
                memsz: 0,
                align: 16,
            },
            load(R | X, 0x1000, base + 0x1000, 0x1234, 0x1234),
            load(R, 0x3000, base + 0x3000, 0x100, 0x100),
            load(R | W, 0x4010, base + 0x4010, 0x20, 0x3000),
            Ph {
                p_type: 4, // PT_NOTE: ignored
                flags: R,
                offset: 0x3000,
                vaddr: base + 0x3000,
                filesz: 0x10,
                memsz: 0x10,
                align: 4,
            },
        ]
    }

    fn valid() -> Vec<u8> {
        build(&Hdr::default(), &valid_phdrs())
    }

    fn parse_with(hdr: Hdr, phdrs: &[Ph]) -> Result<ExecImage, ElfError> {
        parse_exec(&build(&hdr, phdrs))
    }

    fn parse_phdrs(phdrs: &[Ph]) -> Result<ExecImage, ElfError> {
        parse_with(Hdr::default(), phdrs)
    }

    #[test]
    fn valid_image() {
        let image = valid();
        let exec = parse_exec(&image).unwrap();
        assert_eq!(exec.entry, USER_IMAGE_BASE + 0x1000);
        let base = USER_IMAGE_BASE;
        assert_eq!(
            exec.segments,
            [
                Segment {
                    vaddr: base + 0x1000,
                    mem_size: 0x1234,
                    file_offset: 0x1000,
                    file_size: 0x1234,
                    flags: SegmentFlags::READ | SegmentFlags::EXEC,
                },
                Segment {
                    vaddr: base + 0x3000,
                    mem_size: 0x100,
                    file_offset: 0x3000,
                    file_size: 0x100,
                    flags: SegmentFlags::READ,
                },
                Segment {
                    vaddr: base + 0x4010,
                    mem_size: 0x3000,
                    file_offset: 0x4010,
                    file_size: 0x20,
                    flags: SegmentFlags::READ | SegmentFlags::WRITE,
                },
            ]
        );
        assert_eq!(exec.segments[0].page_range(), (base + 0x1000, 2));
        assert_eq!(exec.segments[1].page_range(), (base + 0x3000, 1));
        // 0x4010..0x7010 touches pages 0x4000, 0x5000, 0x6000, 0x7000.
        assert_eq!(exec.segments[2].page_range(), (base + 0x4000, 4));
        assert_eq!(exec.total_pages(), 7);
        let data = &image[exec.segments[2].file_range()];
        assert_eq!(data.len(), 0x20);
        assert_eq!(data[0], 0x10);
        assert_eq!(image.len(), 0x4030, "last segment ends the file");
    }

    #[test]
    fn every_truncation_fails() {
        let image = valid();
        for len in 0..image.len() {
            assert!(parse_exec(&image[..len]).is_err(), "prefix of {len} bytes");
        }
        assert!(parse_exec(&image).is_ok());
        // Extra bytes at the end are fine.
        let mut longer = image.clone();
        longer.extend_from_slice(&[0; 100]);
        assert!(parse_exec(&longer).is_ok());
    }

    #[test]
    fn flipping_any_header_byte_never_panics() {
        let image = valid();
        let headers = EHDR_SIZE + PHDR_SIZE * valid_phdrs().len();
        for i in 0..headers {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = image.clone();
                bad[i] = value;
                let _ = parse_exec(&bad);
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_9abc_def1_u64;
        for len in [0, 1, 63, 64, 65, 120, 200, 1000] {
            for _ in 0..200 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                let _ = parse_exec(&bytes);
                // Also with a valid identification, so later checks run.
                if len >= EHDR_SIZE {
                    bytes[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
                    bytes[16..24].copy_from_slice(&[2, 0, 62, 0, 1, 0, 0, 0]);
                    bytes[54..58].copy_from_slice(&[56, 0, 2, 0]);
                    bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
                    let _ = parse_exec(&bytes);
                }
            }
        }
    }

    #[test]
    fn bad_identification() {
        let mut image = valid();
        image[0] = b'x';
        assert_eq!(parse_exec(&image), Err(ElfError::BadMagic));
        assert_eq!(parse_exec(b""), Err(ElfError::Truncated));
        assert_eq!(parse_exec(&[0x7f; 63]), Err(ElfError::Truncated));
        let phdrs = valid_phdrs();
        let hdr = |f: fn(&mut Hdr)| {
            let mut h = Hdr::default();
            f(&mut h);
            h
        };
        assert_eq!(
            parse_with(hdr(|h| h.class = 1), &phdrs),
            Err(ElfError::NotElf64)
        );
        assert_eq!(
            parse_with(hdr(|h| h.data = 2), &phdrs),
            Err(ElfError::NotLittleEndian)
        );
        assert_eq!(
            parse_with(hdr(|h| h.version = 0), &phdrs),
            Err(ElfError::BadVersion)
        );
        assert_eq!(
            parse_with(hdr(|h| h.e_version = 2), &phdrs),
            Err(ElfError::BadVersion)
        );
        assert_eq!(
            parse_with(hdr(|h| h.e_type = 3), &phdrs),
            Err(ElfError::NotExecutable { e_type: 3 })
        );
        assert_eq!(
            parse_with(hdr(|h| h.machine = 3), &phdrs),
            Err(ElfError::WrongMachine { machine: 3 })
        );
        assert_eq!(
            parse_with(hdr(|h| h.machine = 183), &phdrs),
            Err(ElfError::WrongMachine { machine: 183 })
        );
        assert_eq!(
            parse_with(hdr(|h| h.phentsize = 64), &phdrs),
            Err(ElfError::BadPhentsize { size: 64 })
        );
    }

    #[test]
    fn program_header_table_checks() {
        assert_eq!(parse_phdrs(&[]), Err(ElfError::BadPhnum { count: 0 }));
        let many = vec![valid_phdrs()[1]; MAX_PHDRS + 1];
        assert_eq!(parse_phdrs(&many), Err(ElfError::BadPhnum { count: 17 }));
        let phdrs = valid_phdrs();
        // phoff past the end, near u64::MAX, and a table that runs off the end.
        for phoff in [0x10_0000, u64::MAX - 10, u64::MAX] {
            let hdr = Hdr {
                phoff,
                ..Hdr::default()
            };
            assert_eq!(parse_with(hdr, &phdrs), Err(ElfError::PhdrsOutOfFile));
        }
        let hdr = Hdr {
            phnum: Some(16),
            ..Hdr::default()
        };
        let image = build(&hdr, &phdrs[..1]);
        assert_eq!(parse_exec(&image), Err(ElfError::PhdrsOutOfFile));
    }

    #[test]
    fn load_segment_required() {
        let phdrs = valid_phdrs();
        assert_eq!(
            parse_phdrs(&[phdrs[0], phdrs[4]]),
            Err(ElfError::NoLoadSegment)
        );
        // A PT_LOAD with nothing in it counts as present but is left out;
        // with no code the entry is not executable.
        let empty = load(R | X, 0, USER_IMAGE_BASE, 0, 0);
        assert_eq!(
            parse_phdrs(&[empty]),
            Err(ElfError::EntryNotExecutable {
                entry: USER_IMAGE_BASE + 0x1000
            })
        );
        let mut with_empty = phdrs.clone();
        with_empty.push(load(R, 0, USER_IMAGE_BASE + 0x1000, 0, 0));
        assert_eq!(parse_phdrs(&with_empty).unwrap().segments.len(), 3);
    }

    #[test]
    fn dynamic_images_are_rejected() {
        for p_type in [PT_INTERP, PT_DYNAMIC] {
            let mut phdrs = valid_phdrs();
            phdrs.push(Ph { p_type, ..phdrs[2] });
            assert_eq!(parse_phdrs(&phdrs), Err(ElfError::Dynamic));
        }
    }

    #[test]
    fn file_size_exceeds_mem_size() {
        let mut phdrs = valid_phdrs();
        phdrs[2].memsz = phdrs[2].filesz - 1;
        assert_eq!(
            parse_phdrs(&phdrs),
            Err(ElfError::FileSizeExceedsMemSize { index: 2 })
        );
    }

    #[test]
    fn segment_data_outside_file() {
        // Build normally, then make the last segment's file size reach past
        // the end of the file.
        let mut bad = valid();
        let at = EHDR_SIZE + PHDR_SIZE * 3 + 32;
        bad[at..at + 8].copy_from_slice(&0x21u64.to_le_bytes());
        assert_eq!(
            parse_exec(&bad),
            Err(ElfError::SegmentOutOfFile { index: 3 })
        );
        // offset + filesz overflows u64.
        let mut phdrs = valid_phdrs();
        phdrs[1].offset = u64::MAX - 0xfff;
        assert_eq!(
            parse_phdrs(&phdrs),
            Err(ElfError::SegmentOutOfFile { index: 1 })
        );
    }

    #[test]
    fn addresses_outside_user_range() {
        let text = valid_phdrs()[1];
        let at = |vaddr: u64, memsz: u64| Ph {
            vaddr,
            memsz,
            offset: vaddr % PAGE_SIZE,
            filesz: 0,
            ..text
        };
        for (vaddr, memsz) in [
            (0xffff_8000_0000_0000, 0x1000),      // kernel half
            (0xffff_ffff_8000_0000, 0x1000),      // kernel image
            (abi::layout::USER_END, 0x1000),      // non-canonical hole
            (0, 0x1000),                          // page 0
            (USER_MIN - 1, 0x10),                 // page 0, unaligned
            (USER_STACK_BOTTOM - 0x1000, 0x1001), // touches the stack
            (USER_STACK_BOTTOM, 0x1000),          // in the stack
            (abi::layout::USER_STACK_TOP, 0x1000),
        ] {
            assert_eq!(
                parse_phdrs(&[at(vaddr, memsz)]),
                Err(ElfError::OutsideUserRange { index: 0 }),
                "{vaddr:#x} + {memsz:#x}"
            );
        }
        // The extremes that are allowed.
        let low = Hdr {
            entry: USER_MIN,
            ..Hdr::default()
        };
        assert!(parse_with(low, &[at(USER_MIN, 0x10)]).is_ok());
        let high = Hdr {
            entry: USER_STACK_BOTTOM - 1,
            ..Hdr::default()
        };
        let top = at(USER_STACK_BOTTOM - 0x1000, 0x1000);
        assert_eq!(
            parse_with(high, &[top]).unwrap().segments[0].page_range(),
            (USER_STACK_BOTTOM - 0x1000, 1)
        );
    }

    #[test]
    fn address_overflow() {
        let mut phdrs = valid_phdrs();
        phdrs[3].vaddr = u64::MAX - 0xfff + 0x10;
        assert_eq!(
            parse_phdrs(&phdrs),
            Err(ElfError::AddressOverflow { index: 3 })
        );
        phdrs[3].vaddr = 0x10;
        phdrs[3].memsz = u64::MAX;
        assert_eq!(
            parse_phdrs(&phdrs),
            Err(ElfError::AddressOverflow { index: 3 })
        );
    }

    #[test]
    fn offset_and_address_must_be_congruent() {
        let mut phdrs = valid_phdrs();
        phdrs[2].vaddr += 8;
        assert_eq!(parse_phdrs(&phdrs), Err(ElfError::Misaligned { index: 2 }));
    }

    #[test]
    fn alignment_must_be_a_power_of_two() {
        for align in [3, 0x1001, u64::MAX] {
            let mut phdrs = valid_phdrs();
            phdrs[2].align = align;
            assert_eq!(
                parse_phdrs(&phdrs),
                Err(ElfError::BadAlignment { index: 2 }),
                "{align}"
            );
        }
        for align in [0, 1, 16, 0x1000, 0x20_0000] {
            let mut phdrs = valid_phdrs();
            phdrs[2].align = align;
            assert!(parse_phdrs(&phdrs).is_ok(), "{align}");
        }
    }

    #[test]
    fn segments_sharing_a_page_overlap() {
        let base = USER_IMAGE_BASE;
        let text = load(R | X, 0x1000, base + 0x1000, 0x800, 0x800);
        // Same page, disjoint bytes.
        let data = load(R | W, 0x1800, base + 0x1800, 0x10, 0x10);
        assert_eq!(
            parse_phdrs(&[text, data]),
            Err(ElfError::Overlapping {
                first: 0,
                second: 1
            })
        );
        // Listed the other way round.
        assert_eq!(
            parse_phdrs(&[data, text]),
            Err(ElfError::Overlapping {
                first: 0,
                second: 1
            })
        );
        // A bss that runs into the next segment's page.
        let next = load(R, 0x3000, base + 0x3000, 0x10, 0x10);
        let bss = load(R | W, 0x1800, base + 0x2800, 0x10, 0x1000);
        assert_eq!(
            parse_phdrs(&[text, bss, next]),
            Err(ElfError::Overlapping {
                first: 1,
                second: 2
            })
        );
        // Identical segments, after an ignored header.
        let note = valid_phdrs()[0];
        assert_eq!(
            parse_phdrs(&[note, text, text]),
            Err(ElfError::Overlapping {
                first: 1,
                second: 2
            })
        );
        // Adjacent pages are fine.
        let adjacent = load(R, 0x2000, base + 0x2000, 0x10, 0x10);
        assert_eq!(parse_phdrs(&[text, adjacent]).unwrap().total_pages(), 2);
    }

    #[test]
    fn too_large() {
        let base = USER_IMAGE_BASE;
        let text = load(R | X, 0x1000, base + 0x1000, 0x10, 0x10);
        let bss = |pages: u64| load(R | W, 0x2000, base + 0x2000, 0, pages * PAGE_SIZE);
        let ok = parse_phdrs(&[text, bss(MAX_IMAGE_PAGES - 1)]).unwrap();
        assert_eq!(ok.total_pages(), MAX_IMAGE_PAGES);
        let err = parse_phdrs(&[text, bss(MAX_IMAGE_PAGES)]).unwrap_err();
        assert_eq!(
            err,
            ElfError::TooLarge {
                pages: MAX_IMAGE_PAGES + 1
            }
        );
        assert_eq!(err.errno(), errno::E2BIG);
        // A huge bss right up to the stack.
        let huge = load(
            R | W,
            0x2000,
            base + 0x2000,
            0,
            USER_STACK_BOTTOM - base - 0x2000,
        );
        assert!(matches!(
            parse_phdrs(&[text, huge]),
            Err(ElfError::TooLarge { .. })
        ));
    }

    #[test]
    fn entry_must_be_in_executable_segment() {
        let phdrs = valid_phdrs();
        let base = USER_IMAGE_BASE;
        for entry in [
            0,
            base,
            base + 0x1000 - 1,
            base + 0x1000 + 0x1234, // one past the end of the text
            base + 0x3000,          // read-only data
            base + 0x4010,          // data
            u64::MAX,
        ] {
            let hdr = Hdr {
                entry,
                ..Hdr::default()
            };
            assert_eq!(
                parse_with(hdr, &phdrs),
                Err(ElfError::EntryNotExecutable { entry }),
                "{entry:#x}"
            );
        }
        let last = Hdr {
            entry: base + 0x1000 + 0x1233,
            ..Hdr::default()
        };
        assert!(parse_with(last, &phdrs).is_ok());
    }

    #[test]
    fn errors_map_to_errno_and_display() {
        let errors = [
            ElfError::Truncated,
            ElfError::BadMagic,
            ElfError::NotElf64,
            ElfError::NotLittleEndian,
            ElfError::BadVersion,
            ElfError::NotExecutable { e_type: 3 },
            ElfError::WrongMachine { machine: 3 },
            ElfError::BadPhentsize { size: 1 },
            ElfError::BadPhnum { count: 0 },
            ElfError::PhdrsOutOfFile,
            ElfError::NoLoadSegment,
            ElfError::Dynamic,
            ElfError::FileSizeExceedsMemSize { index: 1 },
            ElfError::SegmentOutOfFile { index: 1 },
            ElfError::AddressOverflow { index: 1 },
            ElfError::OutsideUserRange { index: 1 },
            ElfError::Misaligned { index: 1 },
            ElfError::BadAlignment { index: 1 },
            ElfError::Overlapping {
                first: 1,
                second: 2,
            },
            ElfError::EntryNotExecutable { entry: 0 },
        ];
        for error in errors {
            assert_eq!(error.errno(), errno::ENOEXEC, "{error:?}");
            assert!(!alloc::format!("{error}").is_empty());
        }
        assert_eq!(ElfError::TooLarge { pages: 1 }.errno(), errno::E2BIG);
    }

    #[test]
    fn segment_helpers() {
        let seg = Segment {
            vaddr: 0x1fff,
            mem_size: 2,
            file_offset: 0xfff,
            file_size: 1,
            flags: SegmentFlags::READ,
        };
        assert_eq!(seg.page_range(), (0x1000, 2));
        assert_eq!(seg.file_range(), 0xfff..0x1000);
        assert!(seg.contains(0x1fff) && seg.contains(0x2000));
        assert!(!seg.contains(0x1ffe) && !seg.contains(0x2001));
        // Unknown flag bits are dropped.
        assert_eq!(
            SegmentFlags::from_bits_truncate(0xf0 | 5),
            SegmentFlags::READ | SegmentFlags::EXEC
        );
    }
}
