//! `bench [ops=N] [rwops=N] [blkops=N] [reps=N] [cases=prefix,prefix]`: the
//! io_uring benchmark (defaults: ops=20000 rwops=2000 blkops=1000 reps=1, a
//! few seconds; `cargo xtask bench` passes its own counts), mirroring the
//! Linux anchor (`/work/shared/anchors/linux-qemu`:
//! same loops, same batch sizes, same output lines).
//!
//! Every case runs a warm-up (2% of the ops, at most 4096), then the timed
//! loop, `reps` times. ns/op comes from `clock_ns` and cycles/op from
//! `rdtsc`, both read only at the start and end of a rep. Per rep it prints
//! `RUN case=NAME rep=I ops=N ns_per_op=X cycles_per_op=Y`, per case
//! `BENCH case=NAME ops=N ns_per_op=X cycles_per_op=Y` (medians over the
//! reps), and at the end a table and `BENCH DONE`. It asserts nothing about
//! speed; it fails a case (`BENCH case=NAME failed=...`) only if an
//! operation returns a wrong result. A case whose ring cannot be set up
//! prints `BENCH case=NAME skipped=ERRNO`.
//!
//! Cases: `syscall_getpid`; `nop_b{1,8,32,128}` (a 256-entry ring; write N
//! NOP SQEs, `enter(N, N, GETEVENTS)`, reap and check N CQEs);
//! `read4k_b32`/`write4k_b32` (a 128 KiB RAM file; 32 READ/WRITE SQEs of
//! 4 KiB at offsets 0..31*4K from 32 page-aligned buffers, `enter(32, 32,
//! GETEVENTS)`, check res = 4096); `pread4k`/`pwrite4k` (the same transfers
//! as direct syscalls: this kernel has no pread/pwrite, so each is an
//! `lseek` plus a `read`/`write`, two syscalls per op).
//!
//! Ring API cases (syscalls 2000-2002; a process has one Ring API context,
//! so each runs in a child, `bench child=NAME`, which hands its samples
//! back in a file): `ringapi_nop_b{1,32}` (a 256-entry context without
//! SQPOLL; write N NOPs, publish, `ring_enter(GETEVENTS, N)` the doorbell,
//! reap N); `sqpoll_b{1,32}` (a 256-entry SQPOLL context, idle 1000 ms as
//! in the Linux anchor; write N NOPs and publish with no syscall, calling
//! `ring_enter` only if the poller set `NEED_WAKEUP`, then poll the CQ
//! while it is empty (`ring_io::Ring::relax`): `sched_yield` at once on one
//! CPU, so the poller gets the CPU; with more CPUs spinning first, as the
//! Linux anchor spins, and yielding only now and then; the `extra=` field
//! of the BENCH line counts the `ring_enter` wake-ups).
//!
//! Storage cases (the Linux anchor's, same names, offsets and depths):
//! `{nvme,vblk}_randread4k_qd{1,32}` and `{nvme,vblk}_randwrite4k_qd32` on
//! `/dev/nvme0n1` and `/dev/vda`: random 4 KiB reads or writes over the
//! first 64 MiB, offsets from splitmix64 seeded 20261203 (restarted every
//! rep), `qd` requests kept in flight, `blkops=N` I/Os per rep; and
//! `nvme_iopoll_randread4k_qd1`, the same on an `IORING_SETUP_IOPOLL` ring
//! (Linux's anchor has no polled case). A missing disk makes them
//! `skipped=ENOENT`.
//!
//! File-system cases (the Linux anchor's, same names and loops), on the
//! ext4 disk the kernel mounts at `/disk`: `ext4_read4k_b32` (a 16 MiB
//! file written with 128 KiB `pwrite`s and fsynced before the first rep,
//! then 32 buffered READs of 4 KiB at random offsets per `enter(32, 32,
//! GETEVENTS)`: the page cache serves them) and `ext4_append4k_fsync`
//! (a WRITE of 4 KiB at the end of an emptied file linked to an FSYNC,
//! both per `enter(2, 2, GETEVENTS)`, at most 8192 pairs per rep). No
//! ext4 disk makes them `skipped=ENOENT`.
//!
//! The hot loops use the raw rings (`libuser::uring::IoUring`,
//! `libuser::ring_io::Ring`) and allocate nothing.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use abi::io_uring::{enter_flags, op, Sqe};
use abi::open_flags::{O_CREAT, O_RDWR, O_TRUNC};
use abi::ring_api::{self, setup_flags, RingSetupParams};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::arch::x86_64::_rdtsc;
use libuser::fs::File;
use libuser::ring_io::Ring as ApiRing;
use libuser::uring::IoUring;
use libuser::{println, sys, Args, Errno};

libuser::entry!(main);

const RING_ENTRIES: u32 = 256;
const RW_BATCH: usize = 32;
const BLOCK: usize = 4096;
const RW_FILE: &str = "bench.dat";

