//! Host tests of the backend against a one-process mock kernel: ring
//! descriptors, the system ring and `IORING_ENTER_REGISTERED_RING`.

use super::*;
use abi::errno::Errno;
use abi::io_uring::{enter_flags, op, Sqe};
use kernel_core::ring::{leaked_ring_views, IoEnv, MockEnv, RingObject, ThreadBody};
use std::collections::HashMap as StdMap;

/// Where the mock process's memory starts (params live there).
const MEM: u64 = 0x10_0000;

/// One process: its memory, its descriptors and its mapped rings.
struct MockHost {
    pid: u64,
    env: MockEnv,
    fds: StdMap<i32, (BackendKind, u64, RingObject)>,
    maps: StdMap<u64, RingViews>,
}

impl MockHost {
    fn process(pid: u64) -> MockHost {
        MockHost {
            pid,
            env: MockEnv::new(MEM, 4096),
            fds: StdMap::new(),
            maps: StdMap::new(),
        }
    }

    fn ring_at(&self, addr: u64) -> kernel_core::ring::SharedRing<'static> {
        self.maps.get(&addr).expect("no ring mapped there").shared()
    }
}

impl RingHost for MockHost {
    fn pid(&self) -> u64 {
        self.pid
    }
    fn now_ns(&self) -> u64 {
        0
    }
    fn env(&mut self, _pid: u64) -> Option<&mut dyn IoEnv> {
        Some(&mut self.env)
    }
    fn map_ring(&mut self, addr: u64) -> Result<RingViews, Errno> {
        if self.maps.contains_key(&addr) {
            return Err(EEXIST);
        }
        let views = leaked_ring_views();
        self.maps.insert(addr, views);
        Ok(views)
    }
    fn unmap_ring(&mut self, addr: u64) -> Result<(), Errno> {
        self.maps.remove(&addr).map(drop).ok_or(EINVAL)
    }
    fn install_fd(&mut self, kind: BackendKind, id: u64, ring: RingObject) -> Result<i32, Errno> {
        let fd = (3..).find(|fd| !self.fds.contains_key(fd)).unwrap();
        self.fds.insert(fd, (kind, id, ring));
        Ok(fd)
    }
    fn ring_of_fd(&mut self, kind: BackendKind, fd: i32) -> Result<RingObject, Errno> {
        match self.fds.get(&fd) {
            None => Err(EBADF),
            Some((k, _, _)) if *k != kind => Err(EOPNOTSUPP),
            Some((_, _, ring)) => Ok(ring.clone()),
        }
    }
    fn wait(&mut self, _key: u64, ready: &mut dyn FnMut() -> bool) {
        assert!(
            ready(),
            "the mock kernel has one task: a wait would never end"
        );
    }
    fn wake(&mut self, _key: u64) {}
    fn forget_wait(&mut self, _key: u64) {}
    fn arm_timer(&mut self, _deadline: u64) {}
    fn cpus(&self) -> u32 {
        1
    }
    fn spawn_thread(&mut self, _: &str, _: Option<u32>, _: ThreadBody) -> Result<u64, Errno> {
        Err(EOPNOTSUPP)
    }
    fn join_thread(&mut self, _tid: u64) {}
    fn yield_now(&mut self) {}
    fn cpu_wanted(&self) -> bool {
        false
    }
    fn atomically(&mut self, f: &mut dyn FnMut(&mut dyn RingHost)) {
        f(self);
    }
}

fn args(words: &[u64]) -> RawArgs {
    let mut a = [0u64; 6];
    a[..words.len()].copy_from_slice(words);
    RawArgs(a)
}

fn nop(user_data: u64) -> Sqe {
    Sqe {
        opcode: op::NOP,
        user_data,
        ..Sqe::default()
    }
}

/// `io_uring_enter(fd, to_submit, min_complete, flags)`.
fn enter(
    backend: &IoUring,
    host: &mut MockHost,
    fd: u64,
    n: u64,
    flags: u32,
) -> Result<u64, Errno> {
    backend.enter(host, args(&[fd, n, n, u64::from(flags)]))
}

#[test]
fn the_system_ring_is_registered_ring_zero_and_nothing_else() {
    let backend = IoUring::new();
    let mut host = MockHost::process(7);
    let reg = enter_flags::REGISTERED_RING | enter_flags::GETEVENTS;
    // No system ring yet: slot 0 is empty.
    assert_eq!(enter(&backend, &mut host, 0, 0, reg), Err(EBADF));

    let ring = backend.setup_system_ring(&mut host).unwrap();
    assert_eq!(ring.addr, USER_SYSTEM_RING_BASE);
    assert_eq!(
        (ring.sq_entries, ring.cq_entries),
        (SYSTEM_RING_ENTRIES, 2 * SYSTEM_RING_ENTRIES)
    );
    assert_eq!(backend.setup_system_ring(&mut host), Err(EBUSY));
    assert!(host.fds.is_empty(), "the system ring took a descriptor");

    // An SQE in the system ring is consumed through registered ring 0, and
    // the index is the low 32 bits of fd.
    let system = host.ring_at(USER_SYSTEM_RING_BASE);
    assert!(system.user_push_sqe(&nop(41)));
    assert_eq!(enter(&backend, &mut host, 1 << 32, 1, reg), Ok(1));
    let cqe = system.user_pop_cqe().expect("a CQE in the system ring");
    assert_eq!((cqe.user_data, cqe.res), (41, 0));

    // Empty slots and slots past the table, as on Linux.
    for index in [1, 15] {
        assert_eq!(
            enter(&backend, &mut host, index, 0, reg),
            Err(EBADF),
            "{index}"
        );
    }
    for index in [16, 17, u64::from(u32::MAX)] {
        assert_eq!(
            enter(&backend, &mut host, index, 0, reg),
            Err(EINVAL),
            "{index}"
        );
    }
    // Descriptor 0 without the flag is not the system ring.
    assert_eq!(enter(&backend, &mut host, 0, 0, 0), Err(EBADF));

    // A ring the program sets up is apart: its own fd, its own slot.
    host.env
        .write_user(MEM, &[0u8; core::mem::size_of::<IoUringParams>()])
        .unwrap();
    let fd = backend.setup(&mut host, args(&[4, MEM])).unwrap();
    assert_eq!(fd, 3);
    let own = host.ring_at(USER_IO_URING_BASE);
    assert!(own.user_push_sqe(&nop(42)));
    assert!(system.user_push_sqe(&nop(43)));
    assert_eq!(
        enter(&backend, &mut host, fd, 1, enter_flags::GETEVENTS),
        Ok(1)
    );
    assert_eq!(own.user_pop_cqe().map(|c| c.user_data), Some(42));
    assert_eq!(
        system.user_pop_cqe(),
        None,
        "the program's ring took the system ring's SQE"
    );
    assert_eq!(enter(&backend, &mut host, 0, 1, reg), Ok(1));
    assert_eq!(system.user_pop_cqe().map(|c| c.user_data), Some(43));

    // Another process has none.
    let mut other = MockHost::process(8);
    assert_eq!(enter(&backend, &mut other, 0, 0, reg), Err(EBADF));

    // Teardown ends it.
    backend.teardown(&mut host, 7);
    assert_eq!(enter(&backend, &mut host, 0, 0, reg), Err(EBADF));
}
