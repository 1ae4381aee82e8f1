//! Disks and the machine type of a boot: what `--disk KIND:WHAT`, a
//! configuration's `disks = [...]` and `machine = "..."` turn into on
//! QEMU's command line, the fresh images test boots get, and the host-side
//! check of the kernel's `blktest=DISK` self test.
//!
//! A disk is `virtio:WHAT` or `nvme:WHAT`. `WHAT` is a size (`64M`: digits
//! with a `K`, `M` or `G` suffix), for which the runner creates a fresh
//! sparse image under `target/disks/`, `ext4:SIZE` for a fresh image with
//! an empty ext4 file system made as the Linux anchor makes its own
//! ([`make_ext4`]), or else the path of an existing image (write `./64M`
//! for a file called that). The QEMU flags are the
//! Linux anchor's (`/work/shared/anchors/linux-qemu/run.sh`), in the order
//! given, so PCI slots, and with them the kernel's names (`vda`, `vdb`,
//! ... and `nvme0n1`, ...), follow that order:
//! `-drive file=F,if=none,id=vdN,format=raw -device virtio-blk-pci,drive=vdN`
//! and `-drive file=F,if=none,id=nvN,format=raw -device nvme,serial=nvmeN,drive=nvN`.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The QEMU machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MachineType {
    /// QEMU's default `pc` (i440fx): PCI config space through ports only,
    /// as the Linux anchor boots.
    #[default]
    Pc,
    /// `q35`: PCI Express with ECAM announced by ACPI's MCFG.
    Q35,
}

impl MachineType {
    pub fn from_name(name: &str) -> Option<MachineType> {
        match name {
            "pc" => Some(MachineType::Pc),
            "q35" => Some(MachineType::Q35),
            _ => None,
        }
    }

    /// The flags that select it: none for `pc`, QEMU's default, so that
    /// command lines stay the anchor's.
    pub fn qemu_args(self) -> &'static [&'static str] {
        match self {
            MachineType::Pc => &[],
            MachineType::Q35 => &["-machine", "q35"],
        }
    }
}

/// What kind of disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    Virtio,
    Nvme,
}

impl DiskKind {
    pub fn name(self) -> &'static str {
        match self {
            DiskKind::Virtio => "virtio",
            DiskKind::Nvme => "nvme",
        }
    }
}

/// Where a disk's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// A fresh sparse image of this many bytes.
    Fresh(u64),
    /// A fresh image of this many bytes with an empty ext4 file system.
    FreshExt4(u64),
    /// A fresh ext4 image of this many bytes with a few files, then
    /// damaged from the host: bytes flipped at random in its metadata
    /// (everything but the superblock), from this seed
    /// ([`make_hostile_ext4`]). Not checked with e2fsck after a boot.
    HostileExt4 { bytes: u64, seed: u64 },
    /// An existing image.
    Path(PathBuf),
}

/// A disk as written in a configuration or on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub kind: DiskKind,
    pub source: DiskSource,
}

