//! virtio-blk over the modern (virtio 1.0) PCI transport.
//!
//! Finds every function with vendor 0x1af4 and device 0x1042 (modern) or
//! 0x1001 (transitional, used only through its modern capabilities),
//! negotiates `VERSION_1` plus `FLUSH`, `SEG_MAX`, `SIZE_MAX`, `BLK_SIZE`
//! and `MQ` as offered, and sets up one split virtqueue per CPU (up to the
//! device's `num_queues`), each with its own MSI-X vector aimed at its CPU,
//! plus a configuration-change vector. Requests are chains of a header,
//! the data segments and a status byte (`kernel_core::block::virtq`), many in flight per queue,
//! completed in whatever order the device finishes them. Without MSI-X the
//! queues are polled ([`QueueMode::Polled`]).
//!
//! Why not the `virtio-drivers` crate: its virtio-blk has a fixed 16-entry
//! queue and a single queue, never programs MSI-X vectors (legacy INTx
//! only), and its `flush` blocks until the device answers, which cannot
//! sit behind an asynchronous ring; mixing its blocking and non-blocking
//! calls on one device also fails (see /work/shared/notes).
//!
//! Trust: the device writes the used ring, the status bytes and its
//! configuration. Used ids and indices are checked by `SplitQueue` (a bad
//! one marks the device dead), a status byte other than OK fails its
//! request with `EIO` and a log line, and a device that sets
//! `DEVICE_NEEDS_RESET` (seen at its configuration interrupt) is marked
//! dead: every request in flight completes with `EIO`, new ones are
//! refused with `EIO`.
//!
//! Not done: request timeouts (a device that never answers leaves its
//! requests in flight), resetting and reusing a dead device, discard and
//! write-zeroes, indirect descriptors, event-index interrupt suppression.

use crate::arch::irq;
use crate::arch::pci::{self, Mmio, Msix, PciFunction};
use crate::mm::dma::DmaBuffer;
use abi::errno::{Errno, EAGAIN, EINVAL, EIO};
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel_core::block::virtio_blk::{self as logic, feature, status};
use kernel_core::block::virtq::{self, Buffer, QueueMemory, SplitQueue};
use kernel_core::block::{
    BlockDevice, BlockOp, BlockRequest, Completion, Geometry, InterruptHook, QueueMode,
};
use spin::{Mutex, RwLock};
use x86_64::instructions::interrupts::without_interrupts;

const VENDOR: u16 = 0x1af4;
const DEVICE_MODERN: u16 = 0x1042;
const DEVICE_TRANSITIONAL: u16 = 0x1001;

/// virtio PCI capability types.
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_DEVICE: u8 = 4;

/// Common configuration registers.
mod common {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0C;
    pub const MSIX_CONFIG: usize = 0x10;
    pub const NUM_QUEUES: usize = 0x12;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const CONFIG_GENERATION: usize = 0x15;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_MSIX_VECTOR: usize = 0x1A;
    pub const QUEUE_ENABLE: usize = 0x1C;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1E;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
    /// Bytes of the structure.
    pub const LEN: usize = 0x38;
}

/// Device configuration fields (virtio-blk).
mod config {
    pub const CAPACITY: usize = 0;
    pub const SIZE_MAX: usize = 8;
    pub const SEG_MAX: usize = 12;
    pub const BLK_SIZE: usize = 20;
    pub const NUM_QUEUES: usize = 34;
}

impl QueueMemory for DmaBuffer {
    fn read_u16(&self, off: usize) -> u16 {
        DmaBuffer::read_u16(self, off)
    }
    fn read_u32(&self, off: usize) -> u32 {
        DmaBuffer::read_u32(self, off)
    }
    fn write_u16(&self, off: usize, value: u16) {
        DmaBuffer::write_u16(self, off, value)
    }
    fn write_u32(&self, off: usize, value: u32) {
        DmaBuffer::write_u32(self, off, value)
    }
    fn write_u64(&self, off: usize, value: u64) {
        DmaBuffer::write_u64(self, off, value)
    }
}

