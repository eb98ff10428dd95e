//! Synthetic clock errors, a test aid: `netlat-capture --sim-clock` passes
//! every timestamp it records (packet events, sync probes, the clock
//! readings in the metadata) through [`SimClock::apply`], so captures on
//! one machine behave like hosts with their own offset, drift and steps,
//! while the truth stays known.

use serde::{Deserialize, Serialize};

/// `t' = t + offset + drift·(t − ref) + (step if t − ref ≥ step_after)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimClock {
    /// Constant offset, ns.
    pub offset_ns: i64,
    /// Rate error, parts per million.
    pub drift_ppm: f64,
    /// Step added from `step_after_ns` on, ns (0: none).
    pub step_ns: i64,
    /// When the step happens, ns after `ref_ns`.
    pub step_after_ns: i64,
    /// Where the drift term is zero: the true CLOCK_MONOTONIC at the
    /// capture's start.
    pub ref_ns: i64,
}

/// A `--sim-clock` value that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("--sim-clock {text:?}: {why} (expected e.g. offset=0.5s,drift=-50ppm,step=2ms@30s)")]
pub struct SimClockParseError {
    text: String,
    why: String,
}

fn duration_ns(v: &str) -> Option<i64> {
    let (num, scale) = [("ns", 1.0), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9)]
        .iter()
        .find_map(|(suffix, scale)| v.strip_suffix(suffix).map(|n| (n, *scale)))?;
    let x: f64 = num.parse().ok()?;
    let ns = x * scale;
    (ns.is_finite() && ns.abs() < 1e18).then(|| ns.round() as i64)
}

impl SimClock {
    /// Parses `offset=DUR,drift=PPMppm,step=DUR@DUR` (any subset, any order;
    /// durations take ns, us, ms or s).
    pub fn parse(text: &str) -> Result<Self, SimClockParseError> {
        let err = |why: String| SimClockParseError { text: text.to_owned(), why };
        let mut c = SimClock::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| err(format!("{part:?} is not key=value")))?;
            match key {
                "offset" => c.offset_ns = duration_ns(value).ok_or_else(|| err(format!("bad duration {value:?}")))?,
                "drift" => {
                    let v = value.strip_suffix("ppm").unwrap_or(value);
                    c.drift_ppm = v.parse().map_err(|_| err(format!("bad drift {value:?}")))?;
                    if c.drift_ppm.is_nan() || c.drift_ppm.abs() > 1000.0 {
                        return Err(err(format!("drift {value:?} beyond ±1000 ppm")));
                    }
                }
                "step" => {
                    let (size, at) =
                        value.split_once('@').ok_or_else(|| err(format!("step {value:?} needs SIZE@TIME")))?;
                    c.step_ns = duration_ns(size).ok_or_else(|| err(format!("bad step size {size:?}")))?;
                    c.step_after_ns = duration_ns(at).ok_or_else(|| err(format!("bad step time {at:?}")))?;
                    if c.step_after_ns < 0 {
                        return Err(err("step time must not be negative".into()));
                    }
                }
                other => return Err(err(format!("unknown key {other:?} (offset, drift, step)"))),
            }
        }
        Ok(c)
    }

    /// The distorted reading of true time `t`.
    pub fn apply(&self, t: i64) -> i64 {
        let since = t - self.ref_ns;
        let drift = (self.drift_ppm * 1e-6 * since as f64).round() as i64;
        let step = if self.step_ns != 0 && since >= self.step_after_ns { self.step_ns } else { 0 };
        t + self.offset_ns + drift + step
    }

    /// The true time at which this clock read `t` (inverse of [`apply`]
    /// to within 1 ns; during a backward step two true times read the
    /// same, the later one is returned).
    ///
    /// [`apply`]: SimClock::apply
    pub fn invert(&self, t: i64) -> i64 {
        let rate = 1.0 + self.drift_ppm * 1e-6;
        let solve = |step: i64| self.ref_ns + ((t - step - self.offset_ns - self.ref_ns) as f64 / rate).round() as i64;
        let with_step = solve(self.step_ns);
        if self.step_ns != 0 && with_step - self.ref_ns >= self.step_after_ns {
            with_step
        } else {
            solve(0)
        }
    }

    /// True when the clock is not distorted.
    pub fn is_identity(&self) -> bool {
        self.offset_ns == 0 && self.drift_ppm == 0.0 && self.step_ns == 0
    }
}

/// The offset `t_b − t_a` between two simulated clocks when `b` reads
/// `t_b`: the ground truth for the estimator's `θ_b` against reference `a`.
pub fn true_offset(a: &SimClock, b: &SimClock, t_b: i64) -> f64 {
    let t = b.invert(t_b);
    (t_b - a.apply(t)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_applies() {
        let mut c = SimClock::parse("offset=0.5s, drift=-50ppm,step=2ms@30s").unwrap();
        assert_eq!(
            (c.offset_ns, c.drift_ppm, c.step_ns, c.step_after_ns),
            (500_000_000, -50.0, 2_000_000, 30_000_000_000)
        );
        c.ref_ns = 1_000_000_000_000;
        assert_eq!(c.apply(c.ref_ns), c.ref_ns + 500_000_000);
        // 10 s later: -500 µs of drift.
        assert_eq!(c.apply(c.ref_ns + 10_000_000_000), c.ref_ns + 10_000_000_000 + 500_000_000 - 500_000);
        // After the step.
        let t = c.ref_ns + 40_000_000_000;
        assert_eq!(c.apply(t), t + 500_000_000 - 2_000_000 + 2_000_000);
        for dt in [0, 1, 29_999_999_999, 30_000_000_000, 40_000_000_000, -5_000_000_000] {
            let t = c.ref_ns + dt;
            assert!((c.invert(c.apply(t)) - t).abs() <= 1, "dt {dt}");
        }
        assert!(SimClock::parse("").unwrap().is_identity());
    }

    #[test]
    fn bad_values_are_named() {
        for (text, needle) in [
            ("offset=5", "bad duration"),
            ("drift=abc", "bad drift"),
            ("drift=5000", "beyond"),
            ("step=1ms", "SIZE@TIME"),
            ("skew=1", "unknown key"),
            ("offset", "key=value"),
        ] {
            let e = SimClock::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn true_offset_between_two_clocks() {
        let a = SimClock { offset_ns: 100, drift_ppm: 10.0, ref_ns: 0, ..Default::default() };
        let b = SimClock { offset_ns: -400, drift_ppm: -20.0, ref_ns: 0, ..Default::default() };
        // At true time 1 s: a reads 1e9 + 100 + 10_000, b reads 1e9 - 400 - 20_000.
        let tb = b.apply(1_000_000_000);
        assert!((true_offset(&a, &b, tb) - (-400.0 - 20_000.0 - 100.0 - 10_000.0)).abs() <= 1.0);
    }
}