impl DiskSpec {
    /// Parses `virtio:WHAT` or `nvme:WHAT` (`WHAT`: `SIZE`, `ext4:SIZE` or
    /// a path).
    pub fn parse(spec: &str) -> Result<DiskSpec, String> {
        let Some((kind, what)) = spec.split_once(':') else {
            return Err(format!(
                "disk `{spec}`: write virtio:SIZE_OR_PATH or nvme:SIZE_OR_PATH"
            ));
        };
        let kind = match kind {
            "virtio" => DiskKind::Virtio,
            "nvme" => DiskKind::Nvme,
            _ => return Err(format!("disk `{spec}`: kind must be `virtio` or `nvme`")),
        };
        if what.is_empty() {
            return Err(format!("disk `{spec}`: give a size (64M) or an image path"));
        }
        if let Some(rest) = what.strip_prefix("ext4-hostile:") {
            let parsed = rest
                .split_once(':')
                .and_then(|(seed, size)| Some((seed.parse::<u64>().ok()?, parse_size(size)?)));
            return match parsed {
                Some((seed, bytes)) if bytes >= EXT4_MIN => Ok(DiskSpec {
                    kind,
                    source: DiskSource::HostileExt4 { bytes, seed },
                }),
                _ => Err(format!(
                    "disk `{spec}`: write ext4-hostile:SEED:SIZE, such as ext4-hostile:7:8M"
                )),
            };
        }
        if let Some(size) = what.strip_prefix("ext4:") {
            return match parse_size(size) {
                Some(bytes) if bytes >= EXT4_MIN => Ok(DiskSpec {
                    kind,
                    source: DiskSource::FreshExt4(bytes),
                }),
                _ => Err(format!(
                    "disk `{spec}`: ext4 needs a size of at least 1M, such as ext4:64M"
                )),
            };
        }
        let source = match parse_size(what) {
            Some(0) => return Err(format!("disk `{spec}`: size must not be zero")),
            Some(bytes) => DiskSource::Fresh(bytes),
            None => DiskSource::Path(PathBuf::from(what)),
        };
        Ok(DiskSpec { kind, source })
    }
}

/// `64M` -> bytes; `None` if `text` is not digits with a K/M/G suffix.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 10),
        b'M' => (&text[..text.len() - 1], 20),
        b'G' => (&text[..text.len() - 1], 30),
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The smallest ext4 image the runner makes (mkfs.ext4 refuses less than
/// a few hundred KiB; 1 MiB leaves room for its journal).
const EXT4_MIN: u64 = 1 << 20;

/// A size as `cargo xtask disk new --size` takes it: digits with an
/// optional `K`, `M` or `G` suffix (none: bytes), like `truncate -s`.
pub fn parse_size_arg(text: &str) -> Option<u64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    parse_size(text)
}

/// Makes `path` an empty ext4 image of `bytes` bytes exactly as the Linux
/// anchor makes its own (`run.sh`): `truncate -s SIZE PATH`, then
/// `mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 PATH`, so
/// the inode tables and the journal are written out (zeroed) now rather
/// than by a kernel thread later. An existing file is replaced.
pub fn make_ext4(path: &Path, bytes: u64) -> Result<()> {
    if crate::process::find_program("mkfs.ext4").is_none() {
        return Err(Error::new(
            "mkfs.ext4 is not installed: install e2fsprogs \
             (sudo apt-get install e2fsprogs; `cargo xtask` installs it when run as root)",
        ));
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|err| Error::io("create", dir, err))?;
    }
    // `truncate -s`: a file of exactly that size, sparse; emptied first so
    // that no old block survives under the new file system.
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|err| Error::io("create", path, err))?;
    file.set_len(bytes)
        .map_err(|err| Error::io("size", path, err))?;
    drop(file);
    crate::process::run_quiet(
        std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(path),
    )
}

/// How a damaged image's file name ends (the runner does not e2fsck it).
const HOSTILE_SUFFIX: &str = "-hostile.img";

