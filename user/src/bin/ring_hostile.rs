//! `ring_hostile [SEED] [ROUNDS] [iouring|api|sqpoll|system]`: treats its
//! own ring memory as hostile input for the kernel, then exits 0.
//!
//! The third argument picks the ring system: io_uring rings (the default),
//! the process's Ring API context driven by the doorbell (`api`) or by an
//! SQPOLL poller (`sqpoll`), which then reads the scribbled memory
//! concurrently, whenever it likes; or (`system`) the process's system ring
//! in `SyscallMode::RingBased`, rung through registered ring 0 or
//! `SYSTEM_RING`. In `system` mode it prints nothing (its own output would
//! go through the ring it breaks) and reports only through its exit code;
//! without a system ring (direct mode) it checks that both system-ring
//! doorbells are refused and exits.
//!
//! For ROUNDS rounds (default 4000), driven by a xorshift generator seeded
//! with SEED (default 1), it writes random and boundary values into every
//! header word (heads, tails, masks, entry counts, flags, counters), the SQ
//! index array and the SQE slots, and calls io_uring_enter and
//! io_uring_register with random arguments. It also creates and closes
//! rings along the way. `ring_tests` runs it and checks that it exits 0
//! (the kernel neither crashed nor killed it) and that no memory leaked.
//!
//! Nothing here ever waits: GETEVENTS always comes with min_complete 0, and
//! the Ring API's SQ_WAIT is never passed (with a scribbled tail it could
//! wait for a very long time, harming only this process). SQE
//! addresses are random 64-bit values (never mapped), boundary values
//! (unmapped) or point into the ring mappings themselves (which only the
//! kernel and this program's volatile/atomic accesses touch), and no SQE
//! names fd 0-2 or creates a file, so the kernel's answers cannot disturb
//! the console or the file system (MKDIRAT, UNLINKAT and RENAMEAT get
//! only unmapped path addresses: they fail at prep with `EFAULT`).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use abi::io_uring::{enter_flags, header, op, register, ring_layout, Sqe};
use abi::open_flags::{O_CREAT, O_RDWR, O_TRUNC};
use abi::ring_api::{self, RingSetupParams};
use alloc::vec::Vec;
use libuser::fs::File;
use libuser::sys::KERNEL_HALF;
use libuser::uring::{self, IoUring, Queue};
use libuser::{println, sys, Args};

libuser::entry!(main);

/// xorshift64*: small, fixed-seed, good enough to shake a kernel.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A 32-bit value: random, small, or a boundary.
    fn word(&mut self) -> u32 {
        match self.below(6) {
            0 => self.next() as u32,
            1 => self.below(16) as u32,
            2 => self.pick(&[
                0,
                1,
                255,
                256,
                257,
                4096,
                0x7fff_ffff,
                0x8000_0000,
                u32::MAX - 1,
                u32::MAX,
            ]),
            3 => (self.next() as u32) | 0x8000_0000,
            4 => self.below(600) as u32,
            _ => self.below(1 << 20) as u32,
        }
    }
}

/// Which ring system this run attacks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    IoUring,
    RingApi {
        sqpoll: bool,
    },
    /// The system ring of a backend (`abi::syscall::backend` value).
    System {
        backend: u64,
    },
}

/// The live rings, their descriptors and a scratch file.
struct World {
    mode: Mode,
    rings: Vec<IoUring>,
    file_fd: i32,
    setups: u32,
}

impl World {
    /// An address for an SQE or register argument: never memory this
    /// program uses as Rust data (see the module docs).
    fn address(&self, rng: &mut Rng) -> u64 {
        match rng.below(6) {
            0 => rng.next(),
            1 => rng.below(0x1000),
            2 => rng.pick(&[
                KERNEL_HALF,
                u64::MAX - 7,
                abi::layout::USER_END - 8,
                abi::layout::USER_STACK_TOP,
            ]),
            _ if matches!(self.mode, Mode::System { .. }) => {
                // Inside (or just past) the system ring.
                abi::layout::USER_SYSTEM_RING_BASE + rng.below(ring_layout::SIZE + 64)
            }
            _ if self.mode != Mode::IoUring => {
                // Inside (or just past) the Ring API context.
                abi::layout::USER_RING_CONTEXT_BASE + rng.below(ring_layout::SIZE + 64)
            }
            _ => {
                // Inside (or just past) a ring mapping.
                let slot = rng.below(ring_layout::MAX_RINGS_PER_PROCESS);
                abi::layout::USER_IO_URING_BASE
                    + slot * ring_layout::RING_SLOT_STRIDE
                    + rng.below(ring_layout::SIZE + 64)
            }
        }
    }

