//! The `syscall` instruction's entry: MSR set-up and the naked stub that
//! moves to the task's kernel stack, saves the user registers into a
//! [`SyscallFrame`] and calls the safe dispatcher `crate::syscall::dispatch`.
//!
//! The frame holds the registers the kernel may clobber (the System V
//! caller-saved ones, which the syscall ABI preserves for user space) and
//! what `syscall` moved (`rip` in `rcx`, `rflags` in `r11`, the user stack).
//! The callee-saved registers (`rbx`, `rbp`, `r12`-`r15`) are not saved:
//! the dispatcher, like any `extern "C"` function, returns them unchanged,
//! and a task switched away inside a call gets them back from the context
//! switch. So the user's values are what `sysret` returns to, and no kernel
//! value is left in any register but `rax` (the result).

use super::cpu::{PERCPU_KERNEL_RSP, PERCPU_USER_RSP};
use super::gdt::{KERNEL_CODE, USER_BASE};
use core::arch::naked_asm;
use x86_64::registers::model_specific::Msr;

const IA32_EFER: u32 = 0xC000_0080;
const IA32_STAR: u32 = 0xC000_0081;
const IA32_LSTAR: u32 = 0xC000_0082;
const IA32_FMASK: u32 = 0xC000_0084;

/// User registers at syscall entry. `rax` holds the number on entry and the
/// result on exit; `rip`/`rflags` come from `rcx`/`r11`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SyscallFrame {
    pub r9: u64,
    pub r8: u64,
    pub r10: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rax: u64,
    pub rip: u64,
    pub rflags: u64,
    pub rsp: u64,
}

#[unsafe(naked)]
unsafe extern "C" fn syscall_entry() {
    naked_asm!(
        "swapgs",
        "mov gs:[{user_rsp}], rsp",
        "mov rsp, gs:[{kernel_rsp}]",
        "push qword ptr gs:[{user_rsp}]",
        "push r11",
        "push rcx",
        "push rax",
        "push rdi",
        "push rsi",
        "push rdx",
        "push r10",
        "push r8",
        "push r9",
        "mov rdi, rsp",
        "cld",
        // The stack is 16-byte aligned here: ten pushes below the
        // aligned top of the kernel stack.
        "call kernel_syscall_entry",
        "pop r9",
        "pop r8",
        "pop r10",
        "pop rdx",
        "pop rsi",
        "pop rdi",
        "pop rax",
        "pop rcx",
        "pop r11",
        "pop rsp",
        "swapgs",
        "sysretq",
        user_rsp = const PERCPU_USER_RSP,
        kernel_rsp = const PERCPU_KERNEL_RSP,
    );
}

/// Enables `syscall`/`sysret` and points them at [`syscall_entry`].
pub fn init() {
    // SAFETY: sets the syscall MSRs to this kernel's GDT layout and entry
    // stub; FMASK clears IF, TF, DF and AC at entry so the stub runs with
    // interrupts off and a clean direction flag.
    unsafe {
        let mut efer = Msr::new(IA32_EFER);
        let value = efer.read();
        efer.write(value | 1); // SCE
        Msr::new(IA32_STAR).write((u64::from(USER_BASE) << 48) | (u64::from(KERNEL_CODE) << 32));
        Msr::new(IA32_LSTAR).write(syscall_entry as *const () as u64);
        Msr::new(IA32_FMASK).write((1 << 9) | (1 << 8) | (1 << 10) | (1 << 18));
    }
}
