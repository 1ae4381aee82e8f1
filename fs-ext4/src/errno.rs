//! rsext4's errors as [`Errno`]s.
//!
//! Every error is for the one call that met it: corruption is `EUCLEAN`
//! (what Linux's ext4 returns for a structure that fails its checks), a
//! device failure or an aborted journal `EIO`, and the rest the errno a
//! POSIX caller expects. Corruption and I/O failures are logged with the
//! operation rsext4 names, so a bad disk is visible in the kernel log.

use abi::errno::{
    Errno, EBADF, EBUSY, EEXIST, EFBIG, EINVAL, EIO, EISDIR, ENOENT, ENOMEM, ENOSPC, ENOTDIR,
    EOPNOTSUPP, EOVERFLOW, EPERM, ETIMEDOUT,
};
use rsext4::{Ext4Error, Ext4ErrorKind};

/// Linux's numbers for the errnos `abi` does not define yet (the lead adds
/// them to `abi::errno`; until then they are built here from their values).
const fn linux(code: i32) -> Errno {
    match Errno::new(code) {
        Some(e) => e,
        None => EIO,
    }
}

/// Structure needs cleaning: the file system is corrupt.
pub const EUCLEAN: Errno = linux(117);
/// Directory not empty.
pub const ENOTEMPTY: Errno = linux(39);
/// Read-only file system.
pub const EROFS: Errno = linux(30);
/// Too many links.
pub const EMLINK: Errno = linux(31);
/// Disk quota exceeded.
pub const EDQUOT: Errno = linux(122);

/// The errno for `e`, met by operation `op`; corruption and I/O failures
/// are logged.
pub fn to_errno(op: &str, e: Ext4Error) -> Errno {
    use Ext4ErrorKind as K;
    let errno = match e.kind() {
        K::Io | K::JournalAborted => EIO,
        K::Corrupted | K::ChecksumMismatch | K::BadSuperblock | K::InvalidMagic => EUCLEAN,
        K::UnsupportedFeature | K::UnsupportedCapability | K::Unsupported => EOPNOTSUPP,
        K::ReadOnly => EROFS,
        K::NoSpace => ENOSPC,
        K::NoMemory => ENOMEM,
        K::QuotaExceeded => EDQUOT,
        K::TooManyLinks => EMLINK,
        K::PermissionDenied => EPERM,
        K::NotFound => ENOENT,
        K::AlreadyExists => EEXIST,
        K::NotDirectory => ENOTDIR,
        K::IsDirectory => EISDIR,
        K::NotEmpty => ENOTEMPTY,
        K::Busy => EBUSY,
        K::BadFileDescriptor => EBADF,
        K::InvalidInput => EINVAL,
        K::Overflow => EOVERFLOW,
        K::FileTooLarge => EFBIG,
        K::Timeout => ETIMEDOUT,
    };
    if errno == EIO || errno == EUCLEAN {
        log::warn!("ext4: {op}: {e}");
    }
    errno
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::errno::ENAMETOOLONG;
    use rsext4::Ext4ErrorKind as K;

    #[test]
    fn linux_numbers() {
        assert_eq!(EUCLEAN.code(), 117);
        assert_eq!(ENOTEMPTY.code(), 39);
        assert_eq!(EROFS.code(), 30);
        assert_eq!(EMLINK.code(), 31);
        assert_eq!(EDQUOT.code(), 122);
        assert_eq!(ENAMETOOLONG.code(), 36);
    }

    #[test]
    fn kinds_map_to_the_posix_errno() {
        for (kind, errno) in [
            (K::Io, EIO),
            (K::JournalAborted, EIO),
            (K::Corrupted, EUCLEAN),
            (K::ChecksumMismatch, EUCLEAN),
            (K::BadSuperblock, EUCLEAN),
            (K::NoSpace, ENOSPC),
            (K::NotFound, ENOENT),
            (K::AlreadyExists, EEXIST),
            (K::NotDirectory, ENOTDIR),
            (K::IsDirectory, EISDIR),
            (K::NotEmpty, ENOTEMPTY),
            (K::ReadOnly, EROFS),
            (K::FileTooLarge, EFBIG),
            (K::InvalidInput, EINVAL),
        ] {
            assert_eq!(to_errno("test", Ext4Error::new(kind)), errno, "{kind:?}");
        }
    }
}
