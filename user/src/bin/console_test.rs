//! `console_test`: the console's input, driven from outside. Each case
//! prints `READY <what>` and then reads fd 0; the runner (`cargo xtask
//! test`, the `script` of `configs/console-*.toml`) waits for that line
//! and types the input, over the serial port or as keys on the PS/2
//! keyboard. The cases check what the line discipline hands over: cooked
//! lines with editing, end of file, raw bytes, and Ctrl-C, which kills the
//! foreground child and interrupts a waiting read.
//!
//! `console_test sleeper` and `console_test spinner` are the children that
//! Ctrl-C kills: one sleeps in the kernel, one spins in user mode;
//! `console_test raw-exit` ends in raw mode.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use abi::console::{MODE_COOKED, MODE_RAW, NO_FOREGROUND};
use abi::errno::{EINTR, ESRCH};
use libuser::test::{TestResult, TestRun};
use libuser::{check, check_eq, check_err, println, sys, Args};

libuser::entry!(main);

fn main(args: Args) -> i32 {
    match args.get_str(1) {
        Some("sleeper") => {
            let _ = sys::sleep_ns(120_000_000_000);
            return 0;
        }
        Some("spinner") => loop {
            core::hint::spin_loop();
        },
        Some("echo") => return echo(),
        Some("raw-exit") => {
            // Goes raw and ends without switching back.
            return match sys::console_mode(MODE_RAW) {
                Ok(_) => 0,
                Err(_) => 1,
            };
        }
        _ => {}
    }
    let mut run = TestRun::new("Console Input Tests");
    run.case("a cooked line arrives whole", || {
        expect_line("line", b"hello world\n")
    });
    run.case("backspace edits the line", || expect_line("edit", b"abc\n"));
    run.case("Ctrl-U erases the line", || expect_line("kill", b"ok\n"));
    run.case("Ctrl-D on an empty line is end of file", || {
        expect_line("eof", b"")
    });
    run.case("raw mode passes bytes unedited", raw_mode);
    run.case("Ctrl-C kills a sleeping foreground child", || {
        ctrl_c_kills("sleeper")
    });
    run.case("Ctrl-C kills a spinning foreground child", || {
        ctrl_c_kills("spinner")
    });
    run.case("Ctrl-C interrupts a read", || {
        sys::console_set_foreground(NO_FOREGROUND)?;
        println!("READY eintr");
        let mut buf = [0u8; 64];
        check_err!(sys::read(0, &mut buf), EINTR);
        Ok(())
    });
    run.case(
        "a program that ends in raw mode leaves the console cooked",
        || {
            let pid = sys::spawn("console_test", &["console_test", "raw-exit"])?;
            let (_, status) = sys::wait(pid as i64)?;
            check_eq!(status, 0);
            check_eq!(sys::console_mode(MODE_COOKED)?, MODE_COOKED);
            Ok(())
        },
    );
    run.case("only the caller or its child can be foreground", || {
        check_err!(sys::console_set_foreground(1_000_000), ESRCH);
        sys::console_set_foreground(sys::getpid()?)?;
        sys::console_set_foreground(NO_FOREGROUND)?;
        check_err!(sys::console_mode(7), abi::errno::EINVAL);
        Ok(())
    });
    let passed = run.finish();
    sys::poweroff(if passed { 0 } else { 1 })
}

/// Prints `READY <what>`, reads one line and compares it.
fn expect_line(what: &str, expected: &[u8]) -> TestResult {
    println!("READY {what}");
    let mut buf = [0u8; 256];
    let n = sys::read(0, &mut buf)?;
    check_eq!(&buf[..n], expected);
    Ok(())
}

fn raw_mode() -> TestResult {
    check_eq!(sys::console_mode(MODE_RAW)?, MODE_COOKED);
    println!("READY raw");
    let mut got = [0u8; 8];
    let mut n = 0;
    while n < 4 {
        n += sys::read(0, &mut got[n..])?;
    }
    check_eq!(sys::console_mode(MODE_COOKED)?, MODE_RAW);
    // Backspace and Ctrl-C are bytes like any other in raw mode.
    check_eq!(&got[..n], b"x\x7f\x03y");
    Ok(())
}

fn ctrl_c_kills(child: &str) -> TestResult {
    let pid = sys::spawn("console_test", &["console_test", child])?;
    sys::console_set_foreground(pid)?;
    println!("READY ctrl-c {child}");
    let (reaped, status) = sys::wait(pid as i64)?;
    sys::console_set_foreground(NO_FOREGROUND)?;
    check_eq!(reaped, pid);
    check!(
        status == abi::status::INTERRUPTED,
        "status {status:#x}, not INTERRUPTED"
    );
    Ok(())
}

/// `console_test echo`: prints `READY echo`, then each line read as
/// `echo: LINE` until end of file (a screen test types into it), then a
/// summary; it powers the machine off after one more line, so that the
/// summary can be checked on the screen first. The line `scroll` prints
/// 60 more lines, to make the screen scroll.
fn echo() -> i32 {
    println!("READY echo");
    let mut buf = [0u8; 256];
    let mut lines = 0;
    loop {
        match sys::read(0, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let line = core::str::from_utf8(&buf[..n]).unwrap_or("?");
                let line = line.trim_end_matches('\n');
                println!("echo: {line}");
                if line == "scroll" {
                    // More lines than the screen has rows: it must scroll.
                    for i in 0..60 {
                        println!("scroll {i}");
                    }
                }
                lines += 1;
            }
            Err(e) => {
                println!("echo: read failed: {e}");
                return 1;
            }
        }
    }
    println!("echo: {lines} passed, 0 failed");
    let _ = sys::read(0, &mut buf);
    sys::poweroff(0)
}
