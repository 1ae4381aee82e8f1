//! The kernel command line, parsed once at boot into a typed [`BootConfig`].
//!
//! The command line is a list of `key=value` tokens separated by ASCII
//! whitespace. Quoting is not supported: a value runs to the next whitespace.
//! Every parameter the kernel knows is a row of [`PARAMS`], with its accepted
//! values and a one-line reason, so the whole list can be printed.
//!
//! Invariants:
//! - [`parse`] never fails and never panics, whatever the input. Anything it
//!   cannot use (a bare word, an empty or unknown key, an empty, invalid or
//!   over-long value) becomes a [`Warning`] that owns the offending text, and
//!   the setting keeps the value it had: the default, or an earlier valid
//!   token for the same key.
//! - A key given more than once is applied each time, so the last valid one
//!   wins; every repetition is reported with [`Warning::Duplicate`].
//! - Parsing a value lives next to the type it configures
//!   ([`SyscallMode::from_param`], [`BackendKind::from_param`]); this module
//!   only routes tokens to them.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use abi::syscall::limits::PATH_MAX;
use log::LevelFilter;

use crate::fs::{self, FsError};
use crate::ring::{BackendKind, SyscallMode};

/// Everything the command line configures, with defaults for what it omits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// The first user program, looked up in the initrd file system.
    pub init: String,
    /// The most verbose `log` level the kernel prints.
    pub log: LevelFilter,
    /// The ring system to activate; `None` lets the kernel pick its default.
    pub ring: Option<BackendKind>,
    /// How processes call the kernel.
    pub syscall: SyscallMode,
    /// The most live tasks; `None` lets the kernel derive it from RAM
    /// (which it also keeps this within).
    pub tasks_max: Option<u32>,
    /// A disk to run the kernel's block-driver self test on instead of
    /// starting the first program (`blktest=vda`); `None` runs no test.
    pub blktest: Option<String>,
    /// A disk to measure the device model's own cost on instead of
    /// starting the first program (`blkfloor=nvme0n1`): 4 KiB reads timed
    /// with the driver alone, polled, no block layer, no ring.
    pub blkfloor: Option<String>,
    /// The disk whose file system is mounted at `/disk` (`root=vda`);
    /// `None` mounts the first disk that holds one there.
    pub root: Option<String>,
    /// `debug_panic=boot`: panic on purpose once the first program is
    /// started, so a test boot can check that a kernel panic prints a
    /// symbolized backtrace. Only the command line reaches it.
    pub debug_panic: bool,
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            init: String::from("init"),
            log: LevelFilter::Info,
            ring: None,
            syscall: SyscallMode::Direct,
            tasks_max: None,
            blktest: None,
            blkfloor: None,
            root: None,
            debug_panic: false,
        }
    }
}

impl fmt::Display for BootConfig {
    /// One line listing every setting, e.g.
    /// `init=init log=info ring=default syscall=direct`, for the boot log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for spec in PARAMS {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{}={}", spec.name, (spec.current)(self))?;
        }
        Ok(())
    }
}

/// Why a command-line token was not used. Each variant owns the token it
/// complains about; `using` is the value the setting keeps instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A word without `=`.
    BareWord { token: String },
    /// A token starting with `=`.
    EmptyKey { token: String },
    /// A key that is not in [`PARAMS`].
    UnknownKey { token: String },
    /// `key=` with nothing after the `=`.
    EmptyValue { token: String, using: String },
    /// A value the parameter does not accept.
    InvalidValue {
        token: String,
        expected: &'static str,
        using: String,
    },
    /// A value longer than the parameter allows (`len` and `max` in bytes).
    TooLong {
        token: String,
        len: usize,
        max: usize,
        using: String,
    },
    /// A key that appeared earlier on the command line; this token still
    /// applies (if valid), so the last valid one wins.
    Duplicate { token: String, key: String },
}

