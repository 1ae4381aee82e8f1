//! The block device the file system runs on, and its bridge to rsext4's
//! [`BlockIo`].
//!
//! [`BlockDevice`] is this crate's own interface: whole blocks of 512 or
//! 4096 bytes, errors as [`Errno`]. The kernel implements it over its block
//! layer (a synchronous wrapper run on a worker thread); the host tests use
//! [`MemDisk`]. [`IoAdapter`] checks every request rsext4 makes against the
//! device's size before passing it on, so a block number read from a
//! hostile image becomes `EIO` here rather than an out-of-range access in a
//! driver.

use abi::errno::{Errno, EINVAL, EIO};
use alloc::vec::Vec;
use rsext4::{BlockIo, DeviceCapabilities, DeviceGeometry, Ext4Error, Ext4Result, SectorId};

use crate::precheck::InodeBitmaps;

/// A disk as the file system sees it.
pub trait BlockDevice {
    /// Bytes in one block: 512 or 4096.
    fn block_size(&self) -> u32;
    /// Blocks on the device.
    fn block_count(&self) -> u64;
    /// Reads `buf.len() / block_size` blocks starting at `lba` into `buf`
    /// (`buf.len()` is a multiple of the block size).
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Writes `buf` to the blocks starting at `lba`. The data may sit in a
    /// volatile cache until [`BlockDevice::flush`] returns.
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Returns once every write completed so far is durable (NVMe FLUSH,
    /// virtio-blk `VIRTIO_BLK_T_FLUSH`).
    fn flush(&mut self) -> Result<(), Errno>;
    /// Whether the device refuses writes (the file system is then mounted
    /// read-only).
    fn read_only(&self) -> bool {
        false
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &mut T {
    fn block_size(&self) -> u32 {
        (**self).block_size()
    }
    fn block_count(&self) -> u64 {
        (**self).block_count()
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Errno> {
        (**self).read_blocks(lba, buf)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), Errno> {
        (**self).write_blocks(lba, buf)
    }
    fn flush(&mut self) -> Result<(), Errno> {
        (**self).flush()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
}

/// [`BlockDevice`] as rsext4's [`BlockIo`]: every request is checked
/// (buffer length against the count, the range against the device) before
/// the device sees it, and writes of the primary superblock are ordered
/// after every write before them.
///
/// Why the ordering: the superblock's RECOVER flag decides whether a mount
/// replays the journal. rsext4 0.9.2 clears it at unmount through the
/// journal, and its checkpoint then writes the superblock home in the same
/// unflushed batch as the inode tables and bitmaps it covers. A disk cache
/// that persists the superblock first, and then loses power, leaves a
/// "clean" file system whose journal is ignored and whose metadata is half
/// old (`tests/crash.rs` found it: fsynced files lost). Linux's ext4 clears
/// the flag only after the checkpoint is flushed. Here a superblock write
/// is held until the next flush, which becomes: flush, superblock write,
/// flush.
pub(crate) struct IoAdapter<D> {
    dev: D,
    block_size: u32,
    blocks: u64,
    /// A write covering the primary superblock, not yet sent: its first
    /// device block and its bytes.
    held: Option<(u64, Vec<u8>)>,
    /// Inode bitmaps whose padding writes keep set.
    bitmaps: Option<InodeBitmaps>,
}

/// Bytes of the primary superblock.
const SUPERBLOCK: core::ops::Range<u64> = 1024..2048;

impl<D: BlockDevice> IoAdapter<D> {
    pub(crate) fn new(dev: D) -> Result<Self, Errno> {
        let block_size = dev.block_size();
        if block_size != 512 && block_size != 4096 {
            log::warn!("ext4: device block size {block_size} is neither 512 nor 4096");
            return Err(EINVAL);
        }
        let blocks = dev.block_count();
        Ok(Self {
            dev,
            block_size,
            blocks,
            held: None,
            bitmaps: None,
        })
    }

    /// Keeps the padding bits of these inode bitmaps set in every write.
    ///
    /// rsext4 0.9.2 builds a zeroed bitmap when it first allocates an inode
    /// in a group mkfs left uninitialised, without the padding bits past
    /// the last inode that ext4 keeps set, and `e2fsck -fn` then reports
    /// the file system unclean. The padding lies outside the bitmap's
    /// checksum (which covers `inodes_per_group` bits), so setting it here
    /// changes nothing else.
    pub(crate) fn keep_inode_bitmap_padding(&mut self, bitmaps: InodeBitmaps) {
        self.bitmaps = Some(bitmaps);
    }

    /// `buffer` (`len` bytes at device block `lba`) with the padding bits
    /// of every inode bitmap in it set, or `None` if it holds none (or no
    /// memory for the copy).
    fn with_padding(&self, lba: u64, buffer: &[u8]) -> Option<Vec<u8>> {
        let bm = self.bitmaps.as_ref()?;
        let fs_bs = u64::from(bm.block_size);
        let start = lba.checked_mul(u64::from(self.block_size))?;
        let end = start.checked_add(buffer.len() as u64)?;
        let first = start / fs_bs;
        let last = end.div_ceil(fs_bs);
        let from = bm.blocks.partition_point(|&b| b < first);
        let inside: &[u64] = &bm.blocks[from..bm.blocks.partition_point(|&b| b < last)];
        if inside.is_empty() {
            return None;
        }
        let mut copy = Vec::new();
        copy.try_reserve_exact(buffer.len()).ok()?;
        copy.extend_from_slice(buffer);
        let ipg = u64::from(bm.inodes_per_group);
        for &b in inside {
            // Bytes of this bitmap block inside the buffer.
            let block_start = b * fs_bs;
            for bit in ipg..fs_bs * 8 {
                let byte = block_start + bit / 8;
                if byte >= start && byte < end {
                    copy[(byte - start) as usize] |= 1 << (bit % 8);
                }
            }
        }
        Some(copy)
    }

    /// Whether `len` bytes at block `lba` overlap `bytes`.
    fn overlaps(&self, lba: u64, len: usize, bytes: &core::ops::Range<u64>) -> bool {
        let start = lba.saturating_mul(u64::from(self.block_size));
        let end = start.saturating_add(len as u64);
        start < bytes.end && end > bytes.start
    }

    /// Sends the held superblock write after making every earlier write
    /// durable.
    fn release_held(&mut self) -> Ext4Result<()> {
        if let Some((lba, data)) = self.held.take() {
            self.dev
                .flush()
                .map_err(|e| device_error("device:flush", e))?;
            self.dev
                .write_blocks(lba, &data)
                .map_err(|e| device_error("device:write", e))?;
        }
        Ok(())
    }

    pub(crate) fn device(&self) -> &D {
        &self.dev
    }

    /// The byte length of `count` blocks at `sector`, if the range is on
    /// the device and `have` bytes cover it.
    fn check(&self, sector: SectorId, count: u32, have: usize) -> Ext4Result<usize> {
        let len = u64::from(count) * u64::from(self.block_size);
        let end = sector.raw().checked_add(u64::from(count));
        match end {
            Some(end) if end <= self.blocks && len <= have as u64 => Ok(len as usize),
            _ => {
                log::warn!(
                    "ext4: request for {count} blocks at {} is off the device ({} blocks) or its buffer ({have} bytes)",
                    sector.raw(),
                    self.blocks
                );
                Err(Ext4Error::io().with_operation("device:range"))
            }
        }
    }
}

fn device_error(op: &'static str, e: Errno) -> Ext4Error {
    log::warn!("ext4: device {op} failed: {e:?}");
    Ext4Error::io().with_operation(op)
}

impl<D: BlockDevice> BlockIo for IoAdapter<D> {
    fn write(&mut self, buffer: &[u8], sector: SectorId, count: u32) -> Ext4Result<()> {
        let len = self.check(sector, count, buffer.len())?;
        let padded = self.with_padding(sector.raw(), &buffer[..len]);
        let buffer = padded.as_deref().unwrap_or(buffer);
        if self.overlaps(sector.raw(), len, &SUPERBLOCK) {
            self.release_held()?;
            let mut copy = Vec::new();
            if copy.try_reserve_exact(len).is_ok() {
                copy.extend_from_slice(&buffer[..len]);
                self.held = Some((sector.raw(), copy));
                return Ok(());
            }
            // No memory to hold it: at least order it after what came
            // before.
            self.dev
                .flush()
                .map_err(|e| device_error("device:flush", e))?;
        }
        self.dev
            .write_blocks(sector.raw(), &buffer[..len])
            .map_err(|e| device_error("device:write", e))
    }

    fn read(&mut self, buffer: &mut [u8], sector: SectorId, count: u32) -> Ext4Result<()> {
        let len = self.check(sector, count, buffer.len())?;
        if let Some((lba, data)) = &self.held {
            let held = lba * u64::from(self.block_size)
                ..lba * u64::from(self.block_size) + data.len() as u64;
            if self.overlaps(sector.raw(), len, &held) {
                self.release_held()?;
            }
        }
        self.dev
            .read_blocks(sector.raw(), &mut buffer[..len])
            .map_err(|e| device_error("device:read", e))
    }

    fn geometry(&self) -> DeviceGeometry {
        DeviceGeometry::new(self.block_size, self.blocks)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            read_only: self.dev.read_only(),
            flush: true,
            ..DeviceCapabilities::default()
        }
    }

    fn flush(&mut self) -> Ext4Result<()> {
        self.release_held()?;
        self.dev
            .flush()
            .map_err(|e| device_error("device:flush", e))
    }
}

/// A disk in memory with a volatile write cache, for tests: writes land in
/// the cache, [`BlockDevice::flush`] makes them durable, and
/// [`MemDisk::crash`] throws away everything not flushed, as a power cut
/// does.
pub struct MemDisk {
    block_size: u32,
    /// What a power cut keeps.
    durable: Vec<u8>,
    /// What reads see: `durable` plus the writes since the last flush.
    current: Vec<u8>,
    /// Blocks written since the last flush, and a mark for each block.
    dirty: Vec<u64>,
    is_dirty: Vec<bool>,
    /// Flushes completed.
    pub flushes: u64,
    /// Block writes completed.
    pub writes: u64,
    /// Refuse writes.
    pub read_only: bool,
    /// When `Some(n)`, every write and flush call after the next `n` fails
    /// with `EIO` (a dying disk).
    pub fail_after: Option<u64>,
    /// Write and flush calls made (successful or not).
    pub calls: u64,
}

impl MemDisk {
    /// A disk holding `image` (its length a multiple of `block_size`),
    /// all of it durable.
    pub fn new(image: Vec<u8>, block_size: u32) -> Result<Self, Errno> {
        if (block_size != 512 && block_size != 4096)
            || !image.len().is_multiple_of(block_size as usize)
        {
            return Err(EINVAL);
        }
        Ok(Self {
            block_size,
            durable: image.clone(),
            dirty: Vec::new(),
            is_dirty: alloc::vec![false; image.len() / block_size as usize],
            current: image,
            flushes: 0,
            writes: 0,
            read_only: false,
            fail_after: None,
            calls: 0,
        })
    }

    /// Everything reads would see now.
    pub fn image(&self) -> &[u8] {
        &self.current
    }

    /// What survives a power cut now: only flushed writes.
    pub fn durable_image(&self) -> &[u8] {
        &self.durable
    }

    /// Blocks written but not yet flushed.
    pub fn unflushed_blocks(&self) -> usize {
        self.dirty.len()
    }

    /// A power cut in which the disk's cache had written some of the
    /// unflushed blocks (those `keep` picks, in any order) and lost the
    /// rest, as a real write cache may.
    pub fn crash_keeping(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let bs = self.block_size as usize;
        for &b in &self.dirty {
            if keep(b) {
                let s = b as usize * bs;
                self.durable[s..s + bs].copy_from_slice(&self.current[s..s + bs]);
            }
        }
        self.crash();
    }

    /// A power cut: unflushed writes are lost.
    pub fn crash(&mut self) {
        self.current.clone_from(&self.durable);
        for b in self.dirty.drain(..) {
            self.is_dirty[b as usize] = false;
        }
    }

    fn range(&self, lba: u64, len: usize) -> Result<core::ops::Range<usize>, Errno> {
        let bs = self.block_size as usize;
        if !len.is_multiple_of(bs) {
            return Err(EINVAL);
        }
        let start = usize::try_from(lba)
            .map_err(|_| EIO)?
            .checked_mul(bs)
            .ok_or(EIO)?;
        let end = start.checked_add(len).ok_or(EIO)?;
        if end > self.current.len() {
            return Err(EIO);
        }
        Ok(start..end)
    }

    fn spend(&mut self) -> Result<(), Errno> {
        self.calls += 1;
        match self.fail_after {
            Some(0) => Err(EIO),
            Some(n) => {
                self.fail_after = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl BlockDevice for MemDisk {
    fn block_size(&self) -> u32 {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        (self.current.len() / self.block_size as usize) as u64
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let r = self.range(lba, buf.len())?;
        buf.copy_from_slice(&self.current[r]);
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), Errno> {
        if self.read_only {
            return Err(EIO);
        }
        let r = self.range(lba, buf.len())?;
        self.spend()?;
        self.current[r].copy_from_slice(buf);
        let n = (buf.len() / self.block_size as usize) as u64;
        for b in lba..lba + n {
            if !self.is_dirty[b as usize] {
                self.is_dirty[b as usize] = true;
                self.dirty.push(b);
            }
        }
        self.writes += n;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Errno> {
        self.spend()?;
        let bs = self.block_size as usize;
        for b in self.dirty.drain(..) {
            let s = b as usize * bs;
            self.durable[s..s + bs].copy_from_slice(&self.current[s..s + bs]);
            self.is_dirty[b as usize] = false;
        }
        self.flushes += 1;
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// A device with a small cache of recent reads in front of it: rsext4
/// reads some metadata blocks again and again (the journal superblock,
/// bitmaps and group descriptors around each commit), each a synchronous
/// device round trip. Reads of at most [`ReadCache::ENTRY_MAX`] bytes are
/// kept, oldest dropped first; every write goes to the device first and
/// then drops the entries it overlaps, so a hit always returns what the
/// device holds. Nothing here delays or reorders a write or a flush: the
/// device sees exactly the writes and flushes it saw without the cache.
pub struct ReadCache<D> {
    dev: D,
    /// (first block, bytes), oldest first.
    entries: alloc::collections::VecDeque<(u64, Vec<u8>)>,
    capacity: usize,
    /// Reads served from the cache and from the device.
    pub hits: u64,
    pub misses: u64,
}

impl<D: BlockDevice> ReadCache<D> {
    /// The largest read kept (a 4 KiB block, or several small ones).
    pub const ENTRY_MAX: usize = 4096;

    /// `dev` with room for `capacity` recent reads.
    pub fn new(dev: D, capacity: usize) -> Self {
        Self {
            dev,
            entries: alloc::collections::VecDeque::new(),
            capacity,
            hits: 0,
            misses: 0,
        }
    }

    fn blocks(&self, bytes: usize) -> u64 {
        (bytes as u64).div_ceil(u64::from(self.dev.block_size().max(1)))
    }
}

impl<D: BlockDevice> BlockDevice for ReadCache<D> {
    fn block_size(&self) -> u32 {
        self.dev.block_size()
    }

    fn block_count(&self) -> u64 {
        self.dev.block_count()
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if let Some((_, data)) = self
            .entries
            .iter()
            .find(|(at, data)| *at == lba && data.len() == buf.len())
        {
            buf.copy_from_slice(data);
            self.hits += 1;
            return Ok(());
        }
        self.misses += 1;
        self.dev.read_blocks(lba, buf)?;
        if buf.len() <= Self::ENTRY_MAX && self.capacity > 0 {
            let mut copy = Vec::new();
            if copy.try_reserve_exact(buf.len()).is_ok() && self.entries.try_reserve(1).is_ok() {
                copy.extend_from_slice(buf);
                if self.entries.len() >= self.capacity {
                    self.entries.pop_front();
                }
                self.entries.push_back((lba, copy));
            }
        }
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), Errno> {
        let end = lba.saturating_add(self.blocks(buf.len()));
        let block = u64::from(self.dev.block_size().max(1));
        // Dropped before the write: if it fails, what the device holds is
        // unknown.
        self.entries.retain(|(at, data)| {
            let their_end = at.saturating_add((data.len() as u64).div_ceil(block));
            their_end <= lba || *at >= end
        });
        self.dev.write_blocks(lba, buf)
    }

    fn flush(&mut self) -> Result<(), Errno> {
        self.dev.flush()
    }

    fn read_only(&self) -> bool {
        self.dev.read_only()
    }
}
