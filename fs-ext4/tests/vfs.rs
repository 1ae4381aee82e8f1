//! ext4 mounted in the kernel's VFS (`kernel_core::vfs::Vfs`) under a RAM
//! root, used through paths as the syscalls use it; then checked and read
//! by e2fsprogs on the host.

mod common;

use abi::open_flags::{O_CREAT, O_EXCL, O_RDONLY, O_RDWR};
use fs_ext4::vfs::{pack, unpack, Ext4Vfs};
use fs_ext4::BlockDevice;
use fs_ext4::{Ext4Fs, MemDisk};
use kernel_core::fs::RamFs;
use kernel_core::vfs::{self, FileSystem, Kind, Vfs};
use std::sync::{Arc, Mutex};

/// A disk the test keeps a handle to while the file system owns it.
#[derive(Clone)]
struct Shared(Arc<Mutex<MemDisk>>);

impl BlockDevice for Shared {
    fn block_size(&self) -> u32 {
        self.0.lock().unwrap().block_size()
    }
    fn block_count(&self) -> u64 {
        self.0.lock().unwrap().block_count()
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), abi::errno::Errno> {
        self.0.lock().unwrap().read_blocks(lba, buf)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), abi::errno::Errno> {
        self.0.lock().unwrap().write_blocks(lba, buf)
    }
    fn flush(&mut self) -> Result<(), abi::errno::Errno> {
        self.0.lock().unwrap().flush()
    }
    fn read_only(&self) -> bool {
        self.0.lock().unwrap().read_only()
    }
}

fn mounted(img: &std::path::Path) -> (Vfs, Arc<Ext4Vfs<Shared>>, Shared) {
    let disk = Shared(Arc::new(Mutex::new(common::disk(img, 512))));
    let fs = Ext4Fs::mount(disk.clone(), common::now).unwrap();
    let ext = Arc::new(Ext4Vfs::new(fs));
    let mut v = Vfs::new(Arc::new(RamFs::new()));
    v.mount_new_dir("/disk", ext.clone()).unwrap();
    (v, ext, disk)
}

fn names(v: &Vfs, path: &str, chunk: usize) -> Vec<String> {
    let dir = v.open(v.root(), path, O_RDONLY).unwrap();
    let mut cursor = 0;
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let (n, next) = vfs::read_dir(&*dir.fs, dir.loc.ino, cursor, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        let mut at = 0;
        while at < n {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            let namelen = u16::from_ne_bytes([buf[at + 18], buf[at + 19]]) as usize;
            let start = at + core::mem::size_of::<abi::Dirent>();
            out.push(String::from_utf8(buf[start..start + namelen].to_vec()).unwrap());
            at += reclen;
        }
        cursor = next;
    }
}

#[test]
fn cursor_packing_round_trips() {
    use rsext4::DirectoryCursor as C;
    for c in [
        C::Start,
        C::End,
        C::Linear { offset: 0 },
        C::Linear { offset: u64::MAX },
        C::HTree {
            major: u32::MAX,
            minor: 7,
            collision: 3,
        },
    ] {
        let packed = pack(fs_ext4::DirCursor(c));
        assert_eq!(unpack(packed), fs_ext4::DirCursor(c));
    }
    // Values pack never makes end the listing.
    assert!(unpack(5u128 << 120).is_end());
}

#[test]
fn tree_through_the_vfs_then_host_tools() {
    if !common::have_tools() {
        return;
    }
    let dir = common::scratch("vfs");
    let img = common::mkfs(&dir, 16);
    let (v, ext, disk) = mounted(&img);
    let root = v.root();
    v.mkdir(root, "/disk/a").unwrap();
    v.mkdir(root, "/disk/a/b").unwrap();
    let f = v
        .open(root, "/disk/a/b/file.txt", O_CREAT | O_RDWR)
        .unwrap();
    assert_eq!(f.attr.kind, Kind::File);
    assert_eq!(
        v.open(root, "/disk/a/b/file.txt", O_CREAT | O_EXCL | O_RDWR)
            .err(),
        Some(abi::errno::EEXIST)
    );
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(f.fs.write_at(f.loc.ino, 0, &data).unwrap(), data.len());
    let mut back = vec![0u8; data.len() + 10];
    assert_eq!(f.fs.read_at(f.loc.ino, 0, &mut back).unwrap(), data.len());
    assert_eq!(&back[..data.len()], &data[..]);
    assert_eq!(
        v.stat_path(root, "/disk/a/b/file.txt").unwrap().size,
        100_000
    );
    // `..` leaves the mount through its mount point.
    assert_eq!(
        v.stat_path(root, "/disk/a/b/../../..").unwrap().kind,
        Kind::Dir
    );
    assert_eq!(v.resolve(root, "/disk/..").unwrap(), root);
    // Rename across directories, then the POSIX rules.
    v.rename2(root, "/disk/a/b/file.txt", root, "/disk/moved.txt")
        .unwrap();
    assert_eq!(
        v.stat_path(root, "/disk/a/b/file.txt").err(),
        Some(abi::errno::ENOENT)
    );
    assert_eq!(v.rmdir(root, "/disk/a").err(), Some(abi::errno::ENOTEMPTY));
    assert_eq!(
        v.rename2(root, "/disk/a", root, "/disk/a/b/c").err(),
        Some(abi::errno::EINVAL)
    );
    assert_eq!(
        v.rename2(root, "/disk/a", root, "/disk/moved.txt").err(),
        Some(abi::errno::ENOTDIR)
    );
    assert_eq!(
        v.rename2(root, "/disk/moved.txt", root, "/disk/a").err(),
        Some(abi::errno::EISDIR)
    );
    assert_eq!(
        v.rename2(root, "/disk/moved.txt", root, "/x").err(),
        Some(abi::errno::EXDEV)
    );
    // A directory of 300 entries lists completely with any buffer size.
    v.mkdir(root, "/disk/many").unwrap();
    let mut want = Vec::new();
    for i in 0..300 {
        let name = format!("{i:03}-{}", "n".repeat(i % 200));
        v.open(root, &format!("/disk/many/{name}"), O_CREAT | O_RDWR)
            .unwrap();
        want.push(name);
    }
    want.sort();
    for chunk in [300, 1024, 65536] {
        let mut got = names(&v, "/disk/many", chunk);
        got.sort();
        assert_eq!(got, want, "chunk {chunk}");
    }
    v.unlink(root, "/disk/many/000-").unwrap();
    assert_eq!(names(&v, "/disk/many", 4096).len(), 299);
    v.rmdir(root, "/disk/a/b").unwrap();
    ext.fsync(ext.root(), false).unwrap();
    ext.unmount().unwrap();
    let bytes = disk.0.lock().unwrap().image().to_vec();
    common::assert_clean(&dir, &bytes);
    assert_eq!(common::debugfs_cat(&dir, &bytes, "/moved.txt"), data);
    let ls = common::debugfs_ls(&dir, &bytes, "/a");
    assert!(!ls.contains(" b "), "{ls}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn read_only_mount_refuses_writes() {
    if !common::have_tools() {
        return;
    }
    let dir = common::scratch("vfs-ro");
    let img = common::mkfs(&dir, 8);
    let mut disk = common::disk(&img, 512);
    disk.read_only = true;
    let fs = Ext4Fs::mount(disk, common::now).unwrap();
    let ext = Arc::new(Ext4Vfs::new(fs));
    assert!(ext.is_read_only());
    assert_eq!(
        ext.create(ext.root(), "x", Kind::File).err(),
        Some(abi::errno::EROFS)
    );
    assert!(ext.lookup(ext.root(), "lost+found").is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
