//! Host clock readings.
//!
//! The kernel programs stamp packets with `bpf_ktime_get_ns()`, i.e.
//! CLOCK_MONOTONIC. REALTIME and MONOTONIC share one frequency correction,
//! so `REALTIME - MONOTONIC` changes only when the wall clock is stepped;
//! captures record it at start and end (a difference reveals a step).
//! It is measured as chrony reads a PHC: bracket one MONOTONIC read between
//! two REALTIME reads, repeat, and keep the narrowest bracket.

use serde::{Deserialize, Serialize};

/// Reads a clock in nanoseconds.
pub fn now_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer; clock ids used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC now, ns: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> i64 {
    now_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME now, ns since the Unix epoch.
pub fn realtime_ns() -> i64 {
    now_ns(libc::CLOCK_REALTIME)
}

/// `REALTIME - MONOTONIC` at one moment, with the half-width of the
/// bracket it was read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonoToRealtime {
    /// CLOCK_MONOTONIC at the reading, ns.
    pub mono_ns: i64,
    /// Add to a CLOCK_MONOTONIC time to get CLOCK_REALTIME, ns.
    pub offset_ns: i64,
    /// Half the narrowest REALTIME bracket: the reading's uncertainty, ns.
    pub uncertainty_ns: i64,
}

/// Measures `REALTIME - MONOTONIC` from `tries` bracketed reads.
pub fn mono_to_realtime(tries: usize) -> MonoToRealtime {
    let mut best = MonoToRealtime { mono_ns: 0, offset_ns: 0, uncertainty_ns: i64::MAX };
    for _ in 0..tries.max(1) {
        let r1 = realtime_ns();
        let m = monotonic_ns();
        let r2 = realtime_ns();
        let half = (r2 - r1) / 2;
        if half < best.uncertainty_ns {
            best = MonoToRealtime { mono_ns: m, offset_ns: r1 + half - m, uncertainty_ns: half.max(1) };
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_agrees_with_a_direct_reading() {
        let m = mono_to_realtime(100);
        assert!(m.uncertainty_ns < 1_000_000, "bracket {m:?}");
        let now_real = realtime_ns();
        let via_mono = monotonic_ns() + m.offset_ns;
        // Both are "now" to within the bracket plus the few µs between reads.
        assert!((now_real - via_mono).abs() < 1_000_000, "{now_real} vs {via_mono}");
    }
}
