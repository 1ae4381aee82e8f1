//! `cargo xtask test`: everything CI checks, in order.
//!
//! 1. host unit tests, 2. formatting, 3. clippy on the host crates,
//! 4. clippy on the bare-metal crates once per kernel feature combination
//!    (code behind a disabled `cfg` is never type-checked otherwise),
//! 5. every configuration with `test = true`, booted in QEMU.
//!
//! Stages 1-4 stop at the first failure. Stage 5 boots every configuration
//! and reports each, so one broken boot path does not hide another. A boot
//! passes only if the guest exited through the debug-exit port with success,
//! its log holds a test summary with at least one pass and no failure, and
//! the kernel did not panic.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::config::{Config, Runner};
use crate::crashtest;
use crate::disks;
use crate::error::{bail, Result};
use crate::gate;
use crate::image::{self, USER_RUSTFLAGS};
use crate::persist;
use crate::process;
use crate::qemu::{Emulation, Machine, Outcome, Verdict};
use crate::script;
use crate::session;
use crate::symbolize::Symbolizer;
use crate::workspace::{Workspace, BARE_METAL_TARGET};

/// Lines of the serial log shown when a boot fails.
const LOG_TAIL_LINES: usize = 40;

/// Log text that means the kernel panicked, whatever the exit status says.
/// (A user program's `panicked at` line is not one: the test suite panics a
/// program on purpose, and the program's exit status reports it.)
const PANIC_MARKERS: [&str; 1] = ["KERNEL PANIC"];

/// The kernel feature sets clippy checks: `None` is the default features,
/// `Some("")` none at all (a kernel without ring backends).
const KERNEL_FEATURE_SETS: [Option<&str>; 4] = [None, Some("iouring"), Some("sqpoll"), Some("")];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct TestOptions {
    /// Skip stages 1-4.
    pub qemu_only: bool,
    /// Boot only these configurations (even if they are not `test = true`).
    pub configs: Vec<String>,
}

