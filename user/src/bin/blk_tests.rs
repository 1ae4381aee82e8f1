//! `blk_tests [dev=/dev/vda ...]`: the disk test suite, on every disk
//! named (default: every `/dev/vd*` and `/dev/nvme0n1` that opens).
//!
//! Writes patterns (`abi::disk_test`) with 1 to 64 requests in flight
//! through io_uring and reads them back; checks the raw-device rules
//! (whole blocks, clamping at the end), FLUSH, WRITE -> FSYNC links,
//! unaligned and vectored buffers (bounce), cancel of I/O in flight, an
//! IOPOLL ring, the Ring API with SQPOLL, the direct syscalls, and a
//! child that exits with 64 writes in flight. The `FINAL` and `KILLED`
//! regions are then checked again from the host, in the image files,
//! after the guest powers off.
//!
//! `blk_tests child-inflight dev=...` is that child.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use abi::disk_test::{self, FINAL, KILLED, MIN_DISK, SCRATCH, SEED_FINAL, SEED_KILLED};
use abi::errno::{Errno, EINVAL, ENOENT, ENOSPC};
use abi::io_uring::setup_flags;
use abi::open_flags::O_RDWR;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use libuser::async_io::{AsyncContext, AsyncOp, Completion};
use libuser::test::{TestResult, TestRun};
use libuser::uring::IoUring;
use libuser::{check, check_eq, check_err, detail, fail, println, sys, Args};

libuser::entry!(main);

const BLOCK: usize = 4096;

fn main(args: Args) -> i32 {
    let words: Vec<String> = args.iter_str().skip(1).map(String::from).collect();
    let mut devs: Vec<String> = words
        .iter()
        .filter_map(|w| w.strip_prefix("dev=").map(String::from))
        .collect();
    if words.iter().any(|w| w == "child-inflight") {
        let crash = words.iter().any(|w| w == "crash");
        return child_inflight(devs.first().map_or("/dev/vda", |d| d.as_str()), crash);
    }
    if devs.is_empty() {
        for name in ["/dev/nvme0n1", "/dev/vda", "/dev/vdb", "/dev/vdc"] {
            if let Ok(fd) = sys::open(name, O_RDWR) {
                let _ = sys::close(fd);
                devs.push(name.into());
            }
        }
    }
    let mut run = TestRun::new("Block Device Tests");
    if devs.is_empty() {
        println!("no disk found (give dev=/dev/NAME)");
        sys::poweroff(1)
    }
    for dev in &devs {
        let d = dev.as_str();
        run.case(&format!("{d}: opens, size from fstat"), || geometry(d));
        run.case(
            &format!("{d}: raw-device rules (whole blocks, end of disk)"),
            || rules(d),
        );
        for depth in [1usize, 8, 64] {
            let name = format!("{d}: 256 random 4 KiB writes then reads, {depth} in flight");
            run.case(&name, || random_rounds(d, depth));
        }
        run.case(
            &format!("{d}: WRITE -> FSYNC link, FSYNC, direct fsync"),
            || flushes(d),
        );
        run.case(&format!("{d}: unaligned and vectored buffers"), || {
            bounce(d)
        });
        let name =
            format!("{d}: cancel of a read in flight finds nothing, the read completes once");
        run.case(&name, || cancel(d));
        run.case(&format!("{d}: IOPOLL ring"), || iopoll(d));
        run.case(&format!("{d}: Ring API with SQPOLL"), || ring_api(d));
        run.case(&format!("{d}: read/write/lseek syscalls"), || direct(d));
        run.case(
            &format!("{d}: a child exits with 64 writes in flight"),
            || killed_child(d, false),
        );
        run.case(
            &format!("{d}: a child is killed by a fault with 64 writes in flight"),
            || killed_child(d, true),
        );
        let name = format!("{d}: the final region, 64 in flight, for the host to check");
        run.case(&name, || final_region(d));
    }
    let passed = run.finish();
    sys::poweroff(if passed { 0 } else { 1 })
}

fn open(dev: &str) -> Result<(u64, u64), Errno> {
    let fd = sys::open(dev, O_RDWR)?;
    let size = sys::fstat(fd)?.size;
    Ok((fd, size))
}

