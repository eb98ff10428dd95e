//! Preparing data for drawing: dropping unusable values, downsampling lines, CDF steps.

/// At most this many pixel columns per line series: ≤ 2 drawn points per column.
pub(crate) const MAX_COLUMNS: usize = 1000;

/// Up to this many values a CDF is drawn as the exact step function.
pub(crate) const CDF_EXACT: usize = 1000;

/// Ranks per CDF grid above [`CDF_EXACT`]: a corner every 1/`CDF_GRID` of the values.
pub(crate) const CDF_GRID: u64 = 1000;

/// The points with finite coordinates (and y > 0 when `log_y`), sorted by x (stable).
pub(crate) fn clean_points(points: &[(f64, f64)], log_y: bool) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> =
        points.iter().copied().filter(|&(x, y)| x.is_finite() && y.is_finite() && (!log_y || y > 0.0)).collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Points sorted by x, reduced to the minimum and maximum y of each of `columns` equal
/// x intervals over `x_lo..=x_hi`, in x order. Series of at most 2 × `columns` points
/// come back as they are. Keeping both extremes keeps the envelope and every spike.
pub(crate) fn downsample(points: &[(f64, f64)], x_lo: f64, x_hi: f64, columns: usize) -> Vec<(f64, f64)> {
    let columns = columns.max(1);
    if points.len() <= 2 * columns {
        return points.to_vec();
    }
    let span = x_hi / 2.0 - x_lo / 2.0;
    let column = |x: f64| -> usize {
        let f = (x / 2.0 - x_lo / 2.0) / span;
        if f.is_finite() {
            ((f * columns as f64) as usize).min(columns - 1)
        } else {
            0
        }
    };
    let mut out = Vec::with_capacity(2 * columns);
    let flush = |out: &mut Vec<(f64, f64)>, lo: (f64, f64), hi: (f64, f64)| {
        let (a, b) = if lo.0 <= hi.0 { (lo, hi) } else { (hi, lo) };
        out.push(a);
        if a != b {
            out.push(b);
        }
    };
    let mut current = column(points[0].0);
    let (mut lo, mut hi) = (points[0], points[0]);
    for &p in &points[1..] {
        let c = column(p.0);
        if c != current {
            flush(&mut out, lo, hi);
            (current, lo, hi) = (c, p, p);
        } else if p.1 < lo.1 {
            lo = p;
        } else if p.1 > hi.1 {
            hi = p;
        }
    }
    flush(&mut out, lo, hi);
    out
}

