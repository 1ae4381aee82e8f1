//! The block layer: the disks the drivers found, their requests in flight,
//! and I/O between a disk and user memory.
//!
//! A user I/O ([`Io`]) is checked (offset and length whole logical blocks,
//! `EINVAL` otherwise; clamped at the end of the disk as Linux does), its
//! user pages are pinned ([`crate::usercopy::PinnedPages`]) and cut into
//! device requests of at most the device's transfer size, whose scatter
//! lists point straight into those pages (no copy) when the buffer is
//! 4-byte aligned, or into a bounce buffer otherwise. Each request takes a
//! slot of its hardware queue (the slot index and a generation make the
//! tag the driver gives back, so a bogus tag from a device is refused);
//! when the queue is full, requests wait in the queue's software list and
//! start as slots free up.
//!
//! Completions arrive from the driver's interrupt hook ([`Disk::reap`]) or
//! from a poller. When the last request of an I/O finishes, its result
//! goes to its [`Target`]: a ring's mailbox (the ring posts the CQE on its
//! next pass; whoever sleeps on the ring is woken, or the ring thread if
//! nobody does) or a thread sleeping in a syscall.
//!
//! Buffers stay valid until the device is done: the I/O holds the pinned
//! pages and an [`InFlightGuard`] of the process, whose exit waits for its
//! count to reach zero before its address space (and so its frames) goes.
//!
//! Lock order: a driver's queue lock, then this layer's queue lock, then a
//! mailbox's and wait queues' locks. Nothing here calls into a driver while
//! holding its own queue lock. Every lock is taken with interrupts off.

use crate::arch::paging::AddressSpace;
use crate::mm::shared::SharedFrames;
use crate::task::WaitQueue;
use crate::usercopy::{PinnedPages, UserSlice};
use abi::errno::{Errno, EAGAIN, EINVAL, EIO, ENOMEM, ENOSPC};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use kernel_core::block::{
    BlockDevice, BlockOp, BlockRequest, Completion, Geometry, QueueMode, Segment, DMA_ALIGN,
    PAGE_SIZE,
};
use kernel_core::ring::IoMailbox;
use spin::{Mutex, Once};
use x86_64::instructions::interrupts::without_interrupts;

/// One disk.
pub struct Disk {
    name: String,
    dev: Arc<dyn BlockDevice>,
    geometry: Geometry,
    queues: Vec<Queue>,
    /// Queues that interrupt, in the order CPUs are spread over them.
    irq_queues: Vec<u16>,
    /// A queue that never interrupts, for IOPOLL, if the device has one.
    polled_queue: Option<u16>,
}

struct Queue {
    inner: Mutex<QueueInner>,
}

struct QueueInner {
    /// Requests the device holds, by slot.
    slots: Vec<Option<Request>>,
    free: Vec<u16>,
    /// Each slot's generation, part of its tag.
    generation: Vec<u16>,
    /// Requests waiting for a slot.
    waiting: VecDeque<Request>,
}

/// One device request, part of an [`Io`].
struct Request {
    op: BlockOp,
    sector: u64,
    segments: Vec<Segment>,
    io: Arc<Io>,
}

/// Where an I/O's result goes.
pub enum Target {
    /// A ring's op: post `(token, result)` to the mailbox.
    Ring {
        mailbox: Arc<IoMailbox>,
        token: u64,
        /// Called after the post with the mailbox's wait key: wakes
        /// whoever reaps the ring (the ring layer's, which this layer
        /// cannot name).
        wake: fn(u64),
    },
    /// A thread sleeping in a syscall.
    Sync(Arc<SyncWait>),
}

/// A thread's wait for one I/O.
#[derive(Default)]
pub struct SyncWait {
    done: AtomicBool,
    /// Bytes, or the errno as `u32::MAX - errno`.
    result: AtomicU32,
    queue: WaitQueue,
}

impl SyncWait {
    fn finish(&self, result: Result<u32, Errno>) {
        let raw = match result {
            Ok(n) => n.min(u32::MAX / 2),
            Err(e) => u32::MAX - e.code() as u32,
        };
        self.result.store(raw, Ordering::Relaxed);
        self.done.store(true, Ordering::Release);
        self.queue.wake_all();
    }

