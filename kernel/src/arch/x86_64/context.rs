//! Kernel contexts: a task's kernel stack ([`KernelStack`]), how a fresh
//! one starts ([`Start`]), and the switch between two ([`switch`]): callee-
//! saved registers on the old stack, stack pointer swap, callee-saved
//! registers off the new stack.
//!
//! Nothing here knows the scheduler: a fresh context starts in a function
//! the caller names, handed over in a callee-saved register.

use super::idt::TrapFrame;
use abi::errno::{Errno, ENOMEM};
use core::alloc::Layout;
use core::arch::naked_asm;

/// Size of a task's kernel stack, unless it asks for more
/// ([`KernelStack::with_size`]: the file-system worker, whose ext4 calls
/// need more than 40 KiB).
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

/// Alignment of every kernel stack.
const STACK_ALIGN: usize = 16;

/// A task's kernel stack, owned: freed when dropped, which the scheduler
/// does only once no CPU runs on it.
pub struct KernelStack {
    base: core::ptr::NonNull<u8>,
    size: usize,
}

// SAFETY: the stack is plain memory owned by this value alone; which CPU
// runs on it is the scheduler's business (it never moves a running one).
unsafe impl Send for KernelStack {}
// SAFETY: `&KernelStack` only reads `top`.
unsafe impl Sync for KernelStack {}

impl KernelStack {
    /// A zeroed stack of `size` bytes (rounded up to a multiple of 16, at
    /// least [`KERNEL_STACK_SIZE`]); `ENOMEM` if the heap has no room.
    pub fn with_size(size: usize) -> Result<Self, Errno> {
        let size = size.max(KERNEL_STACK_SIZE).next_multiple_of(STACK_ALIGN);
        let layout = Layout::from_size_align(size, STACK_ALIGN).map_err(|_| ENOMEM)?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc::alloc_zeroed(layout) };
        let base = core::ptr::NonNull::new(raw).ok_or(ENOMEM)?;
        Ok(Self { base, size })
    }

    /// Top of the stack (exclusive), 16-byte aligned.
    pub fn top(&self) -> u64 {
        self.base.as_ptr() as u64 + self.size as u64
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `base` points to `size` bytes allocated (zeroed, so
        // initialised) by `with_size` and owned by `self`, borrowed mutably.
        unsafe { core::slice::from_raw_parts_mut(self.base.as_ptr(), self.size) }
    }

    /// Lays out the stack so that the first [`switch`] to it starts
    /// `start`, and returns the stack pointer to switch to. Taking `&mut`
    /// makes sure that no context runs on the stack meanwhile.
    pub fn prepare(&mut self, start: Start) -> u64 {
        let bytes = self.bytes();
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

impl Drop for KernelStack {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_size` with this very layout (which was
        // valid then), and not used again.
        unsafe {
            alloc::alloc::dealloc(
                self.base.as_ptr(),
                Layout::from_size_align_unchecked(self.size, STACK_ALIGN),
            )
        };
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
