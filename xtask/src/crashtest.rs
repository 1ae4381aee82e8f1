//! `cargo xtask crashtest`: proves that `fsync` on the disk file system
//! means durable, by killing the machine at random moments.
//!
//! One ext4 image (made like the Linux anchor's, [`disks::make_ext4`]) is
//! used for every round, so each round appends after what the previous
//! rounds left, after a journal replay. A round:
//!
//! 1. boots the kernel (PVH) with `init=crashwriter` on the image. The
//!    writer cuts any torn tail, prints `START n` (the intact records it
//!    kept), then appends numbered, checksummed records
//!    (`abi::crash_log`) to `/disk/crash.log`, one `write` + `fsync` each,
//!    and prints `DURABLE k` after each fsync returned;
//! 2. after a random number of records (1 to [`MAX_RECORDS_PER_ROUND`])
//!    and a random delay (0 to [`MAX_KILL_DELAY_MS`] ms), kills QEMU with
//!    SIGKILL (the child this runner spawned, by its PID). Every `DURABLE`
//!    line QEMU printed before it died counts: its fsync had returned;
//! 3. boots again with `init=crashcheck`, which must mount the image
//!    (replaying the journal), find records 1..=N intact with
//!    N >= the last `DURABLE` and at most one torn record after them,
//!    print `CHECK records=N tail=T ok` and power off cleanly;
//! 4. runs `e2fsck -fn` on the image (must be clean) and
//!    `debugfs -R "cat /crash.log"`, and checks the records again on the
//!    host: the same N and tail as the guest saw.
//!
//! The next round's writer must then report `START N`. The random choices
//! come from one seed, printed first (`--seed` repeats them; the timing of
//! the kill relative to the guest's work cannot be repeated exactly).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use abi::crash_log;
use abi::disk_test::splitmix64;

use crate::cmdline::Cmdline;
use crate::config::Config;
use crate::disks::{self, Disk, DiskKind};
use crate::error::Result;
use crate::image::{self, Build};
use crate::process::describe;
use crate::qemu::{Emulation, Machine, Media, Outcome, Verdict};
use crate::workspace::Workspace;

/// The configuration whose kernel, CPUs, memory and command line the
/// crash test boots.
pub const DEFAULT_CONFIG: &str = "crashtest";
/// Rounds of `cargo xtask crashtest` without `--rounds`, and of the
/// `crashtest` configuration in `cargo xtask test`.
pub const DEFAULT_ROUNDS: u32 = 20;
/// Size of the image.
const IMAGE_SIZE: u64 = 64 << 20;
/// The most records a round waits for before the kill.
const MAX_RECORDS_PER_ROUND: u64 = 40;
/// The longest delay between the awaited `DURABLE` and the kill.
const MAX_KILL_DELAY_MS: u64 = 50;

/// What `cargo xtask crashtest` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashOptions {
    pub config: String,
    pub rounds: u32,
    /// `--disk`; `None`: the configuration's first disk's kind (virtio
    /// if it has none).
    pub kind: Option<DiskKind>,
    pub seed: Option<u64>,
}

impl Default for CrashOptions {
    fn default() -> Self {
        CrashOptions {
            config: DEFAULT_CONFIG.to_string(),
            rounds: DEFAULT_ROUNDS,
            kind: None,
            seed: None,
        }
    }
}

/// `cargo xtask crashtest`: 0 if every round passed, 1 otherwise.
pub fn run(workspace: &Workspace, options: &CrashOptions) -> Result<u8> {
    let config = Config::load(&workspace.configs_dir(), &options.config)?;
    let build = image::build(workspace, &config, &[])?;
    match run_rounds(workspace, &config, &build, options) {
        Ok(()) => Ok(0),
        Err(reason) => {
            println!("crashtest FAILED: {reason}");
            Ok(1)
        }
    }
}