    /// Sleeps until the I/O is done; returns its result.
    pub fn wait(&self) -> Result<u32, Errno> {
        self.queue
            .wait_until(|| self.done.load(Ordering::Acquire).then_some(()));
        let raw = self.result.load(Ordering::Relaxed);
        if raw > u32::MAX / 2 {
            Err(Errno::new((u32::MAX - raw) as i32).unwrap_or(EIO))
        } else {
            Ok(raw)
        }
    }
}

/// Device I/O a process has in flight: its exit waits for zero.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: WaitQueue,
}

impl InFlight {
    /// Counts one more I/O until the guard drops.
    pub fn guard(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    /// I/O in flight now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Sleeps until nothing is in flight or `timeout_ns` passed; returns
    /// whether nothing is.
    pub fn wait_idle(&self, timeout_ns: u64) -> bool {
        let deadline = crate::time::now_ns().saturating_add(timeout_ns);
        loop {
            if self.count() == 0 {
                return true;
            }
            if crate::time::now_ns() >= deadline {
                return false;
            }
            // Woken by the last completion, or re-checked at least every
            // 10 ms for the deadline.
            crate::task::sleep_ns(10_000_000.min(deadline - crate::time::now_ns()));
        }
    }
}

/// One I/O of a process in flight ([`InFlight::guard`]).
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.wake_all();
        }
    }
}

/// One user-visible I/O: one or more device requests.
pub struct Io {
    /// Requests not finished yet.
    remaining: AtomicUsize,
    /// The first error (its code), or 0.
    error: AtomicU32,
    /// Bytes the I/O moves when it succeeds.
    bytes: u32,
    /// A read through a bounce buffer copies it to the user at the end.
    bounce: Option<Arc<SharedFrames>>,
    /// The user's buffers, pinned, in order.
    user: Vec<PinnedPages>,
    read: bool,
    target: Target,
    _guard: Option<InFlightGuard>,
}

