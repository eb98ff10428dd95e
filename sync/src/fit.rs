//! The two-sided envelope fit of one window: the line that lies below every
//! forward one-way sample and above every reverse one with the widest margin
//! (Moon, Skelly and Towsley's linear program made two-sided, i.e. a hard
//! margin linear SVM between the two point clouds, as in Huygens).
//!
//! Model, for a peer B measured against A, as a function of B's clock `x`:
//! the offset `θ(x) = t_B − t_A` is a line `a + b·(x − c)`. A message A→B
//! sent at `tx` (A's clock) and received at `rx` (B's clock) took
//! `d_f + q_f ≥ 0`, so `θ(rx) ≤ rx − tx`: forward samples are upper bounds.
//! A message B→A gives `θ(tx) ≥ tx − rx`: reverse samples are lower bounds.
//! The true line lies between the two envelopes; which line inside the band
//! is right depends on the (unobservable) split of the minimum delays
//! between the directions. The fit takes the middle, i.e. assumes equal
//! minimum delays, and reports half the band's width as the error bound.
//!
//! For a fixed slope `b`, the widest band is
//! `g(b) = min_F(u − b·x') − max_R(u − b·x')`, a minimum of linear
//! functions minus a maximum of linear functions: concave. Its maximum is
//! found by golden-section search, which is exact for concave functions.

/// A one-way sample: `x` is the time on the measured host's clock
/// (relative to the window's centre), `u` the bound on the offset there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Abscissa: the measured host's clock, ns, relative to the centre.
    pub x: f64,
    /// Forward: `rx − tx` (upper bound); reverse: `tx − rx` (lower bound).
    pub u: f64,
}

/// A fitted line and its band.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line {
    /// Offset at `x = 0`, ns.
    pub a: f64,
    /// Slope (dimensionless; ×1e6 for ppm).
    pub b: f64,
    /// Band width at the optimum, ns: the minimum forward delay plus the
    /// minimum reverse delay the line implies. Negative when no line
    /// separates the samples (a clock step inside the window, or samples
    /// that break the model).
    pub gap: f64,
}

/// Largest slope searched: ±2000 ppm, far beyond any oscillator's drift.
pub const MAX_SLOPE: f64 = 2e-3;

fn band(fwd: &[Point], rev: &[Point], b: f64) -> (f64, f64) {
    let lo_f = fwd.iter().map(|p| p.u - b * p.x).fold(f64::INFINITY, f64::min);
    let hi_r = rev.iter().map(|p| p.u - b * p.x).fold(f64::NEG_INFINITY, f64::max);
    (lo_f, hi_r)
}

/// The band's width at slope `b`: negative where no line of that slope separates them.
fn gap(fwd: &[Point], rev: &[Point], b: f64) -> f64 {
    let (f, r) = band(fwd, rev, b);
    f - r
}

/// Fits the widest-margin line between `fwd` (upper bounds) and `rev`
/// (lower bounds). Both must be non-empty; with samples at a single `x`
/// the slope is 0.
pub fn envelope(fwd: &[Point], rev: &[Point]) -> Option<Line> {
    if fwd.is_empty() || rev.is_empty() {
        return None;
    }
    let xs = fwd.iter().chain(rev).map(|p| p.x);
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
    if x_hi - x_lo < 1.0 {
        let (f, r) = band(fwd, rev, 0.0);
        return Some(Line { a: (f + r) / 2.0, b: 0.0, gap: f - r });
    }
    let b = argmax_concave(-MAX_SLOPE, MAX_SLOPE, |b| gap(fwd, rev, b));
    let (f, r) = band(fwd, rev, b);
    Some(Line { a: (f + r) / 2.0, b, gap: f - r })
}

/// The points of `pts` that can bound a line from below: the lower convex hull. Every line
/// below all of `pts` is below all of the hull's points and conversely, so the fits see
/// the same band from the hull alone (a few points instead of thousands of samples).
pub fn lower_hull(pts: &[Point]) -> Vec<Point> {
    hull(pts, 1.0)
}

/// The upper convex hull of `pts` (see [`lower_hull`]).
pub fn upper_hull(pts: &[Point]) -> Vec<Point> {
    hull(pts, -1.0)
}

/// Andrew's monotone chain; `sign` 1 for the lower hull, -1 for the upper.
fn hull(pts: &[Point], sign: f64) -> Vec<Point> {
    let mut v: Vec<Point> = pts.to_vec();
    v.sort_by(|p, q| p.x.total_cmp(&q.x).then((sign * p.u).total_cmp(&(sign * q.u))));
    // Of points at one abscissa only the first (the most extreme) can be on the hull.
    v.dedup_by(|q, p| q.x == p.x);
    let mut out: Vec<Point> = Vec::with_capacity(16);
    for p in v {
        while let [.., o, a] = out[..] {
            let cross = (a.x - o.x) * (sign * (p.u - o.u)) - (sign * (a.u - o.u)) * (p.x - o.x);
            if cross <= 0.0 {
                out.pop();
            } else {
                break;
            }
        }
        out.push(p);
    }
    out
}

