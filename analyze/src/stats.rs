//! Summary figures of a set of latencies: count, min, mean, nearest-rank percentiles, max.
//!
//! Percentiles use the **nearest-rank** method: the p-th percentile of n sorted values is
//! the value at 1-based rank ⌈p·n/100⌉, so it is always a latency that was observed. Ranks
//! are computed in integers (per mille, for p99.9), because in floating point ⌈0.9·70⌉ is
//! 64, not 63.

use serde::Serialize;

/// Latency figures of one group, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Stats {
    /// Number of latencies.
    pub count: u64,
    /// Smallest.
    pub min_ns: i64,
    /// Arithmetic mean, rounded to the nearest nanosecond (halves away from zero).
    pub mean_ns: i64,
    /// Median (nearest rank).
    pub p50_ns: i64,
    /// 90th percentile (nearest rank).
    pub p90_ns: i64,
    /// 99th percentile (nearest rank).
    pub p99_ns: i64,
    /// 99.9th percentile (nearest rank).
    pub p999_ns: i64,
    /// Largest.
    pub max_ns: i64,
}

/// 0-based index of the nearest-rank percentile `per_mille`/1000 of `n` sorted values
/// (n ≥ 1): rank ⌈per_mille·n/1000⌉, never below 1.
pub fn rank_index(n: usize, per_mille: u64) -> usize {
    let n = n as u64;
    let rank = (n * per_mille).div_ceil(1000).max(1);
    (rank - 1) as usize
}

impl Stats {
    /// Figures of `values`, which are sorted here (unstable sort: equal values are equal).
    /// `None` for no values.
    pub fn of(values: &mut [i64]) -> Option<Self> {
        values.sort_unstable();
        Self::of_sorted(values)
    }

    /// Figures of `sorted`, which must be sorted ascending.
    pub fn of_sorted(sorted: &[i64]) -> Option<Self> {
        let n = sorted.len();
        let (&min_ns, &max_ns) = (sorted.first()?, sorted.last()?);
        let sum: i128 = sorted.iter().map(|&v| i128::from(v)).sum();
        let at = |pm| sorted[rank_index(n, pm)];
        Some(Self {
            count: n as u64,
            min_ns,
            mean_ns: div_round(sum, n as i128) as i64,
            p50_ns: at(500),
            p90_ns: at(900),
            p99_ns: at(990),
            p999_ns: at(999),
            max_ns,
        })
    }
}

/// `num / den` rounded to nearest, halves away from zero (den > 0).
pub(crate) fn div_round(num: i128, den: i128) -> i128 {
    let half = den / 2;
    if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_ranks_are_exact() {
        let mut v: Vec<i64> = (1..=1000).rev().collect();
        let s = Stats::of(&mut v).unwrap();
        assert_eq!((s.count, s.min_ns, s.max_ns), (1000, 1, 1000));
        assert_eq!((s.p50_ns, s.p90_ns, s.p99_ns, s.p999_ns), (500, 900, 990, 999));
        // 70 values: p90 is rank 63 (0.9 * 70 = 63 exactly), not 64.
        let v: Vec<i64> = (1..=70).collect();
        assert_eq!(Stats::of_sorted(&v).unwrap().p90_ns, 63);
        // One value: every percentile is it.
        let s = Stats::of_sorted(&[7]).unwrap();
        assert_eq!((s.p50_ns, s.p999_ns, s.mean_ns), (7, 7, 7));
        assert_eq!(Stats::of_sorted(&[]), None);
    }

    #[test]
    fn mean_rounds_to_nearest() {
        assert_eq!(Stats::of_sorted(&[1, 2]).unwrap().mean_ns, 2);
        assert_eq!(Stats::of_sorted(&[-2, -1]).unwrap().mean_ns, -2);
        assert_eq!(Stats::of_sorted(&[1, 1, 2]).unwrap().mean_ns, 1);
        // No overflow on large sums.
        assert_eq!(Stats::of_sorted(&[i64::MAX, i64::MAX]).unwrap().mean_ns, i64::MAX);
    }

    #[test]
    fn rank_index_never_underflows() {
        assert_eq!(rank_index(1, 1), 0);
        assert_eq!(rank_index(1000, 999), 998);
        assert_eq!(rank_index(1001, 999), 999);
    }
}
