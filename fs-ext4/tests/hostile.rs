//! Corrupt images must give errors, never panics.
//!
//! The kernel runs with `panic = abort`, so a panic inside rsext4 on a
//! hostile disk would stop the machine. This test takes images made by
//! mkfs.ext4 and populated through the adapter, flips seeded random bytes
//! in one metadata region per seed (superblock, group descriptors, inode
//! table, inodes' extent trees, directory blocks, the journal), then mounts
//! and runs a fixed sequence of operations under `catch_unwind`, counting
//! panics with their locations. Half of the images are made without
//! `metadata_csum`, as an attacker would, so that corruption reaches the
//! parsers instead of stopping at a checksum.
//!
//! `FS_EXT4_FUZZ_SEEDS` sets the number of seeds per image (default 150);
//! `FS_EXT4_FUZZ_REPORT=1` prints the layouts and the errors met;
//! `FS_EXT4_FUZZ_STACK_KIB` the stack of the thread that runs it (default
//! 2048; a stack overflow aborts the test process).

mod common;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use fs_ext4::{Ext4Fs, FileType, MemDisk};

/// Where the regions to corrupt lie in one image.
#[derive(Debug, Clone)]
struct Layout {
    block_size: usize,
    /// Byte ranges: (name, start, len).
    regions: Vec<(&'static str, usize, usize)>,
}

fn le16(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}
fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// The first data block of inode `ino`'s extent tree (depth 0 only).
fn first_extent_block(img: &[u8], inode_at: usize) -> Option<usize> {
    let iblock = inode_at + 0x28;
    if le16(img, iblock) != 0xF30A || le16(img, iblock + 2) == 0 {
        return None;
    }
    let e = iblock + 12;
    Some((le16(img, e + 6) << 32) | le32(img, e + 8))
}

fn layout(img: &[u8], big_dir: usize) -> Layout {
    let sb = 1024;
    let block_size = 1024usize << le32(img, sb + 0x18);
    let first_data_block = le32(img, sb + 0x14);
    let incompat = le32(img, sb + 0x60);
    let desc_size = if incompat & 0x80 != 0 {
        le16(img, sb + 0xFE)
    } else {
        32
    };
    let inode_size = le16(img, sb + 0x58);
    let gdt = (first_data_block + 1) * block_size;
    let itable_lo = le32(img, gdt + 8);
    let itable_hi = if desc_size >= 64 {
        le32(img, gdt + 0x28)
    } else {
        0
    };
    let itable = ((itable_hi << 32) | itable_lo) * block_size;
    let inode = |n: usize| itable + (n - 1) * inode_size;
    let block_bitmap = le32(img, gdt) * block_size;
    let inode_bitmap = le32(img, gdt + 4) * block_size;
    let mut regions = vec![
        ("block bitmap", block_bitmap, block_size),
        ("inode bitmap", inode_bitmap, block_size),
        ("anywhere in the first 2 MiB", 0, 2 << 20),
        ("superblock", sb, 1024),
        ("group descriptors", gdt, desc_size * 4),
        ("inode table", itable, inode_size * 16),
        ("root and file inodes' extent trees", inode(2) + 0x28, 60),
        (
            "file inodes' extent trees",
            inode(12) + 0x28,
            inode_size * 4,
        ),
    ];
    if let Some(b) = first_extent_block(img, inode(2)) {
        regions.push(("root directory block", b * block_size, block_size));
    }
    if let Some(b) = first_extent_block(img, inode(12)) {
        regions.push(("first directory block", b * block_size, block_size));
    }
    // The large directory: its inode, its extent tree or index root, and
    // its blocks (an index block when rsext4 made it an HTree).
    regions.push(("large directory inode", inode(big_dir), inode_size));
    if let Some(b) = first_extent_block(img, inode(big_dir)) {
        regions.push(("large directory blocks", b * block_size, block_size * 4));
    }
    if let Some(b) = first_extent_block(img, inode(8)) {
        // Journal superblock and the first log blocks.
        regions.push(("journal", b * block_size, block_size * 8));
    }
    Layout {
        block_size,
        regions,
    }
}

/// A populated image: directories, small and large files; when
/// `needs_recovery`, the last changes are only in the journal (fsync, then
/// a power cut), so mounting replays it.
fn populated(dir: &std::path::Path, args: &[&str], needs_recovery: bool) -> (Vec<u8>, usize) {
    let img = mkfs_with(dir, 16, args);
    let mut disk = disk(&img, 512);
    let big_dir;
    {
        let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
        let d = fs.mkdir(b"/d", 0o755).unwrap(); // inode 12
        for i in 0..20 {
            let f = fs.create_at(d, format!("f{i}").as_bytes(), 0o644).unwrap();
            fs.write_at(f, 0, &pattern(i, 100 + 3000 * i as usize))
                .unwrap();
        }
        let big = fs.create(b"/big", 0o644).unwrap();
        // Interleaved appends to fragment it into several extents.
        let other = fs.create(b"/other", 0o644).unwrap();
        for i in 0..40 {
            fs.append(big, &pattern(100 + i, 5000)).unwrap();
            fs.append(other, &pattern(200 + i, 3000)).unwrap();
        }
        fs.mkdir(b"/d/sub", 0o755).unwrap();
        let many = fs.mkdir(b"/many", 0o755).unwrap();
        for i in 0..300 {
            let name = format!("a-rather-long-file-name-to-fill-blocks-{i:04}");
            fs.create_at(many, name.as_bytes(), 0o644).unwrap();
        }
        big_dir = many as usize;
        fs.unmount().unwrap();
    }
    if needs_recovery {
        let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
        let f = fs.create(b"/d/journaled", 0o644).unwrap();
        fs.write_at(f, 0, &pattern(999, 20_000)).unwrap();
        fs.rename(b"/other", b"/d/moved").unwrap();
        fs.fsync().unwrap();
        drop(fs);
        disk.crash();
    }
    (disk.image().to_vec(), big_dir)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn corrupt(img: &mut [u8], layout: &Layout, seed: u64) -> &'static str {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (name, start, len) = layout.regions[seed as usize % layout.regions.len()];
    let flips = 1 + rng.below(12);
    for _ in 0..flips {
        let at = start + rng.below(len);
        if at < img.len() {
            match rng.below(3) {
                0 => img[at] ^= 1 << rng.below(8),
                1 => img[at] = rng.next() as u8,
                _ => img[at] = [0, 0xFF, 0x7F, 0x80][rng.below(4)],
            }
        }
    }
    name
}

/// Everything a program might do on a mounted disk; every error is fine.
fn exercise(disk: &mut MemDisk, errors: &mut BTreeMap<String, u32>) {
    let mut note = |what: &str, e: abi::errno::Errno| {
        *errors.entry(format!("{what}: {e:?}")).or_default() += 1;
    };
    let mut fs = match Ext4Fs::mount(&mut *disk, now) {
        Ok(fs) => fs,
        Err(e) => {
            note("mount", e);
            return;
        }
    };
    let root = fs.root();
    let _ = fs.stat(root);
    let mut dirs = vec![(root, 0)];
    let mut files = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while let Some((d, depth)) = dirs.pop() {
        match fs.read_dir_all(d) {
            Ok(entries) => {
                for e in entries.into_iter().take(64) {
                    if e.name == b"." || e.name == b".." {
                        continue;
                    }
                    let ino = match fs.lookup_at(d, &e.name) {
                        Ok(i) => i,
                        Err(err) => {
                            note("lookup", err);
                            continue;
                        }
                    };
                    match fs.stat(ino) {
                        Ok(st) if st.kind == FileType::Directory && depth < 3 => {
                            dirs.push((ino, depth + 1))
                        }
                        Ok(st) if st.kind == FileType::Regular => files.push((ino, st.size)),
                        Ok(_) => {}
                        Err(err) => note("stat", err),
                    }
                }
            }
            Err(e) => note("readdir", e),
        }
    }
    for &(f, size) in files.iter().take(32) {
        let mut off = 0;
        while off < size.min(512 * 1024) {
            match fs.read_at(f, off, &mut buf) {
                Ok(0) => break,
                Ok(n) => off += n as u64,
                Err(e) => {
                    note("read", e);
                    break;
                }
            }
        }
    }
    let r = (|| -> Result<(), abi::errno::Errno> {
        let n = fs.create(b"/new", 0o644)?;
        fs.write_at(n, 0, &pattern(5, 30_000))?;
        fs.append(n, &pattern(6, 10_000))?;
        fs.mkdir(b"/newdir", 0o755)?;
        fs.rename(b"/new", b"/newdir/renamed")?;
        Ok(())
    })();
    if let Err(e) = r {
        note("create/write", e);
    }
    if let Some(&(f, size)) = files.first() {
        if let Err(e) = fs.truncate(f, size / 2) {
            note("truncate", e);
        }
        if let Err(e) = fs.write_at(f, size / 3, &pattern(8, 9000)) {
            note("overwrite", e);
        }
    }
    for i in 0..20 {
        if let Err(e) = fs.create(format!("/many/added-{i}").as_bytes(), 0o644) {
            note("create in large directory", e);
            break;
        }
    }
    if let Err(e) = fs.lookup(b"/many/a-rather-long-file-name-to-fill-blocks-0250") {
        note("lookup in large directory", e);
    }
    for path in [
        &b"/big"[..],
        b"/d/f3",
        b"/d/sub",
        b"/many/a-rather-long-file-name-to-fill-blocks-0100",
    ] {
        let r = if path == b"/d/sub" {
            fs.rmdir(path)
        } else {
            fs.unlink(path)
        };
        if let Err(e) = r {
            note("unlink", e);
        }
    }
    if let Err(e) = fs.fsync() {
        note("fsync", e);
    }
    if let Err(e) = fs.unmount() {
        note("unmount", e);
    }
    drop(fs);
    // Mount what we left behind once more.
    match Ext4Fs::mount(&mut *disk, now) {
        Ok(mut fs) => {
            if let Err(e) = fs.read_dir_all(fs.root()) {
                note("remount readdir", e);
            }
            let _ = fs.unmount();
        }
        Err(e) => note("remount", e),
    }
}

#[derive(Default)]
struct Stats {
    runs: u32,
    panics: BTreeMap<String, Vec<(String, u64)>>,
    errors: BTreeMap<String, u32>,
    by_region: BTreeMap<&'static str, (u32, u32)>,
}

fn fuzz(
    label: &str,
    (base, big_dir): (Vec<u8>, usize),
    seeds: u64,
    stats: &mut Stats,
    last_panic: &Arc<Mutex<Option<String>>>,
) {
    let layout = layout(&base, big_dir);
    if std::env::var("FS_EXT4_FUZZ_REPORT").is_ok() {
        println!("{label}: {layout:?}");
    }
    assert!(layout.block_size >= 1024);
    for seed in 0..seeds {
        let mut img = base.clone();
        let region = corrupt(&mut img, &layout, seed);
        let mut disk = MemDisk::new(img, 512).unwrap();
        let mut errors = BTreeMap::new();
        *last_panic.lock().unwrap() = None;
        let result = catch_unwind(AssertUnwindSafe(|| exercise(&mut disk, &mut errors)));
        stats.runs += 1;
        let entry = stats.by_region.entry(region).or_default();
        entry.0 += 1;
        if result.is_err() {
            entry.1 += 1;
            let site = last_panic
                .lock()
                .unwrap()
                .take()
                .unwrap_or_else(|| "unknown".into());
            stats
                .panics
                .entry(site)
                .or_default()
                .push((format!("{label}/{region}"), seed));
        }
        for (k, v) in errors {
            *stats.errors.entry(k).or_default() += v;
        }
    }
}

#[test]
fn corrupt_images_never_panic() {
    if !have_tools() {
        return;
    }
    let seeds: u64 = std::env::var("FS_EXT4_FUZZ_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let report = std::env::var("FS_EXT4_FUZZ_REPORT").is_ok();
    let dir = scratch("hostile");

    let last_panic: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let hook_slot = last_panic.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A panic on the fuzz thread is data; print it only when asked.
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *hook_slot.lock().unwrap() = Some(format!("{loc}: {msg}"));
    }));

    // The harness sees a panic when there is one.
    assert!(catch_unwind(|| panic!("canary")).is_err());
    let canary = last_panic.lock().unwrap().take().unwrap_or_default();
    assert!(
        canary.contains("hostile.rs") && canary.contains("canary"),
        "{canary}"
    );

    let images = [
        ("csum", populated(&dir, &[], false)),
        ("csum+recovery", populated(&dir, &[], true)),
        ("nocsum", populated(&dir, &["-O", "^metadata_csum"], false)),
        (
            "nocsum+recovery",
            populated(&dir, &["-O", "^metadata_csum"], true),
        ),
    ];
    // Run on another thread so that a hang is reported, not waited for.
    let (tx, rx) = mpsc::channel();
    let lp = last_panic.clone();
    let stack_kib: usize = std::env::var("FS_EXT4_FUZZ_STACK_KIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2048);
    let worker = std::thread::Builder::new().stack_size(stack_kib * 1024);
    let _ = worker.spawn(move || {
        let mut stats = Stats::default();
        for (label, img) in images {
            fuzz(label, img, seeds, &mut stats, &lp);
        }
        let _ = tx.send(stats);
    });
    let stats = rx
        .recv_timeout(Duration::from_secs(60 + seeds * 4))
        .expect("the fuzz run hung (an infinite loop on a corrupt image?)");
    let _ = std::panic::take_hook();
    std::panic::set_hook(default_hook);

    let total: usize = stats.panics.values().map(Vec::len).sum();
    println!(
        "hostile images: {} runs, {} panics at {} sites",
        stats.runs,
        total,
        stats.panics.len()
    );
    for (region, (runs, panics)) in &stats.by_region {
        println!("  {region}: {runs} runs, {panics} panics");
    }
    for (site, seeds) in &stats.panics {
        println!(
            "  PANIC {} x{}: {:?}",
            site,
            seeds.len(),
            &seeds[..seeds.len().min(4)]
        );
    }
    if report {
        for (e, n) in &stats.errors {
            println!("  error {e}: {n}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
    assert_eq!(total, 0, "corrupt images panicked rsext4 (sites above)");
}
