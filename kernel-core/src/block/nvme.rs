//! NVMe, the machine-independent part: register layout, command (SQE) and
//! completion (CQE) formats, the queue pair state machine, PRP lists, the
//! controller reset/enable sequence and identify data parsing.
//!
//! The kernel's driver (`kernel/src/drivers/nvme.rs`) supplies the machine
//! through two small traits: [`Registers`] (the controller's BAR 0 and a
//! microsecond delay) and [`QueueMemory`] (the queues' DMA memory and their
//! doorbells). Everything the device tells us is checked here: a completion
//! naming a command that is not in flight, a queue the wrong size, identify
//! data with an impossible block size all become errors, never a panic or a
//! request reported twice.
//!
//! Specification: NVM Express Base Specification 1.4 (QEMU 7.2 emulates
//! 1.4); section numbers below refer to it.

use super::{BlockOp, BlockRequest, Segment, PAGE_SIZE};
use abi::errno::{Errno, EAGAIN, EINVAL, EIO, ENXIO, ETIMEDOUT};
use alloc::vec::Vec;

/// Controller register offsets in BAR 0 (3.1).
pub mod reg {
    /// Controller Capabilities (64 bits).
    pub const CAP: usize = 0x00;
    /// Version.
    pub const VS: usize = 0x08;
    /// Interrupt Mask Set / Clear (pin-based and MSI only; unused with MSI-X).
    pub const INTMS: usize = 0x0C;
    pub const INTMC: usize = 0x10;
    /// Controller Configuration.
    pub const CC: usize = 0x14;
    /// Controller Status.
    pub const CSTS: usize = 0x1C;
    /// Admin Queue Attributes.
    pub const AQA: usize = 0x24;
    /// Admin Submission / Completion Queue base addresses (64 bits).
    pub const ASQ: usize = 0x28;
    pub const ACQ: usize = 0x30;
    /// The first doorbell.
    pub const DOORBELL_BASE: usize = 0x1000;
}

/// CAP, the Controller Capabilities register (3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Largest queue the controller supports, in entries (MQES is 0-based).
    pub fn max_queue_entries(self) -> u32 {
        (self.0 & 0xFFFF) as u32 + 1
    }

    /// Contiguous Queues Required.
    pub fn contiguous_required(self) -> bool {
        self.0 & (1 << 16) != 0
    }

    /// Worst-case time for CSTS.RDY to follow CC.EN, in milliseconds (TO is
    /// in 500 ms units). A zero TO is taken as 500 ms rather than "no wait".
    pub fn timeout_ms(self) -> u64 {
        (((self.0 >> 24) & 0xFF).max(1)) * 500
    }

    /// Doorbell Stride: doorbells are `4 << DSTRD` bytes apart.
    pub fn doorbell_stride(self) -> usize {
        4 << ((self.0 >> 32) & 0xF)
    }

    /// Whether the NVM command set is supported (CSS bit 0).
    pub fn nvm_command_set(self) -> bool {
        self.0 & (1 << 37) != 0
    }

    /// Smallest memory page size, in bytes (`2 ^ (12 + MPSMIN)`).
    pub fn min_page_size(self) -> u64 {
        1 << (12 + ((self.0 >> 48) & 0xF))
    }

    /// Largest memory page size, in bytes.
    pub fn max_page_size(self) -> u64 {
        1 << (12 + ((self.0 >> 52) & 0xF))
    }

    /// Whether the controller accepts our 4 KiB page size.
    pub fn supports_4k_pages(self) -> bool {
        self.min_page_size() <= PAGE_SIZE && self.max_page_size() >= PAGE_SIZE
    }
}

/// CC, the Controller Configuration register (3.1.5).
pub mod cc {
    /// Enable.
    pub const EN: u32 = 1 << 0;
    /// I/O Submission Queue Entry Size (log2): 64 bytes.
    pub const IOSQES_64: u32 = 6 << 16;
    /// I/O Completion Queue Entry Size (log2): 16 bytes.
    pub const IOCQES_16: u32 = 4 << 20;
    /// Shutdown Notification: normal.
    pub const SHN_NORMAL: u32 = 1 << 14;

    /// The value that enables the controller: NVM command set (CSS 0),
    /// 4 KiB pages (MPS 0), round robin (AMS 0), 64/16-byte entries.
    pub const fn enable() -> u32 {
        EN | IOSQES_64 | IOCQES_16
    }
}

/// CSTS, the Controller Status register (3.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Csts(pub u32);

impl Csts {
    /// Ready.
    pub fn ready(self) -> bool {
        self.0 & 1 != 0
    }

    /// Controller Fatal Status.
    pub fn fatal(self) -> bool {
        self.0 & 2 != 0
    }

