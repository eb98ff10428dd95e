//! Axis ranges and tick values: 1-2-5 steps on linear axes, decades on log axes.
//!
//! Tick labels are built from integers (`n × 10^e`), never by printing a float, so that
//! steps of 0.1 read `0.3` and not `0.30000000000000004`.

/// One tick; minor ticks have no label.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tick {
    /// Position on the axis, in data units.
    pub value: f64,
    /// Text under / beside the tick, or `None` for a minor tick.
    pub label: Option<String>,
}

/// A linear or logarithmic axis from `lo` to `hi` (data units; both > 0 when log).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Axis {
    /// Start of the axis.
    pub lo: f64,
    /// End of the axis (> `lo`).
    pub hi: f64,
    /// Logarithmic.
    pub log: bool,
    /// Ticks within `lo..=hi`, in increasing order.
    pub ticks: Vec<Tick>,
}

/// Largest decade exponent a log axis reaches (f64 covers about ±308).
const MAX_EXP: i32 = 300;

impl Axis {
    /// A linear axis covering `min..=max` with about `target` labelled ticks, extended
    /// to whole steps. Equal bounds are widened; non-finite ones give 0..1.
    pub fn linear(min: f64, max: f64, target: usize) -> Axis {
        let (mut min, mut max) =
            if min.is_finite() && max.is_finite() { (min.min(max), min.max(max)) } else { (0.0, 1.0) };
        if max - min <= max.abs().max(min.abs()) * 1e-12 {
            // All values equal (or nearly): centre them on a span of ±10% (±1 around 0).
            let pad = if max == 0.0 { 1.0 } else { max.abs() * 0.1 };
            min -= pad;
            max += pad;
        }
        let target = target.max(2) as f64;
        // Halves keep `max - min` finite near f64::MAX.
        let raw = (max / 2.0 - min / 2.0) / target * 2.0;
        let (mantissa, exp) = nice_step(raw);
        let step = mantissa as f64 * pow10(exp);
        // The tolerance keeps 3.0 / 0.1 = 30.000000000000004 from adding a step.
        let k0 = (min / step + 1e-9).floor();
        let k1 = (max / step - 1e-9).ceil();
        let lo = clamp_finite(k0 * step);
        let hi = clamp_finite(k1 * step);
        // One format for the whole axis: the largest label decides.
        let largest = (k0.abs().max(k1.abs()) as i64).saturating_mul(mantissa);
        let sci = scientific(largest, exp);
        let ticks = (k0 as i64..=k1 as i64)
            .map(|k| Tick { value: k as f64 * step, label: Some(label_in(k * mantissa, exp, sci)) })
            .filter(|t| t.value.is_finite() && t.value >= lo && t.value <= hi)
            .collect();
        Axis { lo, hi, log: false, ticks }
    }

    /// A log axis from the decade at or below `min` to the decade at or above `max`
    /// (both > 0), labelling at most about `max_labels` decades.
    pub fn log(min: f64, max: f64, max_labels: usize) -> Axis {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        let (min, max) = if ok(min) && ok(max) { (min.min(max), min.max(max)) } else { (1.0, 10.0) };
        let mut k0 = ((min.log10() + 1e-9).floor() as i32).clamp(-MAX_EXP, MAX_EXP);
        let mut k1 = ((max.log10() - 1e-9).ceil() as i32).clamp(-MAX_EXP, MAX_EXP);
        if k1 <= k0 {
            if k0 > -MAX_EXP {
                k0 = k1 - 1;
            } else {
                k1 = k0 + 1;
            }
            if pow10(k1) < max {
                k1 += 1;
            }
        }
        let decades = (k1 - k0) as usize;
        let every = decades.div_ceil(max_labels.max(1)).max(1) as i32;
        let mut ticks = Vec::new();
        for k in k0..=k1 {
            let major = (k - k0) % every == 0;
            ticks.push(Tick { value: pow10(k), label: major.then(|| label(1, k)) });
            if k == k1 || decades > 8 {
                continue;
            }
            for j in 2..=9 {
                let labelled = decades <= 2 && (j == 2 || j == 5);
                ticks.push(Tick { value: j as f64 * pow10(k), label: labelled.then(|| label(j, k)) });
            }
        }
        Axis { lo: pow10(k0), hi: pow10(k1), log: true, ticks }
    }