/// Where the lines that separate the samples lie: every line below each forward and above
/// each reverse sample, with a slope within ±[`MAX_SLOPE`]. The true line is one of them
/// (delays are not negative), so the fitted line's error at `x` is at most its distance to
/// the farthest of them there ([`Feasible::bound_at`]). That is half the band where the
/// band's support points surround `x`, and more elsewhere: a separating line of another
/// slope leaves the band away from them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Feasible {
    /// Smallest slope of a separating line.
    pub b_lo: f64,
    /// Largest slope of a separating line.
    pub b_hi: f64,
}

/// Golden-section search: where the concave `f` is largest on `[lo, hi]`.
fn argmax_concave(mut lo: f64, mut hi: f64, f: impl Fn(f64) -> f64) -> f64 {
    const INV_PHI: f64 = 0.618_033_988_749_894_9;
    let mut m1 = hi - INV_PHI * (hi - lo);
    let mut m2 = lo + INV_PHI * (hi - lo);
    let (mut g1, mut g2) = (f(m1), f(m2));
    // 4e-3 shrinks below 1e-15 (0.001 ppb) in about 60 steps.
    for _ in 0..80 {
        if g1 < g2 {
            lo = m1;
            m1 = m2;
            g1 = g2;
            m2 = lo + INV_PHI * (hi - lo);
            g2 = f(m2);
        } else {
            hi = m2;
            m2 = m1;
            g2 = g1;
            m1 = hi - INV_PHI * (hi - lo);
            g1 = f(m1);
        }
    }
    (lo + hi) / 2.0
}

/// The largest value of the concave `f` on `[lo, hi]`.
fn max_concave(lo: f64, hi: f64, f: impl Fn(f64) -> f64) -> f64 {
    let best = f(argmax_concave(lo, hi, &f));
    // The ends: the search narrows towards them but does not evaluate them.
    best.max(f(lo)).max(f(hi))
}

/// The edge of `{b : ok(b)}` between `inside` (where `ok` holds) and `outside` (where it
/// does not), on the inside.
fn edge(mut inside: f64, mut outside: f64, ok: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..100 {
        let m = (inside + outside) / 2.0;
        if ok(m) {
            inside = m;
        } else {
            outside = m;
        }
    }
    inside
}

impl Feasible {
    /// The slopes of the lines separating `fwd` from `rev`, from the fit `line`; `None`
    /// when no line separates them (negative gap).
    pub fn new(fwd: &[Point], rev: &[Point], line: &Line) -> Option<Self> {
        if line.gap < 0.0 || fwd.is_empty() || rev.is_empty() {
            return None;
        }
        let ok = |b: f64| gap(fwd, rev, b) >= 0.0;
        let b_lo = if ok(-MAX_SLOPE) { -MAX_SLOPE } else { edge(line.b, -MAX_SLOPE, ok) };
        let b_hi = if ok(MAX_SLOPE) { MAX_SLOPE } else { edge(line.b, MAX_SLOPE, ok) };
        Some(Self { b_lo: b_lo.min(line.b), b_hi: b_hi.max(line.b) })
    }

    /// Lowest and highest value at `x0` of a separating line.
    pub fn range_at(&self, fwd: &[Point], rev: &[Point], x0: f64) -> (f64, f64) {
        // For a slope b, a separating line's value at x0 lies between the highest reverse
        // and the lowest forward sample carried to x0 along b: the latter is concave in b,
        // the former convex.
        let hi = max_concave(self.b_lo, self.b_hi, |b| {
            fwd.iter().map(|p| p.u - b * (p.x - x0)).fold(f64::INFINITY, f64::min)
        });
        let lo = -max_concave(self.b_lo, self.b_hi, |b| {
            -rev.iter().map(|p| p.u - b * (p.x - x0)).fold(f64::NEG_INFINITY, f64::max)
        });
        (lo, hi)
    }

