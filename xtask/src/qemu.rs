//! Booting the kernel in QEMU and reading the guest's verdict.
//!
//! The guest reports its result through the `isa-debug-exit` device
//! (`abi::debug_exit`: its port, the values the kernel writes and the exit
//! statuses they give). Those statuses cannot be confused with QEMU's own
//! (0 for a normal exit, 1 for an error), so any other status means the
//! guest never reached its verdict: a crash, a triple fault with
//! `-no-reboot`, or a QEMU error.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use abi::debug_exit;

use crate::disks::{self, Disk, MachineType};
use crate::error::{Error, Result};
use crate::process::describe;

/// QEMU's exit status when the guest reported success.
pub const EXIT_PASS: i32 = debug_exit::QEMU_SUCCESS;
/// QEMU's exit status when the guest reported failure.
pub const EXIT_FAIL: i32 = debug_exit::QEMU_FAILURE;

/// What QEMU boots from.
#[derive(Debug, Clone)]
pub enum Media {
    /// `-kernel`: QEMU enters the ELF through its PVH note.
    Pvh {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
    /// A GRUB ISO under SeaBIOS, QEMU's default firmware.
    Bios { iso: PathBuf },
    /// A GRUB ISO under OVMF.
    Uefi { iso: PathBuf, firmware: OvmfImage },
}

/// The OVMF firmware files to hand to QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OvmfImage {
    /// One image with code and variable store (Debian's `OVMF.fd`), loaded
    /// with `-bios`; variable writes are lost at exit.
    Combined(PathBuf),
    /// Separate code and variable store, loaded as two flash drives. `vars`
    /// must be a writable copy: the firmware writes to it.
    Split { code: PathBuf, vars: PathBuf },
}

/// An installed OVMF, before any copy is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ovmf {
    Combined(PathBuf),
    Split {
        code: PathBuf,
        vars_template: PathBuf,
    },
}

/// Combined images, in order of preference (Debian, Ubuntu and Fedora
/// paths).
const OVMF_COMBINED: [&str; 3] = [
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
    "/usr/share/OVMF/OVMF.fd",
];

/// Code and variable-store pairs, for distributions that ship no combined
/// image.
const OVMF_SPLIT: [(&str, &str); 4] = [
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
        "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
    ),
];

impl Ovmf {
    /// Finds an installed OVMF.
    pub fn find() -> Option<Ovmf> {
        let combined = OVMF_COMBINED
            .iter()
            .map(Path::new)
            .find(|path| path.is_file())
            .map(|path| Ovmf::Combined(path.to_path_buf()));
        combined.or_else(|| {
            OVMF_SPLIT
                .iter()
                .map(|(code, vars)| (Path::new(code), Path::new(vars)))
                .find(|(code, vars)| code.is_file() && vars.is_file())
                .map(|(code, vars)| Ovmf::Split {
                    code: code.to_path_buf(),
                    vars_template: vars.to_path_buf(),
                })
        })
    }

    /// The files for one boot; a split variable store is copied to
    /// `vars_copy` first.
    pub fn image(&self, vars_copy: &Path) -> Result<OvmfImage> {
        match self {
            Ovmf::Combined(path) => Ok(OvmfImage::Combined(path.clone())),
            Ovmf::Split {
                code,
                vars_template,
            } => {
                fs::copy(vars_template, vars_copy)
                    .map_err(|err| Error::io("copy the OVMF variables to", vars_copy, err))?;
                Ok(OvmfImage::Split {
                    code: code.clone(),
                    vars: vars_copy.to_path_buf(),
                })
            }
        }
    }
}

/// How QEMU runs the guest, and what the guest's clocks count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Emulation {
    /// `-accel tcg`: TCG with a host thread per vCPU; the guest's clocks
    /// follow the host's, so timings depend on the host and its load.
    #[default]
    Tcg,
    /// Deterministic TCG (`-accel tcg,thread=single` plus [`ICOUNT_FLAGS`]):
    /// the guest's clocks count executed instructions.
    Icount,
}

/// The flags of [`Emulation::Icount`] besides the accelerator:
/// `-icount shift=0` advances the guest's virtual clock, and with it the
/// TSC, 1 ns per executed guest instruction; `sleep=off` jumps over idle
/// time instead of waiting for the host; `-seed` fixes what `RDRAND` and
/// QEMU's other random numbers return, and `-rtc ... clock=vm` starts the
/// RTC at a fixed date and runs it on the virtual clock. The same boot then
/// executes the same instructions every time.
pub const ICOUNT_FLAGS: [&str; 6] = [
    "-icount",
    "shift=0,sleep=off",
    "-seed",
    "1",
    "-rtc",
    "base=2026-12-03T00:00:00,clock=vm",
];