/// Makes `path` an ext4 image of `bytes` bytes ([`make_ext4`]) with a
/// directory tree written by `debugfs` (a directory, files of 0, 1, 5000
/// and 70 000 bytes, a 40-entry directory), then flips `1 + seed % 64`
/// bytes at offsets drawn from `seed` (splitmix64) between the end of the
/// superblock and 2 MiB or the image's end: group descriptors, bitmaps,
/// the inode table, directory and extent blocks, the journal. The
/// superblock itself is left whole, so that the kernel gets past the
/// mount into the damaged structures (broken superblocks are the host
/// fuzzing's, `fs-ext4/tests/hostile.rs`).
pub fn make_hostile_ext4(path: &Path, bytes: u64, seed: u64) -> Result<()> {
    make_ext4(path, bytes)?;
    let dir = path.with_extension("files");
    fs::create_dir_all(&dir).map_err(|err| Error::io("create", &dir, err))?;
    let mut commands = String::from("mkdir d\nmkdir d/many\n");
    for (name, len) in [
        ("empty", 0usize),
        ("one", 1),
        ("small", 5000),
        ("big", 70_000),
    ] {
        let file = dir.join(name);
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        fs::write(&file, data).map_err(|err| Error::io("write", &file, err))?;
        commands.push_str(&format!("write {} d/{name}\n", file.display()));
    }
    for i in 0..40 {
        commands.push_str(&format!(
            "write {} d/many/entry-{i:02}\n",
            dir.join("one").display()
        ));
    }
    let script = dir.join("commands");
    fs::write(&script, commands).map_err(|err| Error::io("write", &script, err))?;
    crate::process::run_quiet(
        std::process::Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(path),
    )?;
    let mut image = fs::read(path).map_err(|err| Error::io("read", path, err))?;
    // The 1 KiB blocks in use (not all zeros) past the superblock: group
    // descriptors, bitmaps, inode tables, directories, extent blocks and
    // file data; the journal, zeroed by mkfs, is mostly left out.
    let used: Vec<usize> = (2..image.len() / 1024)
        .filter(|&b| image[b * 1024..(b + 1) * 1024].iter().any(|&x| x != 0))
        .collect();
    if used.is_empty() {
        return Err(Error::new(format!(
            "{}: no block in use to damage",
            path.display()
        )));
    }
    let mut state = seed ^ 0x5eed;
    let mut next = || abi::disk_test::splitmix64(&mut state);
    for _ in 0..4 + seed % 61 {
        let block = used[(next() as usize) % used.len()];
        let at = block * 1024 + (next() as usize) % 1024;
        image[at] ^= (next() as u8) | 1;
    }
    fs::write(path, image).map_err(|err| Error::io("write", path, err))?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// Whether the image at `path` holds an ext4 (or ext2/3) file system: the
/// superblock's magic 0xEF53 at byte 1024 + 56.
pub fn is_ext4(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    fs::File::open(path)
        .and_then(|mut file| {
            file.seek(SeekFrom::Start(1024 + 56))?;
            file.read_exact(&mut magic)
        })
        .is_ok()
        && magic == [0x53, 0xEF]
}

/// `e2fsck -fn IMAGE`: a forced, read-only check; fails unless it exits 0
/// (clean), with e2fsck's report in the error.
pub fn e2fsck_clean(path: &Path) -> Result<(), String> {
    crate::process::run_quiet(std::process::Command::new("e2fsck").arg("-fn").arg(path))
        .map_err(|err| format!("the file system in {} is not clean: {err}", path.display()))
}

/// The bytes of file `path` inside the ext4 image, as
/// `debugfs -R "cat PATH" IMAGE` reads them (host tools read what the
/// guest wrote).
pub fn debugfs_cat(image: &Path, path: &str) -> Result<Vec<u8>, String> {
    let output = debugfs(image, &format!("cat {path}"), false)?;
    Ok(output)
}

/// Whether `path` exists in the ext4 image (`debugfs -R "stat PATH"`).
pub fn debugfs_exists(image: &Path, path: &str) -> Result<bool, String> {
    match debugfs(image, &format!("stat {path}"), false) {
        Ok(_) => Ok(true),
        Err(why) if why.contains("File not found") => Ok(false),
        Err(why) => Err(why),
    }
}

/// Puts the host file `from` into the ext4 image as `to` (in the root
/// directory): `debugfs -w -R "write FROM TO" IMAGE`, with the image not
/// attached to anything.
pub fn debugfs_write(image: &Path, from: &Path, to: &str) -> Result<(), String> {
    debugfs(image, &format!("write {} {to}", from.display()), true).map(drop)
}

/// Makes directory `path` in the ext4 image (`debugfs -w -R "mkdir PATH"`).
#[cfg(test)]
pub fn debugfs_mkdir(image: &Path, path: &str) -> Result<(), String> {
    debugfs(image, &format!("mkdir {path}"), true).map(drop)
}

/// Runs one debugfs request; its stdout, or an error with its stderr.
/// debugfs exits 0 even when a request fails, so anything on stderr
/// besides its banner is a failure.
fn debugfs(image: &Path, request: &str, write: bool) -> Result<Vec<u8>, String> {
    let mut cmd = std::process::Command::new("debugfs");
    if write {
        cmd.arg("-w");
    }
    cmd.arg("-R").arg(request).arg(image);
    let output = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| format!("cannot run `{}`: {err}", crate::process::describe(&cmd)))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("debugfs "))
        .collect();
    if !output.status.success() || !complaints.is_empty() {
        return Err(format!(
            "`{}` failed ({}): {}",
            crate::process::describe(&cmd),
            output.status,
            complaints.join("; ")
        ));
    }
    Ok(output.stdout)
}