impl Io {
    fn part_done(&self, result: Result<(), Errno>) {
        if let Err(e) = result {
            let _ = self.error.compare_exchange(
                0,
                e.code() as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let error = self.error.load(Ordering::Acquire);
        let result = if error != 0 {
            Err(Errno::new(error as i32).unwrap_or(EIO))
        } else {
            if self.read {
                if let Some(bounce) = &self.bounce {
                    copy_bounce_to_user(bounce, &self.user);
                }
            }
            Ok(self.bytes)
        };
        match &self.target {
            Target::Ring {
                mailbox,
                token,
                wake,
            } => {
                if !mailbox.post(*token, result) {
                    log::error!("block: a ring had no room for completion {token}");
                }
                wake(mailbox.wait_key());
            }
            Target::Sync(wait) => wait.finish(result),
        }
    }
}

/// Copies the bounce buffer out to the user's buffers, in order.
fn copy_bounce_to_user(bounce: &SharedFrames, user: &[PinnedPages]) {
    let mut chunk = [0u8; 512];
    let mut base = 0usize;
    for range in user {
        let mut at = 0u64;
        while at < range.len() {
            let n = (range.len() - at).min(chunk.len() as u64) as usize;
            bounce.read_bytes(base + at as usize, &mut chunk[..n]);
            range.write_at(at, &chunk[..n]);
            at += n as u64;
        }
        base += range.len() as usize;
    }
}

/// Copies the user's buffers, in order, into the bounce buffer.
fn copy_user_to_bounce(user: &[PinnedPages], bounce: &SharedFrames) {
    let mut chunk = [0u8; 512];
    let mut base = 0usize;
    for range in user {
        let mut at = 0u64;
        while at < range.len() {
            let n = (range.len() - at).min(chunk.len() as u64) as usize;
            range.read_at(at, &mut chunk[..n]);
            bounce.write_bytes(base + at as usize, &chunk[..n]);
            at += n as u64;
        }
        base += range.len() as usize;
    }
}

static DISKS: Once<Vec<Arc<Disk>>> = Once::new();

/// Takes the disks the drivers found (once, at boot) and points their
/// interrupts here.
pub fn init(devices: Vec<Arc<dyn BlockDevice>>) {
    let mut disks = Vec::new();
    for dev in devices {
        let geometry = dev.geometry();
        let mut queues = Vec::new();
        let mut irq_queues = Vec::new();
        let mut polled_queue = None;
        for q in 0..geometry.queues {
            let depth = usize::from(geometry.queue_depth.max(1));
            queues.push(Queue {
                inner: Mutex::new(QueueInner {
                    slots: (0..depth).map(|_| None).collect(),
                    free: (0..depth as u16).rev().collect(),
                    generation: alloc::vec![0; depth],
                    waiting: VecDeque::new(),
                }),
            });
            match dev.queue_mode(q) {
                QueueMode::Interrupt => irq_queues.push(q),
                QueueMode::Polled => {
                    polled_queue.get_or_insert(q);
                }
            }
        }
        if queues.is_empty() {
            log::warn!("block: {} has no queues; ignored", dev.name());
            continue;
        }
        if irq_queues.is_empty() {
            // Nothing interrupts: every request is polled for.
            irq_queues.extend(polled_queue);
        }
        log::info!(
            "block: {} {} MiB, {}-byte blocks, {} queue(s) of {} ({} polled), max {} KiB per request{}",
            dev.name(),
            geometry.bytes() >> 20,
            geometry.block_size,
            geometry.queues,
            geometry.queue_depth,
            usize::from(polled_queue.is_some()),
            geometry.max_transfer / 1024,
            if geometry.volatile_cache { ", write cache" } else { "" }
        );
        disks.push(Arc::new(Disk {
            name: dev.name().into(),
            dev,
            geometry,
            queues,
            irq_queues,
            polled_queue,
        }));
    }
    let disks = DISKS.call_once(|| disks);
    for (index, disk) in disks.iter().enumerate() {
        disk.dev.set_interrupt_hook(Arc::new(move |queue| {
            if let Some(disk) = DISKS.get().and_then(|d| d.get(index)) {
                disk.reap(queue);
            }
        }));
    }
}

/// Every disk, in the order the drivers found them.
pub fn disks() -> &'static [Arc<Disk>] {
    DISKS.get().map_or(&[], |d| d.as_slice())
}

/// The disk named `name` (`nvme0n1`, `vda`).
pub fn find(name: &str) -> Option<Arc<Disk>> {
    disks().iter().find(|d| d.name == name).cloned()
}

/// Polls every polled queue of every disk once (IOPOLL); returns whether
/// anything finished. A disk without a polled queue had IOPOLL requests
/// put on its interrupting queues, so those are polled instead (a request
/// is reported once, by whichever of the poll and the interrupt takes it).
pub fn poll_all() -> bool {
    let mut any = false;
    for disk in disks() {
        match disk.polled_queue {
            Some(q) => any |= disk.reap(q) > 0,
            None => {
                for &q in &disk.irq_queues {
                    any |= disk.reap(q) > 0;
                }
            }
        }
    }
    any
}

/// Polls every queue of every disk once, interrupting ones too; returns
/// whether anything finished.
pub fn poll_every_queue() -> bool {
    let mut any = false;
    for disk in disks() {
        for q in 0..disk.queues.len() as u16 {
            any |= disk.reap(q) > 0;
        }
    }
    any
}

/// Where an I/O's result goes and how it is reaped.
pub struct Done {
    pub target: Target,
    /// Reaped by polling: use the disk's polled queue, if it has one.
    pub polled: bool,
    /// The process's count of I/O in flight, held until the I/O is done.
    pub guard: Option<InFlightGuard>,
}

/// What a user I/O asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Read,
    Write,
}

impl Disk {
    /// The disk's name (`vda`, `nvme0n1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Capacity in bytes.
    pub fn size(&self) -> u64 {
        self.geometry.bytes()
    }

    /// Takes what queue `q` finished and completes it; returns how many.
    pub fn reap(&self, q: u16) -> usize {
        let Some(queue) = self.queues.get(usize::from(q)) else {
            return 0;
        };
        let mut finished = 0;
        self.dev.poll(q, &mut |completion: Completion| {
            let request = without_interrupts(|| queue.inner.lock().take(completion.tag));
            match request {
                Some(request) => {
                    finished += 1;
                    request.io.part_done(completion.result);
                }
                None => log::warn!(
                    "block: {} reported tag {:#x}, which is not in flight; ignored",
                    self.name,
                    completion.tag
                ),
            }
        });
        if finished > 0 {
            self.pump(q);
        }
        finished
    }

    /// The queue for a request from this CPU.
    fn queue_for(&self, polled: bool) -> u16 {
        if polled {
            if let Some(q) = self.polled_queue {
                return q;
            }
        }
        let cpu = crate::arch::cpu::this().id as usize;
        self.irq_queues[cpu % self.irq_queues.len()]
    }

