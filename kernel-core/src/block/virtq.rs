//! The split virtqueue of virtio 1.0 (section 2.6), as the driver side
//! keeps it: the descriptor free list, the available ring it fills and the
//! used ring it drains, over memory reached through [`QueueMemory`] (a DMA
//! buffer in the kernel, a plain array in tests).
//!
//! Layout in one buffer for a queue of `size` entries (a power of two):
//! the descriptor table (16 bytes each) at 0, the available ring (flags,
//! idx, `size` heads, used_event) after it, the used ring (flags, idx,
//! `size` (id, len) pairs, avail_event) 4-byte aligned after that.
//!
//! The device writes the used ring and may write anything anywhere in this
//! memory. So the driver keeps its own copy of every chain (its length and
//! links, its token) and never follows a link the device could have
//! changed; a used element whose id is not the head of a chain in flight,
//! or a used index that runs ahead by more than the queue size, is a
//! [`UsedError`] (the driver then declares the device broken). Indices are
//! free-running `u16`s that wrap, compared with wrapping arithmetic.

use alloc::vec::Vec;

/// Access to the queue's memory. Reads of words the device writes are
/// `Acquire` loads; writes are `Release` stores, so a store of the
/// available index publishes every descriptor written before it.
pub trait QueueMemory {
    fn read_u16(&self, off: usize) -> u16;
    fn read_u32(&self, off: usize) -> u32;
    fn write_u16(&self, off: usize, value: u16);
    fn write_u32(&self, off: usize, value: u32);
    fn write_u64(&self, off: usize, value: u64);
}

/// Descriptor flag: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer (else it reads it).
pub const DESC_F_WRITE: u16 = 2;
/// Available-ring flag: the driver wants no interrupts (polled queue).
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Largest queue the specification allows.
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Where the three parts lie in the queue's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub desc: usize,
    pub avail: usize,
    pub used: usize,
    /// Bytes in all.
    pub bytes: usize,
}

impl Layout {
    /// The layout for `size` entries; `None` unless `size` is a power of
    /// two of at most [`MAX_QUEUE_SIZE`].
    pub fn new(size: u16) -> Option<Layout> {
        if !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return None;
        }
        let n = usize::from(size);
        let desc = 0;
        let avail = desc + 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4);
        let bytes = used + 6 + 8 * n;
        Some(Layout {
            desc,
            avail,
            used,
            bytes,
        })
    }
}

/// One buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    pub phys: u64,
    pub len: u32,
    /// The device writes it (a read's data, a status byte).
    pub device_writes: bool,
}

/// Why a chain was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Not enough free descriptors now (retry after completions).
    Full,
    /// An empty chain, or one longer than the queue.
    Invalid,
}

/// A used element the device should not have written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsedError {
    /// The id is not the head of a chain in flight.
    BadId(u32),
    /// The used index ran ahead of the driver by more than the queue size.
    BadIndex { used_idx: u16, last_seen: u16 },
}

/// A finished chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// The token given to [`SplitQueue::push`].
    pub token: u64,
    /// The head descriptor (the driver's per-request slot).
    pub head: u16,
    /// Bytes the device says it wrote (untrusted).
    pub len: u32,
}

/// The driver's state of one split virtqueue.
#[derive(Debug)]
pub struct SplitQueue {
    layout: Layout,
    size: u16,
    /// The driver's own links: `next[d]` is the descriptor after `d` in
    /// the free list or in its chain.
    next: Vec<u16>,
    free_head: u16,
    free_count: u16,
    /// Per head descriptor of a chain in flight: its length and token.
    chains: Vec<Option<(u16, u64)>>,
    /// The next available index the driver publishes.
    avail_idx: u16,
    /// The used index up to which the driver has taken elements.
    last_used: u16,
}

