//! Running other programs. Every failure names the command that failed, so
//! the error can be reproduced by pasting it into a shell.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::{env, fs};

use crate::error::{bail, Error, Result};

/// The command line of `cmd`, quoted for a POSIX shell.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![shell_quote(&cmd.get_program().to_string_lossy())];
    words.extend(
        cmd.get_args()
            .map(|arg| shell_quote(&arg.to_string_lossy())),
    );
    words.join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./,:+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with the terminal as its stdio; fails unless it exits with 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|err| Error::new(format!("cannot run `{}`: {err}", describe(cmd))))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` with its output captured; the output is shown only if it
/// fails, as part of the error.
pub fn run_quiet(cmd: &mut Command) -> Result<()> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|err| Error::new(format!("cannot run `{}`: {err}", describe(cmd))))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}):\n{}{}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Runs `cmd` and returns what it printed on stdout; stderr goes to the
/// terminal.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| Error::new(format!("cannot run `{}`: {err}", describe(cmd))))?;
    if !output.status.success() {
        bail!("`{}` failed ({})", describe(cmd), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Where `program` is found on `PATH`, if anywhere.
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;

    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_only_what_needs_it() {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-m", "512M", "-append", "init=tests log=info", "it's", ""]);
        assert_eq!(
            describe(&cmd),
            r#"qemu-system-x86_64 -m 512M -append 'init=tests log=info' 'it'\''s' ''"#
        );
    }
}