    /// All ones: the read went nowhere (the device was removed or its BAR
    /// is gone). A real CSTS never reads as all ones (bits 31:6 are
    /// reserved as zero).
    pub fn gone(self) -> bool {
        self.0 == u32::MAX
    }

    /// Shutdown Status: processing complete.
    pub fn shutdown_complete(self) -> bool {
        (self.0 >> 2) & 3 == 2
    }
}

/// AQA for admin queues of `entries` submission and completion entries.
/// `entries` is 2..=4096 (the field is 12 bits, 0-based).
pub fn aqa(entries: u16) -> u32 {
    let n = u32::from(entries.clamp(2, 4096)) - 1;
    (n << 16) | n
}

/// Offset in BAR 0 of queue `qid`'s submission queue tail doorbell.
pub fn sq_tail_doorbell(qid: u16, stride: usize) -> usize {
    reg::DOORBELL_BASE + 2 * usize::from(qid) * stride
}

/// Offset in BAR 0 of queue `qid`'s completion queue head doorbell.
pub fn cq_head_doorbell(qid: u16, stride: usize) -> usize {
    reg::DOORBELL_BASE + (2 * usize::from(qid) + 1) * stride
}

/// Bytes of BAR 0 needed to reach the doorbells of queues `0..=last_qid`.
pub fn bar_bytes_needed(last_qid: u16, stride: usize) -> usize {
    cq_head_doorbell(last_qid, stride) + 4
}

/// Admin command opcodes (5).
pub mod admin {
    pub const DELETE_IO_SQ: u8 = 0x00;
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const DELETE_IO_CQ: u8 = 0x04;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const SET_FEATURES: u8 = 0x09;
    /// SET FEATURES feature identifier: Number of Queues.
    pub const FEATURE_NUMBER_OF_QUEUES: u32 = 0x07;
    /// IDENTIFY CNS values.
    pub const CNS_NAMESPACE: u32 = 0x00;
    pub const CNS_CONTROLLER: u32 = 0x01;
    pub const CNS_ACTIVE_NAMESPACES: u32 = 0x02;
}

/// NVM I/O command opcodes (6).
pub mod io {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
}

/// A 64-byte submission queue entry (4.2), before encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Command {
    pub opcode: u8,
    pub cid: u16,
    pub nsid: u32,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}

impl Command {
    /// The entry as 16 little-endian dwords. FUSE is 0 (normal), PSDT is 0
    /// (PRPs), metadata pointer 0.
    pub fn encode(&self) -> [u32; 16] {
        let mut d = [0u32; 16];
        d[0] = u32::from(self.opcode) | (u32::from(self.cid) << 16);
        d[1] = self.nsid;
        d[6] = self.prp1 as u32;
        d[7] = (self.prp1 >> 32) as u32;
        d[8] = self.prp2 as u32;
        d[9] = (self.prp2 >> 32) as u32;
        d[10] = self.cdw10;
        d[11] = self.cdw11;
        d[12] = self.cdw12;
        d[13] = self.cdw13;
        d[14] = self.cdw14;
        d[15] = self.cdw15;
        d
    }