impl SplitQueue {
    /// A queue of `size` entries over memory laid out by [`Layout::new`],
    /// which must be zeroed; `flags` is the available ring's flags word
    /// ([`AVAIL_F_NO_INTERRUPT`] for a polled queue). `None` for a size
    /// that is not a power of two up to [`MAX_QUEUE_SIZE`].
    pub fn new(size: u16, mem: &impl QueueMemory, avail_flags: u16) -> Option<SplitQueue> {
        let layout = Layout::new(size)?;
        mem.write_u16(layout.avail, avail_flags);
        let n = usize::from(size);
        Some(SplitQueue {
            layout,
            size,
            // d -> d + 1; the last link is never followed (count bounds it).
            next: (1..=size).map(|d| d % size).collect(),
            free_head: 0,
            free_count: size,
            chains: alloc::vec![None; n],
            avail_idx: 0,
            last_used: 0,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    /// Free descriptors.
    pub fn free_descriptors(&self) -> u16 {
        self.free_count
    }

    /// The head the next [`SplitQueue::push`] will use, if any descriptor
    /// is free (so the driver can fill that head's request slot first).
    pub fn next_head(&self) -> Option<u16> {
        (self.free_count > 0).then_some(self.free_head)
    }

    /// Chains in flight.
    pub fn in_flight(&self) -> usize {
        self.chains.iter().filter(|c| c.is_some()).count()
    }

    /// Writes the chain `buffers` into free descriptors, makes it available
    /// and returns its head (a slot number below the size, unique while the
    /// chain is in flight). The device sees it after the caller notifies.
    pub fn push(
        &mut self,
        mem: &impl QueueMemory,
        buffers: &[Buffer],
        token: u64,
    ) -> Result<u16, PushError> {
        let count = u16::try_from(buffers.len()).map_err(|_| PushError::Invalid)?;
        if count == 0 || count > self.size {
            return Err(PushError::Invalid);
        }
        if count > self.free_count {
            return Err(PushError::Full);
        }
        let head = self.free_head;
        let mut d = head;
        for (i, buffer) in buffers.iter().enumerate() {
            let last = i + 1 == buffers.len();
            let next = self.next[usize::from(d)];
            let mut flags = if buffer.device_writes {
                DESC_F_WRITE
            } else {
                0
            };
            if !last {
                flags |= DESC_F_NEXT;
            }
            let at = self.layout.desc + 16 * usize::from(d);
            mem.write_u64(at, buffer.phys);
            mem.write_u32(at + 8, buffer.len);
            mem.write_u16(at + 12, flags);
            mem.write_u16(at + 14, if last { 0 } else { next });
            if last {
                self.free_head = next;
            } else {
                d = next;
            }
        }
        self.free_count -= count;
        self.chains[usize::from(head)] = Some((count, token));
        let slot = usize::from(self.avail_idx % self.size);
        mem.write_u16(self.layout.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // Release: the descriptors and the ring slot are visible first.
        mem.write_u16(self.layout.avail + 2, self.avail_idx);
        Ok(head)
    }

    /// Takes the next used element, if the device has published one, and
    /// frees its chain. `Err` for an element the device should not have
    /// written; the element is skipped, and the queue should be considered
    /// broken (the driver fails it).
    pub fn pop_used(&mut self, mem: &impl QueueMemory) -> Option<Result<Used, UsedError>> {
        let used_idx = mem.read_u16(self.layout.used + 2);
        if used_idx == self.last_used {
            return None;
        }
        if used_idx.wrapping_sub(self.last_used) > self.size {
            return Some(Err(UsedError::BadIndex {
                used_idx,
                last_seen: self.last_used,
            }));
        }
        let slot = usize::from(self.last_used % self.size);
        let at = self.layout.used + 4 + 8 * slot;
        let id = mem.read_u32(at);
        let len = mem.read_u32(at + 4);
        self.last_used = self.last_used.wrapping_add(1);
        let chain = usize::try_from(id)
            .ok()
            .filter(|&i| i < usize::from(self.size))
            .and_then(|i| self.chains[i].take().map(|c| (i, c)));
        let Some((head, (count, token))) = chain else {
            return Some(Err(UsedError::BadId(id)));
        };
        let head = head as u16;
        self.release(head, count);
        Some(Ok(Used { token, head, len }))
    }

    /// Puts a chain of `count` descriptors starting at `head` back on the
    /// free list, following the driver's own links.
    fn release(&mut self, head: u16, count: u16) {
        let mut tail = head;
        for _ in 1..count {
            tail = self.next[usize::from(tail)];
        }
        self.next[usize::from(tail)] = self.free_head;
        self.free_head = head;
        self.free_count += count;
    }

    /// Forgets one chain in flight (after the device was reset or declared
    /// dead) and returns its token, so it can be failed once; `None` when
    /// none is left.
    pub fn abandon_one(&mut self) -> Option<u64> {
        let head = self.chains.iter().position(Option::is_some)?;
        let (count, token) = self.chains[head].take()?;
        self.release(head as u16, count);
        Some(token)
    }

    /// [`SplitQueue::abandon_one`] for every chain in flight.
    pub fn abandon_all(&mut self) -> Vec<u64> {
        core::iter::from_fn(|| self.abandon_one()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    /// Little-endian bytes standing in for DMA memory.
    struct Mem(RefCell<Vec<u8>>);

    impl Mem {
        fn new(len: usize) -> Self {
            Mem(RefCell::new(vec![0; len]))
        }
        fn get<const N: usize>(&self, off: usize) -> [u8; N] {
            self.0.borrow()[off..off + N].try_into().unwrap()
        }
        fn set(&self, off: usize, bytes: &[u8]) {
            self.0.borrow_mut()[off..off + bytes.len()].copy_from_slice(bytes);
        }
    }

    impl QueueMemory for Mem {
        fn read_u16(&self, off: usize) -> u16 {
            u16::from_le_bytes(self.get(off))
        }
        fn read_u32(&self, off: usize) -> u32 {
            u32::from_le_bytes(self.get(off))
        }
        fn write_u16(&self, off: usize, v: u16) {
            self.set(off, &v.to_le_bytes())
        }
        fn write_u32(&self, off: usize, v: u32) {
            self.set(off, &v.to_le_bytes())
        }
        fn write_u64(&self, off: usize, v: u64) {
            self.set(off, &v.to_le_bytes())
        }
    }

    /// The device side: reads what the driver made available and
    /// completes chains in any order.
    struct Device {
        layout: Layout,
        size: u16,
        seen_avail: u16,
        used_idx: u16,
    }

    #[derive(Debug, PartialEq)]
    struct Desc {
        phys: u64,
        len: u32,
        flags: u16,
    }

    impl Device {
        fn new(size: u16) -> Self {
            Device {
                layout: Layout::new(size).unwrap(),
                size,
                seen_avail: 0,
                used_idx: 0,
            }
        }

        /// The new chains' heads and their descriptors, following the
        /// links in memory as a device does.
        fn take_avail(&mut self, mem: &Mem) -> Vec<(u16, Vec<Desc>)> {
            let idx = mem.read_u16(self.layout.avail + 2);
            let mut out = Vec::new();
            while self.seen_avail != idx {
                let slot = usize::from(self.seen_avail % self.size);
                let head = mem.read_u16(self.layout.avail + 4 + 2 * slot);
                let mut chain = Vec::new();
                let mut d = head;
                loop {
                    let at = self.layout.desc + 16 * usize::from(d);
                    let flags = mem.read_u16(at + 12);
                    chain.push(Desc {
                        phys: u64::from_le_bytes(mem.get(at)),
                        len: mem.read_u32(at + 8),
                        flags,
                    });
                    if flags & DESC_F_NEXT == 0 {
                        break;
                    }
                    d = mem.read_u16(at + 14);
                    assert!(chain.len() <= usize::from(self.size), "chain loops");
                }
                out.push((head, chain));
                self.seen_avail = self.seen_avail.wrapping_add(1);
            }
            out
        }

        fn complete(&mut self, mem: &Mem, id: u32, len: u32) {
            let slot = usize::from(self.used_idx % self.size);
            mem.write_u32(self.layout.used + 4 + 8 * slot, id);
            mem.write_u32(self.layout.used + 8 + 8 * slot, len);
            self.used_idx = self.used_idx.wrapping_add(1);
            mem.write_u16(self.layout.used + 2, self.used_idx);
        }
    }

    fn buf(phys: u64, len: u32, device_writes: bool) -> Buffer {
        Buffer {
            phys,
            len,
            device_writes,
        }
    }

    fn setup(size: u16) -> (Mem, SplitQueue, Device) {
        let layout = Layout::new(size).unwrap();
        let mem = Mem::new(layout.bytes);
        let q = SplitQueue::new(size, &mem, 0).unwrap();
        (mem, q, Device::new(size))
    }

    #[test]
    fn layout_matches_the_specification() {
        let l = Layout::new(8).unwrap();
        assert_eq!((l.desc, l.avail), (0, 128));
        // avail: 6 + 16 bytes = 150, aligned to 4 = 152.
        assert_eq!(l.used, 152);
        assert_eq!(l.bytes, 152 + 6 + 64);
        assert!(Layout::new(0).is_none());
        assert!(Layout::new(12).is_none());
        assert!(Layout::new(32768).is_some());
        let mem = Mem::new(16);
        assert!(SplitQueue::new(3, &mem, 0).is_none());
    }

    #[test]
    fn chains_reach_the_device_as_written() {
        let (mem, mut q, mut dev) = setup(8);
        let chain = [
            buf(0x1000, 16, false),
            buf(0x2000, 4096, true),
            buf(0x3000, 1, true),
        ];
        let predicted = q.next_head().unwrap();
        let head = q.push(&mem, &chain, 77).unwrap();
        assert_eq!(head, predicted);
        let got = dev.take_avail(&mem);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, head);
        assert_eq!(
            got[0].1,
            [
                Desc {
                    phys: 0x1000,
                    len: 16,
                    flags: DESC_F_NEXT
                },
                Desc {
                    phys: 0x2000,
                    len: 4096,
                    flags: DESC_F_NEXT | DESC_F_WRITE
                },
                Desc {
                    phys: 0x3000,
                    len: 1,
                    flags: DESC_F_WRITE
                },
            ]
        );
        assert_eq!(q.free_descriptors(), 5);
        assert!(q.pop_used(&mem).is_none());
        dev.complete(&mem, u32::from(head), 4097);
        assert_eq!(
            q.pop_used(&mem),
            Some(Ok(Used {
                token: 77,
                head,
                len: 4097
            }))
        );
        assert_eq!(q.free_descriptors(), 8);
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn full_queue_and_invalid_chains() {
        let (mem, mut q, _dev) = setup(4);
        let three = [buf(1, 1, false); 3];
        q.push(&mem, &three, 1).unwrap();
        assert_eq!(q.push(&mem, &three, 2), Err(PushError::Full));
        assert_eq!(q.push(&mem, &[], 2), Err(PushError::Invalid));
        assert_eq!(
            q.push(&mem, &[buf(1, 1, false); 5], 2),
            Err(PushError::Invalid)
        );
        q.push(&mem, &[buf(1, 1, false)], 3).unwrap();
        assert_eq!(q.free_descriptors(), 0);
    }

    #[test]
    fn out_of_order_completion_and_wrap() {
        let (mem, mut q, mut dev) = setup(8);
        let mut next_token = 0u64;
        let mut done = Vec::new();
        // Many rounds so that both free-running indices wrap past 65535.
        for round in 0..30_000u32 {
            let mut heads = Vec::new();
            for len in [1usize, 2, 3] {
                let chain: Vec<Buffer> = (0..len).map(|i| buf(i as u64, 8, i > 0)).collect();
                let head = q.push(&mem, &chain, next_token).unwrap();
                heads.push((head, next_token));
                next_token += 1;
            }
            let avail = dev.take_avail(&mem);
            assert_eq!(avail.len(), 3);
            // Complete in reverse, or middle first, depending on the round.
            let order: &[usize] = if round % 2 == 0 {
                &[2, 1, 0]
            } else {
                &[1, 2, 0]
            };
            for &i in order {
                dev.complete(&mem, u32::from(avail[i].0), 0);
            }
            let mut tokens = Vec::new();
            while let Some(used) = q.pop_used(&mem) {
                tokens.push(used.unwrap().token);
            }
            let expected: Vec<u64> = order.iter().map(|&i| heads[i].1).collect();
            assert_eq!(tokens, expected);
            done.extend(tokens);
            assert_eq!(q.free_descriptors(), 8);
        }
        assert_eq!(done.len(), 90_000);
    }

    #[test]
    fn hostile_used_elements_are_refused() {
        let (mem, mut q, mut dev) = setup(8);
        let head = q
            .push(&mem, &[buf(1, 1, false), buf(2, 1, true)], 5)
            .unwrap();
        dev.take_avail(&mem);
        // An id past the queue.
        dev.complete(&mem, 9999, 0);
        assert_eq!(q.pop_used(&mem), Some(Err(UsedError::BadId(9999))));
        // An id in range that is not a head in flight (the chain's second
        // descriptor).
        dev.complete(&mem, u32::from(head) + 1, 0);
        assert!(matches!(q.pop_used(&mem), Some(Err(UsedError::BadId(_)))));
        // The real one still completes once, and a duplicate is refused.
        dev.complete(&mem, u32::from(head), 0);
        assert_eq!(q.pop_used(&mem).unwrap().unwrap().token, 5);
        dev.complete(&mem, u32::from(head), 0);
        assert_eq!(
            q.pop_used(&mem),
            Some(Err(UsedError::BadId(u32::from(head))))
        );
        assert_eq!(q.free_descriptors(), 8);
        // A used index far ahead.
        let l = q.layout();
        mem.write_u16(l.used + 2, 500);
        assert!(matches!(
            q.pop_used(&mem),
            Some(Err(UsedError::BadIndex { .. }))
        ));
        // Device scribbles over the descriptor links: the driver's own
        // links still free the right descriptors.
        let (mem, mut q, mut dev) = setup(4);
        let head = q.push(&mem, &[buf(1, 1, false); 3], 9).unwrap();
        dev.take_avail(&mem);
        for d in 0..4 {
            mem.write_u16(16 * d + 14, 0);
        }
        dev.complete(&mem, u32::from(head), 0);
        q.pop_used(&mem).unwrap().unwrap();
        assert_eq!(q.free_descriptors(), 4);
        for t in 0..4 {
            q.push(&mem, &[buf(1, 1, false)], t).unwrap();
        }
        let mut heads: Vec<u16> = dev.take_avail(&mem).into_iter().map(|(h, _)| h).collect();
        heads.sort();
        assert_eq!(heads, [0, 1, 2, 3]);
    }

    #[test]
    fn abandon_returns_every_token_once() {
        let (mem, mut q, _dev) = setup(8);
        q.push(&mem, &[buf(1, 1, false); 2], 10).unwrap();
        q.push(&mem, &[buf(1, 1, false); 3], 11).unwrap();
        let mut tokens = q.abandon_all();
        tokens.sort();
        assert_eq!(tokens, [10, 11]);
        assert!(q.abandon_all().is_empty());
        assert_eq!(q.free_descriptors(), 8);
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn polled_queue_asks_for_no_interrupts() {
        let layout = Layout::new(4).unwrap();
        let mem = Mem::new(layout.bytes);
        SplitQueue::new(4, &mem, AVAIL_F_NO_INTERRUPT).unwrap();
        assert_eq!(mem.read_u16(layout.avail), AVAIL_F_NO_INTERRUPT);
    }
}
