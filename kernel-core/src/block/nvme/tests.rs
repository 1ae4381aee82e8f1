use super::*;
use alloc::collections::VecDeque;
use alloc::vec;

// ---------------------------------------------------------------------------
// A mock controller: plays the device's side of one queue pair over plain
// memory. Data pages and PRP lists live in `mem` (physical address = index);
// the queues are arrays. It checks what a real controller would reject.
// ---------------------------------------------------------------------------

const MEM: usize = 1 << 20;
/// Per-command PRP list areas: 512 bytes (64 entries) each, from here.
const PRP_AREA: u64 = 0x8_0000;
const PRP_SLOT: u64 = 512;

struct MockController {
    qid: u16,
    entries: u16,
    sq: Vec<[u32; 16]>,
    cq: Vec<[u32; 4]>,
    mem: Vec<u8>,
    disk: Vec<u8>,
    block: u32,
    // Doorbells as the driver last rang them.
    sq_tail_db: u16,
    cq_head_db: u16,
    sq_rings: usize,
    cq_rings: usize,
    // The device's own state.
    sq_head: u16,
    cq_tail: u16,
    phase: bool,
    fetched: VecDeque<[u32; 16]>,
}

impl MockController {
    fn new(qid: u16, entries: u16) -> Self {
        Self {
            qid,
            entries,
            sq: vec![[0; 16]; usize::from(entries)],
            cq: vec![[0; 4]; usize::from(entries)],
            mem: vec![0; MEM],
            disk: vec![0; 64 * 4096],
            block: 512,
            sq_tail_db: 0,
            cq_head_db: 0,
            sq_rings: 0,
            cq_rings: 0,
            sq_head: 0,
            cq_tail: 0,
            phase: true,
            fetched: VecDeque::new(),
        }
    }

    /// Fetches every submitted entry (as a device does, in order).
    fn fetch(&mut self) {
        while self.sq_head != self.sq_tail_db {
            self.fetched.push_back(self.sq[usize::from(self.sq_head)]);
            self.sq_head = (self.sq_head + 1) % self.entries;
        }
    }

    fn cq_full(&self) -> bool {
        (self.cq_tail + 1) % self.entries == self.cq_head_db
    }

    /// Posts a raw completion for `cid` with `status`.
    fn post_raw(&mut self, sq_id: u16, cid: u16, status: u16, result: u32) {
        assert!(!self.cq_full(), "driver let the completion queue overflow");
        let entry = CompletionEntry {
            result,
            sq_head: self.sq_head,
            sq_id,
            cid,
            phase: self.phase,
            status: Status(status),
        };
        self.cq[usize::from(self.cq_tail)] = entry.encode();
        self.cq_tail += 1;
        if self.cq_tail == self.entries {
            self.cq_tail = 0;
            self.phase = !self.phase;
        }
    }

    fn post(&mut self, cid: u16, status: u16) {
        self.post_raw(self.qid, cid, status, 0);
    }

    /// Completes the fetched command at `index` (0 = oldest), executing
    /// reads and writes against the disk through the PRPs.
    fn complete_fetched(&mut self, index: usize) -> u16 {
        let sqe = self.fetched.remove(index).expect("a fetched command");
        let cid = (sqe[0] >> 16) as u16;
        let status = self.execute(&sqe);
        self.post(cid, status);
        cid
    }

    /// The pages a command's PRPs describe, per 4.3: PRP1 with its offset,
    /// then PRP2 as the second page or as a list pointer.
    fn pages(&self, sqe: &[u32; 16], bytes: usize) -> Vec<(u64, usize)> {
        let prp1 = u64::from(sqe[6]) | (u64::from(sqe[7]) << 32);
        let prp2 = u64::from(sqe[8]) | (u64::from(sqe[9]) << 32);
        let first = (4096 - (prp1 % 4096) as usize).min(bytes);
        let mut pages = vec![(prp1, first)];
        let mut left = bytes - first;
        if left == 0 {
            return pages;
        }
        if left <= 4096 {
            assert_eq!(prp2 % 4096, 0, "PRP2 as a page must be page aligned");
            pages.push((prp2, left));
            return pages;
        }
        let mut at = prp2 as usize;
        while left > 0 {
            let entry = u64::from_le_bytes(self.mem[at..at + 8].try_into().unwrap());
            assert_eq!(entry % 4096, 0, "list entries are page aligned");
            let len = left.min(4096);
            pages.push((entry, len));
            left -= len;
            at += 8;
            assert!(
                !at.is_multiple_of(4096) || left == 0,
                "list crossed a page: needs a chain"
            );
        }
        pages
    }

    fn execute(&mut self, sqe: &[u32; 16]) -> u16 {
        let opcode = (sqe[0] & 0xFF) as u8;
        let slba = u64::from(sqe[10]) | (u64::from(sqe[11]) << 32);
        let blocks = (sqe[12] & 0xFFFF) as usize + 1;
        let bytes = blocks * self.block as usize;
        let mut at = slba as usize * self.block as usize;
        if opcode != io::FLUSH && at + bytes > self.disk.len() {
            return 0x80; // LBA out of range
        }
        match opcode {
            io::FLUSH => {}
            io::READ | io::WRITE => {
                for (phys, len) in self.pages(sqe, bytes) {
                    let p = phys as usize;
                    if opcode == io::READ {
                        self.mem[p..p + len].copy_from_slice(&self.disk[at..at + len]);
                    } else {
                        self.disk[at..at + len].copy_from_slice(&self.mem[p..p + len]);
                    }
                    at += len;
                }
            }
            _ => return 0x01, // invalid opcode
        }
        0
    }
}

