//! `ring_tests`: the ring test suite, for io_uring (syscalls 12-14) and
//! the Ring API (syscalls 2000-2002, SQPOLL).
//!
//! Runs every case, prints the report in the harness format and powers the
//! machine off with 0 if all passed, 1 otherwise. Each case checks one
//! feature for real: it fails if the feature is broken.
//!
//! Which ring system a boot tests follows `ring=` (`SysInfo::ring_backend`):
//! - `ring=iouring` (the `rings` configuration): io_uring's own cases
//!   (setup, descriptors, slots, `to_submit`, clean-up, hostile memory)
//!   and the backend-neutral cases on io_uring.
//! - `ring=sqpoll` (`rings-sqpoll`): the Ring API's own cases (setup,
//!   doorbell, SQPOLL: `NEED_WAKEUP`, the wake-up race, idle CPU time, the
//!   poller's exit, hostile memory) and the backend-neutral cases twice, on
//!   the doorbell and under SQPOLL, named `[ring api] ...` and
//!   `[sqpoll] ...`.
//!
//! The backend-neutral cases (ops, flags, overflow, timeouts, registration,
//! the seed's `AsyncContext` cases) get their ring from `util::context()`
//! and `util::ring()`, which follow [`util::backend`]: one contract, two
//! implementations.
//!
//! Most cases run in a fresh child process (`ring_tests case N`): a case
//! that breaks a ring must not break the next one, nor leave rings open
//! (a process has at most 16 at once). The child prints the
//! case's detail lines itself and leaves its outcome in [`OUTCOME_FILE`]
//! for the parent, so the report reads as if the case ran in the parent.
//!
//! `ring_tests mode=direct|ring` also checks that the syscall mode is the
//! one the boot configuration selected (`syscall=`); the suite then runs
//! the same in either mode, its own I/O going through the system ring in
//! `RingBased` mode.
//!
//! Other modes: `ring_tests child-inflight` (sets up rings with work in
//! flight and exits, for the clean-up case), `ring_tests child-clock MS`
//! (shows it got CPU time while a ring waited) and `ring_tests
//! child-sqpoll N` (sets up an SQPOLL context with work in flight and exits,
//! for the poller-exit case).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod basics;
mod flags;
mod io;
mod lifecycle;
mod queues;
mod raw;
mod register;
mod ringapi;
mod setup;
mod timeouts;
mod util;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use libuser::test::{Outcome, TestResult, TestRun};
use libuser::{fs, process, sys, Args};
use util::{set_backend, Backend};

libuser::entry!(main);

/// Where a case runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// In a fresh `ring_tests case N` process.
    Child,
    /// In the parent (cases that only spawn, or need no ring).
    Parent,
}

/// A named case and where it runs.
pub type RingCase = (&'static str, fn() -> TestResult, Run);

/// A case of this boot's list: a [`RingCase`] and the ring it runs on.
struct Case {
    name: String,
    run: fn() -> TestResult,
    place: Run,
    backend: Backend,
}

/// The file a child case leaves its outcome in: `P`, `F<reason>` or
/// `S<reason>`.
const OUTCOME_FILE: &str = "ring_tests.outcome";

/// The name this program is spawned under.
pub const PROGRAM: &str = "ring_tests";

/// The backend-neutral tables, in report order.
fn neutral_tables() -> [&'static [RingCase]; 7] {
    [
        basics::seed_neutral(),
        basics::CASES,
        io::CASES,
        flags::CASES,
        timeouts::CASES,
        queues::CASES,
        register::CASES,
    ]
}

/// Whether this boot is about the Ring API (`ring=sqpoll`).
fn ring_api_boot() -> bool {
    sys::sysinfo().is_ok_and(|info| info.ring_backend == abi::syscall::backend::RING_API)
}

/// Every case of this boot, in report order. Indices are what `case N`
/// runs (the child builds the same list).
fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |tables: &[&[RingCase]], backend: Backend| {
        for &(name, run, place) in tables.iter().flat_map(|t| t.iter()) {
            cases.push(Case {
                name: format!("{}{name}", backend.label()),
                run,
                place,
                backend,
            });
        }
    };
    add(&[&basics::SEED[..1]], Backend::IoUring);
    if ring_api_boot() {
        add(&[ringapi::CASES], Backend::IoUring);
        add(&neutral_tables(), Backend::RingApi);
        add(&neutral_tables(), Backend::SqPoll);
    } else {
        let [seed, basic, rest @ ..] = neutral_tables();
        add(
            &[seed, setup::CASES, basic, basics::IO_URING_CASES],
            Backend::IoUring,
        );
        add(&rest, Backend::IoUring);
        add(&[lifecycle::CASES], Backend::IoUring);
    }
    cases
}

