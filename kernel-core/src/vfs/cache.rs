//! The page cache of a disk file system: file data in 4 KiB pages, keyed
//! by inode and page index, with each cached inode's size.
//!
//! What it promises (and the kernel's `diskfs` keeps it so):
//! - A page here holds exactly what a read of the file system would
//!   return for that range *now*: every write updates the pages it covers
//!   after the file system took it (write-through; the file system's own
//!   block cache below holds the dirty blocks until `fsync` commits them),
//!   truncation drops the inode's pages, and unlinking or replacing a name
//!   drops the inode (inode numbers are reused).
//! - Bytes past the end of file inside the last page are zeros, as the
//!   file system returns them.
//! - [`PageCache::read`] serves a read only if every page it needs is
//!   here and the inode's size is known: a hit completes without the file
//!   system (so a ring READ completes inside `io_uring_enter`); anything
//!   else is a miss and goes to the worker, which fills the cache.
//! - Memory is bounded: pages are charged to [`PAGE_CACHE`] before they
//!   are allocated, and the oldest pages are dropped to make room. Every
//!   allocation is fallible; a failed one only leaves a page uncached.
//!
//! Not done: dirty pages of its own (write-back lives in rsext4's block
//! cache), readahead, LRU (the eviction order is insertion order, a FIFO
//! over pages).

use super::Ino;
use crate::quota::Quota;
use abi::errno::{Errno, ENOMEM};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// Bytes in a page.
pub const PAGE: usize = 4096;

/// What the page caches of all disk file systems may hold (set at boot
/// from RAM).
pub static PAGE_CACHE: Quota = Quota::new(0);

/// Cost charged per cached page: its bytes and its bookkeeping.
const COST: usize = PAGE + 64;

type Key = (Ino, u64);

/// One file system's cached pages.
#[derive(Default)]
pub struct PageCache {
    pages: HashMap<Key, Box<[u8; PAGE]>>,
    sizes: HashMap<Ino, u64>,
    /// Pages in the order they were cached (entries of dropped pages stay
    /// until they come up, and are skipped then).
    order: VecDeque<Key>,
    hits: u64,
    misses: u64,
}

impl Drop for PageCache {
    fn drop(&mut self) {
        PAGE_CACHE.uncharge(self.pages.len() * COST);
    }
}

