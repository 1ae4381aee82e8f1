//! Images made and checked by e2fsprogs, for the host tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use fs_ext4::MemDisk;

/// Whether e2fsprogs is installed; the tests that need it say so and pass
/// when it is not (it is on the project's machines).
pub fn have_tools() -> bool {
    let ok = ["mkfs.ext4", "e2fsck", "debugfs"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .output()
            .map(|_| true)
            .unwrap_or(false)
    });
    if !ok {
        eprintln!("SKIPPED: e2fsprogs (mkfs.ext4, e2fsck, debugfs) is not installed");
    }
    ok
}

/// A fresh directory for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fs-ext4-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `size_mb` MiB image made the way the Linux anchor makes it.
pub fn mkfs(dir: &Path, size_mb: u64) -> PathBuf {
    mkfs_with(dir, size_mb, &[])
}

/// [`mkfs`] with more `mkfs.ext4` arguments.
pub fn mkfs_with(dir: &Path, size_mb: u64, args: &[&str]) -> PathBuf {
    let img = dir.join("disk.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(size_mb << 20).unwrap();
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .args(args)
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.ext4: {out:?}");
    img
}

pub fn disk(img: &Path, block_size: u32) -> MemDisk {
    MemDisk::new(std::fs::read(img).unwrap(), block_size).unwrap()
}

/// Runs `e2fsck -fn` on `bytes`; returns (clean, output).
pub fn e2fsck(dir: &Path, bytes: &[u8]) -> (bool, String) {
    let img = dir.join("check.img");
    std::fs::write(&img, bytes).unwrap();
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code() == Some(0), text)
}

pub fn assert_clean(dir: &Path, bytes: &[u8]) {
    let (clean, text) = e2fsck(dir, bytes);
    assert!(clean, "e2fsck -fn reports problems:\n{text}");
}

/// `debugfs -R "cat PATH"` on `bytes`.
pub fn debugfs_cat(dir: &Path, bytes: &[u8], path: &str) -> Vec<u8> {
    let img = dir.join("cat.img");
    std::fs::write(&img, bytes).unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "debugfs: {out:?}");
    out.stdout
}

/// `debugfs -R "ls -l PATH"`, as text.
pub fn debugfs_ls(dir: &Path, bytes: &[u8], path: &str) -> String {
    let img = dir.join("ls.img");
    std::fs::write(&img, bytes).unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("ls {path}"))
        .arg(&img)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn now() -> i64 {
    1_800_000_000
}

/// A deterministic pattern, different per `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
