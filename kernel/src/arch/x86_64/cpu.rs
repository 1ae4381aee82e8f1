//! Per-CPU state, reached through the GS base, and small CPU helpers.
//!
//! Each CPU owns one [`PerCpu`] block. In kernel mode `GS.base` points at it;
//! in user mode the kernel's value sits in `KERNEL_GS_BASE` and `swapgs` at
//! every entry and exit swaps the two. The syscall stub relies on the fixed
//! offsets of `kernel_rsp` and `user_rsp`.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;

/// Size of the stack the boot CPU starts on (it becomes its idle stack).
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

/// The boot CPU's first stack.
#[repr(C, align(16))]
pub struct BootStack(pub [u8; BOOT_STACK_SIZE]);

#[unsafe(no_mangle)]
pub static mut BOOT_STACK: BootStack = BootStack([0; BOOT_STACK_SIZE]);

const IA32_GS_BASE: u32 = 0xC000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xC000_0102;

/// Most CPUs the kernel brings up.
pub const MAX_CPUS: usize = 8;

/// Per-CPU block. `#[repr(C)]`: the syscall stub uses the offsets below.
#[repr(C)]
pub struct PerCpu {
    /// The block's own address (read through `gs:` to find it).
    self_ptr: AtomicU64,
    /// Top of the kernel stack of the task running on this CPU (syscall entry).
    pub kernel_rsp: AtomicU64,
    /// Scratch: the user stack pointer at syscall entry.
    pub user_rsp: AtomicU64,
    /// This CPU's index.
    pub id: u64,
    /// Address of the task running on this CPU (owned by the scheduler).
    pub current_task: AtomicU64,
    /// This CPU's local APIC id (for IPIs).
    apic_id: AtomicU64,
}

/// Offset of [`PerCpu::kernel_rsp`] for assembly.
pub const PERCPU_KERNEL_RSP: usize = core::mem::offset_of!(PerCpu, kernel_rsp);
/// Offset of [`PerCpu::user_rsp`] for assembly.
pub const PERCPU_USER_RSP: usize = core::mem::offset_of!(PerCpu, user_rsp);

const fn block(id: u64) -> PerCpu {
    PerCpu {
        self_ptr: AtomicU64::new(0),
        kernel_rsp: AtomicU64::new(0),
        user_rsp: AtomicU64::new(0),
        id,
        current_task: AtomicU64::new(0),
        apic_id: AtomicU64::new(0),
    }
}

static PER_CPU: [PerCpu; MAX_CPUS] = {
    let mut blocks = [const { block(0) }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        blocks[i] = block(i as u64);
        i += 1;
    }
    blocks
};

/// Points GS at CPU `cpu`'s block (called on that CPU).
pub fn init(cpu: usize) {
    let block = &PER_CPU[cpu];
    let addr = block as *const PerCpu as u64;
    block.self_ptr.store(addr, Ordering::Relaxed);
    // SAFETY: writing the GS base MSRs changes only what `gs:` addresses;
    // nothing in the kernel uses GS before this point, and from here on GS
    // is the per-CPU block as the rest of the kernel expects.
    unsafe {
        Msr::new(IA32_GS_BASE).write(addr);
        Msr::new(IA32_KERNEL_GS_BASE).write(0);
    }
}

/// This CPU's block.
#[inline]
pub fn this() -> &'static PerCpu {
    let addr: u64;
    // SAFETY: GS.base points at this CPU's `PerCpu` in kernel mode (set by
    // `init` before anything calls this), whose first field is its address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) addr, options(nostack, readonly, preserves_flags));
        &*(addr as *const PerCpu)
    }
}

/// Offset of [`PerCpu::current_task`] for the one-instruction read.
const PERCPU_CURRENT_TASK: usize = core::mem::offset_of!(PerCpu, current_task);

/// The value of this CPU's [`PerCpu::current_task`], read with one
/// instruction: code that is preempted and moved to another CPU around the
/// call still reads the block of a CPU it was running on at that instant
/// (two steps, finding the block and then reading it, could straddle a move).
#[inline]
pub fn current_task() -> u64 {
    let value: u64;
    // SAFETY: GS.base points at this CPU's `PerCpu` in kernel mode (set by
    // `init` before anything calls this); the offset is that of an
    // `AtomicU64` field, so the aligned 8-byte load is an atomic read.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{offset}]",
            out(reg) value,
            offset = const PERCPU_CURRENT_TASK,
            options(nostack, readonly, preserves_flags)
        );
    }
    value
}

/// Records this CPU's local APIC id (once its APIC is enabled).
pub fn set_apic_id(id: u8) {
    this().apic_id.store(u64::from(id), Ordering::Relaxed);
}

/// The local APIC id of CPU `cpu`.
pub fn apic_id_of(cpu: usize) -> u8 {
    PER_CPU[cpu].apic_id.load(Ordering::Relaxed) as u8
}

/// Sets the stack the next syscall from user mode lands on.
pub fn set_kernel_rsp(top: u64) {
    this().kernel_rsp.store(top, Ordering::Relaxed);
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects; CR4.TSD is clear so it is allowed.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Ends the machine. Under QEMU the isa-debug-exit device makes QEMU exit
/// with a status that says success or failure (`abi::debug_exit`). On
/// hardware without it, the CPU halts.
pub fn exit_machine(success: bool) -> ! {
    use abi::debug_exit::{FAILURE, PORT, SUCCESS};
    let mut port = x86_64::instructions::port::Port::<u32>::new(PORT);
    // SAFETY: the port is either QEMU's debug-exit device or unused.
    unsafe { port.write(if success { SUCCESS } else { FAILURE }) };
    halt_forever()
}
