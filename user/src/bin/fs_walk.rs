//! `fs_walk`: walks every disk mount (`/disk`, `/disk1`, ... until one is
//! missing), lists every directory, stats and reads every file, then tries
//! to create, write, fsync and remove a file on each; prints what failed
//! and how. Used on damaged images (`configs/fs-hostile.toml`): any errno
//! is an acceptable answer, a kernel panic or a hang is not. It passes
//! when it gets to the end (`1 passed, 0 failed`), and prints the counts
//! so a run that met no damage at all is visible in the log.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use abi::open_flags::{O_CREAT, O_DIRECTORY, O_RDONLY, O_RDWR};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use libuser::{println, sys, Args, Errno};

libuser::entry!(main);

/// Directories deeper than this are not entered (a damaged tree may loop).
const DEPTH_MAX: usize = 8;
/// Entries looked at per mount at most.
const ENTRIES_MAX: usize = 2000;

#[derive(Default)]
struct Counts {
    dirs: u32,
    files: u32,
    bytes: u64,
    errors: u32,
    entries: usize,
}

impl Counts {
    fn error(&mut self, what: &str, path: &str, e: Errno) {
        self.errors += 1;
        if self.errors <= 20 {
            println!("  {what} {path}: {e}");
        }
    }
}

fn main(_args: Args) -> i32 {
    let mut mounts = 0;
    for n in 0..8 {
        let root = if n == 0 {
            String::from("/disk")
        } else {
            format!("/disk{n}")
        };
        if sys::stat(&root).is_err() {
            if n == 0 {
                println!("fs_walk: no /disk (no disk file system was mounted)");
            }
            break;
        }
        mounts += 1;
        let mut c = Counts::default();
        walk(&root, 0, &mut c);
        try_write(&root, &mut c);
        println!(
            "fs_walk {root}: {} directories, {} files, {} bytes read, {} errors",
            c.dirs, c.files, c.bytes, c.errors
        );
    }
    println!("fs_walk: {mounts} mounts walked");
    println!("1 passed, 0 failed");
    0
}

fn walk(dir: &str, depth: usize, c: &mut Counts) {
    if depth > DEPTH_MAX || c.entries > ENTRIES_MAX {
        return;
    }
    c.dirs += 1;
    let fd = match sys::open(dir, O_RDONLY | O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return c.error("open dir", dir, e),
    };
    let mut children: Vec<(String, u8)> = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match sys::getdents(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                c.error("getdents", dir, e);
                break;
            }
        };
        let mut at = 0;
        let head = core::mem::size_of::<abi::Dirent>();
        while at + head <= n {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            let name_len = u16::from_ne_bytes([buf[at + 18], buf[at + 19]]) as usize;
            let kind = buf[at + 20];
            if reclen < head || at + head + name_len > n {
                c.error("getdents record", dir, abi::errno::EINVAL);
                break;
            }
            let name = String::from_utf8_lossy(&buf[at + head..at + head + name_len]).into_owned();
            children.push((name, kind));
            c.entries += 1;
            at += reclen;
        }
        if c.entries > ENTRIES_MAX {
            break;
        }
    }
    let _ = sys::close(fd);
    for (name, kind) in children {
        let path = format!("{dir}/{name}");
        if let Err(e) = sys::stat(&path) {
            c.error("stat", &path, e);
        }
        if kind == abi::file_kind::DIRECTORY {
            walk(&path, depth + 1, c);
        } else {
            read_all(&path, c);
        }
    }
}

fn read_all(path: &str, c: &mut Counts) {
    c.files += 1;
    let fd = match sys::open(path, O_RDONLY) {
        Ok(fd) => fd,
        Err(e) => return c.error("open", path, e),
    };
    let mut buf = vec![0u8; 16384];
    let mut total = 0u64;
    loop {
        match sys::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => {
                c.error("read", path, e);
                break;
            }
        }
        if total > 64 << 20 {
            break;
        }
    }
    c.bytes += total;
    let _ = sys::close(fd);
}

fn try_write(root: &str, c: &mut Counts) {
    let path = format!("{root}/fs_walk.tmp");
    let fd = match sys::open(&path, O_CREAT | O_RDWR) {
        Ok(fd) => fd,
        Err(e) => return c.error("create", &path, e),
    };
    let data = vec![0x5au8; 20_000];
    if let Err(e) = sys::write_all(fd, &data) {
        c.error("write", &path, e);
    }
    if let Err(e) = sys::fsync(fd) {
        c.error("fsync", &path, e);
    }
    let _ = sys::close(fd);
    if let Err(e) = sys::unlink(&path) {
        c.error("unlink", &path, e);
    }
}