    /// Starts waiting requests of queue `q` while it has free slots.
    fn pump(&self, q: u16) {
        let queue = &self.queues[usize::from(q)];
        loop {
            let next = without_interrupts(|| queue.inner.lock().start_next());
            let Some((tag, op, sector, segments)) = next else {
                return;
            };
            let request = BlockRequest {
                op,
                sector,
                segments: &segments,
                tag,
            };
            match self.dev.submit(q, &request) {
                Ok(()) => {}
                Err(EAGAIN) => {
                    // The device is fuller than our slots say (another
                    // user of the queue?): put it back and wait for a
                    // completion.
                    without_interrupts(|| queue.inner.lock().unstart(tag));
                    return;
                }
                Err(e) => {
                    log::warn!("block: {}: submit failed: {}", self.name, e.name());
                    let request = without_interrupts(|| queue.inner.lock().take(tag));
                    if let Some(request) = request {
                        request.io.part_done(Err(e));
                    }
                }
            }
        }
    }

    /// Queues `requests` on queue `q` and starts what fits.
    fn enqueue(&self, q: u16, requests: Vec<Request>) {
        let queue = &self.queues[usize::from(q)];
        without_interrupts(|| {
            let mut inner = queue.inner.lock();
            inner.waiting.extend(requests);
        });
        self.pump(q);
    }

    /// Checks a transfer of `len` bytes at byte `offset`, clamped at the
    /// end of the disk; returns the bytes to move (0 at or past the end
    /// for a read). `EINVAL` unless both are whole blocks; a write that
    /// starts at or past the end is `ENOSPC` (Linux's block devices).
    pub fn clamp(&self, dir: Dir, offset: u64, len: u64) -> Result<u64, Errno> {
        let block = u64::from(self.geometry.block_size);
        if !offset.is_multiple_of(block) || !len.is_multiple_of(block) {
            return Err(EINVAL);
        }
        let size = self.size();
        if offset >= size {
            return match dir {
                Dir::Read => Ok(0),
                Dir::Write if len == 0 => Ok(0),
                Dir::Write => Err(ENOSPC),
            };
        }
        Ok(len.min(size - offset))
    }

    /// Starts a transfer between the user buffers `iov` (address, length;
    /// together already clamped by [`Disk::clamp`], non-zero) and the disk
    /// at byte `offset`; its result goes where `done` says.
    pub fn start(
        &self,
        space: &AddressSpace,
        dir: Dir,
        offset: u64,
        iov: &[(u64, u64)],
        done: Done,
    ) -> Result<(), Errno> {
        let Done {
            target,
            polled,
            guard,
        } = done;
        let total: u64 = iov.iter().map(|&(_, l)| l).sum();
        if total == 0 || total > u64::from(u32::MAX / 2) {
            return Err(EINVAL);
        }
        let read = dir == Dir::Read;
        let mut user = Vec::new();
        user.try_reserve_exact(iov.len()).map_err(|_| ENOMEM)?;
        for &(addr, len) in iov.iter().filter(|&&(_, len)| len > 0) {
            user.push(UserSlice::new(addr, len)?.pin(space, read)?);
        }
        // One buffer (the common case) goes to the device directly when
        // 4-byte aligned; several, or an unaligned one, through a bounce
        // buffer, which the user's bytes are copied into (write) or out of
        // (read, at completion): a scatter list must have whole pages
        // between its ends.
        let direct = user.len() == 1 && user[0].addr().is_multiple_of(DMA_ALIGN);
        let bounce = if direct {
            None
        } else {
            let bounce = SharedFrames::alloc_zeroed(total.div_ceil(PAGE_SIZE))?;
            if !read {
                copy_user_to_bounce(&user, &bounce);
            }
            Some(bounce)
        };
        // Cut into requests of at most `max` bytes and `max_segments`
        // pieces, each a whole number of blocks.
        let mut pieces: Vec<Segment> = Vec::new();
        let mut collect = |phys: u64, _at: u64, n: u64| {
            if pieces.try_reserve(1).is_ok() {
                pieces.push(Segment {
                    phys,
                    len: n as u32,
                });
            }
        };
        match &bounce {
            Some(frames) => {
                let mut at = 0;
                while at < total {
                    let n = (total - at).min(PAGE_SIZE);
                    collect(frames.phys() + at, at, n);
                    at += n;
                }
            }
            None => user[0].pieces(0, total, collect),
        }
        let expected = match &bounce {
            Some(_) => total.div_ceil(PAGE_SIZE) as usize,
            None => pieces.len(),
        };
        if pieces.len() != expected {
            return Err(ENOMEM);
        }
        let op = if read { BlockOp::Read } else { BlockOp::Write };
        let io = Io {
            remaining: AtomicUsize::new(0),
            error: AtomicU32::new(0),
            bytes: total as u32,
            bounce,
            user,
            read,
            target,
            _guard: guard,
        };
        self.submit(op, offset, pieces, io, polled)
    }

