//! Host tests of the backend against a mock kernel whose threads are real
//! `std` threads: the poller runs truly in parallel with the test, which
//! plays user space, so the wake-up protocol is exercised harder than on
//! the one-CPU kernel.

use super::*;
use abi::errno::Errno;
use abi::io_uring::{header, op, sq_flags, Cqe, Sqe};
use abi::ring_api::{setup_flags, DEFAULT_IDLE_MS};
use core::sync::atomic::AtomicUsize;
use kernel_core::ring::{mock_ring_mapping, IoEnv, MockEnv, RingObject, ThreadBody};
use std::sync::{Condvar, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the mock process's memory starts (params live there).
const MEM: u64 = 0x10_0000;

/// What every host of one test shares: wake-ups, threads, the clock.
struct Kernel {
    wakes: StdMutex<u64>,
    woken: Condvar,
    threads: StdMutex<Vec<(u64, JoinHandle<()>)>>,
    next_tid: AtomicU64,
    start: Instant,
    cpus: u32,
    /// Ring memories not freed yet.
    live: Arc<AtomicUsize>,
}

impl Kernel {
    fn new() -> Arc<Kernel> {
        Kernel::with_cpus(1)
    }

    /// A kernel with `cpus` CPUs: with more than one, pollers spin between
    /// passes instead of yielding (no other task ever wants their CPU).
    fn with_cpus(cpus: u32) -> Arc<Kernel> {
        Arc::new(Kernel {
            wakes: StdMutex::new(0),
            woken: Condvar::new(),
            threads: StdMutex::new(Vec::new()),
            next_tid: AtomicU64::new(100),
            start: Instant::now(),
            cpus,
            live: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Waits for every thread started so far to end.
    fn join_threads(&self) {
        let threads = core::mem::take(&mut *self.threads.lock().unwrap());
        for (_, t) in threads {
            t.join().expect("a kernel thread panicked");
        }
    }

    /// Ring memories not freed yet.
    fn live_rings(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Threads started and not joined yet.
    fn live_threads(&self) -> usize {
        self.threads.lock().unwrap().len()
    }
}

struct MockHost {
    kernel: Arc<Kernel>,
    pid: u64,
    env: MockEnv,
    /// The user mapping of the context (`USER_RING_CONTEXT_BASE`), holding
    /// its memory as the kernel's address space does.
    views: Option<RingMapping>,
    /// The system ring's (`USER_SYSTEM_RING_BASE`).
    system_views: Option<RingMapping>,
}

impl MockHost {
    fn process(kernel: &Arc<Kernel>, pid: u64) -> MockHost {
        MockHost {
            kernel: kernel.clone(),
            pid,
            env: MockEnv::new(MEM, 4096),
            views: None,
            system_views: None,
        }
    }

    /// The context's memory as user space sees it.
    fn views(&self) -> RingMapping {
        self.views.clone().expect("no ring mapped")
    }
}

impl RingHost for MockHost {
    fn pid(&self) -> u64 {
        self.pid
    }
    fn now_ns(&self) -> u64 {
        self.kernel.start.elapsed().as_nanos() as u64
    }
    fn env(&mut self, _pid: u64) -> Option<&mut dyn IoEnv> {
        Some(&mut self.env)
    }
    fn map_ring(&mut self, addr: u64) -> Result<RingMapping, Errno> {
        let slot = match addr {
            USER_RING_CONTEXT_BASE => &mut self.views,
            USER_SYSTEM_RING_BASE => &mut self.system_views,
            _ => panic!("a ring mapped at {addr:#x}"),
        };
        if slot.is_some() {
            return Err(EEXIST);
        }
        let mapping = mock_ring_mapping(&self.kernel.live);
        *slot = Some(mapping.clone());
        Ok(mapping)
    }
    fn unmap_ring(&mut self, addr: u64) -> Result<(), Errno> {
        let slot = match addr {
            USER_RING_CONTEXT_BASE => &mut self.views,
            USER_SYSTEM_RING_BASE => &mut self.system_views,
            _ => panic!("a ring unmapped at {addr:#x}"),
        };
        slot.take().map(drop).ok_or(EINVAL)
    }
    fn install_fd(&mut self, _: BackendKind, _: u64, _: RingObject) -> Result<i32, Errno> {
        Err(EOPNOTSUPP)
    }
    fn ring_of_fd(&mut self, _: BackendKind, _: i32) -> Result<RingObject, Errno> {
        Err(EOPNOTSUPP)
    }
    fn wait(&mut self, _key: u64, ready: &mut dyn FnMut() -> bool) {
        loop {
            let seen = *self.kernel.wakes.lock().unwrap();
            if ready() {
                return;
            }
            let wakes = self.kernel.wakes.lock().unwrap();
            drop(self.kernel.woken.wait_while(wakes, |w| *w == seen).unwrap());
        }
    }
    fn wake(&mut self, _key: u64) {
        *self.kernel.wakes.lock().unwrap() += 1;
        self.kernel.woken.notify_all();
    }
    fn forget_wait(&mut self, _key: u64) {}
    fn arm_timer(&mut self, _deadline: u64) {}
    fn cpus(&self) -> u32 {
        self.kernel.cpus
    }
    fn spawn_thread(
        &mut self,
        name: &str,
        cpu: Option<u32>,
        body: ThreadBody,
    ) -> Result<u64, Errno> {
        if cpu.is_some_and(|c| c >= self.kernel.cpus) {
            return Err(EINVAL);
        }
        let mut host = MockHost {
            kernel: self.kernel.clone(),
            pid: 0,
            env: MockEnv::new(0, 0),
            views: None,
            system_views: None,
        };
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&mut host))
            .map_err(|_| ENOMEM)?;
        let tid = self.kernel.next_tid.fetch_add(1, Ordering::Relaxed);
        self.kernel.threads.lock().unwrap().push((tid, handle));
        Ok(tid)
    }
    fn join_thread(&mut self, tid: u64) {
        let mut threads = self.kernel.threads.lock().unwrap();
        let index = threads.iter().position(|(t, _)| *t == tid);
        let handle = index.map(|i| threads.remove(i).1);
        drop(threads);
        if let Some(handle) = handle {
            handle.join().expect("a kernel thread panicked");
        }
    }
    fn yield_now(&mut self) {
        std::thread::yield_now();
    }
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

/// `ring_setup` with `params` placed in the process's memory; returns the
/// params as the kernel left them.
fn setup(
    backend: &SqPoll,
    host: &mut MockHost,
    params: RingSetupParams,
) -> Result<RingSetupParams, Errno> {
    host.env.write_user(MEM, params.as_bytes()).unwrap();
    backend.setup(host, args(&[MEM]))?;
    let mut out = RingSetupParams::default();
    host.env.read_user(MEM, out.as_mut_bytes()).unwrap();
    Ok(out)
}

fn params(entries: u32, flags: u32, idle_ms: u32) -> RingSetupParams {
    RingSetupParams {
        sq_entries: entries,
        flags,
        sq_thread_idle_ms: idle_ms,
        ..RingSetupParams::default()
    }
}

fn nop(user_data: u64) -> Sqe {
    Sqe {
        opcode: op::NOP,
        user_data,
        ..Sqe::default()
    }
}

/// User space's SQPOLL submission: publish, fence, ring only if the poller
/// asked for it. Returns whether it rang.
fn submit(backend: &SqPoll, host: &mut MockHost, sqe: &Sqe) -> bool {
    let mapping = host.views();
    let ring = mapping.shared();
    assert!(ring.user_push_sqe(sqe), "SQ full");
    core::sync::atomic::fence(Ordering::SeqCst);
    if ring.sq_header(header::FLAGS) & sq_flags::NEED_WAKEUP != 0 {
        backend.enter(host, args(&[0, 0])).unwrap();
        return true;
    }
    false
}

/// Spins until a CQE arrives, for at most `limit`.
fn await_cqe(ring: &SharedRing, limit: Duration) -> Option<Cqe> {
    let start = Instant::now();
    loop {
        if let Some(cqe) = ring.user_pop_cqe() {
            return Some(cqe);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::yield_now();
    }
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    true
}

#[test]
fn kind_is_sqpoll() {
    assert_eq!(BACKEND.kind(), BackendKind::SqPoll);
}

#[test]
fn setup_fills_params_and_allows_one_context_per_process() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    let out = setup(&backend, &mut host, params(5, 0, 0)).unwrap();
    assert_eq!((out.sq_entries, out.cq_entries), (8, 16));
    assert_eq!(out.ring_addr, USER_RING_CONTEXT_BASE);
    assert_eq!((out.sq_thread_id, out.sq_thread_idle_ms), (0, 0));
    assert_ne!(out.features & features::NODROP, 0);
    let mapping = host.views();
    let ring = mapping.shared();
    assert_eq!(ring.sq_header(header::ENTRIES), 8);
    assert_eq!(ring.sq_header(header::MASK), 7);
    assert_eq!(ring.cq_header(header::ENTRIES), 16);
    assert_eq!(
        setup(&backend, &mut host, params(8, 0, 0)),
        Err(EBUSY),
        "a second context"
    );
    // Another process has its own.
    let mut other = MockHost::process(&kernel, 8);
    assert!(setup(&backend, &mut other, params(1, 0, 0)).is_ok());
}

#[test]
fn setup_refuses_bad_pointers_and_flags_without_creating_anything() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    for bad in [0, MEM - 8, MEM + 4096 - 63, u64::MAX - 7] {
        assert_eq!(backend.setup(&mut host, args(&[bad])), Err(EFAULT));
    }
    assert_eq!(
        setup(&backend, &mut host, params(8, 1 << 7, 0)),
        Err(EINVAL)
    );
    assert_eq!(setup(&backend, &mut host, params(0, 0, 0)), Err(EINVAL));
    assert_eq!(setup(&backend, &mut host, params(8, 0, 5)), Err(EINVAL));
    let aff = RingSetupParams {
        sq_thread_cpu: 1,
        ..params(8, setup_flags::SQPOLL | setup_flags::SQ_AFF, 0)
    };
    assert_eq!(setup(&backend, &mut host, aff), Err(EINVAL));
    assert!(host.views.is_none(), "a refused setup mapped memory");
    assert!(setup(&backend, &mut host, params(8, 0, 0)).is_ok());
}

#[test]
fn calls_without_a_context_are_enxio() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 3);
    assert_eq!(backend.enter(&mut host, args(&[0, 0])), Err(ENXIO));
    assert_eq!(backend.register(&mut host, args(&[8, 0, 0])), Err(ENXIO));
    // Exiting without a context is fine.
    backend.teardown(&mut host, 3);
}

#[test]
fn the_doorbell_consumes_everything_published() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    setup(&backend, &mut host, params(8, 0, 0)).unwrap();
    let mapping = host.views();
    let ring = mapping.shared();
    for i in 0..5 {
        assert!(ring.user_push_sqe(&nop(i)));
    }
    assert_eq!(backend.enter(&mut host, args(&[0, 0])), Ok(5));
    assert_eq!(backend.enter(&mut host, args(&[0, 0])), Ok(0));
    let got: Vec<u64> = ring.user_drain_cqes().iter().map(|c| c.user_data).collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    // GETEVENTS with min_complete met returns at once.
    assert!(ring.user_push_sqe(&nop(9)));
    let getevents = u64::from(enter_flags::GETEVENTS);
    assert_eq!(backend.enter(&mut host, args(&[getevents, 1])), Ok(1));
    assert_eq!(ring.user_pop_cqe().map(|c| c.user_data), Some(9));
    for flags in [1 << 3, u64::from(u32::MAX), 1 << 32] {
        assert_eq!(backend.enter(&mut host, args(&[flags, 0])), Err(EINVAL));
    }
    assert_eq!(
        backend.register(&mut host, args(&[12345, 0, 0])),
        Err(EINVAL)
    );
    backend.teardown(&mut host, 7);
    assert_eq!(backend.enter(&mut host, args(&[0, 0])), Err(ENXIO));
}