/// The crash test as a test boot of `config` (`runner = "crashtest"`): its
/// first disk's kind, [`DEFAULT_ROUNDS`] rounds, a fresh seed.
pub fn run_for_test(workspace: &Workspace, config: &Config, build: &Build) -> Result<(), String> {
    let options = CrashOptions {
        config: config.name.clone(),
        rounds: DEFAULT_ROUNDS,
        kind: None,
        seed: None,
    };
    run_rounds(workspace, config, build, &options)
}

fn run_rounds(
    workspace: &Workspace,
    config: &Config,
    build: &Build,
    options: &CrashOptions,
) -> Result<(), String> {
    let seed = options.seed.unwrap_or_else(time_seed);
    let kind = options
        .kind
        .or(config.disks.first().map(|d| d.kind))
        .unwrap_or(DiskKind::Virtio);
    let mut rng = seed;
    let dir = workspace.target_dir().join("crashtest");
    let image = dir.join(format!("{}-{}.img", config.name, kind.name()));
    disks::make_ext4(&image, IMAGE_SIZE).map_err(|err| err.to_string())?;
    println!(
        "crashtest: seed {seed:#x}, {} rounds, {} disk, image {}",
        options.rounds,
        kind.name(),
        image.display()
    );
    let disk = Disk {
        kind,
        path: image.clone(),
    };
    let boot = |init: &str| -> Machine {
        let mut cmdline = Cmdline::parse(&config.cmdline);
        cmdline.set_params(&format!("init={init}"));
        Machine {
            cpus: config.cpus,
            memory: config.memory.clone(),
            media: Media::Pvh {
                kernel: build.kernel.clone(),
                initrd: build.initrd.clone(),
                cmdline: cmdline.to_string(),
            },
            emulation: Emulation::Tcg,
            machine_type: config.machine,
            disks: vec![disk.clone()],
        }
    };
    let start = Instant::now();
    let mut records = 0u32;
    let mut state = 0u32;
    let mut recoveries = 0u32;
    for round in 1..=options.rounds {
        let round_start = Instant::now();
        let wanted = 1 + splitmix64(&mut rng) % MAX_RECORDS_PER_ROUND;
        let delay = Duration::from_millis(splitmix64(&mut rng) % (MAX_KILL_DELAY_MS + 1));
        let log = dir.join(format!("{}-round{round}-writer.log", config.name));
        let written = write_and_kill(&boot("crashwriter"), &log, wanted, delay, config.timeout)
            .map_err(|why| format!("round {round}: writer: {why} (log {})", log.display()))?;
        // Whether the kill left a journal to replay (the superblock's
        // needs_recovery flag), for the summary: rounds that did test the
        // kernel's replay.
        let needs_recovery = needs_recovery(&image);
        recoveries += u32::from(needs_recovery);
        if written.start != records {
            return Err(format!(
                "round {round}: the writer found {} intact records, the last check found {records} (log {})",
                written.start,
                log.display()
            ));
        }
        let log = dir.join(format!("{}-round{round}-check.log", config.name));
        let checked = check_boot(&boot("crashcheck"), &log, config.timeout)
            .map_err(|why| format!("round {round}: checker: {why} (log {})", log.display()))?;
        if checked.records < written.durable {
            return Err(format!(
                "round {round}: fsync broke its promise: record {} was reported durable, \
                 only {} records survived the kill (logs in {})",
                written.durable,
                checked.records,
                dir.display()
            ));
        }
        let host = host_check(&image).map_err(|why| format!("round {round}: host check: {why}"))?;
        // The state this round's writer reported durable (it replaces the
        // state only for records after its START), else the last check's.
        let reported = crash_log::min_state(written.durable);
        let min_state = if reported > written.start {
            reported.max(state)
        } else {
            state
        };
        if checked.state < min_state || checked.state > checked.records {
            return Err(format!(
                "round {round}: crash.state holds record {}; after START {} and DURABLE {} \
                 it must hold {min_state} or later, and no record past the {} in the log",
                checked.state, written.start, written.durable, checked.records
            ));
        }
        state = checked.state;
        if host != checked {
            return Err(format!(
                "round {round}: debugfs reads {host:?}, the guest read {checked:?}"
            ));
        }
        println!(
            "round {round}/{}: START {}, killed {} ms after DURABLE {} (asked {wanted}){}, \
             CHECK records={} tail={} state={}, host agrees, e2fsck clean ({:.1} s)",
            options.rounds,
            written.start,
            delay.as_millis(),
            written.durable,
            if needs_recovery {
                ", journal to replay"
            } else {
                ""
            },
            checked.records,
            checked.tail,
            checked.state,
            round_start.elapsed().as_secs_f64()
        );
        records = checked.records;
    }
    println!(
        "crashtest: {} of {} rounds passed, {records} records durable across them, \
         {recoveries} kills left a journal to replay (seed {seed:#x}, {}, {:.1} s)",
        options.rounds,
        options.rounds,
        kind.name(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether the ext4 superblock in `image` has `needs_recovery` set
/// (`dumpe2fs -h`): the journal holds transactions to replay at the next
/// mount. `false` if dumpe2fs cannot tell.
fn needs_recovery(image: &Path) -> bool {
    Command::new("dumpe2fs")
        .arg("-h")
        .arg(image)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout).lines().any(|line| {
                line.starts_with("Filesystem features:") && line.contains("needs_recovery")
            })
        })
        .unwrap_or(false)
}

