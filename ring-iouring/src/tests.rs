//! Host tests of the backend against a one-process mock kernel: ring
//! descriptors, the system ring and `IORING_ENTER_REGISTERED_RING`.

use super::*;
use abi::errno::Errno;
use abi::io_uring::{enter_flags, op, Sqe};
use core::sync::atomic::AtomicUsize;
use kernel_core::ring::{mock_ring_mapping, IoEnv, MockEnv, RingMapping, RingObject, ThreadBody};
use std::collections::HashMap as StdMap;

/// Where the mock process's memory starts (params live there).
const MEM: u64 = 0x10_0000;

/// One process: its memory, its descriptors and its mapped rings.
struct MockHost {
    pid: u64,
    env: MockEnv,
    fds: StdMap<i32, (BackendKind, u64, RingObject)>,
    /// The user mappings, each holding its ring's memory (as the kernel's
    /// address space does).
    maps: StdMap<u64, RingMapping>,
    /// Ring memories not freed yet.
    live: Arc<AtomicUsize>,
}

impl MockHost {
    fn process(pid: u64) -> MockHost {
        MockHost {
            pid,
            env: MockEnv::new(MEM, 4096),
            fds: StdMap::new(),
            maps: StdMap::new(),
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A handle on the ring mapped at `addr`, as user space sees it.
    fn ring_at(&self, addr: u64) -> RingMapping {
        self.maps.get(&addr).expect("no ring mapped there").clone()
    }

    /// Ring memories not freed yet.
    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
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
    fn map_ring(&mut self, addr: u64) -> Result<RingMapping, Errno> {
        if self.maps.contains_key(&addr) {
            return Err(EEXIST);
        }
        let mapping = mock_ring_mapping(&self.live);
        self.maps.insert(addr, mapping.clone());
        Ok(mapping)
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

/// `io_uring_setup(entries, params)` with zeroed params at `MEM`;
/// returns the descriptor and the ring's user address.
fn setup(backend: &IoUring, host: &mut MockHost, entries: u64) -> Result<(u64, u64), Errno> {
    host.env
        .write_user(MEM, &[0u8; core::mem::size_of::<IoUringParams>()])
        .unwrap();
    let fd = backend.setup(host, args(&[entries, MEM]))?;
    let mut params = IoUringParams::default();
    host.env.read_user(MEM, params.as_mut_bytes()).unwrap();
    Ok((fd, params.sq_off.user_addr))
}

/// Closes descriptor `fd` as the kernel does: the ring is released, then
/// the descriptor's reference to it goes.
fn close(backend: &IoUring, host: &mut MockHost, fd: u64) {
    let (_, id, object) = host.fds.remove(&(fd as i32)).expect("no such descriptor");
    let pid = host.pid;
    backend.release(host, pid, id);
    drop(object);
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
    let system_mapping = host.ring_at(USER_SYSTEM_RING_BASE);
    let system = system_mapping.shared();
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
    let fd = setup(&backend, &mut host, 4).unwrap().0;
    assert_eq!(fd, 3);
    let own_mapping = host.ring_at(USER_IO_URING_BASE);
    let own = own_mapping.shared();
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

#[test]
fn closed_rings_give_their_slot_back_and_the_bound_holds() {
    let backend = IoUring::new();
    let mut host = MockHost::process(7);
    let max = ring_layout::MAX_RINGS_PER_PROCESS;
    let mut fds = Vec::new();
    for slot in 0..max {
        let (fd, addr) = setup(&backend, &mut host, 1).unwrap();
        assert_eq!(
            addr,
            USER_IO_URING_BASE + slot * ring_layout::RING_SLOT_STRIDE
        );
        fds.push(fd);
    }
    assert_eq!(setup(&backend, &mut host, 1), Err(EMFILE));
    assert_eq!(host.live(), max as usize);

    // Closing one unmaps it, frees its memory and its slot.
    let third = fds.remove(2);
    close(&backend, &mut host, third);
    let third_addr = USER_IO_URING_BASE + 2 * ring_layout::RING_SLOT_STRIDE;
    assert!(!host.maps.contains_key(&third_addr), "still mapped");
    assert_eq!(host.live(), max as usize - 1);
    let (fd, addr) = setup(&backend, &mut host, 1).unwrap();
    assert_eq!(addr, third_addr, "the lowest free slot");
    assert_eq!(setup(&backend, &mut host, 1), Err(EMFILE));
    fds.push(fd);

    // Open and close many more than the bound, one at a time.
    close(&backend, &mut host, fds.pop().unwrap());
    for round in 0..100 {
        let (fd, addr) = setup(&backend, &mut host, 2).unwrap();
        assert_eq!(addr, third_addr, "round {round}");
        let ring = host.ring_at(addr);
        assert!(ring.shared().user_push_sqe(&nop(round)));
        assert_eq!(
            enter(&backend, &mut host, fd, 1, enter_flags::GETEVENTS),
            Ok(1)
        );
        assert_eq!(
            ring.shared().user_pop_cqe().map(|c| c.user_data),
            Some(round)
        );
        drop(ring);
        close(&backend, &mut host, fd);
    }
    assert_eq!(host.live(), max as usize - 1);

    // The others still work; the end of the process frees everything.
    let ring = host.ring_at(USER_IO_URING_BASE);
    assert!(ring.shared().user_push_sqe(&nop(1)));
    assert_eq!(enter(&backend, &mut host, fds[0], 1, 0), Ok(1));
    drop(ring);
    backend.teardown(&mut host, 7);
    host.fds.clear();
    host.maps.clear();
    assert_eq!(host.live(), 0, "ring memory leaked");
}

#[test]
fn a_closed_ring_keeps_its_memory_while_someone_holds_it() {
    let backend = IoUring::new();
    let mut host = MockHost::process(7);
    let (fd, addr) = setup(&backend, &mut host, 4).unwrap();
    // What the timer pass holds while it works on a ring.
    let held = backend
        .with_table(|t| t.rings.values().next().cloned())
        .unwrap();
    close(&backend, &mut host, fd);
    assert!(!host.maps.contains_key(&addr), "user space still sees it");
    assert_eq!(host.live(), 1, "freed under a holder");
    {
        let r = held.lock();
        let view = r.mapping.shared();
        assert_eq!(view.sq_header(abi::io_uring::header::ENTRIES), 4);
    }
    drop(held);
    assert_eq!(host.live(), 0, "not freed with its last holder");
}

#[test]
fn a_ring_released_by_another_thread_is_unmapped_by_the_next_setup() {
    let backend = IoUring::new();
    let mut host = MockHost::process(7);
    let (fd, addr) = setup(&backend, &mut host, 1).unwrap();
    // Released from a thread with no caller: it cannot unmap.
    let (_, id, object) = host.fds.remove(&(fd as i32)).unwrap();
    host.pid = 0;
    backend.release(&mut host, 7, id);
    drop(object);
    host.pid = 7;
    assert!(
        host.maps.contains_key(&addr),
        "unmapped from another thread"
    );
    assert_eq!(host.live(), 1);
    // The owner's next setup unmaps it and reuses its slot.
    let (_, again) = setup(&backend, &mut host, 1).unwrap();
    assert_eq!(again, addr);
    assert_eq!(host.live(), 1, "the old memory was not freed");
    backend.teardown(&mut host, 7);
}