    /// The entry as 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        for (chunk, dword) in bytes.chunks_exact_mut(4).zip(self.encode()) {
            chunk.copy_from_slice(&dword.to_le_bytes());
        }
        bytes
    }

    /// IDENTIFY (5.15) with `cns`, into the 4 KiB page at `prp1`.
    pub fn identify(cns: u32, nsid: u32, prp1: u64) -> Self {
        Self {
            opcode: admin::IDENTIFY,
            nsid,
            prp1,
            cdw10: cns,
            ..Self::default()
        }
    }

    /// SET FEATURES Number of Queues (5.21.1.7): asks for `sq` submission
    /// and `cq` completion queues (1..=65535 each).
    pub fn set_queue_count(sq: u16, cq: u16) -> Self {
        Self {
            opcode: admin::SET_FEATURES,
            cdw10: admin::FEATURE_NUMBER_OF_QUEUES,
            cdw11: (u32::from(cq.max(1) - 1) << 16) | u32::from(sq.max(1) - 1),
            ..Self::default()
        }
    }

    /// CREATE I/O COMPLETION QUEUE (5.4): physically contiguous at `phys`,
    /// `entries` long, interrupting on `vector` (an MSI-X table index) when
    /// `interrupts` is set.
    pub fn create_io_cq(qid: u16, entries: u16, phys: u64, interrupts: bool, vector: u16) -> Self {
        Self {
            opcode: admin::CREATE_IO_CQ,
            prp1: phys,
            cdw10: (u32::from(entries.max(2) - 1) << 16) | u32::from(qid),
            // PC (physically contiguous) bit 0, IEN bit 1, IV bits 31:16.
            cdw11: (u32::from(vector) << 16) | (u32::from(interrupts) << 1) | 1,
            ..Self::default()
        }
    }

    /// CREATE I/O SUBMISSION QUEUE (5.5): physically contiguous at `phys`,
    /// `entries` long, completing into queue `cqid`, medium priority.
    pub fn create_io_sq(qid: u16, entries: u16, phys: u64, cqid: u16) -> Self {
        Self {
            opcode: admin::CREATE_IO_SQ,
            prp1: phys,
            cdw10: (u32::from(entries.max(2) - 1) << 16) | u32::from(qid),
            cdw11: (u32::from(cqid) << 16) | 1,
            ..Self::default()
        }
    }

    /// DELETE I/O SUBMISSION QUEUE (5.7).
    pub fn delete_io_sq(qid: u16) -> Self {
        Self {
            opcode: admin::DELETE_IO_SQ,
            cdw10: u32::from(qid),
            ..Self::default()
        }
    }

    /// DELETE I/O COMPLETION QUEUE (5.6).
    pub fn delete_io_cq(qid: u16) -> Self {
        Self {
            opcode: admin::DELETE_IO_CQ,
            cdw10: u32::from(qid),
            ..Self::default()
        }
    }

    /// READ or WRITE (6.9, 6.15) of `blocks` (1..=65536) logical blocks
    /// from `slba`; FLUSH (6.8) when `op` is a flush (the rest ignored).
    pub fn rw(op: BlockOp, nsid: u32, slba: u64, blocks: u32, prps: Prps) -> Self {
        let opcode = match op {
            BlockOp::Read => io::READ,
            BlockOp::Write => io::WRITE,
            BlockOp::Flush => return Self::flush(nsid),
        };
        Self {
            opcode,
            nsid,
            prp1: prps.prp1,
            prp2: prps.prp2,
            cdw10: slba as u32,
            cdw11: (slba >> 32) as u32,
            cdw12: blocks.clamp(1, 65536) - 1,
            ..Self::default()
        }
    }

    /// FLUSH (6.8) of namespace `nsid`.
    pub fn flush(nsid: u32) -> Self {
        Self {
            opcode: io::FLUSH,
            nsid,
            ..Self::default()
        }
    }
}

/// Status Code Type (4.6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusType {
    Generic,
    CommandSpecific,
    MediaError,
    PathRelated,
    VendorSpecific,
    Reserved(u8),
}

/// The status field of a completion (4.6.1): type and code, with the Do
/// Not Retry and More bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    /// Status Code.
    pub fn code(self) -> u8 {
        (self.0 & 0xFF) as u8
    }

    /// Status Code Type, raw.
    pub fn code_type_raw(self) -> u8 {
        ((self.0 >> 8) & 7) as u8
    }

    pub fn code_type(self) -> StatusType {
        match self.code_type_raw() {
            0 => StatusType::Generic,
            1 => StatusType::CommandSpecific,
            2 => StatusType::MediaError,
            3 => StatusType::PathRelated,
            7 => StatusType::VendorSpecific,
            other => StatusType::Reserved(other),
        }
    }

    /// Do Not Retry.
    pub fn do_not_retry(self) -> bool {
        self.0 & (1 << 14) != 0
    }

    pub fn is_success(self) -> bool {
        self.code() == 0 && self.code_type_raw() == 0
    }

    /// A short name for common codes (generic and media types), for logs.
    pub fn describe(self) -> &'static str {
        match (self.code_type(), self.code()) {
            (StatusType::Generic, 0x00) => "success",
            (StatusType::Generic, 0x01) => "invalid opcode",
            (StatusType::Generic, 0x02) => "invalid field",
            (StatusType::Generic, 0x03) => "command id conflict",
            (StatusType::Generic, 0x04) => "data transfer error",
            (StatusType::Generic, 0x06) => "internal error",
            (StatusType::Generic, 0x07) => "abort requested",
            (StatusType::Generic, 0x0B) => "invalid namespace or format",
            (StatusType::Generic, 0x13) => "invalid PRP offset",
            (StatusType::Generic, 0x80) => "LBA out of range",
            (StatusType::Generic, 0x81) => "capacity exceeded",
            (StatusType::Generic, 0x82) => "namespace not ready",
            (StatusType::CommandSpecific, 0x01) => "invalid queue identifier",
            (StatusType::CommandSpecific, 0x02) => "invalid queue size",
            (StatusType::CommandSpecific, 0x08) => "invalid interrupt vector",
            (StatusType::MediaError, 0x80) => "write fault",
            (StatusType::MediaError, 0x81) => "unrecovered read error",
            (StatusType::MediaError, 0x86) => "access denied",
            _ => "other",
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "status type {:#x} code {:#04x} ({}{})",
            self.code_type_raw(),
            self.code(),
            self.describe(),
            if self.do_not_retry() {
                ", do not retry"
            } else {
                ""
            }
        )
    }
}

