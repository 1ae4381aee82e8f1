//! `cargo xtask bench`: boots the `bench` user program as the first process,
//! once per `-smp` value, collects its `BENCH` lines into
//! `target/bench/results.md` and, with `--linux`, runs the Linux anchor
//! (`../shared/anchors/linux-qemu/run.sh`: Debian's Linux 6.1 running the
//! same cases in the same QEMU settings) and puts the two side by side.
//!
//! What the guest prints (serial, CRLF line ends):
//!
//! ```text
//! RUN case=NAME rep=I ops=N ns_per_op=X cycles_per_op=Y     one per rep (ignored here)
//! BENCH case=NAME ops=N ns_per_op=X cycles_per_op=Y         one per case
//! BENCH case=NAME skipped=REASON                            a case that did not run
//! BENCH DONE                                                the last line
//! ```
//!
//! A boot passes when it printed `BENCH DONE` and the guest reported
//! success through the debug-exit port. How fast anything ran never decides
//! a pass or a failure.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cmdline::Cmdline;
use crate::config::Config;
use crate::error::{bail, Error, Result};
use crate::hostprobe;
use crate::image;
use crate::process::describe;
use crate::qemu::{Emulation, Machine, Media, Outcome, Verdict, ICOUNT_FLAGS};
use crate::workspace::Workspace;

/// The configuration `bench` boots when none is named.
pub const DEFAULT_CONFIG: &str = "bench";
/// The bench program's arguments without `--quick`.
const DEFAULT_ARGS: [&str; 4] = ["ops=200000", "rwops=20000", "blkops=20000", "reps=3"];
/// The bench program's arguments with `--quick`: a plumbing check.
const QUICK_ARGS: [&str; 4] = ["ops=20000", "rwops=2000", "blkops=1000", "reps=1"];
/// Arguments that are op or repetition counts; both benchmarks take them.
const COUNT_KEYS: [&str; 4] = ["ops", "rwops", "blkops", "reps"];
/// The anchor's per-rep time cap (`maxsec=`), as `run.sh` sets it for a
/// full run and for `QUICK=1`.
const ANCHOR_MAXSEC: u32 = 5;
const ANCHOR_QUICK_MAXSEC: u32 = 1;
/// Where the anchor's script lives, relative to a parent of the workspace.
const ANCHOR_SCRIPT: &str = "shared/anchors/linux-qemu/run.sh";
/// Log text that means the kernel panicked.
const PANIC_MARKER: &str = "KERNEL PANIC";

/// Our case names and the anchor's counterparts. `nop_bN` (any batch size
/// N) has the same name on both sides and is not listed.
const CASE_NAMES: [(&str, &str); 16] = [
    ("syscall_getpid", "syscall_getppid"),
    // The storage cases have the anchor's names; the IOPOLL one compares
    // with Linux's interrupt-driven qd1 read (the anchor has no polled case).
    ("nvme_randread4k_qd1", "nvme_randread4k_qd1"),
    ("nvme_randread4k_qd32", "nvme_randread4k_qd32"),
    ("nvme_randwrite4k_qd32", "nvme_randwrite4k_qd32"),
    ("nvme_iopoll_randread4k_qd1", "nvme_randread4k_qd1"),
    ("vblk_randread4k_qd1", "vblk_randread4k_qd1"),
    ("vblk_randread4k_qd32", "vblk_randread4k_qd32"),
    ("vblk_randwrite4k_qd32", "vblk_randwrite4k_qd32"),
    ("ext4_read4k_b32", "ext4_read4k_b32"),
    ("ext4_append4k_fsync", "ext4_append4k_fsync"),
    ("read4k_b32", "uring_read4k_b32"),
    ("write4k_b32", "uring_write4k_b32"),
    ("pread4k", "pread4k"),
    ("pwrite4k", "pwrite4k"),
    ("sqpoll_b1", "sqpoll_nop_b1"),
    ("sqpoll_b32", "sqpoll_nop_b32"),
];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct BenchOptions {
    /// The configuration in `configs/`.
    pub config: String,
    /// `-smp` values, in order; empty means the configuration's `cpus`.
    pub smps: Vec<u32>,
    pub quick: bool,
    /// Deterministic mode ([`Emulation::Icount`]): ns/op becomes guest
    /// instructions per op, for both kernels.
    pub icount: bool,
    /// Also run the Linux anchor after our boots.
    pub linux: bool,
    /// Extra files for the initrd.
    pub add: Vec<PathBuf>,
    /// The words after `--`: arguments for the bench program.
    pub args: Vec<String>,
}

/// The bench program's arguments: the default (or `--quick`) set, with
/// `extra` words replacing a default of the same `key=` and appended
/// otherwise. `ops=`, `rwops=` and `reps=` must be positive integers.
pub fn merge_args(quick: bool, extra: &[String]) -> Result<Vec<String>, String> {
    let base = if quick { QUICK_ARGS } else { DEFAULT_ARGS };
    let mut args: Vec<String> = base.iter().map(|word| word.to_string()).collect();
    for word in extra.iter().flat_map(|arg| arg.split_whitespace()) {
        if let Some((key, value)) = word.split_once('=') {
            if COUNT_KEYS.contains(&key) && !matches!(value.parse::<u64>(), Ok(1..)) {
                return Err(format!(
                    "bench argument `{word}`: {key}= wants a positive integer"
                ));
            }
            let same_key = args
                .iter_mut()
                .find(|arg| arg.split_once('=').is_some_and(|(k, _)| k == key));
            if let Some(slot) = same_key {
                *slot = word.to_string();
                continue;
            }
        }
        args.push(word.to_string());
    }
    Ok(args)
}

/// The value of `key=` in `args`, the last one if repeated.
fn arg_value<'a>(args: &'a [String], key: &str) -> Option<&'a str> {
    args.iter()
        .rev()
        .find_map(|arg| arg.split_once('=').filter(|(k, _)| *k == key))
        .map(|(_, value)| value)
}

/// The kernel command line: the configuration's, with the bench program's
/// arguments added after its ` -- ` (the kernel hands the words after the
/// first `--` to the first process).
fn bench_cmdline(config_cmdline: &str, args: &[String]) -> String {
    let mut cmdline = Cmdline::parse(config_cmdline);
    cmdline.extend_args(args);
    cmdline.to_string()
}

/// One `BENCH case=...` line.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub case: String,
    pub outcome: CaseOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CaseOutcome {
    Measured {
        ops: u64,
        ns_per_op: f64,
        cycles_per_op: f64,
    },
    Skipped(String),
}

/// What one boot's serial log says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BenchLog {
    /// The cases in the order printed; a case printed twice keeps its last
    /// line.
    pub cases: Vec<CaseResult>,
    /// Whether a `BENCH DONE` line was printed.
    pub done: bool,
    /// `BENCH case=` lines that could not be read, with why.
    pub malformed: Vec<String>,
    /// The first line reporting a kernel panic, if any.
    pub panic: Option<String>,
}

/// Reads the `BENCH` lines of a serial log (`\r` may still be there).
pub fn parse_bench_log(log: &str) -> BenchLog {
    let mut parsed = BenchLog::default();
    for line in log.lines() {
        let line = line.trim();
        if line == "BENCH DONE" {
            parsed.done = true;
        } else if line.contains(PANIC_MARKER) && parsed.panic.is_none() {
            parsed.panic = Some(line.to_string());
        }
        match parse_bench_line(line) {
            None => {}
            Some(Ok(result)) => {
                parsed.cases.retain(|known| known.case != result.case);
                parsed.cases.push(result);
            }
            Some(Err(why)) => parsed.malformed.push(format!("{why}: `{line}`")),
        }
    }
    parsed
}