struct Config {
    ops: u64,
    rwops: u64,
    /// I/Os per rep of the storage cases.
    blkops: u64,
    reps: usize,
    cases: Vec<&'static str>,
    /// `child=NAME`: run only the Ring API case NAME, for the parent.
    child: Option<&'static str>,
}

impl Config {
    fn parse(args: Args) -> Config {
        // Short by default, so that `bench` typed at the shell answers in
        // seconds (`cargo xtask bench`'s `--quick` counts); the runner
        // always passes its own counts.
        let mut cfg = Config {
            ops: 20_000,
            rwops: 2_000,
            blkops: 1_000,
            reps: 1,
            cases: Vec::new(),
            child: None,
        };
        for arg in args.iter_str().skip(1) {
            let Some((key, value)) = arg.split_once('=') else {
                println!("# ignoring argument {arg}");
                continue;
            };
            let number = value.parse::<u64>().ok();
            match (key, number) {
                ("ops", Some(n)) => cfg.ops = n.max(1),
                ("rwops", Some(n)) => cfg.rwops = n.max(1),
                ("blkops", Some(n)) => cfg.blkops = n.max(1),
                ("reps", Some(n)) => cfg.reps = (n as usize).max(1),
                ("cases", _) => cfg.cases = value.split(',').filter(|c| !c.is_empty()).collect(),
                ("child", _) => cfg.child = Some(value),
                _ => println!("# ignoring argument {arg}"),
            }
        }
        cfg
    }

    fn wants(&self, name: &str) -> bool {
        self.cases.is_empty() || self.cases.iter().any(|c| name.starts_with(c))
    }
}

#[inline(always)]
#[allow(unsafe_code)] // `_rdtsc` is an unsafe intrinsic
fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter: no memory effects,
    // and every x86_64 CPU has it.
    unsafe { _rdtsc() }
}

fn now_ns() -> u64 {
    sys::clock_ns().unwrap_or(0)
}

#[derive(Clone, Copy)]
struct Sample {
    ops: u64,
    ns: u64,
    cycles: u64,
    /// Case-specific count over the timed run (SQPOLL: `ring_enter`
    /// wake-ups).
    extra: u64,
}

/// What the running case counts into [`Sample::extra`].
static EXTRA: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn count_extra(n: u64) {
    EXTRA.fetch_add(n, core::sync::atomic::Ordering::Relaxed);
}

impl Sample {
    /// ns/op in tenths.
    fn ns_tenths(&self) -> u64 {
        (self.ns * 10 + self.ops / 2) / self.ops.max(1)
    }

    fn cycles_per_op(&self) -> u64 {
        (self.cycles + self.ops / 2) / self.ops.max(1)
    }
}

/// Why a case stopped.
enum CaseError {
    /// The ring (or file) could not be set up.
    Setup(Errno),
    /// A call or an operation returned something wrong.
    Failed(String),
}

impl From<Errno> for CaseError {
    fn from(errno: Errno) -> Self {
        CaseError::Failed(format!("{errno}"))
    }
}

/// A loop body: runs at least `target` ops, returns how many it ran.
type Body<'a> = &'a mut dyn FnMut(u64) -> Result<u64, CaseError>;

/// Warm-up, then one timed run of `body`.
fn timed(target: u64, body: Body<'_>) -> Result<Sample, CaseError> {
    body((target / 50).clamp(1, 4096))?;
    EXTRA.store(0, core::sync::atomic::Ordering::Relaxed);
    let t0 = now_ns();
    let c0 = rdtsc();
    let ops = body(target)?;
    let c1 = rdtsc();
    let t1 = now_ns();
    Ok(Sample {
        ops,
        ns: t1 - t0,
        cycles: c1 - c0,
        extra: EXTRA.load(core::sync::atomic::Ordering::Relaxed),
    })
}

fn getpid_loop(target: u64) -> Result<u64, CaseError> {
    let mut ops = 0;
    while ops < target {
        for _ in 0..64 {
            sys::getpid()?;
        }
        ops += 64;
    }
    Ok(ops)
}

const NOP: Sqe = Sqe {
    opcode: op::NOP,
    flags: 0,
    ioprio: 0,
    fd: 0,
    off: 0,
    addr: 0,
    len: 0,
    op_flags: 0,
    user_data: 0,
    buf_index: 0,
    personality: 0,
    file_index: 0,
    addr3: 0,
    pad: 0,
};

/// Pushes a NOP onto an io_uring; false when the SQ is full.
#[inline(always)]
#[allow(unsafe_code)] // `push_sqe`'s contract, which a NOP meets trivially
fn push_nop(ring: &mut IoUring) -> bool {
    // SAFETY: a NOP names no memory.
    unsafe { ring.push_sqe(&NOP) }
}

/// Pushes a NOP onto the Ring API context; false when the SQ is full.
#[inline(always)]
#[allow(unsafe_code)] // `push_sqe`'s contract, which a NOP meets trivially
fn push_nop_api(ring: &mut ApiRing) -> bool {
    // SAFETY: a NOP names no memory.
    unsafe { ring.push_sqe(&NOP) }
}