/// A 16-byte completion queue entry (4.6), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletionEntry {
    /// Command specific result (dword 0).
    pub result: u32,
    /// How far the controller has consumed the submission queue.
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    pub phase: bool,
    pub status: Status,
}

impl CompletionEntry {
    pub fn decode(d: [u32; 4]) -> Self {
        Self {
            result: d[0],
            sq_head: d[2] as u16,
            sq_id: (d[2] >> 16) as u16,
            cid: d[3] as u16,
            phase: d[3] & (1 << 16) != 0,
            status: Status((d[3] >> 17) as u16),
        }
    }

    /// The entry as dwords (what a controller writes); for mocks.
    pub fn encode(&self) -> [u32; 4] {
        [
            self.result,
            0,
            u32::from(self.sq_head) | (u32::from(self.sq_id) << 16),
            u32::from(self.cid) | (u32::from(self.phase) << 16) | (u32::from(self.status.0) << 17),
        ]
    }
}

/// The two PRP entries of a command (4.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prps {
    pub prp1: u64,
    pub prp2: u64,
}

/// Most entries a PRP list may have here: one list page, no chaining.
pub const PRP_LIST_MAX: usize = (PAGE_SIZE / 8) as usize;

/// Builds the PRPs for `segments`, which follow the block layer's segment
/// rules (`check_request`): the first may start inside a page, every later
/// one starts on a page, and each lies within one page, so each segment is
/// one PRP entry. One or two segments fit PRP1/PRP2; more put entries
/// 2.. into `list` (a per-command DMA area the controller can read at
/// `list_phys`; it must not cross a page boundary) and point PRP2 at it.
/// Errors: `EINVAL` for an empty list, a list breaking the rules, or one
/// longer than `list` allows.
pub fn build_prps(segments: &[Segment], list: &mut [u64], list_phys: u64) -> Result<Prps, Errno> {
    build_prps_with(segments, list.len(), list_phys, |i, phys| list[i] = phys)
}

/// [`build_prps`] writing list entry `i` with `write(i, phys)` (straight
/// into DMA memory) into a list of room for `capacity` entries. Nothing is
/// written unless the whole list is valid.
pub fn build_prps_with(
    segments: &[Segment],
    capacity: usize,
    list_phys: u64,
    mut write: impl FnMut(usize, u64),
) -> Result<Prps, Errno> {
    let (first, rest) = segments.split_first().ok_or(EINVAL)?;
    let last = segments.len() - 1;
    for (i, s) in segments.iter().enumerate() {
        let offset = s.phys % PAGE_SIZE;
        let len = u64::from(s.len);
        if len == 0
            || !s.phys.is_multiple_of(4)
            || offset + len > PAGE_SIZE
            || (i > 0 && offset != 0)
            || (i < last && offset + len != PAGE_SIZE)
        {
            return Err(EINVAL);
        }
    }
    match rest {
        [] => Ok(Prps {
            prp1: first.phys,
            prp2: 0,
        }),
        [second] => Ok(Prps {
            prp1: first.phys,
            prp2: second.phys,
        }),
        _ => {
            let list_bytes = (rest.len() as u64) * 8;
            if rest.len() > capacity
                || rest.len() > PRP_LIST_MAX
                || !list_phys.is_multiple_of(8)
                || list_phys % PAGE_SIZE + list_bytes > PAGE_SIZE
            {
                return Err(EINVAL);
            }
            for (i, s) in rest.iter().enumerate() {
                write(i, s.phys);
            }
            Ok(Prps {
                prp1: first.phys,
                prp2: list_phys,
            })
        }
    }
}

/// What the driver's queues need from the machine: entry memory, the
/// per-command PRP list areas and the doorbells. Offsets are in entries.
pub trait QueueMemory {
    /// Writes submission entry `slot`.
    fn write_sqe(&mut self, slot: u16, entry: &[u32; 16]);
    /// Reads dword `dword` (0..4) of completion entry `slot`.
    fn read_cqe_dword(&self, slot: u16, dword: usize) -> u32;
    /// Where command `cid`'s PRP list area is: physical address and room
    /// in entries (0 if the queue has none).
    fn prp_list(&self, cid: u16) -> (u64, usize);
    /// Writes entry `index` of command `cid`'s PRP list.
    fn write_prp_entry(&mut self, cid: u16, index: usize, value: u64);
    /// Rings the submission queue tail doorbell.
    fn ring_sq_tail(&mut self, tail: u16);
    /// Rings the completion queue head doorbell.
    fn ring_cq_head(&mut self, head: u16);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    InFlight(u64),
    /// Failed without a completion (the controller died); reported by the
    /// next [`QueuePair::reap`].
    Failed(u64),
}

/// A finished command as a queue pair reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// The tag given to [`QueuePair::submit`].
    pub tag: u64,
    /// The controller's status; `None` when the command was failed by
    /// [`QueuePair::fail_all`] without a completion from the device.
    pub status: Option<Status>,
    /// Completion dword 0 (0 when failed).
    pub result: u32,
}

