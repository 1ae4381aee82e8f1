//! The first process. Greets from user space, runs `hello`, writes a file
//! and reads it back, and prints the system counters. Exits 0 if every step
//! worked (the kernel then powers off with success), 1 otherwise.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt;
use libuser::{eprintln, fs, println, process, sys, Args, Errno};

libuser::entry!(main);

const FILE: &str = "init.txt";
const CONTENT: &[u8] = b"written by init, read back by init\n";

/// A named step of the start-up sequence.
type Step = (&'static str, fn() -> Result<(), Failure>);

fn main(_: Args) -> i32 {
    let steps: [Step; 4] = [
        ("greeting", greet),
        ("running hello", run_hello),
        ("file round trip", file_round_trip),
        ("sysinfo", show_sysinfo),
    ];
    let mut failed = 0;
    for (name, step) in steps {
        if let Err(failure) = step() {
            eprintln!("init: {name} failed: {failure}");
            failed += 1;
        }
    }
    if failed == 0 {
        println!("init: all done");
        0
    } else {
        1
    }
}

/// Why a step failed.
enum Failure {
    Sys(Errno),
    Child(i32),
    Mismatch,
}

impl From<Errno> for Failure {
    fn from(errno: Errno) -> Self {
        Failure::Sys(errno)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Sys(errno) => write!(f, "{errno}"),
            Failure::Child(status) => write!(f, "child ended with {}", process::describe(*status)),
            Failure::Mismatch => f.write_str("read back other bytes than written"),
        }
    }
}

fn greet() -> Result<(), Failure> {
    let pid = sys::getpid()?;
    let now_ms = sys::clock_ns()? / 1_000_000;
    println!("init: hello from user space (pid {pid}, {now_ms} ms since boot)");
    Ok(())
}

fn run_hello() -> Result<(), Failure> {
    match process::run("hello", &["hello", "from", "init"])? {
        0 => Ok(()),
        status => Err(Failure::Child(status)),
    }
}

fn file_round_trip() -> Result<(), Failure> {
    fs::write_file(FILE, CONTENT)?;
    let back = fs::read_to_vec(FILE)?;
    sys::unlink(FILE)?;
    println!("init: wrote and read back {} bytes of {FILE}", back.len());
    if back != CONTENT {
        return Err(Failure::Mismatch);
    }
    Ok(())
}

fn show_sysinfo() -> Result<(), Failure> {
    let info = sys::sysinfo()?;
    println!(
        "init: {} of {} frames free, kernel heap {} bytes, {} task(s), {} cpu(s)",
        info.free_frames, info.total_frames, info.heap_used, info.tasks, info.cpus
    );
    Ok(())
}