impl Warning {
    /// The token the warning is about.
    pub fn token(&self) -> &str {
        match self {
            Warning::BareWord { token }
            | Warning::EmptyKey { token }
            | Warning::UnknownKey { token }
            | Warning::EmptyValue { token, .. }
            | Warning::InvalidValue { token, .. }
            | Warning::TooLong { token, .. }
            | Warning::Duplicate { token, .. } => token,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boot parameter \"{}\": ", self.token())?;
        match self {
            Warning::BareWord { .. } => f.write_str("expected key=value; ignored"),
            Warning::EmptyKey { .. } => f.write_str("empty parameter name; ignored"),
            Warning::UnknownKey { .. } => {
                f.write_str("unknown parameter (known:")?;
                for spec in PARAMS {
                    write!(f, " {}", spec.name)?;
                }
                f.write_str("); ignored")
            }
            Warning::EmptyValue { using, .. } => write!(f, "empty value; using {using}"),
            Warning::InvalidValue {
                expected, using, ..
            } => write!(f, "expected one of {expected}; using {using}"),
            Warning::TooLong {
                len, max, using, ..
            } => write!(
                f,
                "value is {len} bytes, longer than the limit of {max}; using {using}"
            ),
            Warning::Duplicate { key, .. } => {
                write!(f, "\"{key}\" given more than once; the last valid one wins")
            }
        }
    }
}

/// One boot parameter: its name, what it accepts, and how it applies.
pub struct ParamSpec {
    /// The key before `=`.
    pub name: &'static str,
    /// The accepted values, e.g. `direct|ring`, or a description like `<name>`.
    pub values: &'static str,
    /// One line saying what the parameter is for.
    pub help: &'static str,
    /// Stores a non-empty value into the configuration, or explains why not
    /// (leaving the configuration unchanged).
    pub apply: fn(&mut BootConfig, &str) -> Result<(), Warning>,
    /// The current setting, spelled as a value of this parameter.
    pub current: fn(&BootConfig) -> String,
}

impl fmt::Debug for ParamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamSpec")
            .field("name", &self.name)
            .field("values", &self.values)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ParamSpec {
    /// One help line: `log=error|warn|info|debug|trace (default info): ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} (default {}): {}",
            self.name,
            self.values,
            (self.current)(&BootConfig::default()),
            self.help
        )
    }
}

/// Every boot parameter the kernel understands.
pub static PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "init",
        values: "<program name>",
        help: "the first user program, run from the initrd",
        apply: apply_init,
        current: |cfg| cfg.init.clone(),
    },
    ParamSpec {
        name: "log",
        values: LOG_VALUES,
        help: "the most verbose kernel log level printed",
        apply: apply_log,
        current: |cfg| level_name(cfg.log).to_string(),
    },
    ParamSpec {
        name: "ring",
        values: BackendKind::PARAM_VALUES,
        help: "the ring system to activate; omit it for the kernel's default",
        apply: apply_ring,
        current: |cfg| ring_name(cfg.ring).to_string(),
    },
    ParamSpec {
        name: "syscall",
        values: SyscallMode::PARAM_VALUES,
        help: "how processes call the kernel: a syscall per service, or a ring",
        apply: apply_syscall,
        current: |cfg| cfg.syscall.name().to_string(),
    },
    ParamSpec {
        name: "tasks_max",
        values: TASKS_MAX_VALUES,
        help: "the most live tasks (Linux's threads-max); auto derives it from RAM",
        apply: apply_tasks_max,
        current: |cfg| tasks_max_name(cfg.tasks_max),
    },
    ParamSpec {
        name: "blktest",
        values: BLKTEST_VALUES,
        help: "self test of a disk driver (write, read back, flush) instead of the first program",
        apply: apply_blktest,
        current: |cfg| cfg.blktest.clone().unwrap_or_else(|| "none".to_string()),
    },
    ParamSpec {
        name: "blkfloor",
        values: BLKTEST_VALUES,
        help: "time polled 4 KiB reads through a disk driver alone (the device's floor) instead of the first program",
        apply: apply_blkfloor,
        current: |cfg| cfg.blkfloor.clone().unwrap_or_else(|| "none".to_string()),
    },
    ParamSpec {
        name: "root",
        values: BLKTEST_VALUES,
        help: "the disk whose file system is mounted at /disk (default: the first that holds one)",
        apply: apply_root,
        current: |cfg| cfg.root.clone().unwrap_or_else(|| "none".to_string()),
    },
    ParamSpec {
        name: "debug_panic",
        values: "off|boot",
        help: "boot: panic on purpose after starting the first program (backtrace test)",
        apply: apply_debug_panic,
        current: |cfg| String::from(if cfg.debug_panic { "boot" } else { "off" }),
    },
];