impl Reaped {
    /// Success, or `EIO`.
    pub fn result(&self) -> Result<(), Errno> {
        match self.status {
            Some(status) if status.is_success() => Ok(()),
            _ => Err(EIO),
        }
    }
}

/// What [`QueuePair::reap`] saw that it should not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Anomalies {
    /// Entries naming a command id that is not in flight (unknown,
    /// out of range, or already completed).
    pub unknown_cid: u32,
    /// Entries naming another submission queue.
    pub wrong_queue: u32,
    /// Entries whose SQ head is outside the queue.
    pub bad_sq_head: u32,
}

impl Anomalies {
    pub fn any(&self) -> bool {
        *self != Self::default()
    }
}

/// One submission/completion queue pair's state (4.1): the submission tail,
/// the completion head and the phase it expects, and the command ids in
/// flight with their tags.
///
/// At most `entries - 1` commands are in flight, so neither queue can
/// overflow whatever the controller reports as its SQ head: the slot at the
/// tail is always consumed (a command is fetched before it completes, and
/// fetching is in order). Command ids are `0..entries - 1`.
pub struct QueuePair {
    qid: u16,
    entries: u16,
    sq_tail: u16,
    sq_head: u16,
    cq_head: u16,
    phase: bool,
    slots: Vec<Slot>,
    free: Vec<u16>,
    failed: usize,
    anomalies: Anomalies,
}

impl QueuePair {
    /// A fresh pair for queue `qid` with `entries` (2..=65536 per the spec,
    /// 2..=4096 here) in both queues. `ENOMEM` if the tables cannot be
    /// allocated, `EINVAL` for a size outside 2..=4096.
    pub fn new(qid: u16, entries: u16) -> Result<Self, Errno> {
        if !(2..=4096).contains(&entries) {
            return Err(EINVAL);
        }
        let depth = usize::from(entries - 1);
        let mut slots = Vec::new();
        let mut free = Vec::new();
        slots
            .try_reserve_exact(depth)
            .map_err(|_| abi::errno::ENOMEM)?;
        free.try_reserve_exact(depth)
            .map_err(|_| abi::errno::ENOMEM)?;
        slots.resize(depth, Slot::Free);
        // Lowest ids first: pop from the end.
        free.extend((0..entries - 1).rev());
        Ok(Self {
            qid,
            entries,
            sq_tail: 0,
            sq_head: 0,
            cq_head: 0,
            phase: true,
            slots,
            free,
            failed: 0,
            anomalies: Anomalies::default(),
        })
    }

    pub fn qid(&self) -> u16 {
        self.qid
    }

    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Most commands in flight at once.
    pub fn depth(&self) -> u16 {
        self.entries - 1
    }

