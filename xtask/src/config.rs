//! Boot configurations: one `configs/NAME.toml` file per way of booting the
//! kernel (command line, kernel features, CPUs, memory, boot method, whether
//! `cargo xtask test` runs it).
//!
//! The files use a small subset of TOML, parsed here by hand so the build
//! runner needs no dependencies: one `key = value` per line, values are
//! `"strings"` (escapes `\"` and `\\` only), non-negative integers, `true` /
//! `false`, or one-line arrays of strings `["a", "b"]`; `#` starts a comment.
//! Anything else (tables, unknown keys, repeated keys) is rejected with the
//! file and line, so a typo never silently falls back to a default.

use std::fs;
use std::path::Path;
use std::time::Duration;
use std::{fmt, io};

use crate::disks::{DiskSpec, MachineType};
use crate::error::{bail, Error, Result};

/// How QEMU loads the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// `qemu -kernel`: QEMU loads the ELF itself and enters it through its
    /// PVH note. Fast, no firmware, no bootloader.
    Pvh,
    /// GRUB from an ISO under SeaBIOS (multiboot2).
    Bios,
    /// GRUB from an ISO under OVMF (UEFI firmware, multiboot2).
    Uefi,
}

impl Boot {
    pub const ALL: [Boot; 3] = [Boot::Pvh, Boot::Bios, Boot::Uefi];

    pub fn name(self) -> &'static str {
        match self {
            Boot::Pvh => "pvh",
            Boot::Bios => "bios",
            Boot::Uefi => "uefi",
        }
    }

    fn from_name(name: &str) -> Option<Boot> {
        Boot::ALL.into_iter().find(|boot| boot.name() == name)
    }
}

/// One boot configuration, read from `configs/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file name without `.toml`.
    pub name: String,
    /// One line on what this configuration is for.
    pub description: String,
    /// Kernel command line.
    pub cmdline: String,
    /// Kernel Cargo features; `None` builds with the default features.
    pub features: Option<Vec<String>>,
    pub cpus: u32,
    /// QEMU `-m` argument, e.g. `512M`.
    pub memory: String,
    pub boot: Boot,
    /// Whether `cargo xtask test` boots this configuration.
    pub test: bool,
    /// How long a test boot may run before QEMU is killed.
    pub timeout: Duration,
    /// The QEMU machine: `pc` (default, the Linux anchor's) or `q35`.
    pub machine: MachineType,
    /// Disks to attach, in order (`virtio:64M`, `nvme:256M`: fresh sparse
    /// images per boot; or `KIND:PATH`).
    pub disks: Vec<DiskSpec>,
    /// A script (`configs/scripts/<name>.script`, see [`crate::script`])
    /// that a test boot plays against the machine: waits for output, types
    /// on the serial port or the keyboard, checks the screen.
    pub script: Option<String>,
    /// Whether the machine has a serial port (COM1). Without one, only the
    /// screen shows what happens, so a script must check it there.
    pub serial: bool,
    /// More QEMU arguments (`["-machine", "acpi=off"]`).
    pub qemu_args: Vec<String>,
    /// `session = "NAME"`: the test boot is driven over the serial port by
    /// the script `configs/NAME.session` (see `session.rs`), which judges
    /// it instead of the test-summary line.
    pub session: Option<String>,
    /// `icount_gate = "NAME"`: the test boot runs under QEMU's deterministic
    /// mode and its `BENCH` figures (instructions per op) must stay within
    /// 10% of `configs/NAME.baseline` (see `gate.rs`), which judges it
    /// instead of the test-summary line.
    pub icount_gate: Option<String>,
    /// `runner = "crashtest"` or `"persist"`: the test is not one boot but
    /// several on one disk image, driven by that runner (`crashtest.rs`,
    /// `persist.rs`), which judges it.
    pub runner: Option<Runner>,
}

/// A test that boots several times on one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// Writer boots killed with SIGKILL, checker boots, host checks.
    Crashtest,
    /// Host writes, guest reads and writes, a second boot reads, host reads.
    Persist,
}

/// The keys a configuration file may contain, for error messages.
const KNOWN_KEYS: &str =
    "description, cmdline, features, cpus, memory, boot, test, timeout, machine, disks, script, serial, qemu_args, session, icount_gate, runner";

