//! The mount table and path resolution across it.
//!
//! Mount 0 is the root file system (the RAM file system); every other
//! mount sits on a directory of an earlier mount (its mount point), which
//! it hides while mounted. Walking into a mount point enters the mounted
//! file system's root; `..` from a mounted root leaves through the mount
//! point to the mount point's parent. Renames across mounts are `EXDEV`;
//! removing or renaming a mount point (or a mounted root) is `EBUSY`.
//! Mounts are only added (at boot); unmounting comes with disk hot-plug.

use super::path::{self, Component, Last};
use super::{Attr, FileSystem, Ino, Kind};
use abi::errno::{Errno, EBUSY, EEXIST, EINVAL, EISDIR, ENOMEM, ENOTDIR, ENOTEMPTY, EXDEV};
use abi::open_flags::{O_ACCMODE, O_CREAT, O_DIRECTORY, O_EXCL, O_KNOWN, O_RDONLY, O_TRUNC};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// An inode in the mount table: which mount, which inode of its file
/// system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub mount: usize,
    pub ino: Ino,
}

/// One mounted file system.
pub struct Mount {
    pub fs: Arc<dyn FileSystem>,
    /// Where it is mounted (`None` for the root file system).
    pub on: Option<Loc>,
    /// The path it was mounted at, for listing mounts.
    pub path: String,
}

/// The mount table.
pub struct Vfs {
    mounts: Vec<Mount>,
}

/// What [`Vfs::open`] found or made.
#[derive(Clone)]
pub struct Opened {
    pub fs: Arc<dyn FileSystem>,
    pub loc: Loc,
    pub attr: Attr,
}

impl Vfs {
    /// A table with `root` mounted at `/`.
    pub fn new(root: Arc<dyn FileSystem>) -> Self {
        Vfs {
            mounts: alloc::vec![Mount {
                fs: root,
                on: None,
                path: String::from("/"),
            }],
        }
    }

    /// The root directory.
    pub fn root(&self) -> Loc {
        Loc {
            mount: 0,
            ino: self.mounts[0].fs.root(),
        }
    }

    /// The mounts, root first.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The file system `loc` is on.
    pub fn fs(&self, loc: Loc) -> &Arc<dyn FileSystem> {
        &self.mounts[loc.mount].fs
    }

    /// Mounts `fs` on the directory `at` (an absolute path), which must
    /// exist (`ENOENT`), be a directory (`ENOTDIR`) and not be `/`
    /// (`EBUSY`). Returns the mount's index.
    pub fn mount(&mut self, at: &str, fs: Arc<dyn FileSystem>) -> Result<usize, Errno> {
        let on = self.resolve(self.root(), at)?;
        if on == self.root() {
            return Err(EBUSY);
        }
        if self.stat(on)?.kind != Kind::Dir {
            return Err(ENOTDIR);
        }
        let mut path = String::new();
        path.try_reserve_exact(at.len()).map_err(|_| ENOMEM)?;
        path.push_str(at);
        self.mounts.try_reserve(1).map_err(|_| ENOMEM)?;
        self.mounts.push(Mount {
            fs,
            on: Some(on),
            path,
        });
        Ok(self.mounts.len() - 1)
    }

    /// Mounts `fs` at `at` (an absolute path in the root file system),
    /// making the directory first if it does not exist (how disks are
    /// mounted at `/disk`, `/disk1`, ...).
    pub fn mount_new_dir(&mut self, at: &str, fs: Arc<dyn FileSystem>) -> Result<usize, Errno> {
        match self.mkdir(self.root(), at) {
            Ok(_) | Err(EEXIST) => {}
            Err(e) => return Err(e),
        }
        self.mount(at, fs)
    }

    /// The mounted root `loc` leads to, if a file system is mounted on it
    /// (the latest, if several are stacked), else `loc`.
    fn enter(&self, mut loc: Loc) -> Loc {
        while let Some(i) = self.mounts.iter().rposition(|m| m.on == Some(loc)) {
            loc = Loc {
                mount: i,
                ino: self.mounts[i].fs.root(),
            };
        }
        loc
    }

