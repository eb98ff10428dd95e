//! Offset and drift of one pair of hosts: steps, windows, envelope fits,
//! and the piecewise-linear map that stitches the windows together.
//!
//! For hosts `a` and `b` the map gives `θ(t) = t_b − t_a` as a function of
//! `b`'s clock. Steps are found first, Paxson-style, on the per-exchange
//! NTP offsets of the lowest-RTT exchanges (a jump that stands out from the
//! drift trend and persists); the time between steps is cut into windows
//! of about `window_ns`, each fitted with [`crate::fit::envelope`] after
//! dropping its highest-RTT exchanges. Knots at the window centres are
//! joined linearly; a step is two knots 1 ns apart.

use std::collections::HashMap;

use serde::Serialize;

use crate::{
    fit::{self, Point},
    map::{Knot, Piecewise},
    samples::OneWay,
};

/// Estimator settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Coded-pair check: largest change of the gap in flight, ns. It counts how noisy the
    /// probes' paths are; it does not choose samples (every sample is a true bound, and the
    /// fastest are often the partners of delayed ones).
    pub purity_ns: i64,
    /// Target window length, ns.
    pub window_ns: i64,
    /// Fraction of exchanges, lowest RTT first, in which clock steps are looked for.
    pub rtt_keep: f64,
    /// Fewest samples per direction for a window fit.
    pub min_points: usize,
    /// Smallest offset jump reported as a clock step, ns.
    pub step_min_ns: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self { purity_ns: 2_000, window_ns: 10_000_000_000, rtt_keep: 0.5, min_points: 3, step_min_ns: 20_000 }
    }
}

/// One window's fit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowFit {
    /// First and last sample time, `b`'s clock, ns.
    pub start_ns: i64,
    /// End of the window.
    pub end_ns: i64,
    /// Where the offset is given.
    pub center_ns: i64,
    /// `t_b − t_a` at the centre, ns.
    pub offset_ns: f64,
    /// Drift of `b` against `a`, ppm.
    pub drift_ppm: f64,
    /// Error bound over the window, ns: how far the fitted line lies, at the window's
    /// start or end, from the farthest line that separates the samples (see
    /// [`fit::Feasible`]); at least half the band between the envelopes (the asymmetry
    /// bound), more where the samples leave the slope loose.
    pub bound_ns: f64,
    /// Error bound at the centre, ns: where the map uses this window's line.
    pub center_bound_ns: f64,
    /// Error bounds at the window's start and end, ns (the map's first and last points
    /// use the first and last window's).
    pub edge_bounds_ns: (f64, f64),
    /// Half the band between the envelopes, ns: the bound where the samples pin the slope.
    pub half_band_ns: f64,
    /// Slopes of the lines that separate the samples, ppm (for the bound beyond the
    /// window).
    pub drift_range_ppm: (f64, f64),
    /// Forward (`a → b`) samples used.
    pub fwd: usize,
    /// Reverse samples used.
    pub rev: usize,
    /// False when no line separates the samples (negative band).
    pub consistent: bool,
}

/// A detected clock step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// Between the two exchanges around it, `b`'s clock, ns.
    pub at_ns: i64,
    /// The two exchanges around it, `b`'s clock, ns: when it happened is not known more
    /// closely, and the traffic's samples in between are left out of the fits.
    pub between_ns: (i64, i64),
    /// Change of `t_b − t_a`, ns.
    pub size_ns: f64,
}

/// The fit of one pair.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeFit {
    /// Host index `a`.
    pub a: usize,
    /// Host index `b`.
    pub b: usize,
    /// `t_b − t_a` as a function of `b`'s clock.
    pub map: Piecewise,
    /// Windows, in time order.
    pub windows: Vec<WindowFit>,
    /// Steps found.
    pub steps: Vec<Step>,
    /// Samples available (probes and traffic).
    pub samples: usize,
    /// Samples in fits (those of segments, between steps, with a fit).
    pub used: usize,
    /// Complete exchanges (probe and reply).
    pub exchanges: usize,
}