impl QueueMemory for MockController {
    fn write_sqe(&mut self, slot: u16, entry: &[u32; 16]) {
        self.sq[usize::from(slot)] = *entry;
    }

    fn read_cqe_dword(&self, slot: u16, dword: usize) -> u32 {
        self.cq[usize::from(slot)][dword]
    }

    fn prp_list(&self, cid: u16) -> (u64, usize) {
        (
            PRP_AREA + u64::from(cid) * PRP_SLOT,
            (PRP_SLOT / 8) as usize,
        )
    }

    fn write_prp_entry(&mut self, cid: u16, index: usize, value: u64) {
        assert!(index < (PRP_SLOT / 8) as usize, "PRP entry past the area");
        let at = (PRP_AREA + u64::from(cid) * PRP_SLOT) as usize + index * 8;
        self.mem[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn ring_sq_tail(&mut self, tail: u16) {
        assert!(tail < self.entries);
        self.sq_tail_db = tail;
        self.sq_rings += 1;
    }

    fn ring_cq_head(&mut self, head: u16) {
        assert!(head < self.entries);
        self.cq_head_db = head;
        self.cq_rings += 1;
    }
}

/// Submits a request the way the driver does.
fn submit_rw(
    q: &mut QueuePair,
    c: &mut MockController,
    op: BlockOp,
    sector: u64,
    segments: &[Segment],
    tag: u64,
) -> Result<u16, Errno> {
    let request = BlockRequest {
        op,
        sector,
        segments,
        tag,
    };
    q.submit_io(c, 1, 512, &request)
}

fn submit_nop(q: &mut QueuePair, c: &mut MockController, tag: u64) -> Result<u16, Errno> {
    submit_rw(q, c, BlockOp::Flush, 0, &[], tag)
}

fn reap_all(q: &mut QueuePair, c: &mut MockController) -> Vec<Reaped> {
    let mut out = [Reaped {
        tag: 0,
        status: None,
        result: 0,
    }; 8];
    let mut all = Vec::new();
    loop {
        let n = q.reap(c, &mut out);
        all.extend_from_slice(&out[..n]);
        if n < out.len() {
            return all;
        }
    }
}

fn seg(phys: u64, len: u32) -> Segment {
    Segment { phys, len }
}

// ---------------------------------------------------------------------------
// Registers and encodings
// ---------------------------------------------------------------------------

#[test]
fn cap_fields() {
    // MQES 2047, CQR, TO 15 (7.5 s), DSTRD 2, CSS NVM, MPSMIN 0, MPSMAX 4.
    let cap = Cap(2047 | (1 << 16) | (15 << 24) | (2 << 32) | (1 << 37) | (4 << 52));
    assert_eq!(cap.max_queue_entries(), 2048);
    assert!(cap.contiguous_required());
    assert_eq!(cap.timeout_ms(), 7500);
    assert_eq!(cap.doorbell_stride(), 16);
    assert!(cap.nvm_command_set());
    assert_eq!(cap.min_page_size(), 4096);
    assert_eq!(cap.max_page_size(), 65536);
    assert!(cap.supports_4k_pages());
    // MPSMIN 1 (8 KiB pages only): our 4 KiB pages are not accepted.
    assert!(!Cap(1 << 48 | 1 << 52 | 1 << 37).supports_4k_pages());
    // TO 0 still waits.
    assert_eq!(Cap(0).timeout_ms(), 500);
}

#[test]
fn doorbells_follow_the_stride() {
    assert_eq!(sq_tail_doorbell(0, 4), 0x1000);
    assert_eq!(cq_head_doorbell(0, 4), 0x1004);
    assert_eq!(sq_tail_doorbell(1, 4), 0x1008);
    assert_eq!(cq_head_doorbell(3, 4), 0x101C);
    // DSTRD 2: 16 bytes apart.
    let stride = Cap(2 << 32).doorbell_stride();
    assert_eq!(sq_tail_doorbell(1, stride), 0x1020);
    assert_eq!(cq_head_doorbell(1, stride), 0x1030);
    assert_eq!(bar_bytes_needed(1, stride), 0x1034);
}

#[test]
fn cc_csts_aqa() {
    assert_eq!(cc::enable(), 0x0046_0001);
    assert!(Csts(1).ready() && !Csts(1).fatal());
    assert!(Csts(3).fatal());
    assert!(Csts(u32::MAX).gone());
    assert!(!Csts(3).gone());
    assert!(Csts(0b1000).shutdown_complete());
    assert_eq!(aqa(32), 0x001F_001F);
    assert_eq!(aqa(0), 0x0001_0001);
    assert_eq!(aqa(u16::MAX), 0x0FFF_0FFF);
}

#[test]
fn admin_commands_encode() {
    let id = Command {
        cid: 5,
        ..Command::identify(admin::CNS_CONTROLLER, 0, 0x1234_5000)
    };
    let d = id.encode();
    assert_eq!(d[0], 0x0005_0006);
    assert_eq!(d[1], 0);
    assert_eq!((d[6], d[7]), (0x1234_5000, 0));
    assert_eq!(d[10], 1);

    let ns = Command::identify(admin::CNS_NAMESPACE, 1, 0x1_0000_2000).encode();
    assert_eq!((ns[1], ns[6], ns[7], ns[10]), (1, 0x2000, 1, 0));

    let sf = Command::set_queue_count(3, 3).encode();
    assert_eq!((sf[0] & 0xFF, sf[10], sf[11]), (0x09, 0x07, 0x0002_0002));

    let cq = Command::create_io_cq(2, 64, 0xABC000, true, 2).encode();
    assert_eq!(cq[0] & 0xFF, 0x05);
    assert_eq!(cq[6], 0xABC000);
    assert_eq!(cq[10], (63 << 16) | 2);
    assert_eq!(cq[11], (2 << 16) | 0b11);
    // A polled completion queue: IEN clear, still contiguous.
    let polled = Command::create_io_cq(3, 64, 0xABC000, false, 0).encode();
    assert_eq!(polled[11], 0b01);

    let sq = Command::create_io_sq(2, 64, 0xDEF000, 2).encode();
    assert_eq!(sq[0] & 0xFF, 0x01);
    assert_eq!(sq[10], (63 << 16) | 2);
    assert_eq!(sq[11], (2 << 16) | 1);

    assert_eq!(Command::delete_io_sq(4).encode()[10], 4);
    assert_eq!(Command::delete_io_cq(4).encode()[0] & 0xFF, 0x04);
}

#[test]
fn io_commands_encode() {
    let prps = Prps {
        prp1: 0x1_2345_6200,
        prp2: 0x7000,
    };
    let w = Command::rw(BlockOp::Write, 1, 0x1_0000_0010, 8, prps).encode();
    assert_eq!(w[0] & 0xFF, 0x01);
    assert_eq!(w[1], 1);
    assert_eq!((w[6], w[7], w[8], w[9]), (0x2345_6200, 1, 0x7000, 0));
    assert_eq!((w[10], w[11], w[12]), (0x10, 1, 7));
    let r = Command::rw(BlockOp::Read, 1, 0, 1, prps).encode();
    assert_eq!((r[0] & 0xFF, r[12]), (0x02, 0));
    let f = Command::rw(BlockOp::Flush, 1, 99, 8, prps).encode();
    assert_eq!(f, Command::flush(1).encode());
    assert_eq!((f[0] & 0xFF, f[1], f[6], f[10]), (0x00, 1, 0, 0));
    // Bytes are little-endian dwords in order.
    let b = Command {
        cid: 0x0102,
        ..Command::flush(0xAABBCCDD)
    }
    .to_bytes();
    assert_eq!(&b[0..8], &[0x00, 0x00, 0x02, 0x01, 0xDD, 0xCC, 0xBB, 0xAA]);
}

#[test]
fn completion_entries_decode() {
    // SC 0x80 (LBA out of range), SCT 0, DNR, phase 1, CID 9, SQ 2 head 17.
    let d3 = 9 | (1 << 16) | ((0x80 | (1 << 14)) << 17);
    let e = CompletionEntry::decode([0xdead, 0, 17 | (2 << 16), d3]);
    assert_eq!(e.result, 0xdead);
    assert_eq!((e.sq_head, e.sq_id, e.cid, e.phase), (17, 2, 9, true));
    assert_eq!(e.status.code(), 0x80);
    assert_eq!(e.status.code_type(), StatusType::Generic);
    assert!(e.status.do_not_retry());
    assert!(!e.status.is_success());
    assert_eq!(e.status.describe(), "LBA out of range");
    assert_eq!(CompletionEntry::decode(e.encode()), e);
    // Media error type 2, unrecovered read error.
    let m = Status(0x281);
    assert_eq!(m.code_type(), StatusType::MediaError);
    assert_eq!(
        alloc::format!("{m}"),
        "status type 0x2 code 0x81 (unrecovered read error)"
    );
    assert!(Status(0).is_success());
    // A non-zero type with code 0 is not success.
    assert!(!Status(0x100).is_success());
    assert_eq!(Status(0x500).code_type(), StatusType::Reserved(5));
}

// ---------------------------------------------------------------------------
// PRPs
// ---------------------------------------------------------------------------

#[test]
fn prps_for_one_two_and_many_pages() {
    let mut list = [0u64; 8];
    // One page, with an offset.
    let p = build_prps(&[seg(0x1200, 0x200)], &mut list, 0x9000).unwrap();
    assert_eq!(
        p,
        Prps {
            prp1: 0x1200,
            prp2: 0
        }
    );
    // Two pages: PRP2 is the second page.
    let two = [seg(0x1200, 0xE00), seg(0x5000, 0x200)];
    let p = build_prps(&two, &mut list, 0x9000).unwrap();
    assert_eq!(
        p,
        Prps {
            prp1: 0x1200,
            prp2: 0x5000
        }
    );
    // Four pages: PRP2 points at a list of pages 2..4.
    let four = [
        seg(0x1800, 0x800),
        seg(0x3000, 0x1000),
        seg(0x7000, 0x1000),
        seg(0x2000, 0x800),
    ];
    let p = build_prps(&four, &mut list, 0x9040).unwrap();
    assert_eq!(
        p,
        Prps {
            prp1: 0x1800,
            prp2: 0x9040
        }
    );
    assert_eq!(&list[..3], &[0x3000, 0x7000, 0x2000]);
}

#[test]
fn prps_refuse_what_the_device_cannot_take() {
    let mut list = [0u64; 2];
    let three = [
        seg(0x1000, 0x1000),
        seg(0x2000, 0x1000),
        seg(0x3000, 0x1000),
    ];
    // The list fits.
    assert!(build_prps(&three, &mut list, 0x9000).is_ok());
    // Too long for the list area.
    let four = [three[0], three[1], three[2], seg(0x4000, 0x200)];
    assert_eq!(build_prps(&four, &mut list, 0x9000), Err(EINVAL));
    // A list that would cross a page (no chaining here).
    let mut big = [0u64; 4];
    assert_eq!(build_prps(&four, &mut big, 0x9FF0), Err(EINVAL));
    // A misaligned list pointer.
    assert_eq!(build_prps(&three, &mut big, 0x9004), Err(EINVAL));
    // Segment rules: holes, later offsets, crossing, empty.
    assert_eq!(build_prps(&[], &mut big, 0x9000), Err(EINVAL));
    let hole = [seg(0x1000, 0x800), seg(0x3000, 0x800)];
    assert_eq!(build_prps(&hole, &mut big, 0x9000), Err(EINVAL));
    let offset = [seg(0x1800, 0x800), seg(0x3200, 0x200)];
    assert_eq!(build_prps(&offset, &mut big, 0x9000), Err(EINVAL));
    assert_eq!(
        build_prps(&[seg(0x1800, 0x1000)], &mut big, 0x9000),
        Err(EINVAL)
    );
    assert_eq!(build_prps(&[seg(0x1002, 4)], &mut big, 0x9000), Err(EINVAL));
    assert_eq!(build_prps(&[seg(0x1000, 0)], &mut big, 0x9000), Err(EINVAL));
}

#[test]
fn nlb_bounds() {
    assert_eq!(block_count(4096, 512), Ok(8));
    assert_eq!(block_count(512 * 65536, 512), Ok(65536));
    assert_eq!(block_count(512 * 65537, 512), Err(EINVAL));
    assert_eq!(block_count(0, 512), Err(EINVAL));
    assert_eq!(block_count(1000, 512), Err(EINVAL));
}

// ---------------------------------------------------------------------------
// The queue pair against the mock controller
// ---------------------------------------------------------------------------

#[test]
fn queue_fills_at_entries_minus_one() {
    let mut c = MockController::new(1, 4);
    let mut q = QueuePair::new(1, 4).unwrap();
    assert_eq!(q.depth(), 3);
    for tag in 0..3 {
        assert!(submit_nop(&mut q, &mut c, tag).is_ok());
    }
    assert!(q.is_full());
    assert_eq!(submit_nop(&mut q, &mut c, 99), Err(EAGAIN));
    assert_eq!(c.sq_tail_db, 3);
    c.fetch();
    c.complete_fetched(1);
    let done = reap_all(&mut q, &mut c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].tag, 1);
    assert_eq!(done[0].result(), Ok(()));
    assert!(!q.is_full());
    // The freed command id is reused; the tail wraps to slot 0.
    assert_eq!(submit_nop(&mut q, &mut c, 7), Ok(1));
    assert_eq!(c.sq_tail_db, 0);
}

#[test]
fn out_of_order_completions_through_many_wraps() {
    // Small queues so the tail, head and phase wrap hundreds of times.
    let mut c = MockController::new(2, 5);
    let mut q = QueuePair::new(2, 5).unwrap();
    let mut next_tag = 0u64;
    let mut reported = vec![0u32; 2000];
    let mut seed = 12345u32;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    while next_tag < 2000 || q.in_flight() > 0 {
        // Submit as many as fit (sometimes fewer).
        while next_tag < 2000 && !q.is_full() && rand() % 4 != 0 {
            submit_nop(&mut q, &mut c, next_tag).unwrap();
            next_tag += 1;
        }
        c.fetch();
        // Complete a random subset in random order.
        let mut k = c.fetched.len();
        while k > 0 && rand() % 3 != 0 {
            let i = rand() as usize % c.fetched.len();
            c.complete_fetched(i);
            k -= 1;
        }
        for r in reap_all(&mut q, &mut c) {
            assert_eq!(r.result(), Ok(()));
            reported[r.tag as usize] += 1;
        }
        assert!(!q.anomalies().any());
        // Nothing pending in the CQ after a reap: head caught up.
        assert_eq!(c.cq_head_db, c.cq_tail);
    }
    assert!(reported.iter().all(|&n| n == 1), "each tag exactly once");
    assert!(c.cq_rings > 0 && c.sq_rings == 2000);
}

#[test]
fn reap_fills_a_short_buffer_and_continues() {
    let mut c = MockController::new(1, 16);
    let mut q = QueuePair::new(1, 16).unwrap();
    for tag in 100..110 {
        submit_nop(&mut q, &mut c, tag).unwrap();
    }
    c.fetch();
    for _ in 0..10 {
        c.complete_fetched(0);
    }
    let mut out = [Reaped {
        tag: 0,
        status: None,
        result: 0,
    }; 4];
    assert_eq!(q.reap(&mut c, &mut out), 4);
    assert_eq!(c.cq_head_db, 4);
    assert_eq!(out.map(|r| r.tag), [100, 101, 102, 103]);
    assert_eq!(q.reap(&mut c, &mut out), 4);
    assert_eq!(q.reap(&mut c, &mut out), 2);
    assert_eq!(q.reap(&mut c, &mut out), 0);
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn an_empty_reap_does_not_ring() {
    let mut c = MockController::new(1, 8);
    let mut q = QueuePair::new(1, 8).unwrap();
    submit_nop(&mut q, &mut c, 1).unwrap();
    assert!(reap_all(&mut q, &mut c).is_empty());
    assert_eq!(c.cq_rings, 0);
}

#[test]
fn device_errors_carry_their_status() {
    let mut c = MockController::new(1, 8);
    let mut q = QueuePair::new(1, 8).unwrap();
    submit_nop(&mut q, &mut c, 1).unwrap();
    c.fetch();
    c.fetched.clear();
    c.post_raw(1, 0, 0x281, 0);
    let done = reap_all(&mut q, &mut c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, Some(Status(0x281)));
    assert_eq!(done[0].result(), Err(EIO));
}

#[test]
fn hostile_completions_are_consumed_and_refused() {
    let mut c = MockController::new(1, 8);
    let mut q = QueuePair::new(1, 8).unwrap();
    submit_nop(&mut q, &mut c, 41).unwrap(); // cid 0
    submit_nop(&mut q, &mut c, 42).unwrap(); // cid 1
    c.fetch();
    c.post(5, 0); // cid never issued
    c.post(200, 0); // cid beyond the table
    c.post(0, 0); // genuine
    c.post(0, 0); // duplicate
    c.post_raw(3, 1, 0, 0); // names another queue
    let done = reap_all(&mut q, &mut c);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].tag, 41);
    let a = q.anomalies();
    assert_eq!((a.unknown_cid, a.wrong_queue), (3, 1));
    // Every entry was consumed.
    assert_eq!(c.cq_head_db, 5);
    // cid 1 is still in flight and completes normally.
    assert_eq!(q.in_flight(), 1);
    c.post(1, 0);
    let done = reap_all(&mut q, &mut c);
    assert_eq!(done.iter().map(|r| r.tag).collect::<Vec<_>>(), [42]);
}

