//! `crashcheck [DIR]`: the checking half of the crash test
//! (`cargo xtask crashtest`, `abi::crash_log`). Run as init on the boot
//! after a power cut: the kernel has mounted the disk at `/disk` (or DIR),
//! replaying the journal. It reads `DIR/crash.log`, counts the intact
//! records at its start and measures the bytes after them, and prints one
//! machine-readable line:
//!
//! - `CHECK records=N tail=T state=S ok`: records 1..=N intact, followed
//!   by at most one record's worth of torn bytes (the write that was in
//!   flight); `crash.state` holds exactly record S (0: no state file);
//! - `CHECK FAIL ...`: the file cannot be read, or more than one record's
//!   worth of bytes follows the intact ones (a record before the last
//!   write is damaged), or the state file is not one intact record.
//!
//! The runner compares N with the last `DURABLE` the writer printed. The
//! machine powers off with success only for `ok`, after which the kernel
//! has unmounted the disk cleanly.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use abi::crash_log;
use abi::open_flags::O_RDONLY;
use alloc::format;
use libuser::fs::File;
use libuser::{fs, println, sys, Args};

libuser::entry!(main);

fn main(args: Args) -> i32 {
    let dir = args.get_str(1).unwrap_or("/disk");
    let path = format!("{dir}/{}", crash_log::FILE_NAME);
    // Read in pieces: the file can outgrow a user program's heap.
    let mut scan = crash_log::Scan::new();
    let read = File::open(&path, O_RDONLY).and_then(|mut file| {
        let mut chunk = [0u8; 4096];
        loop {
            match file.read(&mut chunk)? {
                0 => return Ok(()),
                n => scan.feed(&chunk[..n]),
            }
        }
    });
    if let Err(errno) = read {
        println!("CHECK FAIL cannot read {path}: {errno}");
        sys::poweroff(1)
    }
    let found = scan.finish();
    // The state file: absent (state 0) or exactly one intact record.
    let state_path = format!("{dir}/{}", crash_log::STATE_NAME);
    let state = match fs::read_to_vec(&state_path) {
        Err(abi::errno::ENOENT) => 0,
        Err(errno) => {
            println!("CHECK FAIL cannot read {state_path}: {errno}");
            sys::poweroff(1)
        }
        Ok(bytes) => match crash_log::state_record(&bytes) {
            Some(n) => n,
            None => {
                println!(
                    "CHECK FAIL {state_path} is not one intact record ({} bytes): a rename exposed a torn file",
                    bytes.len()
                );
                sys::poweroff(1)
            }
        },
    };
    if found.tail_ok() {
        println!(
            "CHECK records={} tail={} state={state} ok",
            found.records, found.tail
        );
        sys::poweroff(0)
    }
    println!(
        "CHECK FAIL records={} tail={}: record {} at byte {} is damaged and {} bytes follow",
        found.records,
        found.tail,
        found.records + 1,
        found.intact_bytes,
        found.tail
    );
    sys::poweroff(1)
}