/// Reads `buf.len()` bytes at `offset` with lseek and read(2) (any buffer
/// address: the kernel bounces an unaligned one). Returns the bytes read.
fn pread(fd: u64, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    sys::lseek(fd, offset as i64, abi::seek::SEEK_SET)?;
    let mut done = 0;
    while done < buf.len() {
        let n = sys::read(fd, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

fn pattern_buf(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    disk_test::fill(seed, offset, &mut buf);
    buf
}

/// `Ok` if `got == want`, else a failure naming `what` and both values.
#[track_caller]
fn eq<T: PartialEq + core::fmt::Debug>(got: T, want: T, what: &str) -> TestResult {
    if got != want {
        let at = core::panic::Location::caller();
        return Err(libuser::test::fail_at(
            at.file(),
            at.line(),
            format_args!("{what}: got {got:?}, want {want:?}"),
        ));
    }
    Ok(())
}

fn expect_ok(c: &Completion, want: i32, what: &str) -> TestResult {
    if c.result != want {
        fail!("{what}: result {} ({:?}), want {want}", c.result, c.errno());
    }
    Ok(())
}

fn geometry(dev: &str) -> TestResult {
    let (fd, size) = open(dev)?;
    sys::close(fd)?;
    detail!("{} bytes ({} MiB)", size, size >> 20);
    check!(size >= MIN_DISK, "the test needs a disk of at least 64 MiB");
    Ok(())
}

fn rules(dev: &str) -> TestResult {
    let (fd, size) = open(dev)?;
    let mut ring = AsyncContext::new()?;
    let fdi = fd as i32;
    let mut one = |op: AsyncOp| -> Result<Completion, Errno> {
        ring.submit(op)?;
        ring.wait_completion()
    };
    // Not whole blocks.
    let c = one(AsyncOp::read(fdi, vec![0; 100], 0, 1))?;
    eq(c.result, -EINVAL, "a 100-byte read")?;
    let c = one(AsyncOp::read(fdi, vec![0; BLOCK], 100, 2))?;
    eq(c.result, -EINVAL, "a read at offset 100")?;
    // At and past the end.
    let c = one(AsyncOp::read(fdi, vec![0; BLOCK], size, 3))?;
    eq(c.result, 0, "a read at the end")?;
    let c = one(AsyncOp::read(fdi, vec![0; BLOCK], size + (1 << 20), 4))?;
    eq(c.result, 0, "a read past the end")?;
    let c = one(AsyncOp::write(fdi, vec![0; BLOCK], size, 5))?;
    eq(c.result, -ENOSPC, "a write at the end")?;
    // Across the end: short.
    let c = one(AsyncOp::read(
        fdi,
        vec![0; 2 * BLOCK],
        size - BLOCK as u64,
        6,
    ))?;
    eq(c.result, BLOCK as i32, "a read across the end")?;
    // The direct calls too.
    check_err!(sys::read(fd, &mut [0u8; 100]), EINVAL, "read(100 bytes)");
    sys::close(fd)?;
    Ok(())
}

/// Writes `count` distinct random 4 KiB blocks of SCRATCH with `depth` in
/// flight, then reads them back (also `depth` in flight) and compares.
fn random_rounds(dev: &str, depth: usize) -> TestResult {
    let (fd, _) = open(dev)?;
    let fdi = fd as i32;
    let mut ring = AsyncContext::with_entries(64)?;
    let blocks = (SCRATCH.1 - SCRATCH.0) / BLOCK as u64;
    let count = 256usize;
    let seed = 0x5eed_0000 + depth as u64;
    let mut state = seed;
    let mut offsets: Vec<u64> = Vec::new();
    while offsets.len() < count {
        let o = SCRATCH.0 + (disk_test::splitmix64(&mut state) % blocks) * BLOCK as u64;
        if !offsets.contains(&o) {
            offsets.push(o);
        }
    }
    let mut most = 0;
    for pass in 0..2 {
        let mut next = 0;
        let mut in_flight = 0usize;
        let mut done = 0;
        while done < count {
            while in_flight < depth && next < count {
                let o = offsets[next];
                let op = if pass == 0 {
                    AsyncOp::write(fdi, pattern_buf(seed, o, BLOCK), o, next as u64)
                } else {
                    AsyncOp::read(fdi, vec![0; BLOCK], o, next as u64)
                };
                ring.submit(op)?;
                next += 1;
                in_flight += 1;
            }
            ring.flush()?;
            most = most.max(ring.in_flight());
            let mut c = ring.wait_completion()?;
            in_flight -= 1;
            done += 1;
            expect_ok(&c, BLOCK as i32, "a 4 KiB transfer")?;
            if pass == 1 {
                let o = offsets[c.user_data as usize];
                let buf = c.take_buffer().unwrap_or_default();
                if let Some(at) = disk_test::mismatch(seed, o, &buf) {
                    fail!("block at {o:#x}: byte {at:#x} differs from what was written");
                }
            }
        }
    }
    detail!("{count} blocks written and read back, up to {most} in flight at once");
    sys::close(fd)?;
    Ok(())
}

fn flushes(dev: &str) -> TestResult {
    let (fd, _) = open(dev)?;
    let fdi = fd as i32;
    let mut ring = AsyncContext::new()?;
    let o = SCRATCH.0;
    ring.submit(AsyncOp::write(fdi, pattern_buf(7, o, BLOCK), o, 1).link())?;
    ring.submit(AsyncOp::fsync(fdi, 2))?;
    let a = ring.wait_completion()?;
    let b = ring.wait_completion()?;
    eq((a.user_data, a.result), (1, BLOCK as i32), "the write")?;
    eq((b.user_data, b.result), (2, 0), "the fsync after it")?;
    ring.submit(AsyncOp::fsync(fdi, 3))?;
    let c = ring.wait_completion()?;
    eq(c.result, 0, "a lone FSYNC")?;
    sys::fsync(fd)?;
    sys::close(fd)?;
    Ok(())
}

fn bounce(dev: &str) -> TestResult {
    let (fd, _) = open(dev)?;
    let fdi = fd as i32;
    let mut ring = AsyncContext::new()?;
    let o = SCRATCH.0 + 64 * BLOCK as u64;
    // Three buffers of 1, 2 and 1 KiB: a bounce buffer on the way.
    let data = pattern_buf(11, o, BLOCK);
    let parts = vec![
        data[..1024].to_vec(),
        data[1024..3072].to_vec(),
        data[3072..].to_vec(),
    ];
    ring.submit(AsyncOp::writev(fdi, parts, o, 1))?;
    let c = ring.wait_completion()?;
    expect_ok(&c, BLOCK as i32, "WRITEV of three buffers")?;
    ring.submit(AsyncOp::readv(fdi, vec![vec![0; 512], vec![0; 3584]], o, 2))?;
    let mut c = ring.wait_completion()?;
    expect_ok(&c, BLOCK as i32, "READV into two buffers")?;
    let got: Vec<u8> = c.take_buffers().concat();
    check!(got == data, "READV read back what WRITEV wrote");
    // An odd buffer address: read into bytes 1.. of a larger buffer.
    let mut big = vec![0u8; BLOCK + 1];
    eq(
        pread(fd, &mut big[1..], o),
        Ok(BLOCK),
        "a read into an odd address",
    )?;
    check!(big[1..] == data[..], "the odd-address read got the data");
    sys::close(fd)?;
    Ok(())
}

fn cancel(dev: &str) -> TestResult {
    let (fd, _) = open(dev)?;
    let fdi = fd as i32;
    let mut ring = AsyncContext::new()?;
    ring.submit(AsyncOp::read(fdi, vec![0; BLOCK], SCRATCH.0, 1))?;
    ring.submit(AsyncOp::cancel(1, 2))?;
    let mut results = Vec::new();
    for _ in 0..2 {
        let c = ring.wait_completion()?;
        results.push((c.user_data, c.result));
    }
    results.sort_unstable();
    // The read either finished before the cancel looked (ENOENT too: it is
    // gone) or was in flight (ENOENT: device I/O is not called back).
    check_eq!(results, vec![(1, BLOCK as i32), (2, -ENOENT)]);
    // No third completion arrives.
    eq(ring.in_flight(), 0, "nothing left in flight")?;
    sys::close(fd)?;
    Ok(())
}

fn iopoll(dev: &str) -> TestResult {
    let (fd, _) = open(dev)?;
    let fdi = fd as i32;
    let mut ring = AsyncContext::from_ring(IoUring::setup(32, setup_flags::IOPOLL)?);
    let o = SCRATCH.0 + 128 * BLOCK as u64;
    for i in 0..16u64 {
        let at = o + i * BLOCK as u64;
        ring.submit(AsyncOp::write(fdi, pattern_buf(13, at, BLOCK), at, i))?;
    }
    for _ in 0..16 {
        let c = ring.wait_completion()?;
        expect_ok(&c, BLOCK as i32, "an IOPOLL write")?;
    }
    for i in 0..16u64 {
        ring.submit(AsyncOp::read(fdi, vec![0; BLOCK], o + i * BLOCK as u64, i))?;
    }
    for _ in 0..16 {
        let mut c = ring.wait_completion()?;
        expect_ok(&c, BLOCK as i32, "an IOPOLL read")?;
        let at = o + c.user_data * BLOCK as u64;
        let buf = c.take_buffer().unwrap_or_default();
        check!(
            disk_test::mismatch(13, at, &buf).is_none(),
            "IOPOLL data at {at:#x}"
        );
    }
    sys::close(fd)?;
    Ok(())
}

fn ring_api(dev: &str) -> TestResult {
    let (fd, _) = open(dev)?;
    let fdi = fd as i32;
    let mut ring = match AsyncContext::new_ring_api(true) {
        Ok(ring) => ring,
        Err(e) => libuser::skip!("no Ring API in this kernel ({e})"),
    };
    let o = SCRATCH.0 + 256 * BLOCK as u64;
    for i in 0..32u64 {
        let at = o + i * BLOCK as u64;
        ring.submit(AsyncOp::write(fdi, pattern_buf(17, at, BLOCK), at, i))?;
    }
    for _ in 0..32 {
        let c = ring.wait_completion()?;
        expect_ok(&c, BLOCK as i32, "a Ring API write")?;
    }
    for i in 0..32u64 {
        ring.submit(AsyncOp::read(fdi, vec![0; BLOCK], o + i * BLOCK as u64, i))?;
    }
    for _ in 0..32 {
        let mut c = ring.wait_completion()?;
        expect_ok(&c, BLOCK as i32, "a Ring API read")?;
        let at = o + c.user_data * BLOCK as u64;
        let buf = c.take_buffer().unwrap_or_default();
        check!(
            disk_test::mismatch(17, at, &buf).is_none(),
            "Ring API data at {at:#x}"
        );
    }
    drop(ring);
    sys::close(fd)?;
    Ok(())
}

fn direct(dev: &str) -> TestResult {
    let (fd, size) = open(dev)?;
    let o = SCRATCH.0 + 512 * BLOCK as u64;
    check_eq!(sys::lseek(fd, o as i64, abi::seek::SEEK_SET)?, o);
    let data = pattern_buf(19, o, 2 * BLOCK);
    check_eq!(sys::write(fd, &data)?, 2 * BLOCK);
    check_eq!(
        sys::lseek(fd, 0, abi::seek::SEEK_CUR)?,
        o + 2 * BLOCK as u64
    );
    sys::lseek(fd, o as i64, abi::seek::SEEK_SET)?;
    let mut back = vec![0u8; 2 * BLOCK];
    check_eq!(sys::read(fd, &mut back)?, 2 * BLOCK);
    check!(back == data, "read(2) got what write(2) wrote");
    check_eq!(sys::lseek(fd, 0, abi::seek::SEEK_END)?, size);
    eq(sys::read(fd, &mut back)?, 0, "read at the end")?;
    sys::close(fd)?;
    Ok(())
}

/// Reads address 0: the kernel kills the process with a page fault.
#[allow(unsafe_code)] // the point: a process killed with I/O in flight
fn crash() -> ! {
    // SAFETY: none is needed for what follows: the read faults and the
    // process ends there.
    let byte = unsafe { core::ptr::read_volatile(core::ptr::null::<u8>()) };
    sys::exit(i32::from(byte))
}

fn child_inflight(dev: &str, crash_after: bool) -> i32 {
    let Ok(fd) = sys::open(dev, O_RDWR) else {
        return 2;
    };
    let Ok(mut ring) = AsyncContext::with_entries(64) else {
        return 3;
    };
    for i in 0..64u64 {
        let at = KILLED.0 + i * BLOCK as u64;
        let op = AsyncOp::write(fd as i32, pattern_buf(SEED_KILLED, at, BLOCK), at, i);
        if ring.submit(op).is_err() {
            return 4;
        }
    }
    if ring.flush().is_err() {
        return 5;
    }
    // End at once: the kernel must keep the buffers until the device is
    // done with them, and lose none of the writes.
    if crash_after {
        crash();
    }
    sys::exit(0)
}

fn killed_child(dev: &str, crash: bool) -> TestResult {
    let before = libuser::test::settle()?;
    let arg = format!("dev={dev}");
    let how = if crash { "crash" } else { "exit" };
    let argv = ["blk_tests", "child-inflight", arg.as_str(), how];
    let pid = libuser::process::spawn("blk_tests", &argv)?;
    let status = libuser::process::wait(pid)?;
    // A page fault (vector 14) ends a process with KILLED_BASE + 14.
    let want = if crash {
        abi::status::KILLED_BASE + 14
    } else {
        0
    };
    eq(status, want, "the child's exit status")?;
    let (fd, _) = open(dev)?;
    let mut buf = vec![0u8; (KILLED.1 - KILLED.0) as usize];
    eq(
        pread(fd, &mut buf, KILLED.0),
        Ok(buf.len()),
        "reading the child's region back",
    )?;
    if let Some(at) = disk_test::mismatch(SEED_KILLED, KILLED.0, &buf) {
        fail!("byte {at:#x} of the killed child's writes is wrong");
    }
    sys::close(fd)?;
    let after = libuser::test::settle()?;
    detail!(
        "free frames before {} after {}",
        before.free_frames,
        after.free_frames
    );
    check!(
        after.free_frames + 8 >= before.free_frames,
        "frames leaked: {} before, {} after",
        before.free_frames,
        after.free_frames
    );
    Ok(())
}

fn final_region(dev: &str) -> TestResult {
    let (fd, _) = open(dev)?;
    let fdi = fd as i32;
    let mut ring = AsyncContext::with_entries(64)?;
    let blocks = ((FINAL.1 - FINAL.0) / BLOCK as u64) as usize;
    // A shuffled order, 64 in flight.
    let mut order: Vec<u64> = (0..blocks as u64).collect();
    let mut state = 42u64;
    for i in (1..order.len()).rev() {
        let j = (disk_test::splitmix64(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut next = 0;
    let mut done = 0;
    while done < blocks {
        while ring.in_flight() < 64 && next < blocks {
            let at = FINAL.0 + order[next] * BLOCK as u64;
            ring.submit(AsyncOp::write(
                fdi,
                pattern_buf(SEED_FINAL, at, BLOCK),
                at,
                next as u64,
            ))?;
            next += 1;
        }
        ring.flush()?;
        let c = ring.wait_completion()?;
        expect_ok(&c, BLOCK as i32, "a final write")?;
        done += 1;
    }
    sys::fsync(fd)?;
    // Read back in pieces (the user heap is small).
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = FINAL.0;
    while at < FINAL.1 {
        eq(
            pread(fd, &mut buf, at),
            Ok(buf.len()),
            "reading the final region back",
        )?;
        if let Some(bad) = disk_test::mismatch(SEED_FINAL, at, &buf) {
            fail!("final region: byte {bad:#x} differs");
        }
        at += buf.len() as u64;
    }
    detail!(
        "{} KiB written in shuffled order and flushed",
        (FINAL.1 - FINAL.0) / 1024
    );
    sys::close(fd)?;
    Ok(())
}