/// A disk ready to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub kind: DiskKind,
    pub path: PathBuf,
}

/// Makes the images of `specs`: fresh ones (emptied if they exist) as
/// `dir/PREFIX-N-KIND.img`, existing ones checked to exist.
pub fn prepare(specs: &[DiskSpec], dir: &Path, prefix: &str) -> Result<Vec<Disk>> {
    let mut disks = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let path = match &spec.source {
            DiskSource::Path(path) => {
                if !path.is_file() {
                    return Err(Error::new(format!(
                        "disk image {} does not exist",
                        path.display()
                    )));
                }
                path.clone()
            }
            DiskSource::FreshExt4(bytes) => {
                let path = dir.join(format!("{prefix}-{i}-{}-ext4.img", spec.kind.name()));
                make_ext4(&path, *bytes)?;
                path
            }
            DiskSource::HostileExt4 { bytes, seed } => {
                let path = dir.join(format!(
                    "{prefix}-{i}-{}-ext4{HOSTILE_SUFFIX}",
                    spec.kind.name()
                ));
                make_hostile_ext4(&path, *bytes, *seed)?;
                path
            }
            DiskSource::Fresh(bytes) => {
                fs::create_dir_all(dir).map_err(|err| Error::io("create", dir, err))?;
                let path = dir.join(format!("{prefix}-{i}-{}.img", spec.kind.name()));
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .map_err(|err| Error::io("create", &path, err))?;
                // Sparse: no block is written until the guest writes it.
                file.set_len(*bytes)
                    .map_err(|err| Error::io("size", &path, err))?;
                path
            }
        };
        disks.push(Disk {
            kind: spec.kind,
            path,
        });
    }
    Ok(disks)
}

/// The QEMU flags for `disks`, in order.
pub fn qemu_args(disks: &[Disk]) -> Vec<String> {
    let mut args = Vec::new();
    let (mut virtio, mut nvme) = (0, 0);
    for disk in disks {
        // QEMU option values escape a comma by doubling it.
        let file = disk.path.display().to_string().replace(',', ",,");
        let (id, device) = match disk.kind {
            DiskKind::Virtio => {
                virtio += 1;
                let id = format!("vd{}", virtio - 1);
                let device = format!("virtio-blk-pci,drive={id}");
                (id, device)
            }
            DiskKind::Nvme => {
                nvme += 1;
                let id = format!("nv{}", nvme - 1);
                let device = format!("nvme,serial=nvme{},drive={id}", nvme - 1);
                (id, device)
            }
        };
        args.push("-drive".to_string());
        args.push(format!("file={file},if=none,id={id},format=raw"));
        args.push("-device".to_string());
        args.push(device);
    }
    args
}

/// The kernel's name of each disk: `vda`, `vdb`, ... and `nvme0n1`,
/// `nvme1n1`, ... in order of kind.
pub fn kernel_names(disks: &[Disk]) -> Vec<String> {
    let (mut virtio, mut nvme) = (0usize, 0usize);
    disks
        .iter()
        .map(|disk| match disk.kind {
            DiskKind::Virtio => {
                virtio += 1;
                virtio_name(virtio - 1)
            }
            DiskKind::Nvme => {
                nvme += 1;
                format!("nvme{}n1", nvme - 1)
            }
        })
        .collect()
}

