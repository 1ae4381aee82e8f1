//! NVMe driver: the machine half of `kernel_core::block::nvme`.
//!
//! One controller, one namespace (the first active one, normally 1), named
//! `nvme{controller}n{namespace}`. Its queues:
//! - the admin queue, used only while probing (its MSI-X entry 0 stays
//!   masked; admin commands are polled with a bound);
//! - block queue `i` (`0..interrupt`): I/O queue `i + 1`, interrupting on
//!   MSI-X entry `i + 1`, aimed at CPU `i`'s local APIC;
//! - if the controller grants one more queue, a last block queue whose
//!   completion queue was created with interrupts off
//!   ([`QueueMode::Polled`], for `IORING_SETUP_IOPOLL`).
//!
//! Each queue is a [`QueuePair`] and its DMA memory under a spin lock taken
//! with interrupts off, since `poll` runs both from the queue's interrupt
//! handler and from threads. `poll` never calls `done` with a lock held, so
//! the block layer may submit from inside it.
//!
//! A controller reporting fatal status (CSTS.CFS) or reading as all ones
//! (gone) is declared dead: every request in flight completes with `EIO`
//! and `submit` refuses new ones. The check runs when a poll finds nothing
//! while requests are in flight (at most once a millisecond), so a dead
//! controller that no longer interrupts is noticed only if something polls
//! its interrupt queues: the block layer should poll a queue whose oldest
//! request has waited long (say a second).
//!
//! Not done: per-command timeouts and aborts (a controller that silently
//! stops completing leaves its requests in flight until something polls
//! and finds CSTS bad), shutdown notification at power-off, more than one
//! namespace, MSI/INTx for controllers without MSI-X.

use crate::arch::pci::{Mmio, Msix, PciFunction};
use crate::arch::{apic, cpu, irq, smp};
use crate::mm::dma::DmaBuffer;
use abi::errno::{Errno, EINVAL, EIO, ENOMEM, ENXIO, ETIMEDOUT};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel_core::block::nvme::{
    self, reg, Anomalies, Cap, Command, ControllerInfo, Csts, NamespaceInfo, QueueMemory,
    QueuePair, QueuePlan, Reaped, Registers,
};
use kernel_core::block::{
    check_request, BlockDevice, BlockRequest, Completion, Geometry, InterruptHook, QueueMode,
    PAGE_SIZE,
};
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;

/// PCI class of an NVMe controller: mass storage, non-volatile memory,
/// NVM Express.
const CLASS: (u8, u8, u8) = (0x01, 0x08, 0x02);
const ADMIN_ENTRIES: u16 = 32;
/// Entries per I/O queue (fewer if CAP.MQES says so): 63 requests in
/// flight per queue.
const IO_ENTRIES: u16 = 64;
/// Largest request we offer, whatever MDTS allows: 128 pages, so a
/// command's PRP list (at most 128 entries) takes 1 KiB.
const MAX_TRANSFER: u32 = 512 * 1024;
/// How long an admin command may take.
const ADMIN_TIMEOUT_US: u64 = 5_000_000;
/// Completions taken per lock hold in `poll`.
const BATCH: usize = 16;
/// Least time between two CSTS checks from `poll`.
const HEALTH_INTERVAL_NS: u64 = 1_000_000;

/// BAR 0 as the reset sequence sees it.
struct Bar0<'a>(&'a Mmio);

impl Registers for Bar0<'_> {
    fn read32(&mut self, offset: usize) -> u32 {
        self.0.read32(offset)
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.0.write32(offset, value);
    }
    fn read64(&mut self, offset: usize) -> u64 {
        // Two dword reads: 64-bit MMIO accesses are optional for a
        // controller's 64-bit registers (3.1).
        u64::from(self.0.read32(offset)) | (u64::from(self.0.read32(offset + 4)) << 32)
    }
    fn write64(&mut self, offset: usize, value: u64) {
        self.0.write32(offset, value as u32);
        self.0.write32(offset + 4, (value >> 32) as u32);
    }
    fn delay_us(&mut self, us: u64) {
        apic::delay_us(us);
    }
}

