//! `spin CODE`: exits at once with exit code CODE (0 if missing or not a
//! number). The spawn-cycle test runs it many times to look for leaks.
//! `spin forever` burns CPU until it is killed (the shell's Ctrl-C test).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use libuser::Args;

libuser::entry!(main);

fn main(args: Args) -> i32 {
    if args.get_str(1) == Some("forever") {
        // A shell names its child the console's foreground only after
        // `spawn` returned, which on one CPU can be after the child's first
        // time slice: wait a moment before saying Ctrl-C will stop us.
        let _ = libuser::sys::sleep_ns(100_000_000);
        libuser::println!("spin: spinning until stopped (Ctrl-C)");
        loop {
            core::hint::spin_loop();
        }
    }
    args.get_str(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
