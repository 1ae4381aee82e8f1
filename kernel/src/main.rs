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
#![no_std]
#![no_main]
#![forbid(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod arch;
mod bootinfo;
mod fs;
mod logger;
mod mm;
mod rings;
mod syscall;
mod task;
mod time;
mod trap;
mod usercopy;

use core::sync::atomic::{AtomicBool, Ordering};

/// Called by the boot assembly in long mode on the boot stack, with the boot
/// protocol's magic and the physical address of its information.
#[unsafe(no_mangle)]
pub extern "C" fn kernel_entry(magic: u32, info: u32) -> ! {
    logger::init();
    arch::init_cpu();
    log::info!("kernel {} starting", env!("CARGO_PKG_VERSION"));

    let Some(boot) = bootinfo::read(magic, u64::from(info)) else {
        panic!("unknown boot protocol (magic {magic:#x}); boot through multiboot2 or PVH");
    };
    // The heap (which parsing needs) lives on the frame allocator.
    mm::frames::init(&boot);
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
    for warning in boot.warnings.iter().flatten() {
        log::warn!("boot information: {warning}");
    }
    for warning in &warnings {
        log::warn!("{warning}");
    }

    arch::apic::init();
    let cpus = arch::smp::start_aps(&boot, arch::cpu::MAX_CPUS);
    // The APs needed the boot identity map to leave real mode; nothing does now.
    arch::paging::remove_identity_map();
    log::info!("cpus: {cpus} online");
    rings::init(&config);

    let initrd = boot.modules().first().copied();
    fs::init(initrd);
    if let Some(range) = initrd {
        mm::frames::release(range);
    }

    task::init();
    let mode = match config.syscall {
        kernel_core::ring::SyscallMode::RingBased if rings::active().is_none() => {
            log::error!("syscall=ring: no ring backend is compiled in; using direct syscalls");
            kernel_core::ring::SyscallMode::Direct
        }
        mode => mode,
    };
    log::info!("syscall mode: {}", mode.name());
    let init_name = config.init.as_str();
    let mut argv: alloc::vec::Vec<&[u8]> = alloc::vec![init_name.as_bytes()];
    argv.extend(init_args.split_ascii_whitespace().map(str::as_bytes));
    match task::spawn(init_name, &argv, None, mode) {
        Ok(task) => log::info!("init: started {init_name:?} as pid {}", task.id),
        Err(errno) => {
            log::error!("init: cannot start {init_name:?}: {}", errno);
            arch::cpu::exit_machine(false);
        }
    }
    task::idle_loop()
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

/// Ends the machine: success when `code` is 0.
pub fn shutdown(code: i32) -> ! {
    x86_64::instructions::interrupts::disable();
    log::info!(
        "shutdown: exit code {code}; task switches per CPU {:?}",
        task::switches_per_cpu()
    );
    arch::cpu::exit_machine(code == 0)
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
    }
    arch::cpu::exit_machine(false)
}