/// One queue pair's memory and doorbells.
struct QueueHw {
    sq: DmaBuffer,
    cq: DmaBuffer,
    /// Per-command PRP lists, `prp_slot` bytes each (none for the admin
    /// queue, whose commands move at most one page).
    prp: Option<DmaBuffer>,
    prp_slot: usize,
    regs: Mmio,
    sq_doorbell: usize,
    cq_doorbell: usize,
}

impl QueueHw {
    fn new(
        qid: u16,
        entries: u16,
        stride: usize,
        regs: &Mmio,
        prp_slot: usize,
    ) -> Result<Self, Errno> {
        let n = usize::from(entries);
        let prp = if prp_slot > 0 {
            Some(DmaBuffer::alloc(prp_slot * n)?)
        } else {
            None
        };
        Ok(Self {
            sq: DmaBuffer::alloc(n * 64)?,
            cq: DmaBuffer::alloc(n * 16)?,
            prp,
            prp_slot,
            regs: regs.clone(),
            sq_doorbell: nvme::sq_tail_doorbell(qid, stride),
            cq_doorbell: nvme::cq_head_doorbell(qid, stride),
        })
    }
}

impl QueueMemory for QueueHw {
    fn write_sqe(&mut self, slot: u16, entry: &[u32; 16]) {
        let base = usize::from(slot) * 64;
        for (i, &dword) in entry.iter().enumerate() {
            self.sq.write_u32(base + 4 * i, dword);
        }
    }

    fn read_cqe_dword(&self, slot: u16, dword: usize) -> u32 {
        self.cq.read_u32(usize::from(slot) * 16 + 4 * dword)
    }

    fn prp_list(&self, cid: u16) -> (u64, usize) {
        match &self.prp {
            Some(prp) => (
                prp.phys() + (usize::from(cid) * self.prp_slot) as u64,
                self.prp_slot / 8,
            ),
            None => (0, 0),
        }
    }

    fn write_prp_entry(&mut self, cid: u16, index: usize, value: u64) {
        if let Some(prp) = &self.prp {
            prp.write_u64(usize::from(cid) * self.prp_slot + index * 8, value);
        }
    }

    fn ring_sq_tail(&mut self, tail: u16) {
        // The entry's stores are Release and x86 keeps stores in order, so
        // the controller sees the entry before the doorbell.
        self.regs.write32(self.sq_doorbell, u32::from(tail));
    }

    fn ring_cq_head(&mut self, head: u16) {
        self.regs.write32(self.cq_doorbell, u32::from(head));
    }
}

struct Queue {
    pair: QueuePair,
    hw: QueueHw,
    /// Anomalies already logged.
    logged: Anomalies,
}

impl Queue {
    fn new(
        qid: u16,
        entries: u16,
        stride: usize,
        regs: &Mmio,
        prp_slot: usize,
    ) -> Result<Self, Errno> {
        Ok(Self {
            pair: QueuePair::new(qid, entries)?,
            hw: QueueHw::new(qid, entries, stride, regs, prp_slot)?,
            logged: Anomalies::default(),
        })
    }

    fn reap(&mut self, out: &mut [Reaped]) -> usize {
        self.pair.reap(&mut self.hw, out)
    }

    /// Logs what the controller did wrong since the last call.
    fn log_anomalies(&mut self, name: &str) {
        let now = self.pair.anomalies();
        if now != self.logged {
            log::warn!(
                "{name}: queue {}: completions for commands not in flight: {}, for other queues: {}, bad SQ heads: {}",
                self.pair.qid(),
                now.unknown_cid,
                now.wrong_queue,
                now.bad_sq_head
            );
            self.logged = now;
        }
    }
}

struct IoQueue {
    mode: QueueMode,
    queue: Mutex<Queue>,
}

