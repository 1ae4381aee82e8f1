//! `fswrite PATH CONTENT`: creates or truncates PATH, writes CONTENT and
//! fsyncs it. Exits 0 on success, 1 on any error, 2 on bad usage. Tests use
//! it to check that a file written by a child is seen by its parent.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use libuser::fs::File;
use libuser::{eprintln, Args, Errno};

libuser::entry!(main);

fn main(args: Args) -> i32 {
    let (Some(path), Some(content)) = (args.get_str(1), args.get(2)) else {
        eprintln!("usage: fswrite PATH CONTENT");
        return 2;
    };
    match write_synced(path, content) {
        Ok(()) => 0,
        Err(errno) => {
            eprintln!("fswrite: {path}: {errno}");
            1
        }
    }
}

fn write_synced(path: &str, content: &[u8]) -> Result<(), Errno> {
    let mut file = File::create(path)?;
    file.write_all(content)?;
    file.fsync()?;
    file.close()
}