    /// Where `v` lies along the axis: 0 at `lo`, 1 at `hi` (outside for values outside).
    pub fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0)
        };
        if f.is_finite() {
            f
        } else {
            0.0
        }
    }
}

fn clamp_finite(v: f64) -> f64 {
    v.clamp(f64::MIN, f64::MAX)
}

/// 10^k, exact for the powers f64 represents exactly and correctly rounded otherwise.
pub(crate) fn pow10(k: i32) -> f64 {
    // `powi` multiplies repeatedly and drifts; parsing is correctly rounded.
    format!("1e{k}").parse().unwrap_or(if k < 0 { 0.0 } else { f64::MAX })
}

/// The nice step ≥ `raw` as `(mantissa, exponent)`: mantissa 1, 2 or 5.
pub(crate) fn nice_step(raw: f64) -> (i64, i32) {
    if !(raw.is_finite() && raw > 0.0) {
        return (1, 0);
    }
    let mut exp = raw.log10().floor() as i32;
    // log10 may be off by one ulp around exact powers; fix the decade by comparison.
    if pow10(exp) > raw {
        exp -= 1;
    }
    if pow10(exp + 1) <= raw {
        exp += 1;
    }
    let f = raw / pow10(exp);
    match f {
        f if f <= 1.0 + 1e-9 => (1, exp),
        f if f <= 2.0 + 1e-9 => (2, exp),
        f if f <= 5.0 + 1e-9 => (5, exp),
        _ => (1, exp + 1),
    }
}

/// The text of `n × 10^exp`: plain digits for moderate magnitudes (`1500`, `0.04`,
/// `-2.5`), otherwise scientific (`1.5e9`, `2e-7`).
pub(crate) fn label(n: i64, exp: i32) -> String {
    label_in(n, exp, scientific(n, exp))
}

/// Decimal exponent of the leading digit of `n × 10^exp` (n ≠ 0).
fn magnitude(n: i64, exp: i32) -> i32 {
    n.unsigned_abs().to_string().len() as i32 - 1 + exp
}

/// Whether `n × 10^exp` reads better in scientific notation: ≥ 10⁷, or steps below 10⁻⁴.
fn scientific(n: i64, exp: i32) -> bool {
    exp < -4 || (n != 0 && magnitude(n, exp) >= 7)
}

fn label_in(n: i64, exp: i32, sci: bool) -> String {
    if n == 0 {
        return "0".into();
    }
    let sign = if n < 0 { "-" } else { "" };
    let digits = n.unsigned_abs().to_string();
    let magnitude = magnitude(n, exp);
    if !sci && exp >= 0 {
        return format!("{sign}{digits}{}", "0".repeat(exp as usize));
    }
    if !sci {
        let decimals = (-exp) as usize;
        let padded = format!("{digits:0>width$}", width = decimals + 1);
        let (int, frac) = padded.split_at(padded.len() - decimals);
        return format!("{sign}{int}.{frac}");
    }
    let (first, rest) = digits.split_at(1);
    let rest = rest.trim_end_matches('0');
    let dot = if rest.is_empty() { "" } else { "." };
    format!("{sign}{first}{dot}{rest}e{magnitude}")
}

