//! `ring_tests`: the io_uring (syscalls 12-14) test suite.
//!
//! Runs every case, prints the report in the harness format and powers the
//! machine off with 0 if all passed, 1 otherwise. Each case checks one
//! feature for real: it fails if the feature is broken.
//!
//! Most cases run in a fresh child process (`ring_tests case N`): a process
//! gets at most 16 ring slots in its life (slots are not reused), and a case
//! that breaks a ring must not break the next one. The child prints the
//! case's detail lines itself and leaves its outcome in [`OUTCOME_FILE`]
//! for the parent, so the report reads as if the case ran in the parent.
//!
//! Other modes: `ring_tests child-inflight` (sets up rings with work in
//! flight and exits, for the clean-up case) and `ring_tests child-clock MS`
//! (shows it got CPU time while a ring waited).
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
mod setup;
mod timeouts;
mod util;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use libuser::test::{Outcome, TestResult, TestRun};
use libuser::{fs, process, sys, Args};

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

/// The file a child case leaves its outcome in: `P`, `F<reason>` or
/// `S<reason>`.
const OUTCOME_FILE: &str = "ring_tests.outcome";

/// The name this program is spawned under.
pub const PROGRAM: &str = "ring_tests";

/// Every case, in report order. Indices are what `case N` runs.
fn all_cases() -> Vec<RingCase> {
    let tables: [&[RingCase]; 9] = [
        basics::SEED,
        setup::CASES,
        basics::CASES,
        io::CASES,
        flags::CASES,
        timeouts::CASES,
        queues::CASES,
        register::CASES,
        lifecycle::CASES,
    ];
    tables.iter().flat_map(|t| t.iter().copied()).collect()
}

fn main(args: Args) -> i32 {
    match args.get_str(1) {
        Some("case") => child_case(args.get_str(2)),
        Some("child-inflight") => lifecycle::child_inflight(),
        Some("child-clock") => timeouts::child_clock(args.get_str(2)),
        _ => parent(),
    }
}

fn parent() -> i32 {
    let mut run = TestRun::new("io_uring Test (New API)");
    for (index, (name, case, place)) in all_cases().into_iter().enumerate() {
        match place {
            Run::Parent => run.case(name, case),
            Run::Child => run.case(name, || run_in_child(index)),
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
    all_cases().iter().position(|(n, _, _)| *n == name)
}

/// `ring_tests case N`: runs one case, records its outcome.
fn child_case(index: Option<&str>) -> i32 {
    let cases = all_cases();
    let Some((_, case, _)) = index
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| cases.get(i))
    else {
        libuser::eprintln!("ring_tests: no case {index:?}");
        return 3;
    };
    let (record, code) = match case() {
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