/// A probed NVMe namespace, as a block device.
pub struct Nvme {
    name: String,
    regs: Mmio,
    nsid: u32,
    geometry: Geometry,
    queues: Vec<IoQueue>,
    hook: Mutex<Option<InterruptHook>>,
    dead: AtomicBool,
    last_health_ns: AtomicU64,
    /// Kept for as long as the controller runs: it owns the admin queue
    /// memory the controller was told about, and the MSI-X table.
    _admin: Mutex<Queue>,
    _msix: Msix,
    _orphans: Vec<Queue>,
}

impl Nvme {
    fn interrupt(&self, queue: u16) {
        let hook = without_interrupts(|| self.hook.lock().clone());
        if let Some(hook) = hook {
            hook(queue);
        }
    }

    /// Declares the controller dead if CSTS says so (fatal status, or all
    /// ones: the device is gone), looking at most once per
    /// `HEALTH_INTERVAL_NS`. Returns whether it is dead.
    fn check_health(&self) -> bool {
        if self.dead.load(Ordering::Acquire) {
            return true;
        }
        let now = apic::monotonic_ns();
        let last = self.last_health_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) < HEALTH_INTERVAL_NS {
            return false;
        }
        self.last_health_ns.store(now, Ordering::Relaxed);
        let csts = Csts(self.regs.read32(reg::CSTS));
        if csts.gone() || csts.fatal() {
            log::error!(
                "{}: controller {} (CSTS {:#x}): failing every request",
                self.name,
                if csts.gone() { "gone" } else { "fatal" },
                csts.0
            );
            self.die();
            return true;
        }
        false
    }

    /// Fails everything in flight and refuses new requests; the failed
    /// requests are reported by the next polls, which the interrupt hook
    /// is asked for.
    fn die(&self) {
        if self.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        for queue in &self.queues {
            without_interrupts(|| queue.queue.lock().pair.fail_all());
        }
        // Tell the block layer to poll the interrupt queues (the polled one
        // is polled by whoever waits on it). Harmless if it re-enters poll.
        for (q, queue) in self.queues.iter().enumerate() {
            if queue.mode == QueueMode::Interrupt {
                self.interrupt(q as u16);
            }
        }
    }

    fn to_completion(&self, reaped: &Reaped) -> Completion {
        let result = reaped.result();
        match reaped.status {
            Some(status) if !status.is_success() => {
                log::warn!("{}: request {:#x} failed: {status}", self.name, reaped.tag);
            }
            None => log::debug!(
                "{}: request {:#x} failed: controller dead",
                self.name,
                reaped.tag
            ),
            _ => {}
        }
        Completion {
            tag: reaped.tag,
            result,
        }
    }
}

impl BlockDevice for Nvme {
    fn name(&self) -> &str {
        &self.name
    }

    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn queue_mode(&self, queue: u16) -> QueueMode {
        self.queues
            .get(usize::from(queue))
            .map_or(QueueMode::Polled, |q| q.mode)
    }

    fn set_interrupt_hook(&self, hook: InterruptHook) {
        without_interrupts(|| *self.hook.lock() = Some(hook));
    }

    fn submit(&self, queue: u16, request: &BlockRequest<'_>) -> Result<(), Errno> {
        let io = self.queues.get(usize::from(queue)).ok_or(EINVAL)?;
        check_request(&self.geometry, request)?;
        without_interrupts(|| {
            let mut q = io.queue.lock();
            // Checked under the queue lock: `die` sets the flag before it
            // fails each queue's commands under the same lock, so a request
            // is either refused here or failed there, never left behind.
            if self.dead.load(Ordering::Acquire) {
                return Err(EIO);
            }
            let Queue { pair, hw, .. } = &mut *q;
            pair.submit_io(hw, self.nsid, self.geometry.block_size, request)
        })
        .map(|_| ())
    }

