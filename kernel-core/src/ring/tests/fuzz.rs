//! Hostile user space: random SQEs, and random values scribbled into every
//! header word, SQ array entry and SQE while the engine runs. The engine must
//! never panic, never consume more than it may, keep its accounting, and
//! stay within its bounds.

use abi::io_uring::{header, op, register, sqe_flags, Sqe};

use super::*;
use crate::ring::{IoEnv, MAX_PENDING};

/// xorshift64*: small, deterministic, good enough to scribble with.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// Where the runs keep a path, an iovec array and a `statx` buffer.
const PATH: u64 = MEM + 0x2000;
const IOVECS: u64 = MEM + 0x3000;
const STATX_OUT: u64 = MEM + 0x4000;

/// An SQE that is garbage, or nearly valid, or in between.
fn random_sqe(rng: &mut Rng) -> Sqe {
    if rng.chance(3) {
        garbage_sqe(rng)
    } else {
        plausible_sqe(rng)
    }
}

fn garbage_sqe(rng: &mut Rng) -> Sqe {
    let mut words = [0u64; 8];
    for w in &mut words {
        *w = rng.next();
    }
    let mut sqe = Sqe::from_words(words);
    if rng.chance(2) {
        sqe.opcode = rng.below(u64::from(op::LAST) + 2) as u8;
    }
    if rng.chance(2) {
        sqe.flags &= sqe_flags::SUPPORTED;
    }
    if rng.chance(2) {
        sqe.addr = MEM + rng.below(MEM_LEN as u64);
    }
    sqe
}

/// A well-formed SQE of a random op, with random flags.
fn plausible_sqe(rng: &mut Rng) -> Sqe {
    let opcode = [
        op::NOP,
        op::READ,
        op::WRITE,
        op::READV,
        op::WRITEV,
        op::READ_FIXED,
        op::WRITE_FIXED,
        op::FSYNC,
        op::OPENAT,
        op::CLOSE,
        op::STATX,
        op::TIMEOUT,
        op::TIMEOUT_REMOVE,
        op::ASYNC_CANCEL,
        op::LINK_TIMEOUT,
    ][rng.below(15) as usize];
    let mut sqe = Sqe {
        opcode,
        flags: rng.next() as u8 & sqe_flags::SUPPORTED,
        user_data: rng.below(16),
        ..Sqe::default()
    };
    if rng.chance(2) {
        // Links are what the engine is most careful about: make them common.
        sqe.flags |= sqe_flags::IO_LINK;
    }
    match opcode {
        op::READ | op::WRITE | op::READ_FIXED | op::WRITE_FIXED => {
            sqe.fd = rng.below(4) as i32;
            sqe.addr = MEM + rng.below(0x1000);
            sqe.len = rng.below(128) as u32;
            sqe.off = if rng.chance(2) {
                u64::MAX
            } else {
                rng.below(128)
            };
            sqe.buf_index = rng.below(3) as u16;
        }
        op::READV | op::WRITEV => {
            sqe.fd = rng.below(4) as i32;
            sqe.addr = IOVECS;
            sqe.len = rng.below(4) as u32;
            sqe.off = if rng.chance(2) {
                u64::MAX
            } else {
                rng.below(128)
            };
        }
        op::FSYNC | op::CLOSE => sqe.fd = rng.below(6) as i32,
        op::OPENAT | op::STATX => {
            sqe.fd = crate::ring::ops::AT_FDCWD;
            sqe.addr = PATH;
            sqe.op_flags = [0, 2, 0o102][rng.below(3) as usize];
            sqe.addr3 = STATX_OUT;
            sqe.flags &= !sqe_flags::FIXED_FILE;
        }
        op::TIMEOUT | op::LINK_TIMEOUT => {
            sqe.addr = TS;
            sqe.len = 1;
            if opcode == op::TIMEOUT {
                sqe.off = rng.below(3);
            }
        }
        op::TIMEOUT_REMOVE | op::ASYNC_CANCEL => sqe.addr = rng.below(16),
        _ => {}
    }
    sqe
}

/// What a user that scribbled and thought better of it does: sane masks
/// and sizes, nothing published, everything posted consumed.
fn repair(view: &crate::ring::SharedRing<'_>, sq_entries: u32, cq_entries: u32) {
    view.set_sq_header(header::MASK, sq_entries - 1);
    view.set_sq_header(header::ENTRIES, sq_entries);
    view.set_sq_header(header::TAIL, view.sq_header(header::HEAD));
    view.set_cq_header(header::MASK, cq_entries - 1);
    view.set_cq_header(header::ENTRIES, cq_entries);
    view.set_cq_header(header::HEAD, view.cq_header(header::TAIL));
}