/// Parses `BENCH case=NAME ops=N ns_per_op=X cycles_per_op=Y` or
/// `BENCH case=NAME skipped=REASON` (the reason is the rest of the line).
/// `None` for any other line; unknown `key=value` words are ignored.
pub fn parse_bench_line(line: &str) -> Option<Result<CaseResult, String>> {
    let rest = line.trim().strip_prefix("BENCH ")?.trim_start();
    if !rest.starts_with("case=") {
        return None;
    }
    Some(parse_bench_fields(rest))
}

fn parse_bench_fields(mut rest: &str) -> Result<CaseResult, String> {
    let mut fields: Vec<(&str, &str)> = Vec::new();
    let mut skipped = None;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(reason) = rest.strip_prefix("skipped=") {
            skipped = Some(reason.trim().to_string());
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        rest = tail;
        let Some(field) = word.split_once('=') else {
            return Err(format!("`{word}` is not key=value"));
        };
        fields.push(field);
    }
    let get = |key: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| *value)
    };
    let case = get("case").unwrap_or_default();
    if case.is_empty() {
        return Err("no case name".into());
    }
    let outcome = match skipped {
        Some(reason) => CaseOutcome::Skipped(reason),
        None => {
            let number = |key: &str| -> Result<f64, String> {
                let text = get(key).ok_or_else(|| format!("no {key}="))?;
                match text.parse::<f64>() {
                    Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
                    _ => Err(format!("{key}={text} is not a number")),
                }
            };
            let ops = get("ops").ok_or("no ops=")?;
            CaseOutcome::Measured {
                ops: ops
                    .parse()
                    .map_err(|_| format!("ops={ops} is not a count"))?,
                ns_per_op: number("ns_per_op")?,
                cycles_per_op: number("cycles_per_op")?,
            }
        }
    };
    Ok(CaseResult {
        case: case.to_string(),
        outcome,
    })
}

/// One row of the anchor's summary table (min and median over the reps).
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorRow {
    pub case: String,
    /// `ops/rep`: a count, or `MIN-MAX` when the time cap cut reps short.
    pub ops: String,
    pub ns_min: f64,
    pub ns_median: f64,
    pub cycles_median: f64,
}

/// The anchor's `results.md`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AnchorResults {
    /// The `- key: value` lines above the first section (kernel package,
    /// QEMU version, KVM, bench args).
    pub header: Vec<String>,
    /// `(section name, rows)`, e.g. `("tcg-smp1", ...)`, for every section
    /// holding a per-case summary table.
    pub sections: Vec<(String, Vec<AnchorRow>)>,
}

impl AnchorResults {
    /// Adds a section read from `results.md` if it holds a summary table.
    fn add_section(&mut self, section: Option<(String, Vec<&str>)>) {
        if let Some((name, lines)) = section {
            let rows = parse_anchor_table(&lines);
            if !rows.is_empty() {
                self.sections.push((name, rows));
            }
        }
    }

    fn section(&self, name: &str) -> Option<&[AnchorRow]> {
        self.sections
            .iter()
            .find(|(section, _)| section == name)
            .map(|(_, rows)| rows.as_slice())
    }
}

/// Parses the anchor's `results.md`: `## NAME` sections, each with a
/// `| case | ops/rep | ns/op min | ns/op median | ...` table.
pub fn parse_anchor_results(text: &str) -> AnchorResults {
    let mut results = AnchorResults::default();
    // The section being read: its name and lines.
    let mut section: Option<(String, Vec<&str>)> = None;
    for line in text.lines().map(str::trim_end) {
        if let Some(name) = line.strip_prefix("## ") {
            results.add_section(section.take());
            section = Some((name.trim().to_string(), Vec::new()));
        } else if let Some((_, lines)) = section.as_mut() {
            lines.push(line);
        } else if let Some(item) = line.strip_prefix("- ") {
            results.header.push(item.to_string());
        }
    }
    results.add_section(section);
    results
}

/// The summary table of one raw anchor log (`tcg-smpN.log`), between its
/// `SUMMARY BEGIN` and `SUMMARY END` lines.
pub fn parse_anchor_log(log: &str) -> Vec<AnchorRow> {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim_end)
        .skip_while(|line| *line != "SUMMARY BEGIN")
        .take_while(|line| *line != "SUMMARY END")
        .collect();
    parse_anchor_table(&lines)
}

/// Reads the first table in `lines` whose header has `case`, `ops/rep`,
/// `ns/op min`, `ns/op median` and `cycles/op median` columns.
fn parse_anchor_table(lines: &[&str]) -> Vec<AnchorRow> {
    let cells = |line: &str| -> Option<Vec<String>> {
        let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
        Some(
            inner
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect(),
        )
    };
    let mut rows = Vec::new();
    let mut columns: Option<[usize; 5]> = None;
    for line in lines {
        let Some(cells) = cells(line) else {
            if columns.is_some() {
                break; // the end of the table
            }
            continue;
        };
        let Some([case, ops, ns_min, ns_median, cycles_median]) = columns else {
            let find = |name: &str| cells.iter().position(|cell| cell == name);
            if let (Some(a), Some(b), Some(c), Some(d), Some(e)) = (
                find("case"),
                find("ops/rep"),
                find("ns/op min"),
                find("ns/op median"),
                find("cycles/op median"),
            ) {
                columns = Some([a, b, c, d, e]);
            }
            continue;
        };
        if cells
            .iter()
            .all(|cell| cell.chars().all(|c| c == '-' || c == ':'))
        {
            continue; // the |---|---| line
        }
        let number = |index: usize| cells.get(index).and_then(|cell| cell.parse::<f64>().ok());
        let (Some(name), Some(ns_min), Some(ns_median), Some(cycles_median)) = (
            cells.get(case),
            number(ns_min),
            number(ns_median),
            number(cycles_median),
        ) else {
            continue;
        };
        rows.push(AnchorRow {
            case: name.clone(),
            ops: cells.get(ops).cloned().unwrap_or_default(),
            ns_min,
            ns_median,
            cycles_median,
        });
    }
    rows
}

/// `nop_bN`: the NOP cases, named alike on both sides.
fn is_nop_batch(name: &str) -> bool {
    name.strip_prefix("nop_b")
        .is_some_and(|batch| !batch.is_empty() && batch.chars().all(|c| c.is_ascii_digit()))
}

/// The anchor's name for one of our cases, if it runs a counterpart.
pub fn linux_case_name(ours: &str) -> Option<String> {
    if is_nop_batch(ours) {
        return Some(ours.to_string());
    }
    CASE_NAMES
        .iter()
        .find(|(our, _)| *our == ours)
        .map(|(_, linux)| linux.to_string())
}

/// Our name for one of the anchor's cases, if we run a counterpart.
fn our_case_name(linux: &str) -> Option<String> {
    if is_nop_batch(linux) {
        return Some(linux.to_string());
    }
    CASE_NAMES
        .iter()
        .find(|(_, theirs)| *theirs == linux)
        .map(|(ours, _)| ours.to_string())
}