/// Pushes a NOP within an SQ batch; false when the SQ is full.
#[inline(always)]
#[allow(unsafe_code)] // `push`'s contract, which a NOP meets trivially
fn push_nop_batch(sq: &mut libuser::uring::SqBatch<'_>) -> bool {
    // SAFETY: a NOP names no memory.
    unsafe { sq.push(&NOP) }
}

/// Reaps exactly `n` CQEs (after an enter that waited for them), checking
/// each result; the CQ tail is read once and the head stored once, as
/// liburing's `io_uring_for_each_cqe` loop does.
#[inline(always)]
fn reap(ring: &mut IoUring, n: u32, expect: i32) -> Result<(), CaseError> {
    let mut wrong = None;
    let got = ring.reap_cqes(n, |cqe| {
        if cqe.res == expect {
            return true;
        }
        wrong = Some(*cqe);
        false
    });
    if let Some(cqe) = wrong {
        return Err(CaseError::Failed(format!(
            "CQE res {} (expected {expect}) user_data {}",
            cqe.res, cqe.user_data
        )));
    }
    if got != n {
        return Err(CaseError::Failed(format!(
            "only {got} of {n} CQEs after enter"
        )));
    }
    Ok(())
}

fn enter_all(ring: &IoUring, n: u32) -> Result<(), CaseError> {
    let submitted = ring.enter(n, n, enter_flags::GETEVENTS)?;
    if submitted != n {
        return Err(CaseError::Failed(format!(
            "enter submitted {submitted} of {n}"
        )));
    }
    Ok(())
}

fn nop_case(cfg: &Config, batch: u32) -> Result<Vec<Sample>, CaseError> {
    let mut ring = IoUring::setup(RING_ENTRIES, 0).map_err(CaseError::Setup)?;
    let mut body = |target: u64| -> Result<u64, CaseError> {
        let mut ops = 0;
        while ops < target {
            for _ in 0..batch {
                if !push_nop(&mut ring) {
                    return Err(CaseError::Failed(String::from("SQ full")));
                }
            }
            ring.publish();
            enter_all(&ring, batch)?;
            reap(&mut ring, batch, 0)?;
            ops += u64::from(batch);
        }
        Ok(ops)
    };
    (0..cfg.reps).map(|_| timed(cfg.ops, &mut body)).collect()
}

/// One page, page-aligned, so every transfer buffer is too.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; BLOCK]);

/// The 128 KiB file and 32 buffers the read/write cases use; the file is
/// unlinked at once (the descriptor keeps it).
fn rw_setup() -> Result<(File, Vec<Page>), Errno> {
    let mut pages = vec![Page([0; BLOCK]); RW_BATCH];
    for (i, page) in pages.iter_mut().enumerate() {
        for (j, byte) in page.0.iter_mut().enumerate() {
            *byte = ((i * BLOCK + j) % 251) as u8;
        }
    }
    let mut file = File::open(RW_FILE, O_RDWR | O_CREAT | O_TRUNC)?;
    let _ = sys::unlink(RW_FILE);
    for page in &pages {
        file.write_all(&page.0)?;
    }
    Ok((file, pages))
}

#[allow(unsafe_code)] // the SQEs lend the kernel raw pages: that is the case
fn ring_rw_case(cfg: &Config, write: bool) -> Result<Vec<Sample>, CaseError> {
    let mut ring = IoUring::setup(RING_ENTRIES, 0).map_err(CaseError::Setup)?;
    let (file, mut pages) = rw_setup().map_err(CaseError::Setup)?;
    let fd = file.fd() as i32;
    let opcode = if write { op::WRITE } else { op::READ };
    let sqes: Vec<Sqe> = pages
        .iter_mut()
        .enumerate()
        .map(|(i, page)| Sqe {
            opcode,
            fd,
            off: (i * BLOCK) as u64,
            addr: page.0.as_mut_ptr() as u64,
            len: BLOCK as u32,
            user_data: i as u64,
            ..Sqe::default()
        })
        .collect();
    let mut body = |target: u64| -> Result<u64, CaseError> {
        let mut ops = 0;
        while ops < target {
            for sqe in &sqes {
                // SAFETY: each SQE names one page of `pages`, which lives
                // (untouched by this code) until after every batch has been
                // reaped: `reap` below takes all 32 CQEs before the next
                // batch, and `pages` outlives the closure.
                if !unsafe { ring.push_sqe(sqe) } {
                    return Err(CaseError::Failed(String::from("SQ full")));
                }
            }
            ring.publish();
            enter_all(&ring, RW_BATCH as u32)?;
            reap(&mut ring, RW_BATCH as u32, BLOCK as i32)?;
            ops += RW_BATCH as u64;
        }
        Ok(ops)
    };
    // Every batch is reaped before the loop ends, so nothing is in flight
    // when `pages` is freed.
    (0..cfg.reps).map(|_| timed(cfg.rwops, &mut body)).collect()
}