/// One virtqueue with its request slots.
struct Queue {
    state: Mutex<QueueState>,
    /// Byte offset of this queue's doorbell in the notify window.
    notify_at: usize,
    mode: QueueMode,
}

struct QueueState {
    ring: DmaBuffer,
    queue: SplitQueue,
    /// Per head descriptor: a 16-byte header at `16 * head`, and a status
    /// byte at `status_base + head`.
    slots: DmaBuffer,
    status_base: usize,
}

/// A virtio block device.
pub struct VirtioBlk {
    name: String,
    pci: String,
    common: Mmio,
    notify: Mmio,
    geometry: Geometry,
    queues: Vec<Queue>,
    hook: RwLock<Option<InterruptHook>>,
    dead: AtomicBool,
    /// The MSI-X table, when the queues interrupt.
    msix: Option<Msix>,
    /// The CPU vectors of MSI-X entries 0 (configuration), 1 + q (queue q).
    vectors: Option<Vectors>,
}

/// Sets up every virtio-blk function, naming them `vda`, `vdb`, ... in PCI
/// order. A device that cannot be set up is logged and skipped (it keeps
/// its name slot, so names follow PCI order).
pub fn probe() -> Vec<Arc<dyn BlockDevice>> {
    let mut devices: Vec<Arc<dyn BlockDevice>> = Vec::new();
    let candidates = pci::functions().iter().filter(|f| {
        f.vendor_id == VENDOR
            && (f.device_id == DEVICE_MODERN || f.device_id == DEVICE_TRANSITIONAL)
    });
    for (index, function) in candidates.enumerate() {
        let name = logic::name(index);
        match VirtioBlk::new(function, name.clone()) {
            Ok(device) => devices.push(device),
            Err(e) => log::error!("{name}: virtio-blk at {} not usable: {e}", function.name()),
        }
    }
    devices
}

/// The first capability of virtio `cfg_type`: (BAR, offset, length, cap
/// offset in config space).
fn virtio_cap(function: &PciFunction, cfg_type: u8) -> Option<(usize, u32, u32, u16)> {
    function
        .capabilities()
        .into_iter()
        .filter(|&(id, _)| id == pci::cap::VENDOR)
        .find_map(|(_, at)| {
            (function.read_config_u8(at + 3) == cfg_type).then(|| {
                (
                    usize::from(function.read_config_u8(at + 4)),
                    function.read_config_u32(at + 8),
                    function.read_config_u32(at + 12),
                    at,
                )
            })
        })
}

/// The window a virtio capability describes.
fn map_cap(function: &PciFunction, cfg_type: u8, min_len: usize) -> Result<(Mmio, u16), Errno> {
    let (bar, offset, len, at) = virtio_cap(function, cfg_type).ok_or(EINVAL)?;
    if (len as usize) < min_len {
        return Err(EINVAL);
    }
    Ok((
        function.map_bar_range(bar, u64::from(offset), u64::from(len))?,
        at,
    ))
}