    /// Whether `loc` is a mount point or a mounted root (or `/`).
    fn is_mount_boundary(&self, loc: Loc) -> bool {
        loc.ino == self.mounts[loc.mount].fs.root() || self.mounts.iter().any(|m| m.on == Some(loc))
    }

    /// `..` of the directory `loc`.
    fn parent(&self, mut loc: Loc) -> Result<Loc, Errno> {
        loop {
            let mount = &self.mounts[loc.mount];
            if loc.ino != mount.fs.root() {
                let ino = mount.fs.parent(loc.ino)?;
                return Ok(Loc {
                    mount: loc.mount,
                    ino,
                });
            }
            match mount.on {
                // `..` of `/` is `/`.
                None => return Ok(loc),
                // Leave through the mount point, then take its parent.
                Some(on) => loc = on,
            }
        }
    }

    /// Metadata of `loc`.
    pub fn stat(&self, loc: Loc) -> Result<Attr, Errno> {
        self.fs(loc).stat(loc.ino)
    }

    /// The inode `path` names, starting at `cwd` if it is relative (rules:
    /// [`path`]). `ENOTDIR` if a component before the last, or the last
    /// of a path ending in `/`, is not a directory.
    pub fn resolve(&self, cwd: Loc, path: &str) -> Result<Loc, Errno> {
        path::check(path)?;
        let mut loc = if path::is_absolute(path) {
            self.root()
        } else {
            cwd
        };
        let mut kind = Kind::Dir;
        for component in path::components(path) {
            if kind != Kind::Dir {
                return Err(ENOTDIR);
            }
            match component? {
                Component::Parent => loc = self.parent(loc)?,
                Component::Name(name) => {
                    let (ino, k) = self.fs(loc).lookup(loc.ino, name)?;
                    loc = self.enter(Loc {
                        mount: loc.mount,
                        ino,
                    });
                    kind = if loc.ino == ino { k } else { Kind::Dir };
                }
            }
        }
        if kind != Kind::Dir && path::wants_dir(path) {
            return Err(ENOTDIR);
        }
        Ok(loc)
    }

