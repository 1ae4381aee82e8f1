//! How much stack the file system needs. Measured (December 2026, rsext4
//! 0.9.2): this workload overflows 40 KiB and fits in 48 KiB in a release
//! build (`cargo test --release`), and needs 112..128 KiB in a debug build.
//! The kernel's threads have 32 KiB (`kernel/src/arch/x86_64/context.rs`
//! `KERNEL_STACK_SIZE`): too little; the thread that runs the file system
//! needs 64 KiB or more. `FS_EXT4_STACK_KIB` overrides the size tried.

mod common;

use common::*;
use fs_ext4::Ext4Fs;

fn workload(img: Vec<u8>) {
    let mut disk = fs_ext4::MemDisk::new(img, 512).unwrap();
    let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
    let d = fs.mkdir(b"/d", 0o755).unwrap();
    for i in 0..50 {
        let f = fs
            .create_at(d, format!("file-{i}").as_bytes(), 0o644)
            .unwrap();
        fs.write_at(f, 0, &pattern(i, 20_000)).unwrap();
    }
    let mut buf = vec![0u8; 8192];
    let f = fs.lookup(b"/d/file-7").unwrap();
    fs.read_at(f, 100, &mut buf).unwrap();
    fs.rename(b"/d/file-1", b"/moved").unwrap();
    fs.unlink(b"/d/file-2").unwrap();
    fs.truncate(f, 10).unwrap();
    assert_eq!(fs.read_dir_all(d).unwrap().len(), 50);
    fs.fsync().unwrap();
    fs.unmount().unwrap();
    drop(fs);
    // Journal replay.
    let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
    let f = fs.create(b"/j", 0o644).unwrap();
    fs.write_at(f, 0, &pattern(1, 5000)).unwrap();
    fs.fsync().unwrap();
    drop(fs);
    disk.crash();
    let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
    fs.lookup(b"/j").unwrap();
    fs.unmount().unwrap();
}

fn run_with_stack(kib: usize) {
    if !have_tools() {
        return;
    }
    let dir = scratch(&format!("stack{kib}"));
    let img = std::fs::read(mkfs(&dir, 16)).unwrap();
    std::thread::Builder::new()
        .stack_size(kib * 1024)
        .spawn(move || workload(img))
        .unwrap()
        .join()
        .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn runs_in_a_kernel_sized_stack() {
    let kib = std::env::var("FS_EXT4_STACK_KIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 160 } else { 64 });
    run_with_stack(kib);
}
