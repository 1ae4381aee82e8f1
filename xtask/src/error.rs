//! The one error type of the build runner: a message for the person at the
//! terminal. Every step that can fail says what it was doing and on which
//! file, so the message alone is enough to act on.

use std::fmt;
use std::io;
use std::path::Path;

/// Something went wrong; the message says what and where.
#[derive(Debug)]
pub struct Error(String);

/// Result of any step of the build runner.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    /// An I/O failure while doing `action` (e.g. "read") on `path`.
    pub fn io(action: &str, path: &Path, err: io::Error) -> Self {
        Error(format!("cannot {action} {}: {err}", path.display()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Returns early with an [`Error`] built from a format string.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::new(format!($($arg)*)))
    };
}
pub(crate) use bail;