impl VirtioBlk {
    fn new(function: &PciFunction, name: String) -> Result<Arc<VirtioBlk>, Errno> {
        function.enable_bus_master();
        let (common, _) = map_cap(function, CAP_COMMON, common::LEN)?;
        let (notify, notify_cap) = map_cap(function, CAP_NOTIFY, 2)?;
        let notify_multiplier = function.read_config_u32(notify_cap + 16) as usize;
        let (device_cfg, _) = map_cap(function, CAP_DEVICE, 8)?;

        // Reset, then ACKNOWLEDGE and DRIVER (virtio 1.0 section 3.1.1).
        reset(&common)?;
        let mut device_status = status::ACKNOWLEDGE | status::DRIVER;
        common.write8(common::DEVICE_STATUS, device_status);
        // On failure the device is reset before the queues' memory goes
        // (it may have been told their addresses), then marked FAILED.
        let fail = |e: Errno| {
            let _ = reset(&common);
            common.write8(common::DEVICE_STATUS, status::FAILED);
            e
        };

        common.write32(common::DEVICE_FEATURE_SELECT, 0);
        let low = common.read32(common::DEVICE_FEATURE);
        common.write32(common::DEVICE_FEATURE_SELECT, 1);
        let high = common.read32(common::DEVICE_FEATURE);
        let offered = u64::from(low) | (u64::from(high) << 32);
        let Some(features) = logic::negotiate(offered) else {
            log::error!("{name}: device offers no VERSION_1 (legacy only)");
            return Err(fail(EINVAL));
        };
        common.write32(common::DRIVER_FEATURE_SELECT, 0);
        common.write32(common::DRIVER_FEATURE, features as u32);
        common.write32(common::DRIVER_FEATURE_SELECT, 1);
        common.write32(common::DRIVER_FEATURE, (features >> 32) as u32);
        device_status |= status::FEATURES_OK;
        common.write8(common::DEVICE_STATUS, device_status);
        if common.read8(common::DEVICE_STATUS) & status::FEATURES_OK == 0 {
            log::error!("{name}: device refused features {features:#x}");
            return Err(fail(EINVAL));
        }

        let cfg = read_config(&common, &device_cfg);
        let msix = function.msix();
        let device_queues = if features & feature::MQ != 0 {
            cfg.num_queues.max(1)
        } else {
            1
        };
        let mut wanted = device_queues
            .min(common.read16(common::NUM_QUEUES).max(1))
            .min(crate::arch::smp::online().max(1) as u16);
        if let Some(msix) = &msix {
            // One entry for configuration changes, one per queue.
            wanted = wanted.min(msix.table_size().saturating_sub(1).max(1));
        }

        // Queue size: the device's maximum, bounded.
        common.write16(common::QUEUE_SELECT, 0);
        let device_max = common.read16(common::QUEUE_SIZE);
        if device_max == 0 {
            return Err(fail(EINVAL));
        }
        let size = prev_power_of_two(device_max.min(logic::MAX_QUEUE));
        let geometry = logic::geometry(features, &cfg, size, wanted).map_err(|e| {
            log::error!("{name}: unusable configuration: {e:?}");
            fail(EINVAL)
        })?;

        // Interrupt vectors: entry 0 for configuration, 1 + q for queue q.
        let vectors = msix
            .as_ref()
            .and_then(|msix| allocate_vectors(msix, wanted));
        let mode = if vectors.is_some() {
            QueueMode::Interrupt
        } else {
            QueueMode::Polled
        };
        if let Some(msix) = msix.as_ref().filter(|_| vectors.is_some()) {
            msix.enable();
            common.write16(common::MSIX_CONFIG, 0);
            if common.read16(common::MSIX_CONFIG) == logic::NO_VECTOR {
                log::warn!("{name}: no configuration vector; DEVICE_NEEDS_RESET goes unseen");
            }
        }

        let mut queues = Vec::new();
        for q in 0..wanted {
            common.write16(common::QUEUE_SELECT, q);
            let max = common.read16(common::QUEUE_SIZE);
            if max < size {
                log::error!("{name}: queue {q} holds {max} entries, queue 0 {size}");
                return Err(fail(EINVAL));
            }
            common.write16(common::QUEUE_SIZE, size);
            let layout = virtq::Layout::new(size).ok_or_else(|| fail(EINVAL))?;
            let ring = DmaBuffer::alloc(layout.bytes).map_err(fail)?;
            let status_base = usize::from(size) * logic::HEADER_LEN;
            let slots = DmaBuffer::alloc(status_base + usize::from(size)).map_err(fail)?;
            let flags = match mode {
                QueueMode::Interrupt => 0,
                QueueMode::Polled => virtq::AVAIL_F_NO_INTERRUPT,
            };
            let queue = SplitQueue::new(size, &ring, flags).ok_or_else(|| fail(EINVAL))?;
            write_addr(
                &common,
                common::QUEUE_DESC,
                ring.phys() + layout.desc as u64,
            );
            write_addr(
                &common,
                common::QUEUE_DRIVER,
                ring.phys() + layout.avail as u64,
            );
            write_addr(
                &common,
                common::QUEUE_DEVICE,
                ring.phys() + layout.used as u64,
            );
            if mode == QueueMode::Interrupt {
                common.write16(common::QUEUE_MSIX_VECTOR, q + 1);
                if common.read16(common::QUEUE_MSIX_VECTOR) == logic::NO_VECTOR {
                    log::error!("{name}: device refused an MSI-X vector for queue {q}");
                    return Err(fail(EIO));
                }
            }
            let notify_off = usize::from(common.read16(common::QUEUE_NOTIFY_OFF));
            let notify_at = notify_off.saturating_mul(notify_multiplier);
            if !notify.contains(notify_at, 2) {
                log::error!("{name}: queue {q} doorbell at {notify_at:#x} outside its window");
                return Err(fail(EINVAL));
            }
            common.write16(common::QUEUE_ENABLE, 1);
            queues.push(Queue {
                state: Mutex::new(QueueState {
                    ring,
                    queue,
                    slots,
                    status_base,
                }),
                notify_at,
                mode,
            });
        }

        let device = Arc::new(VirtioBlk {
            name,
            pci: function.name(),
            common: common.clone(),
            notify,
            geometry,
            queues,
            hook: RwLock::new(None),
            dead: AtomicBool::new(false),
            msix,
            vectors,
        });
        if let (Some(msix), Some(vectors)) = (&device.msix, &device.vectors) {
            device.install_handlers(msix, &vectors.0);
        }
        common.write8(common::DEVICE_STATUS, device_status | status::DRIVER_OK);
        log::info!(
            "{}: virtio-blk at {} (registers at {:#x}): {} blocks of {} bytes ({} MiB), \
             {} queue(s) of {} ({:?}), {} segments, flush {}",
            device.name,
            device.pci,
            device.common.phys(),
            geometry.blocks,
            geometry.block_size,
            geometry.bytes() >> 20,
            geometry.queues,
            size,
            mode,
            geometry.max_segments,
            if geometry.volatile_cache { "yes" } else { "no" }
        );
        Ok(device)
    }