/// A seed from the clock, for runs without `--seed`.
fn time_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos ^ u64::from(std::process::id());
    splitmix64(&mut state)
}

/// What a writer boot reported before it was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    /// `START n`: intact records the writer found.
    start: u32,
    /// The last `DURABLE k` QEMU printed before it died.
    durable: u32,
}

/// What one line of the writer's serial output says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WriterLine {
    Start(u32),
    Durable(u32),
    Fail(String),
    Other,
}

/// Parses a line of the writer's output. The words may follow other
/// output on the same line (a kernel log line without its newline yet).
fn parse_writer_line(line: &str) -> WriterLine {
    let number = |rest: &str| rest.trim().parse::<u32>().ok();
    if let Some(at) = line.find("WRITER FAIL") {
        return WriterLine::Fail(line[at..].to_string());
    }
    if let Some(n) = line.find("DURABLE ").and_then(|at| number(&line[at + 8..])) {
        return WriterLine::Durable(n);
    }
    if let Some(n) = line.find("START ").and_then(|at| number(&line[at + 6..])) {
        return WriterLine::Start(n);
    }
    WriterLine::Other
}

/// Boots the writer, waits for `wanted` records after its `START`, waits
/// `delay` and kills QEMU with SIGKILL. The serial output goes to `log`.
fn write_and_kill(
    machine: &Machine,
    log: &Path,
    wanted: u64,
    delay: Duration,
    timeout: Duration,
) -> Result<Written, String> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    let file =
        File::create(log).map_err(|err| format!("cannot create {}: {err}", log.display()))?;
    let file = Arc::new(Mutex::new(file));
    let mut cmd: Command = machine.command();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|err| format!("cannot run `{}`: {err}", describe(&cmd)))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let outputs: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    ];
    for output in outputs.into_iter().flatten() {
        let tx = tx.clone();
        let file = Arc::clone(&file);
        readers.push(thread::spawn(move || forward_lines(output, &file, &tx)));
    }
    drop(tx);

    let deadline = Instant::now() + timeout;
    let mut start = None;
    let mut durable = 0u32;
    let mut failure = None;
    let mut target = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            failure = Some(format!(
                "timed out after {} s (START {start:?}, DURABLE {durable})",
                timeout.as_secs()
            ));
            break;
        }
        let line = match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                failure = Some(format!(
                    "QEMU ended by itself before the kill (START {start:?}, DURABLE {durable})"
                ));
                break;
            }
        };
        match parse_writer_line(&line) {
            WriterLine::Start(n) => {
                start = Some(n);
                target = Some(u64::from(n) + wanted);
            }
            WriterLine::Durable(n) => {
                durable = durable.max(n);
                if target.is_some_and(|t| u64::from(n) >= t) {
                    thread::sleep(delay);
                    break;
                }
            }
            WriterLine::Fail(text) => {
                failure = Some(text);
                break;
            }
            WriterLine::Other => {}
        }
    }
    // `Child::kill` sends SIGKILL to this child's PID only: the power cut.
    let _ = child.kill();
    let _ = child.wait();
    for reader in readers {
        let _ = reader.join();
    }
    // Lines QEMU printed before it died count too: their fsync returned.
    for line in rx.try_iter() {
        match parse_writer_line(&line) {
            WriterLine::Durable(n) => durable = durable.max(n),
            WriterLine::Fail(text) if failure.is_none() => failure = Some(text),
            _ => {}
        }
    }
    if let Some(why) = failure {
        return Err(why);
    }
    let start = start.ok_or("no START line")?;
    Ok(Written { start, durable })
}