fn plain_rw_case(cfg: &Config, write: bool) -> Result<Vec<Sample>, CaseError> {
    let (mut file, mut pages) = rw_setup().map_err(CaseError::Setup)?;
    let mut body = |target: u64| -> Result<u64, CaseError> {
        let mut ops = 0;
        while ops < target {
            for (i, page) in pages.iter_mut().enumerate() {
                file.seek((i * BLOCK) as i64, abi::seek::SEEK_SET)?;
                let n = if write {
                    file.write(&page.0)?
                } else {
                    file.read(&mut page.0)?
                };
                if n != BLOCK {
                    return Err(CaseError::Failed(format!("transfer of {n} bytes")));
                }
            }
            ops += RW_BATCH as u64;
        }
        Ok(ops)
    };
    (0..cfg.reps).map(|_| timed(cfg.rwops, &mut body)).collect()
}

/// The Ring API context of the child cases.
fn ring_api_context(sqpoll: bool) -> Result<ApiRing, CaseError> {
    let params = RingSetupParams {
        sq_entries: RING_ENTRIES,
        flags: if sqpoll { setup_flags::SQPOLL } else { 0 },
        sq_thread_idle_ms: if sqpoll { SQPOLL_IDLE_MS } else { 0 },
        ..RingSetupParams::default()
    };
    ApiRing::setup_with(params).map_err(CaseError::Setup)
}

/// The poller's idle time, as in the Linux anchor.
const SQPOLL_IDLE_MS: u32 = 1000;

/// `ringapi_nop_bN`: N NOPs per doorbell, waiting for their CQEs in it.
fn ringapi_nop_case(cfg: &Config, batch: u32) -> Result<Vec<Sample>, CaseError> {
    let mut ring = ring_api_context(false)?;
    let mut body = |target: u64| -> Result<u64, CaseError> {
        let mut ops = 0;
        while ops < target {
            for _ in 0..batch {
                if !push_nop_api(&mut ring) {
                    return Err(CaseError::Failed(String::from("SQ full")));
                }
            }
            ring.raw_mut().publish();
            let consumed = ring.doorbell(ring_api::enter_flags::GETEVENTS, batch)?;
            if consumed != batch {
                return Err(CaseError::Failed(format!(
                    "the doorbell consumed {consumed} of {batch}"
                )));
            }
            reap(ring.raw_mut(), batch, 0)?;
            ops += u64::from(batch);
        }
        Ok(ops)
    };
    (0..cfg.reps).map(|_| timed(cfg.ops, &mut body)).collect()
}

/// `sqpoll_bN`: N NOPs published with no syscall (unless the poller
/// sleeps), then the CQ polled, spinning (more than one CPU) and yielding
/// while it is empty.
fn sqpoll_case(cfg: &Config, batch: u32) -> Result<Vec<Sample>, CaseError> {
    let mut ring = ring_api_context(true)?;
    let mut body = |target: u64| -> Result<u64, CaseError> {
        let mut ops = 0;
        while ops < target {
            // As the anchor's `ring.submission()` and `sq.push`: the SQ
            // bookkeeping in a guard for the batch.
            let mut sq = ring.sq_batch();
            for _ in 0..batch {
                if !push_nop_batch(&mut sq) {
                    return Err(CaseError::Failed(String::from("SQ full")));
                }
            }
            drop(sq);
            let before = ring.wakeups();
            ring.submit()?;
            count_extra(ring.wakeups() - before);
            // As the Linux anchor's `reap`: whatever is ready, the CQ tail
            // read once and the head stored once per look that finds CQEs.
            let mut reaped = 0;
            let mut empty = 0;
            while reaped < batch {
                if ring.cq_ready() == 0 {
                    ring.relax(&mut empty)?;
                    continue;
                }
                let mut wrong = None;
                let got = ring.raw_mut().reap_cqes(batch - reaped, |cqe| {
                    if cqe.res == 0 {
                        return true;
                    }
                    wrong = Some(cqe.res);
                    false
                });
                if let Some(res) = wrong {
                    return Err(CaseError::Failed(format!("CQE res {res}")));
                }
                reaped += got;
            }
            ops += u64::from(batch);
        }
        Ok(ops)
    };
    (0..cfg.reps).map(|_| timed(cfg.ops, &mut body)).collect()
}

/// Where a `child=NAME` run leaves its samples: one `ops ns cycles extra`
/// line per rep, or `skipped ERRNO` / `failed WHY`.
const CHILD_FILE: &str = "bench.child";

/// The Ring API cases, run by the child.
fn ring_api_case(cfg: &Config, name: &str) -> Result<Vec<Sample>, CaseError> {
    match name {
        "ringapi_nop_b1" => ringapi_nop_case(cfg, 1),
        "ringapi_nop_b32" => ringapi_nop_case(cfg, 32),
        "sqpoll_b1" => sqpoll_case(cfg, 1),
        "sqpoll_b32" => sqpoll_case(cfg, 32),
        _ => Err(CaseError::Failed(format!("no Ring API case {name}"))),
    }
}

