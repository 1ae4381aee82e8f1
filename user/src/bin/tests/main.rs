//! `tests`: the kernel foundation test suite.
//!
//! Runs every case, prints the report in the harness format, and powers the
//! machine off with 0 if all passed, 1 otherwise. Each case checks one
//! feature for real: it fails if the feature is broken, not merely if a
//! call returns an error.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod bad_pointers;
mod basic;
mod dirs;
mod files;
mod hostile;
mod leaks;
mod mode;
mod processes;

use libuser::test::TestRun;
use libuser::{sys, Args};

libuser::entry!(main);

// Takes `mode=direct|ring`: the syscall mode the boot configuration
// selected (see `mode`). The argument strings live at the top of the
// stack, which the bad-pointer cases borrow (see `hostile::at_stack_top`):
// they are read before the cases run.
fn main(args: Args) -> i32 {
    mode::expect_from_args(&args);
    let mut run = TestRun::new("Kernel Foundation Tests");
    run.cases(mode::CASES);
    run.cases(basic::CASES);
    run.cases(files::CASES);
    run.cases(dirs::CASES);
    run.cases(processes::CASES);
    run.cases(bad_pointers::CASES);
    run.cases(leaks::CASES);
    let passed = run.finish();
    sys::poweroff(if passed { 0 } else { 1 })
}
