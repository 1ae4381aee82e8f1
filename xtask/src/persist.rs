//! The two-boot test of the disk file system (`runner = "persist"`): files
//! survive a power-off, and host tools and the guest read each other's
//! files (`abi::fs_test` names them and their contents).
//!
//! 1. A fresh ext4 image of the configuration's first disk; the host puts
//!    `from_host.txt` into it with `debugfs -w -R "write ..."`.
//! 2. Boot with `init=fs_tests` and the argument `persist-write`: the guest
//!    checks `/disk/from_host.txt`, writes the `persist/` files (one
//!    through a rename, one created and unlinked), fsyncs, powers off.
//! 3. `e2fsck -fn` must find the image clean.
//! 4. Boot with `persist-read`: the guest reads every file back.
//! 5. `e2fsck -fn` again, and `debugfs -R "cat ..."` of every file must
//!    give the bytes the guest wrote; the unlinked file and the rename's
//!    old name must be gone.
//!
//! Each boot must pass as an ordinary test boot does (success, a clean
//! `N passed, 0 failed` line, no kernel panic).

use std::fs;
use std::path::Path;

use abi::fs_test::{self, HOST_FILE, HOST_FILE_LEN, PERSIST_FILES, RENAMED_FROM, UNLINKED};

use crate::cmdline::Cmdline;
use crate::config::Config;
use crate::disks::{self, Disk, DiskKind, DiskSource};
use crate::image::Build;
use crate::qemu::{Emulation, Machine, Media};
use crate::workspace::Workspace;

/// Size of the image when the configuration's first disk gives none.
const DEFAULT_SIZE: u64 = 64 << 20;

/// Runs the test for `config`; `judge` decides whether a boot passed from
/// its outcome and log.
pub fn run(
    workspace: &Workspace,
    config: &Config,
    build: &Build,
    judge: impl Fn(&crate::qemu::Outcome, &str) -> Result<(), String>,
) -> Result<(), String> {
    let (kind, size) = match config.disks.first() {
        Some(spec) => match spec.source {
            DiskSource::FreshExt4(bytes)
            | DiskSource::Fresh(bytes)
            | DiskSource::HostileExt4 { bytes, .. } => (spec.kind, bytes),
            DiskSource::Path(_) => (spec.kind, DEFAULT_SIZE),
        },
        None => (DiskKind::Virtio, DEFAULT_SIZE),
    };
    let dir = workspace.target_dir().join("disks");
    let image = dir.join(format!("{}-{}-ext4.img", config.name, kind.name()));
    disks::make_ext4(&image, size).map_err(|err| err.to_string())?;
    let host_file = dir.join(format!("{}-{HOST_FILE}", config.name));
    let content: Vec<u8> = (0..HOST_FILE_LEN).map(fs_test::host_byte).collect();
    fs::write(&host_file, &content)
        .map_err(|err| format!("cannot write {}: {err}", host_file.display()))?;
    disks::debugfs_write(&image, &host_file, HOST_FILE)?;
    eprintln!(
        "==> {}: {HOST_FILE} put into {} with debugfs",
        config.name,
        image.display()
    );

    for mode in ["persist-write", "persist-read"] {
        let mut cmdline = Cmdline::parse(&config.cmdline);
        cmdline.set_params("init=fs_tests");
        cmdline.replace_args(&[mode.to_string()]);
        let machine = Machine {
            cpus: config.cpus,
            memory: config.memory.clone(),
            media: Media::Pvh {
                kernel: build.kernel.clone(),
                initrd: build.initrd.clone(),
                cmdline: cmdline.to_string(),
            },
            emulation: Emulation::Tcg,
            machine_type: config.machine,
            disks: vec![Disk {
                kind,
                path: image.clone(),
            }],
        };
        let log_path = workspace.log_path(&format!("{}-{mode}", config.name));
        eprintln!(
            "==> {}: boot {mode} (log {})",
            config.name,
            log_path.display()
        );
        let outcome = machine
            .run_logged(&log_path, config.timeout)
            .map_err(|err| err.to_string())?;
        let log = fs::read(&log_path)
            .map_err(|err| format!("cannot read {}: {err}", log_path.display()))?;
        let log = String::from_utf8_lossy(&log).replace('\r', "");
        judge(&outcome, &log)
            .map_err(|why| format!("{mode} boot: {why} (log {})", log_path.display()))?;
        disks::e2fsck_clean(&image).map_err(|why| format!("after the {mode} boot: {why}"))?;
    }
    host_reads(&image)
}

/// Step 5: the host reads what the guest wrote.
fn host_reads(image: &Path) -> Result<(), String> {
    let host: Vec<u8> = disks::debugfs_cat(image, &format!("/{HOST_FILE}"))?;
    if host.len() != HOST_FILE_LEN || fs_test::mismatch(&host, fs_test::host_byte).is_some() {
        return Err(format!("/{HOST_FILE} changed in the image"));
    }
    for (index, (path, len)) in PERSIST_FILES.iter().enumerate() {
        let data = disks::debugfs_cat(image, &format!("/{path}"))?;
        if data.len() != *len {
            return Err(format!(
                "debugfs reads /{path} as {} bytes, the guest wrote {len}",
                data.len()
            ));
        }
        if let Some(at) = fs_test::mismatch(&data, |i| fs_test::content_byte(index, i)) {
            return Err(format!(
                "debugfs reads byte {at} of /{path} differently from what the guest wrote"
            ));
        }
    }
    for gone in [UNLINKED, RENAMED_FROM] {
        if disks::debugfs_cat(image, &format!("/{gone}")).is_ok() {
            return Err(format!("/{gone} should not exist in the image"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host-side check accepts an image holding exactly the files the
    /// guest writes, and refuses one with a wrong byte, a missing file or
    /// a file that should be gone.
    #[test]
    fn host_reads_what_the_guest_wrote() {
        let dir = std::env::temp_dir().join(format!("xtask-persist-{}", std::process::id()));
        let image = dir.join("p.img");
        let put = |image: &Path, name: &str, data: &[u8]| {
            let host = dir.join("put.bin");
            fs::write(&host, data).unwrap();
            disks::debugfs_write(image, &host, name).unwrap();
        };
        let build = |skip: Option<usize>, flip: Option<usize>, extra: Option<&str>| {
            disks::make_ext4(&image, 16 << 20).unwrap();
            let host: Vec<u8> = (0..HOST_FILE_LEN).map(fs_test::host_byte).collect();
            put(&image, HOST_FILE, &host);
            for dirname in ["persist", "persist/sub", "persist/sub/deeper"] {
                disks::debugfs_mkdir(&image, dirname).unwrap();
            }
            for (index, (path, len)) in PERSIST_FILES.iter().enumerate() {
                if skip == Some(index) {
                    continue;
                }
                let mut data: Vec<u8> =
                    (0..*len).map(|i| fs_test::content_byte(index, i)).collect();
                if flip == Some(index) {
                    data[len / 2] ^= 1;
                }
                put(&image, path, &data);
            }
            if let Some(name) = extra {
                put(&image, name, b"x");
            }
        };
        build(None, None, None);
        assert_eq!(host_reads(&image), Ok(()));
        build(None, Some(1), None);
        assert!(host_reads(&image).unwrap_err().contains("medium.bin"));
        build(Some(3), None, None);
        assert!(host_reads(&image).is_err());
        build(None, None, Some(UNLINKED));
        assert!(host_reads(&image).unwrap_err().contains("should not exist"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
