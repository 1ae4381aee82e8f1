//! The RAM file system through open/read/write/lseek/fstat/fsync/unlink.

use abi::errno::{EBADF, EEXIST, EINVAL, EMFILE, ENOENT};
use abi::open_flags::{O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
use abi::seek::{SEEK_CUR, SEEK_END, SEEK_SET};
use abi::syscall::limits::FDS_MAX;
use alloc::vec::Vec;
use libuser::fs::{self, File};
use libuser::test::{Case, TestResult};
use libuser::{check, check_eq, check_err, detail, process, sys};

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    ("file create/write/lseek/read back/fstat size", create_write_read),
    ("O_TRUNC empties an existing file", truncate),
    ("O_CREAT|O_EXCL on an existing file fails with EEXIST", exclusive),
    ("open of a missing file without O_CREAT fails with ENOENT", missing),
    ("open with unknown flags fails with EINVAL", unknown_flags),
    ("read on O_WRONLY and write on O_RDONLY fail with EBADF", access_modes),
    ("lseek to a negative offset or bad whence fails with EINVAL", bad_seeks),
    ("unlink then open fails with ENOENT", unlink_then_open),
    ("an unlinked but open file stays readable", unlinked_but_open),
    ("fsync of a written file succeeds", fsync),
    ("fd exhaustion fails with EMFILE, close recovers", fd_exhaustion),
    ("a file written by a child (fswrite) is read back by the parent", child_writes),
    ("read/write of many shapes (in a page, across pages, past 8 pages, unaligned) move the right bytes", transfer_shapes),
];

/// A file name that is unlinked when the case ends, however it ends.
pub struct Scratch(pub &'static str);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = sys::unlink(self.0);
    }
}

const DATA: &[u8] = b"hello, ram file system";

fn create_write_read() -> TestResult {
    let name = Scratch("t_basic");
    let mut file = File::open(name.0, O_RDWR | O_CREAT | O_TRUNC)?;
    check_eq!(file.write(DATA)?, DATA.len());
    check_eq!(file.stat()?.size, DATA.len() as u64);
    check_eq!(file.seek(0, SEEK_CUR)?, DATA.len() as u64);
    check_eq!(file.seek(7, SEEK_SET)?, 7);
    let mut buf = [0u8; 64];
    let n = file.read(&mut buf)?;
    check_eq!(&buf[..n], &DATA[7..]);
    check_eq!(file.read(&mut buf)?, 0);
    check_eq!(file.seek(-6, SEEK_END)?, DATA.len() as u64 - 6);
    let n = file.read(&mut buf)?;
    check_eq!(&buf[..n], &DATA[DATA.len() - 6..]);
    let ino = file.stat()?.ino;
    file.close()?;

    check_eq!(fs::read_to_vec(name.0)?, DATA);
    let again = File::open(name.0, O_RDONLY)?;
    check_eq!(
        again.stat()?,
        abi::FileStat {
            size: DATA.len() as u64,
            ino
        }
    );
    detail!("{} bytes, inode {ino}", DATA.len());
    Ok(())
}

fn truncate() -> TestResult {
    let name = Scratch("t_trunc");
    fs::write_file(name.0, DATA)?;
    let file = File::open(name.0, O_RDWR | O_TRUNC)?;
    check_eq!(file.stat()?.size, 0);
    check_eq!(fs::read_to_vec(name.0)?.len(), 0);
    Ok(())
}

fn exclusive() -> TestResult {
    let name = Scratch("t_excl");
    let first = File::open(name.0, O_RDWR | O_CREAT | O_EXCL)?;
    check_err!(File::open(name.0, O_RDWR | O_CREAT | O_EXCL), EEXIST);
    check_err!(
        File::open(name.0, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC),
        EEXIST
    );
    drop(first);
    check_err!(File::open(name.0, O_RDONLY | O_CREAT | O_EXCL), EEXIST);
    Ok(())
}

fn missing() -> TestResult {
    for flags in [O_RDONLY, O_WRONLY, O_RDWR, O_RDWR | O_TRUNC] {
        check_err!(
            File::open("t_no_such_file", flags),
            ENOENT,
            "open(flags {flags:#o})"
        );
    }
    check_err!(sys::unlink("t_no_such_file"), ENOENT);
    check_err!(File::open("", O_RDONLY | O_CREAT), ENOENT | EINVAL);
    Ok(())
}

