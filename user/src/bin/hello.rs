//! `hello [ARGS..]`: prints its arguments, one per line, and exits 0.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use libuser::{println, Args};

libuser::entry!(main);

fn main(args: Args) -> i32 {
    println!("hello: {} argument(s)", args.len());
    for (index, arg) in args.iter_str().enumerate() {
        println!("  argv[{index}] = {arg}");
    }
    0
}
