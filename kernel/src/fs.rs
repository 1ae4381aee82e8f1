//! The RAM file system instance, filled from the initrd at boot, and the
//! objects behind a process's file descriptors.

use crate::arch::phys_to_virt;
use crate::bootinfo::PhysRange;
use abi::errno;
use alloc::vec::Vec;
use kernel_core::fs::{OpenFile, RamFs};
use spin::Mutex;
use x86_64::instructions::interrupts;

static FS: Mutex<Option<RamFs>> = Mutex::new(None);

/// What a file descriptor refers to.
pub enum FileHandle {
    /// The serial console (fds 0-2 at process start).
    Console,
    /// An open RAM file.
    File(OpenFile),
}

/// Runs `f` on the file system.
pub fn with<R>(f: impl FnOnce(&mut RamFs) -> R) -> R {
    interrupts::without_interrupts(|| f(FS.lock().as_mut().expect("file system used before init")))
}

/// Creates the file system and copies every regular file of the initrd
/// (a cpio newc archive) into it. Returns how many files were loaded.
pub fn init(initrd: Option<PhysRange>) -> usize {
    *FS.lock() = Some(RamFs::new());
    let Some(range) = initrd else {
        log::warn!("no initrd module: the file system starts empty");
        return 0;
    };
    // SAFETY: the module lies in the direct map (checked when the boot
    // information was read) and its frames stay reserved until the caller
    // releases them after this function returns.
    let archive = unsafe {
        core::slice::from_raw_parts(
            phys_to_virt(range.start) as *const u8,
            (range.end - range.start) as usize,
        )
    };
    let mut count = 0;
    for entry in kernel_core::cpio::entries(archive) {
        match entry {
            Ok(entry) if entry.mode & 0o170000 == 0o100000 => {
                match with(|fs| fs.insert(entry.name, entry.data.to_vec())) {
                    Ok(_) => count += 1,
                    Err(e) => log::warn!(
                        "initrd: skipping {:?}: {}",
                        entry.name,
                        abi::errno::name(e.errno())
                    ),
                }
            }
            Ok(_) => {}
            Err(e) => {
                log::error!("initrd: {e:?}; files after this point are missing");
                break;
            }
        }
    }
    log::info!("initrd: {count} files, {} KiB", archive.len() / 1024);
    count
}

/// The whole content of the file `name` (for loading programs).
pub fn read_whole(name: &str) -> Result<Vec<u8>, i32> {
    let inode = with(|fs| fs.lookup(name)).map_err(|e| e.errno())?;
    let mut data = alloc::vec![0u8; inode.size() as usize];
    let n = inode.read_at(0, &mut data);
    data.truncate(n);
    if data.is_empty() {
        return Err(errno::ENOEXEC);
    }
    Ok(data)
}