    fn poll(&self, queue: u16, done: &mut dyn FnMut(Completion)) -> usize {
        let Some(io) = self.queues.get(usize::from(queue)) else {
            return 0;
        };
        let mut total = 0;
        // A hostile controller cannot keep us here: at most a few queues'
        // worth per call (anything left interrupts or is polled again).
        let limit = 4 * usize::from(self.geometry.queue_depth) + BATCH;
        let mut checked = false;
        loop {
            let mut batch = [Reaped {
                tag: 0,
                status: None,
                result: 0,
            }; BATCH];
            let (n, in_flight) = without_interrupts(|| {
                let mut q = io.queue.lock();
                let n = q.reap(&mut batch);
                q.log_anomalies(&self.name);
                (n, q.pair.in_flight())
            });
            for reaped in &batch[..n] {
                done(self.to_completion(reaped));
            }
            total += n;
            if n == BATCH && total < limit {
                continue;
            }
            // Nothing more now: if requests are still out, is the
            // controller alive? (If it just died, go round once more to
            // report what `die` failed.)
            if n == 0 && in_flight > 0 && !checked && total < limit {
                checked = true;
                if self.check_health() {
                    continue;
                }
            }
            return total;
        }
    }
}

/// Probes every NVMe controller; returns a block device for each one that
/// came up (the first active namespace of each).
pub fn probe() -> Vec<Arc<dyn BlockDevice>> {
    let mut found: Vec<Arc<dyn BlockDevice>> = Vec::new();
    let mut index = 0;
    for function in crate::arch::pci::functions() {
        if (function.class, function.subclass, function.prog_if) != CLASS {
            continue;
        }
        match probe_one(function, index) {
            Ok(device) => {
                found.push(device);
                // Controllers are numbered in PCI order, counting only
                // those that came up.
                index += 1;
            }
            Err(e) => log::warn!("nvme {}: not used: {e:?}", function.name()),
        }
    }
    found
}

/// An admin command, waited for with a bound. Returns completion dword 0.
fn admin(name: &str, regs: &Mmio, queue: &mut Queue, command: Command) -> Result<u32, Errno> {
    let opcode = command.opcode;
    let Queue { pair, hw, .. } = queue;
    pair.submit(hw, u64::from(opcode), |_, _| Ok(command))?;
    let mut waited = 0;
    loop {
        let mut out = [Reaped {
            tag: 0,
            status: None,
            result: 0,
        }];
        if pair.reap(hw, &mut out) == 1 {
            let reaped = out[0];
            return match reaped.status {
                Some(status) if status.is_success() => Ok(reaped.result),
                Some(status) => {
                    log::warn!("{name}: admin command {opcode:#04x} failed: {status}");
                    Err(EIO)
                }
                None => Err(EIO),
            };
        }
        if waited >= ADMIN_TIMEOUT_US {
            log::warn!("{name}: admin command {opcode:#04x} timed out");
            return Err(ETIMEDOUT);
        }
        if waited % 1000 == 0 {
            let csts = Csts(regs.read32(reg::CSTS));
            if csts.gone() || csts.fatal() {
                log::warn!("{name}: controller failed (CSTS {:#x})", csts.0);
                return Err(EIO);
            }
        }
        apic::delay_us(10);
        waited += 10;
    }
}

/// Stops the controller (CC.EN=0) so it no longer touches our memory;
/// false if it would not say so in time.
fn disable(regs: &Mmio, timeout_ms: u64) -> bool {
    let mut bar = Bar0(regs);
    let config = bar.read32(reg::CC);
    bar.write32(reg::CC, config & !nvme::cc::EN);
    nvme::wait_ready(&mut bar, false, timeout_ms).is_ok()
}

/// What a controller being brought up has been told about: kept until it
/// is running (moved into the [`Nvme`]) or stopped (freed), never freed
/// while it may still read or write them.
#[derive(Default)]
struct Parts {
    admin: Option<Queue>,
    io: Vec<IoQueue>,
    /// Queues the controller may know half of (a CQ whose SQ failed).
    orphans: Vec<Queue>,
    vectors: Vec<u8>,
    page: Option<DmaBuffer>,
    msix: Option<Msix>,
}

