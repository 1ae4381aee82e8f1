//! `crashwriter [DIR]`: the writing half of the crash test
//! (`cargo xtask crashtest`, `abi::crash_log`). Run as init with an ext4
//! disk at `/disk` (or DIR).
//!
//! It opens `DIR/crash.log` (creating it), keeps the intact records at its
//! start and cuts off any torn tail a previous power cut left (ftruncate +
//! fsync), prints `START n` with the number of records kept, then appends
//! record n+1, n+2, ... one `write` each through `O_APPEND`, calls `fsync`
//! after each and prints `DURABLE k` only once that fsync has returned. It
//! never stops on its own: the runner kills the machine. Any error prints
//! `WRITER FAIL ...` and powers off with failure.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use abi::crash_log;
use abi::open_flags::{O_APPEND, O_CREAT, O_RDWR};
use alloc::format;
use alloc::string::String;
use libuser::fs::File;
use libuser::{println, sys, Args, Errno};

libuser::entry!(main);

fn main(args: Args) -> i32 {
    let dir = args.get_str(1).unwrap_or("/disk");
    let path = format!("{dir}/{}", crash_log::FILE_NAME);
    match write_forever(&path) {
        Ok(never) => match never {},
        Err(why) => {
            println!("WRITER FAIL {why}");
            sys::poweroff(1)
        }
    }
}

enum Never {}

fn write_forever(path: &str) -> Result<Never, String> {
    let at = |what: &'static str| move |errno: Errno| format!("{what}: {errno}");
    let mut file = File::open(path, O_RDWR | O_CREAT | O_APPEND).map_err(at("open"))?;
    let mut scan = crash_log::Scan::new();
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk).map_err(at("read"))? {
            0 => break,
            n => scan.feed(&chunk[..n]),
        }
    }
    let found = scan.finish();
    if found.tail > 0 {
        println!(
            "TRUNCATE {} tail bytes after record {}",
            found.tail, found.records
        );
        file.set_len(found.intact_bytes).map_err(at("ftruncate"))?;
        file.fsync().map_err(at("fsync after ftruncate"))?;
    }
    println!("START {}", found.records);
    let mut buf = [0u8; crash_log::MAX_LEN];
    let mut n = found.records;
    loop {
        n += 1;
        let len = crash_log::encode(n, &mut buf);
        let wrote = file.write(&buf[..len]).map_err(at("write"))?;
        if wrote != len {
            return Err(format!("short write of record {n}: {wrote} of {len} bytes"));
        }
        file.fsync().map_err(at("fsync"))?;
        println!("DURABLE {n}");
    }
}
