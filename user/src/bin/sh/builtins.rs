//! The commands the shell runs itself. Each writes its output to `out`
//! (the console, or the file of a `>`/`>>` redirection) and its errors to
//! standard error as `NAME: WHAT: ERRNO`, and returns its status.

use crate::{describe, fail, Shell};
use abi::open_flags::{O_APPEND, O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY};
use alloc::string::String;
use core::fmt::Write;
use libuser::console::Console;
use libuser::fs::{self, File};
use libuser::shell_parse::Command;
use libuser::{eprintln, sys};

/// A built-in command: its name, a one-line usage, and the function.
pub struct Builtin {
    pub name: &'static str,
    pub usage: &'static str,
    run: fn(&mut Shell, &[String], &mut Console) -> i32,
}

const BUILTINS: &[Builtin] = &[
    b("help", "help                 this list", help),
    b(
        "ls",
        "ls [PATH...]         list directories (default /) and files with sizes",
        ls,
    ),
    b("cat", "cat FILE...          print files", cat),
    b(
        "echo",
        "echo [WORD...]       print the words (> FILE, >> FILE to write a file)",
        echo,
    ),
    b("cp", "cp FROM TO           copy a file", cp),
    b("mv", "mv FROM TO           rename a file", mv),
    b("rm", "rm FILE...           remove files", rm),
    b("mkdir", "mkdir DIR...         make directories", mkdir),
    b(
        "rmdir",
        "rmdir DIR...         remove empty directories",
        rmdir,
    ),
    b("stat", "stat FILE...         size and inode of files", stat),
    b(
        "ps",
        "ps                   tasks: id, state, CPU time, name",
        ps,
    ),
    b("free", "free                 memory in use and free", free),
    b(
        "sysinfo",
        "sysinfo              memory, tasks, CPUs, syscall mode, ring backend",
        sysinfo,
    ),
    b("uptime", "uptime               time since boot", uptime),
    b("jobs", "jobs                 programs started with &", jobs),
    b(
        "wait",
        "wait                 wait for every program started with &",
        wait,
    ),
    b(
        "exit",
        "exit [N]             leave the shell with status N (default $?)",
        exit,
    ),
    b(
        "poweroff",
        "poweroff             switch the machine off",
        poweroff,
    ),
];

const fn b(
    name: &'static str,
    usage: &'static str,
    run: fn(&mut Shell, &[String], &mut Console) -> i32,
) -> Builtin {
    Builtin { name, usage, run }
}

/// The built-in called `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Runs `builtin` with `command`'s words and redirection.
pub fn run(builtin: &Builtin, shell: &mut Shell, command: &Command) -> i32 {
    let file = match &command.redirect {
        None => None,
        Some(redirect) => {
            let mode = if redirect.append { O_APPEND } else { O_TRUNC };
            match File::open(&redirect.path, O_WRONLY | O_CREAT | mode) {
                Ok(file) => Some(file),
                Err(e) => return fail(&alloc::format!("sh: {}", redirect.path), e),
            }
        }
    };
    let fd = file.as_ref().map_or(abi::fd::STDOUT, File::fd);
    let mut out = Console::new(fd);
    let status = (builtin.run)(shell, &command.words, &mut out);
    out.flush();
    if let Some(file) = file {
        if let Err(e) = file.close() {
            return fail("sh: close", e);
        }
    }
    status
}

fn help(_: &mut Shell, _: &[String], out: &mut Console) -> i32 {
    let _ = writeln!(out, "Built-in commands:");
    for builtin in BUILTINS {
        let _ = writeln!(out, "  {}", builtin.usage);
    }
    let _ = writeln!(
        out,
        "Any other word runs the program of that name with the words after it as\n\
         arguments (`ls` shows them): `hello`, `uringdemo`, `bench`, `crash null`,\n\
         `spin forever` (Ctrl-C stops it). `PROGRAM ... &` runs it in the background.\n\
         Quotes '...' and \"...\" group words; $? is the last command's status."
    );
    0
}

