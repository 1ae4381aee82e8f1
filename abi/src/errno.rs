//! Error numbers, with Linux's values: the one [`Errno`] type that the
//! kernel's `Result`s carry and `libuser` hands to programs.
//!
//! On the wire (a syscall's `rax`, a CQE's `res`) an error is `-errno`:
//! [`Errno::to_ret`] and `-e` (a [`core::ops::Neg`] that yields the `i32`)
//! encode it, [`Errno::from_ret`] and [`Errno::from_res`] decode it. Inside
//! the kernel nothing else is an error: a `Result<_, Errno>` cannot be
//! confused with a count or a descriptor.

use core::fmt;

/// An error number in `1..=MAX_ERRNO`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Errno(i32);

/// The largest errno value; results in `-MAX_ERRNO..0` are errors.
pub const MAX_ERRNO: i32 = 4095;

pub const EPERM: Errno = Errno(1);
pub const ENOENT: Errno = Errno(2);
pub const ESRCH: Errno = Errno(3);
pub const EINTR: Errno = Errno(4);
pub const EIO: Errno = Errno(5);
pub const ENXIO: Errno = Errno(6);
pub const E2BIG: Errno = Errno(7);
pub const ENOEXEC: Errno = Errno(8);
pub const EBADF: Errno = Errno(9);
pub const ECHILD: Errno = Errno(10);
pub const EAGAIN: Errno = Errno(11);
pub const ENOMEM: Errno = Errno(12);
pub const EACCES: Errno = Errno(13);
pub const EFAULT: Errno = Errno(14);
pub const EBUSY: Errno = Errno(16);
pub const EEXIST: Errno = Errno(17);
pub const EXDEV: Errno = Errno(18);
pub const ENOTDIR: Errno = Errno(20);
pub const EISDIR: Errno = Errno(21);
pub const EINVAL: Errno = Errno(22);
pub const ENFILE: Errno = Errno(23);
pub const EMFILE: Errno = Errno(24);
pub const EFBIG: Errno = Errno(27);
pub const ENOSPC: Errno = Errno(28);
pub const ESPIPE: Errno = Errno(29);
pub const ERANGE: Errno = Errno(34);
pub const ENAMETOOLONG: Errno = Errno(36);
pub const ENOSYS: Errno = Errno(38);
pub const ENOTEMPTY: Errno = Errno(39);
/// Read-only file system.
pub const EROFS: Errno = Errno(30);
/// Too many links.
pub const EMLINK: Errno = Errno(31);
/// The file system's structures are inconsistent ("Structure needs
/// cleaning").
pub const EUCLEAN: Errno = Errno(117);
/// Quota exceeded.
pub const EDQUOT: Errno = Errno(122);
pub const ETIME: Errno = Errno(62);
pub const EOVERFLOW: Errno = Errno(75);
pub const EOPNOTSUPP: Errno = Errno(95);
pub const ETIMEDOUT: Errno = Errno(110);
pub const EALREADY: Errno = Errno(114);
pub const ECANCELED: Errno = Errno(125);

impl Errno {
    /// The errno with number `code`, if it is one (`1..=MAX_ERRNO`).
    pub const fn new(code: i32) -> Option<Errno> {
        if code >= 1 && code <= MAX_ERRNO {
            Some(Errno(code))
        } else {
            None
        }
    }

    /// The number, positive (`EINVAL.code() == 22`).
    pub const fn code(self) -> i32 {
        self.0
    }

    /// The syscall return value that carries this error (`-code`).
    pub const fn to_ret(self) -> i64 {
        -(self.0 as i64)
    }

    /// Splits a syscall return value into a value or the error it encodes
    /// (values in `-MAX_ERRNO..=-1` are errors).
    pub const fn from_ret(ret: i64) -> Result<u64, Errno> {
        if ret >= -(MAX_ERRNO as i64) && ret <= -1 {
            Err(Errno(-ret as i32))
        } else {
            Ok(ret as u64)
        }
    }

    /// Splits a CQE's `res` into a value or the error it encodes (any
    /// negative `res` is an error; one below `-MAX_ERRNO` is not an errno
    /// this ABI defines and reads as [`ERANGE`]).
    pub const fn from_res(res: i32) -> Result<u32, Errno> {
        if res >= 0 {
            Ok(res as u32)
        } else if res >= -MAX_ERRNO {
            Err(Errno(-res))
        } else {
            Err(ERANGE)
        }
    }

    /// The symbolic name, such as `"ENOENT"` (`"E?"` for a number this
    /// crate does not name).
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            6 => "ENXIO",
            7 => "E2BIG",
            8 => "ENOEXEC",
            9 => "EBADF",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            18 => "EXDEV",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            23 => "ENFILE",
            24 => "EMFILE",
            27 => "EFBIG",
            28 => "ENOSPC",
            29 => "ESPIPE",
            30 => "EROFS",
            31 => "EMLINK",
            34 => "ERANGE",
            36 => "ENAMETOOLONG",
            38 => "ENOSYS",
            39 => "ENOTEMPTY",
            62 => "ETIME",
            75 => "EOVERFLOW",
            95 => "EOPNOTSUPP",
            110 => "ETIMEDOUT",
            114 => "EALREADY",
            117 => "EUCLEAN",
            122 => "EDQUOT",
            125 => "ECANCELED",
            _ => "E?",
        }
    }
}

/// `-e` is the wire encoding, so that a CQE result or a test reads
/// `res == -EINVAL`.
impl core::ops::Neg for Errno {
    type Output = i32;
    fn neg(self) -> i32 {
        -self.0
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "E?" => write!(f, "errno {}", self.0),
            name => f.write_str(name),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes() {
        assert_eq!(EINVAL.code(), 22);
        assert_eq!(-EINVAL, -22);
        assert_eq!(EINVAL.to_ret(), -22);
        assert_eq!(Errno::from_ret(-22), Err(EINVAL));
        assert_eq!(Errno::from_ret(-4095), Err(Errno(4095)));
        assert_eq!(Errno::from_ret(-4096), Ok((-4096i64) as u64));
        assert_eq!(Errno::from_ret(5), Ok(5));
        assert_eq!(Errno::from_res(-2), Err(ENOENT));
        assert_eq!(Errno::from_res(7), Ok(7));
        assert_eq!(Errno::from_res(i32::MIN), Err(ERANGE));
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(4096), None);
        assert_eq!(Errno::new(9), Some(EBADF));
    }

    #[test]
    fn names() {
        assert_eq!(ENOENT.name(), "ENOENT");
        assert_eq!(format!("{}", ECANCELED), "ECANCELED");
        assert_eq!(format!("{}", Errno::new(200).unwrap()), "errno 200");
    }
}
