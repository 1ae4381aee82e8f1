//! Monotonic time for the rest of the kernel.

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    crate::arch::apic::monotonic_ns()
}