fn main(args: Args) -> i32 {
    match args.get_str(1) {
        Some("case") => child_case(args.get_str(2)),
        Some("child-inflight") => lifecycle::child_inflight(),
        Some("child-clock") => timeouts::child_clock(args.get_str(2)),
        Some("child-sqpoll") => ringapi::child_sqpoll(args.get_str(2)),
        _ => parent(&args),
    }
}

/// `mode=direct|ring` among the arguments: the `abi::syscall::mode` value
/// the boot configuration selected with `syscall=`.
fn expected_mode(args: &Args) -> Option<u64> {
    args.iter_str().find_map(|arg| match arg {
        "mode=direct" => Some(abi::syscall::mode::DIRECT),
        "mode=ring" => Some(abi::syscall::mode::RING_BASED),
        _ => None,
    })
}

fn parent(args: &Args) -> i32 {
    let title = if ring_api_boot() {
        "Ring API Test (syscalls 2000-2002, SQPOLL)"
    } else {
        "io_uring Test (New API)"
    };
    let mut run = TestRun::new(title);
    if let Some(expected) = expected_mode(args) {
        // In RingBased mode everything this suite prints, every file it
        // uses and every child's outcome file go through system rings.
        run.case("the syscall mode is the one this boot selected", || {
            let mode = sys::sysinfo()?.syscall_mode;
            libuser::detail!(
                "syscall mode {mode}, system ring {}",
                libuser::sysring::active()
            );
            libuser::check_eq!(mode, expected);
            libuser::check_eq!(
                libuser::sysring::active(),
                mode == abi::syscall::mode::RING_BASED
            );
            Ok(())
        });
    }
    for (index, case) in all_cases().into_iter().enumerate() {
        set_backend(case.backend);
        match case.place {
            Run::Parent => run.case(&case.name, case.run),
            Run::Child => run.case(&case.name, || run_in_child(index)),
        }
    }
    let passed = run.finish();
    sys::poweroff(if passed { 0 } else { 1 })
}

/// Runs case `index` in a fresh process and reports its outcome.
pub fn run_in_child(index: usize) -> TestResult {
    let _ = sys::unlink(OUTCOME_FILE);
    let arg = format!("{index}");
    let status = process::run(PROGRAM, &[PROGRAM, "case", &arg])?;
    let outcome = fs::read_to_vec(OUTCOME_FILE);
    let _ = sys::unlink(OUTCOME_FILE);
    let text = |bytes: &[u8]| String::from(core::str::from_utf8(bytes).unwrap_or("?"));
    match outcome.as_deref() {
        Ok([b'P']) if status == 0 => Ok(()),
        Ok([b'F', reason @ ..]) => Err(Outcome::Fail(text(reason))),
        Ok([b'S', reason @ ..]) => Err(Outcome::Skip(text(reason))),
        _ => Err(Outcome::Fail(format!(
            "the case's process ended with {} without reporting an outcome",
            process::describe(status)
        ))),
    }
}

/// The index of the case called `name`, for cases that rerun another.
pub fn case_index(name: &str) -> Option<usize> {
    all_cases().iter().position(|c| c.name == name)
}

/// `ring_tests case N`: runs one case, records its outcome.
fn child_case(index: Option<&str>) -> i32 {
    let cases = all_cases();
    let Some(case) = index
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| cases.get(i))
    else {
        libuser::eprintln!("ring_tests: no case {index:?}");
        return 3;
    };
    set_backend(case.backend);
    let (record, code) = match (case.run)() {
        Ok(()) => (String::from("P"), 0),
        Err(Outcome::Fail(reason)) => (format!("F{reason}"), 1),
        Err(Outcome::Skip(reason)) => (format!("S{reason}"), 2),
    };
    if let Err(err) = fs::write_file(OUTCOME_FILE, record.as_bytes()) {
        libuser::eprintln!("ring_tests: cannot record the outcome: {err}");
        return 4;
    }
    code
}
