//! Spawning programs, waiting for them, and faults that must kill only the
//! faulting process.

use abi::errno::{E2BIG, ECHILD, ENAMETOOLONG, ENOENT, ENOEXEC};
use abi::syscall::limits::{ARGS_MAX, ARG_BYTES_MAX, PATH_MAX};
use alloc::string::String;
use alloc::vec::Vec;
use libuser::test::{Case, TestResult};
use libuser::{check, check_eq, check_err, detail, fs, process, sys};

use crate::files::Scratch;

/// x86 exception vectors the `crash` modes raise.
const DIVIDE_ERROR: u8 = 0;
const INVALID_OPCODE: u8 = 6;
const GENERAL_PROTECTION: u8 = 13;
const PAGE_FAULT: u8 = 14;

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("spawn hello with arguments, child exits 0", spawn_hello),
    ("spawn passes arguments (spin exits with its argument)", spawn_passes_args),
    ("spawn of a missing program fails with ENOENT", spawn_missing),
    ("spawn of a non-ELF file fails with ENOEXEC", spawn_not_elf),
    ("spawn argument limits: E2BIG and ENAMETOOLONG", spawn_limits),
    ("wait with no children fails with ECHILD", wait_no_children),
    ("wait for any child reaps each child once", wait_any),
    ("crash null is killed with vector 14 (page fault)", crash_null),
    ("crash kwrite is killed with vector 14 (page fault)", crash_kwrite),
    ("crash priv is killed with vector 13 (general protection)", crash_priv),
    ("crash ud is killed with vector 6 (invalid opcode)", crash_ud),
    ("crash div0 is killed with vector 0 (divide error)", crash_div0),
    ("crash stack is killed with vector 14 (page fault)", crash_stack),
    ("a panicking program exits with 101", panicking_child),
    ("the parent is intact after its children crashed", parent_intact),
];

fn spawn_hello() -> TestResult {
    let status = process::run("hello", &["hello", "from", "tests"])?;
    check_eq!(status, 0);
    // A leading `/` names the same file.
    check_eq!(process::run("/hello", &["/hello"])?, 0);
    Ok(())
}

fn spawn_passes_args() -> TestResult {
    for code in [0, 1, 42, 255, -7] {
        let arg = alloc::format!("{code}");
        check_eq!(process::run("spin", &["spin", &arg])?, code);
    }
    Ok(())
}

fn spawn_missing() -> TestResult {
    check_err!(
        process::spawn("no_such_program", &["no_such_program"]),
        ENOENT
    );
    check_err!(sys::wait(-1), ECHILD);
    Ok(())
}

fn spawn_not_elf() -> TestResult {
    let text = Scratch("t_script");
    fs::write_file(text.0, b"#!/bin/sh\necho this is not an ELF file\n")?;
    check_err!(process::spawn(text.0, &[text.0]), ENOEXEC);

    let empty = Scratch("t_empty");
    fs::write_file(empty.0, b"")?;
    check_err!(process::spawn(empty.0, &[empty.0]), ENOEXEC);

    // The ELF magic alone, cut off inside the header.
    let truncated = Scratch("t_truncated");
    fs::write_file(
        truncated.0,
        b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0",
    )?;
    check_err!(process::spawn(truncated.0, &[truncated.0]), ENOEXEC);

    check_err!(sys::wait(-1), ECHILD);
    Ok(())
}

fn spawn_limits() -> TestResult {
    let too_many: Vec<&str> = (0..=ARGS_MAX).map(|_| "spin").collect();
    check_err!(process::spawn("spin", &too_many), E2BIG);
    let just_enough = &too_many[..ARGS_MAX];
    check_eq!(process::run("spin", just_enough)?, 0);

    let long: String = "x".repeat(ARG_BYTES_MAX + 1);
    check_err!(process::spawn("spin", &["spin", &long]), E2BIG);

    let long_name: String = "n".repeat(PATH_MAX + 1);
    check_err!(process::spawn(&long_name, &["spin"]), ENAMETOOLONG);
    check_err!(sys::wait(-1), ECHILD);
    Ok(())
}

fn wait_no_children() -> TestResult {
    check_err!(sys::wait(-1), ECHILD);
    let me = sys::getpid()?;
    check_err!(sys::wait(me as i64), ECHILD);
    check_err!(sys::wait(1), ECHILD);
    check_err!(sys::wait(999_999), ECHILD);
    Ok(())
}

fn wait_any() -> TestResult {
    let mut pids = Vec::new();
    for code in 1..=3 {
        let arg = alloc::format!("{code}");
        pids.push((process::spawn("spin", &["spin", &arg])?, code));
    }
    for _ in 0..pids.len() {
        let (pid, status) = process::wait_any()?;
        let Some(index) = pids.iter().position(|&(child, _)| child == pid) else {
            libuser::fail!("wait returned pid {pid}, not one of ours");
        };
        let (_, code) = pids.swap_remove(index);
        check_eq!(status, code);
    }
    check_err!(sys::wait(-1), ECHILD);
    Ok(())
}

fn crash_null() -> TestResult {
    crash("null", PAGE_FAULT)
}

fn crash_kwrite() -> TestResult {
    crash("kwrite", PAGE_FAULT)
}

fn crash_priv() -> TestResult {
    crash("priv", GENERAL_PROTECTION)
}

fn crash_ud() -> TestResult {
    crash("ud", INVALID_OPCODE)
}

fn crash_div0() -> TestResult {
    crash("div0", DIVIDE_ERROR)
}

fn crash_stack() -> TestResult {
    crash("stack", PAGE_FAULT)
}

fn crash(mode: &str, vector: u8) -> TestResult {
    let status = process::run("crash", &["crash", mode])?;
    detail!("crash {mode}: {}", process::describe(status));
    check_eq!(abi::status::killed_by(status), Some(vector));
    Ok(())
}

fn panicking_child() -> TestResult {
    check_eq!(process::run("crash", &["crash", "panic"])?, 101);
    Ok(())
}

fn parent_intact() -> TestResult {
    let pid = sys::getpid()?;
    check!(pid > 0);
    check_err!(sys::wait(-1), ECHILD);
    check_eq!(process::run("hello", &["hello", "after", "crashes"])?, 0);
    Ok(())
}