/// `vda`..`vdz`, `vdaa`, ...: the kernel's driver's own naming.
fn virtio_name(index: usize) -> String {
    kernel_core::block::virtio_blk::name(index)
}

/// The disk a `blktest=NAME` parameter in `cmdline` names, if any.
fn blktest_disk(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .take_while(|word| *word != "--")
        .filter_map(|word| word.strip_prefix("blktest="))
        .last()
        .filter(|name| *name != "none")
}

/// After a boot that passed: every disk that holds an ext4 file system
/// must pass `e2fsck -fn` (the kernel unmounted it cleanly and left it
/// consistent); if the command line ran `blktest=NAME`, the log must say
/// `blktest NAME ok` and NAME's image must hold the pattern
/// (`abi::blktest`).
pub fn check_after_boot(cmdline: &str, disks: &[Disk], log: &str) -> Result<(), String> {
    let damaged = |disk: &&Disk| disk.path.to_string_lossy().ends_with(HOSTILE_SUFFIX);
    for disk in disks
        .iter()
        .filter(|disk| is_ext4(&disk.path) && !damaged(disk))
    {
        e2fsck_clean(&disk.path)?;
    }
    if runs_blk_tests(cmdline) {
        for disk in disks {
            check_disk_test(&disk.path)?;
        }
    }
    let Some(name) = blktest_disk(cmdline) else {
        return Ok(());
    };
    let ok_line = format!("blktest {name} ok");
    if !log.lines().any(|line| line.trim_end().ends_with(&ok_line)) {
        return Err(format!("no `{ok_line}` line in the log"));
    }
    let names = kernel_names(disks);
    let Some(index) = names.iter().position(|n| n == name) else {
        return Err(format!("blktest={name}: no such disk attached ({names:?})"));
    };
    check_pattern(&disks[index].path)
}

/// Whether the first program is the disk suite, `blk_tests`, which leaves
/// its `abi::disk_test` regions on every disk.
fn runs_blk_tests(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .take_while(|word| *word != "--")
        .any(|word| word == "init=blk_tests")
}