/// Finds the anchor's `run.sh` in `root` or one of its parents
/// (`../shared/anchors/linux-qemu/run.sh` from the workspace root).
pub fn find_anchor(root: &Path) -> Result<PathBuf> {
    let found = root
        .ancestors()
        .map(|dir| dir.join(ANCHOR_SCRIPT))
        .find(|candidate| candidate.is_file());
    match found {
        Some(path) => Ok(path),
        None => bail!(
            "--linux: cannot find the Linux anchor: no {ANCHOR_SCRIPT} in {} or any \
             directory above it (expected ../{ANCHOR_SCRIPT} next to the workspace)",
            root.display()
        ),
    }
}

/// The anchor's `cases=` for our bench arguments: `None` when they name no
/// cases (both then run all of theirs). Each of our name prefixes becomes
/// the anchor's names of the cases it selects here; an error if none of
/// them has a Linux counterpart, since an empty `cases=` would run them all.
fn anchor_cases(args: &[String]) -> Result<Option<String>, String> {
    let ours = arg_value(args, "cases").unwrap_or_default();
    let prefixes: Vec<&str> = ours.split(',').filter(|p| !p.is_empty()).collect();
    if prefixes.is_empty() {
        return Ok(None);
    }
    let mut theirs: Vec<&str> = Vec::new();
    for prefix in prefixes {
        let mut add = |name| {
            if !theirs.contains(&name) {
                theirs.push(name);
            }
        };
        // `nop_bN` is named alike on both sides, with any N.
        if "nop_b".starts_with(prefix) {
            add("nop_b");
        } else if prefix.starts_with("nop_b") {
            add(prefix);
        }
        for (our, linux) in CASE_NAMES {
            if our.starts_with(prefix) {
                add(linux);
            }
        }
    }
    if theirs.is_empty() {
        return Err(format!(
            "--linux: none of the cases selected by cases={ours} has a Linux counterpart"
        ));
    }
    Ok(Some(theirs.join(",")))
}

/// The anchor's knobs for one run: `(variable, value)` pairs. `args` are
/// our bench program's ([`merge_args`]), `cases` the anchor's `cases=`
/// ([`anchor_cases`]).
fn anchor_env(
    options: &BenchOptions,
    smps: &[u32],
    args: &[String],
    cases: Option<&str>,
    out: &Path,
    scratch: &Path,
) -> Vec<(String, OsString)> {
    let smps: Vec<String> = smps.iter().map(u32::to_string).collect();
    let mut env: Vec<(String, OsString)> = vec![
        ("SMPS".into(), smps.join(" ").into()),
        ("ACCEL".into(), "tcg".into()),
        // The anchor's disks only when storage cases run: without them its
        // VM is the one of the CPU-only figures recorded so far.
        (
            "DISKS".into(),
            if wants_storage(cases) { "1" } else { "0" }.into(),
        ),
        ("OUT".into(), out.into()),
        ("ANCHOR_SCRATCH".into(), scratch.into()),
    ];
    // Always our counts, --quick or not (its QUICK=1 set has other
    // rwops): the same work on both sides, which per-op instruction counts
    // need to compare exactly.
    let maxsec = if options.quick {
        ANCHOR_QUICK_MAXSEC
    } else {
        ANCHOR_MAXSEC
    };
    let value = |key| arg_value(args, key).unwrap_or("1");
    let mut bench_args = format!(
        "ops={} rwops={} blkops={} reps={} maxsec={maxsec}",
        value("ops"),
        value("rwops"),
        value("blkops"),
        value("reps")
    );
    if let Some(cases) = cases {
        let _ = write!(bench_args, " cases={cases}");
    }
    env.push(("BENCH_ARGS".into(), bench_args.into()));
    if options.icount {
        // Only the clock flags: when QEMU_EXTRA holds -icount, run.sh
        // itself boots with `-accel tcg,thread=single` instead of its
        // `-accel tcg` (a second -accel would be a fallback QEMU never
        // reaches, and would only muddle the logged command line).
        env.push(("QEMU_EXTRA".into(), ICOUNT_FLAGS.join(" ").into()));
    }
    env
}

/// Whether a `cases=` list (`None`: all) includes a storage case.
fn wants_storage(cases: Option<&str>) -> bool {
    cases.is_none_or(|cases| {
        cases.split(',').any(|c| {
            ["nvme", "vblk", "ext4"]
                .iter()
                .any(|s| c.starts_with(s) || s.starts_with(c))
        })
    })
}

/// Variables of this process that must not reach the anchor: what Cargo
/// and rustup set for `cargo xtask` (this workspace's pinned toolchain,
/// compiler flags) and the anchor knobs set by [`anchor_env`].
fn anchor_env_removals(vars: impl Iterator<Item = OsString>) -> Vec<OsString> {
    vars.filter(|name| {
        let Some(name) = name.to_str() else {
            return false;
        };
        name == "CARGO"
            || (name.starts_with("CARGO_") && name != "CARGO_HOME")
            || name.starts_with("RUSTUP_TOOLCHAIN")
            || matches!(
                name,
                "RUST_RECURSION_COUNT"
                    | "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "QUICK"
                    | "BENCH_ARGS"
                    | "SMPS"
                    | "ACCEL"
                    | "DISKS"
                    | "QEMU_EXTRA"
                    | "OUT"
                    | "ANCHOR_SCRATCH"
            )
    })
    .collect()
}

/// How one of our boots went.
struct BootReport {
    smp: u32,
    qemu: String,
    log_path: PathBuf,
    seconds: f64,
    log: BenchLog,
    /// `None` if the boot passed, else why not.
    problem: Option<String>,
    /// The host's cross-CPU cache-line round trip before and after the
    /// boot (timed runs only; see [`hostprobe`]).
    host: Option<(Option<f64>, Option<f64>)>,
}

/// How the anchor run went.
struct AnchorReport {
    /// As [`BootReport::host`], around the whole anchor run.
    host: Option<(Option<f64>, Option<f64>)>,
    script: PathBuf,
    results_path: PathBuf,
    results: AnchorResults,
    problem: Option<String>,
}