impl PageCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pages cached now.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// (hits, misses) of [`PageCache::read`].
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// The cached size of `ino`, if known.
    pub fn size(&self, ino: Ino) -> Option<u64> {
        self.sizes.get(&ino).copied()
    }

    /// Records `ino`'s size (after a read or stat on the file system).
    /// Pages wholly past a smaller size go.
    pub fn set_size(&mut self, ino: Ino, size: u64) {
        if let Some(old) = self.sizes.get(&ino).copied() {
            if size < old {
                self.drop_from(ino, size);
            }
        }
        if self.sizes.try_reserve(1).is_ok() {
            self.sizes.insert(ino, size);
        } else {
            self.forget(ino);
        }
    }

    /// Whether a read of `len` bytes at `offset` would hit.
    pub fn covers(&self, ino: Ino, offset: u64, len: usize) -> bool {
        let Some(size) = self.size(ino) else {
            return false;
        };
        let end = offset.saturating_add(len as u64).min(size);
        if offset >= end {
            return true;
        }
        let (first, last) = (offset / PAGE as u64, (end - 1) / PAGE as u64);
        (first..=last).all(|p| self.pages.contains_key(&(ino, p)))
    }

    /// A read of `ino` at `offset`: `Some(n)` with `n` bytes handed to
    /// `out` (at their position in the read, in pieces) if it hits, `None`
    /// on a miss (nothing handed out).
    pub fn read(
        &mut self,
        ino: Ino,
        offset: u64,
        len: usize,
        mut out: impl FnMut(usize, &[u8]),
    ) -> Option<usize> {
        if !self.covers(ino, offset, len) {
            self.misses += 1;
            return None;
        }
        self.hits += 1;
        let size = self.size(ino)?;
        let end = offset.saturating_add(len as u64).min(size);
        let mut at = offset;
        while at < end {
            let page = at / PAGE as u64;
            let within = (at % PAGE as u64) as usize;
            let n = ((end - at) as usize).min(PAGE - within);
            let data = self.pages.get(&(ino, page))?;
            out((at - offset) as usize, &data[within..within + n]);
            at += n as u64;
        }
        Some((end.saturating_sub(offset)) as usize)
    }

    /// Caches what the file system returned for a read of `ino` at the
    /// page-aligned `offset`: `data` (short at the end of file, which is
    /// `size`). Whole pages and the last partial page (zero-filled past
    /// the end) are kept; a page that does not fit is left out.
    pub fn fill(&mut self, ino: Ino, offset: u64, data: &[u8], size: u64) {
        if !offset.is_multiple_of(PAGE as u64) {
            return;
        }
        self.set_size(ino, size);
        for (i, chunk) in data.chunks(PAGE).enumerate() {
            let start = offset + (i * PAGE) as u64;
            if chunk.len() < PAGE && start + chunk.len() as u64 != size {
                // A short page that is not the end of file: not exact.
                break;
            }
            let Some(page) = self.page_mut(ino, start / PAGE as u64) else {
                return;
            };
            page[..chunk.len()].copy_from_slice(chunk);
            page[chunk.len()..].fill(0);
        }
    }

    /// Updates the cache after a successful write of `data` at `offset`
    /// to a file that was `old_size` bytes long before it: cached pages it
    /// covered take the new bytes, and pages it makes fully known are
    /// cached (wholly written, or past the old end, where the rest is
    /// zeros), as Linux's writes fill its page cache. The size becomes
    /// `max(old_size, end)`.
    pub fn wrote(&mut self, ino: Ino, old_size: u64, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        let size = old_size.max(end);
        let known = self.size(ino) == Some(old_size);
        self.set_size(ino, size);
        let mut at = offset;
        while at < end {
            let page = at / PAGE as u64;
            let within = (at % PAGE as u64) as usize;
            let n = ((end - at) as usize).min(PAGE - within);
            let from = (at - offset) as usize;
            let page_start = page * PAGE as u64;
            let whole = n == PAGE;
            let fresh = page_start >= old_size;
            let slot = if self.pages.contains_key(&(ino, page)) && known {
                self.pages.get_mut(&(ino, page)).map(|b| &mut **b)
            } else if whole || fresh {
                // `page_mut` zero-fills a new page: right past the old end.
                if self.pages.remove(&(ino, page)).is_some() {
                    PAGE_CACHE.uncharge(COST);
                }
                self.page_mut(ino, page)
            } else {
                // A stale or unknown page: not cached.
                if self.pages.remove(&(ino, page)).is_some() {
                    PAGE_CACHE.uncharge(COST);
                }
                None
            };
            if let Some(p) = slot {
                p[within..within + n].copy_from_slice(&data[from..from + n]);
            }
            at += n as u64;
        }
    }

    /// Forgets `ino` entirely (truncated, unlinked, replaced).
    pub fn forget(&mut self, ino: Ino) {
        self.sizes.remove(&ino);
        self.drop_from(ino, 0);
    }

    /// Drops `ino`'s pages from the one holding byte `from` on (that one
    /// too: its bytes past `from` must read as zeros now).
    fn drop_from(&mut self, ino: Ino, from: u64) {
        let first = from / PAGE as u64;
        let before = self.pages.len();
        self.pages.retain(|&(i, p), _| i != ino || p < first);
        PAGE_CACHE.uncharge((before - self.pages.len()) * COST);
    }

    /// The page `(ino, index)`, made (zeroed) if need be; `None` if there
    /// is no room.
    fn page_mut(&mut self, ino: Ino, index: u64) -> Option<&mut [u8; PAGE]> {
        let key = (ino, index);
        if !self.pages.contains_key(&key) {
            self.make_room().ok()?;
            self.pages.try_reserve(1).ok()?;
            self.order.try_reserve(1).ok()?;
            let page = try_zeroed_page()?;
            PAGE_CACHE.try_charge_or(COST, ENOMEM).ok()?;
            self.pages.insert(key, page);
            self.order.push_back(key);
        }
        self.pages.get_mut(&key).map(|b| &mut **b)
    }

    /// Drops the oldest pages until one more fits in the quota.
    fn make_room(&mut self) -> Result<(), Errno> {
        while PAGE_CACHE.used() + COST > PAGE_CACHE.limit() {
            let key = self.order.pop_front().ok_or(ENOMEM)?;
            if self.pages.remove(&key).is_some() {
                PAGE_CACHE.uncharge(COST);
            }
        }
        // The order list keeps entries of dropped pages: keep it from
        // growing past twice the pages.
        if self.order.len() > 2 * self.pages.len() + 64 {
            let pages = &self.pages;
            self.order.retain(|k| pages.contains_key(k));
        }
        Ok(())
    }
}

