//! Block devices: the interface every disk driver implements and the
//! kernel's block layer drives.
//!
//! A driver owns one or more hardware queues. The block layer hands it
//! [`BlockRequest`]s, each naming a physical scatter list and a tag, with
//! [`BlockDevice::submit`]; the device works on them in any order and
//! [`BlockDevice::poll`] later reports each one finished with its tag.
//! `poll` runs from the queue's interrupt (the driver calls the hook set
//! by [`BlockDevice::set_interrupt_hook`], which polls) or, for a polled
//! queue, from whoever waits for it (`IORING_SETUP_IOPOLL`).
//!
//! The segment rules ([`check_request`]) are those of an NVMe PRP list,
//! which every other transport accepts too, so the block layer can build
//! one scatter list from pinned user pages and hand it to any driver with
//! no copy.

pub mod mock;
pub mod nvme;
pub mod virtio_blk;
pub mod virtq;

use abi::errno::{Errno, EINVAL};
use alloc::sync::Arc;

/// Bytes in a page, the unit of the segment rules.
pub const PAGE_SIZE: u64 = 4096;
/// Every segment's address and length is a multiple of this (NVMe needs
/// dword-aligned PRP entries).
pub const DMA_ALIGN: u64 = 4;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOp {
    /// Device to memory.
    Read,
    /// Memory to device.
    Write,
    /// Make every write completed so far durable (no segments).
    Flush,
}

/// A physically contiguous piece of a request's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Physical address.
    pub phys: u64,
    /// Length in bytes.
    pub len: u32,
}

/// One request handed to a driver.
#[derive(Debug, Clone, Copy)]
pub struct BlockRequest<'a> {
    pub op: BlockOp,
    /// First logical block (in units of [`Geometry::block_size`]).
    pub sector: u64,
    /// Where the data goes or comes from, in order; empty for a flush.
    pub segments: &'a [Segment],
    /// Returned with the completion; the block layer's name for the request.
    pub tag: u64,
}

impl BlockRequest<'_> {
    /// Bytes the request moves.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| u64::from(s.len)).sum()
    }
}

/// A finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub tag: u64,
    /// `Ok` when the device reported success; `EIO` for a device error
    /// (the driver logs the device's status), a timeout or a dead device.
    pub result: Result<(), Errno>,
}

/// Shape and limits of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Logical block size in bytes: a power of two, at least 512.
    pub block_size: u32,
    /// Capacity in logical blocks.
    pub blocks: u64,
    /// Most bytes one request may move (a multiple of `block_size`).
    pub max_transfer: u32,
    /// Most segments one request may have.
    pub max_segments: u16,
    /// Hardware queues (numbered from 0).
    pub queues: u16,
    /// Requests in flight per queue.
    pub queue_depth: u16,
    /// The device has a volatile write cache: writes are durable only after
    /// a [`BlockOp::Flush`].
    pub volatile_cache: bool,
}

impl Geometry {
    /// Capacity in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block_size))
    }
}

/// How a queue reports completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMode {
    /// By interrupt: the driver calls the interrupt hook.
    Interrupt,
    /// Never by interrupt: someone must call [`BlockDevice::poll`].
    Polled,
}

/// Called by a driver from a queue's interrupt handler with the queue's
/// number; the block layer then polls that queue.
pub type InterruptHook = Arc<dyn Fn(u16) + Send + Sync>;

/// A disk. Methods may be called from any CPU and from interrupt handlers,
/// so they take `&self` and lock inside with interrupts off.
pub trait BlockDevice: Send + Sync {
    /// The name under `/dev` (`nvme0n1`, `vda`).
    fn name(&self) -> &str;
    fn geometry(&self) -> Geometry;
    fn queue_mode(&self, queue: u16) -> QueueMode;
    /// Sets what the driver calls when a queue interrupts.
    fn set_interrupt_hook(&self, hook: InterruptHook);
    /// Starts `request` on `queue`. The request passed [`check_request`].
    /// Errors: `EAGAIN` when the queue is full (retry after a completion),
    /// `EINVAL` for a queue that does not exist, `EIO` when the device is
    /// dead. On error nothing was started.
    fn submit(&self, queue: u16, request: &BlockRequest<'_>) -> Result<(), Errno>;
    /// Takes the requests of `queue` that finished, calling `done` for each;
    /// returns how many. Each started request is reported exactly once.
    fn poll(&self, queue: u16, done: &mut dyn FnMut(Completion)) -> usize;
}

/// Checks `request` against the segment rules and `geometry`:
/// - every segment is non-empty, lies within one page, and has an address
///   and length that are multiples of [`DMA_ALIGN`];
/// - every segment but the first starts on a page boundary, and every one
///   but the last ends on one (so the list is an NVMe PRP list);
/// - the total is a non-zero multiple of the block size, at most
///   `max_transfer`, in at most `max_segments` segments, and lies within
///   the capacity;
/// - a flush has no segments and sector 0.
pub fn check_request(geometry: &Geometry, request: &BlockRequest<'_>) -> Result<(), Errno> {
    let segments = request.segments;
    if request.op == BlockOp::Flush {
        return if segments.is_empty() && request.sector == 0 {
            Ok(())
        } else {
            Err(EINVAL)
        };
    }
    if segments.is_empty() || segments.len() > usize::from(geometry.max_segments) {
        return Err(EINVAL);
    }
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        let len = u64::from(segment.len);
        let offset = segment.phys % PAGE_SIZE;
        if len == 0
            || !segment.phys.is_multiple_of(DMA_ALIGN)
            || !len.is_multiple_of(DMA_ALIGN)
            || offset + len > PAGE_SIZE
            || (i > 0 && offset != 0)
            || (i < last && offset + len != PAGE_SIZE)
        {
            return Err(EINVAL);
        }
    }
    let bytes = request.bytes();
    let block = u64::from(geometry.block_size);
    if !bytes.is_multiple_of(block) || bytes > u64::from(geometry.max_transfer) {
        return Err(EINVAL);
    }
    let end = request.sector.checked_add(bytes / block).ok_or(EINVAL)?;
    if end > geometry.blocks {
        return Err(EINVAL);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
