//! `sh`: the interactive shell `cargo xtask run` boots into.
//!
//! It prints a prompt, reads a line (editing it itself, with history on
//! the arrow keys, when the console gives it raw bytes: [`term`]), parses
//! it ([`libuser::shell_parse`]: words, quotes, `$?`, `>`/`>>`, `&`), and
//! runs a built-in command ([`builtins`]) or the program of that name from
//! the file system, in the foreground (Ctrl-C stops it) or, with `&`, in
//! the background. Errors are printed with their errno name and the shell
//! goes on; a child killed by a CPU exception is reported by the
//! exception's name. `$?` is the last command's status: its exit code,
//! 128 + the vector for a killed child, 127 for an unknown command, 130
//! for a line abandoned with Ctrl-C.
//!
//! Output redirection applies to the built-in commands only: a spawned
//! program's descriptors are always the console (spawn takes no
//! descriptor table yet).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod builtins;
mod term;

use alloc::string::String;
use alloc::vec::Vec;
use libuser::shell_parse::{self, Command};
use libuser::{eprintln, println, process, sys, Args, Errno};
use term::{Input, Terminal};

libuser::entry!(main);

/// `$?` of a command that is not built in and not a program.
pub const STATUS_NOT_FOUND: i32 = 127;
/// `$?` of a line abandoned with Ctrl-C (128 + SIGINT, as POSIX shells).
pub const STATUS_INTERRUPTED: i32 = 130;

/// A program started with `&`.
pub struct Job {
    pub pid: u64,
    pub line: String,
}

/// What the shell keeps between commands.
pub struct Shell {
    /// `$?`.
    pub status: i32,
    pub jobs: Vec<Job>,
    /// Set by `exit`: the shell's own exit code.
    pub exit: Option<i32>,
}

fn main(_: Args) -> i32 {
    let mut terminal = Terminal::new();
    let mut shell = Shell {
        status: 0,
        jobs: Vec::new(),
        exit: None,
    };
    println!("sh: type `help` for the commands, `poweroff` to switch off");
    loop {
        shell.reap_jobs();
        let input = match terminal.read_line("$ ") {
            Ok(input) => input,
            Err(e) => {
                eprintln!("sh: cannot read the console: {e}");
                return 1;
            }
        };
        let line = match input {
            Input::Line(line) => line,
            Input::Interrupted => {
                shell.status = STATUS_INTERRUPTED;
                continue;
            }
            Input::Eof => {
                println!();
                return shell.status;
            }
        };
        shell.run_line(&line);
        if let Some(code) = shell.exit {
            return code;
        }
    }
}

impl Shell {
    /// Parses and runs one command line; sets `$?`.
    pub fn run_line(&mut self, line: &str) {
        let command = match shell_parse::parse(line, self.status) {
            Ok(Some(command)) => command,
            Ok(None) => return,
            Err(e) => {
                eprintln!("sh: {e}");
                self.status = 2;
                return;
            }
        };
        self.status = match builtins::find(&command.words[0]) {
            Some(builtin) => {
                if command.background {
                    eprintln!(
                        "sh: {}: built-in commands run in the foreground",
                        command.words[0]
                    );
                }
                builtins::run(builtin, self, &command)
            }
            None => self.run_program(&command, line),
        };
    }

    /// Spawns the program `words[0]`; waits for it unless `&`.
    fn run_program(&mut self, command: &Command, line: &str) -> i32 {
        let name = command.words[0].as_str();
        if command.redirect.is_some() {
            eprintln!("sh: {name}: output redirection works for built-in commands only");
            return 2;
        }
        let argv: Vec<&str> = command.words.iter().map(String::as_str).collect();
        let pid = match process::spawn(name, &argv) {
            Ok(pid) => pid,
            Err(abi::errno::ENOENT) => {
                eprintln!("sh: {name}: command not found (ENOENT)");
                return STATUS_NOT_FOUND;
            }
            Err(e) => {
                eprintln!("sh: {name}: cannot start: {e}");
                return 126;
            }
        };
        if command.background {
            println!("[{pid}] {name}");
            self.jobs.push(Job {
                pid,
                line: String::from(line.trim()),
            });
            return 0;
        }
        term::set_foreground(pid);
        let status = process::wait(pid);
        term::set_foreground(abi::console::NO_FOREGROUND);
        match status {
            Ok(status) => report(name, status),
            Err(e) => {
                eprintln!("sh: {name}: wait: {e}");
                1
            }
        }
    }

    /// Reaps background jobs that ended (a job shows as a zombie until
    /// reaped, so `wait` on it returns at once) and reports them.
    pub fn reap_jobs(&mut self) {
        let mut i = 0;
        while i < self.jobs.len() {
            let pid = self.jobs[i].pid;
            let ended = match sys::task_info(pid) {
                Ok(info) => info.state == abi::syscall::task_state::ZOMBIE,
                Err(_) => true,
            };
            if !ended {
                i += 1;
                continue;
            }
            let job = self.jobs.remove(i);
            match process::wait(pid) {
                Ok(status) => println!("[{pid}] done ({}): {}", describe(status), job.line),
                Err(e) => eprintln!("[{pid}] {}: wait: {e}", job.line),
            }
        }
    }
}

/// Prints how a child ended if it was killed; returns its `$?`.
pub fn report(name: &str, status: i32) -> i32 {
    if status == abi::status::INTERRUPTED {
        eprintln!("sh: {name}: interrupted");
        return STATUS_INTERRUPTED;
    }
    match abi::status::killed_by(status) {
        Some(vector) => {
            eprintln!(
                "sh: {name}: killed: {} (CPU exception {vector})",
                abi::status::exception_name(vector)
            );
            128 + i32::from(vector)
        }
        None => status,
    }
}

/// `exit code N` or `killed: page fault`.
pub fn describe(status: i32) -> alloc::string::String {
    if status == abi::status::INTERRUPTED {
        return alloc::string::String::from("interrupted");
    }
    match abi::status::killed_by(status) {
        Some(vector) => alloc::format!("killed: {}", abi::status::exception_name(vector)),
        None => alloc::format!("exit code {status}"),
    }
}

/// Prints `sh: WHAT: ERRNO` and returns status 1.
pub fn fail(what: &str, e: Errno) -> i32 {
    eprintln!("{what}: {e}");
    1
}