#[test]
fn a_controller_that_never_stops_posting_is_bounded() {
    // Every entry the driver looks at shows the phase it expects (the
    // device keeps overwriting the queue): a reap must still return after
    // one queue's worth.
    struct Babbler {
        phase_reads: core::cell::Cell<u32>,
        heads: usize,
    }
    impl QueueMemory for Babbler {
        fn write_sqe(&mut self, _: u16, _: &[u32; 16]) {}
        fn read_cqe_dword(&self, _: u16, dword: usize) -> u32 {
            if dword == 3 {
                let n = self.phase_reads.get();
                self.phase_reads.set(n + 1);
                // Passes 0, 2, 4.. expect phase 1; passes 1, 3.. phase 0.
                7 | (u32::from((n / 8).is_multiple_of(2)) << 16)
            } else {
                1 << 16 // sq id 1
            }
        }
        fn prp_list(&self, _: u16) -> (u64, usize) {
            (0, 0)
        }
        fn write_prp_entry(&mut self, _: u16, _: usize, _: u64) {}
        fn ring_sq_tail(&mut self, _: u16) {}
        fn ring_cq_head(&mut self, _: u16) {
            self.heads += 1;
        }
    }
    let mut q = QueuePair::new(1, 8).unwrap();
    let mut b = Babbler {
        phase_reads: core::cell::Cell::new(0),
        heads: 0,
    };
    let mut out = [Reaped {
        tag: 0,
        status: None,
        result: 0,
    }; 4];
    assert_eq!(q.reap(&mut b, &mut out), 0);
    assert_eq!(q.anomalies().unknown_cid, 8);
    assert_eq!(b.heads, 1);
    assert_eq!(q.reap(&mut b, &mut out), 0);
    assert_eq!(q.anomalies().unknown_cid, 16);
}

