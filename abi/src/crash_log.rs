//! The record format of the crash test (`cargo xtask crashtest`), shared by
//! the guest programs that write and check `/disk/crash.log`
//! (`crashwriter`, `crashcheck`) and the runner that reads the same file
//! out of the image on the host (`debugfs -R "cat /crash.log"`).
//!
//! The file is a sequence of records numbered 1, 2, 3, ... Record `n` is
//! [`len`]`(n)` bytes (64 to 512, varying so records straddle file-system
//! blocks at different places):
//!
//! | bytes | what |
//! |---|---|
//! | 0..4 | [`MAGIC`] |
//! | 4..8 | `n`, little endian |
//! | 8..12 | `len(n)`, little endian |
//! | 12..len-4 | [`payload_byte`]`(n, i)` for byte `i` of the record |
//! | len-4..len | FNV-1a 32 of bytes `0..len-4`, little endian |
//!
//! The writer appends one record per `write`, fsyncs, and only then
//! reports the record durable. After a power cut every record up to the
//! last one reported must be intact; after the intact records at most one
//! record's worth of bytes (the write that was not yet fsynced) may follow,
//! torn or zero: [`check`] counts the intact prefix and measures that tail.

/// First four bytes of every record.
pub const MAGIC: [u8; 4] = *b"REC1";
/// Smallest and largest record.
pub const MIN_LEN: usize = 64;
pub const MAX_LEN: usize = 512;
/// The file's name inside the mounted disk.
pub const FILE_NAME: &str = "crash.log";
/// The state file: every [`STATE_EVERY`]th record the writer also replaces
/// it atomically (write [`STATE_TMP`], fsync, rename over it, fsync the
/// directory) with a copy of that record, before reporting the record
/// durable. After a power cut it must be one intact record, never torn,
/// and at least the last one reported.
pub const STATE_NAME: &str = "crash.state";
pub const STATE_TMP: &str = "crash.state.tmp";
pub const STATE_EVERY: u32 = 8;

/// The record a state file holds, if it is exactly one intact record.
pub fn state_record(file: &[u8]) -> Option<u32> {
    let n = u32::from_le_bytes(file.get(4..8)?.try_into().ok()?);
    (n > 0 && file.len() == len(n) && is_record(n, file)).then_some(n)
}

/// The state the checker must find at least, once record `durable` was
/// reported durable: the last multiple of [`STATE_EVERY`] up to it.
pub fn min_state(durable: u32) -> u32 {
    durable - durable % STATE_EVERY
}

/// The length of record `n`.
pub fn len(n: u32) -> usize {
    MIN_LEN + (n as usize).wrapping_mul(97) % (MAX_LEN - MIN_LEN + 1)
}

/// The byte at offset `i` (12..len-4) of record `n`.
pub fn payload_byte(n: u32, i: usize) -> u8 {
    let x = (n as u64).wrapping_mul(0x9E37_79B9) ^ (i as u64).wrapping_mul(0x85EB_CA6B);
    (x ^ (x >> 13) ^ (x >> 29)) as u8
}

/// FNV-1a, 32 bits.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= b as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Writes record `n` into `out[..len(n)]`; returns its length. `out` must
/// hold at least [`MAX_LEN`] bytes.
pub fn encode(n: u32, out: &mut [u8]) -> usize {
    let len = len(n);
    let rec = &mut out[..len];
    rec[0..4].copy_from_slice(&MAGIC);
    rec[4..8].copy_from_slice(&n.to_le_bytes());
    rec[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    for (i, b) in rec[12..len - 4].iter_mut().enumerate() {
        *b = payload_byte(n, i + 12);
    }
    let sum = fnv1a32(&rec[..len - 4]);
    rec[len - 4..].copy_from_slice(&sum.to_le_bytes());
    len
}

/// Whether `bytes` starts with an intact record `n`.
pub fn is_record(n: u32, bytes: &[u8]) -> bool {
    let len = len(n);
    if bytes.len() < len {
        return false;
    }
    let rec = &bytes[..len];
    let word = |at: usize| u32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
    rec[0..4] == MAGIC
        && word(4) == n
        && word(8) as usize == len
        && word(len - 4) == fnv1a32(&rec[..len - 4])
        && rec[12..len - 4]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == payload_byte(n, i + 12))
}

/// What [`check`] found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Intact records 1..=records at the start of the file.
    pub records: u32,
    /// Bytes those records take.
    pub intact_bytes: u64,
    /// Bytes after them (a torn or zero-filled last write).
    pub tail: u64,
}

impl Checked {
    /// Whether the tail is at most the one record that may have been in
    /// flight: record `records + 1`.
    pub fn tail_ok(&self) -> bool {
        self.tail <= len(self.records.wrapping_add(1)) as u64
    }
}

/// Counts the intact records at the start of `file` and the bytes after
/// them.
pub fn check(file: &[u8]) -> Checked {
    let mut scan = Scan::new();
    scan.feed(file);
    scan.finish()
}

