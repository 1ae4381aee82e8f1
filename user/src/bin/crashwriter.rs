//! `crashwriter [DIR]`: the writing half of the crash test
//! (`cargo xtask crashtest`, `abi::crash_log`). Run as init with an ext4
//! disk at `/disk` (or DIR).
//!
//! It opens `DIR/crash.log` (creating it), keeps the intact records at its
//! start and cuts off any torn tail a previous power cut left (ftruncate +
//! fsync), prints `START n` with the number of records kept, then appends
//! record n+1, n+2, ... and prints `DURABLE k` only once record k is
//! durable, made so in turn three ways: `write` (`O_APPEND`) + `fsync`;
//! `write` + `fdatasync`; and the ring's WRITE (at the end of the file)
//! linked to FSYNC, both completed (without a ring backend, the first way
//! instead). Every 8th record it also replaces `DIR/crash.state` with a
//! copy of that record atomically (tmp file, fsync, rename, fsync of the
//! directory) before reporting it. It never stops on its own: the runner kills the machine. Any error prints
//! `WRITER FAIL ...` and powers off with failure.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use abi::crash_log;
use abi::open_flags::{O_APPEND, O_CREAT, O_DIRECTORY, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
use alloc::format;
use alloc::string::String;
use libuser::async_io::{AsyncContext, AsyncOp};
use libuser::fs::File;
use libuser::{println, sys, Args, Errno};

libuser::entry!(main);

fn main(args: Args) -> i32 {
    let dir = args.get_str(1).unwrap_or("/disk");
    let path = format!("{dir}/{}", crash_log::FILE_NAME);
    match write_forever(dir, &path) {
        Ok(never) => match never {},
        Err(why) => {
            println!("WRITER FAIL {why}");
            sys::poweroff(1)
        }
    }
}

enum Never {}

fn write_forever(dir: &str, path: &str) -> Result<Never, String> {
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
    // The ring, if the kernel has one (the third way of making a record
    // durable).
    let mut ring = match sys::sysinfo().map_err(at("sysinfo"))?.ring_backend {
        abi::syscall::backend::IO_URING => Some(AsyncContext::with_entries(8).map_err(at("ring"))?),
        abi::syscall::backend::RING_API => {
            Some(AsyncContext::ring_api_with_entries(8, false).map_err(at("ring"))?)
        }
        _ => None,
    };
    let mut buf = [0u8; crash_log::MAX_LEN];
    let mut n = found.records;
    let mut end = found.intact_bytes;
    loop {
        n += 1;
        let len = crash_log::encode(n, &mut buf);
        let record = &buf[..len];
        match (n % 3, ring.as_mut()) {
            // write(2), fdatasync(2): the size is needed to read the data
            // back, so it must be durable too.
            (1, _) => {
                write_record(&mut file, n, record)?;
                file.sync_data().map_err(at("fdatasync"))?;
            }
            // write(2) at the end (O_APPEND), fsync(2).
            (0, _) | (_, None) => {
                write_record(&mut file, n, record)?;
                file.fsync().map_err(at("fsync"))?;
            }
            // The ring: WRITE at the end linked to FSYNC, both in one
            // submission; durable once both completed.
            (_, Some(ring)) => {
                let fd = file.fd() as i32;
                ring.submit(AsyncOp::write(fd, record.to_vec(), end, 1).link())
                    .map_err(at("ring submit"))?;
                ring.submit(AsyncOp::fsync(fd, 2))
                    .map_err(at("ring submit"))?;
                ring.submit_and_wait(2).map_err(at("ring enter"))?;
                for _ in 0..2 {
                    let done = ring.wait_completion().map_err(at("ring wait"))?;
                    let want = if done.user_data == 1 { len as i32 } else { 0 };
                    if done.result != want {
                        return Err(format!(
                            "ring {} of record {n}: {} (expected {want})",
                            if done.user_data == 1 {
                                "WRITE"
                            } else {
                                "FSYNC"
                            },
                            done.result
                        ));
                    }
                }
            }
        }
        end += len as u64;
        if n.is_multiple_of(crash_log::STATE_EVERY) {
            replace_state(dir, record).map_err(|why| format!("state after record {n}: {why}"))?;
        }
        println!("DURABLE {n}");
    }
}

/// Replaces `DIR/crash.state` atomically with `record`: the new contents
/// in `crash.state.tmp`, fsync, rename over the old, fsync the directory.
fn replace_state(dir: &str, record: &[u8]) -> Result<(), String> {
    let at = |what: &'static str| move |errno: Errno| format!("{what}: {errno}");
    let tmp = format!("{dir}/{}", crash_log::STATE_TMP);
    let mut file = File::open(&tmp, O_WRONLY | O_CREAT | O_TRUNC).map_err(at("create tmp"))?;
    file.write_all(record).map_err(at("write tmp"))?;
    file.fsync().map_err(at("fsync tmp"))?;
    file.close().map_err(at("close tmp"))?;
    sys::rename(&tmp, &format!("{dir}/{}", crash_log::STATE_NAME)).map_err(at("rename"))?;
    let d = File::open(dir, O_RDONLY | O_DIRECTORY).map_err(at("open dir"))?;
    d.fsync().map_err(at("fsync dir"))
}

fn write_record(file: &mut File, n: u32, record: &[u8]) -> Result<(), String> {
    let wrote = file
        .write(record)
        .map_err(|errno| format!("write: {errno}"))?;
    if wrote != record.len() {
        return Err(format!(
            "short write of record {n}: {wrote} of {} bytes",
            record.len()
        ));
    }
    Ok(())
}