impl Config {
    /// Reads `dir/<name>.toml`.
    pub fn load(dir: &Path, name: &str) -> Result<Config> {
        if !is_valid_name(name) {
            bail!("invalid configuration name `{name}`: use letters, digits, `-` and `_`");
        }
        let path = dir.join(format!("{name}.toml"));
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let known = config_names(dir)?.join(", ");
                bail!(
                    "no configuration `{name}` ({} does not exist); known: {known}",
                    path.display()
                )
            }
            Err(err) => return Err(Error::io("read", &path, err)),
        };
        Ok(Config::parse(name, &path.display().to_string(), &text)?)
    }

    /// Reads every `*.toml` file in `dir`, sorted by name.
    pub fn load_all(dir: &Path) -> Result<Vec<Config>> {
        config_names(dir)?
            .iter()
            .map(|name| Config::load(dir, name))
            .collect()
    }

    /// Parses the text of a configuration file; `file` names it in errors.
    pub fn parse(name: &str, file: &str, text: &str) -> Result<Config, ConfigError> {
        let error = |line: usize, message: String| ConfigError {
            file: file.to_string(),
            line,
            message,
        };
        let mut config = Config {
            name: name.to_string(),
            description: String::new(),
            cmdline: String::new(),
            features: None,
            cpus: 1,
            memory: "512M".to_string(),
            boot: Boot::Pvh,
            test: false,
            timeout: Duration::from_secs(120),
            machine: MachineType::Pc,
            disks: Vec::new(),
            script: None,
            serial: true,
            qemu_args: Vec::new(),
            session: None,
            icount_gate: None,
            runner: None,
        };
        let mut seen: Vec<String> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let Some((key, value)) = parse_line(line).map_err(|msg| error(line_no, msg))? else {
                continue;
            };
            if seen.contains(&key) {
                return Err(error(line_no, format!("`{key}` is set twice")));
            }
            config.set(&key, value).map_err(|msg| error(line_no, msg))?;
            seen.push(key);
        }
        if config.description.trim().is_empty() {
            let message = "`description` is missing; say what this configuration is for";
            return Err(error(0, message.into()));
        }
        Ok(config)
    }

    /// Sets `key` from the value on its line.
    fn set(&mut self, key: &str, value: Value) -> Result<(), String> {
        match key {
            "description" => self.description = value.into_string(key)?,
            "cmdline" => self.cmdline = value.into_string(key)?,
            "features" => {
                let features = value.into_array(key)?;
                if let Some(bad) = features.iter().find(|f| !is_valid_feature(f)) {
                    return Err(format!("`{bad}` is not a Cargo feature name"));
                }
                self.features = Some(features);
            }
            "cpus" => {
                self.cpus = match u32::try_from(value.into_integer(key)?) {
                    Ok(cpus @ 1..=255) => cpus,
                    _ => return Err("`cpus` must be 1 to 255".into()),
                };
            }
            "memory" => {
                let memory = value.into_string(key)?;
                if !is_valid_memory(&memory) {
                    return Err(format!(
                        "`memory` must be a size such as \"512M\" or \"2G\", not \"{memory}\""
                    ));
                }
                self.memory = memory;
            }
            "boot" => {
                let boot = value.into_string(key)?;
                self.boot = Boot::from_name(&boot).ok_or_else(|| {
                    format!("`boot` must be \"pvh\", \"bios\" or \"uefi\", not \"{boot}\"")
                })?;
            }
            "test" => self.test = value.into_boolean(key)?,
            "timeout" => match value.into_integer(key)? {
                0 => return Err("`timeout` must be at least 1 second".into()),
                seconds => self.timeout = Duration::from_secs(seconds),
            },
            "machine" => {
                let machine = value.into_string(key)?;
                self.machine = MachineType::from_name(&machine).ok_or_else(|| {
                    format!("`machine` must be \"pc\" or \"q35\", not \"{machine}\"")
                })?;
            }
            "disks" => {
                self.disks = value
                    .into_array(key)?
                    .iter()
                    .map(|spec| DiskSpec::parse(spec))
                    .collect::<Result<_, _>>()?;
            }
            "script" => {
                let script = value.into_string(key)?;
                if !is_valid_name(&script) {
                    return Err(format!(
                        "`script` must name a file in configs/scripts, not `{script}`"
                    ));
                }
                self.script = Some(script);
            }
            "serial" => self.serial = value.into_boolean(key)?,
            "qemu_args" => self.qemu_args = value.into_array(key)?,
            "session" => {
                let session = value.into_string(key)?;
                if !is_valid_name(&session) {
                    return Err(format!(
                        "`session` must name a script in configs/, not \"{session}\""
                    ));
                }
                self.session = Some(session);
            }
            "icount_gate" => {
                let gate = value.into_string(key)?;
                if !is_valid_name(&gate) {
                    return Err(format!(
                        "`icount_gate` must name a baseline in configs/, not \"{gate}\""
                    ));
                }
                self.icount_gate = Some(gate);
            }
            "runner" => {
                let runner = value.into_string(key)?;
                self.runner = Some(match runner.as_str() {
                    "crashtest" => Runner::Crashtest,
                    "persist" => Runner::Persist,
                    _ => {
                        return Err(format!(
                            "`runner` must be \"crashtest\" or \"persist\", not \"{runner}\""
                        ))
                    }
                });
            }
            _ => return Err(format!("unknown key `{key}` (known keys: {KNOWN_KEYS})")),
        }
        Ok(())
    }
}