    /// Commands started and not yet reported.
    pub fn in_flight(&self) -> usize {
        usize::from(self.depth()) - self.free.len()
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Everything odd the controller has done so far.
    pub fn anomalies(&self) -> Anomalies {
        self.anomalies
    }

    /// The SQ head the controller last reported.
    pub fn sq_head(&self) -> u16 {
        self.sq_head
    }

    /// Starts `command` (its `cid` is assigned here) for `tag`. `build`
    /// fills in the PRPs once the command id is known (it may write the
    /// command's PRP list); if it fails nothing is started. Errors:
    /// `EAGAIN` when the queue is full, or what `build` returns.
    pub fn submit<M: QueueMemory>(
        &mut self,
        memory: &mut M,
        tag: u64,
        build: impl FnOnce(&mut M, u16) -> Result<Command, Errno>,
    ) -> Result<u16, Errno> {
        let &cid = self.free.last().ok_or(EAGAIN)?;
        let mut command = build(memory, cid)?;
        command.cid = cid;
        self.free.pop();
        self.slots[usize::from(cid)] = Slot::InFlight(tag);
        memory.write_sqe(self.sq_tail, &command.encode());
        self.sq_tail = (self.sq_tail + 1) % self.entries;
        memory.ring_sq_tail(self.sq_tail);
        Ok(cid)
    }

    /// Starts a block request on namespace `nsid` with `block_size`-byte
    /// blocks: READ/WRITE with PRPs (the list, if needed, in the command's
    /// own area) or FLUSH. The request should have passed
    /// `check_request`; whatever it breaks is `EINVAL` here, with nothing
    /// started. `EAGAIN` when the queue is full.
    pub fn submit_io<M: QueueMemory>(
        &mut self,
        memory: &mut M,
        nsid: u32,
        block_size: u32,
        request: &BlockRequest<'_>,
    ) -> Result<u16, Errno> {
        self.submit(memory, request.tag, |memory, cid| {
            if request.op == BlockOp::Flush {
                return Ok(Command::flush(nsid));
            }
            let blocks = block_count(request.bytes(), block_size)?;
            let (list_phys, capacity) = memory.prp_list(cid);
            let prps = build_prps_with(request.segments, capacity, list_phys, |i, phys| {
                memory.write_prp_entry(cid, i, phys)
            })?;
            Ok(Command::rw(request.op, nsid, request.sector, blocks, prps))
        })
    }

    /// Takes up to `out.len()` finished commands: first those failed by
    /// [`fail_all`](Self::fail_all), then new completion entries (those
    /// whose phase bit is the one expected), advancing the head and flipping
    /// the expected phase on wrap, and rings the head doorbell once if any
    /// entry was consumed. Entries naming a command not in flight are
    /// consumed and counted in [`anomalies`](Self::anomalies), never
    /// reported. Returns how many of `out` were filled.
    pub fn reap<M: QueueMemory>(&mut self, memory: &mut M, out: &mut [Reaped]) -> usize {
        let mut n = 0;
        if self.failed > 0 {
            for (cid, slot) in self.slots.iter_mut().enumerate() {
                if n == out.len() {
                    return n;
                }
                if let Slot::Failed(tag) = *slot {
                    *slot = Slot::Free;
                    self.free.push(cid as u16);
                    self.failed -= 1;
                    out[n] = Reaped {
                        tag,
                        status: None,
                        result: 0,
                    };
                    n += 1;
                }
            }
        }
        // Bound the entries consumed per call (a hostile controller could
        // post forever): one queue's worth.
        let mut consumed = 0u32;
        while n < out.len() && consumed < u32::from(self.entries) {
            // Dword 3 (phase) first: the rest is valid only once it flips.
            let d3 = memory.read_cqe_dword(self.cq_head, 3);
            if (d3 & (1 << 16) != 0) != self.phase {
                break;
            }
            let entry = CompletionEntry::decode([
                memory.read_cqe_dword(self.cq_head, 0),
                memory.read_cqe_dword(self.cq_head, 1),
                memory.read_cqe_dword(self.cq_head, 2),
                d3,
            ]);
            consumed += 1;
            self.cq_head += 1;
            if self.cq_head == self.entries {
                self.cq_head = 0;
                self.phase = !self.phase;
            }
            if let Some(reaped) = self.complete(&entry) {
                out[n] = reaped;
                n += 1;
            }
        }
        if consumed > 0 {
            memory.ring_cq_head(self.cq_head);
        }
        n
    }

    fn complete(&mut self, entry: &CompletionEntry) -> Option<Reaped> {
        if entry.sq_id != self.qid {
            self.anomalies.wrong_queue += 1;
            return None;
        }
        if entry.sq_head < self.entries {
            self.sq_head = entry.sq_head;
        } else {
            self.anomalies.bad_sq_head += 1;
        }
        let cid = usize::from(entry.cid);
        match self.slots.get(cid) {
            Some(&Slot::InFlight(tag)) => {
                self.slots[cid] = Slot::Free;
                self.free.push(entry.cid);
                Some(Reaped {
                    tag,
                    status: Some(entry.status),
                    result: entry.result,
                })
            }
            _ => {
                self.anomalies.unknown_cid += 1;
                None
            }
        }
    }

    /// Marks every command in flight failed (the controller is dead): the
    /// next [`reap`](Self::reap)s report them with no status, whatever the
    /// device posts later. Returns how many were marked.
    pub fn fail_all(&mut self) -> usize {
        let mut marked = 0;
        for slot in &mut self.slots {
            if let Slot::InFlight(tag) = *slot {
                *slot = Slot::Failed(tag);
                marked += 1;
            }
        }
        self.failed += marked;
        marked
    }

    /// Whether commands failed by [`fail_all`](Self::fail_all) wait to be
    /// reaped.
    pub fn has_failed(&self) -> bool {
        self.failed > 0
    }
}

/// BAR 0 and a clock, for the reset/enable sequence.
pub trait Registers {
    fn read32(&mut self, offset: usize) -> u32;
    fn write32(&mut self, offset: usize, value: u32);
    fn read64(&mut self, offset: usize) -> u64;
    fn write64(&mut self, offset: usize, value: u64);
    /// Waits about `us` microseconds.
    fn delay_us(&mut self, us: u64);
}

/// How often the reset sequence looks at CSTS while waiting.
pub const POLL_INTERVAL_US: u64 = 1000;

/// Waits until CSTS.RDY is `ready`, for at most `timeout_ms`. `ENXIO` when
/// CSTS reads as all ones, `EIO` on a fatal status, `ETIMEDOUT` when RDY
/// never follows.
pub fn wait_ready<R: Registers>(regs: &mut R, ready: bool, timeout_ms: u64) -> Result<(), Errno> {
    let rounds = (timeout_ms * 1000).div_ceil(POLL_INTERVAL_US).max(1);
    for _ in 0..=rounds {
        let csts = Csts(regs.read32(reg::CSTS));
        if csts.gone() {
            return Err(ENXIO);
        }
        // While disabling, a fatal status is what we are clearing: only the
        // way up treats it as an error.
        if ready && csts.fatal() {
            return Err(EIO);
        }
        if csts.ready() == ready {
            return Ok(());
        }
        regs.delay_us(POLL_INTERVAL_US);
    }
    Err(ETIMEDOUT)
}

/// Resets the controller and brings it up with the admin queues at
/// `asq`/`acq` (`admin_entries` each): CC.EN=0 and wait RDY=0, program
/// AQA/ASQ/ACQ, enable with 64/16-byte entries and 4 KiB pages, wait
/// RDY=1. Every wait is bounded by CAP.TO. Returns CAP. `ENXIO` for a
/// device that reads as all ones or lacks the NVM command set or 4 KiB
/// pages; `ETIMEDOUT`/`EIO` as [`wait_ready`].
pub fn reset_and_enable<R: Registers>(
    regs: &mut R,
    asq: u64,
    acq: u64,
    admin_entries: u16,
) -> Result<Cap, Errno> {
    let cap = Cap(regs.read64(reg::CAP));
    if cap.0 == u64::MAX {
        return Err(ENXIO);
    }
    if !cap.nvm_command_set() || !cap.supports_4k_pages() {
        return Err(ENXIO);
    }
    if u32::from(admin_entries) > cap.max_queue_entries() || admin_entries < 2 {
        return Err(EINVAL);
    }
    let timeout = cap.timeout_ms();
    let config = regs.read32(reg::CC);
    if config & cc::EN != 0 {
        regs.write32(reg::CC, config & !cc::EN);
    }
    wait_ready(regs, false, timeout)?;
    regs.write32(reg::AQA, aqa(admin_entries));
    regs.write64(reg::ASQ, asq);
    regs.write64(reg::ACQ, acq);
    regs.write32(reg::CC, cc::enable());
    wait_ready(regs, true, timeout)?;
    Ok(cap)
}

/// The fields of IDENTIFY CONTROLLER (5.15.2.2) the driver uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerInfo {
    pub vendor: u16,
    pub serial: [u8; 20],
    pub model: [u8; 40],
    pub firmware: [u8; 8],
    /// Maximum Data Transfer Size: `2 ^ mdts` minimum pages; 0 = no limit.
    pub mdts: u8,
    /// Number of Namespaces (the highest namespace id).
    pub namespaces: u32,
    /// Volatile write cache present.
    pub volatile_cache: bool,
    /// Required/maximum SQ and CQ entry sizes (log2, bits 3:0 / 7:4).
    pub sqes: u8,
    pub cqes: u8,
}