/// [`check`] for a file read in pieces, with memory for one record only
/// (user programs have a small heap).
#[derive(Debug, Clone)]
pub struct Scan {
    /// The bytes of the record being assembled.
    pending: [u8; MAX_LEN],
    pending_len: usize,
    records: u32,
    intact_bytes: u64,
    /// Set at the first record that is not intact: every byte from there
    /// on is tail.
    broken_tail: Option<u64>,
}

impl Default for Scan {
    fn default() -> Self {
        Scan::new()
    }
}

impl Scan {
    pub fn new() -> Scan {
        Scan {
            pending: [0; MAX_LEN],
            pending_len: 0,
            records: 0,
            intact_bytes: 0,
            broken_tail: None,
        }
    }

    /// The next bytes of the file.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if let Some(tail) = &mut self.broken_tail {
                *tail += bytes.len() as u64;
                return;
            }
            let next = self.records.wrapping_add(1);
            let want = len(next);
            let take = (want - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < want {
                return;
            }
            if self.records < u32::MAX && is_record(next, &self.pending[..want]) {
                self.records = next;
                self.intact_bytes += want as u64;
                self.pending_len = 0;
            } else {
                self.broken_tail = Some(want as u64);
                self.pending_len = 0;
            }
        }
    }

    /// What the bytes fed so far hold.
    pub fn finish(&self) -> Checked {
        Checked {
            records: self.records,
            intact_bytes: self.intact_bytes,
            tail: self.broken_tail.unwrap_or(self.pending_len as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: u32) -> std::vec::Vec<u8> {
        let mut out = std::vec::Vec::new();
        let mut buf = [0u8; MAX_LEN];
        for n in 1..=records {
            let len = encode(n, &mut buf);
            out.extend_from_slice(&buf[..len]);
        }
        out
    }

    #[test]
    fn lengths_vary_within_bounds() {
        let lens: std::vec::Vec<usize> = (1..200).map(len).collect();
        assert!(lens.iter().all(|&l| (MIN_LEN..=MAX_LEN).contains(&l)));
        assert!(
            lens.iter().any(|&l| l % 4 != 0),
            "some records are odd sizes"
        );
        assert!(lens.iter().collect::<std::collections::BTreeSet<_>>().len() > 100);
    }

    #[test]
    fn intact_records_are_counted_and_the_tail_measured() {
        let whole = file(50);
        assert_eq!(
            check(&whole),
            Checked {
                records: 50,
                intact_bytes: whole.len() as u64,
                tail: 0
            }
        );
        assert!(check(&whole).tail_ok());
        assert_eq!(check(&[]).records, 0);
        // A torn last record.
        let mut torn = file(51);
        torn.truncate(torn.len() - 3);
        let got = check(&torn);
        assert_eq!((got.records, got.tail), (50, len(51) as u64 - 3));
        assert!(got.tail_ok());
        // A zero-filled last record (size committed, data not).
        let mut zeroed = file(51);
        let at = whole.len();
        zeroed[at..].fill(0);
        assert_eq!(check(&zeroed).records, 50);
        assert!(check(&zeroed).tail_ok());
        // One flipped byte in record 10 ends the intact prefix there, and
        // the tail is then far too long.
        let mut bad = file(50);
        let at10: usize = (1..10).map(len).sum::<usize>() + 20;
        bad[at10] ^= 1;
        let got = check(&bad);
        assert_eq!(got.records, 9);
        assert!(!got.tail_ok());
        // A record out of order is not intact either.
        let mut buf = [0u8; MAX_LEN];
        let len2 = encode(2, &mut buf);
        assert!(!is_record(1, &buf[..len2]));
    }

    #[test]
    fn state_files() {
        let mut buf = [0u8; MAX_LEN];
        let l = encode(16, &mut buf);
        assert_eq!(state_record(&buf[..l]), Some(16));
        assert_eq!(state_record(&buf[..l - 1]), None);
        let mut longer = buf[..l].to_vec();
        longer.push(0);
        assert_eq!(state_record(&longer), None);
        buf[20] ^= 1;
        assert_eq!(state_record(&buf[..l]), None);
        assert_eq!(state_record(&[]), None);
        assert_eq!((min_state(7), min_state(8), min_state(23)), (0, 8, 16));
    }

    #[test]
    fn scanning_in_pieces_agrees_with_the_whole() {
        let mut torn = file(60);
        torn.truncate(torn.len() - 100);
        let mut bad = file(60);
        bad[5000] ^= 0x80;
        for data in [file(60), torn, bad, std::vec::Vec::new()] {
            let whole = check(&data);
            for piece in [1usize, 7, 64, 511, 4096] {
                let mut scan = Scan::new();
                for chunk in data.chunks(piece) {
                    scan.feed(chunk);
                }
                assert_eq!(scan.finish(), whole, "pieces of {piece}");
            }
        }
    }
}