#[test]
fn the_poller_consumes_without_syscalls_and_stops_at_teardown() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    let out = setup(&backend, &mut host, params(8, setup_flags::SQPOLL, 0)).unwrap();
    assert_eq!(out.sq_thread_idle_ms, DEFAULT_IDLE_MS);
    assert_ne!(out.sq_thread_id, 0);
    assert_eq!(
        backend.poller_stats(7).map(|(tid, _)| tid),
        Some(out.sq_thread_id)
    );
    let mapping = host.views();
    let ring = mapping.shared();
    for i in 0..100 {
        assert!(
            !submit(&backend, &mut host, &nop(i)),
            "rang an awake poller"
        );
        let cqe = await_cqe(&ring, Duration::from_secs(5)).expect("the poller never took it");
        assert_eq!(cqe.user_data, i);
    }
    // SQ_WAIT: returns once the poller took everything.
    for i in 0..4 {
        assert!(ring.user_push_sqe(&nop(100 + i)));
    }
    let sq_wait = u64::from(enter_flags::SQ_WAIT | enter_flags::GETEVENTS);
    let consumed = backend.enter(&mut host, args(&[sq_wait, 4])).unwrap();
    assert!(consumed <= 4);
    assert_eq!(ring.user_drain_cqes().len(), 4);
    backend.teardown(&mut host, 7);
    kernel.join_threads();
}

