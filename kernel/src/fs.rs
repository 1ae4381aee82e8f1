//! The RAM file system instance, filled from the initrd at boot, and the
//! objects behind a process's file descriptors.

use crate::arch::paging::AddressSpace;
use crate::arch::phys_to_virt;
use crate::bootinfo::PhysRange;
use crate::usercopy::UserSlice;
use abi::errno;
use abi::errno::Errno;
use alloc::sync::Arc;
use alloc::vec::Vec;
use kernel_core::fs::{OpenFile, RamFs};
use kernel_core::ring::{BackendKind, RingObject};
use spin::Mutex;
use x86_64::instructions::interrupts;

static FS: Mutex<Option<RamFs>> = Mutex::new(None);

/// What a file descriptor (or a ring's registered file) refers to. Shared:
/// a registered file and its descriptor are the same open file, position
/// included, and the file lives while either holds it.
pub type FileHandle = Arc<File>;

/// An open file.
pub enum File {
    /// The serial console (fds 0-2 at process start).
    Console,
    /// An open RAM file.
    Ram(Mutex<OpenFile>),
    /// A ring of a ring backend (an io_uring descriptor); dropping the last
    /// handle releases the ring.
    Ring {
        kind: BackendKind,
        pid: u64,
        id: u64,
        object: RingObject,
    },
}

impl Drop for File {
    fn drop(&mut self) {
        if let File::Ring { kind, pid, id, .. } = *self {
            crate::rings::release(kind, pid, id);
        }
    }
}

impl File {
    /// Reads into user memory at `offset` (`None`: the current position).
    /// The destination is checked before the position moves.
    pub fn read_to_user(
        &self,
        space: &AddressSpace,
        offset: Option<u64>,
        user: UserSlice,
    ) -> Result<usize, Errno> {
        match self {
            File::Console => Ok(0),
            File::Ring { .. } => Err(errno::EINVAL),
            File::Ram(file) => {
                user.check(space, true)?;
                let len = user.len().min(IO_CHUNK) as usize;
                interrupts::without_interrupts(|| {
                    file.lock().read_via(offset, len, |data| {
                        user.prefix(data.len() as u64).write_from(space, data)
                    })
                })
            }
        }
    }

    /// Writes from user memory at `offset` (`None`: the current position).
    /// The source is checked before anything is written.
    pub fn write_from_user(
        &self,
        space: &AddressSpace,
        offset: Option<u64>,
        user: UserSlice,
    ) -> Result<usize, Errno> {
        user.check(space, false)?;
        let user = user.prefix(IO_CHUNK);
        match self {
            File::Console => {
                let mut chunk = [0u8; 256];
                let mut done = 0;
                while done < user.len() {
                    let piece = user.skip(done).prefix(chunk.len() as u64);
                    let bytes = &mut chunk[..piece.len() as usize];
                    piece.read_into(space, bytes)?;
                    crate::logger::write_bytes(bytes);
                    done += piece.len();
                }
                Ok(done as usize)
            }
            File::Ring { .. } => Err(errno::EINVAL),
            File::Ram(file) => interrupts::without_interrupts(|| {
                file.lock()
                    .write_via(offset, user.len() as usize, |dst| {
                        // Checked above, so this cannot fail; if it somehow
                        // did, the file holds zeros rather than stale bytes.
                        if user.read_into(space, dst).is_err() {
                            dst.fill(0);
                        }
                    })
                    .map_err(|e| e.errno())
            }),
        }
    }

    pub fn lseek(&self, offset: i64, whence: u64) -> Result<u64, Errno> {
        match self {
            File::Console | File::Ring { .. } => Err(errno::ESPIPE),
            File::Ram(file) => interrupts::without_interrupts(|| {
                file.lock().lseek(offset, whence).map_err(|e| e.errno())
            }),
        }
    }

    pub fn fsync(&self) -> Result<(), Errno> {
        match self {
            File::Console | File::Ring { .. } => Err(errno::EINVAL),
            // RAM files have no backing store: once written they are as
            // durable as they will ever be.
            File::Ram(_) => Ok(()),
        }
    }

    pub fn stat(&self) -> abi::FileStat {
        match self {
            File::Console | File::Ring { .. } => abi::FileStat { size: 0, ino: 0 },
            File::Ram(file) => interrupts::without_interrupts(|| file.lock().inode().stat()),
        }
    }
}

/// Most bytes one read or write moves; larger requests are partial, as
/// POSIX allows. The whole claimed buffer is still checked first.
pub const IO_CHUNK: u64 = 1 << 20;

/// Opens `name` with `flags` (abi::open_flags).
pub fn open(name: &str, flags: u64) -> Result<FileHandle, Errno> {
    let file = with(|fs| fs.open_file(name, flags)).map_err(|e| e.errno())?;
    Ok(Arc::new(File::Ram(Mutex::new(file))))
}

/// Runs `f` on the file system.
pub fn with<R>(f: impl FnOnce(&mut RamFs) -> R) -> R {
    interrupts::without_interrupts(|| f(FS.lock().as_mut().expect("file system used before init")))
}

/// The file system's size, as a fraction of usable RAM: what its files may
/// hold (contents, names, inodes) before writes and creates fail with
/// `ENOSPC`. A quarter keeps a full file system from starving the kernel
/// heap and the processes' memory.
const SIZE_DIVISOR: u64 = 4;

/// Creates the file system and copies every regular file of the initrd
/// (a cpio newc archive) into it. Returns how many files were loaded.
pub fn init(initrd: Option<PhysRange>) -> usize {
    let (_, usable) = crate::mm::frames::counts();
    let size = usable * 4096 / SIZE_DIVISOR;
    *FS.lock() = Some(RamFs::with_size(
        usize::try_from(size).unwrap_or(usize::MAX),
    ));
    log::info!("file system: {} MiB", size >> 20);
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
                let mut data = Vec::new();
                let result = match data.try_reserve_exact(entry.data.len()) {
                    Ok(()) => {
                        data.extend_from_slice(entry.data);
                        with(|fs| fs.insert(entry.name, data)).map_err(|e| e.errno())
                    }
                    Err(_) => Err(errno::ENOMEM),
                };
                match result {
                    Ok(_) => count += 1,
                    Err(e) => log::warn!("initrd: skipping {:?}: {}", entry.name, e),
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

/// The whole content of the file `name` (for loading programs); `ENOMEM`
/// if there is no memory for the copy.
pub fn read_whole(name: &str) -> Result<Vec<u8>, Errno> {
    let inode = with(|fs| fs.lookup(name)).map_err(|e| e.errno())?;
    let size = inode.size() as usize;
    let mut data = Vec::new();
    data.try_reserve_exact(size).map_err(|_| errno::ENOMEM)?;
    data.resize(size, 0);
    let n = inode.read_at(0, &mut data);
    data.truncate(n);
    if data.is_empty() {
        return Err(errno::ENOEXEC);
    }
    Ok(data)
}