fn unknown_flags() -> TestResult {
    let name = Scratch("t_flags");
    check_err!(File::open(name.0, O_RDWR | O_CREAT | (1 << 20)), EINVAL);
    check_err!(
        File::open(name.0, O_CREAT | abi::open_flags::O_ACCMODE),
        EINVAL
    );
    check_err!(File::open(name.0, O_RDONLY), ENOENT);
    Ok(())
}

fn access_modes() -> TestResult {
    let name = Scratch("t_modes");
    fs::write_file(name.0, DATA)?;
    let mut write_only = File::open(name.0, O_WRONLY)?;
    check_err!(write_only.read(&mut [0u8; 8]), EBADF);
    check_eq!(write_only.write(b"HELLO")?, 5);
    let mut read_only = File::open(name.0, O_RDONLY)?;
    check_err!(read_only.write(b"x"), EBADF);
    let mut buf = [0u8; 5];
    check_eq!(read_only.read(&mut buf)?, 5);
    check_eq!(&buf, b"HELLO");
    check_eq!(read_only.stat()?.size, DATA.len() as u64);
    Ok(())
}

fn bad_seeks() -> TestResult {
    let name = Scratch("t_seek");
    fs::write_file(name.0, DATA)?;
    let mut file = File::open(name.0, O_RDONLY)?;
    check_eq!(file.seek(3, SEEK_SET)?, 3);
    check_err!(file.seek(-1, SEEK_SET), EINVAL);
    check_err!(file.seek(-4, SEEK_CUR), EINVAL);
    check_err!(file.seek(-(DATA.len() as i64) - 1, SEEK_END), EINVAL);
    check_err!(file.seek(0, 3), EINVAL);
    check_err!(file.seek(0, u64::MAX), EINVAL);
    check_eq!(file.seek(0, SEEK_CUR)?, 3);
    Ok(())
}

fn unlink_then_open() -> TestResult {
    let name = Scratch("t_unlink");
    fs::write_file(name.0, DATA)?;
    sys::unlink(name.0)?;
    check_err!(File::open(name.0, O_RDONLY), ENOENT);
    check_err!(sys::unlink(name.0), ENOENT);
    // The name is free again: O_EXCL creates a new, empty file.
    let fresh = File::open(name.0, O_RDWR | O_CREAT | O_EXCL)?;
    check_eq!(fresh.stat()?.size, 0);
    Ok(())
}

fn unlinked_but_open() -> TestResult {
    let name = Scratch("t_orphan");
    let mut file = File::open(name.0, O_RDWR | O_CREAT | O_TRUNC)?;
    file.write_all(DATA)?;
    let mut reader = File::open(name.0, O_RDONLY)?;
    sys::unlink(name.0)?;
    check_err!(File::open(name.0, O_RDONLY), ENOENT);

    let mut back = Vec::new();
    reader.read_to_end(&mut back)?;
    check_eq!(back, DATA);
    file.write_all(b"!")?;
    check_eq!(reader.stat()?.size, DATA.len() as u64 + 1);
    check_eq!(file.seek(0, SEEK_SET)?, 0);
    back.clear();
    file.read_to_end(&mut back)?;
    check_eq!(back.len(), DATA.len() + 1);
    Ok(())
}

fn fsync() -> TestResult {
    let name = Scratch("t_fsync");
    let mut file = File::create(name.0)?;
    file.write_all(DATA)?;
    file.fsync()?;
    file.fsync()?;
    check_eq!(file.stat()?.size, DATA.len() as u64);
    Ok(())
}