fn one_run(seed: u64, sq_entries: u32, cq_entries: u32, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let start = rng.next() as u32;
    // One run in three under a small memory quota, so that every path
    // that needs memory also meets the lack of it.
    let limit = if seed.is_multiple_of(3) {
        1024 + rng.below(32 * 1024) as usize
    } else {
        usize::MAX
    };
    let quota: &'static Quota = alloc::boxed::Box::leak(alloc::boxed::Box::new(Quota::new(limit)));
    let engine = RingEngine::with_quota(sq_entries, cq_entries, quota);
    let mut h = Harness::with_engine(engine, start, start.wrapping_add(7));
    h.env.create_file("a", &[1; 100]).unwrap();
    h.env.create_file("b", b"").unwrap();
    h.put_timespec(TS, 0, 1000);
    h.env.write_user(PATH, b"/a\0").unwrap();
    for (i, (base, len)) in [(MEM + 0x100, 16u64), (MEM + 0x200, 32)].iter().enumerate() {
        let at = IOVECS + 16 * i as u64;
        h.env.write_user(at, &base.to_le_bytes()).unwrap();
        h.env.write_user(at + 8, &len.to_le_bytes()).unwrap();
    }
    if rng.chance(2) {
        // Registered buffers over the first page, and files 0 and 1.
        let _ = h
            .engine
            .register(&mut h.env, register::REGISTER_BUFFERS, IOVECS, 2);
        h.env
            .write_user(MEM + 0x5000, &[0, 0, 0, 0, 1, 0, 0, 0])
            .unwrap();
        let _ = h
            .engine
            .register(&mut h.env, register::REGISTER_FILES, MEM + 0x5000, 2);
    }
    for _ in 0..steps {
        let ring = h.ring.clone();
        let view = ring.view();
        match rng.below(12) {
            0..=3 => {
                for _ in 0..rng.below(u64::from(sq_entries) + 2) {
                    let _ = view.user_push_sqe(&random_sqe(&mut rng));
                }
            }
            4 => {
                let word = rng.below(header::ARRAY as u64 + u64::from(sq_entries) + 4) as usize;
                view.set_sq_header(word, rng.next() as u32);
            }
            5 => {
                let word = rng.below(header::ARRAY as u64) as usize;
                view.set_cq_header(word, rng.next() as u32);
            }
            6 => {
                let word = rng.below(u64::from(sq_entries) * 8 + 8) as usize;
                view.set_sqe_word(word, rng.next());
            }
            7 => {
                for _ in 0..rng.below(u64::from(cq_entries) + 2) {
                    let _ = view.user_pop_cqe();
                }
                h.engine.flush_overflow(&view);
            }
            8 => {
                h.advance(rng.below(3000));
            }
            9 => {
                let opcode = [0, 1, 2, 3, 8, 99][rng.below(6) as usize];
                let arg = if rng.chance(2) {
                    MEM + rng.below(MEM_LEN as u64)
                } else {
                    rng.next()
                };
                let nr = rng.below(8) as u32;
                let _ = h.engine.register(&mut h.env, opcode, arg, nr);
            }
            10 if rng.chance(2) => repair(&view, sq_entries, cq_entries),
            10 => {
                // Anywhere but the setup above.
                let at = MEM + 0x9000 + rng.below(MEM_LEN as u64 - 0x9008);
                let _ = h.env.write_user(at, &rng.next().to_le_bytes());
            }
            _ => {
                let to_submit = if rng.chance(2) {
                    u32::MAX
                } else {
                    rng.below(u64::from(sq_entries) * 2) as u32
                };
                let before = h.engine.stats().consumed;
                let dropped = h.engine.stats().dropped;
                if let Ok(n) = h.try_submit(to_submit) {
                    assert!(n <= to_submit && n <= sq_entries);
                    // A dropped entry is consumed, not counted, and ends
                    // the batch.
                    let dropped = h.engine.stats().dropped - dropped;
                    assert!(dropped <= 1);
                    assert_eq!(h.engine.stats().consumed - before, u64::from(n) + dropped);
                } else {
                    assert_eq!(h.engine.stats().consumed, before);
                }
            }
        }
        h.check();
        assert_eq!(quota.used(), h.engine.memory());
        assert!(quota.used() <= limit);
        assert!(h.engine.pending_ops() <= MAX_PENDING);
        assert!(h.engine.cq_ready(&view) <= cq_entries);
        assert!(h.engine.sq_pending(&view) <= sq_entries);
    }
    let ring = h.ring.clone();
    repair(&ring.view(), sq_entries, cq_entries);
    let _ = h.cqes();
    h.engine.teardown(&mut h.env);
    h.check();
    assert_eq!(h.engine.pending_ops(), 0);
    assert_eq!(h.engine.memory(), 0);
    assert_eq!(quota.used(), 0, "everything charged is returned");
    assert_eq!(h.env.pinned_files(), 0);
}

#[test]
fn garbage_in_ring_memory() {
    let sizes = [(1, 1), (2, 4), (4, 2), (8, 8), (16, 32), (64, 4)];
    for seed in 0..96u64 {
        let (sq, cq) = sizes[seed as usize % sizes.len()];
        one_run(seed, sq, cq, 400);
    }
}

#[test]
fn garbage_in_a_large_ring() {
    for seed in 0..4u64 {
        one_run(1000 + seed, 256, 256, 400);
    }
}