impl Emulation {
    /// The `-accel` value. icount cannot count instructions across several
    /// TCG threads (QEMU refuses `thread=multi` with it), so it runs every
    /// vCPU on one.
    fn accel(self) -> &'static str {
        match self {
            Emulation::Tcg => "tcg",
            Emulation::Icount => "tcg,thread=single",
        }
    }

    /// Flags after the accelerator's.
    fn extra_flags(self) -> &'static [&'static str] {
        match self {
            Emulation::Tcg => &[],
            Emulation::Icount => &ICOUNT_FLAGS,
        }
    }
}

/// A virtual machine to boot.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: u32,
    /// QEMU `-m` argument.
    pub memory: String,
    pub media: Media,
    pub emulation: Emulation,
    /// `pc` (no flag) or `q35`.
    pub machine_type: MachineType,
    /// Disks attached in this order (see `disks`).
    pub disks: Vec<Disk>,
}

/// What a scripted boot adds to a [`Machine`]'s command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// No serial port at all (`-serial none`) instead of COM1 on stdio.
    pub no_serial: bool,
    /// The human monitor on this Unix socket (QEMU listens, does not wait).
    pub monitor: Option<PathBuf>,
    /// Appended as they are.
    pub args: Vec<String>,
}

impl Machine {
    /// The QEMU command line, with the serial port on QEMU's stdio.
    pub fn command(&self) -> Command {
        self.command_with(&Extras::default())
    }

    /// The QEMU command line with `extras`.
    pub fn command_with(&self, extras: &Extras) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(self.machine_type.qemu_args());
        let serial = if extras.no_serial { "none" } else { "stdio" };
        cmd.args(["-accel", self.emulation.accel(), "-cpu", "max"])
            .arg("-smp")
            .arg(self.cpus.to_string())
            .arg("-m")
            .arg(&self.memory)
            .args(["-serial", serial, "-display", "none", "-no-reboot"])
            .arg("-device")
            .arg(format!(
                "isa-debug-exit,iobase={:#x},iosize={:#04x}",
                debug_exit::PORT,
                debug_exit::PORT_SIZE
            ));
        match &self.media {
            Media::Pvh {
                kernel,
                initrd,
                cmdline,
            } => {
                cmd.arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .arg("-append")
                    .arg(cmdline);
            }
            Media::Bios { iso } => {
                cmd.arg("-cdrom").arg(iso);
                if !self.disks.is_empty() {
                    // SeaBIOS tries hard disks (virtio and NVMe ones too)
                    // before the CD, and would boot a disk image that has a
                    // boot signature (any FAT file system) instead of GRUB.
                    cmd.args(["-boot", "order=d"]);
                }
            }
            Media::Uefi { iso, firmware } => {
                match firmware {
                    OvmfImage::Combined(path) => {
                        cmd.arg("-bios").arg(path);
                    }
                    OvmfImage::Split { code, vars } => {
                        cmd.arg("-drive")
                            .arg(pflash_drive(0, code, true))
                            .arg("-drive")
                            .arg(pflash_drive(1, vars, false));
                    }
                }
                cmd.arg("-cdrom").arg(iso);
            }
        }
        cmd.args(disks::qemu_args(&self.disks));
        cmd.args(self.emulation.extra_flags());
        if let Some(socket) = &extras.monitor {
            cmd.arg("-monitor")
                .arg(format!("unix:{},server=on,wait=off", socket.display()));
        }
        cmd.args(&extras.args);
        cmd
    }

    /// Boots with the serial port on this terminal and waits for the guest.
    pub fn run_attached(&self) -> Result<Verdict> {
        let mut cmd = self.command();
        eprintln!("==> {}", describe(&cmd));
        let status = cmd
            .status()
            .map_err(|err| Error::new(format!("cannot run `{}`: {err}", describe(&cmd))))?;
        Ok(Verdict::from_status(status))
    }

    /// Boots with the serial output (and QEMU's own messages) written to
    /// `log`; kills QEMU if it runs longer than `timeout`.
    pub fn run_logged(&self, log: &Path, timeout: Duration) -> Result<Outcome> {
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir).map_err(|err| Error::io("create", dir, err))?;
        }
        let file = File::create(log).map_err(|err| Error::io("create", log, err))?;
        let stderr = file
            .try_clone()
            .map_err(|err| Error::io("open", log, err))?;
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let mut child = cmd
            .spawn()
            .map_err(|err| Error::new(format!("cannot run `{}`: {err}", describe(&cmd))))?;
        wait_with_timeout(&mut child, timeout)
    }

    /// Boots with the serial output (and QEMU's own messages) shown on this
    /// terminal as it arrives and also written to `log` without the `\r`
    /// of the serial port's CRLF line ends; kills QEMU if it runs longer
    /// than `timeout`.
    pub fn run_teed(&self, log: &Path, timeout: Duration) -> Result<Outcome> {
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir).map_err(|err| Error::io("create", dir, err))?;
        }
        let file = File::create(log).map_err(|err| Error::io("create", log, err))?;
        let file = Arc::new(Mutex::new(file));
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        eprintln!("==> {}", describe(&cmd));
        let mut child = cmd
            .spawn()
            .map_err(|err| Error::new(format!("cannot run `{}`: {err}", describe(&cmd))))?;
        let mut copiers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let file = Arc::clone(&file);
            copiers.push(thread::spawn(move || {
                tee_stripped(stdout, io::stdout(), &file)
            }));
        }
        if let Some(stderr) = child.stderr.take() {
            let file = Arc::clone(&file);
            copiers.push(thread::spawn(move || {
                tee_stripped(stderr, io::stderr(), &file)
            }));
        }
        let outcome = wait_with_timeout(&mut child, timeout);
        if outcome.is_err() {
            // Waiting failed: make sure QEMU is gone so its pipes reach end
            // of file and the copiers finish.
            let _ = child.kill();
            let _ = child.wait();
        }
        // QEMU has exited or been killed: its pipes are at end of file.
        let mut log_error = None;
        for copier in copiers {
            match copier.join() {
                Ok(Ok(())) => {}
                Ok(Err(err)) => log_error = Some(err),
                Err(_) => log_error = Some(io::Error::other("log copier panicked")),
            }
        }
        let outcome = outcome?;
        if let Some(err) = log_error {
            return Err(Error::io("write", log, err));
        }
        Ok(outcome)
    }
}