impl ControllerInfo {
    /// Parses the 4096-byte identify page. `EINVAL` if it is short or if
    /// the controller cannot take 64-byte SQEs and 16-byte CQEs.
    pub fn parse(page: &[u8]) -> Result<Self, Errno> {
        if page.len() < 4096 {
            return Err(EINVAL);
        }
        let info = Self {
            vendor: u16::from_le_bytes([page[0], page[1]]),
            serial: page[4..24].try_into().map_err(|_| EINVAL)?,
            model: page[24..64].try_into().map_err(|_| EINVAL)?,
            firmware: page[64..72].try_into().map_err(|_| EINVAL)?,
            mdts: page[77],
            namespaces: u32::from_le_bytes(page[516..520].try_into().map_err(|_| EINVAL)?),
            volatile_cache: page[525] & 1 != 0,
            sqes: page[512],
            cqes: page[513],
        };
        // Zero means "not reported" in pre-1.2 controllers; accept it.
        let fits =
            |sizes: u8, want: u8| sizes == 0 || ((sizes & 0xF) <= want && (sizes >> 4) >= want);
        if !fits(info.sqes, 6) || !fits(info.cqes, 4) {
            return Err(EINVAL);
        }
        Ok(info)
    }

    /// Largest transfer in bytes for pages of `min_page` bytes, capped at
    /// `cap` (and at `cap` when MDTS is 0, "no limit").
    pub fn max_transfer(&self, min_page: u64, cap: u32) -> u32 {
        if self.mdts == 0 || self.mdts >= 32 {
            return cap;
        }
        let bytes = min_page
            .checked_shl(u32::from(self.mdts))
            .unwrap_or(u64::MAX);
        u32::try_from(bytes).unwrap_or(u32::MAX).min(cap)
    }

    /// The model number, trimmed of its space padding.
    pub fn model_str(&self) -> &str {
        trim_ascii(&self.model)
    }

