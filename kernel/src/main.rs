//! The kernel image: boots on x86_64 through multiboot2 (GRUB, BIOS or UEFI)
//! or PVH (`qemu -kernel`), sets up memory, interrupts, the scheduler and the
//! syscall interface, fills the RAM file system from the initrd and runs the
//! first user program.
//!
//! Design principles:
//! - Machine-specific code lives under [`arch`]; machine-independent logic
//!   lives in `kernel-core`, where the host can test it.
//! - Nothing a user program does can panic the kernel: user pointers go
//!   through [`usercopy`], faults in user mode end only that process.
//! - This crate is the only one that names concrete ring backends
//!   ([`rings`]).
//! - Unsafe code is denied except in [`arch`], [`mm`], [`usercopy`] and the
//!   context switch (`task::switch`), each allowed where it is declared.
//!
//! Layers, each using only those below it (no module imports one above):
//!
//! ```text
//! main        composition: arch's entry points -> boot, AP idle, syscall, trap
//! syscall     the syscall dispatcher          -> lifecycle rings process fs console task mm
//!                                                 usercopy time arch
//! trap        interrupts and exceptions; the timer tick runs the scheduler's
//!             sleepers, then the ring timer, then preempts
//!             (a user fault logs the program's backtrace through usercopy)
//!                                              -> lifecycle rings console process task usercopy time arch
//! lifecycle   process life cycle: spawn, first entry, exit (rings, then files,
//!             then the address space), wait, shutdown
//!                                              -> rings process fs console task mm usercopy arch
//! rings       ring backends' host: files, user memory and threads of a process;
//!             a ring descriptor releases its ring when dropped
//!                                              -> process fs task usercopy time arch
//! process     what a process holds: address space, files, family links
//!                                              -> fs task mm arch
//! fs          the mount table (RAM file system at /, disks at /disk...)
//!             and open files (console, RAM, disk files, disks, rings as
//!             opaque objects)                  -> diskfs fswork block console usercopy logger arch
//! diskfs      ext4 on the disks, called on the worker
//!                                              -> fswork block mm
//! fswork      the file-system worker thread    -> task
//! block       disks, their requests in flight, I/O from pinned user
//!             memory; results go to a ring's mailbox (with a wake
//!             function the ring layer gives) or a sleeping thread
//!                                              -> task usercopy mm arch
//! console     console input: devices' interrupts, the line discipline,
//!             readers of fd 0, Ctrl-C          -> task logger arch
//! task        scheduler, wait queues; a user task's process is data it keeps
//!             (of the type main names, `UserSide`) and never looks into
//!                                              -> time arch
//! blktest     disk-driver self test (blktest=) -> drivers task mm arch
//! drivers     device drivers (virtio-blk, NVMe) -> mm arch
//! usercopy, logger, time                       -> arch
//! arch + mm   the machine and memory: one layer; arch's page tables take
//!             frames from mm, mm reaches memory through arch's direct map
//! ```
//!
//! arch calls up only through the link names that [`arch::entry_points!`]
//! defines here; a fresh task starts in a function its creator names.
#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]
// Unsafe code only where it is the point (each module that may hold it says
// so where it is declared), so that it cannot creep into the rest.
#![deny(unsafe_code)]

extern crate alloc;

#[allow(
    unsafe_code,
    reason = "the machine: registers, descriptor tables, entry code"
)]
mod arch;
mod blktest;
mod block;
mod console;
mod diskfs;
mod drivers;
mod fs;
mod fswork;
mod lifecycle;
mod logger;
#[allow(unsafe_code, reason = "physical frames, the direct map and the heap")]
mod mm;
mod process;
mod rings;
mod syscall;
mod task;
mod time;
mod trap;
#[allow(
    unsafe_code,
    reason = "copies to and from user memory through the direct map"
)]
mod usercopy;

use core::sync::atomic::{AtomicBool, Ordering};

/// What the scheduler keeps for a user task: its process. Named here, where
/// the layers are composed, so that `task` stores it without naming the
/// layer above (it never looks inside) and `process` reaches it without a
/// type check.
type UserSide = process::Process;