/// A configuration file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line number; 0 when the problem concerns the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        Error::new(err.to_string())
    }
}

/// The names of all configurations in `dir`, sorted.
pub fn config_names(dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|err| Error::io("list", dir, err))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.map_err(|err| Error::io("list", dir, err))?.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            if let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_valid_feature(name: &str) -> bool {
    is_valid_name(name)
        || name
            .split_once('/')
            .is_some_and(|(a, b)| is_valid_name(a) && is_valid_name(b))
}

/// A QEMU memory size: digits with an optional `K`, `M`, `G` or `T` suffix.
fn is_valid_memory(memory: &str) -> bool {
    let digits = memory.trim_end_matches(['K', 'M', 'G', 'T']);
    memory.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.chars().any(|c| c != '0')
}

/// A value on the right of `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    String(String),
    Integer(u64),
    Boolean(bool),
    Array(Vec<String>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Boolean(_) => "a boolean",
            Value::Array(_) => "an array",
        }
    }

    fn mismatch(&self, key: &str, expected: &str) -> String {
        format!("`{key}` must be {expected}, not {}", self.kind())
    }

    fn into_string(self, key: &str) -> Result<String, String> {
        match self {
            Value::String(s) => Ok(s),
            other => Err(other.mismatch(key, "a string")),
        }
    }

    fn into_integer(self, key: &str) -> Result<u64, String> {
        match self {
            Value::Integer(n) => Ok(n),
            other => Err(other.mismatch(key, "an integer")),
        }
    }

    fn into_boolean(self, key: &str) -> Result<bool, String> {
        match self {
            Value::Boolean(b) => Ok(b),
            other => Err(other.mismatch(key, "true or false")),
        }
    }

    fn into_array(self, key: &str) -> Result<Vec<String>, String> {
        match self {
            Value::Array(items) => Ok(items),
            other => Err(other.mismatch(key, "an array of strings")),
        }
    }
}

/// Parses one line: `None` for blank and comment lines.
fn parse_line(line: &str) -> Result<Option<(String, Value)>, String> {
    let mut cursor = Cursor { rest: line };
    cursor.skip_space();
    if cursor.at_end_or_comment() {
        return Ok(None);
    }
    if cursor.rest.starts_with('[') {
        return Err("tables are not supported; write `key = value` lines only".into());
    }
    let key = cursor.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if key.is_empty() {
        return Err(format!("expected `key = value`, found `{}`", line.trim()));
    }
    cursor.skip_space();
    if !cursor.eat('=') {
        return Err(format!("expected `=` after `{key}`"));
    }
    cursor.skip_space();
    let value = cursor.value()?;
    cursor.skip_space();
    if !cursor.at_end_or_comment() {
        return Err(format!(
            "unexpected `{}` after the value",
            cursor.rest.trim_end()
        ));
    }
    Ok(Some((key.to_string(), value)))
}