/// `bench child=NAME ...`: runs one Ring API case and writes its samples.
fn child_main(cfg: &Config, name: &str) -> i32 {
    let text = match ring_api_case(cfg, name) {
        Ok(samples) => samples
            .iter()
            .map(|s| format!("{} {} {} {}\n", s.ops, s.ns, s.cycles, s.extra))
            .collect::<String>(),
        Err(CaseError::Setup(errno)) => format!("skipped {errno}"),
        Err(CaseError::Failed(why)) => format!("failed {why}"),
    };
    match libuser::fs::write_file(CHILD_FILE, text.as_bytes()) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Runs Ring API case `name` in a child (a fresh process, so a fresh
/// context) and reads its samples back.
fn in_child(cfg: &Config, name: &str) -> Result<Vec<Sample>, CaseError> {
    let _ = sys::unlink(CHILD_FILE);
    let child = format!("child={name}");
    let ops = format!("ops={}", cfg.ops);
    let reps = format!("reps={}", cfg.reps);
    let status = libuser::process::run("bench", &["bench", &child, &ops, &reps])?;
    let text = libuser::fs::read_to_vec(CHILD_FILE)?;
    let _ = sys::unlink(CHILD_FILE);
    let text = String::from_utf8(text).unwrap_or_default();
    if let Some(why) = text.strip_prefix("failed ") {
        return Err(CaseError::Failed(String::from(why)));
    }
    if let Some(errno) = text.strip_prefix("skipped ") {
        return Err(CaseError::Failed(format!("setup failed: {errno}")));
    }
    if status != 0 {
        return Err(CaseError::Failed(format!(
            "child ended with status {status}"
        )));
    }
    text.lines()
        .map(|line| {
            let n: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
            match n[..] {
                [ops, ns, cycles, extra] => Ok(Sample {
                    ops,
                    ns,
                    cycles,
                    extra,
                }),
                _ => Err(CaseError::Failed(format!("bad child line {line:?}"))),
            }
        })
        .collect()
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    let n = values.len();
    if n == 0 {
        0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    }
}

struct Tenths(u64);

impl core::fmt::Display for Tenths {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// What a case produced, for the table.
struct Row {
    name: &'static str,
    outcome: Result<(u64, u64, u64, u64, u64), String>,
}

fn calibrate_tsc_khz() -> u64 {
    let (t0, c0) = (now_ns(), rdtsc());
    let _ = sys::sleep_ns(100_000_000);
    let (t1, c1) = (now_ns(), rdtsc());
    (c1 - c0) * 1_000_000 / (t1 - t0).max(1)
}

fn main(args: Args) -> i32 {
    let cfg = Config::parse(args);
    if let Some(name) = cfg.child {
        return child_main(&cfg, name);
    }
    println!("BENCH START");
    let khz = calibrate_tsc_khz();
    println!(
        "# tsc: {}.{} MHz (vs clock_ns)",
        khz / 1000,
        khz % 1000 / 100
    );
    println!(
        "# config: ops={} rwops={} blkops={} reps={} cases={:?}",
        cfg.ops, cfg.rwops, cfg.blkops, cfg.reps, cfg.cases
    );
    println!("# pread4k/pwrite4k: no pread/pwrite syscall here, each op is lseek + read/write (2 syscalls)");
    type CaseFn = fn(&Config) -> Result<Vec<Sample>, CaseError>;
    let cases: [(&'static str, CaseFn); 22] = [
        ("syscall_getpid", |c| {
            (0..c.reps)
                .map(|_| timed(c.ops, &mut getpid_loop))
                .collect()
        }),
        ("nop_b1", |c| nop_case(c, 1)),
        ("nop_b8", |c| nop_case(c, 8)),
        ("nop_b32", |c| nop_case(c, 32)),
        ("nop_b128", |c| nop_case(c, 128)),
        ("read4k_b32", |c| ring_rw_case(c, false)),
        ("write4k_b32", |c| ring_rw_case(c, true)),
        ("pread4k", |c| plain_rw_case(c, false)),
        ("pwrite4k", |c| plain_rw_case(c, true)),
        ("ringapi_nop_b1", |c| in_child(c, "ringapi_nop_b1")),
        ("ringapi_nop_b32", |c| in_child(c, "ringapi_nop_b32")),
        ("sqpoll_b1", |c| in_child(c, "sqpoll_b1")),
        ("sqpoll_b32", |c| in_child(c, "sqpoll_b32")),
        ("nvme_randread4k_qd1", |c| {
            blk_case(c, NVME, 1, false, false)
        }),
        ("nvme_randread4k_qd32", |c| {
            blk_case(c, NVME, 32, false, false)
        }),
        ("nvme_randwrite4k_qd32", |c| {
            blk_case(c, NVME, 32, true, false)
        }),
        ("nvme_iopoll_randread4k_qd1", |c| {
            blk_case(c, NVME, 1, false, true)
        }),
        ("vblk_randread4k_qd1", |c| {
            blk_case(c, VBLK, 1, false, false)
        }),
        ("vblk_randread4k_qd32", |c| {
            blk_case(c, VBLK, 32, false, false)
        }),
        ("vblk_randwrite4k_qd32", |c| {
            blk_case(c, VBLK, 32, true, false)
        }),
        ("ext4_read4k_b32", |c| fs_read_case(c, EXT4_DIR)),
        ("ext4_append4k_fsync", |c| fs_append_case(c, EXT4_DIR)),
    ];
    let start = now_ns();
    let mut rows = Vec::new();
    for (name, case) in cases {
        if !cfg.wants(name) {
            continue;
        }
        let outcome = match case(&cfg) {
            Ok(samples) => {
                for (rep, s) in samples.iter().enumerate() {
                    println!(
                        "RUN case={name} rep={} ops={} ns_per_op={} cycles_per_op={} extra={}",
                        rep + 1,
                        s.ops,
                        Tenths(s.ns_tenths()),
                        s.cycles_per_op(),
                        s.extra
                    );
                }
                let ns: Vec<u64> = samples.iter().map(Sample::ns_tenths).collect();
                let cycles: Vec<u64> = samples.iter().map(Sample::cycles_per_op).collect();
                let ops = samples.first().map_or(0, |s| s.ops);
                let (ns_med, cy_med) = (median(ns.clone()), median(cycles.clone()));
                let (ns_min, cy_min) = (
                    ns.iter().copied().min().unwrap_or(0),
                    cycles.iter().copied().min().unwrap_or(0),
                );
                let extra = median(samples.iter().map(|s| s.extra).collect());
                if name.starts_with("sqpoll") {
                    println!(
                        "BENCH case={name} ops={ops} ns_per_op={} cycles_per_op={cy_med} extra={extra}",
                        Tenths(ns_med)
                    );
                } else {
                    println!(
                        "BENCH case={name} ops={ops} ns_per_op={} cycles_per_op={cy_med}",
                        Tenths(ns_med)
                    );
                }
                Ok((ops, ns_min, ns_med, cy_min, cy_med))
            }
            Err(CaseError::Setup(errno)) => {
                println!("BENCH case={name} skipped={errno}");
                Err(format!("skipped ({errno})"))
            }
            Err(CaseError::Failed(why)) => {
                println!("BENCH case={name} failed={why}");
                Err(format!("failed: {why}"))
            }
        };
        rows.push(Row { name, outcome });
    }
    println!();
    println!("| case | ops/rep | ns/op min | ns/op median | cycles/op min | cycles/op median | Mops/s (best) |");
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        match &row.outcome {
            Ok((ops, ns_min, ns_med, cy_min, cy_med)) => {
                // Mops/s = 1e3 / (ns/op) = 1e4 / tenths; in thousandths.
                let mops_milli = 10_000_000 / (*ns_min).max(1);
                println!(
                    "| {} | {ops} | {} | {} | {cy_min} | {cy_med} | {}.{:03} |",
                    row.name,
                    Tenths(*ns_min),
                    Tenths(*ns_med),
                    mops_milli / 1000,
                    mops_milli % 1000
                );
            }
            Err(why) => println!("| {} | {why} | | | | | |", row.name),
        }
    }
    println!();
    println!("# benchmark time: {} ms", (now_ns() - start) / 1_000_000);
    println!("BENCH DONE");
    0
}

// ---------------------------------------------------------------- storage

/// The disks the storage cases use (the Linux anchor's names).
const NVME: &str = "/dev/nvme0n1";
const VBLK: &str = "/dev/vda";
/// Random offsets cover the first 64 MiB of each disk.
const BLK_SPAN: u64 = 64 << 20;
/// Seed of the offset generator; every rep restarts from it (the warm-up
/// takes the first numbers), as in the Linux anchor.
const BLK_SEED: u64 = 20261203;
const BLK_QD_MAX: usize = 32;

/// Random 4 KiB reads or writes over the first 64 MiB of `dev`, keeping
/// `qd` requests in flight: each `enter(new, 1, GETEVENTS)` submits the
/// refills and waits for one CQE; every reaped CQE frees a slot that gets
/// a new request (the Linux anchor's `case_blk`). With `iopoll`, the ring
/// is `IORING_SETUP_IOPOLL`: completions are reaped by polling the
/// device's polled queue from `enter`. ops = completed I/Os.
#[allow(unsafe_code)] // the SQEs lend the kernel raw pages: that is the case
fn blk_case(
    cfg: &Config,
    dev: &str,
    qd: usize,
    write: bool,
    iopoll: bool,
) -> Result<Vec<Sample>, CaseError> {
    let fd = sys::open(dev, O_RDWR).map_err(CaseError::Setup)?;
    let flags = if iopoll {
        abi::io_uring::setup_flags::IOPOLL
    } else {
        0
    };
    let mut ring = IoUring::setup(RING_ENTRIES, flags).map_err(CaseError::Setup)?;
    let mut pages = vec![Page([0x5a; BLOCK]); qd];
    let addrs: Vec<u64> = pages.iter_mut().map(|p| p.0.as_mut_ptr() as u64).collect();
    let nblocks = BLK_SPAN / BLOCK as u64;
    let opcode = if write { op::WRITE } else { op::READ };
    let rng = core::cell::Cell::new(BLK_SEED);
    let next_off = || {
        let mut state = rng.get();
        let value = abi::disk_test::splitmix64(&mut state);
        rng.set(state);
        (value % nblocks) * BLOCK as u64
    };
    let mut body = |target: u64| -> Result<u64, CaseError> {
        let mut free = [0u64; BLK_QD_MAX];
        for (i, f) in free.iter_mut().enumerate().take(qd) {
            *f = i as u64;
        }
        let mut nfree = qd;
        let (mut issued, mut done, mut pending) = (0u64, 0u64, 0u32);
        loop {
            while nfree > 0 && issued < target {
                nfree -= 1;
                let slot = free[nfree];
                let sqe = Sqe {
                    opcode,
                    fd: fd as i32,
                    off: next_off(),
                    addr: addrs[slot as usize],
                    len: BLOCK as u32,
                    user_data: slot,
                    ..Sqe::default()
                };
                // SAFETY: the SQE names page `slot`, which no one touches
                // until its CQE is reaped below (the slot is free only
                // then), and `pages` outlives every request: the loop ends
                // only when every slot is free again.
                if !unsafe { ring.push_sqe(&sqe) } {
                    return Err(CaseError::Failed(String::from("SQ full")));
                }
                issued += 1;
                pending += 1;
            }
            if nfree == qd {
                break;
            }
            ring.publish();
            ring.enter(pending, 1, enter_flags::GETEVENTS)?;
            pending = 0;
            while let Some(cqe) = ring.pop_cqe() {
                if cqe.res != BLOCK as i32 {
                    return Err(CaseError::Failed(format!(
                        "{} cqe res {} (expected {BLOCK})",
                        if write { "write" } else { "read" },
                        cqe.res
                    )));
                }
                done += 1;
                if cqe.user_data as usize >= qd || nfree >= qd {
                    return Err(CaseError::Failed(String::from("a CQE for no request")));
                }
                free[nfree] = cqe.user_data;
                nfree += 1;
            }
        }
        Ok(done)
    };
    let samples = (0..cfg.reps)
        .map(|_| {
            rng.set(BLK_SEED);
            timed(cfg.blkops, &mut body)
        })
        .collect();
    let _ = sys::close(fd);
    samples
}

// ---------------------------------------------------------- file systems

/// Where the kernel mounts the first ext4 disk.
const EXT4_DIR: &str = "/disk";
/// The read case's file: 16 MiB, as the anchor's.
const FS_READ_FILE: u64 = 16 << 20;
/// The append case stops a rep at 32 MiB (the volume is 64 MiB).
const FS_APPEND_MAX_OPS: u64 = 8192;

/// Buffered 4 KiB reads at random offsets of a 16 MiB file in `dir`, 32
/// per `enter` (the anchor's `case_fs_read`).
#[allow(unsafe_code)] // the SQEs lend the kernel raw pages: that is the case
fn fs_read_case(cfg: &Config, dir: &str) -> Result<Vec<Sample>, CaseError> {
    let path = format!("{dir}/anchor-read.dat");
    let have = sys::open(&path, abi::open_flags::O_RDONLY)
        .and_then(|fd| {
            let size = sys::fstat(fd).map(|st| st.size);
            let _ = sys::close(fd);
            size
        })
        .unwrap_or(0);
    if have != FS_READ_FILE {
        let t0 = now_ns();
        let fd = sys::open(&path, O_CREAT | O_RDWR | O_TRUNC).map_err(CaseError::Setup)?;
        let chunk = vec![Page([0x6b; BLOCK]); RW_BATCH];
        let mut bytes = Vec::new();
        for p in &chunk {
            bytes.extend_from_slice(&p.0);
        }
        let mut off = 0u64;
        while off < FS_READ_FILE {
            let n = sys::pwrite(fd, &bytes, off)?;
            if n != bytes.len() {
                return Err(CaseError::Failed(format!("short pwrite {n}")));
            }
            off += n as u64;
        }
        sys::fsync(fd)?;
        let _ = sys::close(fd);
        println!(
            "# ext4: wrote {path} ({} MiB) in {} ms",
            FS_READ_FILE >> 20,
            (now_ns() - t0) / 1_000_000
        );
    }
    let fd = sys::open(&path, abi::open_flags::O_RDONLY).map_err(CaseError::Setup)?;
    let mut ring = IoUring::setup(RING_ENTRIES, 0).map_err(CaseError::Setup)?;
    let mut pages = vec![Page([0; BLOCK]); RW_BATCH];
    let addrs: Vec<u64> = pages.iter_mut().map(|p| p.0.as_mut_ptr() as u64).collect();
    let nblocks = FS_READ_FILE / BLOCK as u64;
    let rng = core::cell::Cell::new(BLK_SEED);
    let mut body = |target: u64| -> Result<u64, CaseError> {
        let mut ops = 0;
        while ops < target {
            for (i, &addr) in addrs.iter().enumerate() {
                let mut state = rng.get();
                let off = (abi::disk_test::splitmix64(&mut state) % nblocks) * BLOCK as u64;
                rng.set(state);
                let sqe = Sqe {
                    opcode: op::READ,
                    fd: fd as i32,
                    off,
                    addr,
                    len: BLOCK as u32,
                    user_data: i as u64,
                    ..Sqe::default()
                };
                // SAFETY: the SQE names page `i`, untouched until the
                // batch's CQEs are all reaped below.
                if !unsafe { ring.push_sqe(&sqe) } {
                    return Err(CaseError::Failed(String::from("SQ full")));
                }
            }
            ring.publish();
            let batch = RW_BATCH as u32;
            ring.enter(batch, batch, enter_flags::GETEVENTS)?;
            let mut got = 0;
            while got < batch {
                while let Some(cqe) = ring.pop_cqe() {
                    got += 1;
                    if cqe.res != BLOCK as i32 {
                        return Err(CaseError::Failed(format!(
                            "read cqe res {} (expected {BLOCK})",
                            cqe.res
                        )));
                    }
                }
                if got < batch {
                    ring.enter(0, 1, enter_flags::GETEVENTS)?;
                }
            }
            ops += u64::from(batch);
        }
        Ok(ops)
    };
    let samples = (0..cfg.reps)
        .map(|_| {
            rng.set(BLK_SEED);
            timed(cfg.blkops, &mut body)
        })
        .collect();
    let _ = sys::close(fd);
    samples
}

/// A 4 KiB WRITE at the end of `dir`/anchor.dat linked (IO_LINK) to an
/// FSYNC, both per `enter(2, 2, GETEVENTS)` (the anchor's
/// `case_fs_append`). The file is emptied and fsynced, untimed, before the
/// warm-up and before the timed run.
#[allow(unsafe_code)] // the SQE lends the kernel a raw page: that is the case
fn fs_append_case(cfg: &Config, dir: &str) -> Result<Vec<Sample>, CaseError> {
    let path = format!("{dir}/anchor.dat");
    let fd = sys::open(&path, O_CREAT | O_RDWR | O_TRUNC).map_err(CaseError::Setup)?;
    let mut ring = IoUring::setup(RING_ENTRIES, 0).map_err(CaseError::Setup)?;
    let mut page = Page([0x41; BLOCK]);
    let addr = page.0.as_mut_ptr() as u64;
    let target = cfg.blkops.min(FS_APPEND_MAX_OPS);
    let setup = || -> Result<(), CaseError> {
        sys::ftruncate(fd, 0)?;
        sys::fsync(fd)?;
        Ok(())
    };
    let mut body = |target: u64| -> Result<u64, CaseError> {
        let (mut ops, mut off) = (0u64, 0u64);
        while ops < target {
            let write = Sqe {
                opcode: op::WRITE,
                flags: abi::io_uring::sqe_flags::IO_LINK,
                fd: fd as i32,
                off,
                addr,
                len: BLOCK as u32,
                user_data: 0,
                ..Sqe::default()
            };
            let fsync = Sqe {
                opcode: op::FSYNC,
                fd: fd as i32,
                user_data: 1,
                ..Sqe::default()
            };
            // SAFETY: the page stays untouched until both CQEs are reaped.
            if !unsafe { ring.push_sqe(&write) } || !unsafe { ring.push_sqe(&fsync) } {
                return Err(CaseError::Failed(String::from("SQ full")));
            }
            ring.publish();
            ring.enter(2, 2, enter_flags::GETEVENTS)?;
            for _ in 0..2 {
                let cqe = ring
                    .pop_cqe()
                    .ok_or_else(|| CaseError::Failed(String::from("short reap")))?;
                let want = if cqe.user_data == 0 { BLOCK as i32 } else { 0 };
                if cqe.res != want {
                    return Err(CaseError::Failed(format!(
                        "{} cqe res {} (expected {want}) at offset {off}",
                        if cqe.user_data == 0 { "write" } else { "fsync" },
                        cqe.res
                    )));
                }
            }
            off += BLOCK as u64;
            ops += 1;
        }
        Ok(ops)
    };
    let samples = (0..cfg.reps)
        .map(|_| timed_setup(target, &setup, &mut body))
        .collect();
    let _ = sys::close(fd);
    let _ = sys::unlink(&path);
    samples
}

/// [`timed`] with `setup` run, untimed, before the warm-up and before the
/// timed run (the anchor's `timed_setup`).
fn timed_setup(
    target: u64,
    setup: &dyn Fn() -> Result<(), CaseError>,
    body: Body<'_>,
) -> Result<Sample, CaseError> {
    setup()?;
    body((target / 50).clamp(1, 4096))?;
    setup()?;
    EXTRA.store(0, core::sync::atomic::Ordering::Relaxed);
    let (t0, c0) = (now_ns(), rdtsc());
    let ops = body(target)?;
    let (c1, t1) = (rdtsc(), now_ns());
    Ok(Sample {
        ops,
        ns: t1 - t0,
        cycles: c1 - c0,
        extra: EXTRA.load(core::sync::atomic::Ordering::Relaxed),
    })
}
