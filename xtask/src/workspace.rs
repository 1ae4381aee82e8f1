//! Where things are: the workspace root and the layout of `target/`.
//!
//! All paths the build runner writes live under `target/`, named after the
//! configuration they belong to, so several configurations can be built side
//! by side.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target triple of the kernel and the user programs.
pub const BARE_METAL_TARGET: &str = "x86_64-unknown-none";

pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace that contains this crate.
    pub fn locate() -> Workspace {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .expect("xtask lives inside the workspace");
        Workspace {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn configs_dir(&self) -> PathBuf {
        self.root.join("configs")
    }

    pub fn target_dir(&self) -> PathBuf {
        self.root.join("target")
    }

    pub fn initrd_path(&self, config: &str) -> PathBuf {
        self.target_dir().join(format!("initrd-{config}.cpio"))
    }

    pub fn iso_tree(&self, config: &str) -> PathBuf {
        self.target_dir().join(format!("iso-{config}"))
    }

    pub fn iso_path(&self, config: &str) -> PathBuf {
        self.target_dir().join(format!("kernel-{config}.iso"))
    }

    pub fn log_path(&self, config: &str) -> PathBuf {
        self.target_dir().join("logs").join(format!("{config}.log"))
    }

    /// Where `cargo xtask bench` puts its serial logs and `results.md`.
    pub fn bench_dir(&self) -> PathBuf {
        self.target_dir().join("bench")
    }

    /// A `cargo` command run in the workspace root, using the same cargo
    /// that runs xtask.
    pub fn cargo(&self) -> Command {
        let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.root);
        cmd
    }

    /// A `cargo` command whose compiler flags are exactly `rustflags`; any
    /// flags from the caller's environment are dropped so that a build does
    /// not depend on the shell it was started from.
    pub fn cargo_with_rustflags(&self, rustflags: &str) -> Command {
        let mut cmd = self.cargo();
        cmd.env("RUSTFLAGS", rustflags)
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        cmd
    }
}