/// Copies `from` line by line into `log` (without `\r`) and to `tx`.
fn forward_lines(from: Box<dyn Read + Send>, log: &Mutex<File>, tx: &mpsc::Sender<String>) {
    let mut reader = BufReader::new(from);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        raw.retain(|&b| b != b'\r');
        if let Ok(mut log) = log.lock() {
            let _ = log.write_all(&raw);
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        let _ = tx.send(line);
    }
}

/// What the checker (guest or host) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    records: u32,
    tail: u64,
    /// The record `crash.state` holds (0: none).
    state: u32,
}

/// Parses `CHECK records=N tail=T state=S ok`.
fn parse_check_line(line: &str) -> Option<Found> {
    let rest = &line[line.find("CHECK records=")? + "CHECK records=".len()..];
    let (records, rest) = rest.split_once(" tail=")?;
    let (tail, rest) = rest.split_once(" state=")?;
    let (state, rest) = rest.split_once(' ')?;
    if rest.trim() != "ok" {
        return None;
    }
    Some(Found {
        records: records.parse().ok()?,
        tail: tail.parse().ok()?,
        state: state.parse().ok()?,
    })
}

/// Boots the checker; it must print an `ok` CHECK line and power off with
/// success.
fn check_boot(machine: &Machine, log: &Path, timeout: Duration) -> Result<Found, String> {
    let outcome = machine
        .run_logged(log, timeout)
        .map_err(|err| err.to_string())?;
    let text = fs::read(log).map_err(|err| format!("cannot read {}: {err}", log.display()))?;
    let text = String::from_utf8_lossy(&text).replace('\r', "");
    if let Some(line) = text.lines().find(|line| line.contains("KERNEL PANIC")) {
        return Err(format!("kernel panic: {}", line.trim()));
    }
    if let Some(line) = text.lines().find(|line| line.contains("CHECK FAIL")) {
        return Err(line.trim().to_string());
    }
    let found = text.lines().find_map(parse_check_line);
    match (outcome, found) {
        (Outcome::Exited(Verdict::Pass), Some(found)) => Ok(found),
        (Outcome::Exited(Verdict::Pass), None) => Err("no `CHECK records=N tail=T ok` line".into()),
        (Outcome::TimedOut, _) => Err(format!("timed out after {} s", timeout.as_secs())),
        (Outcome::Exited(other), _) => Err(format!("the boot did not pass: {other:?}")),
    }
}