#[test]
fn an_idle_poller_sets_need_wakeup_sleeps_and_the_doorbell_wakes_it() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    setup(&backend, &mut host, params(8, setup_flags::SQPOLL, 5)).unwrap();
    let mapping = host.views();
    let ring = mapping.shared();
    let asleep = || ring.sq_header(header::FLAGS) & sq_flags::NEED_WAKEUP != 0;
    assert!(wait_for(Duration::from_secs(5), asleep), "never slept");
    // Published without the doorbell: a sleeping poller does not see it.
    assert!(ring.user_push_sqe(&nop(1)));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ring.user_pop_cqe(), None);
    assert_eq!(backend.poller_stats(7).map(|(_, w)| w), Some(0));
    assert_eq!(backend.enter(&mut host, args(&[0, 0])), Ok(0));
    let cqe = await_cqe(&ring, Duration::from_secs(5)).expect("the doorbell did not wake it");
    assert_eq!(cqe.user_data, 1);
    assert!(wait_for(Duration::from_secs(5), || backend
        .poller_stats(7)
        .is_some_and(|(_, w)| w == 1)));
    backend.teardown(&mut host, 7);
    kernel.join_threads();
}

#[test]
fn the_wake_up_race_loses_nothing() {
    wake_up_race(Kernel::new());
}