    /// Points MSI-X entry 0 (configuration) and 1 + q (queue q) at their
    /// vectors on their CPUs, registers the handlers and unmasks.
    fn install_handlers(self: &Arc<Self>, msix: &Msix, vectors: &[u8]) {
        for (entry, &vector) in vectors.iter().enumerate() {
            let weak: Weak<VirtioBlk> = Arc::downgrade(self);
            let handler: irq::Handler = if entry == 0 {
                Arc::new(move || {
                    if let Some(device) = weak.upgrade() {
                        device.config_interrupt();
                    }
                })
            } else {
                let queue = (entry - 1) as u16;
                Arc::new(move || {
                    if let Some(device) = weak.upgrade() {
                        device.queue_interrupt(queue);
                    }
                })
            };
            irq::register(vector, handler);
            let cpu_queue = entry.saturating_sub(1);
            let _ = msix.set(entry as u16, vector, pci::target_apic_id(cpu_queue));
            let _ = msix.mask(entry as u16, false);
        }
    }

    fn queue_interrupt(&self, queue: u16) {
        let hook = self.hook.read().clone();
        if let Some(hook) = hook {
            hook(queue);
        }
    }

    /// A configuration change: the only one acted on is
    /// `DEVICE_NEEDS_RESET`, which kills the device.
    fn config_interrupt(&self) {
        let device_status = self.common.read8(common::DEVICE_STATUS);
        if device_status & status::DEVICE_NEEDS_RESET != 0 {
            self.kill("device needs a reset");
        }
    }