/// Runs the test stages; returns whether everything passed.
pub fn run(workspace: &Workspace, options: &TestOptions) -> Result<bool> {
    // Read the configurations first: a typo in one should not cost a full
    // clippy run before it is reported.
    let configs = select_configs(workspace, &options.configs)?;

    if !options.qemu_only {
        for (name, mut cmd) in static_stages(workspace) {
            let start = Instant::now();
            eprintln!("==> {name}");
            if let Err(err) = process::run(&mut cmd) {
                println!("[FAIL] {name}: {err}");
                return Ok(false);
            }
            println!("[PASS] {name} ({})", seconds(start.elapsed()));
        }
    }

    let mut passed = 0;
    let mut failed = 0;
    for config in &configs {
        match boot_test(workspace, config) {
            Ok(elapsed) => {
                passed += 1;
                println!("[PASS] {} ({})", config.name, seconds(elapsed));
            }
            Err(reason) => {
                failed += 1;
                println!("[FAIL] {}: {reason}", config.name);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// The configurations to boot: the named ones, or all with `test = true`.
fn select_configs(workspace: &Workspace, names: &[String]) -> Result<Vec<Config>> {
    let dir = workspace.configs_dir();
    let mut configs = if names.is_empty() {
        let all = Config::load_all(&dir)?;
        all.into_iter().filter(|config| config.test).collect()
    } else {
        names
            .iter()
            .map(|name| Config::load(&dir, name))
            .collect::<Result<Vec<_>>>()?
    };
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    configs.dedup_by(|a, b| a.name == b.name);
    if configs.is_empty() {
        bail!("no configuration in {} has `test = true`", dir.display());
    }
    Ok(configs)
}

/// Stages 1-4, each a name and the command that runs it.
fn static_stages(workspace: &Workspace) -> Vec<(String, Command)> {
    let cargo = |name: &str, args: &[&str]| {
        let mut cmd = workspace.cargo();
        cmd.args(args);
        (name.to_string(), cmd)
    };
    let mut stages = vec![
        // The workspace's default members are the host crates.
        cargo("cargo test", &["test"]),
        // Named on its own too, so the runner's tests run even if xtask ever
        // leaves the default members.
        cargo("cargo test -p xtask", &["test", "-p", "xtask"]),
        cargo("cargo fmt --check", &["fmt", "--all", "--", "--check"]),
        cargo(
            "clippy (host)",
            &["clippy", "--all-targets", "--", "-D", "warnings"],
        ),
    ];
    for features in KERNEL_FEATURE_SETS {
        let mut cmd = workspace.cargo_with_rustflags(USER_RUSTFLAGS);
        cmd.args(["clippy", "--release"])
            .args(["-p", "kernel", "-p", "libuser", "-p", "user"])
            .args(["--target", BARE_METAL_TARGET])
            .arg("--target-dir")
            .arg(workspace.target_dir().join("clippy"));
        if let Some(feature) = features {
            cmd.arg("--no-default-features");
            if !feature.is_empty() {
                // `kernel/` because a bare feature name would apply to every
                // selected package, and only the kernel has it.
                cmd.arg("--features").arg(format!("kernel/{feature}"));
            }
        }
        cmd.args(["--", "-D", "warnings"]);
        let shown = match features {
            None => "default",
            Some("") => "none",
            Some(feature) => feature,
        };
        stages.push((
            format!("clippy ({BARE_METAL_TARGET}, kernel features: {shown})"),
            cmd,
        ));
    }
    stages
}

/// Builds and boots one configuration; returns how long the boot took, or
/// why it failed.
fn boot_test(workspace: &Workspace, config: &Config) -> Result<Duration, String> {
    eprintln!("==> {}: {}", config.name, config.description);
    let prepared = image::build(workspace, config, &[]).and_then(|build| {
        image::boot_media(workspace, config, config.boot, &config.cmdline, &build)
            .map(|media| (media, build))
    });
    let (media, build) = prepared.map_err(|err| {
        eprintln!("{err}");
        format!(
            "build failed: {}",
            err.to_string().lines().next().unwrap_or_default()
        )
    })?;
    if let Some(runner) = config.runner {
        // Several boots on one image, judged by the runner.
        let start = Instant::now();
        match runner {
            Runner::Crashtest => crashtest::run_for_test(workspace, config, &build)?,
            Runner::Persist => persist::run(workspace, config, &build, |outcome, log| {
                judge(outcome, log, config.timeout)
            })?,
        }
        return Ok(start.elapsed());
    }
    let disks = disks::prepare(
        &config.disks,
        &workspace.target_dir().join("disks"),
        &config.name,
    )
    .map_err(|err| format!("disks: {err}"))?;
    let machine = Machine {
        cpus: config.cpus,
        memory: config.memory.clone(),
        media,
        emulation: if config.icount_gate.is_some() {
            Emulation::Icount
        } else {
            Emulation::Tcg
        },
        machine_type: config.machine,
        disks,
    };

    let log_path = workspace.log_path(&config.name);
    eprintln!(
        "==> booting {} ({} boot, log {})",
        config.name,
        config.boot.name(),
        log_path.display()
    );
    let start = Instant::now();
    let symbolizer = Symbolizer::new(&build.kernel, &build.programs, workspace.root());
    if let Some(name) = &config.session {
        let path = workspace.configs_dir().join(format!("{name}.session"));
        let text = fs::read_to_string(&path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let script =
            session::parse_script(&text).map_err(|err| format!("{}: {err}", path.display()))?;
        session::run(
            &machine,
            &script,
            &log_path,
            Some(symbolizer),
            config.timeout,
        )
        .map_err(|reason| format!("session {name}: {reason} (log: {})", log_path.display()))?;
        return Ok(start.elapsed());
    }
    let outcome = if config.script.is_some() || !config.serial || !config.qemu_args.is_empty() {
        let steps = match &config.script {
            Some(name) => script::load(&workspace.configs_dir(), name)?,
            None => Vec::new(),
        };
        let scratch = workspace.target_dir().join("script");
        script::run(&machine, config, &steps, &log_path, &scratch).map_err(|reason| {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            print_tail(&config.name, &log);
            format!("script failed: {reason} (log: {})", log_path.display())
        })?
    } else {
        machine
            .run_logged(&log_path, config.timeout)
            .map_err(|err| err.to_string())?
    };
    let elapsed = start.elapsed();
    let log =
        fs::read(&log_path).map_err(|err| format!("cannot read {}: {err}", log_path.display()))?;
    let mut log = String::from_utf8_lossy(&log).replace('\r', "");
    if log.contains("BACKTRACE ") {
        // Name the frames of any backtrace in the kept log.
        let mut symbolizer = symbolizer;
        log = symbolizer.annotate(&log);
        let _ = fs::write(&log_path, &log);
    }

    if let Some(name) = &config.icount_gate {
        let path = workspace.configs_dir().join(format!("{name}.baseline"));
        let text = fs::read_to_string(&path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let baseline =
            gate::parse_baseline(&text).map_err(|err| format!("{}: {err}", path.display()))?;
        if !matches!(outcome, Outcome::Exited(Verdict::Pass)) {
            return Err(format!("the bench boot did not end well: {outcome:?}"));
        }
        let lines = gate::check(&baseline, &log)
            .map_err(|reason| format!("{reason} (log: {})", log_path.display()))?;
        for line in lines {
            eprintln!("    {line}");
        }
        return Ok(elapsed);
    }
    judge(&outcome, &log, config.timeout)
        .and_then(|()| disks::check_after_boot(&config.cmdline, &machine.disks, &log))
        .map_err(|reason| {
            print_tail(&config.name, &log);
            format!("{reason} (log: {})", log_path.display())
        })?;
    Ok(elapsed)
}

/// Decides whether a boot passed, from how QEMU ended and the serial log
/// (with `\r` already removed).
fn judge(outcome: &Outcome, log: &str, timeout: Duration) -> Result<(), String> {
    if let Some(line) = log
        .lines()
        .find(|line| PANIC_MARKERS.iter().any(|marker| line.contains(marker)))
    {
        return Err(format!("panic: {}", line.trim()));
    }
    let last_summary = log.lines().rev().find_map(parse_summary);
    let summary_note = match last_summary {
        Some((passed, failed)) => format!("last summary: {passed} passed, {failed} failed"),
        None => "no test summary in the log".to_string(),
    };
    match outcome {
        Outcome::TimedOut => Err(format!(
            "timed out after {} s; {summary_note}",
            timeout.as_secs()
        )),
        Outcome::Exited(Verdict::Fail) => Err(format!("guest reported failure; {summary_note}")),
        Outcome::Exited(Verdict::Crash(how)) => Err(format!("crashed: {how}; {summary_note}")),
        Outcome::Exited(Verdict::Pass) => {
            let clean = log
                .lines()
                .filter_map(parse_summary)
                .any(|(passed, failed)| passed >= 1 && failed == 0);
            if clean {
                Ok(())
            } else {
                Err(format!(
                    "guest reported success but no line ends with `N passed, 0 failed` (N >= 1, optionally `, N skipped`); {summary_note}"
                ))
            }
        }
    }
}

/// Parses a line ending in `N passed, M failed`, with anything before `N`
/// (such as `tests: `).
fn parse_summary(line: &str) -> Option<(u64, u64)> {
    let mut line = line.trim_end();
    // The harness appends `, N skipped` when it skipped any.
    if let Some(rest) = line.strip_suffix(" skipped") {
        let (rest, _) = split_trailing_number(rest)?;
        line = rest.strip_suffix(", ")?;
    }
    let rest = line.strip_suffix(" failed")?;
    let (rest, failed) = split_trailing_number(rest)?;
    let rest = rest.strip_suffix(" passed, ")?;
    let (_, passed) = split_trailing_number(rest)?;
    Some((passed, failed))
}

/// Splits `text` into what precedes its trailing decimal number, and the
/// number.
fn split_trailing_number(text: &str) -> Option<(&str, u64)> {
    let prefix = text.trim_end_matches(|c: char| c.is_ascii_digit());
    let number = text[prefix.len()..].parse().ok()?;
    Some((prefix, number))
}

fn print_tail(name: &str, log: &str) {
    let lines: Vec<&str> = log.lines().collect();
    if lines.is_empty() {
        println!("---- the {name} serial log is empty ----");
        return;
    }
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    println!(
        "---- last {} lines of the {name} serial log ----",
        tail.len()
    );
    for line in tail {
        println!("{line}");
    }
    println!("---- end of the {name} serial log ----");
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn pass() -> Outcome {
        Outcome::Exited(Verdict::Pass)
    }

    #[test]
    fn summary_lines() {
        assert_eq!(parse_summary("12 passed, 0 failed"), Some((12, 0)));
        assert_eq!(parse_summary("tests: 3 passed, 1 failed  "), Some((3, 1)));
        assert_eq!(
            parse_summary("[user] tests:7 passed, 0 failed"),
            Some((7, 0))
        );
        assert_eq!(parse_summary("passed, 0 failed"), None);
        assert_eq!(parse_summary("3 passed, 0 failed!"), None);
        assert_eq!(parse_summary("3 passed, failed"), None);
        assert_eq!(parse_summary("3 passed,0 failed"), None);
        assert_eq!(parse_summary("3 passed, 0 failed, 1 skipped"), Some((3, 0)));
        assert_eq!(parse_summary("3 passed, 0 failed, skipped"), None);
    }

    #[test]
    fn clean_run_passes() {
        let log = "boot\ntests: 5 passed, 0 failed\nbye\n";
        assert_eq!(judge(&pass(), log, TIMEOUT), Ok(()));
    }

    #[test]
    fn success_needs_a_clean_summary() {
        for log in ["boot\n", "0 passed, 0 failed\n", "4 passed, 1 failed\n"] {
            let err = judge(&pass(), log, TIMEOUT).unwrap_err();
            assert!(err.contains("no line ends with"), "{log:?}: {err}");
        }
    }

    #[test]
    fn panics_fail_even_with_success() {
        let log = "KERNEL PANIC: oops\n5 passed, 0 failed\n";
        let err = judge(&pass(), log, TIMEOUT).unwrap_err();
        assert!(err.starts_with("panic: "), "{err}");
        // A user program's panic is its own business.
        let log = "panicked at src/main.rs:3:5\n5 passed, 0 failed\n";
        assert!(judge(&pass(), log, TIMEOUT).is_ok());
    }

    #[test]
    fn exit_status_decides_before_the_log() {
        let log = "5 passed, 0 failed\n";
        let fail = judge(&Outcome::Exited(Verdict::Fail), log, TIMEOUT).unwrap_err();
        assert!(
            fail.starts_with("guest reported failure; last summary: 5 passed, 0 failed"),
            "{fail}"
        );
        let crash = judge(
            &Outcome::Exited(Verdict::Crash("status 1".into())),
            "",
            TIMEOUT,
        )
        .unwrap_err();
        assert_eq!(crash, "crashed: status 1; no test summary in the log");
        let timeout = judge(&Outcome::TimedOut, "2 passed, 1 failed\n", TIMEOUT).unwrap_err();
        assert_eq!(
            timeout,
            "timed out after 5 s; last summary: 2 passed, 1 failed"
        );
    }
}