fn apply_debug_panic(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    match value {
        "off" => cfg.debug_panic = false,
        "boot" => cfg.debug_panic = true,
        _ => {
            return Err(Warning::InvalidValue {
                token: token("debug_panic", value),
                expected: "off|boot",
                using: String::from(if cfg.debug_panic { "boot" } else { "off" }),
            })
        }
    }
    Ok(())
}

/// The parameter called `name`, if there is one.
pub fn find_param(name: &str) -> Option<&'static ParamSpec> {
    PARAMS.iter().find(|spec| spec.name == name)
}

/// Parses a kernel command line. Never fails: what cannot be used is
/// reported in the returned warnings, in command-line order.
pub fn parse(cmdline: &str) -> (BootConfig, Vec<Warning>) {
    let mut config = BootConfig::default();
    let mut warnings = Vec::new();
    let mut seen: Vec<&'static str> = Vec::new();

    for token in cmdline.split_ascii_whitespace() {
        let Some((key, value)) = token.split_once('=') else {
            warnings.push(Warning::BareWord {
                token: token.to_string(),
            });
            continue;
        };
        if key.is_empty() {
            warnings.push(Warning::EmptyKey {
                token: token.to_string(),
            });
            continue;
        }
        let Some(spec) = find_param(key) else {
            warnings.push(Warning::UnknownKey {
                token: token.to_string(),
            });
            continue;
        };
        if seen.contains(&spec.name) {
            warnings.push(Warning::Duplicate {
                token: token.to_string(),
                key: spec.name.to_string(),
            });
        } else {
            seen.push(spec.name);
        }
        if value.is_empty() {
            warnings.push(Warning::EmptyValue {
                token: token.to_string(),
                using: (spec.current)(&config),
            });
            continue;
        }
        if let Err(warning) = (spec.apply)(&mut config, value) {
            warnings.push(warning);
        }
    }
    (config, warnings)
}

const LOG_VALUES: &str = "error|warn|info|debug|trace";

fn token(name: &str, value: &str) -> String {
    let mut token = String::with_capacity(name.len() + 1 + value.len());
    token.push_str(name);
    token.push('=');
    token.push_str(value);
    token
}

fn apply_init(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    // The same rules as any file name, so a name accepted here can be found.
    match fs::normalize(value) {
        Ok(_) => {
            cfg.init = value.to_string();
            Ok(())
        }
        Err(FsError::NameTooLong) => Err(Warning::TooLong {
            token: token("init", value),
            len: value.len(),
            max: PATH_MAX,
            using: cfg.init.clone(),
        }),
        Err(_) => Err(Warning::InvalidValue {
            token: token("init", value),
            expected: "<program name>",
            using: cfg.init.clone(),
        }),
    }
}

fn parse_level(value: &str) -> Option<LevelFilter> {
    match value {
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

fn level_name(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::Off => "off",
        LevelFilter::Error => "error",
        LevelFilter::Warn => "warn",
        LevelFilter::Info => "info",
        LevelFilter::Debug => "debug",
        LevelFilter::Trace => "trace",
    }
}

fn apply_log(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    cfg.log = parse_level(value).ok_or_else(|| Warning::InvalidValue {
        token: token("log", value),
        expected: LOG_VALUES,
        using: level_name(cfg.log).to_string(),
    })?;
    Ok(())
}

fn ring_name(ring: Option<BackendKind>) -> &'static str {
    ring.map_or("default", BackendKind::name)
}

fn apply_ring(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    let kind = BackendKind::from_param(value).ok_or_else(|| Warning::InvalidValue {
        token: token("ring", value),
        expected: BackendKind::PARAM_VALUES,
        using: ring_name(cfg.ring).to_string(),
    })?;
    cfg.ring = Some(kind);
    Ok(())
}

