//! `ReadCache`: reads through it always equal reads of the device itself,
//! whatever mix of reads and overlapping writes came before; and ext4 on
//! it passes e2fsck.

mod common;

use fs_ext4::{BlockDevice, Ext4Fs, MemDisk, ReadCache};

fn rng(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn reads_always_match_the_device() {
    let blocks = 64u64;
    let plain = MemDisk::new(vec![0u8; (blocks * 512) as usize], 512).unwrap();
    let mut reference = MemDisk::new(vec![0u8; (blocks * 512) as usize], 512).unwrap();
    let mut cached = ReadCache::new(plain, 8);
    let mut state = 1u64;
    for step in 0..20_000 {
        let n = 1 + rng(&mut state) % 9; // 1..=9 blocks: some past ENTRY_MAX
        let lba = rng(&mut state) % (blocks - n + 1);
        let len = (n * 512) as usize;
        if rng(&mut state).is_multiple_of(3) {
            let fill = (rng(&mut state) & 0xff) as u8;
            let data = vec![fill; len];
            cached.write_blocks(lba, &data).unwrap();
            reference.write_blocks(lba, &data).unwrap();
        } else {
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            cached.read_blocks(lba, &mut a).unwrap();
            reference.read_blocks(lba, &mut b).unwrap();
            assert_eq!(a, b, "step {step}: read {n} blocks at {lba}");
        }
    }
    assert!(
        cached.hits > 100,
        "the cache was never used: {} hits",
        cached.hits
    );
}

#[test]
fn ext4_on_the_cache_is_clean() {
    if !common::have_tools() {
        return;
    }
    let dir = common::scratch("read-cache");
    let img = common::mkfs(&dir, 16);
    let mut disk = common::disk(&img, 512);
    let hits;
    {
        let mut cached = ReadCache::new(&mut disk, 64);
        {
            let mut fs = Ext4Fs::mount(&mut cached, common::now).unwrap();
            let d = fs.mkdir(b"/d", 0o755).unwrap();
            for i in 0..50u32 {
                let f = fs.create_at(d, format!("f{i}").as_bytes(), 0o644).unwrap();
                fs.write_at(f, 0, &vec![i as u8; 3000 + i as usize * 100])
                    .unwrap();
                fs.fsync().unwrap();
            }
            fs.unlink(b"/d/f7").unwrap();
            fs.fsync().unwrap();
            fs.unmount().unwrap();
        }
        hits = cached.hits;
    }
    assert!(hits > 0);
    common::assert_clean(&dir, disk.image());
    assert_eq!(
        common::debugfs_cat(&dir, disk.image(), "/d/f9"),
        vec![9u8; 3900]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