/// Waits for `child`; kills it once `timeout` has passed.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let wait_error = |err| Error::new(format!("cannot wait for QEMU: {err}"));
    loop {
        if let Some(status) = child.try_wait().map_err(wait_error)? {
            return Ok(Outcome::Exited(Verdict::from_status(status)));
        }
        if Instant::now() >= deadline {
            // `kill` signals this child's pid only.
            child.kill().map_err(wait_error)?;
            child.wait().map_err(wait_error)?;
            return Ok(Outcome::TimedOut);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Copies `from` to `terminal` as it is, and to `log` with every `\r`
/// removed, until `from` ends. A terminal that stops accepting output (a
/// closed pipe) does not stop the log; a failing log is an error.
fn tee_stripped<W: Write>(
    mut from: impl Read,
    mut terminal: impl Write,
    log: &Mutex<W>,
) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    let mut terminal_ok = true;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        let chunk = &buf[..n];
        if terminal_ok {
            terminal_ok = terminal
                .write_all(chunk)
                .and_then(|()| terminal.flush())
                .is_ok();
        }
        let stripped: Vec<u8> = chunk.iter().copied().filter(|&b| b != b'\r').collect();
        // A poisoned lock only means the other copier panicked; the file is fine.
        let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        log.write_all(&stripped)?;
    }
}

fn pflash_drive(unit: u32, file: &Path, read_only: bool) -> String {
    let read_only = if read_only { ",readonly=on" } else { "" };
    // QEMU option values escape a comma by doubling it.
    let file = file.display().to_string().replace(',', ",,");
    format!("if=pflash,format=raw,unit={unit}{read_only},file={file}")
}

/// How a boot ended, judged by QEMU's exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The guest reported success.
    Pass,
    /// The guest reported failure.
    Fail,
    /// The guest never reported: the description says how QEMU ended.
    Crash(String),
}

impl Verdict {
    pub fn from_status(status: ExitStatus) -> Verdict {
        Verdict::from_code(status.code())
            .unwrap_or_else(|| Verdict::Crash(format!("QEMU {status}")))
    }

    /// The verdict for an exit code; `None` when there is none (QEMU was
    /// killed by a signal).
    fn from_code(code: Option<i32>) -> Option<Verdict> {
        Some(match code? {
            EXIT_PASS => Verdict::Pass,
            EXIT_FAIL => Verdict::Fail,
            other => Verdict::Crash(format!(
                "QEMU exited with status {other}, not {EXIT_PASS} (pass) or {EXIT_FAIL} (fail)"
            )),
        })
    }
}