/// `cargo xtask bench`: returns the exit status.
pub fn run(workspace: &Workspace, options: &BenchOptions) -> Result<u8> {
    let config = Config::load(&workspace.configs_dir(), &options.config)?;
    let args = merge_args(options.quick, &options.args).map_err(Error::new)?;
    let mut smps: Vec<u32> = Vec::new();
    for &smp in &options.smps {
        if !smps.contains(&smp) {
            smps.push(smp);
        }
    }
    if smps.is_empty() {
        smps.push(config.cpus);
    }
    // Before anything slow: a missing anchor or a case list it cannot run
    // should not cost the boots.
    let anchor = if options.linux {
        let cases = anchor_cases(&args).map_err(Error::new)?;
        Some((find_anchor(workspace.root())?, cases))
    } else {
        None
    };

    let dir = workspace.bench_dir();
    fs::create_dir_all(&dir).map_err(|err| Error::io("create", &dir, err))?;
    remove_old_logs(&dir)?;
    let cmdline = bench_cmdline(&config.cmdline, &args);
    let build = image::build(workspace, &config, &options.add)?;
    let media = image::boot_media(workspace, &config, config.boot, &cmdline, &build)?;

    let emulation = if options.icount {
        Emulation::Icount
    } else {
        Emulation::Tcg
    };
    let mut boots = Vec::new();
    for &smp in &smps {
        boots.push(boot(workspace, &config, &media, emulation, smp)?);
    }
    // The anchor runs after our boots, never beside them: both are
    // CPU-bound and the numbers would disturb each other.
    let linux = match anchor {
        Some((script, cases)) => Some(run_anchor(
            workspace,
            &script,
            &smps,
            options,
            &args,
            cases.as_deref(),
        )?),
        None => None,
    };

    let measure = match emulation {
        Emulation::Tcg => Measure::Time,
        Emulation::Icount => Measure::Instructions,
    };
    let report = render_report(
        workspace,
        &config,
        &cmdline,
        &boots,
        linux.as_ref(),
        measure,
    );
    let results = dir.join("results.md");
    fs::write(&results, &report).map_err(|err| Error::io("write", &results, err))?;
    println!("\n==> results (also in {})\n", results.display());
    print!("{report}");
    println!();

    let mut all_ok = true;
    for boot in &boots {
        match &boot.problem {
            None => println!("[PASS] this kernel, smp {}", boot.smp),
            Some(problem) => {
                all_ok = false;
                println!("[FAIL] this kernel, smp {}: {problem}", boot.smp);
            }
        }
    }
    if let Some(linux) = &linux {
        match &linux.problem {
            None => println!("[PASS] Linux anchor"),
            Some(problem) => {
                all_ok = false;
                println!("[FAIL] Linux anchor: {problem}");
            }
        }
    }
    Ok(if all_ok { 0 } else { 1 })
}

/// Removes the `kernel-smpN.log` files of earlier runs, so that every log
/// in `dir` belongs to this run.
fn remove_old_logs(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|err| Error::io("list", dir, err))?;
    for entry in entries {
        let path = entry.map_err(|err| Error::io("list", dir, err))?.path();
        let is_old_log = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("kernel-smp") && name.ends_with(".log"));
        if is_old_log {
            fs::remove_file(&path).map_err(|err| Error::io("remove", &path, err))?;
        }
    }
    Ok(())
}

/// Boots once with `smp` CPUs, the serial output on the terminal and in
/// `target/bench/kernel-smpN.log`.
fn boot(
    workspace: &Workspace,
    config: &Config,
    media: &Media,
    emulation: Emulation,
    smp: u32,
) -> Result<BootReport> {
    let machine = Machine {
        cpus: smp,
        memory: config.memory.clone(),
        media: media.clone(),
        emulation,
        machine_type: config.machine,
        // The configuration's disks, fresh for every boot.
        disks: crate::disks::prepare(
            &config.disks,
            &workspace.target_dir().join("disks"),
            &format!("{}-bench-smp{smp}", config.name),
        )?,
    };
    let log_path = workspace.bench_dir().join(format!("kernel-smp{smp}.log"));
    let probe = emulation == Emulation::Tcg;
    let before = probe.then(hostprobe::line_round_trip_ns);
    eprintln!(
        "==> bench: {} with -smp {smp} (log {})",
        config.name,
        log_path.display()
    );
    let start = Instant::now();
    let outcome = machine.run_teed(&log_path, config.timeout)?;
    let seconds = start.elapsed().as_secs_f64();
    let host = before.map(|before| (before, hostprobe::line_round_trip_ns()));
    let text = fs::read(&log_path).map_err(|err| Error::io("read", &log_path, err))?;
    let log = parse_bench_log(&String::from_utf8_lossy(&text));
    let problem = judge(&outcome, &log, config.timeout.as_secs());
    Ok(BootReport {
        smp,
        qemu: describe(&machine.command()),
        log_path,
        seconds,
        log,
        problem,
        host,
    })
}

/// `None` if the boot passed: the guest printed `BENCH DONE` and reported
/// success. Otherwise every reason it did not.
fn judge(outcome: &Outcome, log: &BenchLog, timeout_secs: u64) -> Option<String> {
    let mut problems = Vec::new();
    match outcome {
        Outcome::Exited(Verdict::Pass) => {}
        Outcome::Exited(Verdict::Fail) => problems.push("guest reported failure".to_string()),
        Outcome::Exited(Verdict::Crash(how)) => problems.push(format!("crashed: {how}")),
        Outcome::TimedOut => problems.push(format!("timed out after {timeout_secs} s")),
    }
    if !log.done {
        problems.push("no `BENCH DONE` line".to_string());
    }
    if let Some(panic) = &log.panic {
        problems.push(format!("panic: {panic}"));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Runs the anchor's `run.sh` for `smps` and reads its results.
fn run_anchor(
    workspace: &Workspace,
    script: &Path,
    smps: &[u32],
    options: &BenchOptions,
    args: &[String],
    cases: Option<&str>,
) -> Result<AnchorReport> {
    let out = workspace.bench_dir().join("linux");
    let scratch = workspace.bench_dir().join("linux-scratch");
    // A results.md from an earlier run must not pass for this one's.
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|err| Error::io("remove", &out, err))?;
    }
    let env = anchor_env(options, smps, args, cases, &out, &scratch);
    let mut cmd = Command::new("bash");
    cmd.arg(script);
    // Run from the anchor's folder so that this workspace's
    // rust-toolchain.toml does not choose the anchor's compiler.
    if let Some(dir) = script.parent() {
        cmd.current_dir(dir);
    }
    for name in anchor_env_removals(std::env::vars_os().map(|(name, _)| name)) {
        cmd.env_remove(name);
    }
    let mut shown = String::new();
    for (name, value) in &env {
        cmd.env(name, value);
        let value = value.to_string_lossy();
        if value.contains(char::is_whitespace) {
            let _ = write!(shown, "{name}='{value}' ");
        } else {
            let _ = write!(shown, "{name}={value} ");
        }
    }
    eprintln!("==> Linux anchor: {shown}{}", describe(&cmd));
    let probe = !options.icount;
    let before = probe.then(hostprobe::line_round_trip_ns);
    let status = cmd
        .status()
        .map_err(|err| Error::new(format!("cannot run `{}`: {err}", describe(&cmd))))?;
    let host = before.map(|before| (before, hostprobe::line_round_trip_ns()));

    let results_path = out.join("results.md");
    let mut results = match fs::read_to_string(&results_path) {
        Ok(text) => parse_anchor_results(&text),
        Err(_) => AnchorResults::default(),
    };
    // A section missing from results.md (run.sh stopped early): read the
    // raw log, which may still hold the summary table.
    for smp in smps {
        let name = format!("tcg-smp{smp}");
        if results.section(&name).is_none() {
            let log = out.join(format!("{name}.log"));
            if let Ok(text) = fs::read(&log) {
                let rows = parse_anchor_log(&String::from_utf8_lossy(&text));
                if !rows.is_empty() {
                    results.sections.push((name, rows));
                }
            }
        }
    }
    let mut problems = Vec::new();
    if !status.success() {
        problems.push(format!("`bash {}` failed ({status})", script.display()));
    }
    let missing: Vec<String> = smps
        .iter()
        .map(|smp| format!("tcg-smp{smp}"))
        .filter(|name| results.section(name).is_none())
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "no results for {} in {}",
            missing.join(", "),
            out.display()
        ));
    }
    Ok(AnchorReport {
        host,
        script: script.to_path_buf(),
        results_path,
        results,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    })
}

