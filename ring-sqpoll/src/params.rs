//! `ring_setup`'s parameters: what a [`RingSetupParams`] asks for, checked
//! and normalised into a [`Config`] (pure logic, tested on the host).
//!
//! Rules (`abi::ring_api` documents them for user space): entries are
//! rounded up to a power of two and clamped to the layout's 256, like
//! io_uring's; unknown flags, nonzero `resv`, `SQ_AFF` without `SQPOLL`,
//! a poller field without its flag, or a CPU that runs no tasks are
//! `EINVAL`; the idle time defaults to `DEFAULT_IDLE_MS` and is clamped to
//! `MAX_IDLE_MS`.

use abi::errno::Errno;
use abi::errno::EINVAL;
use abi::io_uring::ring_layout::{MAX_CQ_ENTRIES, MAX_SQ_ENTRIES};
use abi::ring_api::{setup_flags, RingSetupParams, DEFAULT_IDLE_MS, MAX_IDLE_MS};

/// A checked `ring_setup` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// `Some` with SQPOLL.
    pub poller: Option<PollerConfig>,
}

/// How the SQPOLL poller should behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PollerConfig {
    /// Milliseconds without work before it sleeps (already defaulted and
    /// clamped).
    pub idle_ms: u32,
    /// The CPU asked for with SQ_AFF (stored; the kernel schedules on one
    /// CPU today, so it is only validated).
    pub cpu: Option<u32>,
}

/// Entries rounded up to a power of two and clamped to what the layout holds.
fn ring_size(requested: u32, max: u32) -> u32 {
    requested.min(max).next_power_of_two()
}

/// Checks `p` for a machine with `cpus` CPUs running tasks.
pub(crate) fn validate(p: &RingSetupParams, cpus: u32) -> Result<Config, Errno> {
    let flags = p.flags;
    if flags & !setup_flags::SUPPORTED != 0 || p.resv != [0; 3] || p.sq_entries == 0 {
        return Err(EINVAL);
    }
    let sqpoll = flags & setup_flags::SQPOLL != 0;
    let affinity = flags & setup_flags::SQ_AFF != 0;
    // Poller fields need SQPOLL; the CPU needs SQ_AFF and must run tasks.
    let poller_fields_ok = sqpoll || (!affinity && p.sq_thread_idle_ms == 0);
    let cpu_ok = if affinity {
        p.sq_thread_cpu < cpus
    } else {
        p.sq_thread_cpu == 0
    };
    if !poller_fields_ok || !cpu_ok {
        return Err(EINVAL);
    }
    let sq_entries = ring_size(p.sq_entries, MAX_SQ_ENTRIES);
    let cq_entries = if flags & setup_flags::CQSIZE != 0 {
        if p.cq_entries == 0 {
            return Err(EINVAL);
        }
        let cq = ring_size(p.cq_entries, MAX_CQ_ENTRIES);
        if cq < sq_entries {
            return Err(EINVAL);
        }
        cq
    } else {
        (2 * sq_entries).min(MAX_CQ_ENTRIES)
    };
    let poller = sqpoll.then(|| PollerConfig {
        idle_ms: match p.sq_thread_idle_ms {
            0 => DEFAULT_IDLE_MS,
            ms => ms.min(MAX_IDLE_MS),
        },
        cpu: affinity.then_some(p.sq_thread_cpu),
    });
    Ok(Config {
        sq_entries,
        cq_entries,
        poller,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use setup_flags::{CQSIZE, SQPOLL, SQ_AFF};

    fn params(sq: u32, flags: u32) -> RingSetupParams {
        RingSetupParams {
            sq_entries: sq,
            flags,
            ..RingSetupParams::default()
        }
    }

    #[test]
    fn sizes_round_up_and_clamp_like_io_uring() {
        for (asked, sq, cq) in [
            (1, 1, 2),
            (3, 4, 8),
            (100, 128, 256),
            (256, 256, 256),
            (257, 256, 256),
            (u32::MAX, 256, 256),
        ] {
            let c = validate(&params(asked, 0), 1).unwrap();
            assert_eq!((c.sq_entries, c.cq_entries, c.poller), (sq, cq, None));
        }
        let cq = |sq, cq| {
            validate(
                &RingSetupParams {
                    cq_entries: cq,
                    ..params(sq, CQSIZE)
                },
                1,
            )
            .map(|c| c.cq_entries)
        };
        assert_eq!(cq(8, 100), Ok(128));
        assert_eq!(cq(8, 8), Ok(8));
        assert_eq!(cq(8, 4), Err(EINVAL));
        assert_eq!(cq(8, 0), Err(EINVAL));
        assert_eq!(cq(8, 5000), Ok(256));
        // Without CQSIZE an output value left in cq_entries is ignored.
        let reused = RingSetupParams {
            cq_entries: 3,
            features: 0xff,
            sq_thread_id: 9,
            ring_addr: 1,
            ..params(8, 0)
        };
        assert_eq!(validate(&reused, 1).map(|c| c.cq_entries), Ok(16));
    }

    #[test]
    fn poller_idle_defaults_and_clamps() {
        let idle = |ms| {
            let p = RingSetupParams {
                sq_thread_idle_ms: ms,
                ..params(8, SQPOLL)
            };
            validate(&p, 1).map(|c| c.poller.map(|p| p.idle_ms))
        };
        assert_eq!(idle(0), Ok(Some(DEFAULT_IDLE_MS)));
        assert_eq!(idle(7), Ok(Some(7)));
        assert_eq!(idle(u32::MAX), Ok(Some(MAX_IDLE_MS)));
    }

    #[test]
    fn cpu_must_run_tasks() {
        let cpu = |cpu, cpus| {
            let p = RingSetupParams {
                sq_thread_cpu: cpu,
                ..params(8, SQPOLL | SQ_AFF)
            };
            validate(&p, cpus).map(|c| c.poller.and_then(|p| p.cpu))
        };
        assert_eq!(cpu(0, 1), Ok(Some(0)));
        assert_eq!(cpu(1, 1), Err(EINVAL));
        assert_eq!(cpu(1, 2), Ok(Some(1)));
        assert_eq!(cpu(u32::MAX, 4), Err(EINVAL));
    }

    #[test]
    fn bad_requests_are_einval() {
        let bad = [
            params(0, 0),
            params(8, 1 << 3),
            params(8, u32::MAX),
            params(8, SQ_AFF),
            RingSetupParams {
                sq_thread_idle_ms: 5,
                ..params(8, 0)
            },
            RingSetupParams {
                sq_thread_cpu: 1,
                ..params(8, SQPOLL)
            },
            RingSetupParams {
                resv: [0, 0, 1],
                ..params(8, SQPOLL)
            },
        ];
        for (i, p) in bad.iter().enumerate() {
            assert_eq!(validate(p, 4), Err(EINVAL), "case {i}: {p:?}");
        }
    }
}