/// A value for people, about 4 significant digits: `12.35`, `1500`, `2.5e-5`, `3.2e7`.
pub(crate) fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e7).contains(&a) {
        let s = format!("{v:.3e}");
        // 1.500e-5 → 1.5e-5
        return match s.split_once('e') {
            Some((m, e)) if m.contains('.') => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
            _ => s,
        };
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(a: &Axis) -> Vec<String> {
        a.ticks.iter().filter_map(|t| t.label.clone()).collect()
    }

    #[test]
    fn nice_steps_are_1_2_5() {
        assert_eq!(nice_step(0.7), (1, 0));
        assert_eq!(nice_step(1.0), (1, 0));
        assert_eq!(nice_step(1.3), (2, 0));
        assert_eq!(nice_step(3.0), (5, 0));
        assert_eq!(nice_step(7.0), (1, 1));
        assert_eq!(nice_step(1000.0), (1, 3));
        assert_eq!(nice_step(0.00023), (5, -4));
        assert_eq!(nice_step(f64::NAN), (1, 0));
    }

    #[test]
    fn linear_ticks_cover_the_data_in_whole_steps() {
        let a = Axis::linear(10.3, 41.0, 5);
        assert_eq!(labels(&a), ["10", "20", "30", "40", "50"]);
        assert_eq!((a.lo, a.hi), (10.0, 50.0));
        let a = Axis::linear(0.0, 1.0, 5);
        assert_eq!(labels(&a), ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let a = Axis::linear(-0.35, 0.12, 5);
        assert_eq!(labels(&a), ["-0.4", "-0.3", "-0.2", "-0.1", "0", "0.1", "0.2"]);
        assert!(a.lo <= -0.35 && a.hi >= 0.12);
    }

    #[test]
    fn linear_axis_widens_equal_and_bad_bounds() {
        let a = Axis::linear(5.0, 5.0, 5);
        assert!(a.lo < 5.0 && a.hi > 5.0, "{a:?}");
        let a = Axis::linear(0.0, 0.0, 5);
        assert!(a.lo <= -1.0 && a.hi >= 1.0);
        let a = Axis::linear(f64::NAN, 3.0, 5);
        assert_eq!((a.lo, a.hi), (0.0, 1.0));
        let a = Axis::linear(-f64::MAX, f64::MAX, 5);
        assert!(a.lo.is_finite() && a.hi.is_finite() && a.lo < a.hi && !a.ticks.is_empty());
        assert!(a.frac(0.0).is_finite());
        let a = Axis::linear(1e-300, 2e-300, 4);
        assert!(a.lo < a.hi && a.ticks.len() >= 2);
    }

    #[test]
    fn tick_labels_are_exact() {
        assert_eq!(label(3, -1), "0.3");
        assert_eq!(label(15, -1), "1.5");
        assert_eq!(label(-4, -2), "-0.04");
        assert_eq!(label(25, 2), "2500");
        assert_eq!(label(15, 8), "1.5e9");
        assert_eq!(label(2, -7), "2e-7");
        assert_eq!(label(1, 7), "1e7");
        assert_eq!(label(0, -3), "0");
    }

    #[test]
    fn log_ticks_are_decades() {
        let a = Axis::log(3.0, 4500.0, 10);
        assert_eq!((a.lo, a.hi), (1.0, 10_000.0));
        assert_eq!(labels(&a), ["1", "10", "100", "1000", "10000"]);
        assert!(a.ticks.iter().any(|t| t.value == 200.0 && t.label.is_none()));
        // Few decades: 2 and 5 labelled too.
        let a = Axis::log(12.0, 40.0, 10);
        assert_eq!(labels(&a), ["10", "20", "50", "100"]);
        // Many decades: every other one labelled, no minor ticks.
        let a = Axis::log(1e-6, 1e6, 6);
        assert_eq!(labels(&a), ["1e-6", "0.0001", "0.01", "1", "100", "10000", "1000000"]);
        assert_eq!(a.ticks.len(), 13);
        // One value, exactly a power of ten.
        let a = Axis::log(100.0, 100.0, 10);
        assert!(a.lo < 100.0 && a.hi >= 100.0);
        assert!((a.frac(10.0) - 0.0).abs() < 1e-12 && (a.frac(100.0) - 1.0).abs() < 1e-12);
        let a = Axis::log(-1.0, 0.0, 10);
        assert_eq!((a.lo, a.hi), (1.0, 10.0));
    }

    #[test]
    fn values_for_people() {
        assert_eq!(fmt_value(12.3456), "12.35");
        assert_eq!(fmt_value(1500.0), "1500");
        assert_eq!(fmt_value(0.5), "0.5");
        assert_eq!(fmt_value(2.5e-5), "2.5e-5");
        assert_eq!(fmt_value(3.2e7), "3.2e7");
        assert_eq!(fmt_value(-0.00001), "-1e-5");
        assert_eq!(fmt_value(f64::NAN), "");
    }
}
