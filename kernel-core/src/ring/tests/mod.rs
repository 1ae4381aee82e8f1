//! Host tests of the ring engine and its ops against [`MockEnv`], driven
//! the way user space drives a ring: push SQEs, submit, pop CQEs.
//!
//! After every step the harness checks the engine's accounting invariant:
//! each consumed SQE is dropped, completed (posted or skipped), pending, or
//! discarded by teardown.

use abi::errno::Errno;
use alloc::sync::Arc;
use alloc::vec::Vec;

use abi::io_uring::{op, sqe_flags, Cqe, Sqe};

use super::{AsyncIo, MockEnv, OwnedRing, RingEngine};
use crate::quota::Quota;

mod dirs;
mod engine;
mod fuzz;
mod limits;
mod linux;
mod ops;
mod pending_io;

/// Base of the mock user memory.
const MEM: u64 = 0x10_0000;
/// Size of the mock user memory.
const MEM_LEN: usize = 0x1_0000;
/// A scratch area in it for timespecs.
const TS: u64 = MEM + 0x8000;
/// One second.
const SEC: u64 = 1_000_000_000;

struct Harness {
    ring: Arc<OwnedRing>,
    engine: RingEngine,
    env: MockEnv,
}

impl Harness {
    fn new(sq_entries: u32, cq_entries: u32) -> Self {
        Self::starting_at(sq_entries, cq_entries, 0, 0)
    }

    fn starting_at(sq_entries: u32, cq_entries: u32, sq_head: u32, cq_tail: u32) -> Self {
        let engine = RingEngine::new(sq_entries, cq_entries);
        Self::with_engine(engine, sq_head, cq_tail)
    }

    /// A harness whose engine charges a quota of its own, of `limit` bytes.
    fn with_quota(sq_entries: u32, cq_entries: u32, limit: usize) -> (Self, &'static Quota) {
        let quota: &'static Quota =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(Quota::new(limit)));
        let engine = RingEngine::with_quota(sq_entries, cq_entries, quota);
        (Self::with_engine(engine, 0, 0), quota)
    }

    fn with_engine(mut engine: RingEngine, sq_head: u32, cq_tail: u32) -> Self {
        let (sq_entries, cq_entries) = (engine.sq_entries(), engine.cq_entries());
        let ring = Arc::new(OwnedRing::new(sq_entries, cq_entries));
        engine.start_at(sq_head, cq_tail);
        engine.init_shared(&ring.view());
        Self {
            ring,
            engine,
            env: MockEnv::new(MEM, MEM_LEN),
        }
    }

    fn push(&self, sqe: Sqe) {
        assert!(self.ring.view().user_push_sqe(&sqe), "SQ full");
    }

    fn try_submit(&mut self, to_submit: u32) -> Result<u32, Errno> {
        let view = self.ring.view();
        let result = self.engine.submit(&view, &mut self.env, to_submit);
        self.check();
        result
    }

    fn submit(&mut self) -> u32 {
        self.try_submit(u32::MAX).expect("submit")
    }

    fn cqes(&mut self) -> Vec<Cqe> {
        let view = self.ring.view();
        let mut out = Vec::new();
        loop {
            self.engine.flush_overflow(&view);
            let batch = view.user_drain_cqes();
            if batch.is_empty() {
                break;
            }
            out.extend(batch);
        }
        out
    }

    /// Pushes `sqes`, submits them, returns every CQE.
    fn run(&mut self, sqes: &[Sqe]) -> Vec<Cqe> {
        for sqe in sqes {
            self.push(*sqe);
        }
        assert_eq!(self.submit(), sqes.len() as u32);
        self.cqes()
    }

    /// Runs one SQE and returns its result.
    fn res(&mut self, sqe: Sqe) -> i32 {
        let cqes = self.run(&[sqe]);
        assert_eq!(cqes.len(), 1, "{cqes:?}");
        assert_eq!(cqes[0].user_data, sqe.user_data);
        cqes[0].res
    }

    fn advance(&mut self, ns: u64) -> bool {
        self.env.advance(ns);
        let view = self.ring.view();
        let posted = self.engine.poll_timers(&view, &mut self.env);
        self.check();
        posted
    }

    fn put_timespec(&mut self, addr: u64, sec: i64, nsec: i64) {
        use super::IoEnv;
        self.env.write_user(addr, &sec.to_le_bytes()).unwrap();
        self.env.write_user(addr + 8, &nsec.to_le_bytes()).unwrap();
    }

    /// The accounting invariant.
    fn check(&self) {
        let s = self.engine.stats();
        assert_eq!(
            s.consumed,
            s.dropped + s.posted + s.skipped + s.discarded + self.engine.pending_ops() as u64,
            "{s:?}, pending {}",
            self.engine.pending_ops()
        );
    }
}

fn cqe(user_data: u64, res: i32) -> Cqe {
    Cqe {
        user_data,
        res,
        flags: 0,
    }
}

fn nop(user_data: u64) -> Sqe {
    Sqe {
        opcode: op::NOP,
        user_data,
        ..Sqe::default()
    }
}

fn with_flags(mut sqe: Sqe, flags: u8) -> Sqe {
    sqe.flags |= flags;
    sqe
}

fn linked(sqe: Sqe) -> Sqe {
    with_flags(sqe, sqe_flags::IO_LINK)
}

fn rw(opcode: u8, fd: i32, addr: u64, len: u32, off: u64, user_data: u64) -> Sqe {
    Sqe {
        opcode,
        fd,
        addr,
        len,
        off,
        user_data,
        ..Sqe::default()
    }
}

/// A TIMEOUT reading its timespec at `ts`.
fn timeout(ts: u64, count: u64, user_data: u64) -> Sqe {
    Sqe {
        opcode: op::TIMEOUT,
        addr: ts,
        len: 1,
        off: count,
        user_data,
        ..Sqe::default()
    }
}

fn link_timeout(ts: u64, user_data: u64) -> Sqe {
    Sqe {
        opcode: op::LINK_TIMEOUT,
        addr: ts,
        len: 1,
        user_data,
        ..Sqe::default()
    }
}

fn cancel(opcode: u8, target: u64, user_data: u64) -> Sqe {
    Sqe {
        opcode,
        addr: target,
        user_data,
        ..Sqe::default()
    }
}