fn ls(_: &mut Shell, args: &[String], out: &mut Console) -> i32 {
    let default = [String::from("/")];
    let paths = if args.len() > 1 {
        &args[1..]
    } else {
        &default[..]
    };
    let mut status = 0;
    for path in paths {
        let listed = sys::stat(path).and_then(|st| {
            if st.kind != abi::file_kind::DIRECTORY {
                let _ = writeln!(out, "{:>9}  {path}", st.size);
                return Ok(());
            }
            let mut entries = fs::read_dir(path)?;
            entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            if paths.len() > 1 {
                let _ = writeln!(out, "{path}:");
            }
            let total: u64 = entries.iter().map(|f| f.size).sum();
            for entry in &entries {
                let slash = if entry.is_dir { "/" } else { "" };
                let _ = writeln!(out, "{:>9}  {}{slash}", entry.size, entry.name);
            }
            let _ = writeln!(out, "{} files, {} bytes", entries.len(), total);
            Ok(())
        });
        if let Err(e) = listed {
            status = fail(&alloc::format!("ls: {path}"), e);
        }
    }
    status
}

fn cat(_: &mut Shell, args: &[String], out: &mut Console) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: cat FILE...");
        return 2;
    }
    let mut status = 0;
    for name in &args[1..] {
        let copied = File::open(name, O_RDONLY).and_then(|mut file| {
            let mut buf = [0u8; 512];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                out.flush();
                sys::write_all(out.fd(), &buf[..n])?;
            }
        });
        if let Err(e) = copied {
            status = fail(&alloc::format!("cat: {name}"), e);
        }
    }
    status
}

fn echo(_: &mut Shell, args: &[String], out: &mut Console) -> i32 {
    let mut line = String::new();
    for (i, word) in args[1..].iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
    0
}

fn cp(_: &mut Shell, args: &[String], _: &mut Console) -> i32 {
    let [_, from, to] = args else {
        eprintln!("usage: cp FROM TO");
        return 2;
    };
    let mut source = match File::open(from, O_RDONLY) {
        Ok(f) => f,
        Err(e) => return fail(&alloc::format!("cp: {from}"), e),
    };
    let copied = File::create(to).and_then(|mut dest| {
        let mut buf = [0u8; 4096];
        loop {
            let n = source.read(&mut buf)?;
            if n == 0 {
                return dest.close();
            }
            dest.write_all(&buf[..n])?;
        }
    });
    match copied {
        Ok(()) => 0,
        Err(e) => fail(&alloc::format!("cp: {to}"), e),
    }
}

fn mv(_: &mut Shell, args: &[String], _: &mut Console) -> i32 {
    let [_, from, to] = args else {
        eprintln!("usage: mv FROM TO");
        return 2;
    };
    match sys::rename(from, to) {
        Ok(()) => 0,
        Err(e) => fail(&alloc::format!("mv: {from}"), e),
    }
}

fn rm(_: &mut Shell, args: &[String], _: &mut Console) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: rm FILE...");
        return 2;
    }
    let mut status = 0;
    for name in &args[1..] {
        if let Err(e) = sys::unlink(name) {
            status = fail(&alloc::format!("rm: {name}"), e);
        }
    }
    status
}

fn mkdir(_: &mut Shell, args: &[String], _: &mut Console) -> i32 {
    each_path("mkdir", args, sys::mkdir)
}

fn rmdir(_: &mut Shell, args: &[String], _: &mut Console) -> i32 {
    each_path("rmdir", args, sys::rmdir)
}

/// Runs `f` on every path argument; the status is 1 if any failed.
fn each_path(name: &str, args: &[String], f: fn(&str) -> Result<(), abi::errno::Errno>) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: {name} DIR...");
        return 2;
    }
    let mut status = 0;
    for path in &args[1..] {
        if let Err(e) = f(path) {
            status = fail(&alloc::format!("{name}: {path}"), e);
        }
    }
    status
}

fn stat(_: &mut Shell, args: &[String], out: &mut Console) -> i32 {
    if args.len() < 2 {
        eprintln!("usage: stat FILE...");
        return 2;
    }
    let mut status = 0;
    for name in &args[1..] {
        match sys::stat(name) {
            Ok(st) if st.kind == abi::file_kind::DIRECTORY => {
                let _ = writeln!(out, "{name}: directory, inode {}", st.ino);
            }
            Ok(st) => {
                let _ = writeln!(
                    out,
                    "{name}: regular file, {} bytes, inode {}",
                    st.size, st.ino
                );
            }
            Err(e) => status = fail(&alloc::format!("stat: {name}"), e),
        }
    }
    status
}