/// Checks the regions `blk_tests` leaves on a disk (`abi::disk_test`): the
/// final region, written in shuffled order with 64 requests in flight, and
/// the region a child wrote before it exited (or was killed) with its
/// writes still in flight.
pub fn check_disk_test(path: &Path) -> Result<(), String> {
    use abi::disk_test::{FINAL, KILLED, SEED_FINAL, SEED_KILLED};
    let mut file =
        fs::File::open(path).map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    for (name, (start, end), seed) in [
        ("final", FINAL, SEED_FINAL),
        ("killed child's", KILLED, SEED_KILLED),
    ] {
        let mut bytes = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        if let Some(at) = abi::disk_test::mismatch(seed, start, &bytes) {
            return Err(format!(
                "{}: byte {at:#x} of the {name} region is not what blk_tests wrote",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Checks that the image holds the self test's pattern.
pub fn check_pattern(path: &Path) -> Result<(), String> {
    let mut file =
        fs::File::open(path).map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    let mut bytes = vec![0u8; abi::blktest::LEN as usize];
    file.seek(SeekFrom::Start(abi::blktest::OFFSET))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    for (i, &got) in bytes.iter().enumerate() {
        let pos = abi::blktest::OFFSET + i as u64;
        let want = abi::blktest::byte(pos);
        if got != want {
            return Err(format!(
                "{}: byte {pos:#x} is {got:#04x}, the self test wrote {want:#04x}",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn disk_test_regions_are_checked() {
        use abi::disk_test::{FINAL, KILLED, SEED_FINAL, SEED_KILLED};
        let dir = std::env::temp_dir().join(format!("xtask-disk-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.img");
        let mut image = vec![0u8; KILLED.1 as usize];
        abi::disk_test::fill(
            SEED_FINAL,
            FINAL.0,
            &mut image[FINAL.0 as usize..FINAL.1 as usize],
        );
        abi::disk_test::fill(SEED_KILLED, KILLED.0, &mut image[KILLED.0 as usize..]);
        fs::write(&path, &image).unwrap();
        assert_eq!(check_disk_test(&path), Ok(()));
        image[KILLED.0 as usize + 4097] ^= 0x40;
        fs::write(&path, &image).unwrap();
        assert!(check_disk_test(&path)
            .unwrap_err()
            .contains("killed child's"));
        fs::write(&path, vec![0u8; KILLED.1 as usize]).unwrap();
        assert!(check_disk_test(&path).unwrap_err().contains("final"));
        assert!(runs_blk_tests("init=blk_tests log=info -- dev=/dev/vda"));
        assert!(!runs_blk_tests("init=sh -- init=blk_tests"));
        fs::remove_dir_all(&dir).unwrap();
    }
    use super::*;

    #[test]
    fn hostile_specs() {
        assert_eq!(
            DiskSpec::parse("nvme:ext4-hostile:7:8M").unwrap().source,
            DiskSource::HostileExt4 {
                bytes: 8 << 20,
                seed: 7
            }
        );
        for bad in [
            "virtio:ext4-hostile:8M",
            "virtio:ext4-hostile:x:8M",
            "virtio:ext4-hostile:1:1K",
        ] {
            assert!(DiskSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn specs() {
        assert_eq!(
            DiskSpec::parse("virtio:64M"),
            Ok(DiskSpec {
                kind: DiskKind::Virtio,
                source: DiskSource::Fresh(64 << 20)
            })
        );
        assert_eq!(
            DiskSpec::parse("nvme:/tmp/a,b.img").unwrap().source,
            DiskSource::Path("/tmp/a,b.img".into())
        );
        assert_eq!(
            DiskSpec::parse("nvme:./64M").unwrap().source,
            DiskSource::Path("./64M".into())
        );
        assert_eq!(
            DiskSpec::parse("virtio:1G").unwrap().source,
            DiskSource::Fresh(1 << 30)
        );
        for bad in ["virtio", "scsi:64M", "virtio:", "nvme:0M"] {
            assert!(DiskSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    #[test]
    fn ext4_specs_and_sizes() {
        assert_eq!(
            DiskSpec::parse("nvme:ext4:256M"),
            Ok(DiskSpec {
                kind: DiskKind::Nvme,
                source: DiskSource::FreshExt4(256 << 20)
            })
        );
        for bad in [
            "virtio:ext4:",
            "virtio:ext4:512K",
            "virtio:ext4:x",
            "virtio:ext4:0M",
        ] {
            assert!(DiskSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size_arg("64M"), Some(64 << 20));
        assert_eq!(parse_size_arg("1G"), Some(1 << 30));
        assert_eq!(parse_size_arg("1048576"), Some(1 << 20));
        assert_eq!(parse_size_arg("1.5G"), None);
        assert_eq!(parse_size_arg(""), None);
    }

    /// The host tools round trip: mkfs.ext4 as the anchor runs it,
    /// e2fsck, debugfs write and cat, and the checks that catch a damaged
    /// image and a missing file.
    #[test]
    fn ext4_images_with_the_host_tools() {
        let dir = std::env::temp_dir().join(format!("xtask-ext4-{}", std::process::id()));
        let image = dir.join("e.img");
        make_ext4(&image, 8 << 20).unwrap();
        assert_eq!(fs::metadata(&image).unwrap().len(), 8 << 20);
        assert!(is_ext4(&image));
        assert_eq!(e2fsck_clean(&image), Ok(()));
        let host = dir.join("h.txt");
        fs::write(&host, b"from the host\n").unwrap();
        debugfs_write(&image, &host, "h.txt").unwrap();
        assert_eq!(debugfs_cat(&image, "/h.txt").unwrap(), b"from the host\n");
        assert!(debugfs_cat(&image, "/none").is_err());
        // Made again: empty.
        make_ext4(&image, 8 << 20).unwrap();
        assert!(debugfs_cat(&image, "/h.txt").is_err());
        // Zeroing the root inode's block pointer region breaks the check.
        let mut bytes = fs::read(&image).unwrap();
        let first_inode_table = 1024 * 40;
        bytes[first_inode_table..first_inode_table + 4096].fill(0xa5);
        fs::write(&image, &bytes).unwrap();
        assert!(e2fsck_clean(&image).is_err());
        let plain = dir.join("p.img");
        fs::write(&plain, vec![0u8; 4096]).unwrap();
        assert!(!is_ext4(&plain));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn anchor_flags_in_order() {
        let disks = [
            Disk {
                kind: DiskKind::Nvme,
                path: "n.img".into(),
            },
            Disk {
                kind: DiskKind::Virtio,
                path: "v,1.img".into(),
            },
            Disk {
                kind: DiskKind::Virtio,
                path: "w.img".into(),
            },
        ];
        assert_eq!(
            qemu_args(&disks).join(" "),
            "-drive file=n.img,if=none,id=nv0,format=raw -device nvme,serial=nvme0,drive=nv0 \
             -drive file=v,,1.img,if=none,id=vd0,format=raw -device virtio-blk-pci,drive=vd0 \
             -drive file=w.img,if=none,id=vd1,format=raw -device virtio-blk-pci,drive=vd1"
        );
        assert_eq!(kernel_names(&disks), ["nvme0n1", "vda", "vdb"]);
        assert_eq!(virtio_name(26), "vdaa");
    }

    #[test]
    fn machine_types() {
        assert_eq!(MachineType::from_name("q35"), Some(MachineType::Q35));
        assert_eq!(MachineType::from_name("i440fx"), None);
        assert!(MachineType::Pc.qemu_args().is_empty());
        assert_eq!(MachineType::Q35.qemu_args(), ["-machine", "q35"]);
    }

    #[test]
    fn blktest_parameter() {
        assert_eq!(blktest_disk("log=info blktest=vda"), Some("vda"));
        assert_eq!(blktest_disk("blktest=vda blktest=vdb"), Some("vdb"));
        assert_eq!(blktest_disk("blktest=none"), None);
        assert_eq!(blktest_disk("init=x -- blktest=vda"), None);
        assert!(check_after_boot("init=x", &[], "").is_ok());
    }

    #[test]
    fn fresh_images_and_the_pattern_check() {
        let dir = std::env::temp_dir().join(format!("xtask-disks-{}", std::process::id()));
        let specs = [DiskSpec::parse("virtio:2M").unwrap()];
        let disks = prepare(&specs, &dir, "t").unwrap();
        assert_eq!(fs::metadata(&disks[0].path).unwrap().len(), 2 << 20);
        let log = "[INFO ] blktest vda ok\n";
        // A fresh image does not hold the pattern.
        assert!(check_after_boot("blktest=vda", &disks, log).is_err());
        let mut image = fs::read(&disks[0].path).unwrap();
        let start = abi::blktest::OFFSET as usize;
        for (i, b) in image[start..start + abi::blktest::LEN as usize]
            .iter_mut()
            .enumerate()
        {
            *b = abi::blktest::byte((start + i) as u64);
        }
        fs::write(&disks[0].path, &image).unwrap();
        assert_eq!(check_after_boot("blktest=vda", &disks, log), Ok(()));
        // The log line is needed too, and the disk must exist.
        assert!(check_after_boot("blktest=vda", &disks, "").is_err());
        assert!(check_after_boot("blktest=vdb", &disks, "blktest vdb ok").is_err());
        // One wrong byte is caught.
        image[start + 5000] ^= 1;
        fs::write(&disks[0].path, &image).unwrap();
        assert!(check_after_boot("blktest=vda", &disks, log).is_err());
        // Preparing again empties the image.
        let disks = prepare(&specs, &dir, "t").unwrap();
        assert!(fs::read(&disks[0].path).unwrap().iter().all(|&b| b == 0));
        fs::remove_dir_all(&dir).unwrap();
    }
}
