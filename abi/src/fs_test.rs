//! The files of the two-boot test of the disk file system (`fs_tests
//! persist-write` / `persist-read`, checked by the runner's `persist`
//! test), shared by the guest program and the host runner, which puts
//! [`HOST_FILE`] into the image before the first boot and reads the
//! [`PERSIST_FILES`] out of it after the second.

/// The file the host writes into the image's root with `debugfs -w`.
pub const HOST_FILE: &str = "from_host.txt";
/// Its length: not a multiple of any block size.
pub const HOST_FILE_LEN: usize = 70_001;
/// The directory (under the disk's root) the guest writes into.
pub const PERSIST_DIR: &str = "persist";
/// Files the first boot writes (path under the disk's root, length), all
/// with [`content_byte`]`(index, offset)`. The first boot writes the one
/// at index 3 under another name and renames it.
pub const PERSIST_FILES: [(&str, usize); 5] = [
    ("persist/small.txt", 13),
    ("persist/sub/medium.bin", 300_000),
    ("persist/empty", 0),
    ("persist/sub/deeper/renamed.bin", 5_000),
    ("persist/big.bin", 3 << 20),
];
/// What index 3 is written as before the rename.
pub const RENAMED_FROM: &str = "persist/before-rename.bin";
/// A file the first boot writes and unlinks: absent afterwards.
pub const UNLINKED: &str = "persist/unlinked";

/// Byte `offset` of the host's file.
pub fn host_byte(offset: usize) -> u8 {
    content_byte(0x40, offset)
}

/// Byte `offset` of the file with index `index` (of [`PERSIST_FILES`]).
pub fn content_byte(index: usize, offset: usize) -> u8 {
    let x = (offset as u64).wrapping_mul(0x2545_F491) ^ (index as u64).wrapping_mul(0x9E37_79B9);
    (x ^ (x >> 11) ^ (x >> 23)) as u8
}

/// The index of the first byte of `data` that differs from `byte(offset)`,
/// or `None` if all agree.
pub fn mismatch(data: &[u8], byte: impl Fn(usize) -> u8) -> Option<usize> {
    data.iter().enumerate().position(|(i, &b)| b != byte(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_differ_between_files_and_offsets() {
        assert!(
            mismatch(&[content_byte(1, 0), content_byte(1, 1)], |i| content_byte(
                1, i
            ))
            .is_none()
        );
        assert_eq!(
            mismatch(&[content_byte(1, 0), 0x5a ^ content_byte(1, 1)], |i| {
                content_byte(1, i)
            }),
            Some(1)
        );
        let a: std::vec::Vec<u8> = (0..64).map(|i| content_byte(0, i)).collect();
        let b: std::vec::Vec<u8> = (0..64).map(|i| content_byte(1, i)).collect();
        assert_ne!(a, b);
        assert!(a.iter().collect::<std::collections::BTreeSet<_>>().len() > 32);
    }
}