#[derive(Clone, Copy)]
struct Sample {
    x: i64,
    u: i64,
    fwd: bool,
    rtt: Option<i64>,
    /// A probe or reply, not a data packet.
    probe: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// Finds steps in `(x, offset)` points sorted by `x` (`ex`: the low-RTT
/// exchanges, where the offset is least noisy), then places each between
/// the two nearest exchanges of `all` that fall on either side of it.
fn steps(ex: &[(i64, f64)], all: &[(i64, f64)], cfg: &Config) -> Vec<Step> {
    const M: usize = 5;
    if ex.len() < 2 * 3 {
        return Vec::new();
    }
    let mut slopes: Vec<f64> =
        ex.windows(2).filter(|w| w[1].0 > w[0].0).map(|w| (w[1].1 - w[0].1) / (w[1].0 - w[0].0) as f64).collect();
    let s = median(&mut slopes);
    let r: Vec<f64> = ex.iter().map(|(x, o)| o - s * (*x - ex[0].0) as f64).collect();
    let mut jumps: Vec<f64> = r.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let sigma = 1.4826 * median(&mut jumps);
    let threshold = (cfg.step_min_ns as f64).max(8.0 * sigma);
    let mut out = Vec::new();
    let mut last = 0;
    for k in 1..r.len() {
        if (r[k] - r[k - 1]).abs() <= threshold || k - last < 3 || r.len() - k < 3 {
            continue;
        }
        let mut before: Vec<f64> = r[k.saturating_sub(M).max(last)..k].to_vec();
        let mut after: Vec<f64> = r[k..(k + M).min(r.len())].to_vec();
        let (left, right) = (median(&mut before), median(&mut after));
        let size = right - left;
        if size.abs() > threshold {
            // Exchanges between the two low-RTT ones: each goes to the level
            // it is nearer to; the split with the fewest misfits wins.
            let (x0, x1) = (ex[k - 1].0, ex[k].0);
            let level = |x: i64, o: f64| o - s * (x - ex[0].0) as f64;
            let mid: Vec<(i64, f64)> =
                all.iter().filter(|(x, _)| *x > x0 && *x < x1).map(|&(x, o)| (x, level(x, o))).collect();
            let cost = |j: usize| -> f64 {
                mid[..j].iter().map(|(_, r)| (r - left).abs()).sum::<f64>()
                    + mid[j..].iter().map(|(_, r)| (r - right).abs()).sum::<f64>()
            };
            let j = (0..=mid.len()).min_by(|a, b| cost(*a).total_cmp(&cost(*b))).unwrap_or(0);
            let lo = if j == 0 { x0 } else { mid[j - 1].0 };
            let hi = if j == mid.len() { x1 } else { mid[j].0 };
            out.push(Step { at_ns: lo + (hi - lo) / 2, between_ns: (lo, hi), size_ns: size });
            last = k;
        }
    }
    out
}

fn quantile_i64(mut v: Vec<i64>, q: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

/// Fits one window. Every sample is a true bound (a delay is never negative), so none is
/// left out: queueing only lifts a sample off the envelope, and the band is set by the
/// fastest samples of each direction, kept whole by the hulls.
fn fit_window(s: &[Sample], cfg: &Config) -> Option<WindowFit> {
    let (start, end) = (s.first()?.x, s.last()?.x);
    let center = start + (end - start) / 2;
    let pt = |p: &Sample| Point { x: (p.x - center) as f64, u: p.u as f64 };
    let fwd: Vec<Point> = s.iter().filter(|p| p.fwd).map(pt).collect();
    let rev: Vec<Point> = s.iter().filter(|p| !p.fwd).map(pt).collect();
    if fwd.len() < cfg.min_points || rev.len() < cfg.min_points {
        return None;
    }
    let (n_fwd, n_rev) = (fwd.len(), rev.len());
    let (fwd, rev) = (fit::lower_hull(&fwd), fit::upper_hull(&rev));
    let line = fit::envelope(&fwd, &rev)?;
    // At the start, centre and end (never below half the band).
    let (bounds, drift_range_ppm) = match fit::Feasible::new(&fwd, &rev, &line) {
        Some(f) => {
            let at = |t: i64| f.bound_at(&fwd, &rev, &line, (t - center) as f64).max(line.gap / 2.0);
            ([at(start), at(center), at(end)], (f.b_lo * 1e6, f.b_hi * 1e6))
        }
        None => ([line.gap.abs() / 2.0; 3], (line.b * 1e6, line.b * 1e6)),
    };
    let [at_start, center_bound_ns, at_end] = bounds;
    Some(WindowFit {
        start_ns: start,
        end_ns: end,
        center_ns: center,
        offset_ns: line.a,
        drift_ppm: line.b * 1e6,
        bound_ns: at_start.max(at_end),
        center_bound_ns,
        edge_bounds_ns: (at_start, at_end),
        half_band_ns: line.gap.abs() / 2.0,
        drift_range_ppm,
        fwd: n_fwd,
        rev: n_rev,
        consistent: line.gap >= 0.0,
    })
}

/// Fits windows over one segment's samples (sorted by `x`): windows of `window_ns`, a
/// quarter window apart (one window when the segment is shorter). Each window's line is
/// used at its centre, where the samples around it pin it best; the map joins the centres.
fn fit_segment(s: &[Sample], cfg: &Config) -> Vec<WindowFit> {
    let Some((first, last)) = s.first().zip(s.last()) else { return Vec::new() };
    let w = cfg.window_ns.max(1);
    if last.x - first.x <= w {
        return fit_window(s, cfg).into_iter().collect();
    }
    let hop = (w / 4).max(1);
    let mut starts: Vec<i64> = (0..).map(|k| first.x + k * hop).take_while(|t| t + w < last.x).collect();
    starts.push(last.x - w);
    starts
        .into_iter()
        .filter_map(|t| {
            let (from, to) = (s.partition_point(|p| p.x < t), s.partition_point(|p| p.x <= t + w));
            fit_window(&s[from..to], cfg)
        })
        .collect()
}

/// Fits the pair `(a, b)` from its one-way messages (both directions).
pub fn fit_edge(a: usize, b: usize, msgs: &[OneWay], cfg: &Config) -> Option<EdgeFit> {
    let mut samples: Vec<Sample> = msgs
        .iter()
        .filter_map(|w| match (w.from, w.to, w.kind < crate::traffic::KIND) {
            (f, t, probe) if f == a && t == b => Some(Sample { x: w.rx, u: w.rx - w.tx, fwd: true, rtt: None, probe }),
            (f, t, probe) if f == b && t == a => Some(Sample { x: w.tx, u: w.tx - w.rx, fwd: false, rtt: None, probe }),
            _ => None,
        })
        .collect();
    // Exchanges: the probe and the reply of one (session, seq, idx).
    let mut by_key: HashMap<(u64, u64, u8), [Option<usize>; 2]> = HashMap::new();
    let between = msgs.iter().filter(|w| (w.from == a && w.to == b) || (w.from == b && w.to == a));
    for (i, w) in between.enumerate().filter(|(_, w)| w.kind < crate::traffic::KIND) {
        by_key.entry((w.session, w.seq, w.idx)).or_default()[usize::from(w.kind.min(1))] = Some(i);
    }
    let mut exchanges: Vec<i64> = Vec::new();
    for [p, r] in by_key.into_values() {
        let (Some(p), Some(r)) = (p, r) else { continue };
        let (f, v) = if samples[p].fwd { (p, r) } else { (r, p) };
        if samples[f].fwd == samples[v].fwd {
            continue;
        }
        let rtt = samples[f].u - samples[v].u;
        samples[p].rtt = Some(rtt);
        samples[r].rtt = Some(rtt);
        exchanges.push(rtt);
    }
    let n_exchanges = exchanges.len();
    samples.sort_by_key(|s| s.x);
    if samples.is_empty() {
        return None;
    }

    // Step detection on the lower-RTT half of the exchanges, by time.
    let thr = quantile_i64(exchanges, cfg.rtt_keep);
    let mut ex: Vec<(i64, f64)> = Vec::new();
    let mut all: Vec<(i64, f64)> = Vec::new();
    for s in samples.iter().filter(|s| s.fwd) {
        if let (Some(rtt), Some(t)) = (s.rtt, thr) {
            // NTP offset = (u_f + u_r) / 2 = u_f − rtt / 2.
            let o = (s.x, s.u as f64 - rtt as f64 / 2.0);
            all.push(o);
            if rtt <= t {
                ex.push(o);
            }
        }
    }
    let steps = steps(&ex, &all, cfg);
    // A traffic sample between the exchanges around a step could be on either side of it.
    let samples: Vec<Sample> = samples
        .into_iter()
        .filter(|s| s.probe || !steps.iter().any(|st| s.x > st.between_ns.0 && s.x < st.between_ns.1))
        .collect();

    let mut windows = Vec::new();
    let mut knots: Vec<Knot> = Vec::new();
    let mut bounds = steps.iter().map(|s| s.at_ns).collect::<Vec<_>>();
    bounds.push(i64::MAX);
    let mut from = 0;
    let mut covered = 0;
    for (i, cut) in bounds.iter().enumerate() {
        let to = samples.partition_point(|s| s.x < *cut);
        let seg = &samples[from..to];
        let fits = fit_segment(seg, cfg);
        if !fits.is_empty() {
            covered += seg.len();
        }
        if let (Some(f0), Some(fl)) = (fits.first(), fits.last()) {
            let line = |f: &WindowFit, t: i64| f.offset_ns + f.drift_ppm * 1e-6 * (t - f.center_ns) as f64;
            let start = if i == 0 { seg[0].x } else { bounds[i - 1] + crate::map::STEP_WIDTH_NS };
            let end = if *cut == i64::MAX { seg[seg.len() - 1].x } else { *cut };
            let mut push = |t: i64, o: f64, bound: f64| {
                if knots.last().is_none_or(|k| k.t_ns < t) {
                    knots.push(Knot { t_ns: t, offset_ns: o, bound_ns: bound });
                }
            };
            // Before the first window's samples (just after a step) and after the last
            // one's, the bound widens by the spread of the separating lines' slopes.
            let beyond = |edge: f64, f: &WindowFit, dt: i64| {
                edge + (f.drift_range_ppm.1 - f.drift_range_ppm.0) * 1e-6 * dt as f64
            };
            push(start, line(f0, start), beyond(f0.edge_bounds_ns.0, f0, f0.start_ns - start));
            for f in &fits {
                push(f.center_ns, f.offset_ns, f.center_bound_ns);
            }
            push(end, line(fl, end), beyond(fl.edge_bounds_ns.1, fl, end - fl.end_ns));
        }
        windows.extend(fits);
        from = to;
    }
    let (first, last) = (windows.first()?, windows.last()?);
    Some(EdgeFit {
        a,
        b,
        map: Piecewise { slope_before: first.drift_ppm * 1e-6, slope_after: last.drift_ppm * 1e-6, knots },
        windows,
        steps,
        samples: samples.len(),
        used: covered,
        exchanges: n_exchanges,
    })
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
pub(crate) use tests as tests_support;
