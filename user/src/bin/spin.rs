//! `spin CODE`: exits at once with exit code CODE (0 if missing or not a
//! number). The spawn-cycle test runs it many times to look for leaks.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use libuser::Args;

libuser::entry!(main);

fn main(args: Args) -> i32 {
    args.get_str(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
