//! A multiset of latencies that keeps exact nearest-rank percentiles in memory bounded by
//! the number of *distinct* values rather than by the number of hops.
//!
//! Small sets are kept as a plain list (fast to fill, sorted once at the end). Past
//! [`RAW_MAX`] values the list becomes a value → count map: latencies are whole
//! nanoseconds within a limited range, so a hop seen a billion times still has at most
//! as many distinct values as nanoseconds in its spread. Every figure stays exact.

use std::collections::HashMap;

use crate::stats::{rank_index, Stats};

/// Values kept as a list before switching to counts (512 KiB per group).
pub const RAW_MAX: usize = 1 << 16;

/// Latencies of one group (a pair, a path hop, a window...).
#[derive(Debug, Clone)]
pub enum Latencies {
    /// Every value.
    Raw(Vec<i64>),
    /// Value → how many times.
    Counts(HashMap<i64, u64>),
}

impl Default for Latencies {
    fn default() -> Self {
        Self::Raw(Vec::new())
    }
}

impl Latencies {
    /// Adds one value.
    pub fn push(&mut self, v: i64) {
        match self {
            Self::Raw(list) => {
                list.push(v);
                if list.len() > RAW_MAX {
                    self.counts();
                }
            }
            Self::Counts(c) => *c.entry(v).or_insert(0) += 1,
        }
    }

    /// The value → count map, converting a list into it first.
    fn counts(&mut self) -> &mut HashMap<i64, u64> {
        if let Self::Raw(list) = self {
            let mut counts = HashMap::new();
            for x in list.drain(..) {
                *counts.entry(x).or_insert(0) += 1;
            }
            *self = Self::Counts(counts);
        }
        match self {
            Self::Counts(c) => c,
            Self::Raw(_) => unreachable!("converted above"),
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: Latencies) {
        match other {
            Self::Raw(list) => list.into_iter().for_each(|v| self.push(v)),
            Self::Counts(c) => {
                let mine = self.counts();
                for (v, n) in c {
                    *mine.entry(v).or_insert(0) += n;
                }
            }
        }
    }

    /// Number of values.
    pub fn len(&self) -> u64 {
        match self {
            Self::Raw(list) => list.len() as u64,
            Self::Counts(c) => c.values().sum(),
        }
    }

    /// True if there is no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The figures (`None` when empty).
    pub fn stats(self) -> Option<Stats> {
        match self {
            Self::Raw(mut list) => Stats::of(&mut list),
            Self::Counts(c) => {
                let mut values: Vec<(i64, u64)> = c.into_iter().collect();
                values.sort_unstable();
                let n: u64 = values.iter().map(|v| v.1).sum();
                let (&(min_ns, _), &(max_ns, _)) = (values.first()?, values.last()?);
                let sum: i128 = values.iter().map(|&(v, k)| i128::from(v) * i128::from(k)).sum();
                // The value at each 0-based index, walking the cumulative counts once.
                let at = |pm: u64| -> i64 {
                    let idx = rank_index(n as usize, pm) as u64;
                    let mut seen = 0;
                    for &(v, k) in &values {
                        seen += k;
                        if seen > idx {
                            return v;
                        }
                    }
                    max_ns
                };
                Some(Stats {
                    count: n,
                    min_ns,
                    mean_ns: crate::stats::div_round(sum, i128::from(n)) as i64,
                    p50_ns: at(500),
                    p90_ns: at(900),
                    p99_ns: at(990),
                    p999_ns: at(999),
                    max_ns,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_give_the_same_figures_as_the_list() {
        // More values than RAW_MAX, few distinct ones, scrambled.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut all = Vec::new();
        let mut l = Latencies::default();
        for _ in 0..(RAW_MAX * 3 + 17) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 5000) as i64 - 100;
            all.push(v);
            l.push(v);
        }
        assert!(matches!(l, Latencies::Counts(_)));
        assert_eq!(l.len(), all.len() as u64);
        assert_eq!(l.stats(), Stats::of(&mut all));
    }

    #[test]
    fn merging_raw_and_counts() {
        let mut a = Latencies::default();
        (0..10).for_each(|v| a.push(v));
        let mut b = Latencies::default();
        (0..=RAW_MAX as i64 + 5).for_each(|v| b.push(v % 7));
        let mut all: Vec<i64> = (0..10).chain((0..=RAW_MAX as i64 + 5).map(|v| v % 7)).collect();
        let mut c = a.clone();
        c.merge(b.clone());
        assert_eq!(c.stats(), Stats::of(&mut all));
        b.merge(a);
        assert_eq!(b.stats(), Stats::of(&mut all));
        assert_eq!(Latencies::default().stats(), None);
    }
}
