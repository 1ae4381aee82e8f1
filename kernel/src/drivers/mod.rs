//! Device drivers. Each probes the PCI functions it knows and returns the
//! devices it set up; [`probe_all`] runs them all once, in a fixed order.

pub mod nvme;
pub mod virtio_blk;

use alloc::sync::Arc;
use alloc::vec::Vec;
use kernel_core::block::BlockDevice;
use spin::Once;

static DISKS: Once<Vec<Arc<dyn BlockDevice>>> = Once::new();

/// Every disk, probed on the first call (after `arch::pci::init`); later
/// calls return the same devices.
pub fn probe_all() -> Vec<Arc<dyn BlockDevice>> {
    DISKS
        .call_once(|| {
            let mut disks = Vec::new();
            disks.extend(virtio_blk::probe());
            disks.extend(nvme::probe());
            disks
        })
        .clone()
}
