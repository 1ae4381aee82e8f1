//! Helpers shared by the cases: scratch files, reaping, time.

use abi::io_uring::{enter_flags, Cqe, Timespec};
use abi::open_flags::{O_CREAT, O_RDWR, O_TRUNC};
use abi::ring_api::{setup_flags, RingSetupParams};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};
use libuser::async_io::{AsyncContext, Completion};
use libuser::fs::File;
use libuser::test::{Outcome, TestResult};
use libuser::uring::Ring;
use libuser::{fail, sys, Errno};

/// The ring a backend-neutral case runs on: the same cases, one contract,
/// two implementations (three ways of driving them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// io_uring, syscalls 12-14.
    IoUring,
    /// The Ring API, syscalls 2000-2002, submission by the doorbell.
    RingApi,
    /// The Ring API with a kernel SQ poller.
    SqPoll,
}

impl Backend {
    /// The prefix of case names in the report (none for io_uring, whose
    /// names are the seed's).
    pub fn label(self) -> &'static str {
        match self {
            Backend::IoUring => "",
            Backend::RingApi => "[ring api] ",
            Backend::SqPoll => "[sqpoll] ",
        }
    }

    fn from_u8(value: u8) -> Backend {
        match value {
            1 => Backend::RingApi,
            2 => Backend::SqPoll,
            _ => Backend::IoUring,
        }
    }
}

static BACKEND: AtomicU8 = AtomicU8::new(0);

/// Chooses the ring the next case runs on.
pub fn set_backend(backend: Backend) {
    BACKEND.store(backend as u8, Ordering::Relaxed);
}

/// The ring the running case uses.
pub fn backend() -> Backend {
    Backend::from_u8(BACKEND.load(Ordering::Relaxed))
}

/// A context of `entries` entries on the case's ring.
pub fn context_with(entries: u32) -> Result<AsyncContext, Errno> {
    match backend() {
        Backend::IoUring => AsyncContext::with_entries(entries),
        Backend::RingApi => AsyncContext::ring_api_with_entries(entries, false),
        Backend::SqPoll => AsyncContext::ring_api_with_entries(entries, true),
    }
}

/// A context of the default 256 entries on the case's ring.
pub fn context() -> Result<AsyncContext, Errno> {
    context_with(libuser::async_io::DEFAULT_ENTRIES)
}

/// A raw ring of `entries` entries on the case's ring (for the Ring API,
/// the process's one context).
pub fn ring(entries: u32) -> Result<Ring, Errno> {
    let api = |flags| {
        let params = RingSetupParams {
            sq_entries: entries,
            flags,
            ..RingSetupParams::default()
        };
        Ring::setup_ring_api(params).map(|(ring, _)| ring)
    };
    match backend() {
        Backend::IoUring => Ring::setup(entries, 0),
        Backend::RingApi => api(0),
        Backend::SqPoll => api(setup_flags::SQPOLL),
    }
}

/// A file name that is unlinked when the case ends, however it ends.
pub struct Scratch(pub &'static str);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = sys::unlink(self.0);
    }
}

/// Creates (or empties) `name` for reading and writing, filled with `data`;
/// the position is left at 0.
pub fn scratch_file(name: &'static str, data: &[u8]) -> Result<(Scratch, File), Errno> {
    let scratch = Scratch(name);
    let mut file = File::open(name, O_RDWR | O_CREAT | O_TRUNC)?;
    file.write_all(data)?;
    file.seek(0, abi::seek::SEEK_SET)?;
    Ok((scratch, file))
}

/// `file`'s descriptor as an SQE `fd`.
pub fn fd_of(file: &File) -> i32 {
    file.fd() as i32
}

/// The whole contents of `file`, read with plain syscalls (position kept).
pub fn contents(file: &mut File) -> Result<Vec<u8>, Errno> {
    let position = file.seek(0, abi::seek::SEEK_CUR)?;
    file.seek(0, abi::seek::SEEK_SET)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    file.seek(position as i64, abi::seek::SEEK_SET)?;
    Ok(data)
}

/// `n` bytes of a recognisable pattern, different per `seed`.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A relative timespec of `ms` milliseconds.
pub fn ms(ms: u64) -> Timespec {
    ns(ms * 1_000_000)
}