    /// Cuts `pieces` (a scatter list of `io.bytes` bytes for the disk at
    /// byte `offset`) into requests of at most the device's transfer size
    /// and segment count, each a whole number of blocks, and queues them.
    fn submit(
        &self,
        op: BlockOp,
        offset: u64,
        pieces: Vec<Segment>,
        mut io: Io,
        polled: bool,
    ) -> Result<(), Errno> {
        let block = u64::from(self.geometry.block_size);
        let max = u64::from(self.geometry.max_transfer).max(block) / block * block;
        let max_segments = usize::from(self.geometry.max_segments.max(2));
        let mut requests: Vec<(u64, Vec<Segment>)> = Vec::new();
        let mut current: Vec<Segment> = Vec::new();
        let mut current_bytes = 0u64;
        let mut sector = offset / block;
        for piece in pieces {
            let mut piece = piece;
            while piece.len > 0 {
                let room = max - current_bytes;
                let full_segments = current.len() >= max_segments;
                if room == 0 || full_segments {
                    // Close the request at a block boundary.
                    let keep = current_bytes / block * block;
                    let (done, rest) = split_at(current, keep);
                    let n = keep / block;
                    requests.try_reserve(1).map_err(|_| ENOMEM)?;
                    requests.push((sector, done));
                    sector += n;
                    current_bytes -= keep;
                    current = rest;
                    if current.len() >= max_segments {
                        // A block spread over more pieces than a request
                        // may have: not reached with 4-byte aligned pages.
                        return Err(EINVAL);
                    }
                    continue;
                }
                let take = u64::from(piece.len).min(room);
                current.try_reserve(1).map_err(|_| ENOMEM)?;
                current.push(Segment {
                    phys: piece.phys,
                    len: take as u32,
                });
                current_bytes += take;
                piece.phys += take;
                piece.len -= take as u32;
            }
        }
        if current_bytes > 0 {
            if !current_bytes.is_multiple_of(block) {
                return Err(EINVAL);
            }
            requests.try_reserve(1).map_err(|_| ENOMEM)?;
            requests.push((sector, current));
        }
        io.remaining = AtomicUsize::new(requests.len());
        let io = Arc::new(io);
        let mut queued = Vec::new();
        queued.try_reserve(requests.len()).map_err(|_| ENOMEM)?;
        for (sector, segments) in requests {
            queued.push(Request {
                op,
                sector,
                segments,
                io: io.clone(),
            });
        }
        drop(io);
        self.enqueue(self.queue_for(polled), queued);
        Ok(())
    }

    /// Moves `len` bytes (whole blocks, at most `frames`' size) between
    /// the kernel's `frames` and the disk at byte `offset`, and sleeps
    /// until the device is done: the file-system worker's path.
    pub fn transfer_sync(
        &self,
        dir: Dir,
        offset: u64,
        frames: &Arc<SharedFrames>,
        len: u64,
    ) -> Result<(), Errno> {
        let block = u64::from(self.geometry.block_size);
        if len == 0
            || len > frames.len() as u64
            || len > u64::from(u32::MAX / 2)
            || !len.is_multiple_of(block)
            || !offset.is_multiple_of(block)
            || offset.checked_add(len).is_none_or(|end| end > self.size())
        {
            return Err(EINVAL);
        }
        let mut pieces: Vec<Segment> = Vec::new();
        pieces
            .try_reserve(len.div_ceil(PAGE_SIZE) as usize)
            .map_err(|_| ENOMEM)?;
        let mut at = 0;
        while at < len {
            let n = (len - at).min(PAGE_SIZE);
            pieces.push(Segment {
                phys: frames.phys() + at,
                len: n as u32,
            });
            at += n;
        }
        let wait = Arc::new(SyncWait::default());
        let io = Io {
            remaining: AtomicUsize::new(0),
            error: AtomicU32::new(0),
            bytes: len as u32,
            // The frames stay alive until the I/O is done: the caller
            // sleeps below while holding them.
            bounce: None,
            user: Vec::new(),
            read: dir == Dir::Read,
            target: Target::Sync(wait.clone()),
            _guard: None,
        };
        let op = match dir {
            Dir::Read => BlockOp::Read,
            Dir::Write => BlockOp::Write,
        };
        self.submit(op, offset, pieces, io, false)?;
        wait.wait().map(drop)
    }