/// What the bench programs' `ns_per_op` and `cycles_per_op` count, which
/// names the table columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// Guest time under TCG, which follows the host's clock; cycles are
    /// host TSC ticks.
    Time,
    /// Under icount ([`Emulation::Icount`]) one guest ns, and one TSC tick,
    /// is one executed guest instruction.
    Instructions,
}

impl Measure {
    /// The heading of the `ns_per_op` column.
    fn per_op(self) -> &'static str {
        match self {
            Measure::Time => "ns/op",
            Measure::Instructions => "instructions/op",
        }
    }

    /// The heading of the `cycles_per_op` column.
    fn ticks_per_op(self) -> &'static str {
        match self {
            Measure::Time => "cycles/op",
            Measure::Instructions => "TSC ticks/op",
        }
    }
}

/// `target/bench/results.md`.
fn render_report(
    workspace: &Workspace,
    config: &Config,
    cmdline: &str,
    boots: &[BootReport],
    linux: Option<&AnchorReport>,
    measure: Measure,
) -> String {
    let shown = |path: &Path| {
        path.strip_prefix(workspace.root())
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "# cargo xtask bench\n");
    let _ = writeln!(
        out,
        "- configuration: {} ({} boot, {} memory, timeout {} s)",
        config.name,
        config.boot.name(),
        config.memory,
        config.timeout.as_secs()
    );
    let _ = writeln!(out, "- kernel command line: `{cmdline}`");
    let _ = match measure {
        Measure::Time => writeln!(
            out,
            "- ns/op and cycles/op are as the bench program reports them; cycles are \
             host TSC ticks under TCG. Speed is reported, never judged.\n\
             - host: the round trip of one cache line between the host's two CPUs, \
             measured before and after each boot (xtask/src/hostprobe.rs). Two-CPU \
             ring cases (SQPOLL) follow it: it is either about 100-160 ns or about \
             270-450 ns on these machines, depending on where the hypervisor has put \
             the host's CPUs, and changes every few minutes. Take ratios only \
             between boots measured with the same figure."
        ),
        Measure::Instructions => writeln!(
            out,
            "- deterministic mode (`--icount`: `-accel tcg,thread=single {}`): the guest \
             clock and TSC advance 1 ns (1 tick) per executed guest instruction, so the \
             bench program's ns/op is shown as instructions/op: user and kernel \
             instructions, interrupt handlers included, whatever they would cost on \
             hardware, independent of the host. Speed is reported, never judged.",
            ICOUNT_FLAGS.join(" ")
        ),
    };
    for boot in boots {
        let _ = writeln!(out, "\n## this kernel, smp {}\n", boot.smp);
        let _ = writeln!(out, "- qemu: `{}`", boot.qemu);
        let status = match &boot.problem {
            None => "passed (`BENCH DONE`, guest reported success)".to_string(),
            Some(problem) => format!("FAILED: {problem}"),
        };
        let _ = writeln!(
            out,
            "- boot: {status}; {:.1} s wall; log: {}",
            boot.seconds,
            shown(&boot.log_path)
        );
        if let Some((before, after)) = boot.host {
            let _ = writeln!(
                out,
                "- host: cache-line round trip before / after: {}",
                hostprobe::describe(before, after)
            );
        }
        for malformed in &boot.log.malformed {
            let _ = writeln!(out, "- unreadable BENCH line: {malformed}");
        }
        out.push('\n');
        out.push_str(&kernel_table(&boot.log.cases, measure));
    }
    if let Some(linux) = linux {
        let _ = writeln!(out, "\n## Linux anchor\n");
        let _ = writeln!(out, "- script: {}", linux.script.display());
        let _ = writeln!(out, "- results: {}", shown(&linux.results_path));
        if let Some(problem) = &linux.problem {
            let _ = writeln!(out, "- FAILED: {problem}");
        }
        if let Some((before, after)) = linux.host {
            let _ = writeln!(
                out,
                "- host: cache-line round trip before / after the anchor's boots: {}",
                hostprobe::describe(before, after)
            );
        }
        for line in &linux.results.header {
            let _ = writeln!(out, "- anchor {line}");
        }
        let _ = writeln!(
            out,
            "- Linux {} is the median over its reps; its case names differ from ours \
             where shown in parentheses.",
            measure.per_op()
        );
        for boot in boots {
            let name = format!("tcg-smp{}", boot.smp);
            let _ = writeln!(out, "\n### smp {}: this kernel vs Linux\n", boot.smp);
            let rows = linux.results.section(&name).unwrap_or_default();
            if rows.is_empty() {
                let _ = writeln!(out, "(no Linux results for {name})\n");
            }
            out.push_str(&comparison_table(&boot.log.cases, rows, measure));
        }
    }
    out
}

/// Our results for one boot: case, ops, ns/op, cycles/op.
fn kernel_table(cases: &[CaseResult], measure: Measure) -> String {
    let mut out = format!(
        "| case | ops | {} | {} |\n|---|---|---|---|\n",
        measure.per_op(),
        measure.ticks_per_op()
    );
    if cases.is_empty() {
        out.push_str("| (no BENCH results) | - | - | - |\n");
    }
    for result in cases {
        let _ = match &result.outcome {
            CaseOutcome::Measured {
                ops,
                ns_per_op,
                cycles_per_op,
            } => writeln!(
                out,
                "| {} | {ops} | {ns_per_op:.1} | {cycles_per_op:.0} |",
                result.case
            ),
            CaseOutcome::Skipped(reason) => writeln!(
                out,
                "| {} | - | skipped: {} | - |",
                result.case,
                escape_cell(reason)
            ),
        };
    }
    out
}

/// Our cases next to the anchor's counterparts, then the anchor's cases
/// that have a counterpart we did not report.
fn comparison_table(ours: &[CaseResult], linux: &[AnchorRow], measure: Measure) -> String {
    let per_op = measure.per_op();
    let mut out = format!(
        "| case | this kernel {per_op} | Linux {per_op} | ratio (ours/Linux) |\n|---|---|---|---|\n"
    );
    let find_linux = |name: &str| linux.iter().find(|row| row.case == name);
    let mut shown_linux: Vec<&str> = Vec::new();
    for result in ours {
        let linux_name = linux_case_name(&result.case);
        let row = linux_name.as_deref().and_then(find_linux);
        let label = match &linux_name {
            Some(name) if *name != result.case => format!("{} ({name})", result.case),
            _ => result.case.clone(),
        };
        if let Some(row) = row {
            shown_linux.push(&row.case);
        }
        let theirs = row.map_or("-".to_string(), |row| format!("{:.1}", row.ns_median));
        let (mine, ratio) = match (&result.outcome, row) {
            (CaseOutcome::Skipped(reason), _) => {
                (format!("skipped: {}", escape_cell(reason)), "-".into())
            }
            (CaseOutcome::Measured { ns_per_op, .. }, Some(row)) if row.ns_median > 0.0 => (
                format!("{ns_per_op:.1}"),
                format!("{:.2}", ns_per_op / row.ns_median),
            ),
            (CaseOutcome::Measured { ns_per_op, .. }, _) => (format!("{ns_per_op:.1}"), "-".into()),
        };
        let _ = writeln!(out, "| {label} | {mine} | {theirs} | {ratio} |");
    }
    for row in linux {
        if shown_linux.contains(&row.case.as_str()) {
            continue;
        }
        if let Some(our_name) = our_case_name(&row.case) {
            let label = if our_name == row.case {
                our_name
            } else {
                format!("{our_name} ({})", row.case)
            };
            let _ = writeln!(
                out,
                "| {label} | (not reported) | {:.1} | - |",
                row.ns_median
            );
        }
    }
    out
}

