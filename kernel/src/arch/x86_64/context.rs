//! Kernel context switch: callee-saved registers on the old stack, stack
//! pointer swap, callee-saved registers off the new stack.

use core::arch::naked_asm;

/// Saves the current kernel context, storing its stack pointer in
/// `*save_rsp`, and resumes the context whose stack pointer is `next_rsp`.
///
/// # Safety
/// `next_rsp` must be a stack pointer saved by `switch` (or prepared by
/// [`initial_stack`]) of a context that is not running; `save_rsp` must be
/// valid for a write. Interrupts must be off.
#[unsafe(naked)]
pub unsafe extern "C" fn switch(save_rsp: *mut u64, next_rsp: u64) {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    );
}

/// Entry of a new kernel thread: `r12` holds the function, `r13` its
/// argument (see [`initial_stack`]).
#[unsafe(naked)]
unsafe extern "C" fn kernel_thread_start() {
    naked_asm!(
        "mov rdi, r12",
        "mov rsi, r13",
        "call {start}",
        "ud2",
        start = sym crate::task::kernel_thread_main,
    );
}

/// Entry of a new user task: finish the switch, prepare the process's
/// first entry (its system ring), then leave through the trap exit path
/// with the frame placed above.
#[unsafe(naked)]
unsafe extern "C" fn user_task_start() {
    naked_asm!(
        "call {after}",
        "call {first_entry}",
        "jmp {trap_return}",
        after = sym crate::task::after_switch,
        first_entry = sym crate::task::first_entry,
        trap_return = sym super::idt::trap_return,
    );
}

/// Where a fresh context starts.
pub enum Start {
    /// A kernel thread running `crate::task::kernel_thread_main(f, arg)`.
    KernelThread { entry: u64, arg: u64 },
    /// Return through the trap exit path with the [`super::idt::TrapFrame`]
    /// that the caller placed directly above the switch frame.
    TrapReturn,
}

/// Builds the switch frame for a new context ending at `stack_top` and
/// returns the stack pointer to pass to [`switch`].
///
/// # Safety
/// `stack_top` must be 16-byte aligned with at least 56 bytes of writable
/// memory below it that nothing else uses. For [`Start::TrapReturn`] it is
/// the address of the trap frame.
pub unsafe fn initial_stack(stack_top: u64, start: Start) -> u64 {
    let (ret, r12, r13) = match start {
        Start::KernelThread { entry, arg } => (kernel_thread_start as *const () as u64, entry, arg),
        Start::TrapReturn => (user_task_start as *const () as u64, 0, 0),
    };
    // Layout popped by `switch`: r15 r14 r13 r12 rbx rbp, then `ret`, which
    // leaves the stack pointer at `stack_top` (16-byte aligned for the
    // thread's first call, or the start of the trap frame).
    let frame: [u64; 7] = [0, 0, r13, r12, 0, 0, ret];
    let rsp = stack_top - (frame.len() * 8) as u64;
    // SAFETY: the caller guarantees the memory below `stack_top` is ours.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), rsp as *mut u64, frame.len()) };
    rsp
}