/// A zeroed page from the heap, or `None`.
fn try_zeroed_page() -> Option<Box<[u8; PAGE]>> {
    let mut v: Vec<u8> = Vec::new();
    v.try_reserve_exact(PAGE).ok()?;
    v.resize(PAGE, 0);
    v.into_boxed_slice().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_quota<R>(bytes: usize, f: impl FnOnce() -> R) -> R {
        // Tests share the static quota: serialise them.
        static LOCK: spin::Mutex<()> = spin::Mutex::new(());
        let _g = LOCK.lock();
        PAGE_CACHE.set_limit(bytes);
        f()
    }

    fn read_all(c: &mut PageCache, ino: Ino, off: u64, len: usize) -> Option<Vec<u8>> {
        let mut out = alloc::vec![0u8; len];
        let n = c.read(ino, off, len, |at, d| {
            out[at..at + d.len()].copy_from_slice(d)
        })?;
        out.truncate(n);
        Some(out)
    }

    #[test]
    fn fill_then_hit_and_end_of_file() {
        with_quota(1 << 20, || {
            let mut c = PageCache::new();
            let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
            assert_eq!(read_all(&mut c, 7, 0, 10), None);
            c.fill(7, 0, &data, 10_000);
            assert_eq!(c.pages(), 3);
            assert_eq!(read_all(&mut c, 7, 4090, 20).unwrap(), &data[4090..4110]);
            // Past the end: short, then nothing.
            assert_eq!(read_all(&mut c, 7, 9_990, 100).unwrap(), &data[9_990..]);
            assert_eq!(read_all(&mut c, 7, 20_000, 100).unwrap(), b"");
            assert_eq!(c.stats(), (3, 1));
            drop(c);
            assert_eq!(PAGE_CACHE.used(), 0);
        });
    }

    #[test]
    fn writes_update_pages_and_size() {
        with_quota(1 << 20, || {
            let mut c = PageCache::new();
            c.fill(1, 0, &[1u8; 100], 100);
            c.wrote(1, 100, 50, &[9u8; 4100]);
            // The second page lies past the old end: cached too.
            assert_eq!(c.size(1), Some(4150));
            assert!(c.covers(1, 0, 4150));
            assert_eq!(read_all(&mut c, 1, 4096, 100).unwrap(), [9u8; 54]);
            let head = read_all(&mut c, 1, 0, 100).unwrap();
            assert_eq!(&head[..50], &[1u8; 50][..]);
            assert_eq!(&head[50..], &[9u8; 50][..]);
            // Shrinking drops the page holding the new end too.
            c.set_size(1, 10);
            assert_eq!(read_all(&mut c, 1, 0, 100), None);
            c.fill(1, 0, &[3u8; 10], 10);
            assert_eq!(read_all(&mut c, 1, 0, 100).unwrap(), [3u8; 10]);
            c.forget(1);
            assert_eq!(c.pages(), 0);
            assert_eq!(read_all(&mut c, 1, 0, 1), None);
        });
    }

    #[test]
    fn writes_fill_whole_pages_and_never_guess() {
        with_quota(1 << 20, || {
            let mut c = PageCache::new();
            // An unknown file of 10000 bytes: a whole page written is
            // cached, a partial one inside the old end is not.
            c.wrote(5, 10_000, 4096, &[7u8; 4096]);
            c.wrote(5, 10_000, 10, &[8u8; 10]);
            assert_eq!(c.size(5), Some(10_000));
            assert!(c.covers(5, 4096, 4096));
            assert!(!c.covers(5, 0, 20));
            // Appends: each page is past the old end.
            c.wrote(6, 0, 0, &[1u8; 3000]);
            c.wrote(6, 3000, 3000, &[2u8; 3000]);
            let all = read_all(&mut c, 6, 0, 6000).unwrap();
            assert_eq!(&all[..3000], &[1u8; 3000][..]);
            assert_eq!(&all[3000..], &[2u8; 3000][..]);
        });
    }

    #[test]
    fn a_short_page_inside_the_file_is_not_cached() {
        with_quota(1 << 20, || {
            let mut c = PageCache::new();
            c.fill(2, 0, &[5u8; 5000], 9000);
            assert_eq!(c.pages(), 1);
            assert!(c.covers(2, 0, 4096));
            assert!(!c.covers(2, 4096, 1));
            // Unaligned fills are ignored.
            c.fill(2, 100, &[5u8; 4096], 9000);
            assert_eq!(c.pages(), 1);
        });
    }

    #[test]
    fn the_quota_evicts_oldest_first() {
        with_quota(3 * COST, || {
            let mut c = PageCache::new();
            for p in 0..5u64 {
                c.fill(3, p * PAGE as u64, &[p as u8; PAGE], 5 * PAGE as u64);
            }
            assert_eq!(c.pages(), 3);
            assert!(!c.covers(3, 0, 1));
            assert!(c.covers(3, 2 * PAGE as u64, 3 * PAGE));
            assert_eq!(PAGE_CACHE.used(), 3 * COST);
            with_zero_limit_nothing_is_cached(&mut c);
        });
    }

    fn with_zero_limit_nothing_is_cached(c: &mut PageCache) {
        c.forget(3);
        PAGE_CACHE.set_limit(0);
        c.fill(4, 0, &[1u8; PAGE], PAGE as u64);
        assert_eq!(c.pages(), 0);
        assert_eq!(PAGE_CACHE.used(), 0);
    }
}