    /// An address that is never mapped (the first cases of
    /// [`World::address`]).
    fn unmapped(&self, rng: &mut Rng) -> u64 {
        match rng.below(3) {
            0 => rng.next() | abi::layout::USER_END,
            1 => rng.below(0x1000),
            _ => rng.pick(&[
                KERNEL_HALF,
                u64::MAX - 7,
                abi::layout::USER_END - 8,
                abi::layout::USER_STACK_TOP,
            ]),
        }
    }

    fn fd(&self, rng: &mut Rng) -> i32 {
        let ring_fd = |w: &World, rng: &mut Rng| {
            if w.rings.is_empty() || w.mode != Mode::IoUring {
                -1
            } else {
                w.rings[rng.below(w.rings.len() as u64) as usize].fd() as i32
            }
        };
        let fd = match rng.below(5) {
            0 => self.file_fd,
            1 => ring_fd(self, rng),
            2 => rng.pick(&[-1, -100, 63, 64, 1000, i32::MIN, i32::MAX]),
            3 => rng.below(64) as i32,
            _ => rng.next() as i32,
        };
        // Never the console.
        if (0..=2).contains(&fd) {
            self.file_fd
        } else {
            fd
        }
    }

    fn random_sqe(&self, rng: &mut Rng) -> Sqe {
        let opcode = if rng.below(4) == 0 {
            rng.next() as u8
        } else {
            rng.below(u64::from(op::LAST) + 2) as u8
        };
        let mut op_flags = rng.word();
        if opcode == op::OPENAT {
            op_flags &= !(O_CREAT as u32);
        }
        Sqe {
            opcode,
            flags: rng.next() as u8,
            ioprio: rng.word() as u16,
            fd: self.fd(rng),
            off: if rng.below(2) == 0 {
                rng.next()
            } else {
                u64::from(rng.word())
            },
            addr: if opcode == op::TIMEOUT_REMOVE || opcode == op::ASYNC_CANCEL {
                rng.below(8)
            } else if [op::MKDIRAT, op::UNLINKAT, op::RENAMEAT].contains(&opcode) {
                // Ring memory could read as a short path: never name one.
                self.unmapped(rng)
            } else {
                self.address(rng)
            },
            len: rng.word(),
            op_flags,
            user_data: rng.next(),
            buf_index: rng.below(8) as u16,
            personality: rng.word() as u16,
            file_index: rng.word() as i32,
            addr3: self.address(rng),
            pad: rng.next(),
        }
    }
}

/// Results of the random calls, for the summary line.
#[derive(Default)]
struct Tally {
    /// Rounds that had a ring to work on.
    rounds: u32,
    ok: u32,
    errors: [u32; 8],
    other_errors: u32,
    cqes: u32,
}

impl Tally {
    fn note<T>(&mut self, result: Result<T, libuser::Errno>) {
        use abi::errno::*;
        let tracked = [
            EINVAL, EBADF, EFAULT, EBUSY, EMFILE, ENOMEM, ENXIO, EOPNOTSUPP,
        ];
        match result {
            Ok(_) => self.ok += 1,
            Err(e) => match tracked.iter().position(|&t| t == e) {
                Some(i) => self.errors[i] += 1,
                None => self.other_errors += 1,
            },
        }
    }
}

fn new_ring(world: &mut World, rng: &mut Rng, tally: &mut Tally) {
    let entries = rng.pick(&[1, 2, 8, 32, 256, 1000]);
    if world.setups >= 20 {
        return;
    }
    world.setups += 1;
    match world.mode {
        // The system ring is the kernel's: there is no other to set up.
        Mode::System { .. } => {}
        Mode::IoUring => {
            if let Ok(ring) = IoUring::setup(entries, 0) {
                world.rings.push(ring);
            }
        }
        Mode::RingApi { sqpoll } => {
            // The first succeeds; later ones (random flags included) must
            // fail without disturbing the live context.
            let mut flags = if sqpoll {
                ring_api::setup_flags::SQPOLL
            } else {
                0
            };
            if !world.rings.is_empty() && rng.below(2) == 0 {
                flags = rng.word();
            }
            let params = RingSetupParams {
                sq_entries: entries,
                flags,
                sq_thread_idle_ms: if flags & ring_api::setup_flags::SQPOLL != 0 {
                    1 + rng.below(20) as u32
                } else {
                    0
                },
                ..RingSetupParams::default()
            };
            match IoUring::setup_ring_api(params) {
                Ok((ring, _)) => world.rings.push(ring),
                Err(e) => tally.note::<()>(Err(e)),
            }
        }
    }
}

