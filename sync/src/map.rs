//! Clock maps: a host's offset from the reference clock as a piecewise
//! linear function of the host's own clock.
//!
//! `θ(t)` is defined by knots `(t_k, θ_k)` sorted by `t`, interpolated
//! linearly between knots and extended with a fixed slope before the first
//! and after the last. A clock step is two knots 1 ns apart. A host's time
//! `t` is `t − θ(t)` in the reference time base.

use serde::{Deserialize, Serialize};

/// One knot.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Knot {
    /// The host's clock, ns.
    pub t_ns: i64,
    /// Offset from the reference there, ns (`t_host − t_reference`).
    pub offset_ns: f64,
    /// Error bound there, ns (±).
    pub bound_ns: f64,
}

/// A piecewise-linear offset function.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Piecewise {
    /// Knots, sorted by `t_ns`, at least one.
    pub knots: Vec<Knot>,
    /// Slope before the first knot.
    pub slope_before: f64,
    /// Slope after the last knot.
    pub slope_after: f64,
}

impl Piecewise {
    /// A constant offset (the reference host's own map is `constant(0.0)`).
    pub fn constant(offset_ns: f64) -> Self {
        Self { knots: vec![Knot { t_ns: 0, offset_ns, bound_ns: 0.0 }], slope_before: 0.0, slope_after: 0.0 }
    }

    /// Offset at `t` (host clock), ns.
    pub fn offset(&self, t: i64) -> f64 {
        self.eval(t).0
    }

    /// Offset and bound at `t`.
    pub fn eval(&self, t: i64) -> (f64, f64) {
        let k = &self.knots;
        let (first, last) = (k[0], k[k.len() - 1]);
        if t <= first.t_ns {
            return (first.offset_ns + self.slope_before * (t - first.t_ns) as f64, first.bound_ns);
        }
        if t >= last.t_ns {
            return (last.offset_ns + self.slope_after * (t - last.t_ns) as f64, last.bound_ns);
        }
        // First knot strictly after t; t > first, so i >= 1.
        let i = k.partition_point(|n| n.t_ns <= t);
        let (l, r) = (k[i - 1], k[i]);
        let w = (t - l.t_ns) as f64 / (r.t_ns - l.t_ns) as f64;
        (l.offset_ns + w * (r.offset_ns - l.offset_ns), l.bound_ns.max(r.bound_ns))
    }

    /// `t` in the reference time base.
    pub fn to_reference(&self, t: i64) -> i64 {
        t - self.offset(t).round() as i64
    }

    /// Span of the knots, host clock.
    pub fn span(&self) -> (i64, i64) {
        (self.knots[0].t_ns, self.knots[self.knots.len() - 1].t_ns)
    }

    /// Typical slope over the knots' span (the drift, dimensionless): the
    /// median of the intervals' slopes weighted by their length, so a step,
    /// or the short stretch where two estimates of a step disagree, does
    /// not count.
    pub fn mean_slope(&self) -> f64 {
        let mut slopes: Vec<(f64, f64)> = self
            .knots
            .windows(2)
            .filter(|w| w[1].t_ns - w[0].t_ns > STEP_WIDTH_NS)
            .map(|w| {
                let dt = (w[1].t_ns - w[0].t_ns) as f64;
                ((w[1].offset_ns - w[0].offset_ns) / dt, dt)
            })
            .collect();
        if slopes.is_empty() {
            return self.slope_after;
        }
        slopes.sort_by(|a, b| a.0.total_cmp(&b.0));
        let half = slopes.iter().map(|s| s.1).sum::<f64>() / 2.0;
        let mut acc = 0.0;
        for (slope, w) in &slopes {
            acc += w;
            if acc >= half {
                return *slope;
            }
        }
        slopes[slopes.len() - 1].0
    }

    /// Largest bound over the knots.
    pub fn max_bound(&self) -> f64 {
        self.knots.iter().map(|k| k.bound_ns).fold(0.0, f64::max)
    }
}

/// Knots this close (ns) or closer mark a step, not a slope.
pub const STEP_WIDTH_NS: i64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn k(t: i64, o: f64) -> Knot {
        Knot { t_ns: t, offset_ns: o, bound_ns: 1.0 }
    }

    #[test]
    fn interpolates_extrapolates_and_steps() {
        let p = Piecewise {
            knots: vec![k(0, 0.0), k(1000, 100.0), k(1001, 600.0), k(2001, 700.0)],
            slope_before: 0.5,
            slope_after: 0.1,
        };
        assert_eq!(p.offset(-100), -50.0);
        assert_eq!(p.offset(500), 50.0);
        assert_eq!(p.offset(1000), 100.0);
        assert_eq!(p.offset(1001), 600.0);
        assert_eq!(p.offset(1501), 650.0);
        assert_eq!(p.offset(3001), 800.0);
        assert_eq!(p.to_reference(500), 450);
        assert!((p.mean_slope() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn constant_map() {
        let p = Piecewise::constant(7.0);
        assert_eq!(p.offset(i64::MIN / 2), 7.0);
        assert_eq!(p.to_reference(10), 3);
    }
}
