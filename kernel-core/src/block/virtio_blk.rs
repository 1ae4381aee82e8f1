//! virtio-blk logic that needs no device: feature negotiation, the
//! device configuration turned into a [`Geometry`], request headers, and
//! device names. The kernel's `drivers::virtio_blk` reads the registers
//! and hands the values here; every value is device-provided and checked.

use super::{BlockOp, Geometry, PAGE_SIZE};
use alloc::string::String;

/// Feature bits (virtio 1.0 sections 5.2.3 and 6).
pub mod feature {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const MQ: u64 = 1 << 12;
    pub const VERSION_1: u64 = 1 << 32;
}

/// Device status bits (virtio 1.0 section 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    pub const FAILED: u8 = 128;
}

/// Request types.
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
/// Request status the device writes: success.
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;
/// Bytes of a request header.
pub const HEADER_LEN: usize = 16;
/// What an MSI-X vector register reads when no vector is assigned.
pub const NO_VECTOR: u16 = 0xFFFF;

/// Most segments per request this driver uses (bounds the descriptors a
/// request takes).
pub const MAX_SEGMENTS: u32 = 128;
/// Largest queue this driver sets up.
pub const MAX_QUEUE: u16 = 256;

/// The features the driver accepts from `offered`: `VERSION_1` (required:
/// this is a modern-only driver), `FLUSH`, `SEG_MAX`, `SIZE_MAX`,
/// `BLK_SIZE`, `MQ`, `RO`. `None` without `VERSION_1`.
pub fn negotiate(offered: u64) -> Option<u64> {
    use feature::*;
    if offered & VERSION_1 == 0 {
        return None;
    }
    Some(offered & (VERSION_1 | FLUSH | SEG_MAX | SIZE_MAX | BLK_SIZE | MQ | RO))
}

/// The device configuration fields the driver reads (valid only for the
/// features negotiated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    pub size_max: u32,
    pub seg_max: u32,
    pub blk_size: u32,
    pub num_queues: u16,
}

/// Why a device was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `size_max` is smaller than a page: page-sized segments would be
    /// refused.
    SegmentTooSmall(u32),
    /// The queue cannot hold one request (header, one segment, status).
    QueueTooSmall(u16),
}

/// The geometry of a device with `features` negotiated, `config` read, and
/// queues of `queue_size` entries, `queues` of them.
pub fn geometry(
    features: u64,
    config: &Config,
    queue_size: u16,
    queues: u16,
) -> Result<Geometry, ConfigError> {
    if queue_size < 3 {
        return Err(ConfigError::QueueTooSmall(queue_size));
    }
    if features & feature::SIZE_MAX != 0
        && config.size_max != 0
        && u64::from(config.size_max) < PAGE_SIZE
    {
        return Err(ConfigError::SegmentTooSmall(config.size_max));
    }
    let block_size = if features & feature::BLK_SIZE != 0
        && config.blk_size.is_power_of_two()
        && (512..=PAGE_SIZE as u32).contains(&config.blk_size)
    {
        config.blk_size
    } else {
        512
    };
    let mut segments = MAX_SEGMENTS.min(u32::from(queue_size) - 2);
    if features & feature::SEG_MAX != 0 && config.seg_max != 0 {
        segments = segments.min(config.seg_max);
    }
    let max_transfer = segments * PAGE_SIZE as u32;
    Ok(Geometry {
        block_size,
        blocks: config.capacity / u64::from(block_size / 512),
        max_transfer,
        max_segments: segments as u16,
        queues: queues.max(1),
        // Each request of one segment takes three descriptors.
        queue_depth: (queue_size / 3).max(1),
        volatile_cache: features & feature::FLUSH != 0,
    })
}

/// The 16-byte request header: type, reserved, sector in 512-byte units
/// (whatever the block size). `block` is in units of `block_size`.
pub fn header(op: BlockOp, block: u64, block_size: u32) -> [u8; HEADER_LEN] {
    let kind = match op {
        BlockOp::Read => T_IN,
        BlockOp::Write => T_OUT,
        BlockOp::Flush => T_FLUSH,
    };
    let sector = match op {
        BlockOp::Flush => 0,
        _ => block.saturating_mul(u64::from(block_size / 512)),
    };
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// The name of the `index`th virtio disk: `vda`..`vdz`, `vdaa`, ...
pub fn name(index: usize) -> String {
    let mut letters = alloc::vec::Vec::new();
    let mut n = index;
    loop {
        letters.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    letters.reverse();
    let mut s = String::from("vd");
    s.extend(letters.iter().map(|&b| char::from(b)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_needs_version_1_and_drops_unknown_bits() {
        assert_eq!(negotiate(feature::FLUSH), None);
        let offered = feature::VERSION_1 | feature::FLUSH | feature::MQ | (1 << 13) | (1 << 28);
        assert_eq!(
            negotiate(offered),
            Some(feature::VERSION_1 | feature::FLUSH | feature::MQ)
        );
    }

    #[test]
    fn geometry_from_config() {
        let f = feature::VERSION_1 | feature::FLUSH | feature::SEG_MAX | feature::BLK_SIZE;
        let c = Config {
            capacity: 131072,
            seg_max: 254,
            blk_size: 4096,
            ..Config::default()
        };
        let g = geometry(f, &c, 256, 2).unwrap();
        assert_eq!(g.block_size, 4096);
        assert_eq!(g.blocks, 16384);
        assert_eq!(g.max_segments, 128);
        assert_eq!(g.max_transfer, 128 * 4096);
        assert_eq!(g.queues, 2);
        assert_eq!(g.queue_depth, 85);
        assert!(g.volatile_cache);
        // Without BLK_SIZE the size is 512 whatever the field says; a
        // small seg_max and queue bound the segments.
        let g = geometry(feature::VERSION_1 | feature::SEG_MAX, &c, 8, 1).unwrap();
        assert_eq!((g.block_size, g.blocks), (512, 131072));
        assert_eq!(g.max_segments, 6);
        assert!(!g.volatile_cache);
        // Nonsense block sizes fall back to 512.
        for bad in [0, 3, 256, 8192, u32::MAX] {
            let c = Config { blk_size: bad, ..c };
            assert_eq!(geometry(f, &c, 256, 1).unwrap().block_size, 512);
        }
        assert_eq!(
            geometry(
                f | feature::SIZE_MAX,
                &Config { size_max: 512, ..c },
                256,
                1
            ),
            Err(ConfigError::SegmentTooSmall(512))
        );
        assert_eq!(geometry(f, &c, 2, 1), Err(ConfigError::QueueTooSmall(2)));
    }

    #[test]
    fn headers() {
        let h = header(BlockOp::Write, 3, 4096);
        assert_eq!(&h[..4], &T_OUT.to_le_bytes());
        assert_eq!(&h[8..], &24u64.to_le_bytes());
        let h = header(BlockOp::Read, 7, 512);
        assert_eq!(&h[..4], &T_IN.to_le_bytes());
        assert_eq!(&h[8..], &7u64.to_le_bytes());
        let h = header(BlockOp::Flush, 0, 512);
        assert_eq!(&h[..4], &T_FLUSH.to_le_bytes());
    }

    #[test]
    fn names() {
        assert_eq!(name(0), "vda");
        assert_eq!(name(1), "vdb");
        assert_eq!(name(25), "vdz");
        assert_eq!(name(26), "vdaa");
        assert_eq!(name(27), "vdab");
        assert_eq!(name(26 + 26 * 26), "vdaaa");
    }
}
