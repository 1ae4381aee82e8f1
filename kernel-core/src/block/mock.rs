//! [`MockDisk`]: a [`BlockDevice`] in plain memory for host tests of the
//! block layer and of the ring engine's pending path.
//!
//! "Physical" addresses index a [`MockMemory`]; the disk's contents are a
//! byte vector. Submitted requests wait until the test finishes them with
//! [`MockDisk::finish`] (in any order it likes); data moves when a request
//! finishes, as a real device's DMA does, so a test can see that nobody
//! read a buffer before its completion.

use super::{
    check_request, BlockDevice, BlockOp, BlockRequest, Completion, Geometry, InterruptHook,
    QueueMode, Segment,
};
use abi::errno::{Errno, EAGAIN, EINVAL, EIO};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use spin::Mutex;

/// Memory a [`MockDisk`] reads and writes: physical address `base + i` is
/// byte `i`.
#[derive(Clone)]
pub struct MockMemory {
    pub base: u64,
    pub bytes: Arc<Mutex<Vec<u8>>>,
}

impl MockMemory {
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: Arc::new(Mutex::new(vec![0; len])),
        }
    }

    fn range(&self, segment: &Segment) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(segment.phys.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(usize::try_from(segment.len).ok()?)?;
        (end <= self.bytes.lock().len()).then_some(start..end)
    }
}

struct Pending {
    queue: u16,
    op: BlockOp,
    sector: u64,
    segments: Vec<Segment>,
    tag: u64,
}

struct State {
    data: Vec<u8>,
    pending: Vec<Pending>,
    finished: Vec<(u16, Completion)>,
    hook: Option<InterruptHook>,
    dead: bool,
    flushes: usize,
}

/// An in-memory disk with `queues` queues of `depth` requests each.
pub struct MockDisk {
    name: String,
    geometry: Geometry,
    memory: MockMemory,
    polled: bool,
    state: Mutex<State>,
}

impl MockDisk {
    pub fn new(name: &str, geometry: Geometry, memory: MockMemory) -> Self {
        let bytes = usize::try_from(geometry.bytes()).expect("mock disk fits in memory");
        Self {
            name: name.into(),
            geometry,
            memory,
            polled: false,
            state: Mutex::new(State {
                data: vec![0; bytes],
                pending: Vec::new(),
                finished: Vec::new(),
                hook: None,
                dead: false,
                flushes: 0,
            }),
        }
    }

    /// A disk whose queues are all polled.
    pub fn polled(mut self) -> Self {
        self.polled = true;
        self
    }

    /// Tags of the requests started and not finished yet, oldest first.
    pub fn in_flight(&self) -> Vec<u64> {
        self.state.lock().pending.iter().map(|p| p.tag).collect()
    }

    /// Finishes the request `tag` (moving its data) with `result`, and
    /// calls the interrupt hook for an interrupt queue. False if no such
    /// request is in flight.
    pub fn finish(&self, tag: u64, result: Result<(), Errno>) -> bool {
        let (queue, hook) = {
            let mut state = self.state.lock();
            let Some(i) = state.pending.iter().position(|p| p.tag == tag) else {
                return false;
            };
            let request = state.pending.remove(i);
            let result = result.and_then(|()| self.transfer(&mut state, &request));
            state
                .finished
                .push((request.queue, Completion { tag, result }));
            (request.queue, state.hook.clone())
        };
        if !self.polled {
            if let Some(hook) = hook {
                hook(queue);
            }
        }
        true
    }

    /// Finishes every request in flight, newest first (out of order).
    pub fn finish_all_reversed(&self) -> usize {
        let tags = self.in_flight();
        for &tag in tags.iter().rev() {
            self.finish(tag, Ok(()));
        }
        tags.len()
    }

    /// From now on every request fails with `EIO`, as a dead controller's.
    pub fn kill(&self) {
        self.state.lock().dead = true;
    }

    /// Copies the disk's bytes at `offset`.
    pub fn read_data(&self, offset: usize, len: usize) -> Vec<u8> {
        self.state.lock().data[offset..offset + len].to_vec()
    }

    /// How many flushes completed.
    pub fn flushes(&self) -> usize {
        self.state.lock().flushes
    }

    fn transfer(&self, state: &mut State, request: &Pending) -> Result<(), Errno> {
        let block = u64::from(self.geometry.block_size);
        let mut at = usize::try_from(request.sector * block).map_err(|_| EIO)?;
        let mut memory = self.memory.bytes.lock();
        for segment in &request.segments {
            let range = self.memory.range(segment).ok_or(EIO)?;
            let len = range.len();
            match request.op {
                BlockOp::Read => memory[range].copy_from_slice(&state.data[at..at + len]),
                BlockOp::Write => state.data[at..at + len].copy_from_slice(&memory[range]),
                BlockOp::Flush => {}
            }
            at += len;
        }
        if request.op == BlockOp::Flush {
            state.flushes += 1;
        }
        Ok(())
    }
}

impl BlockDevice for MockDisk {
    fn name(&self) -> &str {
        &self.name
    }

    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn queue_mode(&self, _queue: u16) -> QueueMode {
        if self.polled {
            QueueMode::Polled
        } else {
            QueueMode::Interrupt
        }
    }

    fn set_interrupt_hook(&self, hook: InterruptHook) {
        self.state.lock().hook = Some(hook);
    }

    fn submit(&self, queue: u16, request: &BlockRequest<'_>) -> Result<(), Errno> {
        if queue >= self.geometry.queues {
            return Err(EINVAL);
        }
        check_request(&self.geometry, request)?;
        let mut state = self.state.lock();
        if state.dead {
            return Err(EIO);
        }
        let busy = state.pending.iter().filter(|p| p.queue == queue).count()
            + state.finished.iter().filter(|(q, _)| *q == queue).count();
        if busy >= usize::from(self.geometry.queue_depth) {
            return Err(EAGAIN);
        }
        state.pending.push(Pending {
            queue,
            op: request.op,
            sector: request.sector,
            segments: request.segments.to_vec(),
            tag: request.tag,
        });
        Ok(())
    }

    fn poll(&self, queue: u16, done: &mut dyn FnMut(Completion)) -> usize {
        let finished: Vec<Completion> = {
            let mut state = self.state.lock();
            let (mine, rest) = core::mem::take(&mut state.finished)
                .into_iter()
                .partition(|(q, _)| *q == queue);
            state.finished = rest;
            mine.into_iter().map(|(_, c)| c).collect()
        };
        for &completion in &finished {
            done(completion);
        }
        finished.len()
    }
}
