//! Kernel contexts: a task's kernel stack ([`KernelStack`]), how a fresh
//! one starts ([`Start`]), and the switch between two ([`switch`]): callee-
//! saved registers on the old stack, stack pointer swap, callee-saved
//! registers off the new stack.
//!
//! Nothing here knows the scheduler: a fresh context starts in a function
//! the caller names, handed over in a callee-saved register.

use super::idt::TrapFrame;
use abi::errno::{Errno, ENOMEM};
use alloc::boxed::Box;
use core::arch::naked_asm;

/// Size of every task's kernel stack.
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
struct StackBytes([u8; KERNEL_STACK_SIZE]);

/// A task's kernel stack, owned: freed when dropped, which the scheduler
/// does only once no CPU runs on it.
pub struct KernelStack(Box<StackBytes>);

impl KernelStack {
    /// A zeroed stack; `ENOMEM` if the heap has no room for it.
    pub fn new() -> Result<Self, Errno> {
        let layout = core::alloc::Layout::new::<StackBytes>();
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc::alloc_zeroed(layout) } as *mut StackBytes;
        if raw.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `raw` was allocated by the global allocator with the layout
        // of `StackBytes` and is zeroed, a valid value of plain bytes.
        Ok(Self(unsafe { Box::from_raw(raw) }))
    }

    /// Top of the stack (exclusive), 16-byte aligned.
    pub fn top(&self) -> u64 {
        self.0 .0.as_ptr() as u64 + KERNEL_STACK_SIZE as u64
    }

    /// Lays out the stack so that the first [`switch`] to it starts
    /// `start`, and returns the stack pointer to switch to. Taking `&mut`
    /// makes sure that no context runs on the stack meanwhile.
    pub fn prepare(&mut self, start: Start) -> u64 {
        let bytes = &mut self.0 .0;
        let (ret, r12, below) = match start {
            Start::Call(main) => (
                call_start as *const () as u64,
                main as *const () as u64,
                bytes.len(),
            ),
            Start::TrapReturn { prepare, frame } => {
                let at = bytes.len() - core::mem::size_of::<TrapFrame>();
                let slot = &mut bytes[at..];
                // SAFETY: `slot` is exactly a `TrapFrame`'s size, inside this
                // stack, which `&mut self` gives us alone; it is 16-byte
                // aligned because the stack is and the frame is 176 bytes.
                unsafe { (slot.as_mut_ptr() as *mut TrapFrame).write(frame) };
                (
                    trap_return_start as *const () as u64,
                    prepare as *const () as u64,
                    at,
                )
            }
        };
        // Popped by `switch`: r15 r14 r13 r12 rbx rbp, then `ret`, which
        // leaves the stack pointer at `below` (16-byte aligned for the first
        // call, or the start of the trap frame).
        let words: [u64; 7] = [0, 0, 0, r12, 0, 0, ret];
        let at = below - core::mem::size_of_val(&words);
        let slot = &mut bytes[at..below];
        for (bytes, word) in slot.chunks_exact_mut(8).zip(words) {
            bytes.copy_from_slice(&word.to_ne_bytes());
        }
        slot.as_ptr() as u64
    }
}

/// How a fresh context starts, at the first [`switch`] to it.
pub enum Start {
    /// Calls the function (with interrupts off, as `switch` left them); it
    /// must finish the switch its caller began and never returns.
    Call(extern "C" fn() -> !),
    /// Calls `prepare` (with interrupts off; it must finish the switch its
    /// caller began), then leaves through the trap exit path with `frame`,
    /// which sits at the top of the stack.
    TrapReturn {
        prepare: extern "C" fn(),
        frame: TrapFrame,
    },
}

/// Saves the current kernel context, storing its stack pointer in
/// `*save_rsp`, and resumes the context whose stack pointer is `next_rsp`.
///
/// # Safety
/// `next_rsp` must be a stack pointer saved by `switch` (or returned by
/// [`KernelStack::prepare`]) of a context that is not running, whose stack
/// stays allocated while it runs; `save_rsp` must be valid for a write.
/// Interrupts must be off.
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

/// Start of a [`Start::Call`] context: `r12` holds the function.
#[unsafe(naked)]
unsafe extern "C" fn call_start() {
    naked_asm!("call r12", "ud2");
}

/// Start of a [`Start::TrapReturn`] context: `r12` holds `prepare`; the
/// trap frame lies right above.
#[unsafe(naked)]
unsafe extern "C" fn trap_return_start() {
    naked_asm!(
        "call r12",
        "jmp {trap_return}",
        trap_return = sym super::idt::trap_return,
    );
}