/// The unparsed remainder of a line.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn at_end_or_comment(&self) -> bool {
        self.rest.is_empty() || self.rest.starts_with('#')
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &'a str {
        let end = self.rest.find(|c| !pred(c)).unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.rest.chars().next() {
            Some('"') => self.string().map(Value::String),
            Some('[') => self.array().map(Value::Array),
            Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '+' => {
                let word = self.take_while(|c| c.is_ascii_alphanumeric() || "-+_.".contains(c));
                match word {
                    "true" => Ok(Value::Boolean(true)),
                    "false" => Ok(Value::Boolean(false)),
                    _ if word.chars().all(|c| c.is_ascii_digit()) => word
                        .parse()
                        .map(Value::Integer)
                        .map_err(|_| format!("integer `{word}` is too large")),
                    _ => Err(format!(
                        "`{word}` is not a value: write a non-negative integer, true, false, or \"quote\" strings"
                    )),
                }
            }
            _ => Err("expected a value: \"string\", integer, true/false or [\"array\"]".into()),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let mut chars = self.rest.char_indices();
        chars.next(); // the opening quote
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, escaped @ ('"' | '\\'))) => out.push(escaped),
                    Some((_, other)) => {
                        return Err(format!(
                            "unsupported escape `\\{other}` (only `\\\"` and `\\\\`)"
                        ))
                    }
                    None => break,
                },
                c if c.is_control() && c != '\t' => {
                    return Err("control character in string".into());
                }
                c => out.push(c),
            }
        }
        Err("string is not closed with `\"` on the same line".into())
    }

    fn array(&mut self) -> Result<Vec<String>, String> {
        self.eat('[');
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.eat(']') {
                return Ok(items);
            }
            if self.rest.starts_with('"') {
                items.push(self.string()?);
            } else if self.at_end_or_comment() {
                return Err("array is not closed with `]` on the same line".into());
            } else {
                return Err("arrays may only hold \"strings\"".into());
            }
            self.skip_space();
            if !self.eat(',') && !self.rest.starts_with(']') {
                return Err("expected `,` or `]` after an array item".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse("t", "configs/t.toml", text)
    }

    fn parse_err(text: &str) -> String {
        parse(text).expect_err("should be rejected").to_string()
    }

    #[test]
    fn defaults_apply_to_absent_keys() {
        let config = parse("description = \"d\"\n").unwrap();
        assert_eq!(config.name, "t");
        assert_eq!(config.cmdline, "");
        assert_eq!(config.features, None);
        assert_eq!(config.cpus, 1);
        assert_eq!(config.memory, "512M");
        assert_eq!(config.boot, Boot::Pvh);
        assert!(!config.test);
        assert_eq!(config.timeout, Duration::from_secs(120));
        assert_eq!(config.script, None);
        assert!(config.serial);
        assert!(config.qemu_args.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"
# A full configuration.
description = "all keys"   # trailing comment
cmdline = "init=tests log=info # not a comment"
features = ["iouring", "sqpoll",]
cpus = 4
memory = "1G"
boot = "uefi"
test = true
timeout = 300
machine = "q35"
disks = ["virtio:64M", "nvme:/tmp/n.img"]
script = "console-serial"
serial = false
qemu_args = ["-machine", "acpi=off"]
"#;
        let config = parse(text).unwrap();
        assert_eq!(config.description, "all keys");
        assert_eq!(config.cmdline, "init=tests log=info # not a comment");
        assert_eq!(
            config.features,
            Some(vec!["iouring".into(), "sqpoll".into()])
        );
        assert_eq!(config.cpus, 4);
        assert_eq!(config.memory, "1G");
        assert_eq!(config.boot, Boot::Uefi);
        assert!(config.test);
        assert_eq!(config.timeout, Duration::from_secs(300));
        assert_eq!(config.machine, MachineType::Q35);
        assert_eq!(
            config.disks,
            [
                DiskSpec::parse("virtio:64M").unwrap(),
                DiskSpec::parse("nvme:/tmp/n.img").unwrap()
            ]
        );
        assert_eq!(config.script.as_deref(), Some("console-serial"));
        assert!(!config.serial);
        assert_eq!(config.qemu_args, ["-machine", "acpi=off"]);
    }

    #[test]
    fn machine_and_disks_are_checked() {
        assert!(parse_err("description = \"d\"\nmachine = \"isapc\"\n").contains("`machine`"));
        assert!(parse_err("description = \"d\"\ndisks = [\"scsi:1M\"]\n").contains("scsi"));
        let config = parse("description = \"d\"\n").unwrap();
        assert_eq!(config.machine, MachineType::Pc);
        assert!(config.disks.is_empty());
    }

    #[test]
    fn runners() {
        let config = parse("description = \"d\"\nrunner = \"crashtest\"\n").unwrap();
        assert_eq!(config.runner, Some(Runner::Crashtest));
        let config = parse("description = \"d\"\nrunner = \"persist\"\n").unwrap();
        assert_eq!(config.runner, Some(Runner::Persist));
        assert!(parse_err("description = \"d\"\nrunner = \"fuzz\"\n").contains("`runner`"));
        assert_eq!(parse("description = \"d\"\n").unwrap().runner, None);
    }

    #[test]
    fn empty_feature_list_means_no_features() {
        let config = parse("description = \"d\"\nfeatures = []\n").unwrap();
        assert_eq!(config.features, Some(vec![]));
    }

    #[test]
    fn string_escapes() {
        let config = parse(r#"description = "say \"hi\" \\ bye""#).unwrap();
        assert_eq!(config.description, r#"say "hi" \ bye"#);
        assert!(parse_err(r#"description = "a\nb""#).contains("unsupported escape"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse("description = \"d\"\n\nfrobnicate = 1\n").unwrap_err();
        assert_eq!(err.file, "configs/t.toml");
        assert_eq!(err.line, 3);
        assert!(err
            .to_string()
            .starts_with("configs/t.toml:3: unknown key `frobnicate`"));
    }

    #[test]
    fn malformed_lines_are_rejected() {
        let cases = [
            ("description \"d\"", "expected `=`"),
            ("= 1", "expected `key = value`"),
            ("[section]", "tables are not supported"),
            ("description = \"d", "not closed"),
            ("description = d", "not a value"),
            ("description = \"d\" \"e\"", "unexpected"),
            ("features = [\"a\" \"b\"]", "expected `,` or `]`"),
            ("features = [\"a\",", "array is not closed"),
            ("features = [1]", "only hold"),
            ("cpus = -1", "not a value"),
            ("cpus = 99999999999999999999999", "too large"),
            ("description =", "expected a value"),
        ];
        for (line, expected) in cases {
            // Line 1 is a comment, so the bad line is line 2.
            let err = parse_err(&format!("# comment\n{line}\n"));
            assert!(err.starts_with("configs/t.toml:2: "), "{line}: {err}");
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn wrong_types_and_values_are_rejected() {
        let cases = [
            ("cpus = \"2\"", "`cpus` must be an integer, not a string"),
            ("test = 1", "`test` must be true or false"),
            ("features = \"iouring\"", "must be an array"),
            ("features = [\"io uring\"]", "not a Cargo feature"),
            ("cpus = 0", "1 to 255"),
            ("memory = \"lots\"", "`memory` must be a size"),
            ("memory = \"512MB\"", "`memory` must be a size"),
            ("boot = \"efi\"", "\"pvh\", \"bios\" or \"uefi\""),
            ("timeout = 0", "at least 1 second"),
            ("script = \"../x\"", "must name a file"),
            ("serial = \"no\"", "`serial` must be true or false"),
        ];
        for (line, expected) in cases {
            let err = parse_err(&format!("description = \"d\"\n{line}\n"));
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn repeated_and_missing_keys_are_rejected() {
        assert!(parse_err("description = \"d\"\ncpus = 1\ncpus = 2\n")
            .contains(":3: `cpus` is set twice"));
        assert_eq!(
            parse_err("cpus = 2\n"),
            "configs/t.toml: `description` is missing; say what this configuration is for"
        );
    }

    #[test]
    fn memory_sizes() {
        for ok in ["512M", "1G", "1048576", "64K"] {
            assert!(is_valid_memory(ok), "{ok}");
        }
        for bad in ["", "M", "0M", "1.5G", "512MM", "-1G"] {
            assert!(!is_valid_memory(bad), "{bad}");
        }
    }

    #[test]
    fn shipped_configurations_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let configs = Config::load_all(&dir).unwrap();
        let names: Vec<_> = configs.iter().map(|c| c.name.as_str()).collect();
        for required in [
            "default",
            "foundation",
            "grub-bios",
            "grub-uefi",
            "bootparam-bad",
            "bench",
            "rings",
        ] {
            assert!(
                names.contains(&required),
                "configs/{required}.toml is missing"
            );
        }
    }
}