    /// Marks the device dead; every queue's requests fail at its next poll,
    /// which the hook is asked to run now.
    fn kill(&self, why: &str) {
        if !self.dead.swap(true, Ordering::AcqRel) {
            log::error!("{}: {why}; failing every request with EIO", self.name);
        }
        let hook = self.hook.read().clone();
        if let Some(hook) = hook {
            for q in 0..self.queues.len() {
                hook(q as u16);
            }
        }
    }

    fn queue(&self, queue: u16) -> Result<&Queue, Errno> {
        self.queues.get(usize::from(queue)).ok_or(EINVAL)
    }
}

impl BlockDevice for VirtioBlk {
    fn name(&self) -> &str {
        &self.name
    }

    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn queue_mode(&self, queue: u16) -> QueueMode {
        self.queue(queue)
            .map(|q| q.mode)
            .unwrap_or(QueueMode::Polled)
    }

    fn set_interrupt_hook(&self, hook: InterruptHook) {
        without_interrupts(|| *self.hook.write() = Some(hook));
    }

    fn submit(&self, queue: u16, request: &BlockRequest<'_>) -> Result<(), Errno> {
        let q = self.queue(queue)?;
        kernel_core::block::check_request(&self.geometry, request)?;
        if self.dead.load(Ordering::Acquire) {
            return Err(EIO);
        }
        let device_writes = request.op == BlockOp::Read;
        without_interrupts(|| {
            let mut guard = q.state.lock();
            let state = &mut *guard;
            let Some(head) = state.queue.next_head() else {
                return Err(EAGAIN);
            };
            let needed = request.segments.len() + 2;
            if usize::from(state.queue.free_descriptors()) < needed {
                return Err(EAGAIN);
            }
            let header_at = usize::from(head) * logic::HEADER_LEN;
            let status_at = state.status_base + usize::from(head);
            let header = logic::header(request.op, request.sector, self.geometry.block_size);
            state.slots.write_bytes(header_at, &header)?;
            // Not a status the device writes: a completion without one
            // reads as an error.
            state.slots.write_u8(status_at, 0xFF);
            let mut chain = [Buffer {
                phys: 0,
                len: 0,
                device_writes: false,
            }; logic::MAX_SEGMENTS as usize + 2];
            chain[0] = Buffer {
                phys: state.slots.phys() + header_at as u64,
                len: logic::HEADER_LEN as u32,
                device_writes: false,
            };
            for (slot, segment) in chain[1..].iter_mut().zip(request.segments) {
                *slot = Buffer {
                    phys: segment.phys,
                    len: segment.len,
                    device_writes,
                };
            }
            chain[needed - 1] = Buffer {
                phys: state.slots.phys() + status_at as u64,
                len: 1,
                device_writes: true,
            };
            let pushed = state
                .queue
                .push(&state.ring, &chain[..needed], request.tag)
                .map_err(|_| EAGAIN)?;
            debug_assert_eq!(pushed, head);
            // The avail index store is Release; the doorbell write is an
            // uncached store, which x86 keeps after it.
            self.notify.write16(q.notify_at, queue);
            Ok(())
        })
    }