arch::entry_points! {
    boot: kernel_main,
    ap: task::ap_idle,
    syscall: syscall::dispatch,
    trap: trap::dispatch,
}

/// The boot CPU's kernel, from the boot assembly in long mode on the boot
/// stack, with the boot protocol's magic and the physical address of its
/// information.
fn kernel_main(magic: u32, info: u32) -> ! {
    logger::init();
    arch::init_cpu();
    log::info!("kernel {} starting", env!("CARGO_PKG_VERSION"));

    let Some(boot) = arch::bootinfo::read(magic, u64::from(info)) else {
        panic!("unknown boot protocol (magic {magic:#x}); boot through multiboot2 or PVH");
    };
    // The screen first, so that what follows shows there too.
    let screen = boot.framebuffer.map(|(address, geometry)| {
        arch::framebuffer::init(address, geometry).map(|size| (size, geometry))
    });
    // The heap (which parsing needs) lives on the frame allocator.
    let mut modules = mm::frames::init(&boot);
    mm::heap::init_limits();
    // As with Linux, words after `--` are the first program's arguments.
    let (kernel_args, init_args) = split_cmdline(boot.cmdline());
    let (config, warnings) = kernel_core::bootparam::parse(kernel_args);
    log::set_max_level(config.log);
    log::info!(
        "boot: {} with command line {:?}",
        boot.protocol,
        boot.cmdline()
    );
    match screen {
        Some(Ok(((cols, rows), g))) => log::info!(
            "screen: {}x{} at {} bits per pixel, {cols}x{rows} characters",
            g.width,
            g.height,
            g.bits_per_pixel
        ),
        Some(Err(why)) => log::warn!("screen: the boot loader's framebuffer is not used: {why}"),
        None => log::info!("screen: none from the boot loader; the console is the serial port"),
    }
    if !logger::has_serial() {
        log::warn!("serial: no UART at COM1; the console is the screen alone");
    }
    for warning in boot.warnings.iter().flatten() {
        log::warn!("boot information: {warning}");
    }
    for warning in &warnings {
        log::warn!("{warning}");
    }
    task::init_limits(config.tasks_max);

    arch::apic::init();
    let cpus = arch::smp::start_aps(&boot, arch::cpu::MAX_CPUS);
    match arch::smp::madt(&boot) {
        Ok(madt) => {
            if arch::ioapic::init(madt) == 0 {
                log::warn!("acpi: the MADT lists no I/O APIC; legacy devices are polled");
            }
        }
        Err(why) => log::warn!("acpi: {why}; no I/O APIC, legacy devices are polled"),
    }
    // The APs needed the boot identity map to leave real mode; nothing does now.
    arch::paging::remove_identity_map();
    log::info!("cpus: {cpus} online");
    // Before the first process: PCI maps its windows in the shared kernel half.
    arch::pci::init(&boot);
    rings::init(&config);

    // The first module is the initrd: its files are copied, then its
    // frames go back to the allocator.
    let initrd = (!modules.is_empty()).then(|| modules.swap_remove(0));
    fs::init(initrd.as_ref().map(mm::frames::BootModule::bytes));
    if let Some(initrd) = initrd {
        mm::frames::release_module(initrd);
    }
    // The disks the drivers find, behind the block layer.
    block::init(drivers::probe_all());

    task::init();
    if let Some(disk) = &config.blktest {
        // The self test replaces the first program and powers off.
        blktest::start(disk);
        task::idle_loop()
    }
    if let Some(disk) = &config.blkfloor {
        // So does the floor measurement.
        blktest::start_floor(disk);
        task::idle_loop()
    }
    console::init();
    let mode = match config.syscall {
        kernel_core::ring::SyscallMode::RingBased if rings::active().is_none() => {
            log::error!("syscall=ring: no ring backend is compiled in; using direct syscalls");
            kernel_core::ring::SyscallMode::Direct
        }
        mode => mode,
    };
    log::info!("syscall mode: {}", mode.name());
    let mut argv: alloc::vec::Vec<alloc::vec::Vec<u8>> =
        alloc::vec![config.init.as_bytes().to_vec()];
    argv.extend(
        init_args
            .split_ascii_whitespace()
            .map(|a| a.as_bytes().to_vec()),
    );
    let plan = InitPlan {
        name: config.init.clone(),
        argv,
        mode,
        debug_panic: config.debug_panic,
        root: config.root.clone(),
    };
    if block::disks().is_empty() {
        start_init(plan);
    } else {
        // Mounting sleeps on the disks (and the file-system worker), which
        // this boot thread, about to become the idle loop, must not: a
        // kernel thread mounts them, then starts the first program.
        if let Err(e) = fswork::init() {
            log::error!("file-system worker: {e}; disks stay unmounted");
        }
        *INIT_PLAN.lock() = Some(plan);
        if let Err(e) = task::spawn_kernel_thread("mount", mount_then_init, 0) {
            log::error!("cannot start the mount thread: {e}");
            arch::cpu::exit_machine(false);
        }
    }
    task::idle_loop()
}

