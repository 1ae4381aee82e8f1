//! Child processes: spawn, wait and describe how they ended.

use crate::sys;
use abi::errno::Errno;
use core::fmt;

/// Starts program `name` with `argv` (`argv[0]` is conventionally `name`);
/// returns the child's pid.
pub fn spawn(name: &str, argv: &[&str]) -> Result<u64, Errno> {
    sys::spawn(name, argv)
}

/// Waits for child `pid` to end; returns its status (see [`abi::status`]).
pub fn wait(pid: u64) -> Result<i32, Errno> {
    let pid = i64::try_from(pid).map_err(|_| abi::errno::EINVAL)?;
    sys::wait(pid).map(|(_, status)| status)
}

/// Waits for any child to end; returns its pid and status.
pub fn wait_any() -> Result<(u64, i32), Errno> {
    sys::wait(-1)
}

/// Spawns `name` with `argv` and waits for it; returns its status.
pub fn run(name: &str, argv: &[&str]) -> Result<i32, Errno> {
    wait(spawn(name, argv)?)
}

/// Displays a wait status as `exit code N` or `killed by CPU exception V`.
pub fn describe(status: i32) -> impl fmt::Display {
    StatusText(status)
}

struct StatusText(i32);

impl fmt::Display for StatusText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match abi::status::killed_by(self.0) {
            Some(vector) => write!(f, "killed by CPU exception {vector}"),
            None => write!(f, "exit code {}", self.0),
        }
    }
}