    /// Starts a cache flush; its result goes to `target`. A disk without a
    /// volatile cache has nothing to flush: `Ok(false)`, nothing started.
    pub fn start_flush(
        &self,
        target: Target,
        polled: bool,
        guard: Option<InFlightGuard>,
    ) -> Result<bool, Errno> {
        if !self.geometry.volatile_cache {
            return Ok(false);
        }
        let io = Arc::new(Io {
            remaining: AtomicUsize::new(1),
            error: AtomicU32::new(0),
            bytes: 0,
            bounce: None,
            user: Vec::new(),
            read: false,
            target,
            _guard: guard,
        });
        let mut queued = Vec::new();
        queued.try_reserve(1).map_err(|_| ENOMEM)?;
        queued.push(Request {
            op: BlockOp::Flush,
            sector: 0,
            segments: Vec::new(),
            io,
        });
        self.enqueue(self.queue_for(polled), queued);
        Ok(true)
    }

    /// A flush from a syscall: starts it and sleeps until it is done.
    pub fn flush_sync(&self, guard: Option<InFlightGuard>) -> Result<(), Errno> {
        let wait = Arc::new(SyncWait::default());
        if self.start_flush(Target::Sync(wait.clone()), false, guard)? {
            wait.wait()?;
        }
        Ok(())
    }
}

/// Splits a segment list after `bytes` bytes (which falls inside or at the
/// end of it).
fn split_at(list: Vec<Segment>, bytes: u64) -> (Vec<Segment>, Vec<Segment>) {
    let mut done = Vec::new();
    let mut rest = Vec::new();
    let mut left = bytes;
    for segment in list {
        let len = u64::from(segment.len);
        if left >= len {
            done.push(segment);
            left -= len;
        } else if left > 0 {
            done.push(Segment {
                phys: segment.phys,
                len: left as u32,
            });
            rest.push(Segment {
                phys: segment.phys + left,
                len: (len - left) as u32,
            });
            left = 0;
        } else {
            rest.push(segment);
        }
    }
    (done, rest)
}

impl QueueInner {
    /// Moves the first waiting request into a free slot; returns its tag
    /// and what the driver needs (a copy of the segment list, so that no
    /// lock is held while the driver runs).
    fn start_next(&mut self) -> Option<(u64, BlockOp, u64, Vec<Segment>)> {
        if self.waiting.is_empty() {
            return None;
        }
        let slot = self.free.pop()?;
        let request = self.waiting.pop_front()?;
        let mut segments = Vec::new();
        if segments.try_reserve(request.segments.len()).is_err() {
            // Try again after the next completion.
            self.waiting.push_front(request);
            self.free.push(slot);
            return None;
        }
        segments.extend_from_slice(&request.segments);
        let (op, sector) = (request.op, request.sector);
        let i = usize::from(slot);
        self.generation[i] = self.generation[i].wrapping_add(1);
        let tag = u64::from(slot) | (u64::from(self.generation[i]) << 16);
        self.slots[i] = Some(request);
        Some((tag, op, sector, segments))
    }

    /// The request with `tag`, freeing its slot; `None` for a tag that is
    /// not in flight.
    fn take(&mut self, tag: u64) -> Option<Request> {
        let i = usize::try_from(tag & 0xFFFF).ok()?;
        if tag >> 32 != 0 || self.generation.get(i).copied() != Some((tag >> 16) as u16) {
            return None;
        }
        let request = self.slots.get_mut(i)?.take()?;
        self.free.push(i as u16);
        Some(request)
    }

    /// Undoes `start_next` for a request the device refused for now.
    fn unstart(&mut self, tag: u64) {
        if let Some(request) = self.take(tag) {
            self.waiting.push_front(request);
        }
    }
}

/// How long an exiting process waits for its device I/O before it gives
/// up and leaks its address space rather than free frames a device may
/// still write.
pub const EXIT_IO_TIMEOUT_NS: u64 = 30_000_000_000;