/// `e2fsck -fn` must be clean; the file as `debugfs` reads it must hold
/// intact records with at most one torn one after them, and the state
/// file (if any) exactly one intact record.
fn host_check(image: &Path) -> Result<Found, String> {
    disks::e2fsck_clean(image)?;
    let data = disks::debugfs_cat(image, &format!("/{}", crash_log::FILE_NAME))?;
    let checked = crash_log::check(&data);
    if !checked.tail_ok() {
        return Err(format!(
            "debugfs: record {} at byte {} is damaged and {} bytes follow",
            checked.records + 1,
            checked.intact_bytes,
            checked.tail
        ));
    }
    let state_path = format!("/{}", crash_log::STATE_NAME);
    let state = if disks::debugfs_exists(image, &state_path)? {
        let bytes = disks::debugfs_cat(image, &state_path)?;
        crash_log::state_record(&bytes).ok_or_else(|| {
            format!(
                "debugfs: {state_path} is not one intact record ({} bytes)",
                bytes.len()
            )
        })?
    } else {
        0
    };
    Ok(Found {
        records: checked.records,
        tail: checked.tail,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_lines() {
        assert_eq!(parse_writer_line("START 12"), WriterLine::Start(12));
        assert_eq!(parse_writer_line("DURABLE 7"), WriterLine::Durable(7));
        assert_eq!(
            parse_writer_line("[INFO ] mounted /diskDURABLE 8"),
            WriterLine::Durable(8)
        );
        assert_eq!(parse_writer_line("DURABLE 8x"), WriterLine::Other);
        assert_eq!(parse_writer_line("DURAB"), WriterLine::Other);
        assert_eq!(
            parse_writer_line("WRITER FAIL fsync: EIO"),
            WriterLine::Fail("WRITER FAIL fsync: EIO".into())
        );
    }

    /// The host check reads the records out of the image with debugfs:
    /// intact ones with a torn tail pass with the right counts; a damaged
    /// record before the last fails.
    #[test]
    fn host_check_reads_the_image() {
        let dir = std::env::temp_dir().join(format!("xtask-crash-{}", std::process::id()));
        let image = dir.join("c.img");
        let host = dir.join("crash.log");
        let mut data = Vec::new();
        let mut buf = [0u8; crash_log::MAX_LEN];
        for n in 1..=30 {
            let len = crash_log::encode(n, &mut buf);
            data.extend_from_slice(&buf[..len]);
        }
        let whole = data.len();
        data.extend_from_slice(&[0u8; 40]);
        let put = |data: &[u8]| {
            disks::make_ext4(&image, 8 << 20).unwrap();
            fs::write(&host, data).unwrap();
            disks::debugfs_write(&image, &host, crash_log::FILE_NAME).unwrap();
        };
        put(&data);
        assert_eq!(
            host_check(&image),
            Ok(Found {
                records: 30,
                tail: 40,
                state: 0
            })
        );
        // A state file: one intact record, or a failure.
        let state = dir.join("state");
        let len = crash_log::encode(24, &mut buf);
        fs::write(&state, &buf[..len]).unwrap();
        disks::debugfs_write(&image, &state, crash_log::STATE_NAME).unwrap();
        assert_eq!(host_check(&image).map(|f| f.state), Ok(24));
        disks::make_ext4(&image, 8 << 20).unwrap();
        disks::debugfs_write(&image, &host, crash_log::FILE_NAME).unwrap();
        fs::write(&state, &buf[..len - 1]).unwrap();
        disks::debugfs_write(&image, &state, crash_log::STATE_NAME).unwrap();
        assert!(host_check(&image)
            .unwrap_err()
            .contains("not one intact record"));
        data[whole / 2] ^= 4;
        put(&data);
        assert!(host_check(&image).unwrap_err().contains("damaged"));
        disks::make_ext4(&image, 8 << 20).unwrap();
        assert!(host_check(&image).is_err(), "no crash.log at all");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_lines() {
        assert_eq!(
            parse_check_line("CHECK records=40 tail=17 state=40 ok"),
            Some(Found {
                records: 40,
                tail: 17,
                state: 40
            })
        );
        assert_eq!(parse_check_line("CHECK records=40 tail=17 ok"), None);
        assert_eq!(
            parse_check_line("CHECK records=40 tail=17 state=8 bad"),
            None
        );
        assert_eq!(parse_check_line("CHECK FAIL records=3 tail=900: x"), None);
        assert_eq!(parse_check_line("records=1 tail=0 ok"), None);
    }
}
