//! Interrupt and exception entry: the IDT, one assembly stub per vector, and
//! the common path that saves every register into a [`TrapFrame`] and hands
//! it to the kernel's trap handler (see [`super::entry_points`]).

use super::gdt::{self, KERNEL_CODE};
use core::arch::naked_asm;
use core::cell::UnsafeCell;

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 32;
/// Vector of the reschedule IPI (another CPU queued work).
pub const RESCHEDULE_VECTOR: u8 = 0xF0;
/// Vector of APIC spurious interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// First vector handed out to devices (see [`super::irq`]).
pub const DEVICE_VECTOR_FIRST: u8 = 33;
/// Last vector handed out to devices; above it are the IPIs.
pub const DEVICE_VECTOR_LAST: u8 = 0xEF;
/// Bytes between two device stubs in [`device_stubs`].
const DEVICE_STUB_SIZE: u64 = 16;

/// Registers saved on entry, in the order the common stub pushes them,
/// followed by what the CPU pushed.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Whether the CPU was in user mode when the trap happened.
    pub fn is_from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// Common path of every vector. Entered with the vector number and an error
/// code (real or 0) pushed above the CPU's frame.
#[unsafe(naked)]
unsafe extern "C" fn trap_common() {
    naked_asm!(
        // [rsp+24] is the saved CS: from user mode, switch to the kernel GS.
        "test qword ptr [rsp + 24], 3",
        "jz 2f",
        "swapgs",
        "2:",
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rbp",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov rdi, rsp",
        "cld",
        "call kernel_trap_entry",
        ".global trap_return",
        "trap_return:",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rbp",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        "add rsp, 16",
        "test qword ptr [rsp + 8], 3",
        "jz 3f",
        "swapgs",
        "3:",
        "iretq",
    );
}

unsafe extern "C" {
    /// The label inside [`trap_common`] that restores a [`TrapFrame`] and
    /// returns with `iretq`. New tasks start by "returning" through it.
    pub fn trap_return();
}

macro_rules! stub {
    ($name:ident, $vector:literal, error) => {
        #[unsafe(naked)]
        unsafe extern "C" fn $name() {
            naked_asm!(
                concat!("push ", stringify!($vector)),
                "jmp {common}",
                common = sym trap_common,
            );
        }
    };
    ($name:ident, $vector:literal) => {
        #[unsafe(naked)]
        unsafe extern "C" fn $name() {
            naked_asm!(
                "push 0",
                concat!("push ", stringify!($vector)),
                "jmp {common}",
                common = sym trap_common,
            );
        }
    };
}

macro_rules! stubs {
    ($($name:ident = $vector:literal $(, $err:ident)?;)*) => {
        $( stub!($name, $vector $(, $err)?); )*
        const STUBS: &[(u8, unsafe extern "C" fn())] = &[$(($vector, $name)),*];
    };
}

stubs! {
    divide_error = 0;
    debug = 1;
    nmi = 2;
    breakpoint = 3;
    overflow = 4;
    bound_range = 5;
    invalid_opcode = 6;
    device_not_available = 7;
    double_fault = 8, error;
    coprocessor_segment_overrun = 9;
    invalid_tss = 10, error;
    segment_not_present = 11, error;
    stack_segment_fault = 12, error;
    general_protection = 13, error;
    page_fault = 14, error;
    reserved_15 = 15;
    x87_floating_point = 16;
    alignment_check = 17, error;
    machine_check = 18;
    simd_floating_point = 19;
    virtualization = 20;
    control_protection = 21, error;
    reserved_22 = 22;
    reserved_23 = 23;
    reserved_24 = 24;
    reserved_25 = 25;
    reserved_26 = 26;
    reserved_27 = 27;
    hypervisor_injection = 28;
    vmm_communication = 29, error;
    security = 30, error;
    reserved_31 = 31;
    timer = 32;
    reschedule = 240;
    spurious = 255;
}

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct GateDescriptor {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl GateDescriptor {
    const MISSING: Self = Self {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt_gate(handler: u64, ist: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector: KERNEL_CODE,
            ist,
            type_attr: 0x8E, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

/// One stub per device vector, [`DEVICE_STUB_SIZE`] bytes apart: push a
/// zero error code and the vector, then the common path. `push imm32`
/// sign-extends, which is harmless for vectors below 0x80000000.
#[unsafe(naked)]
unsafe extern "C" fn device_stubs() {
    naked_asm!(
        ".set vec, {first}",
        ".rept {count}",
        ".balign 16",
        "push 0",
        ".byte 0x68", // push imm32, fixed size whatever the vector
        ".long vec",
        "jmp {common}",
        ".set vec, vec + 1",
        ".endr",
        first = const DEVICE_VECTOR_FIRST,
        count = const DEVICE_VECTOR_LAST - DEVICE_VECTOR_FIRST + 1,
        common = sym trap_common,
    );
}

struct Idt(UnsafeCell<[GateDescriptor; 256]>);
// SAFETY: written only by `init` on the boot CPU before interrupts are on.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([GateDescriptor::MISSING; 256]));

/// Fills and loads the IDT. Vectors without a stub stay not-present, so a
/// stray interrupt there raises #GP/#NP, which is handled.
pub fn init() {
    // SAFETY: boot CPU, interrupts off, nothing reads the IDT yet; every
    // gate points at a stub defined above.
    unsafe {
        let idt = &mut *IDT.0.get();
        for &(vector, stub) in STUBS {
            let ist = match vector {
                8 => gdt::IST_DOUBLE_FAULT,
                2 => gdt::IST_NMI,
                _ => 0,
            };
            idt[usize::from(vector)] =
                GateDescriptor::interrupt_gate(stub as *const () as u64, ist);
        }
        let base = device_stubs as *const () as u64;
        // The stubs are laid out from a 16-byte boundary; a function that
        // does not start on one would shift them all.
        assert_eq!(base % DEVICE_STUB_SIZE, 0, "device stubs misaligned");
        for vector in DEVICE_VECTOR_FIRST..=DEVICE_VECTOR_LAST {
            let stub = base + u64::from(vector - DEVICE_VECTOR_FIRST) * DEVICE_STUB_SIZE;
            idt[usize::from(vector)] = GateDescriptor::interrupt_gate(stub, 0);
        }
    }
    load();
}

/// Loads the (already filled) IDT on this CPU.
pub fn load() {
    let ptr = gdt::DescriptorTablePointer {
        limit: (core::mem::size_of::<[GateDescriptor; 256]>() - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the IDT is filled by `init` on the boot CPU before any other
    // CPU starts, and never written again; `ptr` describes it.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack)) };
}

/// Human name of an exception vector (`abi::status::exception_name`,
/// which user space shares to describe a killed child).
pub fn exception_name(vector: u64) -> &'static str {
    u8::try_from(vector).map_or("interrupt", abi::status::exception_name)
}
