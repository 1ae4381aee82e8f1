//! Time: the legacy PICs masked, the local APIC timer as the periodic tick,
//! and the TSC as the monotonic clock, both calibrated against the PIT.

use super::{cpu, idt, phys_to_virt};
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

/// Timer interrupts per second.
pub const TICK_HZ: u64 = 250;

const IA32_APIC_BASE: u32 = 0x1B;
const REG_EOI: usize = 0xB0;
const REG_SVR: usize = 0xF0;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3E0;
const TIMER_PERIODIC: u32 = 1 << 17;
const LVT_MASKED: u32 = 1 << 16;

static LAPIC_BASE: AtomicU64 = AtomicU64::new(0);
/// The calibrated initial count of the periodic timer (shared by all CPUs).
static TIMER_INITIAL: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
const REG_ID: usize = 0x20;
const REG_ICR_LOW: usize = 0x300;
const REG_ICR_HIGH: usize = 0x310;
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick as a 32.32 fixed-point number.
static NS_PER_TICK_FP: AtomicU64 = AtomicU64::new(0);

fn lapic_write(reg: usize, value: u32) {
    let base = LAPIC_BASE.load(Ordering::Relaxed);
    // SAFETY: `base` is the direct-map address of this CPU's local APIC
    // register page (set in `init`), and `reg` is a register offset in it.
    unsafe { core::ptr::write_volatile((base as usize + reg) as *mut u32, value) };
}

fn lapic_read(reg: usize) -> u32 {
    let base = LAPIC_BASE.load(Ordering::Relaxed);
    // SAFETY: as in `lapic_write`.
    unsafe { core::ptr::read_volatile((base as usize + reg) as *const u32) }
}

/// Remaps the 8259 PICs away from the exception vectors and masks them.
fn disable_pic() {
    let writes: [(u16, u8); 10] = [
        (0x20, 0x11),
        (0xA0, 0x11),
        (0x21, 0xF0),
        (0xA1, 0xF8),
        (0x21, 0x04),
        (0xA1, 0x02),
        (0x21, 0x01),
        (0xA1, 0x01),
        (0x21, 0xFF),
        (0xA1, 0xFF),
    ];
    for (port, value) in writes {
        // SAFETY: the 8259 PIC ports; remapping and masking them only
        // affects which legacy interrupts reach the CPU (none afterwards).
        unsafe { Port::<u8>::new(port).write(value) };
    }
}

/// Busy-waits `ms` milliseconds (at most 50) on PIT channel 2.
fn pit_wait_ms(ms: u64) {
    let count = (1_193_182 * ms / 1000) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: programs PIT channel 2 (the speaker channel, gated off from the
    // speaker) in one-shot mode and polls its output; no memory is touched.
    unsafe {
        let value = gate.read();
        gate.write((value & !0x02) | 0x01);
        command.write(0b1011_0000);
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        let value = gate.read() & !0x01;
        gate.write(value);
        gate.write(value | 0x01);
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
    }
}

/// Masks the PICs, enables the local APIC, calibrates the TSC and the APIC
/// timer against the PIT and starts the periodic tick (interrupts stay off
/// until the caller enables them).
pub fn init() {
    disable_pic();
    // SAFETY: reading IA32_APIC_BASE has no side effects.
    let base_phys = unsafe { Msr::new(IA32_APIC_BASE).read() } & 0xF_FFFF_F000;
    // SAFETY: keeps the base, sets the global enable bit (11).
    unsafe { Msr::new(IA32_APIC_BASE).write(base_phys | (1 << 11)) };
    LAPIC_BASE.store(phys_to_virt(base_phys), Ordering::Relaxed);

    lapic_write(REG_SVR, 0x100 | u32::from(idt::SPURIOUS_VECTOR));
    lapic_write(REG_TIMER_DIVIDE, 0x3); // divide by 16
    lapic_write(REG_LVT_TIMER, LVT_MASKED);
    lapic_write(REG_TIMER_INITIAL, u32::MAX);

    const CALIBRATION_MS: u64 = 50;
    let tsc_start = cpu::rdtsc();
    let apic_start = lapic_read(REG_TIMER_CURRENT);
    pit_wait_ms(CALIBRATION_MS);
    let apic_end = lapic_read(REG_TIMER_CURRENT);
    let tsc_end = cpu::rdtsc();

    let tsc_hz = (tsc_end - tsc_start) * 1000 / CALIBRATION_MS;
    let apic_hz = u64::from(apic_start - apic_end) * 1000 / CALIBRATION_MS;
    NS_PER_TICK_FP.store(
        (1_000_000_000u128 << 32).div_ceil(u128::from(tsc_hz.max(1))) as u64,
        Ordering::Relaxed,
    );
    TSC_AT_BOOT.store(tsc_start, Ordering::Relaxed);

    let initial = (apic_hz / TICK_HZ).clamp(1, u64::from(u32::MAX)) as u32;
    TIMER_INITIAL.store(u64::from(initial), Ordering::Relaxed);
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    start_timer();
    cpu::set_apic_id(id());
    log::info!(
        "time: TSC {} MHz, APIC timer {} kHz, tick {} Hz",
        tsc_hz / 1_000_000,
        apic_hz / 1000,
        TICK_HZ
    );
}

fn start_timer() {
    lapic_write(REG_TIMER_DIVIDE, 0x3); // divide by 16
    lapic_write(REG_LVT_TIMER, TIMER_PERIODIC | u32::from(idt::TIMER_VECTOR));
    lapic_write(
        REG_TIMER_INITIAL,
        TIMER_INITIAL.load(Ordering::Relaxed) as u32,
    );
}

/// Enables this (application) CPU's local APIC and its periodic timer with
/// the boot CPU's calibration.
pub fn init_ap() {
    // SAFETY: reading IA32_APIC_BASE has no side effects.
    let base_phys = unsafe { Msr::new(IA32_APIC_BASE).read() } & 0xF_FFFF_F000;
    // SAFETY: keeps the base, sets the global enable bit (11).
    unsafe { Msr::new(IA32_APIC_BASE).write(base_phys | (1 << 11)) };
    lapic_write(REG_SVR, 0x100 | u32::from(idt::SPURIOUS_VECTOR));
    start_timer();
}

/// This CPU's local APIC id.
pub fn id() -> u8 {
    (lapic_read(REG_ID) >> 24) as u8
}

/// Busy-waits `us` microseconds on the TSC.
pub fn delay_us(us: u64) {
    let end = cpu::rdtsc() + TSC_HZ.load(Ordering::Relaxed) / 1_000_000 * us;
    while cpu::rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Sends an inter-processor interrupt command (`low` word of the ICR) to
/// the CPU with local APIC id `apic_id`, and waits until it was accepted.
pub fn send_ipi(apic_id: u8, low: u32) {
    lapic_write(REG_ICR_HIGH, u32::from(apic_id) << 24);
    lapic_write(REG_ICR_LOW, low);
    while lapic_read(REG_ICR_LOW) & (1 << 12) != 0 {
        core::hint::spin_loop();
    }
}

/// Signals end of interrupt to the local APIC.
pub fn eoi() {
    lapic_write(REG_EOI, 0);
}

/// Nanoseconds since the clock was calibrated at boot.
pub fn monotonic_ns() -> u64 {
    let delta = cpu::rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    ((u128::from(delta) * u128::from(NS_PER_TICK_FP.load(Ordering::Relaxed))) >> 32) as u64
}
