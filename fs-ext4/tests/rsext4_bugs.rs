//! Regression tests for rsext4 0.9.2 bugs fixed in `vendor/rsext4`
//! (see `vendor/rsext4/PATCHES.md`). Each one left an image that
//! `e2fsck -fn` reports unclean; they were found by the kernel's QEMU
//! file-system tests (`fs_tests` followed by the host's `e2fsck -fn`).

mod common;
use abi::errno::ENOSPC;
use common::*;
use fs_ext4::Ext4Fs;

/// Names of 4..=255 bytes, the first one 255 bytes long.
fn long_name(i: usize) -> String {
    let len = if i == 0 { 255 } else { 4 + (i * 37) % 252 };
    let mut name = format!("{i:03}-");
    while name.len() < len {
        name.push((b'a' + (name.len() % 26) as u8) as char);
    }
    name.truncate(len);
    name
}

/// Bug A: a directory (not the root) whose extent tree grows an index
/// level while its files are created, with a single fsync at the end.
/// rsext4 did not count the new index block in the directory's `i_blocks`:
/// "Inode 13, i_blocks is 132, should be 136".
#[test]
fn directory_extent_index_block_is_counted_in_i_blocks_long_names() {
    if !have_tools() {
        return;
    }
    let dir = scratch("bugs-dir-long-names");
    let img = mkfs(&dir, 64);
    let mut disk = disk(&img, 512);
    {
        let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
        fs.mkdir(b"/fst", 0o755).unwrap();
        let d = fs.mkdir(b"/fst/many", 0o755).unwrap();
        for i in 0..300 {
            let f = fs.create_at(d, long_name(i).as_bytes(), 0o644).unwrap();
            fs.write_at(f, 0, long_name(i).as_bytes()).unwrap();
        }
        fs.fsync().unwrap();
        // Every name is still there and reads back.
        let names = fs.read_dir_all(d).unwrap();
        assert_eq!(names.len(), 300 + 2);
        for i in 0..300 {
            let f = fs.lookup_at(d, long_name(i).as_bytes()).unwrap();
            let mut buf = vec![0u8; 300];
            let n = fs.read_at(f, 0, &mut buf).unwrap();
            assert_eq!(&buf[..n], long_name(i).as_bytes());
        }
        fs.unmount().unwrap();
    }
    assert_clean(&dir, disk.image());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Bug A, second shape: 500 small files in a subdirectory, then every
/// other one unlinked ("Inode 18, i_blocks is 18, should be 22").
#[test]
fn directory_extent_index_block_is_counted_in_i_blocks_after_unlinks() {
    if !have_tools() {
        return;
    }
    let dir = scratch("bugs-dir-unlinks");
    let img = mkfs(&dir, 64);
    let mut disk = disk(&img, 512);
    {
        let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
        fs.mkdir(b"/fst", 0o755).unwrap();
        let d = fs.mkdir(b"/fst/small", 0o755).unwrap();
        for i in 0..500u64 {
            let f = fs.create_at(d, format!("f{i}").as_bytes(), 0o644).unwrap();
            fs.write_at(f, 0, &pattern(i, 1 + (i as usize * 131) % 3000))
                .unwrap();
        }
        for i in (0..500).step_by(2) {
            fs.unlink_at(d, format!("f{i}").as_bytes()).unwrap();
        }
        fs.fsync().unwrap();
        for i in 0..500u64 {
            let r = fs.lookup_at(d, format!("f{i}").as_bytes());
            if i % 2 == 0 {
                assert!(r.is_err(), "f{i} was unlinked");
            } else {
                let f = r.unwrap();
                let len = 1 + (i as usize * 131) % 3000;
                let mut buf = vec![0u8; len + 10];
                assert_eq!(fs.read_at(f, 0, &mut buf).unwrap(), len);
                assert_eq!(&buf[..len], &pattern(i, len)[..]);
            }
        }
        fs.unmount().unwrap();
    }
    assert_clean(&dir, disk.image());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Bug B: fill the only block group of an 8 MiB image (1 KiB blocks) to
/// `ENOSPC` with one file, then unlink it. rsext4 left the blocks at the
/// end of the group marked used: "Block bitmap differences: -(8166--8191)".
fn fill_then_unlink(with_more: bool, unlink_more: bool) {
    if !have_tools() {
        return;
    }
    let dir = scratch(&format!("bugs-full-{with_more}-{unlink_more}"));
    let img = mkfs(&dir, 8);
    let mut disk = disk(&img, 512);
    let free_before;
    {
        let mut fs = Ext4Fs::mount(&mut disk, now).unwrap();
        let keep = fs.create(b"/keep", 0o644).unwrap();
        fs.write_at(keep, 0, &pattern(1, 20_000)).unwrap();
        fs.fsync().unwrap();
        free_before = fs.statfs().free_blocks;
        let fill = fs.create(b"/fill", 0o644).unwrap();
        let mut i = 0;
        loop {
            match fs.append(fill, &pattern(i, 65536)) {
                Ok(_) => i += 1,
                Err(e) => {
                    assert_eq!(e, ENOSPC);
                    break;
                }
            }
        }
        assert!(i > 50, "only {i} pieces fit");
        fs.fsync().unwrap();
        if with_more {
            let more = fs.create(b"/more", 0o644).unwrap();
            assert_eq!(fs.append(more, &pattern(99, 65536)).err(), Some(ENOSPC));
            if unlink_more {
                fs.unlink(b"/more").unwrap();
            }
        }
        fs.unlink(b"/fill").unwrap();
        fs.fsync().unwrap();
        // Every block the file held is free again.
        assert_eq!(fs.statfs().free_blocks, free_before);
        let keep = fs.lookup(b"/keep").unwrap();
        let mut buf = vec![0u8; 20_000];
        assert_eq!(fs.read_at(keep, 0, &mut buf).unwrap(), 20_000);
        assert_eq!(buf, pattern(1, 20_000));
        fs.unmount().unwrap();
    }
    assert_clean(&dir, disk.image());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unlink_after_disk_full_frees_every_block() {
    fill_then_unlink(false, false);
}

#[test]
fn unlink_after_disk_full_frees_every_block_with_a_second_file() {
    fill_then_unlink(true, false);
}

#[test]
fn unlink_after_disk_full_frees_every_block_both_unlinked() {
    fill_then_unlink(true, true);
}
