//! [`IoMailbox`]: where the machine reports the I/O a ring's ops started.
//!
//! An op on a file whose I/O completes later (a block device) starts it
//! through [`IoEnv::start`](super::IoEnv::start) and stays pending in the
//! engine under a token. Whoever finishes the I/O (a device's interrupt
//! handler, a polling pass) calls [`IoMailbox::post`] with that token; the
//! ring's next pass ([`RingEngine::reap_io`](super::RingEngine::reap_io),
//! from `enter`, a waiter that woke, the SQPOLL poller or the kernel's ring
//! thread) takes the results under the ring's lock and posts the CQEs,
//! continuing links and releasing drains.
//!
//! `post` runs in interrupt context: it never allocates (the engine
//! reserves a slot for each I/O before it starts) and takes only this
//! mailbox's own lock, which nobody holds for long. Callers keep interrupts
//! off while they hold it (the kernel posts from interrupt handlers and
//! reaps with interrupts off).

use abi::errno::Errno;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The result an I/O finished with: bytes moved, or an error.
pub type IoResult = Result<u32, Errno>;

/// Finished I/Os of one ring, waiting for the ring's next pass.
#[derive(Debug, Default)]
pub struct IoMailbox {
    posts: spin::Mutex<Vec<(u64, IoResult)>>,
    /// Something was posted since the last take: a cheap check for pollers.
    full: AtomicBool,
    /// The wait-queue key of the ring's CQ waiters (the backend's choice),
    /// for the poster to wake.
    wait_key: AtomicU64,
}

impl IoMailbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports that the I/O with `token` finished with `result`. Each
    /// started I/O is posted exactly once. Never allocates while the
    /// engine's reservation holds; if it does not (a token nobody
    /// reserved), the post is dropped rather than allocating in interrupt
    /// context, and `false` is returned.
    pub fn post(&self, token: u64, result: IoResult) -> bool {
        let mut posts = self.posts.lock();
        if posts.len() == posts.capacity() {
            return false;
        }
        posts.push((token, result));
        self.full.store(true, Ordering::Release);
        true
    }

    /// Whether anything waits to be taken.
    #[inline]
    pub fn has_posts(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// The key the ring's CQ waiters sleep on.
    pub fn wait_key(&self) -> u64 {
        self.wait_key.load(Ordering::Relaxed)
    }

    /// Sets the key the ring's CQ waiters sleep on (the backend, once).
    pub fn set_wait_key(&self, key: u64) {
        self.wait_key.store(key, Ordering::Relaxed);
    }

    /// Makes room for `n` posts in all, so that `post` never allocates.
    pub(super) fn reserve(&self, n: usize) -> Result<(), Errno> {
        let mut posts = self.posts.lock();
        let more = n.saturating_sub(posts.len());
        posts.try_reserve(more).map_err(|_| abi::errno::ENOMEM)
    }

    /// Swaps the posts out into `into` (which must be empty and is given
    /// the mailbox's old buffer, so both keep their capacity).
    pub(super) fn take(&self, into: &mut Vec<(u64, IoResult)>) {
        debug_assert!(into.is_empty());
        let mut posts = self.posts.lock();
        // Keep the larger buffer in the mailbox: it must hold every I/O in
        // flight.
        if into.capacity() >= posts.capacity() {
            core::mem::swap(&mut *posts, into);
        } else {
            into.extend(posts.drain(..));
        }
        self.full.store(false, Ordering::Release);
    }
}
