//! Path rules.
//!
//! A path is 1..=[`PATH_MAX`] bytes of UTF-8 without NUL (`ENOENT` if
//! empty, `ENAMETOOLONG` if longer, `EINVAL` for NUL). It splits at `/`;
//! empty components (repeated or trailing `/`) are skipped, `.` stays where
//! it is, `..` goes to the parent (the parent of `/` is `/`). A path that
//! starts with `/` starts at the root, any other at the caller's working
//! directory (always `/` for now: there is no `chdir` yet). Every other
//! component is a name of 1..=[`NAME_MAX`] bytes (`ENAMETOOLONG`). There
//! are no symbolic links, so nothing is ever followed.

use abi::errno::{Errno, EINVAL, ENAMETOOLONG, ENOENT};
use abi::syscall::limits::{NAME_MAX, PATH_MAX};

/// One step of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component<'a> {
    /// `..`
    Parent,
    /// A name in the current directory.
    Name(&'a str),
}

/// Checks the whole path (see the module doc).
pub fn check(path: &str) -> Result<(), Errno> {
    if path.is_empty() {
        Err(ENOENT)
    } else if path.len() > PATH_MAX {
        Err(ENAMETOOLONG)
    } else if path.contains('\0') {
        Err(EINVAL)
    } else {
        Ok(())
    }
}

/// Like [`check`], for a path copied from user space as bytes; bytes that
/// are not UTF-8 are `EINVAL`.
pub fn from_bytes(path: &[u8]) -> Result<&str, Errno> {
    if path.len() > PATH_MAX {
        return Err(ENAMETOOLONG);
    }
    let path = core::str::from_utf8(path).map_err(|_| EINVAL)?;
    check(path)?;
    Ok(path)
}

/// Checks one name: 1..=[`NAME_MAX`] bytes, no `/`, no NUL, not `.` or
/// `..` (`EINVAL`; `ENAMETOOLONG` if too long; `ENOENT` if empty).
pub fn check_name(name: &str) -> Result<(), Errno> {
    if name.is_empty() {
        Err(ENOENT)
    } else if name.len() > NAME_MAX {
        Err(ENAMETOOLONG)
    } else if name == "." || name == ".." || name.contains(['/', '\0']) {
        Err(EINVAL)
    } else {
        Ok(())
    }
}

/// Whether the path starts at the root.
pub fn is_absolute(path: &str) -> bool {
    path.starts_with('/')
}

/// Whether the path ends in `/` (its last component must be a directory).
pub fn wants_dir(path: &str) -> bool {
    path.ends_with('/')
}

/// The steps of `path` (checked with [`check`] first), `.` and empty
/// components left out; a name longer than [`NAME_MAX`] is
/// `ENAMETOOLONG`.
pub fn components(path: &str) -> impl Iterator<Item = Result<Component<'_>, Errno>> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| match c {
            ".." => Ok(Component::Parent),
            name if name.len() > NAME_MAX => Err(ENAMETOOLONG),
            name => Ok(Component::Name(name)),
        })
}

/// The last component of a path and what comes before it, for the calls
/// that make or remove a name (`mkdir`, `unlink`, `rename`, `open` with
/// `O_CREAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Last<'a> {
    /// `dir` then the name.
    Name { dir: &'a str, name: &'a str },
    /// The path ends in `.` or `..` or is only `/`s: there is no name to
    /// make or remove (callers answer `EEXIST`, `EINVAL` or `EBUSY` as
    /// Linux does).
    Special,
}

/// Splits `path` (checked with [`check`] first) at its last component.
/// Trailing `/`s are ignored here (the caller checks [`wants_dir`]).
pub fn split_last(path: &str) -> Result<Last<'_>, Errno> {
    check(path)?;
    let trimmed = path.trim_end_matches('/');
    let (dir, name) = match trimmed.rfind('/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => ("", trimmed),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Ok(Last::Special);
    }
    if name.len() > NAME_MAX {
        return Err(ENAMETOOLONG);
    }
    Ok(Last::Name { dir, name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn steps(path: &str) -> Result<Vec<Component<'_>>, Errno> {
        check(path)?;
        components(path).collect()
    }

    #[test]
    fn components_skip_empty_and_dot() {
        use Component::*;
        assert_eq!(steps("/").unwrap(), []);
        assert_eq!(
            steps("//a///b/./c/").unwrap(),
            [Name("a"), Name("b"), Name("c")]
        );
        assert_eq!(steps("a/../..").unwrap(), [Name("a"), Parent, Parent]);
        assert_eq!(steps("...").unwrap(), [Name("...")]);
        assert_eq!(steps(".hidden").unwrap(), [Name(".hidden")]);
    }

    #[test]
    fn hostile_paths() {
        assert_eq!(check(""), Err(ENOENT));
        assert_eq!(check("a\0b"), Err(EINVAL));
        assert_eq!(from_bytes(b"\xff"), Err(EINVAL));
        assert_eq!(from_bytes(&[b'/'; 4096]), Err(ENAMETOOLONG));
        let slashes = String::from("/").repeat(PATH_MAX);
        assert_eq!(steps(&slashes).unwrap(), []);
        assert_eq!(check(&(slashes + "/")), Err(ENAMETOOLONG));
        // A name of NAME_MAX bytes passes, one more does not (on its own
        // and within a path that is not too long).
        let name = "n".repeat(NAME_MAX);
        assert!(steps(&name).is_ok());
        assert_eq!(check_name(&name), Ok(()));
        assert_eq!(check_name(&(name.clone() + "n")), Err(ENAMETOOLONG));
        let long = "n".repeat(NAME_MAX + 1);
        assert_eq!(components(&long).next(), Some(Err(ENAMETOOLONG)));
        assert_eq!(split_last(&long), Err(ENAMETOOLONG));
        assert_eq!(check_name(""), Err(ENOENT));
        for bad in [".", "..", "a/b", "a\0"] {
            assert_eq!(check_name(bad), Err(EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn split_last_finds_the_name() {
        assert_eq!(split_last("a"), Ok(Last::Name { dir: "", name: "a" }));
        assert_eq!(
            split_last("/a"),
            Ok(Last::Name {
                dir: "/",
                name: "a"
            })
        );
        assert_eq!(
            split_last("/x//y/a//"),
            Ok(Last::Name {
                dir: "/x//y/",
                name: "a"
            })
        );
        for special in ["/", "//", ".", "..", "a/.", "a/..", "/../"] {
            assert_eq!(split_last(special), Ok(Last::Special), "{special:?}");
        }
        assert_eq!(split_last(""), Err(ENOENT));
        assert!(wants_dir("a/") && !wants_dir("a"));
        assert!(is_absolute("/a") && !is_absolute("a/"));
    }
}
