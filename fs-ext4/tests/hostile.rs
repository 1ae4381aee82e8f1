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
//! Then single fields (superblock, group descriptors, inodes and their
//! extent headers, the journal superblock and first log block) are set to
//! extreme values one at a time.
//!
//! `FS_EXT4_FUZZ_FULL=1` runs the long version (1000 seeds per image, ten
//! values per field on two images; a few minutes); by default 60 seeds
//! and four values on one image keep `cargo test` short.
//! `FS_EXT4_FUZZ_SEEDS` sets the number of seeds per image;
//! `FS_EXT4_FUZZ_REPORT=1` prints the layouts and the errors met;
//! `FS_EXT4_FUZZ_STACK_KIB` the stack of the thread that runs it (default
//! 2048; a stack overflow aborts the test process).

mod common;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Single fields: (name, offset, width in bytes, big-endian).
    fields: Vec<(String, usize, usize, bool)>,
}

/// A populated image, its large directory's and its large file's inodes.
type Image = (Vec<u8>, usize, usize);

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

fn layout(img: &[u8], big_dir: usize, big_file: usize) -> Layout {
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
    let journal = first_extent_block(img, inode(8));
    if let Some(b) = journal {
        // Journal superblock and the first log blocks.
        regions.push(("journal", b * block_size, block_size * 8));
    }
    let mut fields = Vec::new();
    let sb_fields: [(&str, usize, usize); 27] = [
        ("s_inodes_count", 0x0, 4),
        ("s_blocks_count_lo", 0x4, 4),
        ("s_r_blocks_count_lo", 0x8, 4),
        ("s_free_blocks_count_lo", 0xC, 4),
        ("s_free_inodes_count", 0x10, 4),
        ("s_first_data_block", 0x14, 4),
        ("s_log_block_size", 0x18, 4),
        ("s_log_cluster_size", 0x1C, 4),
        ("s_blocks_per_group", 0x20, 4),
        ("s_clusters_per_group", 0x24, 4),
        ("s_inodes_per_group", 0x28, 4),
        ("s_state", 0x3A, 2),
        ("s_rev_level", 0x4C, 4),
        ("s_first_ino", 0x54, 4),
        ("s_inode_size", 0x58, 2),
        ("s_feature_compat", 0x5C, 4),
        ("s_reserved_gdt_blocks", 0xCE, 2),
        ("s_journal_inum", 0xE0, 4),
        ("s_last_orphan", 0xE8, 4),
        ("s_def_hash_version", 0xFC, 1),
        ("s_desc_size", 0xFE, 2),
        ("s_first_meta_bg", 0x104, 4),
        ("s_blocks_count_hi", 0x150, 4),
        ("s_min_extra_isize", 0x15C, 2),
        ("s_want_extra_isize", 0x15E, 2),
        ("s_log_groups_per_flex", 0x174, 1),
        ("s_mmp_block", 0x168, 4),
    ];
    for (n, at, w) in sb_fields {
        fields.push((n.to_string(), sb + at, w, false));
    }
    for g in 0..2 {
        for (n, at, w) in [
            ("bg_block_bitmap", 0x0, 4),
            ("bg_inode_bitmap", 0x4, 4),
            ("bg_inode_table", 0x8, 4),
            ("bg_free_blocks_count", 0xC, 2),
            ("bg_free_inodes_count", 0xE, 2),
            ("bg_used_dirs_count", 0x10, 2),
            ("bg_flags", 0x12, 2),
            ("bg_itable_unused", 0x1C, 2),
            ("bg_block_bitmap_hi", 0x20, 4),
            ("bg_inode_table_hi", 0x28, 4),
        ] {
            if at < desc_size {
                fields.push((format!("group {g} {n}"), gdt + g * desc_size + at, w, false));
            }
        }
    }
    for (who, n) in [
        ("root", 2),
        ("journal", 8),
        ("/d", 12),
        ("large dir", big_dir),
        ("large file", big_file),
    ] {
        for (f, at, w) in [
            ("i_mode", 0x0, 2),
            ("i_size_lo", 0x4, 4),
            ("i_links_count", 0x1A, 2),
            ("i_blocks_lo", 0x1C, 4),
            ("i_flags", 0x20, 4),
            ("eh_magic", 0x28, 2),
            ("eh_entries", 0x2A, 2),
            ("eh_max", 0x2C, 2),
            ("eh_depth", 0x2E, 2),
            ("ee_block", 0x34, 4),
            ("ee_len", 0x38, 2),
            ("ee_start_hi", 0x3A, 2),
            ("ee_start_lo", 0x3C, 4),
            ("second ee_block", 0x40, 4),
            ("second ee_len", 0x44, 2),
            ("second ee_start_lo", 0x48, 4),
            ("i_size_high", 0x6C, 4),
            ("i_extra_isize", 0x80, 2),
        ] {
            fields.push((format!("{who} inode {f}"), inode(n) + at, w, false));
        }
    }
    if let Some(b) = journal {
        let j = b * block_size;
        for (n, at) in [
            ("j magic", 0x0),
            ("j blocktype", 0x4),
            ("j s_blocksize", 0xC),
            ("j s_maxlen", 0x10),
            ("j s_first", 0x14),
            ("j s_sequence", 0x18),
            ("j s_start", 0x1C),
            ("j s_errno", 0x20),
            ("j s_feature_compat", 0x24),
            ("j s_feature_incompat", 0x28),
            ("j s_nr_users", 0x40),
            ("j s_max_transaction", 0x48),
        ] {
            fields.push((n.to_string(), j + at, 4, true));
        }
        // The first log block's header, tags and commit (if any).
        for at in (0..64).step_by(4) {
            fields.push((
                format!("log block 1 word {at:#x}"),
                j + block_size + at,
                4,
                true,
            ));
        }
    }
    Layout {
        block_size,
        regions,
        fields,
    }
}

