//! Host prerequisites: QEMU, GRUB with both its BIOS and UEFI platforms, the
//! ISO tools, OVMF, and the bare-metal Rust target.
//!
//! Checking is cheap (a few `stat`s and one `rustup` call), so every command
//! that builds or boots checks first. Missing Debian packages are installed
//! when running as root (CI containers); otherwise the error prints the
//! command to run.

use std::path::Path;
use std::process::Command;

use crate::error::{bail, Result};
use crate::process::{self, find_program};
use crate::qemu::Ovmf;
use crate::workspace::{Workspace, BARE_METAL_TARGET};

/// The Debian packages that provide everything in [`REQUIREMENTS`].
const APT_PACKAGES: [&str; 8] = [
    "qemu-system-x86",
    "e2fsprogs",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub-common",
    "xorriso",
    "mtools",
    "ovmf",
];

enum Requirement {
    Program(&'static str),
    Directory(&'static str),
    Ovmf,
}

/// What must be on the host, with the Debian package that provides it.
const REQUIREMENTS: [(Requirement, &str); 11] = [
    (
        Requirement::Program("qemu-system-x86_64"),
        "qemu-system-x86",
    ),
    (Requirement::Program("grub-mkrescue"), "grub-common"),
    (Requirement::Program("xorriso"), "xorriso"),
    (Requirement::Program("mformat"), "mtools"),
    // fs-ext4's host tests make images and check them with the host's tools.
    (Requirement::Program("mkfs.ext4"), "e2fsprogs"),
    (Requirement::Program("e2fsck"), "e2fsprogs"),
    // The crash test and the persist test read images with them.
    (Requirement::Program("debugfs"), "e2fsprogs"),
    (Requirement::Program("dumpe2fs"), "e2fsprogs"),
    (
        Requirement::Directory("/usr/lib/grub/i386-pc"),
        "grub-pc-bin",
    ),
    (
        Requirement::Directory("/usr/lib/grub/x86_64-efi"),
        "grub-efi-amd64-bin",
    ),
    (Requirement::Ovmf, "ovmf"),
];

impl Requirement {
    fn is_met(&self) -> bool {
        match self {
            Requirement::Program(name) => find_program(name).is_some(),
            Requirement::Directory(path) => Path::new(path).is_dir(),
            Requirement::Ovmf => Ovmf::find().is_some(),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Requirement::Program(name) | Requirement::Directory(name) => name,
            Requirement::Ovmf => "OVMF firmware",
        }
    }
}

/// Makes sure everything needed to build and boot is installed.
pub fn ensure_prerequisites(workspace: &Workspace) -> Result<()> {
    ensure_host_packages()?;
    ensure_rust_target(workspace)
}

/// What is missing, each as "thing (package)".
fn missing_requirements() -> Vec<String> {
    REQUIREMENTS
        .iter()
        .filter(|(requirement, _)| !requirement.is_met())
        .map(|(requirement, package)| format!("{} (package {package})", requirement.describe()))
        .collect()
}

fn ensure_host_packages() -> Result<()> {
    let missing = missing_requirements();
    if missing.is_empty() {
        return Ok(());
    }
    let packages = APT_PACKAGES.join(" ");
    if !running_as_root()? {
        bail!(
            "missing host tools: {}\ninstall them with:\n    sudo apt-get update && \
             sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {packages}",
            missing.join(", ")
        );
    }

    eprintln!("==> installing missing host tools: {}", missing.join(", "));
    process::run(Command::new("apt-get").arg("update"))?;
    process::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(APT_PACKAGES),
    )?;
    let still_missing = missing_requirements();
    if !still_missing.is_empty() {
        bail!(
            "still missing after apt-get install: {}",
            still_missing.join(", ")
        );
    }
    Ok(())
}

fn running_as_root() -> Result<bool> {
    Ok(process::stdout_of(Command::new("id").arg("-u"))?.trim() == "0")
}

/// Adds the bare-metal target to the toolchain that rust-toolchain.toml
/// selects, if it is not there yet.
fn ensure_rust_target(workspace: &Workspace) -> Result<()> {
    if find_program("rustup").is_none() {
        // A toolchain without rustup: the build says so if the target is missing.
        return Ok(());
    }
    let installed =
        process::stdout_of(Command::new("rustup").current_dir(workspace.root()).args([
            "target",
            "list",
            "--installed",
        ]))?;
    if installed
        .lines()
        .any(|line| line.trim() == BARE_METAL_TARGET)
    {
        return Ok(());
    }
    eprintln!("==> adding the Rust target {BARE_METAL_TARGET}");
    process::run(Command::new("rustup").current_dir(workspace.root()).args([
        "target",
        "add",
        BARE_METAL_TARGET,
    ]))
}
