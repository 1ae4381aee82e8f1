//! `cargo xtask`: the build runner of this kernel.
//!
//! It builds the kernel and the user programs for `x86_64-unknown-none`,
//! packs the user programs into a cpio initrd, makes a GRUB ISO, boots QEMU,
//! runs every check CI runs, and runs the benchmark (see [`bench`](mod@bench)). What
//! to boot comes from the files in `configs/` (see [`config`]); nothing
//! about a boot configuration is hard-coded here. The runner has no dependencies beyond `std`, so it
//! builds in seconds on a fresh machine.
//!
//! Exit status: 0 on success, 1 on failure, 2 on a usage error; `run`
//! passes on the guest's verdict (0 pass, 1 fail, 2 crash).

#![deny(unsafe_code)]

mod bench;
mod cmdline;
mod config;
mod crashtest;
mod disks;
mod error;
mod gate;
mod hostprobe;
mod image;
mod initrd;
mod persist;
mod process;
mod qemu;
mod script;
mod session;
mod setup;
mod symbolize;
mod test;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use bench::BenchOptions;
use cmdline::Cmdline;
use config::{Boot, Config};
use crashtest::CrashOptions;
use error::Result;
use qemu::{Emulation, Extras, Machine, Verdict};
use test::TestOptions;
use workspace::Workspace;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build [--config NAME]   build the kernel, the user programs and the initrd
  iso [--config NAME]     build, then make the GRUB ISO; prints its path last
  run [options]           build and boot in QEMU with the serial port on this
                          terminal; exits 0 if the guest passes, 1 if it
                          fails, 2 if it crashes
      --config NAME       the configuration in configs/ (default: default)
      --cmdline \"...\"     kernel parameters, put before the configuration's
                          ` -- `; a key=value word replaces the
                          configuration's parameter of that key
                          (e.g. --cmdline \"init=hello log=debug\")
      --args \"...\"        the first program's arguments, the words after
                          ` -- `: they replace the configuration's
                          (repeatable; --args \"\" passes none)
      --smp N             number of CPUs
      --uefi              boot the GRUB ISO under OVMF
      --pvh               boot the kernel directly (qemu -kernel)
      --add PATH          also put PATH into the initrd (repeatable)
      --disk KIND:WHAT    attach a disk after the configuration's (repeatable,
                          in order): KIND virtio or nvme, WHAT an image path
                          or a size such as 64M for a fresh sparse image
                          under target/disks/
      --machine pc|q35    the QEMU machine (default: the configuration's)
      --gdb               QEMU waits for gdb on localhost:1234 (-s -S); the
                          exact gdb command, with the kernel's and the first
                          program's symbols, is printed first
                          (serial is mon:stdio: Ctrl-A X quits QEMU)
  test [--qemu-only] [NAME...]
                          unit tests, fmt, clippy, then boot every
                          configuration with `test = true` (or the NAMEs);
                          --qemu-only skips everything but the boots
  bench [options] [-- BENCH_ARGS...]
                          boot the `bench` program once per --smp value,
                          serial output on this terminal and in
                          target/bench/kernel-smpN.log; writes the BENCH
                          results to target/bench/results.md and prints
                          them; exits 0 if every boot printed `BENCH DONE`
                          and the guest reported success (speed is never
                          judged), 1 otherwise
      --config NAME       the configuration in configs/ (default: bench)
      --smp N             number of CPUs; repeat to boot several times
                          (--smp 1 --smp 2); default: the config's cpus
      --quick             small counts: ops=20000 rwops=2000 reps=1
                          (default: ops=200000 rwops=20000 reps=3)
      --icount            deterministic: boot with -accel tcg,thread=single
                          -icount shift=0,sleep=off -seed 1
                          -rtc base=2026-12-03T00:00:00,clock=vm, so the
                          guest clock counts 1 ns per executed guest
                          instruction and the tables show instructions/op
                          (the same every run; with --linux, the anchor
                          gets these flags through QEMU_EXTRA)
      --linux             afterwards, run the Linux 6.1 anchor
                          (../shared/anchors/linux-qemu/run.sh) with the
                          same -smp values, counts and cases= (in its
                          case names), without disks (DISKS=0) like our
                          machine, and add a table of this kernel vs
                          Linux (ns/op and ratio)
      --add PATH          also put PATH into the initrd (repeatable)
      -- BENCH_ARGS       words for the bench program; key=value replaces
                          the default of that key (e.g. -- reps=5);
                          cases=PREFIX,PREFIX runs only the cases whose
                          names start with one (e.g. -- cases=nop,syscall)
  disk new PATH --size SIZE
                          make an empty ext4 image as the Linux anchor does:
                          `truncate -s SIZE PATH`, then `mkfs.ext4 -q -F -E
                          lazy_itable_init=0,lazy_journal_init=0 PATH`
                          (SIZE: bytes, or digits with K, M or G: 64M, 1G);
                          attach it with `run --disk virtio:PATH`
  crashtest [options]     append + fsync records on an ext4 disk, kill QEMU
                          with SIGKILL at a random moment, boot again and
                          check every record reported durable survived;
                          then e2fsck -fn and debugfs on the host (see
                          docs/filesystems.md); exits 0 if every round passed
      --rounds N          rounds (default 20), one image for all of them
      --disk virtio|nvme  the disk's interface (default: the config's disk;
                          crashtest-nvme is the NVMe one)
      --seed N            the random choices' seed (default: from the clock;
                          printed first)
      --config NAME       kernel, CPUs, memory (default: crashtest)
  help                    show this message