    pub fn serial_str(&self) -> &str {
        trim_ascii(&self.serial)
    }
}

fn trim_ascii(bytes: &[u8]) -> &str {
    let s = core::str::from_utf8(bytes).unwrap_or("?");
    s.trim_matches(|c: char| c == ' ' || c == '\0')
}

/// The fields of IDENTIFY NAMESPACE (5.15.2.1) the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Namespace Size, in logical blocks.
    pub blocks: u64,
    /// Logical block size of the format in use.
    pub block_size: u32,
}

impl NamespaceInfo {
    /// Parses the 4096-byte identify page. `ENXIO` for an inactive
    /// namespace (size 0); `EINVAL` for a short page, a format index beyond
    /// the formats listed, a block size outside 512..=4096, or a format
    /// with metadata (which would need buffers this driver does not give).
    pub fn parse(page: &[u8]) -> Result<Self, Errno> {
        if page.len() < 4096 {
            return Err(EINVAL);
        }
        let blocks = u64::from_le_bytes(page[0..8].try_into().map_err(|_| EINVAL)?);
        if blocks == 0 {
            return Err(ENXIO);
        }
        let formats = usize::from(page[25]) + 1;
        let flbas = page[26];
        // Bits 3:0, and bits 6:5 as the upper bits when more than 16
        // formats exist (2.0); 1.4 controllers leave them zero.
        let index = usize::from(flbas & 0xF) | (usize::from((flbas >> 5) & 3) << 4);
        if index >= formats || index >= 64 {
            return Err(EINVAL);
        }
        let at = 128 + 4 * index;
        let lbaf = u32::from_le_bytes(page[at..at + 4].try_into().map_err(|_| EINVAL)?);
        let metadata = lbaf & 0xFFFF;
        let lbads = (lbaf >> 16) & 0xFF;
        if !(9..=12).contains(&lbads) || metadata != 0 {
            return Err(EINVAL);
        }
        Ok(Self {
            blocks,
            block_size: 1 << lbads,
        })
    }
}

/// Parses an active namespace id list (CNS 2): ascending ids, ended by a
/// zero or the page's end. Ids that do not ascend end the list.
pub fn parse_namespace_list(page: &[u8]) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut last = 0;
    for chunk in page.chunks_exact(4).take(1024) {
        let id = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        if id == 0 || id <= last || id == u32::MAX {
            break;
        }
        if ids.try_reserve(1).is_err() {
            break;
        }
        ids.push(id);
        last = id;
    }
    ids
}

/// Number of Queues granted, from SET FEATURES' completion dword 0: the
/// smaller of the submission and completion queues allocated (both 0-based
/// in the entry), and of `asked`.
pub fn granted_queues(result: u32, asked: u16) -> u16 {
    let sq = (result & 0xFFFF) as u16;
    let cq = (result >> 16) as u16;
    sq.min(cq).saturating_add(1).min(asked)
}

/// How a controller's I/O queues are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePlan {
    /// Interrupt-driven queues: block queue `i` is I/O queue `i + 1`, on
    /// MSI-X entry `i + 1`, aimed at CPU `i`.
    pub interrupt: u16,
    /// One more, polled, queue after them.
    pub polled: bool,
}

impl QueuePlan {
    /// Queues to ask for with SET FEATURES: one per CPU and the polled one.
    pub fn wanted(cpus: usize) -> u16 {
        u16::try_from(cpus).unwrap_or(u16::MAX - 1).max(1) + 1
    }

    /// From `granted` I/O queues, `cpus` CPUs and `vectors` MSI-X entries
    /// (entry 0 is the admin queue's, which is never unmasked): one
    /// interrupt queue per CPU as far as queues and vectors go, and a
    /// polled one if a queue is left over. `None` if not even one
    /// interrupt queue fits.
    pub fn new(granted: u16, cpus: usize, vectors: u16) -> Option<Self> {
        let cpus = u16::try_from(cpus).unwrap_or(u16::MAX).max(1);
        let interrupt = cpus.min(granted).min(vectors.saturating_sub(1));
        if interrupt == 0 {
            return None;
        }
        Some(Self {
            interrupt,
            polled: granted > interrupt,
        })
    }

    /// Block-layer queues in all.
    pub fn total(&self) -> u16 {
        self.interrupt + u16::from(self.polled)
    }
}

/// Blocks and PRP list room for a request of `bytes` on `block_size`
/// blocks: `EINVAL` if the block count does not fit NLB (16 bits).
pub fn block_count(bytes: u64, block_size: u32) -> Result<u32, Errno> {
    let blocks = bytes / u64::from(block_size.max(1));
    if blocks == 0 || blocks > 65536 || !bytes.is_multiple_of(u64::from(block_size.max(1))) {
        return Err(EINVAL);
    }
    Ok(blocks as u32)
}

#[cfg(test)]
mod tests;