/// How to start the first program.
struct InitPlan {
    name: alloc::string::String,
    argv: alloc::vec::Vec<alloc::vec::Vec<u8>>,
    mode: kernel_core::ring::SyscallMode,
    debug_panic: bool,
    /// `root=`: the disk to mount at `/disk`.
    root: Option<alloc::string::String>,
}

static INIT_PLAN: spin::Mutex<Option<InitPlan>> = spin::Mutex::new(None);

/// The mount thread: mounts the disks' file systems, then starts the
/// first program.
fn mount_then_init(_: u64) {
    let plan = x86_64::instructions::interrupts::without_interrupts(|| INIT_PLAN.lock().take());
    let Some(plan) = plan else { return };
    fs::mount_disks(plan.root.as_deref());
    start_init(plan);
}

/// Starts the first program (the machine stops if it cannot).
fn start_init(plan: InitPlan) {
    let argv: alloc::vec::Vec<&[u8]> = plan.argv.iter().map(|a| a.as_slice()).collect();
    match lifecycle::spawn(&plan.name, &argv, None, plan.mode) {
        Ok(task) => {
            log::info!("init: started {:?} as pid {}", plan.name, task.id);
            if plan.debug_panic {
                debug_panic::trigger();
            }
        }
        Err(errno) => {
            log::error!("init: cannot start {:?}: {}", plan.name, errno);
            arch::cpu::exit_machine(false);
        }
    }
}

/// Splits the command line at the first `--` word: kernel parameters
/// before it, the first program's arguments after it.
fn split_cmdline(cmdline: &str) -> (&str, &str) {
    let mut offset = 0;
    for word in cmdline.split_ascii_whitespace() {
        // `word` is a subslice of `cmdline`: find where it starts.
        let start = word.as_ptr() as usize - cmdline.as_ptr() as usize;
        if word == "--" {
            return (&cmdline[..start], &cmdline[start + 2..]);
        }
        offset = start + word.len();
    }
    (&cmdline[..offset], "")
}

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    if !PANICKING.swap(true, Ordering::SeqCst) {
        match info.location() {
            Some(l) => logger::emergency_print(format_args!(
                "\nKERNEL PANIC at {}:{}:{}: {}\n",
                l.file(),
                l.line(),
                l.column(),
                info.message()
            )),
            None => logger::emergency_print(format_args!("\nKERNEL PANIC: {}\n", info.message())),
        }
        // One line per frame, in the form `cargo xtask` symbolizes
        // (`BACKTRACE kernel #N ADDRESS`).
        arch::backtrace::walk(|depth, ret| {
            logger::emergency_print(format_args!("BACKTRACE kernel #{depth} {ret:#x}\n"))
        });
    }
    arch::cpu::exit_machine(false)
}

/// The `debug_panic=boot` test: a panic a few calls deep, so the backtrace
/// it prints has frames to name. Each function stays a frame of its own.
mod debug_panic {
    #[inline(never)]
    pub fn trigger() {
        outer(core::hint::black_box(3));
    }

    #[inline(never)]
    fn outer(depth: u32) {
        inner(core::hint::black_box(depth));
    }

    #[inline(never)]
    fn inner(depth: u32) {
        panic!("debug_panic=boot: a deliberate kernel panic ({depth} frames down)");
    }
}