#[allow(unsafe_code)] // scribbling on ring memory and registering raw ranges is the point
fn round(world: &mut World, rng: &mut Rng, tally: &mut Tally) {
    if world.rings.is_empty() || rng.below(800) == 0 {
        new_ring(world, rng, tally);
    }
    if world.rings.is_empty() {
        return;
    }
    tally.rounds += 1;
    let index = rng.below(world.rings.len() as u64) as usize;
    let ring = &world.rings[index];
    let queue = if rng.below(2) == 0 {
        Queue::Submission
    } else {
        Queue::Completion
    };
    match rng.below(16) {
        0..=3 => {
            let word = rng.pick(&[
                header::HEAD,
                header::TAIL,
                header::MASK,
                header::ENTRIES,
                header::FLAGS,
                header::DROPPED,
                header::OVERFLOW,
            ]);
            let value = match rng.below(3) {
                // Near the current value, so the kernel sees plausible lies.
                0 => ring
                    .header_word(queue, word)
                    .unwrap_or(0)
                    .wrapping_add(rng.below(600) as u32)
                    .wrapping_sub(300),
                _ => rng.word(),
            };
            // SAFETY: every SQE slot of every ring only ever holds SQEs made
            // by `random_sqe`, whose addresses are all harmless (module docs).
            unsafe { ring.write_header_word(queue, word, value) };
        }
        4..=5 => {
            let position = rng.next() as u32;
            // SAFETY: as above.
            unsafe { ring.write_sq_array(position, rng.word()) };
        }
        6..=8 => {
            let sqe = world.random_sqe(rng);
            let slot = rng.next() as u32;
            // SAFETY: as above; `random_sqe` names only harmless memory.
            unsafe { ring.write_sqe_slot(slot, &sqe) };
        }
        9 => {
            let mut words = [0u64; 8];
            for w in &mut words {
                *w = rng.next();
            }
            let mut sqe = Sqe::from_words(words);
            if sqe.opcode == op::OPENAT {
                sqe.op_flags &= !(O_CREAT as u32);
            }
            if (0..=2).contains(&sqe.fd) {
                sqe.fd = -1;
            }
            // SAFETY: random 64-bit addresses are never mapped here (a
            // 1-in-2^40 chance at most); the fd and OPENAT fix-ups keep the
            // console and the file system out of it.
            unsafe { ring.write_sqe_slot(rng.next() as u32, &sqe) };
        }
        10..=12 => {
            let fd = if rng.below(8) == 0 {
                world.fd(rng) as u64
            } else {
                ring.fd()
            };
            let to_submit = rng.word();
            let mut flags = if rng.below(4) == 0 {
                rng.word()
            } else {
                rng.below(8) as u32
            };
            if rng.below(3) == 0 {
                flags &= enter_flags::SUPPORTED;
            }
            if world.mode != Mode::IoUring {
                flags &= !ring_api::enter_flags::SQ_WAIT;
            }
            // min_complete is only ever nonzero without GETEVENTS: never wait.
            let min_complete = if flags & enter_flags::GETEVENTS != 0 {
                0
            } else {
                rng.word()
            };
            match world.mode {
                Mode::IoUring => tally.note(uring::enter(fd, to_submit, min_complete, flags)),
                Mode::RingApi { .. } => tally.note(uring::ring_enter(flags, min_complete)),
                Mode::System { backend } if backend == abi::syscall::backend::IO_URING => {
                    // Mostly registered ring 0, sometimes another index.
                    let any = rng.next();
                    let index = rng.pick(&[0, 0, 0, 1, 15, 16, any]);
                    let flags = flags | enter_flags::REGISTERED_RING;
                    tally.note(uring::enter(index, to_submit, min_complete, flags));
                }
                Mode::System { .. } => {
                    let flags = flags | ring_api::enter_flags::SYSTEM_RING;
                    tally.note(uring::ring_enter(flags, min_complete));
                }
            }
        }
        13 => {
            let any = rng.word();
            let opcode = rng.pick(&[
                register::REGISTER_BUFFERS,
                register::UNREGISTER_BUFFERS,
                register::REGISTER_FILES,
                register::UNREGISTER_FILES,
                register::REGISTER_PROBE,
                any,
            ]);
            let arg = world.address(rng);
            let nr = rng.word() % 2048;
            // SAFETY: `address` names only harmless memory (module docs); a
            // registered range inside a ring mapping is ring memory.
            tally.note(unsafe { ring.register(opcode, arg, nr) });
        }
        14 => {
            let ring = &mut world.rings[index];
            for _ in 0..rng.below(300) {
                if ring.pop_cqe().is_none() {
                    break;
                }
                tally.cqes += 1;
            }
        }
        _ => {
            // io_uring rings and Ring API contexts (CONTEXT_CLOSE, which
            // unmaps it; the next round sets up a new one) are closed now
            // and then; the system ring cannot be.
            if rng.below(100) == 0 && !matches!(world.mode, Mode::System { .. }) {
                let ring = world.rings.swap_remove(index);
                tally.note(ring.close());
            }
        }
    }
}

