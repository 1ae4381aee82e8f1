//! How long the host takes to move a cache line between two of its CPUs,
//! measured by `cargo xtask bench` beside each timed boot.
//!
//! Why: a guest with two vCPUs runs them as two QEMU threads on two host
//! CPUs, and a ring shared by a program on one vCPU and a poller on the
//! other moves its cache lines between those host CPUs (an SQPOLL batch of
//! 32 NOPs moves about 80). On the machines this project runs on (KVM guests
//! on AMD EPYC) the round trip of one line between the host's two CPUs is
//! either about 100-160 ns or about 270-450 ns as this probe measures it
//! (120-150 and 450-600 with both threads pinned), depending on where the
//! hypervisor has put them, and it changes every few minutes. The two-CPU
//! SQPOLL figures follow it (this kernel's `sqpoll_b32`: about 70 ns/op
//! near, 175-210 far; Linux's about 320-340 and 420-455: it moves as much
//! in absolute terms, less in proportion, because more of its time is
//! instructions), while single-CPU cases do not move. A report
//! that shows the probe before and after each boot says which of the two a
//! figure was measured in, so that ratios are only taken between boots
//! measured in the same one.
//!
//! The probe: two threads (unpinned, like QEMU's vCPU threads; on a host
//! with two CPUs the scheduler puts two spinning threads on both) bounce a
//! counter through two cache lines; the median over short windows is the
//! figure, so a window in which both threads shared one CPU does not count.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Round trips per window.
const TRIPS: u64 = 2_000;
/// Windows; the median is the figure.
const WINDOWS: usize = 15;
/// A window longer than this had the two threads on one CPU (each trip
/// waited for a time slice): the probe gives up rather than spin for long.
const GIVE_UP_MS: u128 = 500;

/// One cache line each, so that the two words never share one.
#[repr(align(128))]
#[derive(Default)]
struct Line(AtomicU64);

#[derive(Default)]
struct Shared {
    ping: Line,
    pong: Line,
    stop: AtomicBool,
}

/// The median round trip of one cache line between two host CPUs, in ns;
/// `None` on a host with one CPU, or if the threads could not run side by
/// side.
pub fn line_round_trip_ns() -> Option<f64> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let shared = Arc::new(Shared::default());
    let echo = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut seen = 0;
            while !shared.stop.load(Ordering::Relaxed) {
                let value = shared.ping.0.load(Ordering::Acquire);
                if value != seen {
                    seen = value;
                    shared.pong.0.store(value, Ordering::Release);
                }
                std::hint::spin_loop();
            }
        })
    };
    let mut windows = Vec::with_capacity(WINDOWS);
    let mut next = 0u64;
    'measure: for _ in 0..WINDOWS {
        let start = Instant::now();
        for _ in 0..TRIPS {
            next += 1;
            shared.ping.0.store(next, Ordering::Release);
            while shared.pong.0.load(Ordering::Acquire) != next {
                if start.elapsed().as_millis() > GIVE_UP_MS {
                    break 'measure;
                }
                std::hint::spin_loop();
            }
        }
        windows.push(start.elapsed().as_nanos() as f64 / TRIPS as f64);
    }
    shared.stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    median(&mut windows)
}

/// The median of `values` (the lower of the middle two for an even count);
/// `None` if empty.
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[(values.len() - 1) / 2])
}

/// `before / after` for a report line: "81 / 84 ns", with "-" for a probe
/// that gave nothing.
pub fn describe(before: Option<f64>, after: Option<f64>) -> String {
    let one = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |ns| format!("{ns:.0}"));
    format!("{} / {} ns", one(before), one(after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_and_ignores_outliers() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5.0]), Some(5.0));
        assert_eq!(median(&mut [9000.0, 80.0, 90.0]), Some(90.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.0));
    }

    #[test]
    fn describe_shows_missing_probes() {
        assert_eq!(describe(Some(80.6), Some(84.2)), "81 / 84 ns");
        assert_eq!(describe(None, Some(500.0)), "- / 500 ns");
    }
}
