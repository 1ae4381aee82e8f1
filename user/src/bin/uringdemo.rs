//! `uringdemo [ring]`: shows the ring at work, in plain words.
//!
//! It opens a file, then puts a whole batch in the submission queue with
//! one `io_uring_enter`: a 200 ms timeout, four writes at different
//! offsets, an fsync linked behind the last write, and a NOP. It prints
//! each completion as it arrives (the writes and the NOP at once, the
//! timeout last, when its time is up), then submits four reads of what was
//! written and prints those, with the text read. `uringdemo ring` does the
//! same through the Ring API's doorbell instead of io_uring.
//! Exits 0 if every operation did what it should, 1 otherwise.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use abi::io_uring::Timespec;
use abi::open_flags::{O_CREAT, O_RDWR, O_TRUNC};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use libuser::async_io::{AsyncContext, AsyncOp, Completion};
use libuser::{fs, println, sys, Args, Errno};

libuser::entry!(main);

const FILE: &str = "uringdemo.txt";
const PARTS: [&str; 4] = [
    "The ring ",
    "takes a batch ",
    "in one call ",
    "and answers each.\n",
];
const TIMEOUT_TAG: u64 = 100;
const FSYNC_TAG: u64 = 200;
const NOP_TAG: u64 = 300;
const READ_TAG: u64 = 10;

fn main(args: Args) -> i32 {
    let ring_api = args.get_str(1) == Some("ring");
    match demo(ring_api) {
        Ok(true) => {
            println!("uringdemo: every operation completed as expected");
            0
        }
        Ok(false) => 1,
        Err(e) => {
            println!("uringdemo: {e}");
            1
        }
    }
}

fn demo(ring_api: bool) -> Result<bool, Errno> {
    let mut ring = if ring_api {
        println!("uringdemo: setting up a Ring API context (doorbell, no SQPOLL)");
        AsyncContext::new_ring_api(false)?
    } else {
        println!("uringdemo: setting up an io_uring with 256 entries");
        AsyncContext::new()?
    };
    let file = fs::File::open(FILE, O_RDWR | O_CREAT | O_TRUNC)?;
    let fd = file.fd() as i32;
    let start = sys::clock_ns()?;
    let mut ok = true;

    // Batch 1: a timeout, four writes (the last linked to an fsync), a NOP.
    ring.submit(AsyncOp::timeout(
        Timespec {
            sec: 0,
            nsec: 200_000_000,
        },
        0,
        0,
        TIMEOUT_TAG,
    ))?;
    let mut offset = 0u64;
    let mut offsets = Vec::new();
    for (i, part) in PARTS.iter().enumerate() {
        let op = AsyncOp::write(fd, part.as_bytes().to_vec(), offset, i as u64);
        offsets.push(offset);
        offset += part.len() as u64;
        let op = if i == PARTS.len() - 1 { op.link() } else { op };
        ring.submit(op)?;
    }
    ring.submit(AsyncOp::fsync(fd, FSYNC_TAG))?;
    ring.submit(AsyncOp::nop(NOP_TAG))?;
    let queued = ring.queued();
    ring.flush()?;
    println!("uringdemo: queued {queued} operations, submitted them with one enter call");
    for _ in 0..queued {
        let c = ring.wait_completion()?;
        let ms = (sys::clock_ns()? - start) / 1_000_000;
        ok &= report(&c, ms, |tag| match tag {
            TIMEOUT_TAG => String::from("timeout (200 ms)"),
            FSYNC_TAG => String::from("fsync (linked after the last write)"),
            NOP_TAG => String::from("nop"),
            i => alloc::format!("write #{i} at offset {}", offsets[i as usize]),
        });
    }

    // Batch 2: read the four parts back, in reverse order.
    for (i, part) in PARTS.iter().enumerate().rev() {
        ring.submit(AsyncOp::read(
            fd,
            vec![0; part.len()],
            offsets[i],
            READ_TAG + i as u64,
        ))?;
    }
    let queued = ring.queued();
    ring.flush()?;
    println!("uringdemo: submitted {queued} reads in one call");
    let mut text = [const { String::new() }; PARTS.len()];
    for _ in 0..queued {
        let mut c = ring.wait_completion()?;
        let ms = (sys::clock_ns()? - start) / 1_000_000;
        let i = (c.user_data - READ_TAG) as usize;
        ok &= report(&c, ms, |_| {
            alloc::format!("read #{i} at offset {}", offsets[i])
        });
        if let Some(data) = c.take_buffer().filter(|_| c.result >= 0) {
            text[i] = String::from_utf8_lossy(&data).into_owned();
            println!("           read {:?}", text[i]);
        }
    }
    let whole: String = text.concat();
    println!("uringdemo: the file reads {:?}", whole.trim_end());
    ok &= whole == PARTS.concat();
    drop(file);
    sys::unlink(FILE)?;
    Ok(ok)
}

/// Prints one completion; returns whether it is what the op should give.
fn report(c: &Completion, ms: u64, name: impl Fn(u64) -> String) -> bool {
    let what = name(c.user_data);
    // A pure timer completes with ETIME when its time is up.
    let expected = match c.user_data {
        TIMEOUT_TAG => c.errno() == Some(abi::errno::ETIME),
        _ => c.result >= 0,
    };
    match c.errno() {
        Some(e) => println!("  {ms:4} ms  completion: {what} -> {e}"),
        None => println!("  {ms:4} ms  completion: {what} -> {} ", c.result),
    }
    if !expected {
        println!("           (unexpected)");
    }
    expected
}