fn apply_syscall(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    cfg.syscall = SyscallMode::from_param(value).ok_or_else(|| Warning::InvalidValue {
        token: token("syscall", value),
        expected: SyscallMode::PARAM_VALUES,
        using: cfg.syscall.name().to_string(),
    })?;
    Ok(())
}

const TASKS_MAX_VALUES: &str = "auto|<count>";

fn tasks_max_name(tasks_max: Option<u32>) -> String {
    tasks_max.map_or_else(|| String::from("auto"), |n| n.to_string())
}

fn apply_tasks_max(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    // Decimal digits only (no sign), at least 1.
    let count = if value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse::<u32>().ok().filter(|&n| n > 0)
    } else {
        None
    };
    cfg.tasks_max = match (value, count) {
        ("auto", _) => None,
        (_, Some(count)) => Some(count),
        _ => {
            return Err(Warning::InvalidValue {
                token: token("tasks_max", value),
                expected: TASKS_MAX_VALUES,
                using: tasks_max_name(cfg.tasks_max),
            })
        }
    };
    Ok(())
}

const BLKTEST_VALUES: &str = "<disk name>|none";

fn apply_blktest(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    cfg.blktest = disk_name("blktest", value, &cfg.blktest)?;
    Ok(())
}

fn apply_root(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    cfg.root = disk_name("root", value, &cfg.root)?;
    Ok(())
}

fn apply_blkfloor(cfg: &mut BootConfig, value: &str) -> Result<(), Warning> {
    cfg.blkfloor = disk_name("blkfloor", value, &cfg.blkfloor)?;
    Ok(())
}