/// Text for a Markdown table cell.
fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    fn measured(case: &str, ops: u64, ns: f64, cycles: f64) -> CaseResult {
        CaseResult {
            case: case.into(),
            outcome: CaseOutcome::Measured {
                ops,
                ns_per_op: ns,
                cycles_per_op: cycles,
            },
        }
    }

    #[test]
    fn bench_lines() {
        assert_eq!(
            parse_bench_line("BENCH case=nop_b32 ops=200000 ns_per_op=123.4 cycles_per_op=320.7"),
            Some(Ok(measured("nop_b32", 200000, 123.4, 320.7)))
        );
        // Field order, a trailing CR, unknown fields and integers all do.
        assert_eq!(
            parse_bench_line(
                "  BENCH case=pread4k cycles_per_op=9 extra=3 ns_per_op=7 ops=20000\r"
            ),
            Some(Ok(measured("pread4k", 20000, 7.0, 9.0)))
        );
        assert_eq!(
            parse_bench_line("BENCH case=sqpoll_b1 skipped=needs 2 CPUs (smp=1)"),
            Some(Ok(CaseResult {
                case: "sqpoll_b1".into(),
                outcome: CaseOutcome::Skipped("needs 2 CPUs (smp=1)".into()),
            }))
        );
        for other in [
            "BENCH DONE",
            "BENCH START",
            "RUN case=nop_b1 rep=1 ops=200000 ns_per_op=1.0 cycles_per_op=2.0",
            "| nop_b1 | 200000 | 1.0 |",
            "xBENCH case=a ops=1 ns_per_op=1 cycles_per_op=1",
        ] {
            assert_eq!(parse_bench_line(other), None, "{other}");
        }
        for (bad, why) in [
            (
                "BENCH case= ops=1 ns_per_op=1 cycles_per_op=1",
                "no case name",
            ),
            ("BENCH case=a ns_per_op=1 cycles_per_op=1", "no ops="),
            ("BENCH case=a ops=1 cycles_per_op=1", "no ns_per_op="),
            (
                "BENCH case=a ops=x ns_per_op=1 cycles_per_op=1",
                "not a count",
            ),
            (
                "BENCH case=a ops=1 ns_per_op=NaN cycles_per_op=1",
                "not a number",
            ),
            (
                "BENCH case=a ops=1 ns_per_op=1 cycles_per_op=-1",
                "not a number",
            ),
            ("BENCH case=a ops=1 garbage", "not key=value"),
        ] {
            let err = parse_bench_line(bad).unwrap().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn bench_log() {
        let log = "\
[ 0.1] WARN something\r
RUN case=syscall_getpid rep=1 ops=200000 ns_per_op=300.0 cycles_per_op=780\r
BENCH case=syscall_getpid ops=200000 ns_per_op=301.5 cycles_per_op=782.4\r
BENCH case=sqpoll_b1 skipped=needs 2 CPUs\r
BENCH case=nop_b1 ops=oops\r
| case | ops | ns/op |\r
BENCH case=syscall_getpid ops=200000 ns_per_op=299.0 cycles_per_op=777.0\r
BENCH DONE\r
";
        let parsed = parse_bench_log(log);
        assert!(parsed.done);
        assert_eq!(parsed.panic, None);
        assert_eq!(
            parsed.cases,
            vec![
                CaseResult {
                    case: "sqpoll_b1".into(),
                    outcome: CaseOutcome::Skipped("needs 2 CPUs".into()),
                },
                measured("syscall_getpid", 200000, 299.0, 777.0),
            ]
        );
        assert_eq!(parsed.malformed.len(), 1);
        assert!(parsed.malformed[0].contains("BENCH case=nop_b1 ops=oops"));

        let parsed = parse_bench_log("BENCH DONE!\nKERNEL PANIC at a.rs:1:1: x\n");
        assert!(!parsed.done);
        assert_eq!(parsed.panic.as_deref(), Some("KERNEL PANIC at a.rs:1:1: x"));
    }

    #[test]
    fn judging_a_boot() {
        let done = BenchLog {
            done: true,
            ..BenchLog::default()
        };
        let pass = Outcome::Exited(Verdict::Pass);
        assert_eq!(judge(&pass, &done, 5), None);
        assert_eq!(
            judge(&pass, &BenchLog::default(), 5).as_deref(),
            Some("no `BENCH DONE` line")
        );
        assert_eq!(
            judge(&Outcome::Exited(Verdict::Fail), &done, 5).as_deref(),
            Some("guest reported failure")
        );
        assert_eq!(
            judge(&Outcome::TimedOut, &BenchLog::default(), 5).as_deref(),
            Some("timed out after 5 s; no `BENCH DONE` line")
        );
    }

    #[test]
    fn arguments_and_command_line() {
        assert_eq!(
            merge_args(false, &[]).unwrap(),
            ["ops=200000", "rwops=20000", "blkops=20000", "reps=3"]
        );
        assert_eq!(
            merge_args(true, &[]).unwrap(),
            ["ops=20000", "rwops=2000", "blkops=1000", "reps=1"]
        );
        assert_eq!(
            merge_args(false, &strings(&["reps=5 cases=nop", "ops=7", "ops=8"])).unwrap(),
            [
                "ops=8",
                "rwops=20000",
                "blkops=20000",
                "reps=5",
                "cases=nop"
            ]
        );
        for bad in ["ops=0", "reps=", "rwops=1e3", "ops=-1"] {
            assert!(merge_args(false, &strings(&[bad])).is_err(), "{bad}");
        }
        let args = strings(&["ops=1", "reps=2"]);
        assert_eq!(
            bench_cmdline("init=bench log=warn", &args),
            "init=bench log=warn -- ops=1 reps=2"
        );
        assert_eq!(
            bench_cmdline("init=bench -- fixed ", &args),
            "init=bench -- fixed ops=1 reps=2"
        );
    }

    #[test]
    fn anchor_knobs() {
        let get = |env: &[(String, OsString)], key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        let out = Path::new("/w/target/bench/linux");
        let scratch = Path::new("/w/target/bench/linux-scratch");
        let options = |quick: bool, extra: &[&str]| BenchOptions {
            quick,
            args: strings(extra),
            ..BenchOptions::default()
        };
        let args = merge_args(false, &[]).unwrap();
        let env = anchor_env(&options(false, &[]), &[1, 2], &args, None, out, scratch);
        assert_eq!(get(&env, "SMPS").as_deref(), Some("1 2"));
        assert_eq!(get(&env, "ACCEL").as_deref(), Some("tcg"));
        // All cases: the storage ones too, so the anchor attaches its disks.
        assert_eq!(get(&env, "DISKS").as_deref(), Some("1"));
        assert_eq!(get(&env, "OUT").as_deref(), Some("/w/target/bench/linux"));
        assert_eq!(
            get(&env, "ANCHOR_SCRATCH").as_deref(),
            Some("/w/target/bench/linux-scratch")
        );
        assert_eq!(
            get(&env, "BENCH_ARGS").as_deref(),
            Some("ops=200000 rwops=20000 blkops=20000 reps=3 maxsec=5")
        );
        assert_eq!(get(&env, "QUICK"), None);
        assert_eq!(get(&env, "QEMU_EXTRA"), None);

        let args = merge_args(true, &[]).unwrap();
        let env = anchor_env(&options(true, &[]), &[1], &args, None, out, scratch);
        assert_eq!(get(&env, "QUICK"), None);
        assert_eq!(
            get(&env, "BENCH_ARGS").as_deref(),
            Some("ops=20000 rwops=2000 blkops=1000 reps=1 maxsec=1")
        );

        // --quick with counts of its own: the same counts for both.
        let quick = options(true, &["ops=500"]);
        let args = merge_args(true, &quick.args).unwrap();
        let env = anchor_env(&quick, &[1], &args, None, out, scratch);
        assert_eq!(
            get(&env, "BENCH_ARGS").as_deref(),
            Some("ops=500 rwops=2000 blkops=1000 reps=1 maxsec=1")
        );

        // --quick with cases: our quick counts and the anchor's names.
        let quick = options(true, &["cases=nop,read"]);
        let args = merge_args(true, &quick.args).unwrap();
        let cases = anchor_cases(&args).unwrap();
        assert_eq!(cases.as_deref(), Some("nop_b,uring_read4k_b32"));
        let env = anchor_env(&quick, &[1], &args, cases.as_deref(), out, scratch);
        // No storage case among them: the anchor's VM without disks.
        assert_eq!(get(&env, "DISKS").as_deref(), Some("0"));
        assert_eq!(
            get(&env, "BENCH_ARGS").as_deref(),
            Some("ops=20000 rwops=2000 blkops=1000 reps=1 maxsec=1 cases=nop_b,uring_read4k_b32")
        );

        // --icount: the clock flags only; run.sh picks its accelerator.
        let icount = BenchOptions {
            icount: true,
            ..options(false, &[])
        };
        let env = anchor_env(&icount, &[1], &args, None, out, scratch);
        assert_eq!(
            get(&env, "QEMU_EXTRA").as_deref(),
            Some("-icount shift=0,sleep=off -seed 1 -rtc base=2026-12-03T00:00:00,clock=vm")
        );

        let vars = [
            "CARGO",
            "CARGO_HOME",
            "CARGO_PKG_NAME",
            "RUSTUP_TOOLCHAIN",
            "PATH",
            "QUICK",
            "QEMU_EXTRA",
        ];
        let removed = anchor_env_removals(vars.iter().map(OsString::from));
        assert_eq!(
            removed,
            [
                "CARGO",
                "CARGO_PKG_NAME",
                "RUSTUP_TOOLCHAIN",
                "QUICK",
                "QEMU_EXTRA"
            ]
        );
    }

    #[test]
    fn case_lists_for_the_anchor() {
        let cases = |words: &[&str]| anchor_cases(&strings(words));
        assert_eq!(cases(&["ops=1"]), Ok(None));
        assert_eq!(cases(&["cases=,"]), Ok(None));
        assert_eq!(
            cases(&["cases=syscall,nop_b8,p,sqpoll_b1"])
                .unwrap()
                .as_deref(),
            Some("syscall_getppid,nop_b8,pread4k,pwrite4k,sqpoll_nop_b1")
        );
        assert_eq!(
            cases(&["cases=n,nop,,ringapi"]).unwrap().as_deref(),
            Some("nop_b,nvme_randread4k_qd1,nvme_randread4k_qd32,nvme_randwrite4k_qd32")
        );
        // The IOPOLL case compares with Linux's interrupt-driven qd1 read.
        assert_eq!(
            cases(&["cases=nvme_iopoll"]).unwrap().as_deref(),
            Some("nvme_randread4k_qd1")
        );
        // The last cases= is the one the bench program reads.
        assert_eq!(
            cases(&["cases=ringapi", "cases=write"]).unwrap().as_deref(),
            Some("uring_write4k_b32")
        );
        for none in [&["cases=ringapi"][..], &["cases=zzz,ringapi_nop"]] {
            let err = cases(none).unwrap_err();
            assert!(err.contains("has a Linux counterpart"), "{none:?}: {err}");
        }
    }

    #[test]
    fn case_names() {
        assert_eq!(
            linux_case_name("syscall_getpid").as_deref(),
            Some("syscall_getppid")
        );
        assert_eq!(linux_case_name("nop_b128").as_deref(), Some("nop_b128"));
        assert_eq!(
            linux_case_name("read4k_b32").as_deref(),
            Some("uring_read4k_b32")
        );
        assert_eq!(
            linux_case_name("write4k_b32").as_deref(),
            Some("uring_write4k_b32")
        );
        assert_eq!(linux_case_name("pwrite4k").as_deref(), Some("pwrite4k"));
        assert_eq!(
            linux_case_name("sqpoll_b32").as_deref(),
            Some("sqpoll_nop_b32")
        );
        for none in ["nop_b", "nop_bx", "", "sqpoll_yield_b1", "whatever"] {
            assert_eq!(linux_case_name(none), None, "{none}");
        }
        assert_eq!(our_case_name("sqpoll_nop_b1").as_deref(), Some("sqpoll_b1"));
        assert_eq!(our_case_name("nop_b8").as_deref(), Some("nop_b8"));
        assert_eq!(our_case_name("sqpoll_yield_nop_b1"), None);
    }

    /// Taken from the anchor's results/2026-11-25-tcg/results.md.
    const ANCHOR_RESULTS: &str = "\
# io_uring anchor: Linux in QEMU

- date: 2026-11-25T20:23Z
- kernel package: Package: linux-image-6.1.0-56-amd64 Version: 6.1.192-2 
- bench args: ops=1000000 rwops=262144 reps=3 maxsec=5; extra kernel cmdline: none

## tcg-smp1

- qemu: `qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 512M`
- benchmark boot: 132.3 s wall; benchmark time (s): 125.2

| case | ops/rep | ns/op min | ns/op median | cycles/op min | cycles/op median | Mops/s (best) | extra (max) |
|---|---|---|---|---|---|---|---|
| syscall_getppid | 1000000 | 710.8 | 711.8 | 1845 | 1848 | 1.407 | - |
| nop_b1 | 1000000 | 1448.9 | 1449.1 | 3762 | 3762 | 0.690 | - |
| sqpoll_nop_b1 | 609-616 | 8123428.2 | 8189681.1 | 21089364 | 21261366 | 0.000 | wakeups=0 |
| sqpoll_yield_nop_b1 | 623-626 | 7987166.3 | 8006524.0 | 20735615 | 20785867 | 0.000 | wakeups=0 |
| uring_read4k_b32 | 262144 | 13627.1 | 13674.9 | 35377 | 35502 | 0.073 | iou-wrk=0 |

(label: tcg-smp1; reps=3; tsc 2595.3 MHz)

## tcg-smp2

| case | ops/rep | ns/op min | ns/op median | cycles/op min | cycles/op median | Mops/s (best) | extra (max) |
|---|---|---|---|---|---|---|---|
| syscall_getppid | 1000000 | 719.9 | 723.3 | 1869 | 1878 | 1.389 | - |

## all configurations (min / median over reps; cycles = guest TSC ticks)

| case | tcg-smp1 ns/op | tcg-smp1 cycles/op | tcg-smp1 ops/rep | tcg-smp2 ns/op | tcg-smp2 cycles/op | tcg-smp2 ops/rep |
|---|---|---|---|---|---|---|
| syscall_getppid | 710.8 / 711.8 | 1845 / 1848 | 1000000 | 719.9 / 723.3 | 1869 / 1878 | 1000000 |

total run.sh QEMU time: 224 s
";

    #[test]
    fn anchor_results_md() {
        let results = parse_anchor_results(ANCHOR_RESULTS);
        assert_eq!(results.header.len(), 3);
        assert!(results.header[1].starts_with("kernel package: Package: linux-image-6.1.0-56"));
        let names: Vec<&str> = results.sections.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["tcg-smp1", "tcg-smp2"]);
        let smp1 = results.section("tcg-smp1").unwrap();
        assert_eq!(smp1.len(), 5);
        assert_eq!(
            smp1[0],
            AnchorRow {
                case: "syscall_getppid".into(),
                ops: "1000000".into(),
                ns_min: 710.8,
                ns_median: 711.8,
                cycles_median: 1848.0,
            }
        );
        assert_eq!(smp1[2].ops, "609-616");
        assert_eq!(smp1[2].ns_median, 8189681.1);
        assert_eq!(results.section("tcg-smp2").unwrap()[0].ns_median, 723.3);
        assert_eq!(results.section("tcg-smp3"), None);
    }

    #[test]
    fn anchor_raw_log() {
        // Taken from the anchor's results/2026-11-25-tcg/tcg-smp1.log.
        let log = "\
# qemu: qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 512M
BENCH START
RUN nop_b1 rep=1 ops=1000000 ns=1497021942 ns/op=1497.0 cyc/op=3886.4 extra=0
SUMMARY BEGIN
| case | ops/rep | ns/op min | ns/op median | cycles/op min | cycles/op median | Mops/s (best) | extra (max) |
|---|---|---|---|---|---|---|---|
| nop_b1 | 1000000 | 1448.9 | 1449.1 | 3762 | 3762 | 0.690 | - |
| pwrite4k | 262144 | 14647.6 | 14746.7 | 38027 | 38284 | 0.068 | - |

(label: tcg-smp1; reps=3; tsc 2595.3 MHz)
SUMMARY END
# benchmark time (s): 125.2
BENCH DONE
";
        let rows = parse_anchor_log(log);
        let cases: Vec<&str> = rows.iter().map(|row| row.case.as_str()).collect();
        assert_eq!(cases, ["nop_b1", "pwrite4k"]);
        assert_eq!(rows[1].ns_median, 14746.7);
        assert!(parse_anchor_log("no summary here\n").is_empty());
    }

    #[test]
    fn comparison() {
        let results = parse_anchor_results(ANCHOR_RESULTS);
        let ours = vec![
            measured("syscall_getpid", 200000, 355.9, 900.0),
            measured("nop_b1", 200000, 1449.1, 3000.0),
            CaseResult {
                case: "sqpoll_b1".into(),
                outcome: CaseOutcome::Skipped("needs 2 CPUs".into()),
            },
            measured("ours_only", 10, 1.0, 1.0),
        ];
        let table = comparison_table(&ours, results.section("tcg-smp1").unwrap(), Measure::Time);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "| case | this kernel ns/op | Linux ns/op | ratio (ours/Linux) |",
                "|---|---|---|---|",
                "| syscall_getpid (syscall_getppid) | 355.9 | 711.8 | 0.50 |",
                "| nop_b1 | 1449.1 | 1449.1 | 1.00 |",
                "| sqpoll_b1 (sqpoll_nop_b1) | skipped: needs 2 CPUs | 8189681.1 | - |",
                "| ours_only | 1.0 | - | - |",
                "| read4k_b32 (uring_read4k_b32) | (not reported) | 13674.9 | - |",
            ]
        );
        let table = kernel_table(&ours, Measure::Time);
        assert!(
            table.contains("| syscall_getpid | 200000 | 355.9 | 900 |"),
            "{table}"
        );
        assert!(
            table.contains("| sqpoll_b1 | - | skipped: needs 2 CPUs | - |"),
            "{table}"
        );
    }

    #[test]
    fn icount_tables_say_instructions() {
        let ours = vec![measured("nop_b1", 20000, 651.4, 651.0)];
        let table = kernel_table(&ours, Measure::Instructions);
        assert_eq!(
            table.lines().collect::<Vec<_>>(),
            [
                "| case | ops | instructions/op | TSC ticks/op |",
                "|---|---|---|---|",
                "| nop_b1 | 20000 | 651.4 | 651 |",
            ]
        );
        let linux = [AnchorRow {
            case: "nop_b1".into(),
            ops: "20000".into(),
            ns_min: 921.1,
            ns_median: 921.1,
            cycles_median: 921.0,
        }];
        let table = comparison_table(&ours, &linux, Measure::Instructions);
        assert_eq!(
            table.lines().collect::<Vec<_>>(),
            [
                "| case | this kernel instructions/op | Linux instructions/op | ratio (ours/Linux) |",
                "|---|---|---|---|",
                "| nop_b1 | 651.4 | 921.1 | 0.71 |",
            ]
        );
    }

    #[test]
    fn anchor_is_found_in_a_parent() {
        let base = std::env::temp_dir().join(format!("xtask-anchor-test-{}", std::process::id()));
        let root = base.join("work/main");
        fs::create_dir_all(&root).unwrap();
        // The "not found" half only holds if no directory above the temp
        // dir has an anchor of its own (a `/tmp/shared` link would).
        if find_anchor(&std::env::temp_dir()).is_err() {
            let err = find_anchor(&root).unwrap_err().to_string();
            assert!(err.contains("cannot find the Linux anchor"), "{err}");
        }
        let script = base.join("work").join(ANCHOR_SCRIPT);
        fs::create_dir_all(script.parent().unwrap()).unwrap();
        fs::write(&script, "").unwrap();
        assert_eq!(find_anchor(&root).unwrap(), script);
        fs::remove_dir_all(&base).unwrap();
    }

    /// The anchor's README: `-accel tcg -cpu max -smp {1|2} -m 512M -serial
    /// stdio -display none -no-reboot -device isa-debug-exit,...`.
    #[test]
    fn bench_config_boots_like_the_anchor() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let config = Config::load(&dir, DEFAULT_CONFIG).unwrap();
        assert_eq!(config.cmdline, "init=bench log=warn");
        assert!(!config.test);
        assert_eq!(config.timeout, Duration::from_secs(1800));
        let machine = Machine {
            cpus: config.cpus,
            memory: config.memory.clone(),
            media: Media::Pvh {
                kernel: "k".into(),
                initrd: "i".into(),
                cmdline: bench_cmdline(&config.cmdline, &merge_args(false, &[]).unwrap()),
            },
            emulation: Emulation::Tcg,
            machine_type: config.machine,
            disks: Vec::new(),
        };
        let args: Vec<String> = machine
            .command()
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args.join(" "),
            "-accel tcg -cpu max -smp 1 -m 512M -serial stdio -display none -no-reboot \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel k -initrd i \
             -append init=bench log=warn -- ops=200000 rwops=20000 blkops=20000 reps=3"
        );
    }
}