    /// The directory a path's last component is in, and that component.
    fn resolve_last<'p>(&self, cwd: Loc, path: &'p str) -> Result<Option<(Loc, &'p str)>, Errno> {
        match path::split_last(path)? {
            Last::Special => Ok(None),
            Last::Name { dir, name } => {
                let dir = if dir.is_empty() {
                    cwd
                } else {
                    self.resolve(cwd, dir)?
                };
                if self.stat(dir)?.kind != Kind::Dir {
                    return Err(ENOTDIR);
                }
                Ok(Some((dir, name)))
            }
        }
    }

    /// Opens `path` with `abi::open_flags`: `O_CREAT` makes a missing file
    /// (`EEXIST` with `O_EXCL` if it exists), `O_TRUNC` empties a file,
    /// `O_DIRECTORY` wants a directory (`ENOTDIR`). A directory opens only
    /// read-only and without `O_CREAT`/`O_TRUNC` (`EISDIR`). Unknown flags
    /// or access mode 3 are `EINVAL`.
    pub fn open(&self, cwd: Loc, path: &str, flags: u64) -> Result<Opened, Errno> {
        if flags & !O_KNOWN != 0 || flags & O_ACCMODE == O_ACCMODE {
            return Err(EINVAL);
        }
        let loc = match self.resolve(cwd, path) {
            Ok(loc) => {
                if flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL {
                    return Err(EEXIST);
                }
                loc
            }
            Err(abi::errno::ENOENT) if flags & O_CREAT != 0 => {
                let Some((dir, name)) = self.resolve_last(cwd, path)? else {
                    return Err(EISDIR);
                };
                if path::wants_dir(path) {
                    return Err(EISDIR);
                }
                let ino = self.fs(dir).create(dir.ino, name, Kind::File)?;
                Loc {
                    mount: dir.mount,
                    ino,
                }
            }
            Err(e) => return Err(e),
        };
        let fs = Arc::clone(self.fs(loc));
        let attr = fs.stat(loc.ino)?;
        match attr.kind {
            Kind::Dir => {
                if flags & O_ACCMODE != O_RDONLY || flags & (O_CREAT | O_TRUNC) != 0 {
                    return Err(EISDIR);
                }
            }
            Kind::File => {
                if flags & O_DIRECTORY != 0 {
                    return Err(ENOTDIR);
                }
                if flags & O_TRUNC != 0 && attr.size != 0 {
                    fs.truncate(loc.ino, 0)?;
                }
            }
        }
        Ok(Opened { fs, loc, attr })
    }

    /// Metadata of the inode at `path`.
    pub fn stat_path(&self, cwd: Loc, path: &str) -> Result<Attr, Errno> {
        let loc = self.resolve(cwd, path)?;
        self.stat(loc)
    }

    /// Creates the directory `path` (`EEXIST` if the name exists).
    pub fn mkdir(&self, cwd: Loc, path: &str) -> Result<Loc, Errno> {
        let Some((dir, name)) = self.resolve_last(cwd, path)? else {
            return Err(EEXIST);
        };
        let ino = self.fs(dir).create(dir.ino, name, Kind::Dir)?;
        Ok(Loc {
            mount: dir.mount,
            ino,
        })
    }

    /// The inode `name` in `dir` after mounts, refusing mount boundaries.
    fn unmounted(&self, dir: Loc, name: &str) -> Result<(), Errno> {
        let (ino, _) = self.fs(dir).lookup(dir.ino, name)?;
        if self.is_mount_boundary(Loc {
            mount: dir.mount,
            ino,
        }) {
            return Err(EBUSY);
        }
        Ok(())
    }

    /// Removes the empty directory `path`. `EINVAL` for a last component
    /// `.`, `ENOTEMPTY` for `..` (as Linux), `EBUSY` for `/` or a mount
    /// point.
    pub fn rmdir(&self, cwd: Loc, path: &str) -> Result<(), Errno> {
        let Some((dir, name)) = self.resolve_last(cwd, path)? else {
            let trimmed = path.trim_end_matches('/');
            return Err(if trimmed.is_empty() {
                EBUSY
            } else if trimmed.ends_with("..") {
                ENOTEMPTY
            } else {
                EINVAL
            });
        };
        self.unmounted(dir, name)?;
        self.fs(dir).rmdir(dir.ino, name)
    }

    /// Removes the file `path` (`EISDIR` for a directory).
    pub fn unlink(&self, cwd: Loc, path: &str) -> Result<(), Errno> {
        let Some((dir, name)) = self.resolve_last(cwd, path)? else {
            return Err(EISDIR);
        };
        if path::wants_dir(path) {
            // `unlink("file/")`: a file named with a trailing slash.
            let (_, kind) = self.fs(dir).lookup(dir.ino, name)?;
            return Err(if kind == Kind::Dir { EISDIR } else { ENOTDIR });
        }
        self.fs(dir).unlink(dir.ino, name)
    }

    /// Renames `old` to `new` (POSIX `rename`, see
    /// [`FileSystem::rename`]). `EXDEV` across file systems, `EBUSY` for a
    /// mount point, `EINVAL` if either ends in `.` or `..`.
    pub fn rename(&self, cwd: Loc, old: &str, new: &str) -> Result<(), Errno> {
        self.rename2(cwd, old, cwd, new)
    }

    /// [`Vfs::rename`] with each path relative to its own directory
    /// (`renameat`).
    pub fn rename2(&self, old_at: Loc, old: &str, new_at: Loc, new: &str) -> Result<(), Errno> {
        let (Some((odir, oname)), Some((ndir, nname))) = (
            self.resolve_last(old_at, old)?,
            self.resolve_last(new_at, new)?,
        ) else {
            return Err(EINVAL);
        };
        if odir.mount != ndir.mount {
            return Err(EXDEV);
        }
        self.unmounted(odir, oname)?;
        match self.unmounted(ndir, nname) {
            Ok(()) | Err(abi::errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        self.fs(odir).rename(odir.ino, oname, ndir.ino, nname)
    }
}

/// Where disks that hold a supported file system are mounted, given their
/// names in the order they were found: the disk `root` names (the `root=`
/// boot parameter) at `/disk`, the others in order at `/disk1`, `/disk2`,
/// ...; without `root` (or if it names none of them), the first found at
/// `/disk`. Returns `(index into found, mount point)` pairs.
pub fn disk_mount_points(found: &[&str], root: Option<&str>) -> Vec<(usize, String)> {
    let first = root
        .and_then(|name| found.iter().position(|d| *d == name))
        .unwrap_or(0);
    let order = core::iter::once(first).chain((0..found.len()).filter(|&i| i != first));
    order
        .take(found.len())
        .enumerate()
        .map(|(n, i)| {
            let path = if n == 0 {
                String::from("/disk")
            } else {
                alloc::format!("/disk{n}")
            };
            (i, path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RamFs;
    use abi::errno::{ENAMETOOLONG, ENOENT};
    use abi::open_flags::{O_RDWR, O_WRONLY};
    use abi::syscall::limits::PATH_MAX;

    fn two_mounts() -> (Vfs, Arc<RamFs>, Arc<RamFs>) {
        let root = Arc::new(RamFs::new());
        let disk = Arc::new(RamFs::new());
        let mut vfs = Vfs::new(root.clone());
        vfs.mkdir(vfs.root(), "/disk").unwrap();
        vfs.mount("/disk", disk.clone()).unwrap();
        (vfs, root, disk)
    }

    #[test]
    fn resolution_walks_directories() {
        let vfs = Vfs::new(Arc::new(RamFs::new()));
        let r = vfs.root();
        let a = vfs.mkdir(r, "a").unwrap();
        let b = vfs.mkdir(r, "/a/b").unwrap();
        let f = vfs.open(r, "a/b/f", O_CREAT | O_WRONLY).unwrap().loc;
        assert_eq!(vfs.resolve(r, "/a").unwrap(), a);
        assert_eq!(vfs.resolve(r, "//a//b/").unwrap(), b);
        assert_eq!(vfs.resolve(r, "/a/./b/../b/f").unwrap(), f);
        assert_eq!(vfs.resolve(b, "f").unwrap(), f);
        assert_eq!(vfs.resolve(b, "..").unwrap(), a);
        assert_eq!(vfs.resolve(b, "../../../..").unwrap(), r);
        assert_eq!(vfs.resolve(r, "/../..").unwrap(), r);
        assert_eq!(vfs.resolve(r, "/").unwrap(), r);
        assert_eq!(vfs.resolve(r, ".").unwrap(), r);
        // A file in the middle, or before a trailing slash.
        assert_eq!(vfs.resolve(r, "a/b/f/x"), Err(ENOTDIR));
        assert_eq!(vfs.resolve(r, "a/b/f/.."), Err(ENOTDIR));
        assert_eq!(vfs.resolve(r, "a/b/f/"), Err(ENOTDIR));
        assert_eq!(vfs.resolve(r, "a/missing/f"), Err(ENOENT));
        // Hostile paths.
        assert_eq!(vfs.resolve(r, ""), Err(ENOENT));
        assert_eq!(vfs.resolve(r, "a\0"), Err(EINVAL));
        let long = "x".repeat(NAME_MAX_PLUS);
        assert_eq!(vfs.resolve(r, &long), Err(ENAMETOOLONG));
        assert_eq!(
            vfs.open(r, &long, O_CREAT | O_RDWR).err(),
            Some(ENAMETOOLONG)
        );
        assert_eq!(vfs.mkdir(r, &long).err(), Some(ENAMETOOLONG));
        let slashes = "/".repeat(4096);
        assert_eq!(vfs.resolve(r, &slashes), Err(ENAMETOOLONG));
        assert_eq!(vfs.resolve(r, &slashes[..PATH_MAX]).unwrap(), r);
        let dots = "../".repeat(PATH_MAX / 3);
        assert_eq!(vfs.resolve(b, &dots).unwrap(), r);
    }

    const NAME_MAX_PLUS: usize = abi::syscall::limits::NAME_MAX + 1;

    #[test]
    fn open_flags_and_directories() {
        let vfs = Vfs::new(Arc::new(RamFs::new()));
        let r = vfs.root();
        vfs.mkdir(r, "d").unwrap();
        assert_eq!(vfs.mkdir(r, "d").err(), Some(EEXIST));
        assert_eq!(vfs.mkdir(r, "d/.").err(), Some(EEXIST));
        assert_eq!(vfs.mkdir(r, "/").err(), Some(EEXIST));
        assert_eq!(vfs.open(r, "d", O_RDONLY).unwrap().attr.kind, Kind::Dir);
        assert_eq!(
            vfs.open(r, "d", O_RDONLY | O_DIRECTORY).unwrap().attr.kind,
            Kind::Dir
        );
        assert_eq!(vfs.open(r, "d", O_RDWR).err(), Some(EISDIR));
        assert_eq!(vfs.open(r, "d", O_CREAT | O_RDONLY).err(), Some(EISDIR));
        assert_eq!(vfs.open(r, "d", O_CREAT | O_EXCL).err(), Some(EEXIST));
        assert_eq!(
            vfs.open(r, "d/new/", O_CREAT | O_WRONLY).err(),
            Some(EISDIR)
        );
        assert_eq!(vfs.open(r, "d/x/y", O_CREAT | O_WRONLY).err(), Some(ENOENT));
        let f = vfs.open(r, "d/f", O_CREAT | O_WRONLY).unwrap();
        f.fs.write_at(f.loc.ino, 0, b"hello").unwrap();
        assert_eq!(
            vfs.open(r, "d/f", O_RDONLY | O_DIRECTORY).err(),
            Some(ENOTDIR)
        );
        assert_eq!(
            vfs.open(r, "d/f/g", O_CREAT | O_WRONLY).err(),
            Some(ENOTDIR)
        );
        assert_eq!(vfs.open(r, "d/f", O_WRONLY | O_TRUNC).unwrap().attr.size, 5);
        assert_eq!(vfs.stat_path(r, "/d/f").unwrap().size, 0);
        assert_eq!(vfs.open(r, "d/f", 3).err(), Some(EINVAL));
        assert_eq!(vfs.open(r, "d/f", 1 << 40).err(), Some(EINVAL));
        // Unlink and rmdir keep to their kinds.
        assert_eq!(vfs.unlink(r, "d").err(), Some(EISDIR));
        assert_eq!(vfs.unlink(r, "d/f/").err(), Some(ENOTDIR));
        assert_eq!(vfs.rmdir(r, "d/f").err(), Some(ENOTDIR));
        assert_eq!(vfs.rmdir(r, "d").err(), Some(ENOTEMPTY));
        assert_eq!(vfs.rmdir(r, "d/.").err(), Some(EINVAL));
        assert_eq!(vfs.rmdir(r, "d/..").err(), Some(ENOTEMPTY));
        assert_eq!(vfs.rmdir(r, "/").err(), Some(EBUSY));
        vfs.unlink(r, "d/f").unwrap();
        vfs.rmdir(r, "d/").unwrap();
        assert_eq!(vfs.resolve(r, "d").err(), Some(ENOENT));
    }

    #[test]
    fn relative_to_other_directories() {
        let (vfs, _, disk) = two_mounts();
        let r = vfs.root();
        let a = vfs.mkdir(r, "/a").unwrap();
        let d = vfs.resolve(r, "/disk").unwrap();
        vfs.open(a, "f", O_CREAT | O_WRONLY).unwrap();
        assert!(vfs.resolve(r, "/a/f").is_ok());
        // Each path from its own directory; `..` out of a mount.
        vfs.mkdir(d, "sub").unwrap();
        vfs.rename2(a, "f", a, "../a/g").unwrap();
        assert_eq!(vfs.rename2(a, "g", d, "sub/g").err(), Some(EXDEV));
        vfs.rename2(d, "sub", d, "../disk/sub2").unwrap();
        assert!(disk.stat_path("/sub2").is_ok());
        assert_eq!(
            vfs.resolve(d, "../a/g").unwrap(),
            vfs.resolve(r, "/a/g").unwrap()
        );
        // An absolute path ignores where it starts.
        assert_eq!(vfs.resolve(d, "/a").unwrap(), a);
    }

    #[test]
    fn disks_are_mounted_at_disk_disk1() {
        assert!(disk_mount_points(&[], None).is_empty());
        assert!(disk_mount_points(&[], Some("vda")).is_empty());
        let found = ["nvme0n1", "vda", "vdb"];
        let plan = |root| disk_mount_points(&found, root);
        assert_eq!(
            plan(None),
            [
                (0, "/disk".into()),
                (1, "/disk1".into()),
                (2, "/disk2".into())
            ]
        );
        assert_eq!(
            plan(Some("vda")),
            [
                (1, String::from("/disk")),
                (0, "/disk1".into()),
                (2, "/disk2".into())
            ]
        );
        assert_eq!(
            plan(Some("sdz")),
            plan(None),
            "an unknown root= changes nothing"
        );
        // And they can be mounted there.
        let mut vfs = Vfs::new(Arc::new(RamFs::new()));
        for (_, at) in plan(Some("vdb")) {
            vfs.mount_new_dir(&at, Arc::new(RamFs::new())).unwrap();
        }
        assert_eq!(vfs.resolve(vfs.root(), "/disk2").unwrap().mount, 3);
        assert_eq!(
            vfs.mount_new_dir("/no/such", Arc::new(RamFs::new())).err(),
            Some(ENOENT)
        );
    }

    #[test]
    fn mount_points_are_crossed_both_ways() {
        let (vfs, root, disk) = two_mounts();
        let r = vfs.root();
        vfs.mkdir(r, "/disk/sub").unwrap();
        vfs.open(r, "/disk/sub/f", O_CREAT | O_WRONLY).unwrap();
        // The file is on the disk, not in the RAM file system.
        assert!(disk.lookup("sub/f").is_ok());
        assert_eq!(
            root.lookup("disk/sub/f").err(),
            Some(crate::fs::FsError::NotFound)
        );
        let d = vfs.resolve(r, "/disk").unwrap();
        assert_eq!(
            d,
            Loc {
                mount: 1,
                ino: disk.root()
            }
        );
        assert_eq!(vfs.resolve(d, "..").unwrap(), r);
        assert_eq!(vfs.resolve(r, "/disk/sub/../..").unwrap(), r);
        assert_eq!(
            vfs.resolve(r, "/disk/sub/../../disk/sub/f").unwrap().mount,
            1
        );
        assert_eq!(vfs.stat_path(r, "/disk").unwrap().kind, Kind::Dir);
        // Mount points cannot go away or move; renames do not cross.
        assert_eq!(vfs.rmdir(r, "/disk").err(), Some(EBUSY));
        assert_eq!(vfs.rename(r, "/disk", "/elsewhere").err(), Some(EBUSY));
        vfs.mkdir(r, "/empty").unwrap();
        assert_eq!(vfs.rename(r, "/empty", "/disk").err(), Some(EBUSY));
        vfs.mkdir(r, "/other").unwrap();
        assert_eq!(vfs.rename(r, "/other", "/disk/x").err(), Some(EXDEV));
        assert_eq!(vfs.rename(r, "/disk/sub/f", "/f").err(), Some(EXDEV));
        vfs.rename(r, "/disk/sub/f", "/disk/g").unwrap();
        assert!(disk.lookup("g").is_ok());
        // Mounting needs a directory that is not `/`.
        let mut vfs = vfs;
        vfs.open(r, "/file", O_CREAT | O_WRONLY).unwrap();
        assert_eq!(
            vfs.mount("/file", Arc::new(RamFs::new())).err(),
            Some(ENOTDIR)
        );
        assert_eq!(vfs.mount("/", Arc::new(RamFs::new())).err(), Some(EBUSY));
        assert_eq!(
            vfs.mount("/nowhere", Arc::new(RamFs::new())).err(),
            Some(ENOENT)
        );
        // A second disk at /disk1.
        vfs.mkdir(r, "/disk1").unwrap();
        let i = vfs.mount("/disk1", Arc::new(RamFs::new())).unwrap();
        assert_eq!(i, 2);
        assert_eq!(vfs.mounts()[2].path, "/disk1");
        assert_eq!(vfs.resolve(r, "/disk1/../disk/g").unwrap().mount, 1);
    }
}