fn ps(_: &mut Shell, _: &[String], out: &mut Console) -> i32 {
    let mut ids = alloc::vec![0u64; 256];
    let count = match sys::task_list(&mut ids) {
        Ok(count) => count,
        Err(e) => return fail("ps", e),
    };
    let _ = writeln!(out, "  PID  STATE     CPU ms  SWITCHES  NAME");
    for &tid in &ids[..count.min(ids.len())] {
        // A task may end between the list and its info.
        let Ok(info) = sys::task_info(tid) else {
            continue;
        };
        let state = match info.state {
            abi::syscall::task_state::READY => "ready",
            abi::syscall::task_state::RUNNING => "running",
            abi::syscall::task_state::BLOCKED => "blocked",
            abi::syscall::task_state::ZOMBIE => "zombie",
            _ => "?",
        };
        let len = info
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(info.name.len());
        let name = core::str::from_utf8(&info.name[..len]).unwrap_or("?");
        let (open, close) = if info.kernel_thread != 0 {
            ("[", "]")
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "{:>5}  {state:<8} {:>7}  {:>8}  {open}{name}{close}",
            info.tid,
            info.run_ns / 1_000_000,
            info.switches
        );
    }
    if count > ids.len() {
        let _ = writeln!(out, "({} more tasks not shown)", count - ids.len());
    }
    0
}

const MIB: u64 = 1 << 20;

fn free(_: &mut Shell, _: &[String], out: &mut Console) -> i32 {
    let info = match sys::sysinfo() {
        Ok(info) => info,
        Err(e) => return fail("free", e),
    };
    let page = abi::layout::PAGE_SIZE;
    let total = info.total_frames * page;
    let free = info.free_frames * page;
    let _ = writeln!(out, "            total       used       free   (MiB)");
    let _ = writeln!(
        out,
        "memory  {:>9}  {:>9}  {:>9}",
        total / MIB,
        (total - free.min(total)) / MIB,
        free / MIB
    );
    let _ = writeln!(
        out,
        "of the free memory {} MiB is kept for the kernel heap, which uses {} KiB",
        info.reserved_frames * page / MIB,
        info.heap_used / 1024
    );
    0
}

fn sysinfo(shell: &mut Shell, args: &[String], out: &mut Console) -> i32 {
    let status = free(shell, args, out);
    if status != 0 {
        return status;
    }
    let Ok(info) = sys::sysinfo() else {
        return 1;
    };
    let mode = match info.syscall_mode {
        abi::syscall::mode::DIRECT => "direct",
        abi::syscall::mode::RING_BASED => "ring",
        _ => "?",
    };
    let backend = match info.ring_backend {
        abi::syscall::backend::IO_URING => "io_uring",
        abi::syscall::backend::RING_API => "Ring API (sqpoll)",
        _ => "none",
    };
    let _ = writeln!(
        out,
        "tasks {} (at most {}), cpus {}, syscall mode {mode}, ring backend {backend}",
        info.tasks, info.tasks_max, info.cpus
    );
    0
}

fn uptime(_: &mut Shell, _: &[String], out: &mut Console) -> i32 {
    match sys::clock_ns() {
        Ok(ns) => {
            let ms = ns / 1_000_000;
            let s = ms / 1000;
            let _ = writeln!(
                out,
                "up {}:{:02}:{:02}.{:03}",
                s / 3600,
                s / 60 % 60,
                s % 60,
                ms % 1000
            );
            0
        }
        Err(e) => fail("uptime", e),
    }
}

fn jobs(shell: &mut Shell, _: &[String], out: &mut Console) -> i32 {
    for job in &shell.jobs {
        let _ = writeln!(out, "[{}] running: {}", job.pid, job.line);
    }
    0
}

fn wait(shell: &mut Shell, _: &[String], out: &mut Console) -> i32 {
    let mut last = 0;
    for job in core::mem::take(&mut shell.jobs) {
        match libuser::process::wait(job.pid) {
            Ok(status) => {
                let _ = writeln!(
                    out,
                    "[{}] done ({}): {}",
                    job.pid,
                    describe(status),
                    job.line
                );
                last = crate::report(&job.line, status);
            }
            Err(e) => last = fail(&alloc::format!("wait: {}", job.pid), e),
        }
    }
    last
}

fn exit(shell: &mut Shell, args: &[String], _: &mut Console) -> i32 {
    let code = match args.get(1).map(|a| a.parse::<i32>()) {
        None => shell.status,
        Some(Ok(code)) => code,
        Some(Err(_)) => {
            eprintln!("exit: {}: not a number", args[1]);
            return 2;
        }
    };
    shell.exit = Some(code);
    code
}

fn poweroff(_: &mut Shell, _: &[String], _: &mut Console) -> i32 {
    libuser::println!("sh: switching off");
    sys::poweroff(0)
}
