//! `crash MODE`: makes the CPU raise an exception in user mode, which must
//! kill the process. MODE is one of
//!
//! | mode     | what it does                            | vector |
//! |----------|-----------------------------------------|--------|
//! | `null`   | reads address 0                         | 14 #PF |
//! | `kwrite` | writes to the kernel half               | 14 #PF |
//! | `priv`   | executes the privileged `hlt`           | 13 #GP |
//! | `ud`     | executes `ud2`                          | 6 #UD  |
//! | `div0`   | divides by zero                         | 0 #DE  |
//! | `stack`  | recurses until the stack guard page     | 14 #PF |
//!
//! `panic` panics instead, which must end the process through libuser's
//! panic handler with exit code 101.
//!
//! If the fault does not happen the program exits 0, which the tests read
//! as a failure (they expect `abi::status::KILLED_BASE + vector`); an
//! unknown mode exits 2.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use libuser::{eprintln, println, Args};

libuser::entry!(main);

fn main(args: Args) -> i32 {
    let Some(mode) = args.get_str(1) else {
        eprintln!("usage: crash null|kwrite|priv|ud|div0|stack|panic");
        return 2;
    };
    println!("crash: {mode}");
    match mode {
        "null" => fault::read_null(),
        "kwrite" => fault::write_kernel(),
        "priv" => fault::halt(),
        "ud" => fault::undefined_opcode(),
        "div0" => fault::divide_by_zero(),
        "panic" => panic!("crash was asked to panic"),
        "stack" => {
            let depth = overflow_stack(0);
            println!("crash: recursion ended at depth {depth}");
        }
        _ => {
            eprintln!("crash: unknown mode {mode}");
            return 2;
        }
    }
    println!("crash: {mode} did not fault");
    0
}

/// Recurses with a 1 KiB frame until the stack runs into its guard page.
fn overflow_stack(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 128]);
    if core::hint::black_box(true) {
        overflow_stack(depth + 1).wrapping_add(frame[0])
    } else {
        frame[127]
    }
}

/// The faulting instructions. Each one traps, and the kernel kills the
/// process before it could run on; if the kernel let it run on, each
/// instruction has no effect Rust could observe, so returning is sound.
mod fault {
    #![allow(unsafe_code)]

    use core::arch::asm;
    use libuser::sys::KERNEL_HALF;

    pub fn read_null() {
        // SAFETY: a load from page 0, which is never mapped; the value is discarded.
        unsafe {
            asm!("mov {tmp}, qword ptr [{addr}]", addr = in(reg) 0u64, tmp = out(reg) _, options(nostack, readonly))
        };
    }

    pub fn write_kernel() {
        // SAFETY: a store to the kernel half, which user mode can never
        // write; if it were allowed, it touches no memory of this program.
        unsafe { asm!("mov byte ptr [{addr}], 0", addr = in(reg) KERNEL_HALF, options(nostack)) };
    }

    pub fn halt() {
        // SAFETY: `hlt` at CPL 3 raises #GP; it has no other effect here.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }

    pub fn undefined_opcode() {
        // SAFETY: `ud2` raises #UD and has no other effect.
        unsafe { asm!("ud2", options(nomem, nostack)) };
    }

    pub fn divide_by_zero() {
        // SAFETY: dividing rdx:rax by a zero register raises #DE; rax and
        // rdx are declared clobbered.
        unsafe {
            asm!(
                "div {zero}",
                zero = in(reg) 0u64,
                inout("rax") 1u64 => _,
                inout("rdx") 0u64 => _,
                options(nomem, nostack),
            )
        };
    }
}