";

/// The configuration used when none is named.
const DEFAULT_CONFIG: &str = "default";

#[derive(Debug, PartialEq, Eq)]
enum Subcommand {
    Build { config: String },
    Iso { config: String },
    Run(RunOptions),
    Test(TestOptions),
    Bench(BenchOptions),
    DiskNew { path: PathBuf, size: u64 },
    Crashtest(CrashOptions),
    Help,
}

#[derive(Debug, PartialEq, Eq)]
struct RunOptions {
    config: String,
    /// `--cmdline`: kernel parameters.
    cmdline: Option<String>,
    /// `--args`: the first program's arguments, replacing the
    /// configuration's.
    args: Option<Vec<String>>,
    smp: Option<u32>,
    boot: Option<Boot>,
    add: Vec<PathBuf>,
    disks: Vec<disks::DiskSpec>,
    machine: Option<disks::MachineType>,
    /// `--gdb`: QEMU waits for a debugger.
    gdb: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match execute(command) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn execute(command: Subcommand) -> Result<u8> {
    let workspace = Workspace::locate();
    if command != Subcommand::Help {
        setup::ensure_prerequisites(&workspace)?;
    }
    match command {
        Subcommand::Help => {
            print!("{USAGE}");
            Ok(0)
        }
        Subcommand::Build { config } => {
            let config = Config::load(&workspace.configs_dir(), &config)?;
            let build = image::build(&workspace, &config, &[])?;
            println!("{}", build.kernel.display());
            println!("{}", build.initrd.display());
            Ok(0)
        }
        Subcommand::Iso { config } => {
            let config = Config::load(&workspace.configs_dir(), &config)?;
            let build = image::build(&workspace, &config, &[])?;
            let iso = image::make_iso(&workspace, &config.name, &build, &config.cmdline)?;
            println!("{}", iso.display());
            Ok(0)
        }
        Subcommand::Run(options) => run(&workspace, options),
        Subcommand::Test(options) => {
            let all_passed = test::run(&workspace, &options)?;
            Ok(if all_passed { 0 } else { 1 })
        }
        Subcommand::Bench(options) => bench::run(&workspace, &options),
        Subcommand::DiskNew { path, size } => {
            disks::make_ext4(&path, size)?;
            println!("{}", path.display());
            Ok(0)
        }
        Subcommand::Crashtest(options) => crashtest::run(&workspace, &options),
    }
}

/// `cargo xtask run`: boots once with the terminal attached.
fn run(workspace: &Workspace, options: RunOptions) -> Result<u8> {
    let config = Config::load(&workspace.configs_dir(), &options.config)?;
    let boot = options.boot.unwrap_or(config.boot);
    let cmdline = run_cmdline(&config.cmdline, &options);
    let build = image::build(workspace, &config, &options.add)?;
    let media = image::boot_media(workspace, &config, boot, &cmdline, &build)?;
    let mut specs = config.disks.clone();
    specs.extend(options.disks.iter().cloned());
    let disks = disks::prepare(
        &specs,
        &workspace.target_dir().join("disks"),
        &format!("{}-run", config.name),
    )?;
    let machine = Machine {
        cpus: options.smp.unwrap_or(config.cpus),
        memory: config.memory.clone(),
        media,
        emulation: Emulation::Tcg,
        machine_type: options.machine.unwrap_or(config.machine),
        disks,
    };
    let mut extras = Extras::default();
    if options.gdb {
        // QEMU's gdb stub on tcp::1234 (-s), CPUs stopped until the
        // debugger continues (-S).
        extras.args.extend(["-s".to_string(), "-S".to_string()]);
        eprintln!("{}", gdb_hint(&build, &cmdline));
    }
    Ok(match machine.run_attached(&extras)? {
        Verdict::Pass => {
            eprintln!("==> guest reported success");
            0
        }
        Verdict::Fail => {
            eprintln!("==> guest reported failure");
            1
        }
        Verdict::Crash(how) => {
            eprintln!("==> guest crashed: {how}");
            2
        }
    })
}

/// What `run --gdb` prints: the command that attaches gdb with the
/// kernel's symbols and the first program's (user programs are linked at
/// a fixed address, so `add-symbol-file` needs no offset).
fn gdb_hint(build: &image::Build, cmdline: &str) -> String {
    let init = cmdline
        .split_whitespace()
        .take_while(|word| *word != "--")
        .find_map(|word| word.strip_prefix("init="))
        .unwrap_or("init");
    format!(
        "==> QEMU waits for a debugger on localhost:1234. In another terminal:\n\n    \
         rust-gdb {kernel} -ex 'target remote :1234' -ex 'add-symbol-file {program}'\n\n    \
         (plain `gdb` works too; then e.g. `break kernel::kernel_main`, `continue`)",
        kernel = build.kernel.display(),
        program = build.programs.join(init).display(),
    )
}

/// The kernel command line of `cargo xtask run`: the configuration's, with
/// `--cmdline` parameters before its `--` and `--args` after it.
fn run_cmdline(config_cmdline: &str, options: &RunOptions) -> String {
    let mut cmdline = Cmdline::parse(config_cmdline);
    if let Some(params) = &options.cmdline {
        cmdline.set_params(params);
    }
    if let Some(args) = &options.args {
        cmdline.replace_args(args);
    }
    cmdline.to_string()
}

/// Parses the arguments after `cargo xtask`.
fn parse_args(args: Vec<String>) -> Result<Subcommand, String> {
    let mut args = args.into_iter();
    let Some(subcommand) = args.next() else {
        return Err("no command given".into());
    };
    let mut args = Flags::new(args);
    let command = match subcommand.as_str() {
        "build" | "iso" => {
            let mut config = DEFAULT_CONFIG.to_string();
            while let Some(flag) = args.next_flag()? {
                match flag.as_str() {
                    "--config" => config = args.value(&flag)?,
                    _ => return Err(format!("unknown option `{flag}` for `{subcommand}`")),
                }
            }
            if subcommand == "build" {
                Subcommand::Build { config }
            } else {
                Subcommand::Iso { config }
            }
        }
        "run" => {
            let mut options = RunOptions {
                config: DEFAULT_CONFIG.to_string(),
                cmdline: None,
                args: None,
                smp: None,
                boot: None,
                add: Vec::new(),
                disks: Vec::new(),
                machine: None,
                gdb: false,
            };
            while let Some(flag) = args.next_flag()? {
                match flag.as_str() {
                    "--config" => options.config = args.value(&flag)?,
                    "--cmdline" => {
                        let params = args.value(&flag)?;
                        if params.split_whitespace().any(|word| word == "--") {
                            return Err(
                                "--cmdline takes kernel parameters only; give the program's \
                                 arguments with --args"
                                    .into(),
                            );
                        }
                        options.cmdline = Some(params);
                    }
                    "--args" => options
                        .args
                        .get_or_insert_with(Vec::new)
                        .push(args.value(&flag)?),
                    "--smp" => options.smp = Some(parse_smp(&args.value(&flag)?)?),
                    "--add" => options.add.push(PathBuf::from(args.value(&flag)?)),
                    "--disk" => options
                        .disks
                        .push(disks::DiskSpec::parse(&args.value(&flag)?)?),
                    "--machine" => {
                        let name = args.value(&flag)?;
                        options.machine =
                            Some(disks::MachineType::from_name(&name).ok_or_else(|| {
                                format!("--machine takes pc or q35, not `{name}`")
                            })?);
                    }
                    "--gdb" => {
                        args.no_value(&flag)?;
                        options.gdb = true;
                    }
                    "--uefi" | "--pvh" => {
                        args.no_value(&flag)?;
                        let boot = if flag == "--uefi" {
                            Boot::Uefi
                        } else {
                            Boot::Pvh
                        };
                        if options.boot.is_some_and(|chosen| chosen != boot) {
                            return Err("--uefi and --pvh exclude each other".into());
                        }
                        options.boot = Some(boot);
                    }
                    _ => return Err(format!("unknown option `{flag}` for `run`")),
                }
            }
            Subcommand::Run(options)
        }
        "test" => {
            let mut qemu_only = false;
            let mut configs = Vec::new();
            while let Some(arg) = args.next_arg() {
                match arg.as_str() {
                    "--qemu-only" => {
                        args.no_value(&arg)?;
                        qemu_only = true;
                    }
                    flag if flag.starts_with('-') => {
                        return Err(format!("unknown option `{flag}` for `test`"))
                    }
                    _ => configs.push(arg),
                }
            }
            Subcommand::Test(TestOptions { qemu_only, configs })
        }
        "bench" => {
            let mut options = BenchOptions {
                config: bench::DEFAULT_CONFIG.to_string(),
                ..BenchOptions::default()
            };
            while let Some(flag) = args.next_flag()? {
                match flag.as_str() {
                    "--" => {
                        options.args = args.rest();
                        break;
                    }
                    "--config" => options.config = args.value(&flag)?,
                    "--smp" => options.smps.push(parse_smp(&args.value(&flag)?)?),
                    "--add" => options.add.push(PathBuf::from(args.value(&flag)?)),
                    "--quick" | "--linux" | "--icount" => {
                        args.no_value(&flag)?;
                        match flag.as_str() {
                            "--quick" => options.quick = true,
                            "--linux" => options.linux = true,
                            _ => options.icount = true,
                        }
                    }
                    _ => return Err(format!("unknown option `{flag}` for `bench`")),
                }
            }
            bench::merge_args(options.quick, &options.args)?;
            Subcommand::Bench(options)
        }
        "disk" => {
            match args.next_arg().as_deref() {
                Some("new") => {}
                Some(other) => {
                    return Err(format!("unknown `disk` command `{other}`; try `disk new`"))
                }
                None => return Err("`disk` needs a command: disk new PATH --size SIZE".into()),
            }
            let mut path = None;
            let mut size = None;
            while let Some(arg) = args.next_arg() {
                match arg.as_str() {
                    "--size" => {
                        let text = args.value(&arg)?;
                        size = Some(
                            disks::parse_size_arg(&text)
                                .filter(|&bytes| bytes > 0)
                                .ok_or_else(|| {
                                    format!("--size takes bytes or a size such as 64M or 1G, not `{text}`")
                                })?,
                        );
                    }
                    flag if flag.starts_with('-') => {
                        return Err(format!("unknown option `{flag}` for `disk new`"))
                    }
                    _ if path.is_none() => path = Some(PathBuf::from(arg)),
                    _ => return Err(format!("unexpected argument `{arg}`")),
                }
            }
            let path = path.ok_or("disk new needs a PATH")?;
            let size = size.ok_or("disk new needs --size SIZE (e.g. --size 64M)")?;
            Subcommand::DiskNew { path, size }
        }
        "crashtest" => {
            let mut options = CrashOptions::default();
            while let Some(flag) = args.next_flag()? {
                match flag.as_str() {
                    "--rounds" => {
                        let text = args.value(&flag)?;
                        options.rounds = match text.parse() {
                            Ok(n @ 1..) => n,
                            _ => {
                                return Err(format!(
                                    "--rounds takes a count of at least 1, not `{text}`"
                                ))
                            }
                        };
                    }
                    "--disk" => {
                        options.kind = match args.value(&flag)?.as_str() {
                            "virtio" => Some(disks::DiskKind::Virtio),
                            "nvme" => Some(disks::DiskKind::Nvme),
                            other => {
                                return Err(format!("--disk takes virtio or nvme, not `{other}`"))
                            }
                        };
                    }
                    "--seed" => {
                        let text = args.value(&flag)?;
                        let parsed = match text.strip_prefix("0x") {
                            Some(hex) => u64::from_str_radix(hex, 16),
                            None => text.parse(),
                        };
                        options.seed = Some(
                            parsed.map_err(|_| format!("--seed takes a number, not `{text}`"))?,
                        );
                    }
                    "--config" => options.config = args.value(&flag)?,
                    _ => return Err(format!("unknown option `{flag}` for `crashtest`")),
                }
            }
            Subcommand::Crashtest(options)
        }
        "help" | "--help" | "-h" => Subcommand::Help,
        other => return Err(format!("unknown command `{other}`")),
    };
    if let Some(extra) = args.next_arg() {
        return Err(format!("unexpected argument `{extra}`"));
    }
    Ok(command)
}

/// A `--smp` value.
fn parse_smp(value: &str) -> Result<u32, String> {
    match value.parse() {
        Ok(n @ 1..=255) => Ok(n),
        _ => Err(format!(
            "--smp wants a CPU count from 1 to 255, not `{value}`"
        )),
    }
}

/// Command-line options in the forms `--flag value` and `--flag=value`.
struct Flags {
    args: std::vec::IntoIter<String>,
    /// The part after `=` of the flag last returned.
    inline_value: Option<String>,
}

impl Flags {
    fn new(args: std::vec::IntoIter<String>) -> Self {
        Flags {
            args,
            inline_value: None,
        }
    }