#[test]
fn fail_all_reports_each_once_and_ignores_late_entries() {
    let mut c = MockController::new(1, 8);
    let mut q = QueuePair::new(1, 8).unwrap();
    for tag in 0..5 {
        submit_nop(&mut q, &mut c, tag).unwrap();
    }
    c.fetch();
    c.complete_fetched(0); // tag 0 completes before the failure
    assert_eq!(q.fail_all(), 5);
    assert!(q.has_failed());
    // A late completion for a failed command is refused.
    c.complete_fetched(0);
    let mut done = reap_all(&mut q, &mut c);
    done.sort_by_key(|r| r.tag);
    assert_eq!(
        done.iter().map(|r| r.tag).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(done
        .iter()
        .all(|r| r.status.is_none() && r.result() == Err(EIO)));
    assert_eq!(q.anomalies().unknown_cid, 2);
    assert_eq!(q.in_flight(), 0);
    assert!(!q.has_failed());
    // Failed ids are free again.
    for tag in 10..17 {
        submit_nop(&mut q, &mut c, tag).unwrap();
    }
    assert!(q.is_full());
}

#[test]
fn a_failing_build_starts_nothing() {
    let mut c = MockController::new(1, 4);
    let mut q = QueuePair::new(1, 4).unwrap();
    let bad = [seg(0x1000, 0x800), seg(0x3000, 0x800)];
    assert_eq!(
        submit_rw(&mut q, &mut c, BlockOp::Read, 0, &bad, 1),
        Err(EINVAL)
    );
    assert_eq!(q.in_flight(), 0);
    assert_eq!(c.sq_rings, 0);
    // Not a whole block; more blocks than NLB holds.
    let odd = [seg(0x1000, 0x100)];
    assert_eq!(
        submit_rw(&mut q, &mut c, BlockOp::Write, 0, &odd, 3),
        Err(EINVAL)
    );
    // A list too long for the command's area (64 entries here).
    let long: Vec<Segment> = (0..66).map(|i| seg(0x1_0000 + i * 0x1000, 4096)).collect();
    assert_eq!(
        submit_rw(&mut q, &mut c, BlockOp::Read, 0, &long, 2),
        Err(EINVAL)
    );
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn sizes_outside_the_spec_are_refused() {
    assert!(QueuePair::new(1, 1).is_err());
    assert!(QueuePair::new(1, 4097).is_err());
    assert!(QueuePair::new(1, 2).is_ok());
}

#[test]
fn data_moves_through_prp_lists() {
    // Writes a pattern from scattered, partly unaligned buffers with
    // several requests in flight, reads it back into other pages.
    let mut c = MockController::new(1, 8);
    let mut q = QueuePair::new(1, 8).unwrap();
    let pattern = |i: usize| (i * 7 + i / 4096) as u8;
    // Request A: 5 pages at sector 0 (bytes 0..0x5000), first buffer
    // starting 0x800 into a page. Pages are scattered on purpose.
    let a = [
        seg(0x1_0800, 0x800),
        seg(0x3_0000, 0x1000),
        seg(0x1_5000, 0x1000),
        seg(0x2_2000, 0x1000),
        seg(0x4_1000, 0x1000),
        seg(0x1_2000, 0x800),
    ];
    // Request B: one page at sector 40.
    let b = [seg(0x5_0000, 0x1000)];
    // Request C: two pages at sector 64 (PRP2 as a page).
    let c_segs = [seg(0x6_0200, 0xE00), seg(0x6_4000, 0x200)];
    let fill = |c: &mut MockController, segs: &[Segment], disk_off: usize| {
        let mut at = disk_off;
        for s in segs {
            for i in 0..s.len as usize {
                c.mem[s.phys as usize + i] = pattern(at + i);
            }
            at += s.len as usize;
        }
    };
    fill(&mut c, &a, 0);
    fill(&mut c, &b, 40 * 512);
    fill(&mut c, &c_segs, 64 * 512);
    submit_rw(&mut q, &mut c, BlockOp::Write, 0, &a, 1).unwrap();
    submit_rw(&mut q, &mut c, BlockOp::Write, 40, &b, 2).unwrap();
    submit_rw(&mut q, &mut c, BlockOp::Write, 64, &c_segs, 3).unwrap();
    submit_nop(&mut q, &mut c, 4).unwrap();
    c.fetch();
    for i in [3, 1, 0, 0] {
        c.complete_fetched(i);
    }
    let mut tags: Vec<u64> = reap_all(&mut q, &mut c).iter().map(|r| r.tag).collect();
    assert_eq!(tags, [4, 2, 1, 3]);
    for i in 0..0x5000 {
        assert_eq!(c.disk[i], pattern(i), "disk byte {i}");
    }
    for i in 40 * 512..41 * 512 + 0xE00 {
        assert_eq!(c.disk[i], pattern(i));
    }
    for i in 64 * 512..64 * 512 + 0x1000 {
        assert_eq!(c.disk[i], pattern(i));
    }
    // Read it all back into fresh pages, 8 pages in one request.
    let back: Vec<Segment> = (0..8).map(|i| seg(0x8_8000 + i * 0x2000, 0x1000)).collect();
    submit_rw(&mut q, &mut c, BlockOp::Read, 0, &back, 9).unwrap();
    c.fetch();
    c.complete_fetched(0);
    tags = reap_all(&mut q, &mut c).iter().map(|r| r.tag).collect();
    assert_eq!(tags, [9]);
    for (p, s) in back.iter().enumerate() {
        for i in 0..0x1000 {
            assert_eq!(c.mem[s.phys as usize + i], c.disk[p * 0x1000 + i]);
        }
    }
}

// ---------------------------------------------------------------------------
// Reset and enable
// ---------------------------------------------------------------------------

struct MockRegs {
    cap: u64,
    cc: u32,
    /// CSTS follows CC.EN after this many delays (`None`: never).
    lag: Option<u32>,
    waited: u32,
    rdy: bool,
    fatal_on_enable: bool,
    gone: bool,
    writes: Vec<(usize, u64)>,
    delays_us: u64,
}

impl MockRegs {
    fn new(cap: u64) -> Self {
        Self {
            cap,
            cc: 0,
            lag: Some(3),
            waited: 0,
            rdy: false,
            fatal_on_enable: false,
            gone: false,
            writes: Vec::new(),
            delays_us: 0,
        }
    }
}

impl Registers for MockRegs {
    fn read32(&mut self, offset: usize) -> u32 {
        if self.gone {
            return u32::MAX;
        }
        match offset {
            reg::CC => self.cc,
            reg::CSTS => {
                let en = self.cc & cc::EN != 0;
                if let Some(lag) = self.lag {
                    if en != self.rdy && self.waited >= lag {
                        self.rdy = en;
                    }
                }
                let fatal = en && self.fatal_on_enable;
                u32::from(self.rdy) | (u32::from(fatal) << 1)
            }
            _ => 0,
        }
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.writes.push((offset, u64::from(value)));
        if offset == reg::CC {
            self.cc = value;
            self.waited = 0;
        }
    }
    fn read64(&mut self, offset: usize) -> u64 {
        if self.gone {
            return u64::MAX;
        }
        if offset == reg::CAP {
            self.cap
        } else {
            0
        }
    }
    fn write64(&mut self, offset: usize, value: u64) {
        self.writes.push((offset, value));
    }
    fn delay_us(&mut self, us: u64) {
        self.waited += 1;
        self.delays_us += us;
    }
}

/// QEMU's CAP: MQES 2047, CQR, TO 15, DSTRD 0, NVM, MPSMIN 0, MPSMAX 4.
const QEMU_CAP: u64 = 2047 | (1 << 16) | (15 << 24) | (1 << 37) | (4 << 52);

#[test]
fn reset_and_enable_programs_the_admin_queues() {
    let mut r = MockRegs::new(QEMU_CAP);
    r.cc = cc::EN; // left enabled by firmware
    r.rdy = true;
    let cap = reset_and_enable(&mut r, 0x10_0000, 0x20_0000, 32).unwrap();
    assert_eq!(cap, Cap(QEMU_CAP));
    assert_eq!(
        r.writes,
        [
            (reg::CC, 0),
            (reg::AQA, 0x001F_001F),
            (reg::ASQ, 0x10_0000),
            (reg::ACQ, 0x20_0000),
            (reg::CC, u64::from(cc::enable())),
        ]
    );
    assert!(r.rdy);
}

#[test]
fn a_disabled_controller_is_not_disabled_again() {
    let mut r = MockRegs::new(QEMU_CAP);
    reset_and_enable(&mut r, 0x1000, 0x2000, 2).unwrap();
    assert_eq!(r.writes[0].0, reg::AQA);
}

#[test]
fn waits_are_bounded_by_cap_to() {
    let mut r = MockRegs::new(QEMU_CAP);
    r.lag = None; // RDY never follows
    assert_eq!(reset_and_enable(&mut r, 0x1000, 0x2000, 32), Err(ETIMEDOUT));
    // TO = 15 -> 7.5 s, polled each millisecond: about 7.5 s of delay.
    assert!(r.delays_us >= 7_500_000 && r.delays_us <= 7_502_000);
    // Stuck enabled (RDY=1 after EN=0): the first wait times out.
    let mut r = MockRegs::new(QEMU_CAP);
    r.lag = None;
    r.rdy = true;
    assert_eq!(reset_and_enable(&mut r, 0x1000, 0x2000, 32), Err(ETIMEDOUT));
    assert_eq!(r.writes.len(), 0, "admin queues not programmed");
}

#[test]
fn fatal_status_and_missing_devices() {
    let mut r = MockRegs::new(QEMU_CAP);
    r.fatal_on_enable = true;
    assert_eq!(reset_and_enable(&mut r, 0x1000, 0x2000, 32), Err(EIO));
    let mut r = MockRegs::new(QEMU_CAP);
    r.gone = true;
    assert_eq!(reset_and_enable(&mut r, 0x1000, 0x2000, 32), Err(ENXIO));
    // No NVM command set, or no 4 KiB pages.
    let mut r = MockRegs::new(QEMU_CAP & !(1 << 37));
    assert_eq!(reset_and_enable(&mut r, 0x1000, 0x2000, 32), Err(ENXIO));
    let mut r = MockRegs::new(QEMU_CAP | (1 << 48));
    assert_eq!(reset_and_enable(&mut r, 0x1000, 0x2000, 32), Err(ENXIO));
    // An admin queue larger than MQES allows.
    let mut r = MockRegs::new(QEMU_CAP & !0xFFFF | 15);
    assert_eq!(reset_and_enable(&mut r, 0x1000, 0x2000, 32), Err(EINVAL));
    assert!(r.writes.is_empty());
}

#[test]
fn a_controller_vanishing_mid_wait_is_reported() {
    struct Vanishing(u32);
    impl Registers for Vanishing {
        fn read32(&mut self, _: usize) -> u32 {
            self.0 += 1;
            if self.0 > 3 {
                u32::MAX
            } else {
                0
            }
        }
        fn write32(&mut self, _: usize, _: u32) {}
        fn read64(&mut self, _: usize) -> u64 {
            QEMU_CAP
        }
        fn write64(&mut self, _: usize, _: u64) {}
        fn delay_us(&mut self, _: u64) {}
    }
    assert_eq!(
        reset_and_enable(&mut Vanishing(0), 0x1000, 0x2000, 32),
        Err(ENXIO)
    );
}

// ---------------------------------------------------------------------------
// Identify data
// ---------------------------------------------------------------------------

fn controller_page() -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    p[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
    p[4..24].copy_from_slice(b"deadbeef            ");
    let mut model = [b' '; 40];
    model[..15].copy_from_slice(b"QEMU NVMe Ctrl ");
    p[24..64].copy_from_slice(&model);
    p[64..72].copy_from_slice(b"7.2.0   ");
    p[77] = 7;
    p[512] = 0x66;
    p[513] = 0x44;
    p[516..520].copy_from_slice(&256u32.to_le_bytes());
    p[525] = 1;
    p
}

#[test]
fn identify_controller() {
    let info = ControllerInfo::parse(&controller_page()).unwrap();
    assert_eq!(info.vendor, 0x1b36);
    assert_eq!(info.model_str(), "QEMU NVMe Ctrl");
    assert_eq!(info.serial_str(), "deadbeef");
    assert_eq!(info.namespaces, 256);
    assert!(info.volatile_cache);
    assert_eq!(info.max_transfer(4096, 1 << 20), 512 * 1024);
    assert_eq!(info.max_transfer(4096, 128 * 1024), 128 * 1024);
    let unlimited = ControllerInfo {
        mdts: 0,
        ..info.clone()
    };
    assert_eq!(unlimited.max_transfer(4096, 1 << 20), 1 << 20);
    let silly = ControllerInfo { mdts: 40, ..info };
    assert_eq!(silly.max_transfer(4096, 1 << 20), 1 << 20);
    // No volatile cache.
    let mut p = controller_page();
    p[525] = 0;
    assert!(!ControllerInfo::parse(&p).unwrap().volatile_cache);
    // Entry sizes we cannot use.
    p[512] = 0x77;
    assert_eq!(ControllerInfo::parse(&p), Err(EINVAL));
    assert_eq!(ControllerInfo::parse(&[0; 100]), Err(EINVAL));
    // Garbage text does not panic.
    let mut p = controller_page();
    p[24..64].fill(0xFF);
    assert_eq!(ControllerInfo::parse(&p).unwrap().model_str(), "?");
}

fn namespace_page(blocks: u64, formats: u8, flbas: u8, lbafs: &[u32]) -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    p[0..8].copy_from_slice(&blocks.to_le_bytes());
    p[25] = formats - 1;
    p[26] = flbas;
    for (i, f) in lbafs.iter().enumerate() {
        p[128 + 4 * i..132 + 4 * i].copy_from_slice(&f.to_le_bytes());
    }
    p
}

#[test]
fn identify_namespace() {
    // Format 0: 512 bytes; format 1: 4096 bytes; format 2: 512 + 8 metadata.
    let lbafs = [9 << 16, 12 << 16, (9 << 16) | 8];
    let ns = NamespaceInfo::parse(&namespace_page(131072, 3, 0, &lbafs)).unwrap();
    assert_eq!((ns.blocks, ns.block_size), (131072, 512));
    let ns = NamespaceInfo::parse(&namespace_page(16384, 3, 1, &lbafs)).unwrap();
    assert_eq!((ns.blocks, ns.block_size), (16384, 4096));
    // Metadata formats, indices past the list, silly sizes, inactive.
    assert_eq!(
        NamespaceInfo::parse(&namespace_page(8, 3, 2, &lbafs)),
        Err(EINVAL)
    );
    assert_eq!(
        NamespaceInfo::parse(&namespace_page(8, 3, 3, &lbafs)),
        Err(EINVAL)
    );
    assert_eq!(
        NamespaceInfo::parse(&namespace_page(8, 1, 0, &[30 << 16])),
        Err(EINVAL)
    );
    assert_eq!(
        NamespaceInfo::parse(&namespace_page(8, 1, 0, &[0])),
        Err(EINVAL)
    );
    assert_eq!(
        NamespaceInfo::parse(&namespace_page(0, 3, 0, &lbafs)),
        Err(ENXIO)
    );
    assert_eq!(NamespaceInfo::parse(&[0; 10]), Err(EINVAL));
    // Upper index bits (FLBAS 6:5) count: index 16 past 3 formats.
    assert_eq!(
        NamespaceInfo::parse(&namespace_page(8, 3, 0x20, &lbafs)),
        Err(EINVAL)
    );
}

#[test]
fn namespace_lists() {
    let mut p = vec![0u8; 4096];
    for (i, id) in [1u32, 2, 7].iter().enumerate() {
        p[4 * i..4 * i + 4].copy_from_slice(&id.to_le_bytes());
    }
    assert_eq!(parse_namespace_list(&p), [1, 2, 7]);
    // Not ascending: the list stops there.
    p[12..16].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(parse_namespace_list(&p), [1, 2, 7]);
    assert!(parse_namespace_list(&[0; 4096]).is_empty());
    // A full page of ids.
    let full: Vec<u8> = (1..=1024u32).flat_map(|i| i.to_le_bytes()).collect();
    assert_eq!(parse_namespace_list(&full).len(), 1024);
}

#[test]
fn queue_counts_and_plans() {
    // QEMU grants 64 of each (0-based 63).
    assert_eq!(granted_queues(63 | (63 << 16), 3), 3);
    assert_eq!(granted_queues(63 | (63 << 16), 100), 64);
    assert_eq!(granted_queues(1, 3), 1);
    assert_eq!(granted_queues(u32::MAX, u16::MAX), u16::MAX);
    assert_eq!(QueuePlan::wanted(2), 3);
    assert_eq!(QueuePlan::wanted(0), 2);
    // Enough of everything: one per CPU plus the polled one.
    assert_eq!(
        QueuePlan::new(3, 2, 65),
        Some(QueuePlan {
            interrupt: 2,
            polled: true
        })
    );
    // Exactly one per CPU: no polled queue.
    assert_eq!(
        QueuePlan::new(2, 2, 65),
        Some(QueuePlan {
            interrupt: 2,
            polled: false
        })
    );
    // Fewer queues than CPUs.
    assert_eq!(QueuePlan::new(1, 4, 65).unwrap().total(), 1);
    // Vectors are the limit (entry 0 is the admin queue's).
    assert_eq!(
        QueuePlan::new(8, 4, 3),
        Some(QueuePlan {
            interrupt: 2,
            polled: true
        })
    );
    assert_eq!(QueuePlan::new(8, 4, 1), None);
    assert_eq!(QueuePlan::new(0, 4, 65), None);
}