    /// The error bound at `x0` of `line` (one of the separating lines): its distance to
    /// the farthest separating line there.
    pub fn bound_at(&self, fwd: &[Point], rev: &[Point], line: &Line, x0: f64) -> f64 {
        let (lo, hi) = self.range_at(fwd, rev, x0);
        let at = line.a + line.b * x0;
        (hi - at).max(at - lo).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [0, 1).
    fn noise(i: u64) -> f64 {
        let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn samples(a: f64, b: f64, d: f64, n: u64, q: f64) -> (Vec<Point>, Vec<Point>) {
        let mut fwd = Vec::new();
        let mut rev = Vec::new();
        for i in 0..n {
            let x = (i as f64 - n as f64 / 2.0) * 1e8; // 0.1 s apart
            let th = a + b * x;
            // Exponential-ish queueing: mostly small, sometimes large.
            let qf = q * (-(1.0 - noise(2 * i)).ln());
            let qr = q * (-(1.0 - noise(2 * i + 1)).ln());
            fwd.push(Point { x, u: th + d + qf });
            rev.push(Point { x: x + 5e4, u: th + b * 5e4 - d - qr });
        }
        (fwd, rev)
    }

    #[test]
    fn recovers_offset_and_drift_inside_the_band() {
        for (a, b) in [(0.0, 0.0), (5e8, 50e-6), (-5e8, -50e-6), (1234.5, 1e-7), (3e9, 999e-6)] {
            let (f, r) = samples(a, b, 3000.0, 100, 500.0);
            let line = envelope(&f, &r).unwrap();
            assert!((line.a - a).abs() < 60.0, "a {a}: got {line:?}");
            assert!((line.b - b).abs() < 2e-9, "b {b}: got {line:?}");
            // The band is about twice the minimum delay.
            assert!(line.gap > 6000.0 && line.gap < 6200.0, "{line:?}");
        }
    }

    #[test]
    fn asymmetry_shifts_the_estimate_within_the_reported_bound() {
        // Forward 5 µs, reverse 1 µs: the true offset is 2 µs from the middle.
        let (mut f, r) = samples(100.0, 0.0, 1000.0, 50, 0.0);
        for p in &mut f {
            p.u += 4000.0;
        }
        let line = envelope(&f, &r).unwrap();
        assert!((line.a - 2100.0).abs() < 1.0, "{line:?}");
        assert!((line.gap / 2.0 - 3000.0).abs() < 1.0, "bound {line:?}");
        assert!((line.a - 100.0).abs() <= line.gap / 2.0 + 1.0);
    }

    #[test]
    fn a_step_inside_the_window_leaves_no_band() {
        let (mut f, mut r) = samples(0.0, 0.0, 1000.0, 40, 10.0);
        for p in f.iter_mut().chain(r.iter_mut()).filter(|p| p.x > 0.0) {
            p.u += 1e6;
        }
        assert!(envelope(&f, &r).unwrap().gap < 0.0);
    }

    #[test]
    fn empty_sides_give_nothing() {
        let p = [Point { x: 0.0, u: 1.0 }];
        assert!(envelope(&p, &[]).is_none());
        assert!(envelope(&[], &p).is_none());
        let line = envelope(&p, &[Point { x: 0.0, u: -1.0 }]).unwrap();
        assert_eq!((line.a, line.b, line.gap), (0.0, 0.0, 2.0));
    }

    #[test]
    fn separating_lines_spread_away_from_the_support_points() {
        // Forward samples at ±1 ms, reverse at 0: the separating lines pivot, with slopes up
        // to ±2000 ppm (the search's limit), so the band's 1 µs at the centre grows away
        // from it: at +2 ms they lie between -5000 ns (a = -1000, b = -2e-3) and 3000 ns
        // (a = -1000, b = 2e-3).
        let fwd = [Point { x: -1e6, u: 1000.0 }, Point { x: 1e6, u: 1000.0 }];
        let rev = [Point { x: 0.0, u: -1000.0 }];
        let line = envelope(&fwd, &rev).unwrap();
        assert!(line.a.abs() < 1e-6 && line.b.abs() < 1e-12 && (line.gap - 2000.0).abs() < 1e-6, "{line:?}");
        let f = Feasible::new(&fwd, &rev, &line).unwrap();
        assert!((f.b_lo + MAX_SLOPE).abs() < 1e-12 && (f.b_hi - MAX_SLOPE).abs() < 1e-12, "{f:?}");
        let close = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 1e-3 && (a.1 - b.1).abs() < 1e-3;
        assert!(close(f.range_at(&fwd, &rev, 0.0), (-1000.0, 1000.0)));
        assert!(close(f.range_at(&fwd, &rev, 2e6), (-5000.0, 3000.0)), "{:?}", f.range_at(&fwd, &rev, 2e6));
        assert!((f.bound_at(&fwd, &rev, &line, 0.0) - 1000.0).abs() < 1e-3);
        assert!((f.bound_at(&fwd, &rev, &line, 2e6) - 5000.0).abs() < 1e-3);
        // A reverse sample at +1 ms, at 0 ns, keeps every line at or above it there: slopes
        // below -500 ppm no longer separate (a ≥ -1e6·b and a ≤ 1000 + 1e6·b).
        let rev2 = [Point { x: 0.0, u: -1000.0 }, Point { x: 1e6, u: 0.0 }];
        let line = envelope(&fwd, &rev2).unwrap();
        let f = Feasible::new(&fwd, &rev2, &line).unwrap();
        assert!((f.b_lo + 5e-4).abs() < 1e-12 && (f.b_hi - MAX_SLOPE).abs() < 1e-12, "{f:?}");
    }

    #[test]
    fn hulls_keep_the_band_of_all_samples() {
        let (f, r) = samples(1234.0, 37e-6, 2000.0, 400, 800.0);
        let (fh, rh) = (lower_hull(&f), upper_hull(&r));
        assert!(fh.len() < 40 && rh.len() < 40, "{} {}", fh.len(), rh.len());
        let all = envelope(&f, &r).unwrap();
        let hulls = envelope(&fh, &rh).unwrap();
        assert!((all.a - hulls.a).abs() < 1e-6 && (all.b - hulls.b).abs() < 1e-15, "{all:?} {hulls:?}");
        for b in [-MAX_SLOPE, -1e-5, 0.0, 37e-6, MAX_SLOPE] {
            assert_eq!(band(&f, &r, b), band(&fh, &rh, b));
        }
    }
}