fn probe_one(function: &PciFunction, index: usize) -> Result<Arc<dyn BlockDevice>, Errno> {
    function.enable_bus_master();
    let regs = function.map_bar(0)?;
    if regs.len() < reg::DOORBELL_BASE + 8 {
        return Err(ENXIO);
    }
    let pci_name = function.name();
    let mut parts = Parts::default();
    let mut admin_queue = Queue::new(0, ADMIN_ENTRIES, 4, &regs, 0)?;
    let (asq, acq) = (admin_queue.hw.sq.phys(), admin_queue.hw.cq.phys());
    // Before the controller hears of them: from here on they go away only
    // with the controller stopped.
    let cap = Cap(Bar0(&regs).read64(reg::CAP));
    let stride = cap.doorbell_stride();
    admin_queue.hw.sq_doorbell = nvme::sq_tail_doorbell(0, stride);
    admin_queue.hw.cq_doorbell = nvme::cq_head_doorbell(0, stride);
    parts.admin = Some(admin_queue);
    let result = nvme::reset_and_enable(&mut Bar0(&regs), asq, acq, ADMIN_ENTRIES)
        .inspect_err(|e| log::warn!("nvme {pci_name}: reset/enable failed: {e:?}"))
        .and_then(|cap| bring_up(function, index, &regs, cap, &mut parts));
    if result.is_err() {
        // The controller may still own our queues and the page: stop it
        // before they are freed, or leak them if it will not stop.
        let stopped = disable(&regs, cap.timeout_ms());
        if let Some(msix) = &parts.msix {
            msix.disable();
        }
        for &vector in &parts.vectors {
            irq::release(vector);
        }
        if !stopped {
            log::error!("nvme {pci_name}: will not stop; leaking its memory");
            core::mem::forget(parts);
        }
    }
    result
}

