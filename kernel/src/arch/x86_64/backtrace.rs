//! Walking the kernel's own stack by its frame pointers (the kernel is
//! built with `-C force-frame-pointers=yes`), for the panic handler.
//!
//! Each frame starts with the caller's `rbp` and, above it, the return
//! address. The walk trusts nothing it reads: a frame must lie in the
//! kernel half, 8-byte aligned, above the previous one and within
//! [`STACK_SPAN`] of where the walk started (the stack it runs on), and it
//! stops after [`MAX_FRAMES`], so a corrupt chain ends the walk instead of
//! faulting or looping.

use core::arch::asm;

/// Most frames printed.
pub const MAX_FRAMES: usize = 32;
/// How far above the walker's own stack pointer a frame may lie: more
/// than any kernel stack (32 KiB) and the IST stacks, so every frame of
/// the stack the walk runs on is reached, and nothing far away is read.
const STACK_SPAN: u64 = 256 * 1024;
/// First address of the kernel half.
const KERNEL_HALF: u64 = 0xFFFF_8000_0000_0000;

/// Calls `f(depth, return_address)` for each frame above the caller's,
/// innermost first.
#[inline(never)]
pub fn walk(mut f: impl FnMut(usize, u64)) {
    let (mut rbp, rsp): (u64, u64);
    // SAFETY: reads two registers; no memory is touched.
    unsafe {
        asm!("mov {}, rbp", "mov {}, rsp", out(reg) rbp, out(reg) rsp, options(nomem, nostack))
    };
    let limit = rsp.saturating_add(STACK_SPAN);
    for depth in 0..MAX_FRAMES {
        if rbp < KERNEL_HALF
            || rbp < rsp
            || !rbp.is_multiple_of(8)
            || rbp.saturating_add(16) > limit
        {
            return;
        }
        // SAFETY: `rbp` is 8-aligned and the 16 bytes at it lie between
        // this function's stack pointer and STACK_SPAN above it: on the
        // stack this code runs on, which is mapped; reading does not
        // change it.
        let (next, ret) = unsafe {
            (
                core::ptr::read_volatile(rbp as *const u64),
                core::ptr::read_volatile((rbp + 8) as *const u64),
            )
        };
        if ret < KERNEL_HALF {
            return;
        }
        f(depth, ret);
        if next <= rbp {
            return;
        }
        rbp = next;
    }
}