    /// The next argument, split at `=` if it is a `--flag=value`.
    fn next_arg(&mut self) -> Option<String> {
        let arg = self.args.next()?;
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                self.inline_value = Some(value.to_string());
                Some(flag.to_string())
            }
            _ => {
                self.inline_value = None;
                Some(arg)
            }
        }
    }

    /// The next argument, which must be a flag.
    fn next_flag(&mut self) -> Result<Option<String>, String> {
        match self.next_arg() {
            Some(arg) if !arg.starts_with('-') => Err(format!("unexpected argument `{arg}`")),
            other => Ok(other),
        }
    }

    /// The value of `flag`: after its `=`, or the next argument.
    fn value(&mut self, flag: &str) -> Result<String, String> {
        self.inline_value
            .take()
            .or_else(|| self.args.next())
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    /// Every argument left, as given (after `--`).
    fn rest(&mut self) -> Vec<String> {
        self.args.by_ref().collect()
    }

    /// Rejects a value given to a flag that takes none.
    fn no_value(&mut self, flag: &str) -> Result<(), String> {
        match self.inline_value.take() {
            Some(_) => Err(format!("{flag} takes no value")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Subcommand, String> {
        parse_args(args.iter().map(|arg| arg.to_string()).collect())
    }

    #[test]
    fn build_and_iso_default_to_the_default_config() {
        assert_eq!(
            parse(&["build"]),
            Ok(Subcommand::Build {
                config: "default".into()
            })
        );
        assert_eq!(
            parse(&["iso", "--config", "grub-uefi"]),
            Ok(Subcommand::Iso {
                config: "grub-uefi".into()
            })
        );
        assert_eq!(
            parse(&["build", "--config=foundation"]),
            Ok(Subcommand::Build {
                config: "foundation".into()
            })
        );
    }

    #[test]
    fn run_options() {
        let parsed = parse(&[
            "run",
            "--config",
            "foundation",
            "--cmdline",
            "log=debug x=1",
            "--smp=4",
            "--uefi",
            "--add",
            "a.txt",
            "--add",
            "/tmp/b",
            "--args",
            "mode=ring x",
            "--args=y",
            "--disk",
            "nvme:8M",
            "--machine",
            "q35",
            "--disk=virtio:/tmp/v.img",
        ]);
        assert_eq!(
            parsed,
            Ok(Subcommand::Run(RunOptions {
                config: "foundation".into(),
                cmdline: Some("log=debug x=1".into()),
                args: Some(vec!["mode=ring x".into(), "y".into()]),
                smp: Some(4),
                boot: Some(Boot::Uefi),
                add: vec!["a.txt".into(), "/tmp/b".into()],
                disks: vec![
                    disks::DiskSpec::parse("nvme:8M").unwrap(),
                    disks::DiskSpec::parse("virtio:/tmp/v.img").unwrap()
                ],
                machine: Some(disks::MachineType::Q35),
                gdb: false,
            }))
        );
        let Ok(Subcommand::Run(options)) = parse(&["run", "--gdb", "--pvh"]) else {
            panic!("--gdb is a run option");
        };
        assert!(options.gdb);
        assert!(parse(&["run", "--gdb=1"]).is_err());
    }

    #[test]
    fn gdb_hint_names_the_kernel_and_the_first_program() {
        let build = image::Build {
            kernel: "/t/kernel".into(),
            initrd: "/t/initrd".into(),
            programs: "/t/user".into(),
        };
        let hint = gdb_hint(&build, "init=sh log=info -- init=x");
        assert!(
            hint.contains(
                "rust-gdb /t/kernel -ex 'target remote :1234' -ex 'add-symbol-file /t/user/sh'"
            ),
            "{hint}"
        );
        assert!(gdb_hint(&build, "log=info").contains("/t/user/init'"));
    }

    /// The kernel command line `cargo xtask run ARGS` boots with, for a
    /// configuration whose command line is `config_cmdline`.
    fn run_cmdline_of(config_cmdline: &str, args: &[&str]) -> String {
        let mut all = vec!["run"];
        all.extend(args);
        match parse(&all) {
            Ok(Subcommand::Run(options)) => run_cmdline(config_cmdline, &options),
            other => panic!("{all:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn run_puts_kernel_parameters_before_the_program_arguments() {
        let rings = "init=ring_tests ring=iouring syscall=direct log=info -- mode=direct";
        assert_eq!(run_cmdline_of(rings, &[]), rings);
        // The bug this guards against: `init=hello` after ` -- ` was an
        // argument of ring_tests, and ring_tests ran.
        assert_eq!(
            run_cmdline_of(rings, &["--cmdline", "init=hello log=debug"]),
            "init=hello ring=iouring syscall=direct log=debug -- mode=direct"
        );
        assert_eq!(
            run_cmdline_of(rings, &["--cmdline=quiet", "--args", "mode=ring"]),
            "init=ring_tests ring=iouring syscall=direct log=info quiet -- mode=ring"
        );
        assert_eq!(
            run_cmdline_of(rings, &["--cmdline", "init=hello", "--args", ""]),
            "init=hello ring=iouring syscall=direct log=info"
        );
        assert_eq!(
            run_cmdline_of("init=init log=info", &["--args", "a b", "--args", "c"]),
            "init=init log=info -- a b c"
        );
        assert_eq!(
            run_cmdline_of("init=init", &["--cmdline", "log=debug"]),
            "init=init log=debug"
        );
    }

    #[test]
    fn test_options() {
        assert_eq!(
            parse(&["test"]),
            Ok(Subcommand::Test(TestOptions::default()))
        );
        assert_eq!(
            parse(&["test", "foundation", "--qemu-only", "grub-bios"]),
            Ok(Subcommand::Test(TestOptions {
                qemu_only: true,
                configs: vec!["foundation".into(), "grub-bios".into()],
            }))
        );
    }

    #[test]
    fn bench_options() {
        assert_eq!(
            parse(&["bench"]),
            Ok(Subcommand::Bench(BenchOptions {
                config: "bench".into(),
                ..BenchOptions::default()
            }))
        );
        assert_eq!(
            parse(&[
                "bench",
                "--smp",
                "1",
                "--smp=2",
                "--quick",
                "--linux",
                "--icount",
                "--config",
                "other",
                "--add",
                "/tmp/bench",
                "--",
                "reps=2",
                "--smp",
                "x=1"
            ]),
            Ok(Subcommand::Bench(BenchOptions {
                config: "other".into(),
                smps: vec![1, 2],
                quick: true,
                icount: true,
                linux: true,
                add: vec!["/tmp/bench".into()],
                args: vec!["reps=2".into(), "--smp".into(), "x=1".into()],
            }))
        );
    }

    #[test]
    fn disk_and_crashtest_options() {
        assert_eq!(
            parse(&["disk", "new", "/tmp/a.img", "--size", "64M"]),
            Ok(Subcommand::DiskNew {
                path: "/tmp/a.img".into(),
                size: 64 << 20
            })
        );
        assert_eq!(
            parse(&["disk", "new", "--size=1G", "b.img"]),
            Ok(Subcommand::DiskNew {
                path: "b.img".into(),
                size: 1 << 30
            })
        );
        assert_eq!(
            parse(&["crashtest"]),
            Ok(Subcommand::Crashtest(CrashOptions::default()))
        );
        assert_eq!(
            parse(&[
                "crashtest",
                "--rounds",
                "100",
                "--disk=nvme",
                "--seed",
                "0x2a"
            ]),
            Ok(Subcommand::Crashtest(CrashOptions {
                rounds: 100,
                kind: Some(disks::DiskKind::Nvme),
                seed: Some(42),
                ..CrashOptions::default()
            }))
        );
    }

    #[test]
    fn usage_errors() {
        let cases: [&[&str]; 27] = [
            &["disk"],
            &["disk", "old", "x"],
            &["disk", "new", "x"],
            &["disk", "new", "--size", "64M"],
            &["disk", "new", "x", "--size", "0"],
            &["disk", "new", "x", "--size", "64Q"],
            &["disk", "new", "x", "y", "--size", "1M"],
            &["crashtest", "--rounds", "0"],
            &["crashtest", "--disk", "scsi"],
            &["crashtest", "--seed", "x"],
            &[],
            &["bench", "extra"],
            &["bench", "--smp", "0"],
            &["bench", "--quick=yes"],
            &["bench", "--icount=1"],
            &["bench", "--", "ops=0"],
            &["frobnicate"],
            &["build", "--config"],
            &["build", "extra"],
            &["run", "--uefi", "--pvh"],
            &["run", "--smp", "0"],
            &["run", "--uefi=yes"],
            &["run", "--frobnicate"],
            &["run", "--cmdline", "init=hello -- x"],
            &["run", "--args"],
            &["test", "--fast"],
            &["iso", "--cmdline", "x"],
        ];
        for args in cases {
            assert!(parse(args).is_err(), "{args:?} should be rejected");
        }
    }
}