    fn poll(&self, queue: u16, done: &mut dyn FnMut(Completion)) -> usize {
        let Ok(q) = self.queue(queue) else {
            return 0;
        };
        let mut total = 0;
        loop {
            // Completions are collected under the lock and reported after
            // it, so `done` may submit to this queue again.
            let mut batch = [Completion {
                tag: 0,
                result: Ok(()),
            }; 32];
            let mut n = 0;
            let mut broken = None;
            without_interrupts(|| {
                let mut guard = q.state.lock();
                let state = &mut *guard;
                if self.dead.load(Ordering::Acquire) {
                    while n < batch.len() {
                        let Some(tag) = state.queue.abandon_one() else {
                            break;
                        };
                        batch[n] = Completion {
                            tag,
                            result: Err(EIO),
                        };
                        n += 1;
                    }
                    return;
                }
                while n < batch.len() {
                    match state.queue.pop_used(&state.ring) {
                        None => break,
                        Some(Ok(used)) => {
                            let status_at = state.status_base + usize::from(used.head);
                            let code = state.slots.read_u8(status_at);
                            let result = if code == logic::S_OK {
                                Ok(())
                            } else {
                                log::warn!(
                                    "{}: request {:#x} failed with status {code}",
                                    self.name,
                                    used.token
                                );
                                Err(EIO)
                            };
                            batch[n] = Completion {
                                tag: used.token,
                                result,
                            };
                            n += 1;
                        }
                        Some(Err(e)) => {
                            broken = Some(e);
                            break;
                        }
                    }
                }
            });
            for completion in &batch[..n] {
                done(*completion);
            }
            total += n;
            if let Some(e) = broken {
                self.dead.store(true, Ordering::Release);
                log::error!(
                    "{}: device broke the used ring ({e:?}); marking it dead",
                    self.name
                );
                continue;
            }
            if n < batch.len() {
                return total;
            }
        }
    }
}

/// Allocates one CPU vector per MSI-X entry (configuration + `queues`);
/// `None` if the table or the vectors run short.
fn allocate_vectors(msix: &Msix, queues: u16) -> Option<Vectors> {
    let count = usize::from(queues) + 1;
    if usize::from(msix.table_size()) < count {
        return None;
    }
    let mut vectors = Vectors(Vec::new());
    for _ in 0..count {
        // On `None` the ones taken so far go back as `vectors` drops.
        vectors.0.push(irq::allocate(1)?);
    }
    Some(vectors)
}

/// Allocated CPU vectors, released (with their handlers) when dropped: on
/// a failed set-up, or with the device.
struct Vectors(Vec<u8>);

impl Drop for Vectors {
    fn drop(&mut self) {
        for &vector in &self.0 {
            irq::release(vector);
        }
    }
}

/// Reads the virtio-blk configuration, retrying until the generation
/// counter says it was not changed meanwhile (a bounded number of times: a
/// device that changes it forever gets its last reading).
fn read_config(common: &Mmio, cfg: &Mmio) -> logic::Config {
    let mut tries = 0;
    loop {
        tries += 1;
        let before = common.read8(common::CONFIG_GENERATION);
        let capacity = u64::from(cfg.read32(config::CAPACITY))
            | (u64::from(cfg.read32(config::CAPACITY + 4)) << 32);
        let read32 = |at: usize| {
            if cfg.contains(at, 4) {
                cfg.read32(at)
            } else {
                0
            }
        };
        let config = logic::Config {
            capacity,
            size_max: read32(config::SIZE_MAX),
            seg_max: read32(config::SEG_MAX),
            blk_size: read32(config::BLK_SIZE),
            num_queues: if cfg.contains(config::NUM_QUEUES, 2) {
                cfg.read16(config::NUM_QUEUES)
            } else {
                1
            },
        };
        if common.read8(common::CONFIG_GENERATION) == before || tries >= 100 {
            return config;
        }
    }
}

/// Resets the device and waits (boundedly) until it says it is reset.
fn reset(common: &Mmio) -> Result<(), Errno> {
    common.write8(common::DEVICE_STATUS, 0);
    for _ in 0..1_000_000 {
        if common.read8(common::DEVICE_STATUS) == 0 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(EIO)
}

/// Writes a 64-bit queue address as two 32-bit halves (the transport
/// allows only 32-bit accesses to 64-bit fields).
fn write_addr(common: &Mmio, at: usize, phys: u64) {
    common.write32(at, phys as u32);
    common.write32(at + 4, (phys >> 32) as u32);
}

fn prev_power_of_two(n: u16) -> u16 {
    if n == 0 {
        0
    } else {
        1 << (15 - n.leading_zeros())
    }
}