#[test]
fn the_wake_up_race_loses_nothing_with_a_spinning_poller() {
    wake_up_race(Kernel::with_cpus(2));
}

/// 3000 submissions landing before, during and after the poller goes to
/// sleep after its 1 ms idle time: each must be taken.
fn wake_up_race(kernel: Arc<Kernel>) {
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    setup(&backend, &mut host, params(8, setup_flags::SQPOLL, 1)).unwrap();
    let mapping = host.views();
    let ring = mapping.shared();
    let mut rang = 0;
    let mut seed = 0x1234_5678u64;
    for round in 0..3000u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Land anywhere around the 1 ms idle boundary.
        std::thread::sleep(Duration::from_micros(seed % 1500));
        if submit(&backend, &mut host, &nop(round)) {
            rang += 1;
        }
        match await_cqe(&ring, Duration::from_secs(5)) {
            Some(cqe) => assert_eq!(cqe.user_data, round),
            None => panic!("round {round}: the SQE was left behind (rang {rang} times)"),
        }
    }
    let (_, wakeups) = backend.poller_stats(7).unwrap();
    assert!(rang > 0 && wakeups > 0, "the poller never slept");
    backend.teardown(&mut host, 7);
    kernel.join_threads();
}

#[test]
fn teardown_stops_a_sleeping_poller() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    setup(&backend, &mut host, params(8, setup_flags::SQPOLL, 1)).unwrap();
    let mapping = host.views();
    let ring = mapping.shared();
    assert!(wait_for(Duration::from_secs(5), || ring
        .sq_header(header::FLAGS)
        & sq_flags::NEED_WAKEUP
        != 0));
    backend.teardown(&mut host, 7);
    assert_eq!(
        kernel.live_threads(),
        0,
        "teardown returned before the join"
    );
    assert_eq!(backend.poller_stats(7), None);
}

#[test]
fn system_ring_is_apart_from_the_context_and_rung_with_its_flag() {
    use abi::ring_api::enter_flags::{GETEVENTS, SYSTEM_RING};
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    // Without one, its doorbell is ENXIO; the context's is too.
    assert_eq!(
        backend.enter(&mut host, args(&[u64::from(SYSTEM_RING), 0])),
        Err(ENXIO)
    );
    let ring = backend.setup_system_ring(&mut host).unwrap();
    assert_eq!(ring.addr, USER_SYSTEM_RING_BASE);
    assert_eq!(
        (ring.sq_entries, ring.cq_entries),
        (SYSTEM_RING_ENTRIES, 2 * SYSTEM_RING_ENTRIES)
    );
    assert_eq!(backend.setup_system_ring(&mut host), Err(EBUSY));
    assert_eq!(
        backend.enter(&mut host, args(&[0, 0])),
        Err(ENXIO),
        "no context yet"
    );
    // The program's own context is still there to be set up, at its address.
    let out = setup(&backend, &mut host, params(4, 0, 0)).unwrap();
    assert_eq!(out.ring_addr, USER_RING_CONTEXT_BASE);

    // An SQE in the system ring is consumed by the system doorbell only.
    let system_mapping = host.system_views.clone().expect("system ring mapped");
    let system = system_mapping.shared();
    assert!(system.user_push_sqe(&nop(41)));
    assert_eq!(
        backend.enter(&mut host, args(&[0, 0])),
        Ok(0),
        "the context's doorbell"
    );
    assert_eq!(system.user_pop_cqe(), None);
    let flags = u64::from(SYSTEM_RING | GETEVENTS);
    assert_eq!(backend.enter(&mut host, args(&[flags, 1])), Ok(1));
    let cqe = system.user_pop_cqe().expect("a CQE in the system ring");
    assert_eq!((cqe.user_data, cqe.res), (41, 0));
    assert_eq!(
        host.views().shared().user_pop_cqe(),
        None,
        "nothing in the context"
    );

    // Teardown ends both.
    backend.teardown(&mut host, 7);
    assert_eq!(
        backend.enter(&mut host, args(&[u64::from(SYSTEM_RING), 0])),
        Err(ENXIO)
    );
    assert_eq!(backend.enter(&mut host, args(&[0, 0])), Err(ENXIO));
}