/// A disk name for parameter `key`: 1 to 16 lowercase letters and digits,
/// or `none`.
fn disk_name(key: &str, value: &str, current: &Option<String>) -> Result<Option<String>, Warning> {
    let valid = !value.is_empty()
        && value.len() <= 16
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid {
        return Err(Warning::InvalidValue {
            token: token(key, value),
            expected: BLKTEST_VALUES,
            using: current.clone().unwrap_or_else(|| "none".to_string()),
        });
    }
    Ok((value != "none").then(|| value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn root_takes_a_disk_name() {
        assert_eq!(parse_ok("root=nvme0n1").root.as_deref(), Some("nvme0n1"));
        assert_eq!(parse_ok("root=none").root, None);
        let (cfg, warnings) = parse("root=/dev/vda");
        assert_eq!(cfg.root, None);
        assert!(matches!(warnings[..], [Warning::InvalidValue { .. }]));
    }

    #[test]
    fn blktest_takes_a_disk_name() {
        assert_eq!(parse_ok("blktest=vda").blktest.as_deref(), Some("vda"));
        assert_eq!(parse_ok("blktest=none").blktest, None);
        assert_eq!(parse_ok("").blktest, None);
        for bad in ["blktest=VDA", "blktest=../x", "blktest=aaaaaaaaaaaaaaaaa"] {
            let (cfg, warnings) = parse(bad);
            assert_eq!(cfg.blktest, None);
            assert!(matches!(warnings[..], [Warning::InvalidValue { .. }]));
        }
    }

    #[test]
    fn tasks_max_takes_a_count_or_auto() {
        assert_eq!(parse_ok("tasks_max=100").tasks_max, Some(100));
        assert_eq!(parse_ok("tasks_max=auto").tasks_max, None);
        assert_eq!(parse_ok("tasks_max=4294967295").tasks_max, Some(u32::MAX));
        for bad in ["0", "-1", "+5", "1e3", "4294967296", "ten", "AUTO", "٣"] {
            let (cfg, warnings) = parse(&format!("tasks_max=7 tasks_max={bad}"));
            assert_eq!(cfg.tasks_max, Some(7), "{bad:?}");
            assert!(
                matches!(&warnings[..], [Warning::Duplicate { .. }, Warning::InvalidValue { using, .. }] if using == "7"),
                "{bad:?}: {warnings:?}"
            );
        }
    }

    fn parse_ok(cmdline: &str) -> BootConfig {
        let (cfg, warnings) = parse(cmdline);
        assert!(warnings.is_empty(), "{cmdline:?}: {warnings:?}");
        cfg
    }

    #[test]
    fn empty_command_line_gives_defaults() {
        assert_eq!(parse_ok(""), BootConfig::default());
        assert_eq!(parse_ok("   \t\n  "), BootConfig::default());
        let cfg = BootConfig::default();
        assert_eq!(cfg.init, "init");
        assert_eq!(cfg.log, LevelFilter::Info);
        assert_eq!(cfg.ring, None);
        assert_eq!(cfg.syscall, SyscallMode::Direct);
    }

    #[test]
    fn every_parameter_parses() {
        let cfg = parse_ok("init=/bin/sh log=trace ring=sqpoll syscall=ring");
        assert_eq!(cfg.init, "/bin/sh");
        assert_eq!(cfg.log, LevelFilter::Trace);
        assert_eq!(cfg.ring, Some(BackendKind::SqPoll));
        assert_eq!(cfg.syscall, SyscallMode::RingBased);

        let cfg = parse_ok("\tring=iouring\n syscall=direct  log=error ");
        assert_eq!(cfg.ring, Some(BackendKind::IoUring));
        assert_eq!(cfg.syscall, SyscallMode::Direct);
        assert_eq!(cfg.log, LevelFilter::Error);
    }

    #[test]
    fn every_log_level() {
        for (text, level) in [
            ("error", LevelFilter::Error),
            ("warn", LevelFilter::Warn),
            ("info", LevelFilter::Info),
            ("debug", LevelFilter::Debug),
            ("trace", LevelFilter::Trace),
        ] {
            assert_eq!(parse_ok(&format!("log={text}")).log, level);
            assert_eq!(level_name(level), text);
        }
    }

    #[test]
    fn from_param_round_trips_names() {
        for kind in [BackendKind::IoUring, BackendKind::SqPoll] {
            assert_eq!(BackendKind::from_param(kind.name()), Some(kind));
        }
        for mode in [SyscallMode::Direct, SyscallMode::RingBased] {
            assert_eq!(SyscallMode::from_param(mode.name()), Some(mode));
        }
        for bad in ["", "IOURING", "io_uring", "sqpoll ", "direct\0", "Ring"] {
            assert_eq!(BackendKind::from_param(bad), None);
            assert_eq!(SyscallMode::from_param(bad), None);
        }
    }

    #[test]
    fn invalid_values_warn_and_keep_the_default() {
        let (cfg, warnings) = parse("log=loud ring=bogus syscall=Direct");
        assert_eq!(cfg, BootConfig::default());
        assert_eq!(
            warnings,
            [
                Warning::InvalidValue {
                    token: "log=loud".into(),
                    expected: "error|warn|info|debug|trace",
                    using: "info".into(),
                },
                Warning::InvalidValue {
                    token: "ring=bogus".into(),
                    expected: "iouring|sqpoll",
                    using: "default".into(),
                },
                Warning::InvalidValue {
                    token: "syscall=Direct".into(),
                    expected: "direct|ring",
                    using: "direct".into(),
                },
            ]
        );
        assert_eq!(
            format!("{}", warnings[0]),
            "boot parameter \"log=loud\": expected one of error|warn|info|debug|trace; using info"
        );
    }

    #[test]
    fn empty_values_warn() {
        let (cfg, warnings) = parse("syscall= init= log= ring=");
        assert_eq!(cfg, BootConfig::default());
        assert_eq!(warnings.len(), 4);
        assert_eq!(
            warnings[0],
            Warning::EmptyValue {
                token: "syscall=".into(),
                using: "direct".into()
            }
        );
        assert_eq!(
            format!("{}", warnings[1]),
            "boot parameter \"init=\": empty value; using init"
        );
    }

    #[test]
    fn bare_words_empty_and_unknown_keys_warn() {
        let (cfg, warnings) = parse("quiet =x = foo=1 log=debug");
        assert_eq!(cfg.log, LevelFilter::Debug);
        assert_eq!(
            warnings,
            [
                Warning::BareWord {
                    token: "quiet".into()
                },
                Warning::EmptyKey { token: "=x".into() },
                Warning::EmptyKey { token: "=".into() },
                Warning::UnknownKey {
                    token: "foo=1".into()
                },
            ]
        );
        assert_eq!(
            format!("{}", warnings[3]),
            "boot parameter \"foo=1\": unknown parameter (known: init log ring syscall tasks_max blktest blkfloor root debug_panic); ignored"
        );
        assert_eq!(
            format!("{}", warnings[0]),
            "boot parameter \"quiet\": expected key=value; ignored"
        );
    }

    #[test]
    fn keys_are_case_sensitive() {
        let (cfg, warnings) = parse("LOG=debug");
        assert_eq!(cfg.log, LevelFilter::Info);
        assert!(matches!(warnings[..], [Warning::UnknownKey { .. }]));
    }

    #[test]
    fn value_may_contain_equals_sign() {
        // Only the first `=` separates key and value.
        let cfg = parse_ok("init=a=b");
        assert_eq!(cfg.init, "a=b");
        let (cfg, warnings) = parse("log==debug");
        assert_eq!(cfg.log, LevelFilter::Info);
        assert_eq!(warnings[0].token(), "log==debug");
    }

    #[test]
    fn duplicates_warn_and_last_valid_wins() {
        let (cfg, warnings) = parse("log=debug log=trace");
        assert_eq!(cfg.log, LevelFilter::Trace);
        assert_eq!(
            warnings,
            [Warning::Duplicate {
                token: "log=trace".into(),
                key: "log".into()
            }]
        );
        assert_eq!(
            format!("{}", warnings[0]),
            "boot parameter \"log=trace\": \"log\" given more than once; the last valid one wins"
        );

        // An invalid repetition does not undo the earlier valid value.
        let (cfg, warnings) = parse("ring=sqpoll ring=nope ring=");
        assert_eq!(cfg.ring, Some(BackendKind::SqPoll));
        assert_eq!(warnings.len(), 4);
        assert!(matches!(warnings[0], Warning::Duplicate { .. }));
        assert_eq!(
            warnings[1],
            Warning::InvalidValue {
                token: "ring=nope".into(),
                expected: "iouring|sqpoll",
                using: "sqpoll".into()
            }
        );
        assert!(matches!(warnings[2], Warning::Duplicate { .. }));
        assert!(matches!(warnings[3], Warning::EmptyValue { .. }));

        // Three times: two duplicate warnings.
        let (cfg, warnings) = parse("syscall=ring syscall=direct syscall=ring");
        assert_eq!(cfg.syscall, SyscallMode::RingBased);
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn init_length_limit() {
        let longest = "a".repeat(PATH_MAX);
        assert_eq!(parse_ok(&format!("init={longest}")).init, longest);

        let too_long = "a".repeat(PATH_MAX + 1);
        let (cfg, warnings) = parse(&format!("init={too_long}"));
        assert_eq!(cfg.init, "init");
        assert_eq!(
            warnings,
            [Warning::TooLong {
                token: format!("init={too_long}"),
                len: PATH_MAX + 1,
                max: PATH_MAX,
                using: "init".into()
            }]
        );
        assert!(format!("{}", warnings[0])
            .ends_with("value is 256 bytes, longer than the limit of 255; using init"));
    }

    #[test]
    fn init_must_be_a_file_name() {
        // "/" names no file; NUL is never part of a name.
        for bad in ["/", "///", "a\0b"] {
            let (cfg, warnings) = parse(&format!("init={bad}"));
            assert_eq!(cfg.init, "init", "{bad:?}");
            assert!(
                matches!(warnings[..], [Warning::InvalidValue { .. }]),
                "{bad:?}"
            );
        }
        // Non-ASCII names are fine.
        assert_eq!(parse_ok("init=prögrâm").init, "prögrâm");
    }

    #[test]
    fn only_ascii_whitespace_separates() {
        // U+00A0 (no-break space) is part of the token, not a separator.
        let cfg = parse_ok("init=a\u{a0}b");
        assert_eq!(cfg.init, "a\u{a0}b");
        let (_, warnings) = parse("log=info\u{a0}log=debug");
        assert!(matches!(warnings[..], [Warning::InvalidValue { .. }]));
    }

    #[test]
    fn display_config_and_help() {
        assert_eq!(
            format!("{}", BootConfig::default()),
            "init=init log=info ring=default syscall=direct tasks_max=auto blktest=none blkfloor=none root=none debug_panic=off"
        );
        let cfg = parse_ok("ring=iouring syscall=ring log=warn init=x");
        assert_eq!(
            format!("{cfg}"),
            "init=x log=warn ring=iouring syscall=ring tasks_max=auto blktest=none blkfloor=none root=none debug_panic=off"
        );
        assert!(parse_ok("debug_panic=boot").debug_panic);
        let (cfg, warnings) = parse("debug_panic=yes");
        assert!(!cfg.debug_panic);
        assert!(matches!(warnings[..], [Warning::InvalidValue { .. }]));
        // What Display prints parses back to the same configuration, except
        // `ring=default`, which is how `None` is shown.
        let (back, _) = parse(&format!("{cfg}"));
        assert_eq!(back, cfg);

        let help: Vec<String> = PARAMS.iter().map(|p| format!("{p}")).collect();
        assert_eq!(
            help[1],
            "log=error|warn|info|debug|trace (default info): the most verbose kernel log level printed"
        );
        for (spec, line) in PARAMS.iter().zip(&help) {
            assert!(line.starts_with(spec.name));
            assert!(!spec.help.is_empty() && !spec.help.contains('\n'));
        }
        assert!(format!("{:?}", PARAMS[0]).contains("init"));
    }

    #[test]
    fn param_names_are_unique_and_valid() {
        for (i, spec) in PARAMS.iter().enumerate() {
            assert!(!spec.name.is_empty());
            assert!(!spec.name.contains('=') && !spec.name.contains(' '));
            assert!(PARAMS[i + 1..].iter().all(|other| other.name != spec.name));
            assert_eq!(find_param(spec.name).map(|p| p.name), Some(spec.name));
        }
        assert!(find_param("nope").is_none());
    }

    #[test]
    fn default_values_reparse_to_defaults() {
        // Each parameter's printed default is accepted by its own parser,
        // except ring's "default", which stands for `None`.
        for spec in PARAMS.iter().filter(|spec| spec.name != "ring") {
            let mut cfg = BootConfig::default();
            let value = (spec.current)(&cfg);
            (spec.apply)(&mut cfg, &value).unwrap();
            assert_eq!(cfg, BootConfig::default(), "{}", spec.name);
        }
    }

    /// A small deterministic generator, so the fuzz test needs no crate.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        const PIECES: &[&str] = &[
            "=",
            "==",
            " ",
            "\t",
            "\n",
            "\r",
            "\u{a0}",
            "\u{3000}",
            "\0",
            "log",
            "init",
            "ring",
            "syscall",
            "tasks_max",
            "debug",
            "ring",
            "iouring",
            "sqpoll",
            "direct",
            "é",
            "日本",
            "🦀",
            "\u{feff}",
            "\u{202e}",
            "\"",
            "'",
            "\\",
            "/",
            "a",
            "Z",
            "0",
            "\u{7f}",
            "\u{10ffff}",
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut line = String::new();
            for _ in 0..rng.below(24) {
                line.push_str(PIECES[rng.below(PIECES.len())]);
            }
            let (cfg, warnings) = parse(&line);
            // Every warning names a token that really is on the line, and its
            // message can be formatted.
            for warning in &warnings {
                assert!(line.contains(warning.token()), "{line:?}: {warning:?}");
                assert!(!format!("{warning}").is_empty());
            }
            assert!(!cfg.init.is_empty() && cfg.init.len() <= PATH_MAX);
        }
        // Arbitrary chars, including every kind of control and surrogate-free
        // scalar value.
        for _ in 0..5_000 {
            let line: String = (0..rng.below(64))
                .filter_map(|_| char::from_u32((rng.next() % 0x11_0000) as u32))
                .collect();
            let _ = parse(&line);
        }
        // A huge value.
        let (_, warnings) = parse(&format!("init={}", "é".repeat(10_000)));
        assert!(matches!(
            warnings[..],
            [Warning::TooLong { len: 20_000, .. }]
        ));
    }
}
