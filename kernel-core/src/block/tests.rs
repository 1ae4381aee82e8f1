use super::*;

fn geometry() -> Geometry {
    Geometry {
        block_size: 512,
        blocks: 1024,
        max_transfer: 128 * 1024,
        max_segments: 33,
        queues: 1,
        queue_depth: 64,
        volatile_cache: true,
    }
}

fn read(sector: u64, segments: &[Segment]) -> BlockRequest<'_> {
    BlockRequest {
        op: BlockOp::Read,
        sector,
        segments,
        tag: 7,
    }
}

fn seg(phys: u64, len: u32) -> Segment {
    Segment { phys, len }
}

#[test]
fn page_aligned_and_offset_lists_pass() {
    let g = geometry();
    assert_eq!(check_request(&g, &read(0, &[seg(0x1000, 4096)])), Ok(()));
    // An unaligned start: the first piece to its page end, then the rest.
    let list = [seg(0x1200, 0xE00), seg(0x5000, 0x200)];
    assert_eq!(check_request(&g, &read(8, &list)), Ok(()));
    // Three pages, the middle one whole.
    let list = [seg(0x1800, 0x800), seg(0x3000, 0x1000), seg(0x9000, 0x800)];
    assert_eq!(check_request(&g, &read(1008, &list)), Ok(()));
}

#[test]
fn holes_and_misalignment_are_refused() {
    let g = geometry();
    // The first piece stops before its page end: a hole in the list.
    let list = [seg(0x1000, 0x800), seg(0x3000, 0x800)];
    assert_eq!(check_request(&g, &read(0, &list)), Err(EINVAL));
    // A later piece does not start on a page.
    let list = [seg(0x1800, 0x800), seg(0x3200, 0x800)];
    assert_eq!(check_request(&g, &read(0, &list)), Err(EINVAL));
    // A piece crossing its page.
    assert_eq!(
        check_request(&g, &read(0, &[seg(0x1800, 0x1000)])),
        Err(EINVAL)
    );
    // Not dword aligned.
    let list = [seg(0x1002, 0xFFE), seg(0x2000, 0x2)];
    assert_eq!(check_request(&g, &read(0, &list)), Err(EINVAL));
    // Empty piece, empty list.
    assert_eq!(check_request(&g, &read(0, &[seg(0x1000, 0)])), Err(EINVAL));
    assert_eq!(check_request(&g, &read(0, &[])), Err(EINVAL));
}

#[test]
fn sizes_and_bounds() {
    let g = geometry();
    // Not a whole block.
    assert_eq!(
        check_request(&g, &read(0, &[seg(0x1000, 256)])),
        Err(EINVAL)
    );
    // Past the end, and at the very end.
    assert_eq!(
        check_request(&g, &read(1023, &[seg(0x1000, 1024)])),
        Err(EINVAL)
    );
    assert_eq!(check_request(&g, &read(1022, &[seg(0x1000, 1024)])), Ok(()));
    assert_eq!(
        check_request(&g, &read(u64::MAX, &[seg(0x1000, 512)])),
        Err(EINVAL)
    );
    // Over max_transfer (33 pages = 132 KiB > 128 KiB).
    let list: alloc::vec::Vec<Segment> = (0..33).map(|i| seg(0x10_0000 + i * 4096, 4096)).collect();
    let mut big = geometry();
    big.blocks = 1 << 20;
    assert_eq!(check_request(&big, &read(0, &list)), Err(EINVAL));
    assert_eq!(check_request(&big, &read(0, &list[..32])), Ok(()));
    // Too many segments.
    let mut few = big;
    few.max_segments = 4;
    assert_eq!(check_request(&few, &read(0, &list[..5])), Err(EINVAL));
}

#[test]
fn flush_has_no_data() {
    let g = geometry();
    let flush = BlockRequest {
        op: BlockOp::Flush,
        sector: 0,
        segments: &[],
        tag: 1,
    };
    assert_eq!(check_request(&g, &flush), Ok(()));
    let list = [seg(0x1000, 512)];
    let bad = BlockRequest {
        segments: &list,
        ..flush
    };
    assert_eq!(check_request(&g, &bad), Err(EINVAL));
}
