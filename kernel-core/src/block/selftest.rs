//! The block self-test's plan (boot parameter `blktest=NAME`), shared by
//! the kernel, which runs it through [`super::BlockDevice`], and the host,
//! which checks the disk image afterwards.
//!
//! Queue `q` owns the [`REGION`] bytes from `q * REGION`; it writes them
//! with [`REQUESTS`] requests in flight at once, flushes, reads them back
//! in the opposite order and compares. Every byte at disk offset `o` holds
//! [`pattern`]`(o)`, so the host can check the image without knowing the
//! queue count: the kernel logs how many bytes it wrote.
//!
//! Odd requests start [`MISALIGN`] bytes into their first page, so the
//! segment list begins and ends with partial pages and (for an NVMe
//! device) needs a PRP list.

use super::{Geometry, Segment, PAGE_SIZE};
use abi::errno::{Errno, EINVAL, ENOMEM};
use alloc::vec::Vec;

/// Bytes each queue writes.
pub const REGION: u64 = 128 * 1024;
/// Requests per queue, all in flight together (if the queue is that deep).
pub const REQUESTS: u64 = 8;
/// Where in its first page an odd request's memory starts.
pub const MISALIGN: u64 = 512;

/// The byte the test writes at disk offset `offset`: differs between
/// neighbouring bytes, sectors and requests, never a constant run.
pub fn pattern(offset: u64) -> u8 {
    let sector = offset >> 9;
    let mixed = offset ^ sector.wrapping_mul(0x9E37_79B1) ^ (sector >> 8);
    (mixed ^ (mixed >> 8) ^ 0xA5) as u8
}

/// One request of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// First block.
    pub sector: u64,
    /// Disk byte offset (`sector * block_size`).
    pub offset: u64,
    pub bytes: u64,
    /// Offset of the data in its buffer's first page.
    pub misalign: u64,
}

/// The requests queue `queue` makes on a device of `geometry`. `EINVAL`
/// if the disk is too small for every queue's region or a request cannot
/// be made within the device's limits.
pub fn plan(geometry: &Geometry, queue: u16) -> Result<Vec<Step>, Errno> {
    let block = u64::from(geometry.block_size);
    let queues = u64::from(geometry.queues);
    if queues == 0 || block == 0 || geometry.bytes() < queues * REGION {
        return Err(EINVAL);
    }
    let bytes = REGION / REQUESTS;
    if !bytes.is_multiple_of(block) || bytes > u64::from(geometry.max_transfer) {
        return Err(EINVAL);
    }
    let mut steps = Vec::new();
    steps
        .try_reserve_exact(REQUESTS as usize)
        .map_err(|_| ENOMEM)?;
    for i in 0..REQUESTS {
        let offset = u64::from(queue) * REGION + i * bytes;
        // Misaligned only if the extra page fits the segment limit.
        let pages_misaligned = (MISALIGN + bytes).div_ceil(PAGE_SIZE);
        let misalign = if i % 2 == 1 && pages_misaligned <= u64::from(geometry.max_segments) {
            MISALIGN
        } else {
            0
        };
        if bytes.div_ceil(PAGE_SIZE) > u64::from(geometry.max_segments) {
            return Err(EINVAL);
        }
        steps.push(Step {
            sector: offset / block,
            offset,
            bytes,
            misalign,
        });
    }
    Ok(steps)
}

/// Splits `len` bytes of physically contiguous memory at `phys` into
/// segments that each lie within one page (the segment rules of
/// [`super::check_request`]). `ENOMEM` if the list cannot be allocated.
pub fn split_pages(phys: u64, len: u64) -> Result<Vec<Segment>, Errno> {
    let mut segments = Vec::new();
    let mut at = phys;
    let end = phys.checked_add(len).ok_or(EINVAL)?;
    while at < end {
        let page_end = (at / PAGE_SIZE + 1) * PAGE_SIZE;
        let piece = page_end.min(end) - at;
        segments.try_reserve(1).map_err(|_| ENOMEM)?;
        segments.push(Segment {
            phys: at,
            len: u32::try_from(piece).map_err(|_| EINVAL)?,
        });
        at += piece;
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::super::{check_request, BlockOp, BlockRequest};
    use super::*;

    fn geometry(queues: u16, max_segments: u16) -> Geometry {
        Geometry {
            block_size: 512,
            blocks: 131072,
            max_transfer: 512 * 1024,
            max_segments,
            queues,
            queue_depth: 63,
            volatile_cache: true,
        }
    }

    #[test]
    fn the_pattern_is_not_flat() {
        let bytes: Vec<u8> = (0..4096u64).map(pattern).collect();
        // Neighbours differ, and sectors are not copies of each other.
        assert!(bytes.windows(2).filter(|w| w[0] == w[1]).count() < 64);
        assert_ne!(&bytes[0..512], &bytes[512..1024]);
        let far: Vec<u8> = (REGION..REGION + 512).map(pattern).collect();
        assert_ne!(&bytes[0..512], &far[..]);
    }

    #[test]
    fn plans_cover_each_queue_region_with_valid_requests() {
        let g = geometry(3, 129);
        let mut covered = Vec::new();
        for q in 0..3 {
            let steps = plan(&g, q).unwrap();
            assert_eq!(steps.len() as u64, REQUESTS);
            for (i, s) in steps.iter().enumerate() {
                assert_eq!(s.misalign, if i % 2 == 1 { MISALIGN } else { 0 });
                let base = 0x10_0000 + s.misalign;
                let segments = split_pages(base, s.bytes).unwrap();
                let request = BlockRequest {
                    op: BlockOp::Write,
                    sector: s.sector,
                    segments: &segments,
                    tag: 0,
                };
                assert_eq!(check_request(&g, &request), Ok(()));
                if s.misalign != 0 {
                    // 16 KiB from 512 into a page: 5 pieces, a PRP list.
                    assert_eq!(segments.len(), 5);
                }
                covered.push((s.offset, s.bytes));
            }
        }
        covered.sort();
        let mut at = 0;
        for (offset, bytes) in covered {
            assert_eq!(offset, at);
            at += bytes;
        }
        assert_eq!(at, 3 * REGION);
    }

    #[test]
    fn limits_shape_the_plan() {
        // Four segments: 16 KiB fits only aligned.
        let steps = plan(&geometry(1, 4), 0).unwrap();
        assert!(steps.iter().all(|s| s.misalign == 0));
        assert_eq!(plan(&geometry(1, 3), 0), Err(EINVAL));
        // Too small a disk for every queue's region.
        let mut g = geometry(2, 129);
        g.blocks = 256;
        assert_eq!(plan(&g, 0), Err(EINVAL));
        // A transfer limit below the request size.
        let mut g = geometry(1, 129);
        g.max_transfer = 8192;
        assert_eq!(plan(&g, 0), Err(EINVAL));
    }

    #[test]
    fn split_pages_respects_pages() {
        assert_eq!(
            split_pages(0x1E00, 0x1400).unwrap(),
            [
                Segment {
                    phys: 0x1E00,
                    len: 0x200
                },
                Segment {
                    phys: 0x2000,
                    len: 0x1000
                },
                Segment {
                    phys: 0x3000,
                    len: 0x200
                },
            ]
        );
        assert!(split_pages(0x1000, 0).unwrap().is_empty());
        assert_eq!(split_pages(u64::MAX, 2), Err(EINVAL));
    }
}