fn fd_exhaustion() -> TestResult {
    let name = Scratch("t_fds");
    fs::write_file(name.0, DATA)?;
    let mut files = Vec::new();
    let errno = loop {
        match File::open(name.0, O_RDONLY) {
            Ok(file) => files.push(file),
            Err(errno) => break errno,
        }
        check!(
            files.len() <= FDS_MAX,
            "opened more than FDS_MAX = {FDS_MAX} files"
        );
    };
    detail!(
        "{} files open besides stdin/stdout/stderr, then {errno}",
        files.len()
    );
    check_eq!(errno, EMFILE);
    check_eq!(files.len() + 3, FDS_MAX);

    let freed = files.pop().map(|file| file.fd());
    let reopened = File::open(name.0, O_RDONLY)?;
    check_eq!(Some(reopened.fd()), freed);
    check_err!(File::open(name.0, O_RDONLY), EMFILE);
    drop(files);
    let mut file = File::open(name.0, O_RDONLY)?;
    check_eq!(fs::read_to_vec(name.0)?, DATA);
    check!(file.read(&mut [0u8; 4])? == 4);
    Ok(())
}

fn child_writes() -> TestResult {
    let name = Scratch("t_child");
    let content = "written by a child process";
    let status = process::run("fswrite", &["fswrite", name.0, content])?;
    check_eq!(status, 0);
    check_eq!(fs::read_to_vec(name.0)?, content.as_bytes());
    Ok(())
}

/// The user-copy paths a RAM file transfer takes by shape (through the
/// syscalls, or the ring in the ring modes): a range inside
/// one page (whole words at an aligned address, or not), across two pages,
/// across more than the 8 pages translated inline, and short at the end of
/// the file. Each copy must move exactly its bytes: the guard bytes around
/// the buffer stay as they were.
fn transfer_shapes() -> TestResult {
    const SIZE: usize = 40 * 1024 + 100;
    const PAGE: usize = 4096;
    const GUARD: usize = 16;
    let name = Scratch("t_shapes");
    let mut file = File::open(name.0, O_RDWR | O_CREAT | O_TRUNC)?;
    let pattern: Vec<u8> = (0..SIZE).map(|i| (i * 7 + i / 251) as u8).collect();
    check_eq!(file.write(&pattern)?, SIZE);
    // (file offset, where in a page the buffer starts, length)
    let shapes: &[(usize, usize, usize)] = &[
        (0, 0, PAGE),
        (PAGE, 0, 8),
        (5, 0, PAGE),
        (0, 8, PAGE - 8),
        (0, 3, 100),
        (7, PAGE - 5, 10),
        (100, 1, 3 * PAGE),
        (0, 0, 10 * PAGE),
        (11, 9, 10 * PAGE + 3),
        (SIZE - 50, 0, PAGE),
        (SIZE - 50, 17, 12 * PAGE),
        (SIZE, 0, 16),
    ];
    let mut buf = alloc::vec![0u8; 14 * PAGE];
    let page0 = buf.as_ptr().align_offset(PAGE);
    for &(offset, in_page, len) in shapes {
        let at = page0 + in_page;
        let expect = len.min(SIZE - offset);
        buf.fill(0xa5);
        file.seek(offset as i64, SEEK_SET)?;
        let n = file.read(&mut buf[at..at + len])?;
        check!(
            n == expect,
            "read of {len} at {offset} (page + {in_page}) gave {n}"
        );
        check!(
            buf[at..at + n] == pattern[offset..offset + n],
            "read of {len} at {offset} (page + {in_page}): wrong bytes"
        );
        check!(
            buf[at - GUARD.min(at)..at].iter().all(|&b| b == 0xa5)
                && buf[at + n..at + len + GUARD].iter().all(|&b| b == 0xa5),
            "read of {len} at {offset} (page + {in_page}) wrote outside its bytes"
        );
    }
    // Writes of the same shapes, each of bytes of its own, read back.
    for (k, &(offset, in_page, len)) in shapes.iter().enumerate() {
        let at = page0 + in_page;
        for (i, b) in buf[at..at + len].iter_mut().enumerate() {
            *b = (i + 31 * k) as u8;
        }
        file.seek(offset as i64, SEEK_SET)?;
        check_eq!(file.write(&buf[at..at + len])?, len);
        let mut back = alloc::vec![0u8; len];
        file.seek(offset as i64, SEEK_SET)?;
        check_eq!(file.read(&mut back)?, len);
        check!(
            back[..] == buf[at..at + len],
            "write of {len} at {offset} (page + {in_page}) read back wrong"
        );
    }
    detail!("{} shapes read and written", shapes.len());
    Ok(())
}