fn bring_up(
    function: &PciFunction,
    index: usize,
    regs: &Mmio,
    cap: Cap,
    parts: &mut Parts,
) -> Result<Arc<dyn BlockDevice>, Errno> {
    let pci_name = function.name();
    let stride = cap.doorbell_stride();
    let page = parts.page.insert(DmaBuffer::alloc(PAGE_SIZE as usize)?);
    let admin_queue = parts.admin.as_mut().ok_or(EINVAL)?;
    let mut bytes = [0u8; 4096];
    let identify = |name: &str, queue: &mut Queue, cns: u32, nsid: u32, bytes: &mut [u8; 4096]| {
        page.zero(0, 4096)?;
        admin(name, regs, queue, Command::identify(cns, nsid, page.phys()))?;
        page.read_bytes(0, bytes)
    };

    identify(
        &pci_name,
        admin_queue,
        nvme::admin::CNS_CONTROLLER,
        0,
        &mut bytes,
    )?;
    let info = ControllerInfo::parse(&bytes)?;
    // The first active namespace (1 on QEMU); the list needs NVMe 1.1, so
    // fall back to 1 when the controller refuses it.
    let nsid = match identify(
        &pci_name,
        admin_queue,
        nvme::admin::CNS_ACTIVE_NAMESPACES,
        0,
        &mut bytes,
    ) {
        Ok(()) => *nvme::parse_namespace_list(&bytes).first().ok_or(ENXIO)?,
        Err(_) => 1,
    };
    identify(
        &pci_name,
        admin_queue,
        nvme::admin::CNS_NAMESPACE,
        nsid,
        &mut bytes,
    )?;
    let namespace = NamespaceInfo::parse(&bytes)?;
    let name = format!("nvme{index}n{nsid}");

    // Queues: one per CPU and a polled one, as far as the controller goes.
    let cpus = smp::online().max(1);
    let wanted = QueuePlan::wanted(cpus);
    let result = admin(
        &name,
        regs,
        admin_queue,
        Command::set_queue_count(wanted, wanted),
    )?;
    let granted = nvme::granted_queues(result, wanted);
    let msix = parts.msix.insert(function.msix().ok_or_else(|| {
        log::warn!("{name}: no MSI-X");
        ENXIO
    })?);
    let plan = QueuePlan::new(granted, cpus, msix.table_size()).ok_or(ENXIO)?;
    if regs.len() < nvme::bar_bytes_needed(plan.total(), stride) {
        return Err(ENXIO);
    }
    let entries = IO_ENTRIES.min(u16::try_from(cap.max_queue_entries()).unwrap_or(u16::MAX));

    // Transfers: MDTS, our cap, whole blocks.
    let block_size = namespace.block_size;
    let max_transfer =
        info.max_transfer(cap.min_page_size(), MAX_TRANSFER) / block_size * block_size;
    if max_transfer == 0 {
        return Err(ENXIO);
    }
    let max_segments = u16::try_from(max_transfer / PAGE_SIZE as u32 + 1).map_err(|_| EINVAL)?;
    let prp_slot = (usize::from(max_segments - 1) * 8)
        .next_power_of_two()
        .max(8);

    // MSI-X: entry 0 (admin) stays masked; entry i + 1 for queue i.
    for entry in 0..msix.table_size() {
        msix.mask(entry, true)?;
    }
    msix.enable();
    for q in 0..plan.total() {
        let qid = q + 1;
        let interrupts = q < plan.interrupt;
        let queue = Queue::new(qid, entries, stride, regs, prp_slot)?;
        let vector = if interrupts {
            let vector = irq::allocate(1).ok_or(ENOMEM)?;
            parts.vectors.push(vector);
            msix.set(qid, vector, cpu::apic_id_of(usize::from(q)))?;
            msix.mask(qid, false)?;
            qid
        } else {
            0
        };
        let (sq, cq) = (queue.hw.sq.phys(), queue.hw.cq.phys());
        let created = admin(
            &name,
            regs,
            admin_queue,
            Command::create_io_cq(qid, entries, cq, interrupts, vector),
        )
        .and_then(|_| {
            admin(
                &name,
                regs,
                admin_queue,
                Command::create_io_sq(qid, entries, sq, qid),
            )
        });
        if let Err(e) = created {
            parts.orphans.push(queue);
            if parts.io.is_empty() {
                return Err(e);
            }
            // Keep the queues made so far.
            log::warn!("{name}: queue {qid} not created ({e:?}); using {q}");
            if interrupts {
                msix.mask(qid, true)?;
                if let Some(vector) = parts.vectors.pop() {
                    irq::release(vector);
                }
            }
            break;
        }
        parts.io.push(IoQueue {
            mode: if interrupts {
                QueueMode::Interrupt
            } else {
                QueueMode::Polled
            },
            queue: Mutex::new(queue),
        });
    }
    let queues = core::mem::take(&mut parts.io);
    let interrupt_queues = queues
        .iter()
        .filter(|q| q.mode == QueueMode::Interrupt)
        .count();
    let polled = queues.len() - interrupt_queues;
    let geometry = Geometry {
        block_size,
        blocks: namespace.blocks,
        max_transfer,
        max_segments,
        queues: queues.len() as u16,
        queue_depth: entries - 1,
        volatile_cache: info.volatile_cache,
    };
    log::info!(
        "{name}: {} ({}) at {pci_name}: {} blocks of {block_size} bytes, {interrupt_queues} interrupt + {polled} polled queues of {}, max {} KiB{}",
        info.model_str(),
        info.serial_str(),
        namespace.blocks,
        entries - 1,
        max_transfer / 1024,
        if info.volatile_cache { ", volatile cache" } else { "" }
    );
    let vectors = core::mem::take(&mut parts.vectors);
    let device = Arc::new(Nvme {
        name,
        regs: regs.clone(),
        nsid,
        geometry,
        queues,
        hook: Mutex::new(None),
        dead: AtomicBool::new(false),
        last_health_ns: AtomicU64::new(0),
        _admin: Mutex::new(parts.admin.take().ok_or(EINVAL)?),
        _msix: parts.msix.take().ok_or(EINVAL)?,
        _orphans: core::mem::take(&mut parts.orphans),
    });
    for (q, &vector) in vectors.iter().enumerate() {
        let target = Arc::clone(&device);
        let q = q as u16;
        if !irq::register(vector, Arc::new(move || target.interrupt(q))) {
            log::error!("{}: vector {vector} not registered", device.name);
        }
    }
    Ok(device)
}
