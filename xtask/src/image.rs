//! Building what QEMU boots: the kernel ELF, the user programs, the initrd
//! and, for GRUB boots, the ISO.
//!
//! The kernel and the user programs are built for the same target with
//! different compiler flags (the kernel lives in the top 2 GiB, user programs
//! at `abi::layout::USER_IMAGE_BASE`), so each has its own target directory and neither build
//! invalidates the other.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{Boot, Config};
use crate::error::{bail, Error, Result};
use crate::initrd::{self, Entry, MODE_DATA, MODE_EXECUTABLE};
use crate::process;
use crate::qemu::{Media, Ovmf};
use crate::workspace::{Workspace, BARE_METAL_TARGET};

/// Kernel code model: all symbols in the top 2 GiB; no PIC; frame pointers
/// so that panics can walk the stack.
pub const KERNEL_RUSTFLAGS: &str =
    "-C code-model=kernel -C relocation-model=static -C force-frame-pointers=yes";
/// User programs are static executables at a fixed address (user/linker.ld).
pub const USER_RUSTFLAGS: &str = "-C relocation-model=static";

/// The files a build produced.
#[derive(Debug, Clone)]
pub struct Build {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Builds the kernel with the configuration's features, the user programs,
/// and the initrd holding the user programs plus `extra_files`.
pub fn build(workspace: &Workspace, config: &Config, extra_files: &[PathBuf]) -> Result<Build> {
    let kernel = build_kernel(workspace, config.features.as_deref())?;
    let programs = build_user_programs(workspace)?;

    let mut entries: Vec<Entry> = programs
        .into_iter()
        .map(|(name, source)| Entry {
            name,
            source,
            mode: MODE_EXECUTABLE,
        })
        .collect();
    for path in extra_files {
        entries.push(extra_entry(path)?);
    }
    let initrd = workspace.initrd_path(&config.name);
    initrd::write_initrd(&initrd, &entries)?;
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    eprintln!("==> initrd {} ({})", initrd.display(), names.join(", "));
    Ok(Build { kernel, initrd })
}

fn build_kernel(workspace: &Workspace, features: Option<&[String]>) -> Result<PathBuf> {
    let (mut cmd, out_dir) = release_build(workspace, "kernel", KERNEL_RUSTFLAGS);
    if let Some(features) = features {
        cmd.arg("--no-default-features");
        if !features.is_empty() {
            cmd.arg("--features").arg(features.join(","));
        }
    }
    let shown = features.map_or("default".to_string(), |f| format!("[{}]", f.join(", ")));
    eprintln!("==> building the kernel (features: {shown})");
    process::run(&mut cmd)?;
    Ok(out_dir.join("kernel"))
}

/// Builds every program in `user/src/bin` and returns (name, ELF path) pairs.
fn build_user_programs(workspace: &Workspace) -> Result<Vec<(String, PathBuf)>> {
    let bin_dir = workspace.root().join("user/src/bin");
    let names = program_names(&bin_dir)?;
    if names.is_empty() {
        bail!("no user programs: {} is empty", bin_dir.display());
    }
    let (mut cmd, out_dir) = release_build(workspace, "user", USER_RUSTFLAGS);
    eprintln!("==> building the user programs");
    process::run(&mut cmd)?;
    Ok(names
        .into_iter()
        .map(|name| {
            let path = out_dir.join(&name);
            (name, path)
        })
        .collect())
}

/// `cargo build --release -p <package>` for the bare-metal target, in the
/// package's own target directory `target/<package>`. Returns the command
/// and the directory the binaries land in.
fn release_build(workspace: &Workspace, package: &str, rustflags: &str) -> (Command, PathBuf) {
    let target_dir = workspace.target_dir().join(package);
    let mut cmd = workspace.cargo_with_rustflags(rustflags);
    cmd.args(["build", "--release", "-p", package])
        .args(["--target", BARE_METAL_TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    (cmd, target_dir.join(BARE_METAL_TARGET).join("release"))
}

/// The programs Cargo finds in `user/src/bin`: `NAME.rs` and `NAME/main.rs`.
fn program_names(bin_dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(bin_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io("list", bin_dir, err)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.map_err(|err| Error::io("list", bin_dir, err))?.path();
        let is_program = if path.is_dir() {
            path.join("main.rs").is_file()
        } else {
            path.extension().is_some_and(|ext| ext == "rs")
        };
        let stem = if path.is_dir() {
            path.file_name()
        } else {
            path.file_stem()
        };
        if let Some(name) = stem.and_then(|s| s.to_str()).filter(|_| is_program) {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// An `--add` file: stored under its base name, executable if it is
/// executable on the host.
fn extra_entry(path: &Path) -> Result<Entry> {
    use std::os::unix::fs::PermissionsExt;

    let meta = fs::metadata(path).map_err(|err| Error::io("read", path, err))?;
    if !meta.is_file() {
        bail!("--add {}: not a regular file", path.display());
    }
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        bail!("--add {}: the file name is not UTF-8", path.display());
    };
    let executable = meta.permissions().mode() & 0o111 != 0;
    Ok(Entry {
        name: name.to_string(),
        source: path.to_path_buf(),
        mode: if executable {
            MODE_EXECUTABLE
        } else {
            MODE_DATA
        },
    })
}

/// Makes `target/kernel-<config>.iso`: GRUB (BIOS and UEFI) loading the
/// kernel with multiboot2 and the initrd as a module.
pub fn make_iso(
    workspace: &Workspace,
    config: &str,
    build: &Build,
    cmdline: &str,
) -> Result<PathBuf> {
    let tree = workspace.iso_tree(config);
    if tree.exists() {
        fs::remove_dir_all(&tree).map_err(|err| Error::io("remove", &tree, err))?;
    }
    let grub_dir = tree.join("boot/grub");
    fs::create_dir_all(&grub_dir).map_err(|err| Error::io("create", &grub_dir, err))?;
    copy(&build.kernel, &tree.join("boot/kernel.elf"))?;
    copy(&build.initrd, &tree.join("boot/initrd.cpio"))?;
    let grub_cfg = grub_dir.join("grub.cfg");
    fs::write(&grub_cfg, grub_config(cmdline)).map_err(|err| Error::io("write", &grub_cfg, err))?;

    let iso = workspace.iso_path(config);
    eprintln!("==> making {}", iso.display());
    process::run_quiet(Command::new("grub-mkrescue").arg("-o").arg(&iso).arg(&tree))?;
    Ok(iso)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).map(drop).map_err(|err| {
        Error::new(format!(
            "cannot copy {} to {}: {err}",
            from.display(),
            to.display()
        ))
    })
}

/// The GRUB menu: boot the kernel at once with `cmdline`, in a linear
/// 1024x768 graphics mode (32 bits per pixel if there is one) that stays
/// set for the kernel's screen console: `all_video` brings the VBE (BIOS)
/// and GOP (UEFI) drivers, `gfxpayload=keep` hands the mode over.
fn grub_config(cmdline: &str) -> String {
    let mut kernel_line = String::from("    multiboot2 /boot/kernel.elf");
    for word in cmdline.split_whitespace() {
        kernel_line.push(' ');
        kernel_line.push_str(&grub_quote(word));
    }
    format!(
        "set timeout=0\n\
         set default=0\n\
         insmod all_video\n\
         set gfxmode=1024x768x32,1024x768,auto\n\
         set gfxpayload=keep\n\
         menuentry \"kernel\" {{\n\
         {kernel_line}\n    \
         module2 /boot/initrd.cpio initrd\n    \
         boot\n\
         }}\n"
    )
}

/// Quotes a word for grub.cfg, whose syntax is shell-like: `$`, quotes,
/// `;`, `#` and friends would otherwise be interpreted by GRUB.
fn grub_quote(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "=,._-/:+@%".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Builds what `boot` needs from `build`: nothing more for PVH, the ISO
/// (and a copy of the OVMF variables, if needed) for GRUB boots.
pub fn boot_media(
    workspace: &Workspace,
    config: &Config,
    boot: Boot,
    cmdline: &str,
    build: &Build,
) -> Result<Media> {
    Ok(match boot {
        Boot::Pvh => Media::Pvh {
            kernel: build.kernel.clone(),
            initrd: build.initrd.clone(),
            cmdline: cmdline.to_string(),
        },
        Boot::Bios => Media::Bios {
            iso: make_iso(workspace, &config.name, build, cmdline)?,
        },
        Boot::Uefi => {
            let ovmf = Ovmf::find()
                .ok_or_else(|| Error::new("no OVMF firmware found (Debian package ovmf)"))?;
            let vars_copy = workspace
                .target_dir()
                .join(format!("ovmf-vars-{}.fd", config.name));
            Media::Uefi {
                iso: make_iso(workspace, &config.name, build, cmdline)?,
                firmware: ovmf.image(&vars_copy)?,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_config_matches_the_layout() {
        assert_eq!(
            grub_config("init=tests  log=info"),
            "set timeout=0\n\
             set default=0\n\
             insmod all_video\n\
             set gfxmode=1024x768x32,1024x768,auto\n\
             set gfxpayload=keep\n\
             menuentry \"kernel\" {\n    \
             multiboot2 /boot/kernel.elf init=tests log=info\n    \
             module2 /boot/initrd.cpio initrd\n    \
             boot\n\
             }\n"
        );
    }

    #[test]
    fn grub_config_quotes_special_words() {
        let cfg = grub_config("syscall= =x a$b it's");
        assert!(
            cfg.contains("multiboot2 /boot/kernel.elf syscall= =x 'a$b' 'it'\\''s'\n"),
            "{cfg}"
        );
    }

    #[test]
    fn program_names_finds_files_and_directories() {
        let dir = std::env::temp_dir().join(format!("xtask-bin-test-{}", std::process::id()));
        fs::create_dir_all(dir.join("multi")).unwrap();
        fs::create_dir_all(dir.join("not-a-program")).unwrap();
        fs::write(dir.join("tests.rs"), "").unwrap();
        fs::write(dir.join("init.rs"), "").unwrap();
        fs::write(dir.join("notes.txt"), "").unwrap();
        fs::write(dir.join("multi/main.rs"), "").unwrap();
        assert_eq!(program_names(&dir).unwrap(), ["init", "multi", "tests"]);
        fs::remove_dir_all(&dir).unwrap();
        assert!(program_names(&dir).unwrap().is_empty());
    }
}