#[test]
fn close_ends_the_context_and_its_poller_and_allows_a_new_one() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    let close = |backend: &SqPoll, host: &mut MockHost, arg: u64, nr: u64| {
        backend.register(host, args(&[u64::from(CONTEXT_CLOSE), arg, nr]))
    };
    assert_eq!(close(&backend, &mut host, 0, 0), Err(ENXIO), "no context");
    let out = setup(&backend, &mut host, params(8, setup_flags::SQPOLL, 1000)).unwrap();
    assert_ne!(out.sq_thread_id, 0);
    submit(&backend, &mut host, &nop(1));
    let cqe = await_cqe(&host.views().shared(), Duration::from_secs(5)).expect("the poller's CQE");
    assert_eq!(cqe.user_data, 1);
    assert_eq!(close(&backend, &mut host, 1, 0), Err(EINVAL));
    assert_eq!(close(&backend, &mut host, 0, 1), Err(EINVAL));
    assert_eq!(kernel.live_threads(), 1, "the poller runs");
    assert_eq!(close(&backend, &mut host, 0, 0), Ok(0));
    assert_eq!(kernel.live_threads(), 0, "the poller was joined");
    assert!(host.views.is_none(), "the memory was unmapped");
    assert_eq!(backend.enter(&mut host, args(&[0, 0])), Err(ENXIO));
    assert_eq!(close(&backend, &mut host, 0, 0), Err(ENXIO), "closed twice");
    // A new context, at the same address, works.
    let out = setup(&backend, &mut host, params(4, 0, 0)).unwrap();
    assert_eq!(out.ring_addr, USER_RING_CONTEXT_BASE);
    let mapping = host.views();
    let ring = mapping.shared();
    assert!(ring.user_push_sqe(&nop(2)));
    let flags = u64::from(abi::ring_api::enter_flags::GETEVENTS);
    assert_eq!(backend.enter(&mut host, args(&[flags, 1])), Ok(1));
    assert_eq!(ring.user_pop_cqe().map(|c| c.user_data), Some(2));
    backend.teardown(&mut host, 7);
}

#[test]
fn close_unmaps_at_once_and_the_memory_goes_with_its_last_holder() {
    let kernel = Kernel::new();
    let backend = SqPoll::new();
    let mut host = MockHost::process(&kernel, 7);
    setup(&backend, &mut host, params(8, setup_flags::SQPOLL, 1000)).unwrap();
    assert_eq!(kernel.live_rings(), 1);
    // What the timer pass holds while it works on a context.
    let held = backend.context(7).unwrap();
    // Closing does not wait for it: only the user's side goes.
    let close = args(&[u64::from(CONTEXT_CLOSE), 0, 0]);
    assert_eq!(backend.register(&mut host, close), Ok(0));
    assert!(host.views.is_none(), "user space still sees it");
    assert_eq!(kernel.live_threads(), 0, "the poller was joined");
    assert_eq!(kernel.live_rings(), 1, "freed under a holder");
    assert_eq!(held.shared().sq_header(header::ENTRIES), 8);
    // A new context is new memory.
    setup(&backend, &mut host, params(4, 0, 0)).unwrap();
    assert_eq!(kernel.live_rings(), 2);
    assert_eq!(host.views().shared().sq_header(header::ENTRIES), 4);
    drop(held);
    assert_eq!(kernel.live_rings(), 1, "not freed with its last holder");
    backend.teardown(&mut host, 7);
    host.views = None;
    assert_eq!(kernel.live_rings(), 0, "leaked at teardown");
}