/// The step curve of the empirical CDF of `values` (non-finite ones dropped) as
/// `(x, fraction)` corners, and the number of values used.
///
/// Up to [`CDF_EXACT`] values every step is drawn. Above, the curve runs through the
/// nearest-rank values of a grid of ranks: every 1/[`CDF_GRID`] of the values, the
/// p99.9, p99.99, … ranks that exist for this many values, the minimum and the maximum.
/// Each corner `(x_(r), r/n)` lies exactly on the true curve, and the curve between two
/// corners is off by at most 1/[`CDF_GRID`] vertically.
pub(crate) fn cdf(values: &[f64]) -> (Vec<(f64, f64)>, usize) {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return (Vec::new(), 0);
    }
    let ranks: Vec<usize> = if n <= CDF_EXACT {
        // Last rank of each run of equal values.
        (1..=n).filter(|&r| r == n || v[r - 1] != v[r]).collect()
    } else {
        let n64 = n as u64;
        let mut r: Vec<u64> = (1..=CDF_GRID).map(|j| (j * n64).div_ceil(CDF_GRID)).collect();
        r.push(1);
        // Tail ranks ceil((1 - 10^-k) n) = n - floor(n / 10^k), k = 3, 4, … while 10^k ≤ n.
        let mut p = 1_000u64;
        while p <= n64 {
            r.push(n64 - n64 / p);
            p = match p.checked_mul(10) {
                Some(p) => p,
                None => break,
            };
        }
        r.sort_unstable();
        r.dedup();
        r.into_iter().map(|r| r as usize).collect()
    };
    let mut out = Vec::with_capacity(2 * ranks.len());
    let mut prev_y = 0.0;
    for r in ranks {
        let (x, y) = (v[r - 1], r as f64 / n as f64);
        match out.last_mut() {
            // Same value as the last corner: extend its vertical step.
            Some((lx, ly)) if *lx == x => *ly = y,
            _ => {
                out.push((x, prev_y));
                out.push((x, y));
            }
        }
        prev_y = y;
    }
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_drops_non_finite_and_sorts() {
        let p = [(2.0, 1.0), (f64::NAN, 1.0), (1.0, f64::INFINITY), (0.0, -3.0), (1.0, 0.0)];
        assert_eq!(clean_points(&p, false), [(0.0, -3.0), (1.0, 0.0), (2.0, 1.0)]);
        assert_eq!(clean_points(&p, true), [(2.0, 1.0)]);
        assert!(clean_points(&[], false).is_empty());
    }

    #[test]
    fn downsampling_keeps_extremes_and_bounds_the_size() {
        let n = 1_000_000;
        let mut p: Vec<(f64, f64)> = (0..n).map(|i| (i as f64, 10.0 + (i % 7) as f64 * 0.1)).collect();
        p[123_457].1 = 1000.0; // one spike
        p[765_432].1 = -50.0; // one dip
        let d = downsample(&p, 0.0, (n - 1) as f64, MAX_COLUMNS);
        assert!(d.len() <= 2 * MAX_COLUMNS, "{}", d.len());
        assert!(d.contains(&(123_457.0, 1000.0)) && d.contains(&(765_432.0, -50.0)));
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0), "x order");
        let ys = |v: &[(f64, f64)]| v.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        assert_eq!(ys(&d), ys(&p));
        // Small series untouched; all-equal x does not divide by zero.
        assert_eq!(downsample(&p[..10], 0.0, 9.0, MAX_COLUMNS), &p[..10]);
        let same: Vec<_> = (0..5000).map(|i| (1.0, i as f64)).collect();
        assert_eq!(downsample(&same, 1.0, 1.0, 10), [(1.0, 0.0), (1.0, 4999.0)]);
    }

    #[test]
    fn small_cdf_is_the_exact_step_function() {
        let (c, n) = cdf(&[3.0, 1.0, 2.0, 2.0, f64::NAN]);
        assert_eq!(n, 4);
        assert_eq!(c, [(1.0, 0.0), (1.0, 0.25), (2.0, 0.25), (2.0, 0.75), (3.0, 0.75), (3.0, 1.0)]);
        let (c, n) = cdf(&[5.0]);
        assert_eq!((c, n), (vec![(5.0, 0.0), (5.0, 1.0)], 1));
        assert_eq!(cdf(&[f64::NAN]), (vec![], 0));
    }

    #[test]
    fn large_cdf_draws_nearest_ranks_and_the_exact_max() {
        let n = 2_000_000usize;
        // A permutation of 1..=n, so that the value of rank r is r.
        let values: Vec<f64> = (0..n).map(|i| ((i * 7919) % n + 1) as f64).collect();
        let (c, m) = cdf(&values);
        assert_eq!(m, n);
        assert!(c.len() <= 2 * (CDF_GRID as usize + 10), "{}", c.len());
        // The corner at x: the top of its vertical step.
        let at = |x: f64| c.iter().rev().find(|p| p.0 == x).map(|p| p.1);
        // Nearest rank: p50 = value ceil(0.5 n), p99 = ceil(0.99 n), p99.99, max.
        assert_eq!(at(1_000_000.0), Some(0.5));
        assert_eq!(at(1_980_000.0), Some(0.99));
        assert_eq!(at(1_999_800.0), Some(0.9999));
        assert_eq!(c.last(), Some(&(n as f64, 1.0)));
        assert_eq!(c[0], (1.0, 0.0));
        // Every corner lies on the true curve F(x) = x / n.
        assert!(c.iter().skip(1).step_by(2).all(|&(x, y)| (x / n as f64 - y).abs() < 1e-12));
    }
}