fn main(args: Args) -> i32 {
    let seed: u64 = args.get_str(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let rounds: u32 = args.get_str(2).and_then(|s| s.parse().ok()).unwrap_or(4000);
    let mode = match args.get_str(3) {
        Some("api") => Mode::RingApi { sqpoll: false },
        Some("sqpoll") => Mode::RingApi { sqpoll: true },
        Some("system") => Mode::System {
            backend: libuser::sysring::start_info().backend,
        },
        _ => Mode::IoUring,
    };
    if let Mode::System { .. } = mode {
        return attack_system_ring(seed, rounds);
    }
    let name = "rh_scratch";
    let Ok(file) = File::open(name, O_RDWR | O_CREAT | O_TRUNC) else {
        println!("ring_hostile: cannot create {name}");
        return 1;
    };
    let _ = sys::unlink(name);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut world = World {
        mode,
        rings: Vec::new(),
        file_fd: file.fd() as i32,
        setups: 0,
    };
    let mut tally = Tally::default();
    if mode == Mode::IoUring {
        for entries in [1, 8, 32, 256] {
            if let Ok(ring) = IoUring::setup(entries, 0) {
                world.setups += 1;
                world.rings.push(ring);
            }
        }
    } else {
        new_ring(&mut world, &mut rng, &mut tally);
    }
    for i in 0..rounds {
        round(&mut world, &mut rng, &mut tally);
        if (i + 1) % 1000 == 0 {
            println!("  ring_hostile {seed}: {} rounds", i + 1);
        }
    }
    println!(
        "  ring_hostile {seed}: {} of {rounds} rounds with a ring, {} ring setups ({} live), calls ok {}, \
         EINVAL {} EBADF {} EFAULT {} EBUSY {} EMFILE {} ENOMEM {} ENXIO {} EOPNOTSUPP {} other {}, {} CQEs reaped",
        tally.rounds,
        world.setups,
        world.rings.len(),
        tally.ok,
        tally.errors[0],
        tally.errors[1],
        tally.errors[2],
        tally.errors[3],
        tally.errors[4],
        tally.errors[5],
        tally.errors[6],
        tally.errors[7],
        tally.other_errors,
        tally.cqes
    );
    // Exit with the rings as they are: the kernel cleans up.
    core::mem::forget(world);
    0
}

/// `ring_hostile SEED ROUNDS system`: the rounds against the system ring.
/// Exit codes: 0 done (or no system ring and both of its doorbells
/// refused), 2 a doorbell answered although there is no system ring.
#[allow(unsafe_code)] // a second view of the system ring, to attack it
fn attack_system_ring(seed: u64, rounds: u32) -> i32 {
    let info = libuser::sysring::start_info();
    if !libuser::sysring::active() {
        let reg = enter_flags::REGISTERED_RING | enter_flags::GETEVENTS;
        let io_uring = uring::enter(0, 1, 0, reg);
        let ring_api = uring::ring_enter(ring_api::enter_flags::SYSTEM_RING, 0);
        return if io_uring.is_err() && ring_api.is_err() {
            0
        } else {
            2
        };
    }
    // SAFETY: `info` is this process's own StartInfo, and nothing here does
    // ordinary I/O until exit (the module docs): only the kernel's answers
    // to the scribbles are at stake.
    let Ok(ring) = (unsafe { IoUring::system_view(&info) }) else {
        return 3;
    };
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut world = World {
        mode: Mode::System {
            backend: info.backend,
        },
        rings: alloc::vec![ring],
        // No file of its own: opening one would go through the system ring.
        file_fd: -1,
        setups: 0,
    };
    let mut tally = Tally::default();
    for _ in 0..rounds {
        round(&mut world, &mut rng, &mut tally);
    }
    // Exit with the ring as it is: the kernel cleans up.
    core::mem::forget(world);
    0
}