/// How a boot with a time limit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(Verdict),
    TimedOut,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(machine: &Machine) -> Vec<String> {
        machine
            .command()
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Verdict::from_code(Some(33)), Some(Verdict::Pass));
        assert_eq!(Verdict::from_code(Some(35)), Some(Verdict::Fail));
        assert!(matches!(
            Verdict::from_code(Some(0)),
            Some(Verdict::Crash(_))
        ));
        assert!(matches!(
            Verdict::from_code(Some(1)),
            Some(Verdict::Crash(_))
        ));
        assert_eq!(Verdict::from_code(None), None);
    }

    #[test]
    fn pvh_command_line() {
        let machine = Machine {
            cpus: 2,
            memory: "1G".into(),
            media: Media::Pvh {
                kernel: "k.elf".into(),
                initrd: "i.cpio".into(),
                cmdline: "init=tests log=info".into(),
            },
            emulation: Emulation::Tcg,
            machine_type: MachineType::Pc,
            disks: Vec::new(),
        };
        assert_eq!(
            args(&machine).join(" "),
            "-accel tcg -cpu max -smp 2 -m 1G -serial stdio -display none -no-reboot \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -kernel k.elf -initrd i.cpio -append init=tests log=info"
        );
    }

    #[test]
    fn q35_and_disks() {
        let machine = Machine {
            cpus: 1,
            memory: "512M".into(),
            media: Media::Bios {
                iso: "k.iso".into(),
            },
            emulation: Emulation::Tcg,
            machine_type: MachineType::Q35,
            disks: vec![Disk {
                kind: disks::DiskKind::Virtio,
                path: "v.img".into(),
            }],
        };
        assert_eq!(
            args(&machine).join(" "),
            "-machine q35 -accel tcg -cpu max -smp 1 -m 512M -serial stdio -display none \
             -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -cdrom k.iso \
             -boot order=d -drive file=v.img,if=none,id=vd0,format=raw -device virtio-blk-pci,drive=vd0"
        );
    }

    #[test]
    fn icount_replaces_the_accelerator_and_fixes_the_clocks() {
        let machine = Machine {
            cpus: 1,
            memory: "512M".into(),
            media: Media::Bios {
                iso: "k.iso".into(),
            },
            emulation: Emulation::Icount,
            machine_type: MachineType::Pc,
            disks: Vec::new(),
        };
        assert_eq!(
            args(&machine).join(" "),
            "-accel tcg,thread=single -cpu max -smp 1 -m 512M -serial stdio -display none \
             -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -cdrom k.iso \
             -icount shift=0,sleep=off -seed 1 -rtc base=2026-12-03T00:00:00,clock=vm"
        );
    }

    #[test]
    fn extras_replace_the_serial_port_and_add_a_monitor() {
        let machine = Machine {
            cpus: 1,
            memory: "512M".into(),
            media: Media::Bios {
                iso: "k.iso".into(),
            },
            emulation: Emulation::Tcg,
            machine_type: MachineType::Pc,
            disks: Vec::new(),
        };
        let extras = Extras {
            no_serial: true,
            monitor: Some("/tmp/m.sock".into()),
            args: vec!["-machine".into(), "acpi=off".into()],
        };
        let args: Vec<String> = machine
            .command_with(&extras)
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert!(line.contains("-serial none -display none"), "{line}");
        assert!(
            line.ends_with("-monitor unix:/tmp/m.sock,server=on,wait=off -machine acpi=off"),
            "{line}"
        );
    }

    #[test]
    fn tee_strips_carriage_returns_from_the_log_only() {
        let serial: &[u8] = b"BENCH case=a ops=1\r\nBENCH DONE\r\n";
        let mut terminal = Vec::new();
        let log = Mutex::new(Vec::new());
        tee_stripped(serial, &mut terminal, &log).unwrap();
        assert_eq!(terminal, serial);
        assert_eq!(
            log.into_inner().unwrap(),
            b"BENCH case=a ops=1\nBENCH DONE\n"
        );
    }

    #[test]
    fn uefi_split_firmware_uses_flash() {
        let machine = Machine {
            cpus: 1,
            memory: "512M".into(),
            media: Media::Uefi {
                iso: "k.iso".into(),
                firmware: OvmfImage::Split {
                    code: "/c.fd".into(),
                    vars: "v.fd".into(),
                },
            },
            emulation: Emulation::Tcg,
            machine_type: MachineType::Pc,
            disks: Vec::new(),
        };
        let args = args(&machine);
        let tail = &args[args.len() - 6..];
        assert_eq!(
            tail,
            [
                "-drive",
                "if=pflash,format=raw,unit=0,readonly=on,file=/c.fd",
                "-drive",
                "if=pflash,format=raw,unit=1,file=v.fd",
                "-cdrom",
                "k.iso"
            ]
        );
    }
}