/// A timespec of `ns` nanoseconds.
pub fn ns(ns: u64) -> Timespec {
    Timespec {
        sec: (ns / 1_000_000_000) as i64,
        nsec: (ns % 1_000_000_000) as i64,
    }
}

/// Milliseconds since `start` (a `clock_ns` value).
pub fn elapsed_ms(start: u64) -> Result<u64, Errno> {
    Ok((sys::clock_ns()? - start) / 1_000_000)
}

/// A CQE result as text: `5` or `-EBADF`.
pub struct Res(pub i32);

impl fmt::Display for Res {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.checked_neg().and_then(Errno::new) {
            Some(errno) => write!(f, "-{errno}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for Res {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Takes exactly `n` completions from `ctx`, sleeping for them as needed.
pub fn collect(ctx: &mut AsyncContext, n: usize) -> Result<Vec<Completion>, Outcome> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(ctx.wait_completion()?);
    }
    Ok(out)
}

/// Fails unless nothing more completes (after a flush).
pub fn expect_no_more(ctx: &mut AsyncContext) -> TestResult {
    ctx.flush()?;
    if let Some(c) = ctx.get_completion() {
        fail!(
            "unexpected extra completion user_data={:#x} res={}",
            c.user_data,
            Res(c.result)
        );
    }
    if ctx.stray_completions() != 0 {
        fail!("{} completions named no op", ctx.stray_completions());
    }
    Ok(())
}

/// The completion with `user_data` among `all`.
pub fn find(all: &[Completion], user_data: u64) -> Result<&Completion, Outcome> {
    match all.iter().find(|c| c.user_data == user_data) {
        Some(c) => Ok(c),
        None => fail!("no completion with user_data {user_data:#x}"),
    }
}

/// The results of `all` in order, as `(user_data, result)`.
pub fn results(all: &[Completion]) -> Vec<(u64, Res)> {
    all.iter().map(|c| (c.user_data, Res(c.result))).collect()
}

/// Submits `ops` as one batch, waits for `expect` completions and returns
/// them in completion order; fails if more arrive.
pub fn run_batch(
    ctx: &mut AsyncContext,
    ops: Vec<libuser::async_io::AsyncOp>,
    expect: usize,
) -> Result<Vec<Completion>, Outcome> {
    for op in ops {
        ctx.submit(op)?;
    }
    let all = collect(ctx, expect)?;
    expect_no_more(ctx)?;
    Ok(all)
}

/// Takes exactly `n` CQEs from a raw ring, sleeping (and pulling overflowed
/// ones) as needed.
pub fn reap(ring: &mut Ring, n: usize) -> Result<Vec<Cqe>, Outcome> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match ring.pop_cqe() {
            Some(cqe) => out.push(cqe),
            None => {
                ring.enter(0, 1, enter_flags::GETEVENTS)?;
            }
        }
    }
    Ok(out)
}

/// Takes every CQE ready now (after one `enter(0, 0, 0)`).
pub fn reap_ready(ring: &mut Ring) -> Result<Vec<Cqe>, Errno> {
    ring.enter(0, 0, 0)?;
    let mut out = Vec::new();
    while let Some(cqe) = ring.pop_cqe() {
        out.push(cqe);
    }
    Ok(out)
}

/// Whether `result` is one of `errnos` (as `-errno`).
pub fn is_err_in(result: i32, errnos: &[Errno]) -> bool {
    errnos.iter().any(|&e| result == -e)
}

/// Names of errnos for messages: `EFAULT|EINVAL`.
pub fn names(errnos: &[Errno]) -> String {
    let parts: Vec<&str> = errnos.iter().map(|e| e.name()).collect();
    parts.join("|")
}

/// Fails unless `result` is `-e` for one of `errnos`.
pub fn expect_err(what: &str, result: i32, errnos: &[Errno]) -> TestResult {
    if !is_err_in(result, errnos) {
        return Err(Outcome::Fail(format!(
            "{what}: expected -{}, got {}",
            names(errnos),
            Res(result)
        )));
    }
    Ok(())
}