/// A populated image: directories, small and large files; when
/// `needs_recovery`, the last changes are only in the journal (fsync, then
/// a power cut), so mounting replays it.
fn populated(dir: &std::path::Path, args: &[&str], needs_recovery: bool) -> Image {
    let img = mkfs_with(dir, 16, args);
    let mut disk = disk(&img, 512);
    let (big_dir, big_file);
    {
        let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
        let d = fs.mkdir(b"/d", 0o755).unwrap(); // inode 12
        for i in 0..20 {
            let f = fs.create_at(d, format!("f{i}").as_bytes(), 0o644).unwrap();
            fs.write_at(f, 0, &pattern(i, 100 + 3000 * i as usize))
                .unwrap();
        }
        let big = fs.create(b"/big", 0o644).unwrap();
        big_file = big as usize;
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
    (disk.image().to_vec(), big_dir, big_file)
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

fn full() -> bool {
    std::env::var("FS_EXT4_FUZZ_FULL").is_ok()
}

/// Counts the largest single allocation made while `TRACK` is set: rsext4
/// allocates infallibly, so a hostile size that reaches an allocation
/// would stop the kernel (out of memory), and `catch_unwind` cannot see it.
struct Tracking;

static TRACK: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping only reads the layout.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        if TRACK.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

#[derive(Default)]
struct Stats {
    runs: u32,
    panics: BTreeMap<String, Vec<String>>,
    errors: BTreeMap<String, u32>,
    by_region: BTreeMap<&'static str, (u32, u32)>,
}

fn fuzz(
    label: &str,
    (base, big_dir, big_file): &Image,
    seeds: u64,
    stats: &mut Stats,
    last_panic: &Arc<Mutex<Option<String>>>,
) {
    let layout = layout(base, *big_dir, *big_file);
    if std::env::var("FS_EXT4_FUZZ_REPORT").is_ok() {
        println!("{label}: {layout:?}");
    }
    assert!(layout.block_size >= 1024);
    for seed in 0..seeds {
        let mut img = base.clone();
        let region = corrupt(&mut img, &layout, seed);
        run_one(
            img,
            region,
            &format!("{label}/{region}/seed {seed}"),
            stats,
            last_panic,
        );
    }
}

/// Mounts `img`, runs [`exercise`] on it and records the outcome.
fn run_one(
    img: Vec<u8>,
    region: &'static str,
    what: &str,
    stats: &mut Stats,
    last_panic: &Arc<Mutex<Option<String>>>,
) {
    let mut disk = MemDisk::new(img, 512).unwrap();
    let mut errors = BTreeMap::new();
    *last_panic.lock().unwrap() = None;
    TRACK.store(true, Ordering::Relaxed);
    let result = catch_unwind(AssertUnwindSafe(|| exercise(&mut disk, &mut errors)));
    TRACK.store(false, Ordering::Relaxed);
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
        stats.panics.entry(site).or_default().push(what.to_string());
    }
    for (k, v) in errors {
        *stats.errors.entry(k).or_default() += v;
    }
}

/// Every listed field set to each of a few extreme values, one at a time.
fn fuzz_fields(
    label: &str,
    (base, big_dir, big_file): &Image,
    stats: &mut Stats,
    last_panic: &Arc<Mutex<Option<String>>>,
) {
    let layout = layout(base, *big_dir, *big_file);
    for (name, at, width, be) in &layout.fields {
        let (at, width) = (*at, *width);
        let read = |img: &[u8]| -> u64 {
            let mut v = 0u64;
            for i in 0..width {
                let byte = u64::from(img[at + i]);
                v |= if *be {
                    byte << (8 * (width - 1 - i))
                } else {
                    byte << (8 * i)
                };
            }
            v
        };
        let orig = read(base);
        let max = if width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width)) - 1
        };
        let all = [
            0,
            max,
            max / 2 + 1,
            orig.wrapping_add(1) & max,
            1,
            2,
            max / 2,
            orig.wrapping_sub(1) & max,
            (orig << 1) & max,
            (orig << 8) & max,
        ];
        let values = if full() { &all[..] } else { &all[..4] };
        for &v in values {
            if v == orig {
                continue;
            }
            let mut img = base.clone();
            for i in 0..width {
                let shift = if *be { 8 * (width - 1 - i) } else { 8 * i };
                img[at + i] = (v >> shift) as u8;
            }
            run_one(
                img,
                "single fields at extreme values",
                &format!("{label}/{name}={v:#x}"),
                stats,
                last_panic,
            );
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
        .unwrap_or(if full() { 1000 } else { 60 });
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
        for (label, img) in &images {
            fuzz(label, img, seeds, &mut stats, &lp);
        }
        let field_images = if full() { &images[2..] } else { &images[2..3] };
        for (label, img) in field_images {
            fuzz_fields(label, img, &mut stats, &lp);
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
    println!(
        "  largest single allocation during the runs: {} bytes",
        LARGEST.load(Ordering::Relaxed)
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
